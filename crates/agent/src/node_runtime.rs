//! The [`PodRuntime`] of a real node: `skiff-runtime`'s image store, pod sandboxes, overlay root
//! filesystems and containers under the data dir.
//!
//! Layout under the data dir (beside the image store):
//! - `sandboxes/`: pod sandboxes; `containers/`: container bundles and monitors; `runc/`: the
//!   OCI runtime's state;
//! - `rootfs/<container-id>/`: each container's overlay root filesystem;
//! - `pods/<uid>/volumes/<volume>`: emptyDir volumes;
//! - `pods/<uid>/logs/<container>/<attempt>.log`: CRI logs (kubelet's /var/log/pods).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::container::cgroup::CgroupLayout;
use skiff_runtime::container::manager::LogOptions;
use skiff_runtime::container::{
    build_spec, ContainerManager, ContainerSpecInput, ContainerState, FieldValues, MountSpec,
    NamespacePaths, PodFiles, SeccompOptions,
};
use skiff_runtime::container::{CliRuntime, RuntimeKind};
use skiff_runtime::image::policy::reported_image;
use skiff_runtime::image::pull::{pull, Credentials, PullOptions};
use skiff_runtime::image::reference::Reference;
use skiff_runtime::image::rootfs::RootFs;
use skiff_runtime::image::store::ImageStore;
use skiff_runtime::sandbox::{NodeDns, Sandbox, SandboxSpec};

use crate::runtime::{
    parse_container_id, CreatedSandbox, ImageRef, PodRuntime, RuntimeFailure, RuntimeResult,
    RuntimeSandbox, RuntimeState,
};

/// What the node tells containers about itself (downward API).
#[derive(Clone, Debug, Default)]
pub struct NodeFields {
    pub node_name: String,
    pub host_ip: String,
    pub allocatable_millicpu: i64,
    pub allocatable_memory: i64,
    /// The most processes (threads) one pod may run, on its cgroup (kubelet's
    /// `--pod-max-pids`); None: no limit, kubelet's default.
    pub pod_pids_limit: Option<i64>,
    /// Containers that name no seccomp profile get RuntimeDefault (kubelet's `seccompDefault`).
    pub seccomp_default: bool,
}

/// The node's runtime. The container manager is opened on first use, on a blocking thread.
pub struct NodeRuntime {
    data_dir: PathBuf,
    skiff_binary: PathBuf,
    runtime_kind: RuntimeKind,
    fields: NodeFields,
    images: ImageStore,
    /// The node's DNS settings, the base of each pod's resolv.conf.
    dns: NodeDns,
    containers: OnceLock<ContainerManager>,
    /// Root filesystems mounted by this process, by container id.
    rootfs: Mutex<HashMap<String, RootFs>>,
    /// Held while a memory-backed emptyDir is checked and mounted.
    volume_lock: Mutex<()>,
    /// Gives each sandbox its interface and address; None: pods have only loopback.
    network: Option<Arc<dyn skiff_net::PodNetwork>>,
}

fn failure(what: &str) -> impl Fn(&dyn std::fmt::Display) -> RuntimeFailure + '_ {
    move |e| RuntimeFailure(format!("{what}: {e}"))
}

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl NodeRuntime {
    /// The runtime for `data_dir`, running containers with `runtime_kind` under monitors started
    /// from `skiff_binary` (`skiff internal monitor`).
    pub fn open(
        data_dir: &Path,
        skiff_binary: PathBuf,
        runtime_kind: RuntimeKind,
        fields: NodeFields,
    ) -> RuntimeResult<NodeRuntime> {
        let images =
            ImageStore::open(data_dir).map_err(|e| failure("opening the image store")(&e))?;
        Ok(NodeRuntime {
            data_dir: data_dir.to_path_buf(),
            skiff_binary,
            runtime_kind,
            fields,
            images,
            dns: NodeDns::for_host(),
            containers: OnceLock::new(),
            rootfs: Mutex::new(HashMap::new()),
            volume_lock: Mutex::new(()),
            network: None,
        })
    }

    /// Connects every sandbox to `network`.
    pub fn with_network(mut self, network: Arc<dyn skiff_net::PodNetwork>) -> NodeRuntime {
        self.network = Some(network);
        self
    }

    fn sandboxes_root(&self) -> PathBuf {
        self.data_dir.join("sandboxes")
    }

    fn containers(&self) -> RuntimeResult<&ContainerManager> {
        if let Some(m) = self.containers.get() {
            return Ok(m);
        }
        let runtime = CliRuntime::new(self.runtime_kind, self.data_dir.join("runc"));
        let helpers = vec![self.skiff_binary.clone(), PathBuf::from("internal")];
        let manager = ContainerManager::open(
            &self.data_dir.join("containers"),
            runtime,
            helpers,
            LogOptions::default(),
        )
        .map_err(|e| failure("opening the container manager")(&e))?;
        Ok(self.containers.get_or_init(|| manager))
    }

    fn rootfs_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, RootFs>> {
        self.rootfs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        pod_dir(&self.data_dir, uid)
    }

    /// The host paths of the container's volume mounts (emptyDir created on first use).
    fn mounts(&self, pod: &Pod, container: &Container) -> RuntimeResult<Vec<MountSpec>> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let volume = volumes
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| RuntimeFailure(format!("volume {:?} is not in the pod", m.name)))?;
            let mut source = if let Some(empty_dir) = &volume.empty_dir {
                let dir = self.pod_dir(uid).join("volumes").join(&volume.name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| failure(&format!("creating emptyDir {}", dir.display()))(&e))?;
                if empty_dir.medium.as_deref() == Some("Memory") {
                    // A pod's containers start at once: one mounts, the others find it mounted.
                    let _guard = self
                        .volume_lock
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if !is_mount_point(&dir) {
                        let size =
                            memory_volume_size(pod, empty_dir, self.fields.allocatable_memory);
                        mount_tmpfs(&dir, size).map_err(|e| {
                            failure(&format!("mounting emptyDir {} (tmpfs)", volume.name))(&e)
                        })?;
                    }
                }
                // Kubelet's emptyDir is world-writable; with the pod's fsGroup its files
                // belong to that group, and its directories are setgid so new ones do too.
                let fs_group = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.security_context.as_ref())
                    .and_then(|s| s.fs_group);
                prepare_empty_dir(&dir, fs_group)
                    .map_err(|e| failure(&format!("preparing emptyDir {}", volume.name))(&e))?;
                dir
            } else if let Some(host) = &volume.host_path {
                let path = PathBuf::from(&host.path);
                match host.type_.as_deref().unwrap_or_default() {
                    "Directory" if !path.is_dir() => {
                        return Err(RuntimeFailure(format!(
                            "hostPath type check failed: {} is not a directory",
                            host.path
                        )))
                    }
                    "DirectoryOrCreate" => std::fs::create_dir_all(&path)
                        .map_err(|e| failure(&format!("creating {}", host.path))(&e))?,
                    "File" if !path.is_file() => {
                        return Err(RuntimeFailure(format!(
                            "hostPath type check failed: {} is not a file",
                            host.path
                        )))
                    }
                    _ => {}
                }
                path
            } else {
                return Err(RuntimeFailure(format!(
                    "volume {:?}: only emptyDir and hostPath volumes are supported",
                    volume.name
                )));
            };
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                source = source.join(sub);
            }
            mounts.push(MountSpec {
                destination: PathBuf::from(&m.mount_path),
                source,
                read_only: m.read_only.unwrap_or(false),
            });
        }
        Ok(mounts)
    }

    /// Removes a root filesystem this process did not mount (the agent restarted).
    fn remove_rootfs_dir(dir: &Path) -> RuntimeResult<()> {
        if !dir.exists() {
            return Ok(());
        }
        let merged = dir.join("merged");
        match rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(failure(&format!("unmounting {}", merged.display()))(&e)),
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| failure(&format!("removing {}", dir.display()))(&e))
    }
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

/// The size of a memory-backed emptyDir, kubelet's way: its sizeLimit; else the pod's memory
/// limit when every container has one; else the node's allocatable memory.
fn memory_volume_size(
    pod: &Pod,
    empty_dir: &k8s_openapi::api::core::v1::EmptyDirVolumeSource,
    node_allocatable: i64,
) -> i64 {
    let bytes = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        skiff_api::validation::parse_quantity(&q.0)
            .map(|billionths| {
                i64::try_from(billionths.div_euclid(1_000_000_000)).unwrap_or(i64::MAX)
            })
            .filter(|b| *b > 0)
    };
    if let Some(limit) = empty_dir.size_limit.as_ref().and_then(bytes) {
        return limit;
    }
    let pod_limit = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .try_fold(0i64, |sum, c| {
            let limit = c
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .and_then(bytes)?;
            Some(sum.saturating_add(limit))
        })
        .filter(|sum| *sum > 0);
    pod_limit.unwrap_or(node_allocatable).max(0)
}

/// Mounts a tmpfs of `size` bytes (0: the kernel's default, half of RAM) at `dir`.
fn mount_tmpfs(dir: &Path, size: i64) -> rustix::io::Result<()> {
    use rustix::mount::{mount, MountFlags};
    let data = if size > 0 {
        format!("size={size}")
    } else {
        String::new()
    };
    // Built from digits only, so it has no NUL.
    let data = std::ffi::CString::new(data).map_err(|_| rustix::io::Errno::INVAL)?;
    mount(
        "tmpfs",
        dir,
        "tmpfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        Some(data.as_c_str()),
    )
}

/// Unmounts the memory-backed emptyDirs of the pod whose directory is `pod_dir`, so the
/// directory can be removed.
fn unmount_volumes(pod_dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return errors;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        // Every mount stacked there (an older agent may have mounted twice).
        for _ in 0..16 {
            if !is_mount_point(&dir) {
                break;
            }
            if let Err(e) = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH) {
                errors.push(format!("unmounting {}: {e}", dir.display()));
                break;
            }
        }
    }
    errors
}

/// A pod's directory under the agent's data directory: `pods/<uid>`.
pub(crate) fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid)
}

/// Where attempt `attempt` of container `container` of pod `uid` writes its CRI log:
/// `pods/<uid>/logs/<container>/<attempt>.log` (kubelet's /var/log/pods).
pub(crate) fn container_log_path(
    data_dir: &Path,
    uid: &str,
    container: &str,
    attempt: u32,
) -> PathBuf {
    pod_dir(data_dir, uid)
        .join("logs")
        .join(container)
        .join(format!("{attempt}.log"))
}

/// The cgroup (cgroupfs path) the pod's containers' cgroups live in.
pub fn pod_cgroup(uid: &str) -> String {
    format!("/skiff/pod{uid}")
}

/// An image config's StopSignal (`SIGQUIT`, `QUIT`, `3`) as a number.
pub fn stop_signal(config: &serde_json::Value) -> Option<i32> {
    let name = config
        .get("config")
        .and_then(|c| c.get("StopSignal"))
        .and_then(|s| s.as_str())?;
    skiff_runtime::container::signal_number(name)
}

/// An emptyDir's permissions as kubelet sets them: mode 0777, then with an fsGroup every file
/// and directory in it group-owned by it and group read-write, directories setgid (kubelet's
/// SetVolumeOwnership, rerun at each container start as kubelet reruns it at each mount).
fn prepare_empty_dir(dir: &Path, fs_group: Option<i64>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o777 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode(meta.permissions().mode() | 0o777),
        )?;
    }
    let Some(gid) = fs_group else {
        return Ok(());
    };
    let gid = u32::try_from(gid).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("fsGroup {gid} is out of range"),
        )
    })?;
    fn own(path: &Path, gid: u32) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, None, Some(gid))?;
        let mut mode = meta.permissions().mode() | 0o660;
        if meta.is_dir() {
            mode |= 0o2110;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                own(&entry?.path(), gid)?;
            }
        }
        Ok(())
    }
    own(dir, gid)
}

impl PodRuntime for NodeRuntime {
    fn find_image(&self, image: &str) -> RuntimeResult<Option<ImageRef>> {
        let reference =
            Reference::parse(image).map_err(|e| failure(&format!("image {image:?}"))(&e))?;
        let record = self
            .images
            .resolve(image)
            .map_err(|e| failure(&format!("looking up image {image:?}"))(&e))?;
        Ok(record.map(|r| {
            let (image, image_id) = reported_image(&r, &reference);
            ImageRef {
                image,
                image_id,
                stop_signal: stop_signal(&r.config),
            }
        }))
    }

    fn pull_image(&self, image: &str, credentials: &[Credentials]) -> RuntimeResult<ImageRef> {
        let reference =
            Reference::parse(image).map_err(|e| failure(&format!("image {image:?}"))(&e))?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| failure("pulling needs the async runtime")(&e))?;
        // Kubelet tries each matching credential and reports the last failure.
        let attempts: Vec<Option<Credentials>> = if credentials.is_empty() {
            vec![None]
        } else {
            credentials.iter().cloned().map(Some).collect()
        };
        let mut last = None;
        let mut record = None;
        for credentials in attempts {
            let options = PullOptions {
                credentials,
                ..PullOptions::default()
            };
            match handle.block_on(pull(&self.images, &reference, &options)) {
                Ok(r) => {
                    record = Some(r);
                    break;
                }
                Err(e) => last = Some(RuntimeFailure(e.to_string())),
            }
        }
        let record = match (record, last) {
            (Some(r), _) => r,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(RuntimeFailure(format!("nothing pulled {image:?}"))),
        };
        let (image, image_id) = reported_image(&record, &reference);
        Ok(ImageRef {
            image,
            image_id,
            stop_signal: stop_signal(&record.config),
        })
    }

    fn create_sandbox(&self, pod: &Pod) -> RuntimeResult<CreatedSandbox> {
        let spec =
            SandboxSpec::for_pod(pod, &self.dns).map_err(|e| RuntimeFailure(e.to_string()))?;
        let mut sandbox = Sandbox::create(&self.sandboxes_root(), &self.skiff_binary, &spec)
            .map_err(|e| RuntimeFailure(e.to_string()))?;
        if spec.host_network {
            // The node's network: no interface, address or hostPort of the pod's own; its IP
            // is the node's (status.podIP = hostIP, as kubelet reports it).
            let host_ip = self.fields.host_ip.parse::<IpAddr>().map_err(|e| {
                RuntimeFailure(format!("the node's address {:?}: {e}", self.fields.host_ip))
            });
            let recorded = host_ip.and_then(|ip| {
                sandbox
                    .set_pod_ips(&[ip])
                    .map_err(|e| RuntimeFailure(e.to_string()))
            });
            if let Err(error) = recorded {
                if let Err(e) = self.remove_sandbox(&sandbox.id) {
                    tracing::warn!(pod_namespace = %spec.namespace, pod_name = %spec.name, pod_uid = %spec.uid, sandbox = %sandbox.id, error = %e, "removing a sandbox that failed");
                }
                return Err(error);
            }
        } else if let Some(network) = &self.network {
            let request = skiff_net::PodNetworkRequest {
                sandbox_id: &sandbox.id,
                netns: &sandbox.net_ns,
                pod_namespace: &spec.namespace,
                pod_name: &spec.name,
                pod_uid: &spec.uid,
                host_ports: skiff_net::host_ports(pod),
            };
            let connected = network
                .set_up(&request)
                .map_err(|e| RuntimeFailure(format!("cannot set up the pod's network: {e}")))
                .and_then(|status| {
                    sandbox
                        .set_pod_ips(&status.ips)
                        .map_err(|e| RuntimeFailure(e.to_string()))
                });
            if let Err(error) = connected {
                // No half-made sandbox stays behind a failed set-up: the next try starts anew.
                if let Err(e) = self.remove_sandbox(&sandbox.id) {
                    tracing::warn!(pod_namespace = %spec.namespace, pod_name = %spec.name, pod_uid = %spec.uid, sandbox = %sandbox.id, error = %e, "removing a sandbox whose network failed");
                }
                return Err(error);
            }
        }
        Ok(CreatedSandbox {
            id: sandbox.id,
            pod_ips: sandbox.pod_ips.iter().map(IpAddr::to_string).collect(),
        })
    }

    fn remove_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let root = self.sandboxes_root();
        let uid = Sandbox::open(&root, id)
            .ok()
            .flatten()
            .map(|s| s.spec.uid)
            .filter(|u| !u.is_empty());
        let mut errors = Vec::new();
        if let Err(e) = self.stop_sandbox(id) {
            errors.push(e.0);
        }
        if let Some(uid) = uid {
            if let Err(e) = self.remove_pod_files(&uid) {
                errors.push(e.0);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeFailure(errors.join("; ")))
        }
    }

    fn stop_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let root = self.sandboxes_root();
        let record = Sandbox::open(&root, id).ok().flatten();
        // A hostNetwork sandbox had nothing of the pod network: none of it is touched.
        let network = self
            .network
            .as_ref()
            .filter(|_| !record.as_ref().is_some_and(|s| s.spec.host_network));
        let mut errors = Vec::new();
        // CNI plugins remove what they made inside the namespace: they run while it exists.
        // If they fail, the sandbox goes anyway; their cache entry keeps the DEL for the next
        // removal or the collection at start.
        let torn_down = network.filter(|n| n.tears_down_before_sandbox());
        if let Some(network) = torn_down {
            if let Err(e) = network.tear_down(id) {
                errors.push(format!("removing the pod's network: {e}"));
            }
        }
        let removed = Sandbox::remove(&root, id);
        // With the sandbox's namespace gone, the kernel removes its veth pair (in a batch, off
        // this path); the address, hostPorts and record are ours to release. If the sandbox
        // could not be removed whole, the veth is deleted here.
        let released = network.filter(|n| !n.tears_down_before_sandbox());
        if let Some(network) = released {
            let released = if removed.is_ok() {
                network.release(id)
            } else {
                network.tear_down(id)
            };
            if let Err(e) = released {
                errors.push(format!("removing the pod's network: {e}"));
            }
        }
        if let Err(e) = removed {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeFailure(errors.join("; ")))
        }
    }

    fn remove_pod_files(&self, uid: &str) -> RuntimeResult<()> {
        let mut errors = Vec::new();
        // The pod's cgroup (the parent of its containers'), volumes and logs.
        let cgroup = CgroupLayout::detect().and_then(|l| l.remove(&pod_cgroup(uid)));
        if let Err(e) = cgroup {
            errors.push(format!("removing the pod's cgroup: {e}"));
        }
        let dir = self.pod_dir(uid);
        errors.extend(unmount_volumes(&dir));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("removing {}: {e}", dir.display())),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeFailure(errors.join("; ")))
        }
    }

    fn list_sandboxes(&self) -> RuntimeResult<Vec<RuntimeSandbox>> {
        let root = self.sandboxes_root();
        if !root.exists() {
            return Ok(Vec::new());
        }
        let ids = Sandbox::list(&root).map_err(|e| RuntimeFailure(e.to_string()))?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let record = Sandbox::open(&root, &id).ok().flatten();
                RuntimeSandbox {
                    pod_uid: record.as_ref().map(|s| s.spec.uid.clone()),
                    pod_ips: record
                        .iter()
                        .flat_map(|s| s.pod_ips.iter().map(IpAddr::to_string))
                        .collect(),
                    id,
                }
            })
            .collect())
    }

    fn verify_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let sandbox = Sandbox::open(&self.sandboxes_root(), id)
            .map_err(|e| RuntimeFailure(e.to_string()))?
            .ok_or_else(|| RuntimeFailure(format!("sandbox {id} has no record")))?;
        sandbox.verify().map_err(|e| RuntimeFailure(e.to_string()))
    }

    fn start_container(
        &self,
        id: &str,
        pod: &Pod,
        sandbox_id: &str,
        container: &Container,
        _image: &ImageRef,
    ) -> RuntimeResult<()> {
        let manager = self.containers()?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(limit) = self.fields.pod_pids_limit {
            CgroupLayout::detect()
                .and_then(|layout| layout.limit_pids(&pod_cgroup(&uid), limit))
                .map_err(|e| failure("setting the pod's pids limit")(&e))?;
        }
        let wanted = container.image.clone().unwrap_or_default();
        let record = self
            .images
            .resolve(&wanted)
            .map_err(|e| failure(&format!("looking up image {wanted:?}"))(&e))?
            .ok_or_else(|| RuntimeFailure(format!("image {wanted:?} is not on the node")))?;
        let sandbox = Sandbox::open(&self.sandboxes_root(), sandbox_id)
            .map_err(|e| RuntimeFailure(e.to_string()))?
            .ok_or_else(|| RuntimeFailure(format!("sandbox {sandbox_id} does not exist")))?;
        let dir = self.data_dir.join("rootfs").join(id);
        Self::remove_rootfs_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| failure(&format!("creating {}", parent.display()))(&e))?;
        }
        let rootfs = RootFs::create(&self.images, &record, &dir)
            .map_err(|e| failure("mounting the root filesystem")(&e))?;
        let mounts = self.mounts(pod, container)?;
        let spec = build_spec(&ContainerSpecInput {
            pod,
            container,
            image_config: &record.config,
            rootfs: &rootfs.merged,
            namespaces: NamespacePaths {
                net: Some(sandbox.net_ns.clone()),
                uts: Some(sandbox.uts_ns.clone()),
                ipc: Some(sandbox.ipc_ns.clone()),
                pid: sandbox.pid_ns.clone(),
            },
            pod_files: PodFiles {
                shm: Some(sandbox.shm.clone()),
                hosts: Some(sandbox.hosts.clone()),
                hostname: Some(sandbox.hostname_file.clone()),
                resolv_conf: Some(sandbox.resolv_conf.clone()),
            },
            mounts,
            termination_log: Some(manager.termination_log_path(id)),
            fields: FieldValues {
                node_name: self.fields.node_name.clone(),
                pod_ips: sandbox.pod_ips.iter().map(IpAddr::to_string).collect(),
                host_ips: vec![self.fields.host_ip.clone()],
                node_allocatable_millicpu: self.fields.allocatable_millicpu,
                node_allocatable_memory: self.fields.allocatable_memory,
            },
            cgroup_parent: pod_cgroup(&uid),
            container_id: id.to_string(),
            seccomp: SeccompOptions {
                default_to_runtime_default: self.fields.seccomp_default,
                profile_dir: self.data_dir.join("seccomp"),
            },
        })
        .map_err(|e| RuntimeFailure(e.to_string()))?;
        let attempt = parse_container_id(&uid, id).map_or(0, |(a, _)| a);
        let log_path = container_log_path(&self.data_dir, &uid, &container.name, attempt);
        if let Some(log_dir) = log_path.parent() {
            std::fs::create_dir_all(log_dir)
                .map_err(|e| failure(&format!("creating {}", log_dir.display()))(&e))?;
        }
        let started = manager.start(id, &spec, &log_path);
        // Whether it runs or failed to start, a recorded container keeps its root filesystem
        // until it is removed; one that was never recorded drops it here.
        let recorded = started.is_ok() || matches!(manager.status(id), Ok(Some(_)));
        if recorded {
            self.rootfs_map().insert(id.to_string(), rootfs);
        }
        started
            .map(|_| ())
            .map_err(|e| RuntimeFailure(e.to_string()))
    }

    fn log_tail(
        &self,
        id: &str,
        max_lines: usize,
        max_bytes: usize,
    ) -> RuntimeResult<Option<String>> {
        let Some(uid) = crate::runtime::container_pod_uid(id) else {
            return Ok(None);
        };
        let Some((attempt, name)) = parse_container_id(uid, id) else {
            return Ok(None);
        };
        let path = container_log_path(&self.data_dir, uid, name, attempt);
        match skiff_runtime::container::log::tail(&path, max_lines, max_bytes) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failure(&format!("reading {}", path.display()))(&e)),
        }
    }

    fn container_state(&self, id: &str) -> RuntimeResult<Option<RuntimeState>> {
        let status = self
            .containers()?
            .status(id)
            .map_err(|e| RuntimeFailure(e.to_string()))?;
        Ok(status.map(|s| match s.state {
            ContainerState::Created => RuntimeState::Created,
            ContainerState::Running { started_at, .. } => RuntimeState::Running {
                started_at: timestamp(started_at),
            },
            ContainerState::Exited {
                exit_code,
                reason,
                started_at,
                finished_at,
                message,
            } => RuntimeState::Exited {
                exit_code,
                reason,
                message,
                started_at: started_at.map(timestamp),
                finished_at: timestamp(finished_at),
            },
        }))
    }

    fn stop_container(&self, id: &str, signal: i32, grace: Duration) -> RuntimeResult<()> {
        match self.containers()?.stop(id, signal, grace) {
            Ok(_) | Err(skiff_runtime::container::ContainerError::NotFound(_)) => Ok(()),
            Err(e) => Err(RuntimeFailure(e.to_string())),
        }
    }

    fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        let mut errors = Vec::new();
        if let Err(e) = self.containers()?.remove(id) {
            errors.push(e.to_string());
        }
        let mounted = self.rootfs_map().remove(id);
        let rootfs = match mounted {
            Some(r) => r.remove().map_err(|e| RuntimeFailure(e.to_string())),
            None => Self::remove_rootfs_dir(&self.data_dir.join("rootfs").join(id)),
        };
        if let Err(e) = rootfs {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeFailure(errors.join("; ")))
        }
    }

    fn needs_pod_cidr(&self) -> bool {
        self.network.as_ref().is_some_and(|n| n.needs_pod_cidr())
    }

    fn uses_pod_cidr(&self) -> bool {
        self.network.as_ref().is_some_and(|n| n.uses_pod_cidr())
    }

    fn configure_pod_network(&self, pod_cidr: &str) -> RuntimeResult<()> {
        let Some(network) = &self.network else {
            return Ok(());
        };
        let cidr: skiff_net::Ipv4Cidr = pod_cidr
            .parse()
            .map_err(|e| RuntimeFailure(format!("the node's podCIDR is not valid: {e}")))?;
        network
            .configure(cidr)
            .map_err(|e| RuntimeFailure(format!("cannot set up the node's pod network: {e}")))
    }

    fn collect_orphans(&self, live: &std::collections::HashSet<String>) -> RuntimeResult<()> {
        let mut errors = Vec::new();
        let gone = |uid: &str| !uid.is_empty() && !live.contains(uid);
        let entries = |dir: PathBuf| -> Vec<(String, PathBuf)> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (uid, dir) in entries(self.data_dir.join("pods")) {
            if gone(&uid) {
                tracing::info!(pod_uid = %uid, "removing the directory of a pod that is gone");
                errors.extend(unmount_volumes(&dir));
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    errors.push(format!("removing {}: {e}", dir.display()));
                }
            }
        }
        for (id, dir) in entries(self.data_dir.join("rootfs")) {
            let uid = crate::runtime::container_pod_uid(&id).unwrap_or_default();
            if gone(uid) {
                let mut mounted = self.rootfs_map();
                match mounted.remove(&id) {
                    Some(rootfs) => {
                        if let Err(e) = rootfs.remove() {
                            errors.push(format!("root filesystem {id}: {e}"));
                        }
                    }
                    None => {
                        if let Err(e) = Self::remove_rootfs_dir(&dir) {
                            errors.push(e.0);
                        }
                    }
                }
            }
        }
        // Networking of sandboxes that are gone (the worker removed those of gone pods before
        // this runs): addresses, veths, hostPorts.
        if let Some(network) = &self.network {
            match Sandbox::list(&self.sandboxes_root()) {
                Ok(ids) => {
                    let live = ids.into_iter().collect();
                    if let Err(e) = network.collect_garbage(&live) {
                        errors.push(format!("pod networks: {e}"));
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeFailure(errors.join("; ")))
        }
    }

    fn prepare_exec(
        &self,
        id: &str,
        args: &[String],
        tty: bool,
    ) -> RuntimeResult<skiff_runtime::container::exec::PreparedExec> {
        self.containers()?
            .prepare_exec(id, args, tty)
            .map_err(|e| RuntimeFailure(e.to_string()))
    }

    fn spawn_exec(
        &self,
        id: &str,
        args: &[String],
        stdio: [std::os::fd::BorrowedFd<'_>; 3],
    ) -> RuntimeResult<std::os::unix::net::UnixStream> {
        self.containers()?
            .spawn_exec(id, args, false, stdio)
            .map_err(|e| RuntimeFailure(e.to_string()))
    }

    fn attach(&self, id: &str) -> RuntimeResult<Option<std::os::unix::net::UnixStream>> {
        use skiff_runtime::container::attach;
        let dir = self.containers()?.container_dir(id);
        if !dir.join(attach::SOCKET_FILE).exists() {
            return Ok(None);
        }
        attach::connect(&dir)
            .map(Some)
            .map_err(|e| RuntimeFailure(format!("attaching to container {id}: {e}")))
    }

    fn pod_network_namespace(&self, pod_uid: &str) -> RuntimeResult<Option<PathBuf>> {
        let root = self.sandboxes_root();
        if !root.exists() {
            return Ok(None);
        }
        let ids = Sandbox::list(&root).map_err(|e| RuntimeFailure(e.to_string()))?;
        Ok(ids
            .iter()
            .filter_map(|id| Sandbox::open(&root, id).ok().flatten())
            .find(|s| s.spec.uid == pod_uid)
            .map(|s| s.net_ns))
    }

    fn list_containers(&self) -> RuntimeResult<Vec<String>> {
        self.containers()?
            .list()
            .map_err(|e| RuntimeFailure(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn memory_volume_size_is_the_size_limit_else_the_pods_limit_else_the_nodes() {
        let pod = |limits: &[Option<&str>]| -> Pod {
            let containers: Vec<_> = limits
                .iter()
                .enumerate()
                .map(|(i, l)| match l {
                    Some(l) => {
                        json!({"name": format!("c{i}"), "resources": {"limits": {"memory": l}}})
                    }
                    None => json!({"name": format!("c{i}")}),
                })
                .collect();
            serde_json::from_value(json!({"spec": {"containers": containers}})).expect("pod")
        };
        let dir = |size: Option<&str>| -> k8s_openapi::api::core::v1::EmptyDirVolumeSource {
            serde_json::from_value(json!({"medium": "Memory", "sizeLimit": size})).expect("dir")
        };
        let node = 1 << 30;
        assert_eq!(
            memory_volume_size(&pod(&[Some("64Mi")]), &dir(Some("8Mi")), node),
            8 << 20
        );
        assert_eq!(
            memory_volume_size(&pod(&[Some("64Mi"), Some("1Mi")]), &dir(None), node),
            65 << 20
        );
        assert_eq!(
            memory_volume_size(&pod(&[Some("64Mi"), None]), &dir(None), node),
            node
        );
    }

    #[test]
    fn stop_signals() {
        assert_eq!(
            stop_signal(&json!({"config": {"StopSignal": "SIGQUIT"}})),
            Some(3)
        );
        assert_eq!(
            stop_signal(&json!({"config": {"StopSignal": "WINCH"}})),
            Some(28)
        );
        assert_eq!(
            stop_signal(&json!({"config": {"StopSignal": "9"}})),
            Some(9)
        );
        assert_eq!(stop_signal(&json!({"config": {}})), None);
    }
}
