//! Pod sandboxes: per pod a network, a UTS and an IPC namespace held by bind-mounted namespace
//! files (no process), optionally a PID namespace held by our pause process, the pod's `/dev/shm`
//! (a tmpfs) and the `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` its containers mount.
//!
//! On disk, under `root` (`<data-dir>/sandboxes`, itself a private bind mount so nothing mounted
//! below propagates to other mount namespaces):
//! - `<id>/sandbox.json`: the [`Sandbox`] record, written before anything is mounted, so that a
//!   crash half-way leaves something `remove` understands;
//! - `<id>/ns/{net,uts,ipc}` (and `pid` with a shared PID namespace): nsfs bind mounts;
//! - `<id>/shm`: the pod's `/dev/shm`, a tmpfs;
//! - `<id>/hosts`, `<id>/hostname`, `<id>/resolv.conf`: bind-mounted into every container.

pub mod files;
pub mod pause;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of the sandbox subsystem.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{operation}: {source}")]
    Sys {
        operation: &'static str,
        source: std::io::Error,
    },
    #[error("sandbox record {path}: {source}")]
    Record {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid sandbox: {0}")]
    Invalid(String),
    #[error("pause process: {0}")]
    Pause(String),
    #[error("removing sandbox {id}: {}", join_errors(.errors))]
    Remove {
        id: String,
        errors: Vec<SandboxError>,
    },
}

fn join_errors(errors: &[SandboxError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// What a pod asks of its sandbox (from the pod's spec and the node's configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The pod's metadata.uid, namespace and name (for the record, logs and GC).
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The UTS hostname: the pod's name, or spec.hostname (at most 63 characters, as kubelet
    /// truncates).
    pub hostname: String,
    /// The pod's domain when spec.subdomain is set: `<subdomain>.<namespace>.svc.<cluster
    /// domain>`; the hosts file then names the pod `<hostname>.<domain>` too.
    pub domain: Option<String>,
    /// spec.shareProcessNamespace: a PID namespace held by a pause process.
    pub share_process_namespace: bool,
    /// spec.hostAliases, in order.
    pub host_aliases: Vec<HostAlias>,
    /// spec.dnsPolicy, spec.dnsConfig and the node's DNS settings.
    pub dns: DnsSpec,
    /// Size of `/dev/shm` in bytes; `None`: 64 MiB, as Docker and containerd.
    pub shm_size: Option<u64>,
}

/// One of spec.hostAliases: an IP and the names that resolve to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// spec.dnsPolicy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DnsPolicy {
    #[default]
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

/// One of spec.dnsConfig.options: `name` or `name:value`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

/// Everything `/etc/resolv.conf` is made of, as kubelet computes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    pub policy: DnsPolicy,
    /// spec.dnsConfig.nameservers, searches and options.
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<DnsOption>,
    /// The cluster DNS servers (kubelet's --cluster-dns); empty until the cluster has a DNS, in
    /// which case ClusterFirst falls back to Default, as kubelet does.
    pub cluster_dns: Vec<String>,
    /// kubelet's --cluster-domain.
    pub cluster_domain: String,
    /// The node's resolv.conf (kubelet's --resolv-conf), the base of policy Default.
    pub host_resolv_conf: PathBuf,
}

impl Default for DnsSpec {
    fn default() -> Self {
        DnsSpec {
            policy: DnsPolicy::ClusterFirst,
            nameservers: Vec::new(),
            searches: Vec::new(),
            options: Vec::new(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// A pod sandbox on this node. Plain data: it stays valid after the agent restarts
/// ([`Sandbox::open`]) and nothing happens when it is dropped; [`Sandbox::remove`] tears it down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    /// `<root>/<id>`.
    pub dir: PathBuf,
    pub spec: SandboxSpec,
    /// Namespace files a container joins (OCI `linux.namespaces[].path`).
    pub net_ns: PathBuf,
    pub uts_ns: PathBuf,
    pub ipc_ns: PathBuf,
    /// With a shared PID namespace: its file, and the pause process (PID 1 there) that holds it.
    pub pid_ns: Option<PathBuf>,
    pub pause_pid: Option<u32>,
    /// The pod's `/dev/shm` (a tmpfs), bind-mounted into every container.
    pub shm: PathBuf,
    /// Bind-mounted (read-write, as kubelet) at `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub hosts: PathBuf,
    pub hostname_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's IPs once networking gave them ([`Sandbox::set_pod_ips`]).
    pub pod_ips: Vec<IpAddr>,
}

impl Sandbox {
    /// Creates a sandbox under `root` (`<data-dir>/sandboxes`). `skiff_binary` is what runs the
    /// pause process (`skiff internal pause`), needed only with a shared PID namespace. On error
    /// everything done so far is undone.
    pub fn create(root: &Path, skiff_binary: &Path, spec: &SandboxSpec) -> Result<Sandbox> {
        let _ = (root, skiff_binary, spec);
        todo!()
    }

    /// The sandbox `id` from its record, e.g. after the agent restarted; `None` if it does not
    /// exist (or its record is missing: a create that crashed half-way; `remove` it).
    pub fn open(root: &Path, id: &str) -> Result<Option<Sandbox>> {
        let _ = (root, id);
        todo!()
    }

    /// The ids of every sandbox directory under `root`, complete or not (for GC at start).
    pub fn list(root: &Path) -> Result<Vec<String>> {
        let _ = root;
        todo!()
    }

    /// Tears down sandbox `id`: kills the pause process (only if `/proc/PID/cmdline` shows it is
    /// this sandbox's), unmounts everything under its directory and deletes it. Idempotent; works
    /// on half-created sandboxes; keeps going after an error and reports them all.
    pub fn remove(root: &Path, id: &str) -> Result<()> {
        let _ = (root, id);
        todo!()
    }

    /// Records the pod's IPs and rewrites `/etc/hosts` with the pod's line, as kubelet writes it.
    /// Rewritten in place, so containers that already bind-mount it see the change.
    pub fn set_pod_ips(&mut self, ips: &[IpAddr]) -> Result<()> {
        let _ = ips;
        todo!()
    }
}
