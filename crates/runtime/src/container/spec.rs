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
use super::seccomp::{seccomp_filter, SeccompOptions};
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
    /// The node's seccomp settings (its default and its Localhost profiles).
    pub seccomp: SeccompOptions,
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

/// The kernel's number of capability `name` (`CAP_CHOWN` is 0).
pub(crate) fn capability_number(name: &str) -> Option<u32> {
    ALL_CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .and_then(|i| u32::try_from(i).ok())
}

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
    use super::attach::{STDIN_ANNOTATION, STDIN_ONCE_ANNOTATION};
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
    let security = container.security_context.as_ref();
    let privileged = security.and_then(|s| s.privileged).unwrap_or(false);
    let capabilities = if privileged {
        current_capabilities()
    } else {
        capabilities(container)?
    };
    // privileged lifts the seccomp filter, the masked and read-only paths and the read-only
    // /sys, and gives the host's devices (as containerd); procMount Unmasked lifts the paths.
    let seccomp = if privileged {
        None
    } else {
        seccomp_filter(input.pod, container, &capabilities, &input.seccomp)?
    };
    let unmasked = privileged
        || security
            .and_then(|s| s.proc_mount.as_deref())
            .is_some_and(|m| m == "Unmasked");
    let (masked_paths, readonly_paths): (&[&str], &[&str]) = if unmasked {
        (&[], &[])
    } else {
        (MASKED_PATHS, READONLY_PATHS)
    };
    let no_new_privileges = security
        .and_then(|s| s.allow_privilege_escalation)
        .map(|allow| !allow)
        .unwrap_or(false);
    let read_only_root = security
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);

    let nofile = nofile_limit();
    let mut resources = super::resources::container_resources(input)?;
    let devices = if privileged {
        // Every device of the host, in the container's device cgroup too.
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
        host_devices()
    } else {
        Vec::new()
    };
    let oom_score_adj = super::resources::oom_score_adj(input);

    let rootfs = input.rootfs.to_str().ok_or_else(|| {
        ContainerError::Spec(format!("rootfs {} is not UTF-8", input.rootfs.display()))
    })?;

    let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    // hostPID and hostIPC: no namespace of that kind, so the container stays in the host's.
    let pod_spec = input.pod.spec.as_ref();
    let host_pid = pod_spec.and_then(|s| s.host_pid).unwrap_or(false);
    let host_ipc = pod_spec.and_then(|s| s.host_ipc).unwrap_or(false);
    for (kind, path) in [
        ("pid", &input.namespaces.pid),
        ("network", &input.namespaces.net),
        ("ipc", &input.namespaces.ipc),
        ("uts", &input.namespaces.uts),
    ] {
        if (kind == "pid" && host_pid) || (kind == "ipc" && host_ipc) {
            continue;
        }
        namespaces.push(match path {
            Some(path) => json!({"type": kind, "path": path}),
            None => json!({"type": kind}),
        });
    }

    // Dotted names: runc turns every dot into a slash under /proc/sys.
    let sysctl: BTreeMap<String, String> = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref())
        .map(|list| {
            list.iter()
                .map(|s| (skiff_api::sysctl::dotted(&s.name), s.value.clone()))
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

    // `tty` gives the container a terminal (the runtime makes it; its monitor gets the master);
    // `stdin` has no OCI field: the monitor reads it from these annotations.
    let tty = container.tty.unwrap_or(false);
    let stdin = container.stdin.unwrap_or(false);
    let stdin_once = stdin && container.stdin_once.unwrap_or(false);
    let mut annotations = serde_json::Map::new();
    if stdin {
        annotations.insert(STDIN_ANNOTATION.to_owned(), json!("true"));
    }
    if stdin_once {
        annotations.insert(STDIN_ONCE_ANNOTATION.to_owned(), json!("true"));
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": rootfs, "readonly": read_only_root},
        "annotations": annotations,
        "process": {
            "terminal": tty,
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
        "mounts": mounts(input, privileged)?,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "sysctl": sysctl,
            "maskedPaths": masked_paths,
            "readonlyPaths": readonly_paths,
            "devices": devices,
        },
    });
    let mut spec = spec;
    if let Some(filter) = seccomp {
        spec["linux"]["seccomp"] = filter;
    }
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

/// The process's environment: containerd's default PATH and the pod's HOSTNAME, then the
/// image's Env, then the container's env in order (a later name replaces an earlier one in
/// place).
fn environment(input: &ContainerSpecInput, image: &ImageProcess) -> Result<Vec<String>> {
    let meta = &input.pod.metadata;
    let spec = input.pod.spec.as_ref();
    // The domain does not matter here, only the hostname.
    let (hostname, _) = crate::sandbox::files::pod_hostname(
        meta.name.as_deref().unwrap_or_default(),
        spec.and_then(|s| s.hostname.as_deref()),
        None,
        "",
        "",
    );
    let mut env: Vec<(String, String)> = vec![
        ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
        ("HOSTNAME".to_owned(), hostname),
    ];
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
    let run_as_non_root = security
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_security.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if run_as_non_root {
        verify_run_as_non_root(input, run_as_user, image.user.as_deref())?;
    }

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

/// Kubelet's messages for a container that breaks its runAsNonRoot: they are configuration
/// errors (`CreateContainerConfigError`), found before the runtime is asked.
pub const RUN_AS_NON_ROOT_MESSAGES: &[&str] = &[
    "container has runAsNonRoot and image will run as root",
    "container has runAsNonRoot and image has non-numeric user",
    "container's runAsUser breaks non-root policy",
];

/// Whether `message` is one of kubelet's configuration errors (the Waiting reason
/// `CreateContainerConfigError` rather than `CreateContainerError`).
pub fn is_config_error(message: &str) -> bool {
    RUN_AS_NON_ROOT_MESSAGES
        .iter()
        .any(|m| message.starts_with(m))
}

/// Kubelet's runAsNonRoot check: the effective runAsUser must not be 0; without one, the
/// image's user must be numeric and not 0 (an image with no user runs as root).
fn verify_run_as_non_root(
    input: &ContainerSpecInput,
    run_as_user: Option<i64>,
    image_user: Option<&str>,
) -> Result<()> {
    let meta = &input.pod.metadata;
    let pod = format!(
        "{}_{}({})",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    );
    let container = &input.container.name;
    let fail = |what: String| Err(ContainerError::Config(what));
    if let Some(uid) = run_as_user {
        if uid == 0 {
            return fail(format!(
                "{} (pod: {pod:?}, container: {container})",
                RUN_AS_NON_ROOT_MESSAGES[2]
            ));
        }
        return Ok(());
    }
    let user = image_user.unwrap_or_default();
    let user_part = user.split_once(':').map_or(user, |(u, _)| u);
    if user_part.is_empty() {
        return fail(format!(
            "{} (pod: {pod:?}, container: {container})",
            RUN_AS_NON_ROOT_MESSAGES[0]
        ));
    }
    match user_part.parse::<u32>() {
        Ok(0) => fail(format!(
            "{} (pod: {pod:?}, container: {container})",
            RUN_AS_NON_ROOT_MESSAGES[0]
        )),
        Ok(_) => Ok(()),
        Err(_) => fail(format!(
            "{} ({user_part}), cannot verify user is non-root (pod: {pod:?}, container: {container})",
            RUN_AS_NON_ROOT_MESSAGES[1]
        )),
    }
}

fn to_id(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| ContainerError::Spec(format!("{what} {value} out of range")))
}

/// containerd's default capabilities with the securityContext's add and drop applied; a name
/// the kernel does not have is an error, as the OCI runtime's `unknown capability`.
fn capabilities(container: &Container) -> Result<Vec<String>> {
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let Some(config) = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    else {
        return Ok(caps);
    };
    let normalise = |name: &str| -> Result<String> {
        let upper = name.to_ascii_uppercase();
        let cap = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if capability_number(&cap).is_none() {
            return Err(ContainerError::Spec(format!(
                "unknown capability {cap:?} in the securityContext of container {:?}",
                container.name
            )));
        }
        Ok(cap)
    };
    for add in config.add.iter().flatten() {
        if add.eq_ignore_ascii_case("ALL") {
            caps = current_capabilities();
        } else {
            let cap = normalise(add)?;
            if !caps.contains(&cap) {
                caps.push(cap);
            }
        }
    }
    for drop in config.drop.iter().flatten() {
        if drop.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            let cap = normalise(drop)?;
            caps.retain(|c| *c != cap);
        }
    }
    Ok(caps)
}

/// Every capability this process may hold (its bounding set), as containerd gives a privileged
/// container the ones it has: asking the runtime for one outside it fails ("unable to apply
/// caps") on hosts, or in containers, that withhold some.
fn current_capabilities() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The host's device nodes, as a privileged container gets them (containerd walks /dev the
/// same way, leaving out the pseudo-terminal, shm, mqueue and console entries the container
/// has its own of).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(dir: &Path, out: &mut Vec<Value>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                let name = entry.file_name();
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "mqueue" | "fd" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    walk(&path, out);
                }
                continue;
            }
            let type_ = if kind.is_char_device() {
                "c"
            } else if kind.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
                continue;
            }
            let rdev = meta.rdev();
            out.push(json!({
                "path": path,
                "type": type_,
                "major": rustix::fs::major(rdev),
                "minor": rustix::fs::minor(rdev),
                "fileMode": meta.mode() & 0o7777,
                "uid": meta.uid(),
                "gid": meta.gid(),
            }));
        }
    }
    let mut devices = Vec::new();
    walk(Path::new("/dev"), &mut devices);
    devices
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
fn mounts(input: &ContainerSpecInput, privileged: bool) -> Result<Vec<Value>> {
    let volume_at = |dest: &str| {
        input
            .mounts
            .iter()
            .any(|m| m.destination == Path::new(dest))
    };
    let sys = if privileged { "rw" } else { "ro" };
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
               "options": ["nosuid", "noexec", "nodev", sys]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", sys]}),
    ];
    let host_ipc = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_ipc)
        .unwrap_or(false);
    if host_ipc && !volume_at("/dev/shm") {
        // The host's IPC namespace and its POSIX shared memory, as containerd gives it.
        mounts.push(bind(Path::new("/dev/shm"), Path::new("/dev/shm"), false));
    } else if !volume_at("/dev/shm") {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::attach::StdioConfig;

    fn pod(container: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "prod", "uid": "uid-1",
                "labels": {"app": "kubia", "tier": "front"},
                "annotations": {"note": "hi"},
            },
            "spec": {
                "nodeName": "node-a",
                "serviceAccountName": "robot",
                "containers": [container],
            },
        }))
        .expect("pod")
    }

    fn build(container: Value, image: Value) -> Value {
        build_with(&pod(container), image, |_| {})
    }

    fn build_with(pod: &Pod, image: Value, edit: impl FnOnce(&mut ContainerSpecInput)) -> Value {
        let rootfs = tempfile::tempdir().expect("rootfs");
        std::fs::create_dir(rootfs.path().join("etc")).expect("etc");
        std::fs::write(
            rootfs.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:44::/:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            rootfs.path().join("etc/group"),
            "root:x:0:\nweb:x:44:\nextra:x:50:www\n",
        )
        .expect("group");
        let mut input = ContainerSpecInput {
            pod,
            container: &pod.spec.as_ref().expect("spec").containers[0],
            image_config: &image,
            rootfs: rootfs.path(),
            namespaces: NamespacePaths {
                net: Some("/run/skiff/ns/net".into()),
                uts: Some("/run/skiff/ns/uts".into()),
                ipc: Some("/run/skiff/ns/ipc".into()),
                pid: None,
            },
            pod_files: PodFiles {
                shm: Some("/pods/p/shm".into()),
                hosts: Some("/pods/p/hosts".into()),
                hostname: Some("/pods/p/hostname".into()),
                resolv_conf: Some("/pods/p/resolv.conf".into()),
            },
            mounts: vec![MountSpec {
                destination: "/data".into(),
                source: "/pods/p/volumes/data".into(),
                read_only: true,
            }],
            termination_log: Some("/containers/c/termination-log".into()),
            fields: FieldValues {
                node_name: "node-from-agent".into(),
                pod_ips: vec!["10.42.0.5".into(), "fd00::5".into()],
                host_ips: vec!["192.168.1.2".into()],
                node_allocatable_millicpu: 2000,
                node_allocatable_memory: 4 << 30,
            },
            cgroup_parent: "/skiff/poduid-1".into(),
            container_id: "cid".into(),
            seccomp: SeccompOptions::default(),
        };
        edit(&mut input);
        let spec = build_spec(&input).expect("spec");
        serde_json::to_value(&spec).expect("json")
    }

    /// An input with no namespaces, pod files, mounts or node fields: enough for the
    /// checks that refuse a spec before any of those matter.
    fn bare_input<'a>(
        pod: &'a Pod,
        container: &'a Container,
        image_config: &'a Value,
        rootfs: &'a Path,
    ) -> ContainerSpecInput<'a> {
        ContainerSpecInput {
            pod,
            container,
            image_config,
            rootfs,
            namespaces: NamespacePaths::default(),
            pod_files: PodFiles::default(),
            mounts: vec![],
            termination_log: None,
            fields: FieldValues::default(),
            cgroup_parent: String::new(),
            container_id: "x".into(),
            seccomp: SeccompOptions::default(),
        }
    }

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_owned())
            .collect()
    }

    fn env_of(spec: &Value) -> Vec<String> {
        strings(&spec["process"]["env"])
    }

    #[test]
    fn tty_and_stdin_reach_the_spec() {
        let plain = build(
            json!({"name": "c", "image": "busybox", "command": ["sh"]}),
            json!({}),
        );
        assert_eq!(plain["process"]["terminal"], false);
        let stdio =
            StdioConfig::from_spec(&serde_json::from_value(plain).expect("spec round trip"));
        assert!(!stdio.attachable());
        let interactive = build(
            json!({"name": "c", "image": "busybox", "command": ["sh"],
                "tty": true, "stdin": true, "stdinOnce": true}),
            json!({}),
        );
        assert_eq!(interactive["process"]["terminal"], true);
        let stdio =
            StdioConfig::from_spec(&serde_json::from_value(interactive).expect("spec round trip"));
        assert_eq!(
            stdio,
            StdioConfig {
                stdin: true,
                stdin_once: true,
                tty: true
            }
        );
    }

    #[test]
    fn command_and_args_merge_with_entrypoint_and_cmd_as_kubernetes() {
        let image = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["cmd1", "cmd2"]}});
        let args = |c: Value| strings(&build(c, image.clone())["process"]["args"]);
        assert_eq!(args(json!({"name": "c"})), ["/ep", "cmd1", "cmd2"]);
        assert_eq!(args(json!({"name": "c", "args": ["a"]})), ["/ep", "a"]);
        assert_eq!(args(json!({"name": "c", "command": ["/c"]})), ["/c"]);
        assert_eq!(
            args(json!({"name": "c", "command": ["/c"], "args": ["a", "b"]})),
            ["/c", "a", "b"]
        );
        let cmd_only = json!({"config": {"Cmd": ["sh"]}});
        assert_eq!(
            strings(&build(json!({"name": "c"}), cmd_only)["process"]["args"]),
            ["sh"]
        );
        let error = build_spec(&bare_input(
            &pod(json!({"name": "c"})),
            &serde_json::from_value(json!({"name": "c"})).expect("container"),
            &json!({"config": {}}),
            Path::new("/nonexistent"),
        ))
        .expect_err("no command");
        assert!(
            error.to_string().contains("no command specified"),
            "{error}"
        );
    }

    #[test]
    fn variables_expand_in_command_args_and_env() {
        let spec = build(
            json!({
                "name": "c",
                "command": ["echo", "$(GREETING)", "$$(GREETING)", "$(IMAGE_VAR)"],
                "args": ["$(NAME)-$(MISSING)"],
                "env": [
                    {"name": "GREETING", "value": "hello"},
                    {"name": "NAME", "value": "$(GREETING) world"},
                    {"name": "LATER", "value": "$(AFTER)"},
                    {"name": "AFTER", "value": "x"},
                ],
            }),
            json!({"config": {"Env": ["IMAGE_VAR=img"]}}),
        );
        assert_eq!(
            strings(&spec["process"]["args"]),
            [
                "echo",
                "hello",
                "$(GREETING)",
                "$(IMAGE_VAR)",
                "hello world-$(MISSING)"
            ]
        );
        let env = env_of(&spec);
        assert!(env.contains(&"NAME=hello world".to_owned()));
        assert!(
            env.contains(&"LATER=$(AFTER)".to_owned()),
            "only earlier vars expand"
        );
    }

    #[test]
    fn env_merges_default_path_image_and_container_in_order() {
        let no_path = build(
            json!({"name": "c", "command": ["x"]}),
            json!({"config": {}}),
        );
        assert_eq!(
            env_of(&no_path),
            [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=web".into()]
        );
        let spec = build(
            json!({"name": "c", "command": ["x"], "env": [
                {"name": "B", "value": "pod"},
                {"name": "C", "value": "1"},
                {"name": "C", "value": "2"},
            ]}),
            json!({"config": {"Env": ["PATH=/img/bin", "A=a", "B=image", "EMPTY"]}}),
        );
        assert_eq!(
            env_of(&spec),
            [
                "PATH=/img/bin",
                "HOSTNAME=web",
                "A=a",
                "B=pod",
                "EMPTY=",
                "C=2"
            ]
        );
    }

    #[test]
    fn hostname_env_is_spec_hostname_when_set_and_the_image_may_override_it() {
        let mut pod = pod(json!({"name": "c", "command": ["x"]}));
        pod.spec.as_mut().expect("spec").hostname = Some("db-0".into());
        let spec = build_with(&pod, json!({"config": {}}), |_| {});
        assert!(env_of(&spec).contains(&"HOSTNAME=db-0".to_owned()));
        let spec = build_with(
            &pod,
            json!({"config": {"Env": ["HOSTNAME=from-image"]}}),
            |_| {},
        );
        assert!(env_of(&spec).contains(&"HOSTNAME=from-image".to_owned()));
    }

    #[test]
    fn env_from_the_downward_api() {
        let field = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
        let mut vars = Vec::new();
        for (name, path) in [
            ("NAME", "metadata.name"),
            ("NS", "metadata.namespace"),
            ("UID", "metadata.uid"),
            ("APP", "metadata.labels['app']"),
            ("NOTE", "metadata.annotations['note']"),
            ("NODE", "spec.nodeName"),
            ("SA", "spec.serviceAccountName"),
            ("POD_IP", "status.podIP"),
            ("POD_IPS", "status.podIPs"),
            ("HOST_IP", "status.hostIP"),
            ("HOST_IPS", "status.hostIPs"),
        ] {
            let mut var = field(path);
            var["name"] = json!(name);
            vars.push(var);
        }
        let resource = |name: &str, res: &str, divisor: Option<&str>| {
            let mut r = json!({"resource": res});
            if let Some(d) = divisor {
                r["divisor"] = json!(d);
            }
            json!({"name": name, "valueFrom": {"resourceFieldRef": r}})
        };
        vars.push(resource("CPU_LIMIT", "limits.cpu", None));
        vars.push(resource("CPU_LIMIT_M", "limits.cpu", Some("1m")));
        vars.push(resource("MEM_LIMIT", "limits.memory", Some("1Mi")));
        vars.push(resource("MEM_REQ", "requests.memory", None));
        vars.push(resource("CPU_REQ_M", "requests.cpu", Some("1m")));
        let spec = build(
            json!({"name": "c", "command": ["x"], "env": vars,
                   "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "250m", "memory": "64Mi"}}}),
            json!({}),
        );
        let env = env_of(&spec);
        for want in [
            "NAME=web",
            "NS=prod",
            "UID=uid-1",
            "APP=kubia",
            "NOTE=hi",
            "NODE=node-a",
            "SA=robot",
            "POD_IP=10.42.0.5",
            "POD_IPS=10.42.0.5,fd00::5",
            "HOST_IP=192.168.1.2",
            "HOST_IPS=192.168.1.2",
            "CPU_LIMIT=1",
            "CPU_LIMIT_M=500",
            // No memory limit: the node's allocatable, 4 GiB.
            "MEM_LIMIT=4096",
            "MEM_REQ=67108864",
            "CPU_REQ_M=250",
        ] {
            assert!(env.contains(&want.to_owned()), "{want} not in {env:?}");
        }
        let bad = build_spec(&bare_input(
            &pod(json!({"name": "c"})),
            &serde_json::from_value(json!({"name": "c", "command": ["x"],
                "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]}))
            .expect("container"),
            &json!({}),
            Path::new("/nonexistent"),
        ));
        assert!(bad.is_err());
    }

    #[test]
    fn working_dir_and_user() {
        let image = json!({"config": {"WorkingDir": "/img", "User": "www"}});
        let spec = build(json!({"name": "c", "command": ["x"]}), image.clone());
        assert_eq!(spec["process"]["cwd"], "/img");
        assert_eq!(spec["process"]["user"]["uid"], 33);
        assert_eq!(spec["process"]["user"]["gid"], 44);
        assert_eq!(spec["process"]["user"]["additionalGids"], json!([50]));
        let spec = build(
            json!({"name": "c", "command": ["x"], "workingDir": "/mine",
                   "securityContext": {"runAsUser": 1000, "runAsGroup": 2000}}),
            image,
        );
        assert_eq!(spec["process"]["cwd"], "/mine");
        assert_eq!(spec["process"]["user"]["uid"], 1000);
        assert_eq!(spec["process"]["user"]["gid"], 2000);
        let spec = build(json!({"name": "c", "command": ["x"]}), json!({}));
        assert_eq!(spec["process"]["cwd"], "/");
        assert_eq!(spec["process"]["user"]["uid"], 0);
    }

    #[test]
    fn namespaces_mounts_and_no_hostname() {
        let spec = build(json!({"name": "c", "command": ["x"]}), json!({}));
        assert!(
            spec.get("hostname").is_none(),
            "the pod's UTS namespace has it"
        );
        let ns = spec["linux"]["namespaces"].as_array().expect("namespaces");
        let find = |kind: &str| ns.iter().find(|n| n["type"] == kind).cloned();
        assert_eq!(find("network").expect("net")["path"], "/run/skiff/ns/net");
        assert_eq!(find("uts").expect("uts")["path"], "/run/skiff/ns/uts");
        assert_eq!(find("ipc").expect("ipc")["path"], "/run/skiff/ns/ipc");
        assert!(
            find("pid").expect("pid").get("path").is_none(),
            "own pid ns"
        );
        assert!(find("mount").is_some() && find("cgroup").is_some());
        assert_eq!(spec["linux"]["cgroupsPath"], "/skiff/poduid-1/cid");

        let mounts = spec["mounts"].as_array().expect("mounts");
        let at = |dest: &str| {
            mounts
                .iter()
                .find(|m| m["destination"] == dest)
                .unwrap_or_else(|| panic!("no mount at {dest}"))
                .clone()
        };
        assert_eq!(at("/proc")["type"], "proc");
        assert_eq!(at("/dev")["type"], "tmpfs");
        assert_eq!(at("/dev/pts")["type"], "devpts");
        assert_eq!(at("/dev/mqueue")["type"], "mqueue");
        assert!(strings(&at("/sys")["options"]).contains(&"ro".to_owned()));
        assert!(strings(&at("/sys/fs/cgroup")["options"]).contains(&"ro".to_owned()));
        assert_eq!(at("/dev/shm")["source"], "/pods/p/shm");
        assert_eq!(at("/etc/hosts")["source"], "/pods/p/hosts");
        assert_eq!(at("/etc/hostname")["source"], "/pods/p/hostname");
        assert_eq!(at("/etc/resolv.conf")["source"], "/pods/p/resolv.conf");
        assert_eq!(
            at("/dev/termination-log")["source"],
            "/containers/c/termination-log"
        );
        assert!(strings(&at("/data")["options"]).contains(&"ro".to_owned()));
        let rlimits = spec["process"]["rlimits"].as_array().expect("rlimits");
        let hard = rlimits[0]["hard"].as_u64().expect("hard");
        let own = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert!(
            own.is_none_or(|own| hard <= own),
            "nofile {hard} above the hard limit"
        );
        // oci-spec keeps capabilities in a set: compare sorted.
        let mut bounding = strings(&spec["process"]["capabilities"]["bounding"]);
        bounding.sort();
        let mut defaults = DEFAULT_CAPABILITIES.to_vec();
        defaults.sort();
        assert_eq!(bounding, defaults);
        assert!(strings(&spec["linux"]["maskedPaths"]).contains(&"/proc/kcore".to_owned()));
    }

    #[test]
    fn shared_pid_namespace_and_capabilities() {
        let p = pod(json!({"name": "c", "command": ["x"], "securityContext": {
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD", "CAP_KILL"]}}}));
        let spec = build_with(&p, json!({}), |input| {
            input.namespaces.pid = Some("/run/skiff/ns/pid".into());
        });
        let ns = spec["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(ns
            .iter()
            .any(|n| n["type"] == "pid" && n["path"] == "/run/skiff/ns/pid"));
        let caps = strings(&spec["process"]["capabilities"]["effective"]);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!caps.contains(&"CAP_MKNOD".to_owned()));
        assert!(!caps.contains(&"CAP_KILL".to_owned()));
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let spec = build(
            json!({"name": "c", "command": ["x"], "resources": {
                "requests": {"cpu": "250m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "128Mi"}}}),
            json!({}),
        );
        let r = &spec["linux"]["resources"];
        assert_eq!(r["cpu"]["shares"], 256);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["memory"]["limit"], 128 * 1024 * 1024);
        if crate::container::cgroup::swap_limit_supported() {
            assert_eq!(
                r["memory"]["swap"],
                128 * 1024 * 1024,
                "no swap beyond the limit"
            );
        }
        // Burstable: 1000 - 1000 * 64 MiB / 4 GiB.
        assert_eq!(spec["process"]["oomScoreAdj"], 985);
        let best_effort = build(json!({"name": "c", "command": ["x"]}), json!({}));
        assert_eq!(best_effort["linux"]["resources"]["cpu"]["shares"], 2);
        assert!(best_effort["linux"]["resources"]["cpu"]
            .get("quota")
            .is_none());
        assert!(best_effort["linux"]["resources"].get("memory").is_none());
        assert_eq!(best_effort["process"]["oomScoreAdj"], 1000);
        let guaranteed = build(
            json!({"name": "c", "command": ["x"], "resources": {
                "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}),
            json!({}),
        );
        assert_eq!(guaranteed["process"]["oomScoreAdj"], -997);
        assert_eq!(guaranteed["linux"]["resources"]["cpu"]["shares"], 1024);
    }

    #[test]
    fn privileged_lifts_exactly_the_confinement() {
        let plain = build_with(
            &pod(json!({"name": "c", "command": ["x"]})),
            json!({}),
            |input| input.seccomp.default_to_runtime_default = true,
        );
        assert!(plain["linux"].get("seccomp").is_some());
        let spec = build_with(
            &pod(json!({"name": "c", "command": ["x"], "securityContext": {"privileged": true}})),
            json!({}),
            |input| input.seccomp.default_to_runtime_default = true,
        );
        assert!(spec["linux"].get("seccomp").is_none(), "no seccomp");
        assert!(spec["linux"]
            .get("maskedPaths")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)));
        assert!(spec["linux"]
            .get("readonlyPaths")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)));
        let caps = strings(&spec["process"]["capabilities"]["bounding"]);
        assert_eq!(caps.len(), current_capabilities().len());
        assert!(caps.len() > DEFAULT_CAPABILITIES.len());
        let mounts = spec["mounts"].as_array().expect("mounts");
        let sys = mounts
            .iter()
            .find(|m| m["destination"] == "/sys")
            .expect("/sys");
        assert!(strings(&sys["options"]).contains(&"rw".to_owned()));
        let devices = spec["linux"]["devices"].as_array().expect("devices");
        assert!(devices.iter().any(|d| d["path"] == "/dev/null"));
        assert_eq!(
            spec["linux"]["resources"]["devices"][0]["allow"], true,
            "the device cgroup allows all"
        );
        // The user, the namespaces and no_new_privs stay.
        assert_eq!(
            spec["process"]["user"]["uid"],
            plain["process"]["user"]["uid"]
        );
        assert_eq!(spec["linux"]["namespaces"], plain["linux"]["namespaces"]);
    }

    #[test]
    fn proc_mount_unmasked_lifts_the_paths_only() {
        let spec = build(
            json!({"name": "c", "command": ["x"], "securityContext": {"procMount": "Unmasked"}}),
            json!({}),
        );
        assert!(spec["linux"]
            .get("maskedPaths")
            .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty)));
        let caps = strings(&spec["process"]["capabilities"]["bounding"]);
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        let default = build(
            json!({"name": "c", "command": ["x"], "securityContext": {"procMount": "Default"}}),
            json!({}),
        );
        assert!(strings(&default["linux"]["readonlyPaths"]).contains(&"/proc/sys".to_owned()));
    }

    #[test]
    fn an_unknown_capability_is_a_clear_error() {
        let p = pod(json!({"name": "c", "command": ["x"], "securityContext": {
            "capabilities": {"add": ["NET_ADMIN", "SYS_MAGIC"]}}}));
        let error = build_spec(&bare_input(
            &p,
            &p.spec.as_ref().expect("spec").containers[0],
            &json!({}),
            Path::new("/nonexistent"),
        ))
        .expect_err("unknown capability");
        assert!(
            error
                .to_string()
                .contains("unknown capability \"CAP_SYS_MAGIC\""),
            "{error}"
        );
    }

    #[test]
    fn run_as_non_root_refuses_root_with_kubelets_messages() {
        let message = |container: Value, image: Value| -> Option<String> {
            let p = pod(container);
            let rootfs = tempfile::tempdir().expect("rootfs");
            build_spec(&bare_input(
                &p,
                &p.spec.as_ref().expect("spec").containers[0],
                &image,
                rootfs.path(),
            ))
            .err()
            .map(|e| e.to_string())
        };
        let non_root = json!({"runAsNonRoot": true});
        let c = |sc: Value| json!({"name": "c", "command": ["x"], "securityContext": sc});
        let root = message(c(non_root.clone()), json!({})).expect("root image refused");
        assert_eq!(
            root,
            "container has runAsNonRoot and image will run as root (pod: \"web_prod(uid-1)\", container: c)"
        );
        assert!(is_config_error(&root));
        let named = message(c(non_root.clone()), json!({"config": {"User": "www"}}))
            .expect("named user refused");
        assert!(
            named.starts_with("container has runAsNonRoot and image has non-numeric user (www), cannot verify user is non-root"),
            "{named}"
        );
        assert!(message(
            c(non_root.clone()),
            json!({"config": {"User": "1000:1000"}})
        )
        .is_none());
        assert!(message(
            c(json!({"runAsNonRoot": true, "runAsUser": 1000})),
            json!({})
        )
        .is_none());
        let zero = message(c(json!({"runAsNonRoot": true, "runAsUser": 0})), json!({}))
            .expect("uid 0 refused");
        assert!(
            zero.starts_with("container's runAsUser breaks non-root policy"),
            "{zero}"
        );
        assert!(message(c(json!({"runAsNonRoot": false})), json!({})).is_none());
        assert!(!is_config_error("invalid container spec: x"));
    }

    #[test]
    fn host_pid_and_host_ipc_leave_out_those_namespaces() {
        let mut p = pod(json!({"name": "c", "command": ["x"]}));
        let spec = p.spec.as_mut().expect("spec");
        spec.host_pid = Some(true);
        spec.host_ipc = Some(true);
        let spec = build_with(&p, json!({}), |_| {});
        let ns = spec["linux"]["namespaces"].as_array().expect("namespaces");
        let kinds: Vec<&str> = ns
            .iter()
            .map(|n| n["type"].as_str().expect("type"))
            .collect();
        assert!(
            !kinds.contains(&"pid") && !kinds.contains(&"ipc"),
            "{kinds:?}"
        );
        assert!(kinds.contains(&"network") && kinds.contains(&"uts"));
        let shm = spec["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .expect("/dev/shm")
            .clone();
        assert_eq!(shm["source"], "/dev/shm", "the host's shared memory");
    }
}
