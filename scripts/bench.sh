#!/usr/bin/env bash
# Benchmarks (not tests): the store on its own, the API over HTTPS, the scheduler, pod
# sandboxes, the pod network, image pull, import and unpack beside `skopeo copy` (as root: it starts Debian's
# docker-registry on 127.0.0.1), pods on a real node beside `podman kube play` (as root),
# `skiff get po` beside `kubectl get po`, and the idle memory of a real `skiff server`. Prints
# the figures that docs/benchmarks.md records.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

ensure_system_packages
ensure_bench_packages
ensure_rust

step "building (release)"
cargo build --release -p skiff -p skiff-store -p skiff-apiserver --examples --bins

target="${CARGO_TARGET_DIR:-$repo/target}/release"

step "store: SQLite backend, 10,000 keys of 1 KiB"
"$target/examples/store_bench"

step "API over HTTPS: creates, gets, a 10,000-pod list, watch latency and fan-out"
"$target/examples/api_bench" 10000 64

step "scheduler: pod created -> binding seen in a watch, one at a time and in a burst, 10 nodes"
cargo build --release -p skiff-scheduler --example scheduler_bench
"$target/examples/scheduler_bench" 100 10

step "pod sandbox: create + remove, without and with a shared PID namespace (root)"
cargo build --release -p skiff-runtime --example sandbox_bench
SKIFF_BIN="$target/skiff" "$target/examples/sandbox_bench" 300

step "pod network: set-up and removal per pod, pod-to-pod TCP beside the host's loopback (root)"
cargo build --release -p skiff-net --example net_bench
# 200 pods: also the leak check of 200 set-up and removal cycles (the e2e test does 30).
"$target/examples/net_bench" 200

step "images: pull, import and unpack of a 3-layer image beside skopeo copy (root; median of 5)"
cargo build --release -p skiff-runtime --example image_bench
"$target/examples/image_bench" 5

step "pods: start latency, churn and memory per pod, beside podman kube play (root)"
cargo build --release -p skiff-agent --example pod_bench
"$repo/scripts/build-test-images.sh" "$target/../test-images" >/dev/null
SKIFF_BIN="$target/skiff" BUSYBOX_TAR="$target/../test-images/busybox.tar" \
    "$target/examples/pod_bench" 100 100

step "exec: kubectl exec round trips and exec -i cat throughput, beside podman exec (root)"
"$repo/scripts/install-kubectl.sh"
cargo build --release -p skiff-e2e --example exec_bench
SKIFF_BIN="$target/skiff" KUBECTL="$repo/.skiff-tools/bin/kubectl" "$target/examples/exec_bench" 50 100

step "CLI: skiff get po beside kubectl get po, 100 pods, alternating (p50 of 30)"
cargo build --release -p skiff-e2e --example cli_bench
SKIFF_BIN="$target/skiff" KUBECTL="$repo/.skiff-tools/bin/kubectl" "$target/examples/cli_bench" 100 30

step "probes: node CPU with 100 pods, each a 1 s exec and a 1 s httpGet probe, and without (root)"
cargo build --release -p skiff-e2e --example probe_bench
SKIFF_BIN="$target/skiff" KUBECTL="$repo/.skiff-tools/bin/kubectl" "$target/examples/probe_bench" 100 60 --no-probes
SKIFF_BIN="$target/skiff" KUBECTL="$repo/.skiff-tools/bin/kubectl" "$target/examples/probe_bench" 100 60

step "idle memory of skiff server"
data=$(mktemp -d)
log="$data/server.log"
"$target/skiff" server --data-dir "$data" --https-listen-port 0 --disable-agent >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 300); do
    grep -q "listening on" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
grep -q "listening on" "$log" || { echo "server did not start"; cat "$log"; exit 1; }
start_ms=$(grep -o 'ready in [0-9.]* ms' "$log" || true)
# Let start-up allocations settle, then read the resident set.
sleep 2
echo "idle skiff server: $(awk '/VmRSS/ {printf "%.1f MiB\n", $2/1024}' "/proc/$pid/status") resident ${start_ms:+($start_ms)}"
