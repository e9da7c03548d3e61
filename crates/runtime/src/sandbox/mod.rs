//! Pod sandboxes: per pod a network, a UTS and an IPC namespace held by bind-mounted namespace
//! files (no process), optionally a PID namespace held by our pause process, the pod's `/dev/shm`
//! (a tmpfs) and the `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` its containers mount.
//!
//! On disk, under `root` (`<data-dir>/sandboxes`, on which the first create mounts a private
//! tmpfs: nothing mounted below propagates to other mount namespaces, nothing waits on a disk,
//! and the records outlive the agent but not a reboot, as the namespaces do):
//! - `<id>/sandbox.json`: the [`Sandbox`] record, written before anything is mounted, so that a
//!   crash half-way leaves something `remove` understands;
//! - `<id>/ns/{net,uts,ipc}` (and `pid` with a shared PID namespace): nsfs bind mounts;
//! - `<id>/shm`: the pod's `/dev/shm`, a tmpfs;
//! - `<id>/hosts`, `<id>/hostname`, `<id>/resolv.conf`: bind-mounted into every container.

pub mod files;
mod ns;
pub mod pause;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
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
    #[error("sandbox {id} is broken: {reason}")]
    Broken { id: String, reason: String },
    #[error("garbage-collecting sandboxes: {}", join_errors(.0))]
    GarbageCollect(Vec<SandboxError>),
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
    /// spec.hostNetwork: the node's network and UTS namespaces (held by the same kind of
    /// files, so everything that joins a pod's namespace works unchanged), the node's hosts
    /// file, no address of its own.
    #[serde(default)]
    pub host_network: bool,
    /// spec.hostAliases, in order.
    pub host_aliases: Vec<HostAlias>,
    /// spec.dnsPolicy, spec.dnsConfig and the node's DNS settings.
    pub dns: DnsSpec,
    /// Size of `/dev/shm` in bytes; `None`: 64 MiB, as Docker and containerd.
    pub shm_size: Option<u64>,
}

/// The node's DNS settings (kubelet's --cluster-dns, --cluster-domain, --resolv-conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDns {
    /// Empty until the cluster has a DNS service: ClusterFirst then falls back to Default.
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: PathBuf,
}

impl Default for NodeDns {
    fn default() -> Self {
        NodeDns {
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

impl NodeDns {
    /// The defaults with the resolv.conf pods can use, picked as k3s does: /etc/resolv.conf,
    /// unless all its nameservers are loopback addresses (systemd-resolved's 127.0.0.53 stub,
    /// a local dnsmasq), which a pod's network namespace cannot reach; then systemd-resolved's
    /// list of upstream servers, /run/systemd/resolve/resolv.conf, if it has usable ones.
    pub fn for_host() -> NodeDns {
        NodeDns {
            resolv_conf: usable_resolv_conf(&[
                Path::new("/etc/resolv.conf"),
                Path::new("/run/systemd/resolve/resolv.conf"),
            ]),
            ..NodeDns::default()
        }
    }
}

/// The first candidate with a nameserver that is not a loopback address; else the first one.
fn usable_resolv_conf(candidates: &[&Path]) -> PathBuf {
    let usable = |path: &&&Path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            files::ResolverConfig::parse(&text)
                .nameservers
                .iter()
                .any(|ns| ns.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback()))
        })
    };
    candidates
        .iter()
        .find(usable)
        .or(candidates.first())
        .map_or_else(|| PathBuf::from("/etc/resolv.conf"), |p| p.to_path_buf())
}

impl SandboxSpec {
    /// What `pod` asks of its sandbox, as kubelet reads it: hostname and domain
    /// ([`files::pod_hostname`]), shareProcessNamespace, hostAliases, dnsPolicy (default
    /// ClusterFirst) and dnsConfig. A hostNetwork pod has the node's host name (its UTS
    /// namespace is the node's, as containerd gives it) and its DNS policy ClusterFirst
    /// falls back to Default (ClusterFirstWithHostNet does not), as kubelet's getPodDNSType.
    pub fn for_pod(pod: &k8s_openapi::api::core::v1::Pod, node: &NodeDns) -> Result<SandboxSpec> {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let (hostname, domain) = if host_network {
            let uname = rustix::system::uname();
            let node_hostname = uname.nodename().to_string_lossy().into_owned();
            (node_hostname, None)
        } else {
            files::pod_hostname(
                &name,
                spec.and_then(|s| s.hostname.as_deref()),
                spec.and_then(|s| s.subdomain.as_deref()),
                &namespace,
                &node.cluster_domain,
            )
        };
        let policy = match spec.and_then(|s| s.dns_policy.as_deref()) {
            None | Some("") | Some("ClusterFirst") if host_network => DnsPolicy::Default,
            None | Some("") | Some("ClusterFirst") => DnsPolicy::ClusterFirst,
            Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirstWithHostNet,
            Some("Default") => DnsPolicy::Default,
            Some("None") => DnsPolicy::None,
            Some(other) => {
                return Err(SandboxError::Invalid(format!(
                    "unsupported dnsPolicy {other:?}"
                )))
            }
        };
        let dns_config = spec.and_then(|s| s.dns_config.as_ref());
        Ok(SandboxSpec {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace,
            name,
            hostname,
            domain,
            share_process_namespace: spec
                .and_then(|s| s.share_process_namespace)
                .unwrap_or(false),
            host_network,
            host_aliases: spec
                .and_then(|s| s.host_aliases.as_ref())
                .into_iter()
                .flatten()
                .map(|alias| HostAlias {
                    ip: alias.ip.clone(),
                    hostnames: alias.hostnames.clone().unwrap_or_default(),
                })
                .collect(),
            dns: DnsSpec {
                policy,
                nameservers: dns_config
                    .and_then(|c| c.nameservers.clone())
                    .unwrap_or_default(),
                searches: dns_config
                    .and_then(|c| c.searches.clone())
                    .unwrap_or_default(),
                options: dns_config
                    .and_then(|c| c.options.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|o| {
                        Some(DnsOption {
                            name: o.name.clone()?,
                            value: o.value.clone(),
                        })
                    })
                    .collect(),
                cluster_dns: node.cluster_dns.clone(),
                cluster_domain: node.cluster_domain.clone(),
                host_resolv_conf: node.resolv_conf.clone(),
            },
            shm_size: None,
        })
    }
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
    /// `<root>/<id>` (root canonicalised).
    pub dir: PathBuf,
    pub spec: SandboxSpec,
    /// Namespace files a container joins (OCI `linux.namespaces[].path`).
    pub net_ns: PathBuf,
    pub uts_ns: PathBuf,
    pub ipc_ns: PathBuf,
    /// With a shared PID namespace: its file, and the pause process (PID 1 there) that holds it.
    pub pid_ns: Option<PathBuf>,
    pub pause_pid: Option<u32>,
    /// The pause process's start time (field 22 of /proc/PID/stat): with the pid, tells it
    /// apart from a later process that reused the pid.
    #[serde(default)]
    pub pause_start_time: Option<u64>,
    /// The pod's `/dev/shm` (a tmpfs), bind-mounted into every container.
    pub shm: PathBuf,
    /// Bind-mounted (read-write, as kubelet) at `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub hosts: PathBuf,
    pub hostname_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's IPs once networking gave them ([`Sandbox::set_pod_ips`]).
    pub pod_ips: Vec<IpAddr>,
    /// Warnings for the pod's events, in kubelet's words (DNS configuration: reason
    /// `DNSConfigForming` or `MissingClusterDNS`).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The node's hosts file, the base of a hostNetwork pod's (kubelet's etcHostsPath).
const NODE_HOSTS_FILE: &str = "/etc/hosts";
/// Default size of a pod's `/dev/shm`, as Docker and containerd.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;
const RECORD: &str = "sandbox.json";
/// How long `remove` waits for a killed pause process to be gone.
const PAUSE_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

impl Sandbox {
    /// Creates a sandbox under `root` (`<data-dir>/sandboxes`). `skiff_binary` is what runs the
    /// pause process (`skiff internal pause`), needed only with a shared PID namespace. On error
    /// everything done so far is undone.
    pub fn create(root: &Path, skiff_binary: &Path, spec: &SandboxSpec) -> Result<Sandbox> {
        check_spec(spec)?;
        // Held until the sandbox exists: the root's tmpfs is not unmounted under a create.
        let in_use = ROOT_USE.read().unwrap_or_else(PoisonError::into_inner);
        let root = prepare_root(root)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = root.join(&id);
        std::fs::create_dir(&dir).map_err(|e| io_error("creating directory", &dir, e))?;
        let started = Instant::now();
        match build(&dir, &id, skiff_binary, spec) {
            Ok(sandbox) => {
                tracing::debug!(
                    pod_namespace = %spec.namespace, pod_name = %spec.name, pod_uid = %spec.uid,
                    sandbox = %id, "sandbox created in {:.2} ms", started.elapsed().as_secs_f64() * 1e3
                );
                Ok(sandbox)
            }
            Err(error) => {
                let cleanup = remove_dir_of(&root, &id);
                drop(in_use);
                if let Err(cleanup) = cleanup.and_then(|()| release_root_if_unused(&root)) {
                    tracing::warn!(
                        pod_namespace = %spec.namespace, pod_name = %spec.name, pod_uid = %spec.uid,
                        sandbox = %id, error = %cleanup, "cleaning up after a failed sandbox create"
                    );
                }
                Err(error)
            }
        }
    }

    /// The sandbox `id` from its record, e.g. after the agent restarted; `None` if it does not
    /// exist (or its record is missing: a create that crashed half-way; `remove` it).
    pub fn open(root: &Path, id: &str) -> Result<Option<Sandbox>> {
        check_id(id)?;
        read_record(&root.join(id))
    }

    /// The ids of every sandbox directory under `root`, complete or not (for GC at start).
    pub fn list(root: &Path) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("listing", root, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing", root, e))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if let Some(name) = entry.file_name().to_str() {
                if is_dir && check_id(name).is_ok() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Tears down sandbox `id`: kills the pause process (only if its pid and start time are the
    /// recorded ones), unmounts everything under its directory and deletes it; the last one out
    /// also unmounts the root's tmpfs, so nothing at all is left once every pod is gone.
    /// Idempotent; works on half-created sandboxes; keeps going after an error and reports them
    /// all.
    pub fn remove(root: &Path, id: &str) -> Result<()> {
        check_id(id)?;
        let root = match std::fs::canonicalize(root) {
            Ok(root) => root,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("resolving", root, e)),
        };
        let removed = {
            let _in_use = ROOT_USE.read().unwrap_or_else(PoisonError::into_inner);
            remove_dir_of(&root, id)
        };
        let released = release_root_if_unused(&root);
        match (removed, released) {
            (Err(SandboxError::Remove { id, mut errors }), Err(e)) => {
                errors.push(e);
                Err(SandboxError::Remove { id, errors })
            }
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Records the pod's IPs and rewrites `/etc/hosts` with the pod's line, as kubelet writes it.
    /// Rewritten in place, so containers that already bind-mount it see the change.
    pub fn set_pod_ips(&mut self, ips: &[IpAddr]) -> Result<()> {
        self.pod_ips = ips.to_vec();
        if self.spec.host_network {
            // The node's hosts file names the node already; kubelet adds no pod line.
            return write_record(self);
        }
        let text = files::hosts_file(
            &self.spec.hostname,
            self.spec.domain.as_deref(),
            &self.pod_ips,
            &self.spec.host_aliases,
        );
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.hosts)
            .map_err(|e| io_error("opening", &self.hosts, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| io_error("writing", &self.hosts, e))?;
        write_record(self)
    }

    /// Checks that the sandbox still holds what containers join: every namespace file still a
    /// namespace (nsfs) mount, `/dev/shm` still mounted, the pause process (if any) still the one
    /// started and alive. For the agent after a restart: kubelet replaces a pod's sandbox (and
    /// restarts its containers) when it is gone.
    pub fn verify(&self) -> Result<()> {
        const NSFS_MAGIC: u64 = 0x6e73_6673;
        let mut problems = Vec::new();
        let ns_files = [
            ("network", &self.net_ns),
            ("UTS", &self.uts_ns),
            ("IPC", &self.ipc_ns),
        ];
        for (kind, file) in ns_files
            .into_iter()
            .chain(self.pid_ns.as_ref().map(|f| ("PID", f)))
        {
            match rustix::fs::statfs(file) {
                Ok(fs) if fs.f_type as u64 == NSFS_MAGIC => {}
                Ok(_) => problems.push(format!("its {kind} namespace file is not mounted")),
                Err(e) => problems.push(format!("its {kind} namespace file: {e}")),
            }
        }
        let dev =
            |path: &Path| std::fs::metadata(path).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
        match (dev(&self.shm), dev(&self.dir)) {
            (Ok(shm), Ok(dir)) if shm != dir => {}
            (Ok(_), Ok(_)) => problems.push("its /dev/shm is not mounted".into()),
            (Err(e), _) | (_, Err(e)) => problems.push(format!("its /dev/shm: {e}")),
        }
        if let (Some(pid), Some(start_time)) = (self.pause_pid, self.pause_start_time) {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('Z')));
            match process_start_time(pid) {
                Ok(now) if now == start_time && zombie == Some(false) => {}
                _ => problems.push(format!("its pause process (pid {pid}) is gone")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Broken {
                id: self.id.clone(),
                reason: problems.join("; "),
            })
        }
    }

    /// Removes every sandbox under `root` that `keep` rejects (e.g. whose pod no longer exists)
    /// and every one without a readable record (a create interrupted half-way). For the agent's
    /// start, before it creates any sandbox: a create in flight has no record for a moment.
    /// Returns the removed ids; keeps going after an error and reports them all.
    pub fn garbage_collect(
        root: &Path,
        mut keep: impl FnMut(&Sandbox) -> bool,
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for id in Sandbox::list(root)? {
            let kept = match Sandbox::open(root, &id) {
                Ok(Some(sandbox)) => keep(&sandbox),
                Ok(None) | Err(_) => false,
            };
            if kept {
                continue;
            }
            match Sandbox::remove(root, &id) {
                Ok(()) => removed.push(id),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(SandboxError::GarbageCollect(errors))
        }
    }

    /// Unmounts the tmpfs `create` mounted at `root` if it is there, whatever it holds (for
    /// tests and uninstalling; `remove` of the last sandbox does it anyway). A mount at `root`
    /// that is not ours stays.
    pub fn unmount_root(root: &Path) -> Result<()> {
        let root = std::fs::canonicalize(root).map_err(|e| io_error("resolving", root, e))?;
        let _exclusive = ROOT_USE.write().unwrap_or_else(PoisonError::into_inner);
        unmount_our_tmpfs(&root)
    }
}

/// `remove` without the root's release: the pause process, the mounts, the directory.
fn remove_dir_of(root: &Path, id: &str) -> Result<()> {
    let dir = root.join(id);
    if matches!(dir.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(());
    }
    let mut errors = Vec::new();
    // The pause process first: it is PID 1 of the pod's PID namespace, and its death ends
    // every process left in there.
    // An unreadable record is no reason to leave the rest behind: the layout says the rest.
    let record = read_record(&dir).unwrap_or_else(|e| {
        tracing::warn!(sandbox = %id, error = %e, "removing a sandbox whose record is unreadable");
        None
    });
    match record
        .as_ref()
        .and_then(|r| r.pause_pid.zip(r.pause_start_time))
    {
        Some((pid, start_time)) => {
            if let Err(e) = stop_pause(pid, Some(start_time), id) {
                errors.push(e);
            }
        }
        // No usable record but a PID namespace file: a create interrupted between starting
        // the pause process and recording it. Find it by its command line.
        None if dir.join("ns").join("pid").exists() => {
            for pid in find_pause_processes(id) {
                if let Err(e) = stop_pause(pid, None, id) {
                    errors.push(e);
                }
            }
            // Whatever still runs in the pod's PID namespace (the pause process if its command
            // line could not be read): all of it belongs to this sandbox.
            for pid in processes_in_pid_namespace(&dir.join("ns").join("pid")) {
                if let Some(raw) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(raw, rustix::process::Signal::KILL);
                    if let Err(e) = wait_gone(raw) {
                        errors.push(e);
                    }
                }
            }
        }
        None => {}
    }
    let ns = dir.join("ns");
    for path in [
        ns.join("net"),
        ns.join("uts"),
        ns.join("ipc"),
        ns.join("pid"),
        dir.join("shm"),
    ] {
        if let Err(e) = unmount_all(&path) {
            errors.push(e);
        }
    }
    // Anything else mounted below (nothing, unless someone else mounted there): unmount it
    // too, and never delete through a mount.
    match mounts_under(&dir) {
        Ok(leftovers) => {
            for path in leftovers.iter().rev() {
                if let Err(e) = unmount_all(path) {
                    errors.push(e);
                }
            }
        }
        Err(e) => errors.push(e),
    }
    match mounts_under(&dir) {
        Ok(left) if left.is_empty() => match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(io_error("deleting", &dir, e)),
        },
        Ok(left) => errors.push(SandboxError::Invalid(format!(
            "{} is still mounted; not deleting {}",
            left[0].display(),
            dir.display()
        ))),
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SandboxError::Remove {
            id: id.to_string(),
            errors,
        })
    }
}

/// The sandbox's files, mounts and namespaces, in `dir` (which exists and is empty).
fn build(dir: &Path, id: &str, skiff_binary: &Path, spec: &SandboxSpec) -> Result<Sandbox> {
    let ns = dir.join("ns");
    let mut sandbox = Sandbox {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        spec: spec.clone(),
        net_ns: ns.join("net"),
        uts_ns: ns.join("uts"),
        ipc_ns: ns.join("ipc"),
        pid_ns: spec.share_process_namespace.then(|| ns.join("pid")),
        pause_pid: None,
        pause_start_time: None,
        shm: dir.join("shm"),
        hosts: dir.join("hosts"),
        hostname_file: dir.join("hostname"),
        resolv_conf: dir.join("resolv.conf"),
        pod_ips: Vec::new(),
        warnings: Vec::new(),
    };
    std::fs::create_dir(&ns).map_err(|e| io_error("creating directory", &ns, e))?;
    std::fs::create_dir(&sandbox.shm)
        .map_err(|e| io_error("creating directory", &sandbox.shm, e))?;
    let ns_files = [&sandbox.net_ns, &sandbox.uts_ns, &sandbox.ipc_ns];
    for file in ns_files.into_iter().chain(sandbox.pid_ns.as_ref()) {
        std::fs::File::create(file).map_err(|e| io_error("creating", file, e))?;
    }
    // Recorded before anything is mounted or started, so that an interrupted create leaves a
    // sandbox that `remove` understands.
    write_record(&sandbox)?;

    let host_resolv = match spec.dns.policy {
        DnsPolicy::None => None,
        _ => match std::fs::read_to_string(&spec.dns.host_resolv_conf) {
            Ok(text) => Some(text),
            Err(e) => {
                sandbox.warnings.push(format!(
                    "cannot read the node's {}: {e}; the pod gets no DNS servers from it",
                    spec.dns.host_resolv_conf.display()
                ));
                None
            }
        },
    };
    let (resolver, warnings) = files::pod_dns(&spec.dns, &spec.namespace, host_resolv.as_deref());
    sandbox.warnings.extend(warnings);
    let hosts = if spec.host_network {
        let node_hosts = std::fs::read_to_string(NODE_HOSTS_FILE).map_err(|e| {
            io_error(
                "reading the node's hosts file",
                Path::new(NODE_HOSTS_FILE),
                e,
            )
        })?;
        files::host_network_hosts_file(&node_hosts, &spec.host_aliases)
    } else {
        files::hosts_file(
            &spec.hostname,
            spec.domain.as_deref(),
            &[],
            &spec.host_aliases,
        )
    };
    for (path, text) in [
        (&sandbox.hosts, hosts),
        (&sandbox.hostname_file, files::hostname_file(&spec.hostname)),
        (&sandbox.resolv_conf, resolver.render()),
    ] {
        std::fs::write(path, text).map_err(|e| io_error("writing", path, e))?;
    }

    let size = spec.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    let options = std::ffi::CString::new(format!("mode=1777,size={size}"))
        .map_err(|_| SandboxError::Invalid("shm options".into()))?;
    rustix::mount::mount(
        "shm",
        &sandbox.shm,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        options.as_c_str(),
    )
    .map_err(|e| {
        io_error(
            "mounting the pod's /dev/shm tmpfs at",
            &sandbox.shm,
            e.into(),
        )
    })?;

    let pause = sandbox.pid_ns.as_ref().map(|ns_file| ns::PauseRequest {
        ns_file,
        skiff_binary,
        sandbox_id: id,
    });
    let started = ns::create(&ns::NamespaceRequest {
        net: &sandbox.net_ns,
        uts: &sandbox.uts_ns,
        ipc: &sandbox.ipc_ns,
        hostname: &spec.hostname,
        host_network: spec.host_network,
        pid: pause,
    })?;
    if let Some(pause) = started {
        sandbox.pause_pid = Some(pause.pid);
        sandbox.pause_start_time = Some(pause.start_time);
    }
    write_record(&sandbox)?;
    Ok(sandbox)
}

fn io_error(operation: &'static str, path: &Path, source: std::io::Error) -> SandboxError {
    SandboxError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(SandboxError::Invalid(format!("{id:?} is not a sandbox id")))
    }
}

fn check_spec(spec: &SandboxSpec) -> Result<()> {
    // The kernel's limit on a hostname (__NEW_UTS_LEN); kubelet truncates to 63 before.
    if spec.hostname.is_empty() || spec.hostname.len() > 64 || spec.hostname.contains('\0') {
        return Err(SandboxError::Invalid(format!(
            "hostname {:?} must have 1 to 64 characters",
            spec.hostname
        )));
    }
    if spec.shm_size == Some(0) {
        // tmpfs reads size=0 as "unlimited".
        return Err(SandboxError::Invalid("a /dev/shm size of 0".into()));
    }
    Ok(())
}

/// Roots already prepared (mounted, private) by this process.
static PREPARED_ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Shared by creates and removes in flight, exclusive to unmount a root's tmpfs: never under a
/// create or remove.
static ROOT_USE: RwLock<()> = RwLock::new(());
/// The tmpfs's source name, by which we tell our mount from one someone else put there.
const ROOT_TMPFS_SOURCE: &str = "skiff-sandboxes";

/// Unmounts the root's tmpfs once no sandbox is left in it.
fn release_root_if_unused(root: &Path) -> Result<()> {
    let _exclusive = ROOT_USE.write().unwrap_or_else(PoisonError::into_inner);
    if Sandbox::list(root)?.is_empty() {
        unmount_our_tmpfs(root)?;
    }
    Ok(())
}

/// Unmounts what we mounted at `root` (the top mount there, while it is our tmpfs).
fn unmount_our_tmpfs(root: &Path) -> Result<()> {
    PREPARED_ROOTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|r| r != root);
    for _ in 0..4 {
        let info = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(info).map_err(|e| io_error("reading", info, e))?;
        let ours = mount_entries(&text)
            .into_iter()
            .rfind(|(point, _, _)| point == root)
            .is_some_and(|(_, fstype, source)| fstype == "tmpfs" && source == ROOT_TMPFS_SOURCE);
        if !ours {
            return Ok(());
        }
        match rustix::mount::unmount(root, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_error("unmounting", root, e.into())),
        }
    }
    Ok(())
}

/// Creates `root` and makes it a private tmpfs mount (unless it is a mount point already, which
/// is then made private):
/// - private, as `ip netns` makes /run/netns: the namespace and tmpfs mounts made below never
///   propagate into other mount namespaces, where copies would keep a pod's namespaces alive
///   after its sandbox is gone;
/// - tmpfs, because a sandbox does not outlive a reboot (its namespaces die) and because file
///   operations on a busy disk cost milliseconds (measured here: remove p50 11 ms on ext4 with
///   builds running, 0.4 ms on tmpfs). It stays mounted while a sandbox exists (the records
///   survive restarts of the agent); the last `remove` unmounts it.
///
/// Returns the canonical path.
fn prepare_root(root: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| io_error("creating directory", root, e))?;
    let root = std::fs::canonicalize(root).map_err(|e| io_error("resolving", root, e))?;
    let mut prepared = PREPARED_ROOTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if prepared.contains(&root) {
        return Ok(root);
    }
    let private = |root: &Path| rustix::mount::mount_change(root, MountPropagationFlags::PRIVATE);
    match private(&root) {
        Ok(()) => {}
        // Not a mount point yet.
        Err(Errno::INVAL) => {
            rustix::mount::mount(
                ROOT_TMPFS_SOURCE,
                &root,
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                c"mode=0711,size=64m",
            )
            .map_err(|e| io_error("mounting a tmpfs at", &root, e.into()))?;
            private(&root).map_err(|e| io_error("making private", &root, e.into()))?;
        }
        Err(e) => return Err(io_error("making private", &root, e.into())),
    }
    prepared.push(root.clone());
    Ok(root)
}

fn read_record(dir: &Path) -> Result<Option<Sandbox>> {
    let path = dir.join(RECORD);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("reading", &path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SandboxError::Record { path, source })
}

/// Written to a temporary file and renamed into place: a reader never sees half a record.
fn write_record(sandbox: &Sandbox) -> Result<()> {
    let path = sandbox.dir.join(RECORD);
    let tmp = sandbox.dir.join(".sandbox.json.tmp");
    let bytes = serde_json::to_vec_pretty(sandbox).map_err(|source| SandboxError::Record {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&tmp, bytes).map_err(|e| io_error("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error("renaming into place", &path, e))
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot.
pub(crate) fn process_start_time(pid: u32) -> Result<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(&path).map_err(|e| io_error("reading", &path, e))?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| SandboxError::Invalid(format!("cannot parse {}", path.display())))
}

fn is_pause_of(pid: u32, id: &str) -> Option<bool> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if cmdline.is_empty() {
        // A zombie (or a kernel thread): no command line to check.
        return None;
    }
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let expected: [&[u8]; 3] = [b"internal", b"pause", id.as_bytes()];
    Some(args.len() >= 4 && args[args.len() - 3..] == expected)
}

/// Pids whose command line is this sandbox's pause process.
fn find_pause_processes(id: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_pause_of(*pid, id) == Some(true))
        .collect()
}

/// Pids of the processes in the PID namespace held by the nsfs file `ns_file`.
fn processes_in_pid_namespace(ns_file: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(ns_file) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
        })
        .collect()
}

/// Kills the pause process `pid` if it is still the one we started, and waits until it is gone
/// (reaping it if it is our child).
fn stop_pause(pid: u32, start_time: Option<u64>, id: &str) -> Result<()> {
    match process_start_time(pid) {
        Err(_) => return Ok(()), // gone already
        Ok(now) if start_time.is_some_and(|t| t != now) => {
            tracing::debug!(sandbox = %id, pid, "pause process already gone (its pid was reused)");
            return Ok(());
        }
        Ok(_) => {}
    }
    if is_pause_of(pid, id) == Some(false) {
        // Same pid and start time but another command line: nothing of ours; leave it alone.
        return Ok(());
    }
    let Some(raw) = rustix::process::Pid::from_raw(pid as i32) else {
        return Ok(());
    };
    match rustix::process::kill_process(raw, rustix::process::Signal::KILL) {
        Ok(()) | Err(Errno::SRCH) => {}
        Err(e) => {
            return Err(SandboxError::Sys {
                operation: "killing the pause process",
                source: e.into(),
            })
        }
    }
    wait_gone(raw)
}

fn wait_gone(pid: rustix::process::Pid) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    // Our own child (started by this process): reap it, or it stays a zombie.
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
        Ok(_) => return Ok(()),
        Err(Errno::CHILD) => {}
        Err(e) => {
            return Err(SandboxError::Sys {
                operation: "waiting for the pause process",
                source: e.into(),
            })
        }
    }
    // Someone else's child (we restarted since): wait for its exit on a pidfd.
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(()),
        Err(e) => {
            return Err(SandboxError::Sys {
                operation: "opening a pidfd for the pause process",
                source: e.into(),
            })
        }
    };
    let timeout = Timespec {
        tv_sec: PAUSE_EXIT_TIMEOUT.as_secs() as _,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(0) => Err(SandboxError::Pause(format!(
            "pid {} still runs {} s after SIGKILL",
            pid.as_raw_nonzero(),
            PAUSE_EXIT_TIMEOUT.as_secs()
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(SandboxError::Sys {
            operation: "waiting for the pause process",
            source: e.into(),
        }),
    }
}

/// Unmounts `path` until nothing is mounted there (mounts may be stacked). Lazily (MNT_DETACH): a
/// process with a file open in the pod's shm must not make the teardown fail.
fn unmount_all(path: &Path) -> Result<()> {
    for _ in 0..16 {
        match rustix::mount::unmount(path, UnmountFlags::DETACH) {
            Ok(()) => {}
            Err(Errno::INVAL) | Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_error("unmounting", path, e.into())),
        }
    }
    Err(SandboxError::Invalid(format!(
        "{} is still mounted after 16 unmounts",
        path.display()
    )))
}

/// Mount points at or below `dir`, in /proc/self/mountinfo order (parents before children).
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let info = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(info).map_err(|e| io_error("reading", info, e))?;
    Ok(mount_entries(&text)
        .into_iter()
        .map(|(point, _, _)| point)
        .filter(|point| point.starts_with(dir))
        .collect())
}

/// The mount point (field 5, octal escapes such as `\040` for a space decoded), filesystem type
/// and source of each mount of a mountinfo text, in its order (a mount after those it covers).
fn mount_entries(mountinfo: &str) -> Vec<(PathBuf, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let point = line.split(' ').nth(4)?;
            let mut after = line.split_once(" - ")?.1.split(' ');
            let fstype = after.next()?.to_string();
            let source = after.next().unwrap_or_default().to_string();
            Some((decode_mountinfo_path(point), fstype, source))
        })
        .collect()
}

fn decode_mountinfo_path(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_decoded() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040dir rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /run/skiff/sandboxes/ab rw shared:2 - tmpfs shm rw\n";
        assert_eq!(
            mount_entries(text),
            [
                (
                    PathBuf::from("/mnt/my dir"),
                    "ext3".into(),
                    "/dev/root".into()
                ),
                (
                    PathBuf::from("/run/skiff/sandboxes/ab"),
                    "tmpfs".into(),
                    "shm".into()
                )
            ]
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("0123abcd").is_ok());
        assert!(check_id("../etc").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
    }

    #[test]
    fn own_start_time_parses() {
        let me = std::process::id();
        let a = process_start_time(me).unwrap();
        assert_eq!(a, process_start_time(me).unwrap());
        assert_eq!(is_pause_of(me, "x"), Some(false));
    }

    #[test]
    fn spec_for_pod() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "team", "uid": "u1"},
            "spec": {
                "hostname": "db", "subdomain": "svc1", "shareProcessNamespace": true,
                "dnsPolicy": "None",
                "dnsConfig": {"nameservers": ["1.2.3.4"], "options": [{"name": "ndots", "value": "2"}]},
                "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.remote"]}],
                "containers": [{"name": "c", "image": "busybox"}]
            }
        }))
        .unwrap();
        let spec = SandboxSpec::for_pod(&pod, &NodeDns::default()).unwrap();
        assert_eq!(spec.uid, "u1");
        assert_eq!(spec.hostname, "db");
        assert_eq!(spec.domain.as_deref(), Some("svc1.team.svc.cluster.local"));
        assert!(spec.share_process_namespace);
        assert_eq!(spec.dns.policy, DnsPolicy::None);
        assert_eq!(spec.dns.nameservers, ["1.2.3.4"]);
        assert_eq!(spec.dns.options[0].value.as_deref(), Some("2"));
        assert_eq!(spec.host_aliases[0].hostnames, ["foo.remote"]);
        let (config, _) = files::pod_dns(&spec.dns, &spec.namespace, None);
        assert_eq!(config.render(), "nameserver 1.2.3.4\noptions ndots:2\n");
    }

    #[test]
    fn host_network_spec_has_the_nodes_hostname_and_falls_back_to_default_dns() {
        let pod = |policy: Option<&str>| -> k8s_openapi::api::core::v1::Pod {
            let mut spec = serde_json::json!({
                "hostNetwork": true, "hostname": "ignored", "subdomain": "svc1",
                "containers": [{"name": "c", "image": "busybox"}]
            });
            if let Some(policy) = policy {
                spec["dnsPolicy"] = policy.into();
            }
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-0", "namespace": "team", "uid": "u1"},
                "spec": spec,
            }))
            .unwrap()
        };
        let node = NodeDns::default();
        let spec = SandboxSpec::for_pod(&pod(None), &node).unwrap();
        assert!(spec.host_network);
        let uname = rustix::system::uname();
        assert_eq!(spec.hostname, uname.nodename().to_string_lossy());
        assert_eq!(spec.domain, None);
        assert_eq!(spec.dns.policy, DnsPolicy::Default);
        let spec = SandboxSpec::for_pod(&pod(Some("ClusterFirst")), &node).unwrap();
        assert_eq!(spec.dns.policy, DnsPolicy::Default);
        let spec = SandboxSpec::for_pod(&pod(Some("ClusterFirstWithHostNet")), &node).unwrap();
        assert_eq!(spec.dns.policy, DnsPolicy::ClusterFirstWithHostNet);
        let spec = SandboxSpec::for_pod(&pod(Some("None")), &node).unwrap();
        assert_eq!(spec.dns.policy, DnsPolicy::None);
    }

    #[test]
    fn resolv_conf_with_only_loopback_servers_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("stub");
        let upstream = dir.path().join("upstream");
        std::fs::write(&stub, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
        std::fs::write(&upstream, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(usable_resolv_conf(&[&stub, &upstream]), upstream);
        assert_eq!(usable_resolv_conf(&[&upstream, &stub]), upstream);
        let missing = dir.path().join("missing");
        assert_eq!(usable_resolv_conf(&[&stub, &missing]), stub);
    }

    #[test]
    fn specs_are_checked() {
        let spec = SandboxSpec {
            hostname: "a".repeat(65),
            ..SandboxSpec::default()
        };
        assert!(check_spec(&spec).is_err());
        let spec = SandboxSpec {
            hostname: "ok".into(),
            shm_size: Some(0),
            ..SandboxSpec::default()
        };
        assert!(check_spec(&spec).is_err());
    }
}
