#!/usr/bin/env bash
# The one command that checks everything: formatting, lints, the build, every test (unit,
# integration and end-to-end with the real kubectl). CI runs exactly this (.ci/run).
#
# On a fresh Debian 12 machine (as root, or with sudo) it first installs what is missing.
# Exits non-zero if any step fails.
set -Eeuo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

current_step="setup"
trap 'echo "test.sh: FAILED during: $current_step" >&2' ERR

run_step() {
    current_step="$*"
    step "$*"
    "$@"
}

current_step="installing system packages"
ensure_system_packages
ensure_test_packages
current_step="installing the Rust toolchain"
ensure_rust
current_step="installing kubectl"
"$repo/scripts/install-kubectl.sh"
current_step="installing the Python kubernetes client"
ensure_python_client

# The end-to-end tests run these two; say so explicitly rather than rely on their defaults.
export KUBECTL="$repo/.skiff-tools/bin/kubectl"
export SKIFF_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/skiff"

run_step cargo fmt --all -- --check
run_step cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests start this binary; cargo test does not build it for them.
run_step cargo build -p skiff
# --no-fail-fast: report every failing test binary, not just the first one.
run_step cargo test --workspace --no-fail-fast

trap - ERR
step "All checks passed"
