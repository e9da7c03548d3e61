#!/usr/bin/env bash
# Brings up a Skiff cluster on this machine: builds skiff (release), installs it to
# /usr/local/bin with a `kubectl` link to it when no kubectl is installed, imports the test images (busybox, luksa/kubia) into the node's image store,
# starts `skiff server` in the background and waits until it serves.
#
# Run as root on Debian 12; it installs what is missing. Environment overrides:
#   SKIFF_DATA_DIR (default /var/lib/skiff), SKIFF_PORT (default 6443),
#   SKIFF_LOG_FILE (default /var/log/skiff.log), SKIFF_READY_TIMEOUT seconds (default 60),
#   SKIFF_KUBECTL=real (install the real kubectl v1.35 instead of linking skiff as kubectl).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

data_dir=${SKIFF_DATA_DIR:-/var/lib/skiff}
port=${SKIFF_PORT:-6443}
log=${SKIFF_LOG_FILE:-/var/log/skiff.log}
ready_timeout=${SKIFF_READY_TIMEOUT:-60}
pid_file=/run/skiff.pid
readonly LISTENING='Skiff API server listening on '
readonly KUBECONFIG_LINE='Admin kubeconfig: '

if [[ $EUID -ne 0 ]]; then
    echo "up.sh: run as root (it installs to /usr/local/bin and writes $log and $data_dir)" >&2
    exit 1
fi

# Prints the pid of a running `skiff server`, if there is one.
running_server_pid() {
    local pid
    for pid in $(pgrep -x skiff || true); do
        # The subcommand `server` among its arguments (NUL-separated in /proc).
        if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | tail -n +2 | grep -qx server; then
            echo "$pid"
            return 0
        fi
    done
}

# Prints the --data-dir a running server was started with (the default if none was given).
data_dir_of() {
    local arg take=false dir=/var/lib/skiff
    while IFS= read -r arg; do
        if $take; then
            dir=$arg
            take=false
        elif [[ "$arg" == --data-dir ]]; then
            take=true
        elif [[ "$arg" == --data-dir=* ]]; then
            dir=${arg#--data-dir=}
        fi
    done < <(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null)
    echo "$dir"
}

existing=$(running_server_pid)
if [[ -n "$existing" ]]; then
    existing_data_dir=$(data_dir_of "$existing")
    echo "A skiff server is already running (pid $existing, data dir $existing_data_dir)."
    if [[ -f "$pid_file" && "$(cat "$pid_file")" == "$existing" ]]; then
        echo "Its log is $log."
    fi
    echo "To use it:"
    echo "  export KUBECONFIG=$existing_data_dir/admin.kubeconfig"
    echo "  kubectl get po"
    exit 0
fi

ensure_system_packages
ensure_node_packages
ensure_rust

step "Building skiff (release)"
cargo build --release -p skiff
install -m 0755 "${CARGO_TARGET_DIR:-$repo/target}/release/skiff" /usr/local/bin/skiff

# Skiff carries its own kubectl (the skiff binary run as `kubectl`, as k3s does): linked when no
# kubectl is installed, unless SKIFF_KUBECTL=real asks for the real one. An installed kubectl is
# never replaced.
link_skiff_kubectl() {
    if command -v kubectl >/dev/null 2>&1; then
        echo "kubectl is already installed ($(command -v kubectl)); not linking skiff as kubectl"
    else
        ln -s /usr/local/bin/skiff /usr/local/bin/kubectl
        echo "Linked /usr/local/bin/kubectl to skiff (its built-in kubectl; 'skiff kubectl ...' works too)"
    fi
}
if [[ "${SKIFF_KUBECTL:-}" == real ]]; then
    step "Installing kubectl"
    if ! "$repo/scripts/install-kubectl.sh" --system; then
        echo "up.sh: the real kubectl could not be installed; using skiff's built-in kubectl" >&2
        link_skiff_kubectl
    fi
else
    step "Linking skiff as kubectl"
    link_skiff_kubectl
fi

# The seed's pod runs `luksa/kubia` with imagePullPolicy Never: the node must already have it.
# Both test images are built here from Debian's busybox-static, with nothing downloaded.
step "Importing the test images (busybox, luksa/kubia) into $data_dir/images"
mkdir -p "$data_dir"
images_dir="${CARGO_TARGET_DIR:-$repo/target}/test-images"
"$repo/scripts/build-test-images.sh" "$images_dir" >/dev/null
/usr/local/bin/skiff image --data-dir "$data_dir" import "$images_dir/busybox.tar" "$images_dir/kubia.tar"

step "Starting skiff server (log: $log)"
mkdir -p "$(dirname "$log")" "$data_dir"
touch "$log"
# Only lines written after this offset belong to this start; the log keeps earlier runs.
log_offset=$(stat -c %s "$log")
# setsid: the server must outlive this script and the terminal it was started from.
setsid /usr/local/bin/skiff server \
    --data-dir "$data_dir" --https-listen-port "$port" \
    </dev/null >>"$log" 2>&1 &
server_pid=$!
echo "$server_pid" >"$pid_file"

new_log() {
    tail -c "+$((log_offset + 1))" "$log"
}

deadline=$((SECONDS + ready_timeout))
until new_log | grep -q "$LISTENING"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "up.sh: skiff server exited before it was ready; the end of $log:" >&2
        new_log | tail -n 20 >&2
        rm -f "$pid_file"
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "up.sh: skiff server (pid $server_pid) not ready after ${ready_timeout}s, stopping it; the end of $log:" >&2
        new_log | tail -n 20 >&2
        kill "$server_pid" 2>/dev/null || true
        rm -f "$pid_file"
        exit 1
    fi
    sleep 0.2
done

url=$(new_log | grep -m 1 "$LISTENING" | sed "s/.*$LISTENING//")
kubeconfig=$(new_log | grep -m 1 "$KUBECONFIG_LINE" | sed "s/.*$KUBECONFIG_LINE//" || true)
kubeconfig=${kubeconfig:-$data_dir/admin.kubeconfig}

cat <<EOF

Skiff is up at $url (pid $server_pid, log $log).
This machine is its node: pods run here (images: skiff image ls).

To use it:
  export KUBECONFIG=$kubeconfig
  kubectl get po
  skiff image ls

To stop it (pods' containers keep running without it, as under kubelet; delete the pods first
to stop them):
  kill \$(cat $pid_file)
EOF
