//! The seccomp filter of a container (OCI `linux.seccomp`): Skiff's RuntimeDefault profile, a
//! Localhost profile read from the node's profile directory, or none (Unconfined). ADR 013.
//!
//! RuntimeDefault allows every syscall but a deny-list: the ones containerd's default profile
//! leaves out (or allows only with a capability), failing with EPERM. A capability that
//! containerd's profile trusts with a syscall re-allows it here too.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};
use serde_json::{json, Value};

use super::{ContainerError, Result};

/// The architectures the profile covers: an x86-64 host runs 32-bit and x32 binaries too,
/// and each has its own syscall numbers.
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Syscalls denied to every container whatever its capabilities: kernel keyrings (not
/// namespaced), the kernel's own tracing and memory hooks, and obsolete or x86-only
/// interfaces that have been the way out of containers.
const ALWAYS_DENIED: &[&str] = &[
    "add_key",
    "keyctl",
    "request_key",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "vm86",
    "vm86old",
    "uselib",
    "_sysctl",
    "nfsservctl",
    "get_kernel_syms",
    "query_module",
    "create_module",
];

/// Syscalls denied unless the container holds the capability (containerd's profile allows
/// them only then).
const DENIED_WITHOUT: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "open_by_handle_at",
            "name_to_handle_at",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "lookup_dcookie",
            "fanotify_init",
            "perf_event_open",
            "bpf",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    (
        "CAP_SYS_MODULE",
        &["init_module", "finit_module", "delete_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    ("CAP_SYSLOG", &["syslog"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
        ],
    ),
    // ptrace and process_vm_readv/writev are allowed, as containerd allows them on kernels
    // from 4.8 (whose ptrace no longer bypasses seccomp).
    ("CAP_SYS_PTRACE", &["kcmp"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "set_mempolicy", "mbind"]),
];

/// The `clone` flags that make new namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET): denied without CAP_SYS_ADMIN, as `unshare` is.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// Where a node keeps its Localhost profiles, and whether pods that name no profile get
/// RuntimeDefault (kubelet's `seccompDefault`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeccompOptions {
    pub default_to_runtime_default: bool,
    /// `<data-dir>/seccomp`: a Localhost profile `p` is the file `<profile_dir>/p`.
    pub profile_dir: PathBuf,
}

/// The filter of `container` in `pod` (None: unconfined): the container's seccompProfile,
/// else the pod's, else the node's default. `capabilities` are the container's bounding set.
pub fn seccomp_filter(
    pod: &Pod,
    container: &Container,
    capabilities: &[String],
    options: &SeccompOptions,
) -> Result<Option<Value>> {
    let profile: Option<&SeccompProfile> = container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.seccomp_profile.as_ref())
        });
    let Some(profile) = profile else {
        return Ok(options
            .default_to_runtime_default
            .then(|| runtime_default(capabilities)));
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(Some(runtime_default(capabilities))),
        "Unconfined" => Ok(None),
        "Localhost" => {
            let name = profile
                .localhost_profile
                .as_deref()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    ContainerError::Spec(
                        "seccompProfile of type Localhost needs localhostProfile".to_owned(),
                    )
                })?;
            localhost(&options.profile_dir, name).map(Some)
        }
        other => Err(ContainerError::Spec(format!(
            "unsupported seccompProfile type {other:?} (RuntimeDefault, Unconfined or Localhost)"
        ))),
    }
}

/// A Localhost profile: an OCI seccomp object in JSON, read from under `dir` only.
fn localhost(dir: &Path, name: &str) -> Result<Value> {
    let relative = Path::new(name);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(ContainerError::Spec(format!(
            "localhostProfile {name:?} must be a relative path below the node's seccomp directory"
        )));
    }
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ContainerError::Spec(format!(
            "cannot load seccomp profile {:?}: {e}",
            path.display().to_string()
        ))
    })?;
    let profile: Value = serde_json::from_str(&text).map_err(|e| {
        ContainerError::Spec(format!(
            "seccomp profile {:?} is not valid JSON: {e}",
            path.display().to_string()
        ))
    })?;
    if profile
        .get("defaultAction")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(ContainerError::Spec(format!(
            "seccomp profile {:?} has no defaultAction",
            path.display().to_string()
        )));
    }
    Ok(profile)
}

/// Skiff's RuntimeDefault profile for a container holding `capabilities`.
pub fn runtime_default(capabilities: &[String]) -> Value {
    let holds = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut denied: Vec<&str> = ALWAYS_DENIED.to_vec();
    for (cap, calls) in DENIED_WITHOUT {
        if !holds(cap) {
            denied.extend(calls.iter().copied());
        }
    }
    denied.sort_unstable();
    denied.dedup();
    let mut syscalls = vec![json!({
        "names": denied,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": EPERM,
    })];
    if !holds("CAP_SYS_ADMIN") {
        for flag in CLONE_NAMESPACE_FLAGS {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back
        // to clone, whose flags are checked above.
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .expect("syscalls")
            .iter()
            .filter(|r| r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().expect("names").clone())
            .map(|n| n.as_str().expect("name").to_owned())
            .collect()
    }

    fn pod(pod_profile: Option<Value>, container_profile: Option<Value>) -> (Pod, Container) {
        let mut container = json!({"name": "c"});
        if let Some(p) = container_profile {
            container["securityContext"] = json!({"seccompProfile": p});
        }
        let mut spec = json!({"containers": [container.clone()]});
        if let Some(p) = pod_profile {
            spec["securityContext"] = json!({"seccompProfile": p});
        }
        (
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod"),
            serde_json::from_value(container).expect("container"),
        )
    }

    #[test]
    fn runtime_default_denies_the_dangerous_calls_and_capabilities_re_allow_theirs() {
        let plain = runtime_default(&[]);
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ALLOW");
        let calls = denied(&plain);
        for call in [
            "mount",
            "unshare",
            "keyctl",
            "bpf",
            "init_module",
            "reboot",
            "setns",
        ] {
            assert!(calls.contains(&call.to_owned()), "{call} allowed");
        }
        assert!(!calls.contains(&"ptrace".to_owned()), "ptrace is allowed");
        let admin = runtime_default(&["CAP_SYS_ADMIN".to_owned()]);
        let calls = denied(&admin);
        assert!(!calls.contains(&"mount".to_owned()));
        assert!(!calls.contains(&"unshare".to_owned()));
        assert!(calls.contains(&"keyctl".to_owned()), "never re-allowed");
        assert!(calls.contains(&"reboot".to_owned()));
        assert!(
            !admin["syscalls"].to_string().contains("clone3"),
            "clone3 allowed with CAP_SYS_ADMIN"
        );
        let round_trip: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(plain).expect("a valid OCI seccomp object");
        assert_eq!(round_trip.architectures().as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn the_container_profile_wins_over_the_pods_then_the_node_default() {
        let dir = tempfile::tempdir().expect("dir");
        let node = SeccompOptions {
            default_to_runtime_default: true,
            profile_dir: dir.path().to_owned(),
        };
        let off = SeccompOptions {
            default_to_runtime_default: false,
            ..node.clone()
        };
        let (p, c) = pod(None, None);
        assert!(seccomp_filter(&p, &c, &[], &node).expect("ok").is_some());
        assert!(seccomp_filter(&p, &c, &[], &off).expect("ok").is_none());
        let (p, c) = pod(Some(json!({"type": "Unconfined"})), None);
        assert!(seccomp_filter(&p, &c, &[], &node).expect("ok").is_none());
        let (p, c) = pod(
            Some(json!({"type": "Unconfined"})),
            Some(json!({"type": "RuntimeDefault"})),
        );
        assert!(seccomp_filter(&p, &c, &[], &off).expect("ok").is_some());

        std::fs::write(
            dir.path().join("audit.json"),
            r#"{"defaultAction": "SCMP_ACT_LOG"}"#,
        )
        .expect("write");
        let (p, c) = pod(
            None,
            Some(json!({"type": "Localhost", "localhostProfile": "audit.json"})),
        );
        let profile = seccomp_filter(&p, &c, &[], &node)
            .expect("ok")
            .expect("some");
        assert_eq!(profile["defaultAction"], "SCMP_ACT_LOG");
        let (p, c) = pod(
            None,
            Some(json!({"type": "Localhost", "localhostProfile": "missing.json"})),
        );
        let error = seccomp_filter(&p, &c, &[], &node).expect_err("missing");
        assert!(
            error.to_string().contains("cannot load seccomp profile")
                && error.to_string().contains("missing.json"),
            "{error}"
        );
        let (p, c) = pod(
            None,
            Some(json!({"type": "Localhost", "localhostProfile": "../etc/passwd"})),
        );
        assert!(seccomp_filter(&p, &c, &[], &node).is_err());
    }
}
