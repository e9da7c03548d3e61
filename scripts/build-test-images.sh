#!/usr/bin/env bash
# Builds the project's two test images as `docker save` archives, from Debian's busybox-static
# and nothing downloaded:
#   busybox.tar  busybox:latest      /bin/busybox, one symlink per applet, a minimal /etc; Cmd sh
#   kubia.tar    luksa/kubia:latest  the same base layer plus busybox httpd on port 8080 whose
#                                    CGI answers "You've hit <hostname>", like the seed's app
# The archives are reproducible (fixed mtimes, sorted names, owner 0), so the same busybox gives
# the same image ids, and the two images share their base layer.
#
# Usage: scripts/build-test-images.sh [OUT_DIR]
#   OUT_DIR defaults to ${CARGO_TARGET_DIR:-target}/test-images; prints the paths it wrote.
# Import them with `skiff image import OUT_DIR/busybox.tar` (and kubia.tar).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

out=${1:-${CARGO_TARGET_DIR:-$repo/target}/test-images}
# Every file's mtime, and the configs' `created`: fixed, so builds are byte-for-byte repeatable.
readonly EPOCH=0
readonly CREATED=1970-01-01T00:00:00Z
readonly PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# A reproducible tar of the entries NAMES... under DIR: sorted, fixed mtime, root-owned, no
# atime/ctime/xattr noise. Usage: repro_tar OUT DIR NAMES...
repro_tar() {
    local tar_out=$1 dir=$2
    shift 2
    tar --create --file "$tar_out" --format=gnu --sort=name --mtime="@$EPOCH" \
        --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux \
        -C "$dir" "$@"
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# Makes the base root filesystem in $1.
make_base_rootfs() {
    local root=$1 applet
    # dev, proc and sys are empty mount points for the runtime.
    mkdir -p "$root"/{bin,dev,etc,proc,root,sys,tmp,var}
    install -m 0755 /bin/busybox "$root/bin/busybox"
    # --list is the binary's own applet list, so the links match exactly what it can run.
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    printf '%s\n' '127.0.0.1	localhost' '::1	localhost ip6-localhost ip6-loopback' >"$root/etc/hosts"
    chmod 0644 "$root"/etc/{passwd,group,hosts}
    chmod 0755 "$root"/{bin,dev,etc,var}
    chmod 0555 "$root"/{proc,sys}
    chmod 0700 "$root/root"
    chmod 1777 "$root/tmp"
}

# Makes the kubia app layer in $1: busybox httpd serves /www; with no index.html it runs
# cgi-bin/index.cgi for "/" (and any URL ending in "/"), which answers like the seed's Node app.
make_kubia_layer() {
    local root=$1
    mkdir -p "$root/www/cgi-bin"
    cat >"$root/www/cgi-bin/index.cgi" <<'EOF'
#!/bin/sh
# The seed's kubia app: answer with the pod's hostname.
printf 'Content-Type: text/plain\r\n\r\n'
echo "You've hit $(/bin/hostname)"
EOF
    chmod 0755 "$root/www" "$root/www/cgi-bin" "$root/www/cgi-bin/index.cgi"
}

# Writes an image config. Usage: write_config OUT CONFIG_JSON HISTORY_JSON DIFF_ID...
write_config() {
    local config_out=$1 config=$2 history=$3
    shift 3
    local ids="" id
    for id in "$@"; do
        ids+="${ids:+,}\"sha256:$id\""
    done
    printf '{"architecture":"amd64","config":%s,"created":"%s","history":%s,"os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$config" "$CREATED" "$history" "$ids" >"$config_out"
}

# Packs a `docker save` archive. Usage: write_archive OUT TAG CONFIG_FILE LAYER_TAR...
# Layers sit at <diff id>/layer.tar, the config at <config digest>.json, as docker save does.
write_archive() {
    local archive=$1 tag=$2 config=$3
    shift 3
    local stage layers="" layer id config_id names=()
    stage=$(mktemp -d "$work/archive.XXXXXX")
    config_id=$(sha256_of "$config")
    cp "$config" "$stage/$config_id.json"
    names+=("$config_id.json")
    for layer in "$@"; do
        id=$(sha256_of "$layer")
        mkdir -p "$stage/$id"
        cp "$layer" "$stage/$id/layer.tar"
        printf '1.0' >"$stage/$id/VERSION"
        layers+="${layers:+,}\"$id/layer.tar\""
        names+=("$id")
    done
    printf '[{"Config":"%s","RepoTags":["%s"],"Layers":[%s]}]' \
        "$config_id.json" "$tag" "$layers" >"$stage/manifest.json"
    names+=(manifest.json)
    find "$stage" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
    repro_tar "$archive.tmp" "$stage" "${names[@]}"
    mv -f "$archive.tmp" "$archive"
}

# Debian's statically linked busybox: the images must not depend on the build machine's shared
# libraries. (It replaces the dynamic `busybox` package if present.)
ensure_debian_packages busybox-static
umask 022
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/skiff-test-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)

make_base_rootfs "$work/base"
repro_tar "$work/base.tar" "$work/base" bin dev etc proc root sys tmp var
base_id=$(sha256_of "$work/base.tar")
base_history="{\"created\":\"$CREATED\",\"created_by\":\"scripts/build-test-images.sh: busybox-static $version\"}"

write_config "$work/busybox.json" \
    "{\"Env\":[\"$PATH_ENV\"],\"Cmd\":[\"sh\"]}" "[$base_history]" "$base_id"
write_archive "$out/busybox.tar" busybox:latest "$work/busybox.json" "$work/base.tar"
echo "$out/busybox.tar"

make_kubia_layer "$work/kubia"
repro_tar "$work/kubia.tar" "$work/kubia" www
kubia_id=$(sha256_of "$work/kubia.tar")
write_config "$work/kubia.json" \
    "{\"Env\":[\"$PATH_ENV\"],\"Entrypoint\":[\"/bin/httpd\",\"-f\",\"-v\",\"-p\",\"8080\",\"-h\",\"/www\"],\"ExposedPorts\":{\"8080/tcp\":{}},\"WorkingDir\":\"/www\"}" \
    "[$base_history,{\"created\":\"$CREATED\",\"created_by\":\"scripts/build-test-images.sh: kubia (busybox httpd, cgi-bin/index.cgi)\"}]" \
    "$base_id" "$kubia_id"
write_archive "$out/kubia.tar" luksa/kubia:latest "$work/kubia.json" "$work/base.tar" "$work/kubia.tar"
echo "$out/kubia.tar"
