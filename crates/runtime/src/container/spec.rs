//! The OCI runtime spec (config.json) of one container: the image's config merged with the pod's
//! container as Kubernetes merges them, the pod sandbox's namespaces joined, and the mounts,
//! devices, capabilities and cgroup settings containerd gives a container. Pure: no I/O except
//! reading the rootfs's /etc/passwd and /etc/group to resolve user names.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::expand::expand;
use super::user::{self, ResolvedUser};
use super::{ContainerError, Result};

/// The sandbox's namespaces, as bind-mounted nsfs files the container joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePaths {
    pub net: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    /// Only when the pod shares its PID namespace (shareProcessNamespace).
    pub pid: Option<PathBuf>,
}

/// Files and directories the pod's sandbox provides to each of its containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// A tmpfs directory bound at /dev/shm (shared by the pod's containers).
    pub shm: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// One volume mount, resolved to a host path (an emptyDir's directory, a hostPath, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: PathBuf,
    pub source: PathBuf,
    pub read_only: bool,
}

/// Values the pod object does not hold (yet) that env `fieldRef`s and `resourceFieldRef`s need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldValues {
    pub node_name: String,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// Node allocatable CPU in millicores: what `limits.cpu` means when the container has none.
    pub node_allocatable_millicpu: i64,
    /// Node allocatable memory in bytes: what `limits.memory` means when the container has none.
    pub node_allocatable_memory: i64,
}

/// Everything [`build_spec`] needs for one container.
#[derive(Clone, Debug)]
pub struct ContainerSpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// The OCI image configuration (the config blob: `{"config": {"Env": ..., ...}, ...}`).
    pub image_config: &'a serde_json::Value,
    /// The container's root filesystem (mounted overlay), absolute.
    pub rootfs: &'a Path,
    pub namespaces: NamespacePaths,
    pub pod_files: PodFiles,
    pub mounts: Vec<MountSpec>,
    /// The host file bound at the container's terminationMessagePath
    /// ([`super::ContainerManager::termination_log_path`]).
    pub termination_log: Option<PathBuf>,
    pub fields: FieldValues,
    /// The container's cgroup is `<cgroup_parent>/<container_id>` (cgroupfs driver), e.g.
    /// `/skiff/pod<uid>`.
    pub cgroup_parent: String,
    pub container_id: String,
}

/// The PATH containerd gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities containerd grants a container that asks for nothing else.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for `drop: [ALL]` / `add: [ALL]`.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's masked and read-only paths.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The highest nofile limit asked of the runtime, as containerd's default; lowered to the
/// agent's own hard limit, since the runtime cannot raise it (podman's 1048576 fails on hosts
/// whose hard limit is lower).
const MAX_NOFILE: u64 = 1_048_576;

/// The OCI runtime spec of a container.
pub fn build_spec(input: &ContainerSpecInput) -> Result<Spec> {
    let container = input.container;
    let image = image_config(input.image_config);

    let env = environment(input, &image)?;
    let expansion_env = kubelet_env(input)?;
    let lookup = |name: &str| expansion_env.get(name).cloned();
    let args = process_args(container, &image, &lookup)?;

    let cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_owned());

    let user = process_user(input, &image)?;
    let capabilities = capabilities(container);
    let security = container.security_context.as_ref();
    let no_new_privileges = security
        .and_then(|s| s.allow_privilege_escalation)
        .map(|allow| !allow)
        .unwrap_or(false);
    let read_only_root = security
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);

    let nofile = nofile_limit();
    let resources = super::resources::container_resources(input)?;
    let oom_score_adj = super::resources::oom_score_adj(input);

    let rootfs = input.rootfs.to_str().ok_or_else(|| {
        ContainerError::Spec(format!("rootfs {} is not UTF-8", input.rootfs.display()))
    })?;

    let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    for (kind, path) in [
        ("pid", &input.namespaces.pid),
        ("network", &input.namespaces.net),
        ("ipc", &input.namespaces.ipc),
        ("uts", &input.namespaces.uts),
    ] {
        namespaces.push(match path {
            Some(path) => json!({"type": kind, "path": path}),
            None => json!({"type": kind}),
        });
    }

    let sysctl: BTreeMap<String, String> = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref())
        .map(|list| {
            list.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();

    let parent = input.cgroup_parent.trim_end_matches('/');
    let cgroups_path = if parent.is_empty() {
        format!("/{}", input.container_id)
    } else if parent.starts_with('/') {
        format!("{parent}/{}", input.container_id)
    } else {
        format!("/{parent}/{}", input.container_id)
    };

    let spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": rootfs, "readonly": read_only_root},
        "process": {
            "terminal": false,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": user.additional_gids,
                "umask": 0o022,
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": no_new_privileges,
            "oomScoreAdj": oom_score_adj,
        },
        "mounts": mounts(input)?,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "sysctl": sysctl,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    serde_json::from_value(spec).map_err(|e| ContainerError::Spec(format!("OCI spec: {e}")))
}

/// The part of an image config a container uses.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageProcess {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// The `config` object of an image config blob (also accepted bare).
fn image_config(value: &Value) -> ImageProcess {
    let inner = value.get("config").unwrap_or(value);
    // A malformed field is treated as absent, as containerd ignores fields it cannot use.
    serde_json::from_value(inner.clone()).unwrap_or_default()
}

/// Kubernetes: `command` replaces the image's Entrypoint (and drops its Cmd); `args` replaces
/// the Cmd. Both are `$(VAR)`-expanded with the container's environment.
fn process_args(
    container: &Container,
    image: &ImageProcess,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let expand_all =
        |list: &[String]| -> Vec<String> { list.iter().map(|s| expand(s, lookup)).collect() };
    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    let mut argv = if !command.is_empty() {
        let mut argv = expand_all(command);
        argv.extend(expand_all(args));
        argv
    } else {
        let mut argv = image.entrypoint.clone().unwrap_or_default();
        if !args.is_empty() {
            argv.extend(expand_all(args));
        } else {
            argv.extend(image.cmd.clone().unwrap_or_default());
        }
        argv
    };
    if argv.is_empty() {
        return Err(ContainerError::Spec(format!(
            "container {:?}: no command specified (neither the pod nor the image gives one)",
            container.name
        )));
    }
    argv.shrink_to_fit();
    Ok(argv)
}

/// The container's own environment as kubelet computes it (in order, each value expanded
/// with the variables defined before it), without the image's: what `$(VAR)` sees.
fn kubelet_env(input: &ContainerSpecInput) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    if input
        .container
        .env_from
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ContainerError::Spec(format!(
            "container {:?}: envFrom is not supported yet",
            input.container.name
        )));
    }
    for var in input.container.env.as_deref().unwrap_or_default() {
        let value = env_value(input, var, &env)?;
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

/// The process's environment: containerd's default PATH, then the image's Env, then the
/// container's env in order (a later name replaces an earlier one in place).
fn environment(input: &ContainerSpecInput, image: &ImageProcess) -> Result<Vec<String>> {
    let mut env: Vec<(String, String)> = vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())];
    let set = |env: &mut Vec<(String, String)>, name: &str, value: String| match env
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some(slot) => slot.1 = value,
        None => env.push((name.to_owned(), value)),
    };
    for entry in image.env.as_deref().unwrap_or_default() {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(&mut env, name, value.to_owned());
    }
    let mut defined = BTreeMap::new();
    for var in input.container.env.as_deref().unwrap_or_default() {
        let value = env_value(input, var, &defined)?;
        defined.insert(var.name.clone(), value.clone());
        set(&mut env, &var.name, value);
    }
    Ok(env.into_iter().map(|(n, v)| format!("{n}={v}")).collect())
}

/// One env var's value: its `value` expanded with the variables before it, or its `valueFrom`.
fn env_value(
    input: &ContainerSpecInput,
    var: &EnvVar,
    defined: &BTreeMap<String, String>,
) -> Result<String> {
    if let Some(source) = &var.value_from {
        if let Some(field) = &source.field_ref {
            return field_value(input, &field.field_path).ok_or_else(|| {
                ContainerError::Spec(format!(
                    "env {}: unsupported fieldRef {:?}",
                    var.name, field.field_path
                ))
            });
        }
        if let Some(resource) = &source.resource_field_ref {
            return super::resources::resource_field_value(input, resource)
                .map_err(|e| ContainerError::Spec(format!("env {}: {e}", var.name)));
        }
        return Err(ContainerError::Spec(format!(
            "env {}: only fieldRef and resourceFieldRef are supported in valueFrom yet",
            var.name
        )));
    }
    let value = var.value.as_deref().unwrap_or_default();
    Ok(expand(value, |name| defined.get(name).cloned()))
}

/// A downward-API field of the pod, as kubelet's `podFieldSelectorRuntimeValue`.
fn field_value(input: &ContainerSpecInput, path: &str) -> Option<String> {
    let meta = &input.pod.metadata;
    let spec = input.pod.spec.as_ref();
    let fields = &input.fields;
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(rest.to_owned())
    };
    if let Some(key) = subscript("metadata.labels['") {
        return Some(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(&key))
                .cloned()
                .unwrap_or_default(),
        );
    }
    if let Some(key) = subscript("metadata.annotations['") {
        return Some(
            meta.annotations
                .as_ref()
                .and_then(|l| l.get(&key))
                .cloned()
                .unwrap_or_default(),
        );
    }
    let first = |list: &[String]| list.first().cloned().unwrap_or_default();
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| fields.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => first(&fields.pod_ips),
        "status.podIPs" => fields.pod_ips.join(","),
        "status.hostIP" => first(&fields.host_ips),
        "status.hostIPs" => fields.host_ips.join(","),
        _ => return None,
    })
}

/// `key="value"` lines, sorted, as the downward API formats a whole label or annotation map.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// The image's user resolved in the rootfs, then the securityContext's runAsUser/runAsGroup
/// (container first, then pod), supplementalGroups and fsGroup.
fn process_user(input: &ContainerSpecInput, image: &ImageProcess) -> Result<ResolvedUser> {
    let pod_security = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let security = input.container.security_context.as_ref();
    let run_as_user = security
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_security.and_then(|s| s.run_as_user));
    let run_as_group = security
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_security.and_then(|s| s.run_as_group));

    let mut resolved = match run_as_user {
        // A uid from the pod: its primary group comes from /etc/passwd when listed there.
        Some(uid) => user::resolve(&uid.to_string(), input.rootfs)?,
        None => match image.user.as_deref().filter(|u| !u.is_empty()) {
            Some(name) => user::resolve(name, input.rootfs)?,
            None => user::resolve("0", input.rootfs)?,
        },
    };
    if let Some(gid) = run_as_group {
        resolved.gid = to_id(gid, "runAsGroup")?;
    }
    if let Some(security) = pod_security {
        for gid in security
            .supplemental_groups
            .iter()
            .flatten()
            .copied()
            .chain(security.fs_group)
        {
            let gid = to_id(gid, "supplementalGroups")?;
            if !resolved.additional_gids.contains(&gid) {
                resolved.additional_gids.push(gid);
            }
        }
    }
    Ok(resolved)
}

fn to_id(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| ContainerError::Spec(format!("{what} {value} out of range")))
}

/// containerd's default capabilities with the securityContext's add and drop applied.
fn capabilities(container: &Container) -> Vec<String> {
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let Some(config) = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    else {
        return caps;
    };
    let normalise = |name: &str| {
        let upper = name.to_ascii_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    for add in config.add.iter().flatten() {
        if add.eq_ignore_ascii_case("ALL") {
            caps = ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        } else {
            let cap = normalise(add);
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    for drop in config.drop.iter().flatten() {
        if drop.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            let cap = normalise(drop);
            caps.retain(|c| *c != cap);
        }
    }
    caps
}

/// The nofile limit: containerd's, capped at this process's hard limit.
fn nofile_limit() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    hard.map_or(MAX_NOFILE, |h| h.min(MAX_NOFILE))
}

fn bind(destination: &Path, source: &Path, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if read_only { "ro" } else { "rw" });
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": options,
    })
}

/// The standard mounts of containerd's CRI plugin, then the pod's files, the termination log
/// and the volumes; a volume at a standard destination replaces the standard mount.
fn mounts(input: &ContainerSpecInput) -> Result<Vec<Value>> {
    let volume_at = |dest: &str| {
        input
            .mounts
            .iter()
            .any(|m| m.destination == Path::new(dest))
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    if !volume_at("/dev/shm") {
        mounts.push(match &input.pod_files.shm {
            Some(shm) => bind(Path::new("/dev/shm"), shm, false),
            None => json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                           "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        });
    }
    let read_only_root = input
        .container
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    for (dest, file) in [
        ("/etc/hosts", &input.pod_files.hosts),
        ("/etc/hostname", &input.pod_files.hostname),
        ("/etc/resolv.conf", &input.pod_files.resolv_conf),
    ] {
        if let Some(file) = file {
            if !volume_at(dest) {
                mounts.push(bind(Path::new(dest), file, read_only_root));
            }
        }
    }
    if let Some(log) = &input.termination_log {
        let dest = input
            .container
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/dev/termination-log".to_owned());
        if !volume_at(&dest) {
            mounts.push(bind(Path::new(&dest), log, false));
        }
    }
    for mount in &input.mounts {
        if !mount.destination.is_absolute() {
            return Err(ContainerError::Spec(format!(
                "mount destination {} is not absolute",
                mount.destination.display()
            )));
        }
        mounts.push(bind(&mount.destination, &mount.source, mount.read_only));
    }
    Ok(mounts)
}
