//! Pod sysctls (`spec.securityContext.sysctls`) as Kubernetes reads them: which kernel namespace
//! a sysctl belongs to, the name check of the API server, the slash-separated spelling, and the
//! node's allow-list (kubelet's safe set plus `--allowed-unsafe-sysctls`) that admits a pod.

/// The kernel namespace a sysctl lives in: a pod may set only namespaced ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysctlNamespace {
    Ipc,
    Net,
}

impl SysctlNamespace {
    /// Kubernetes' name of the namespace, as its messages print it.
    pub fn as_str(self) -> &'static str {
        match self {
            SysctlNamespace::Ipc => "ipc",
            SysctlNamespace::Net => "net",
        }
    }
}

/// The longest sysctl name the API server takes.
pub const MAX_NAME_LENGTH: usize = 253;

/// The pattern a sysctl name must match, as the API server prints it in its message.
pub const NAME_PATTERN: &str =
    r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// kubelet's safe sysctls (Kubernetes 1.35): namespaced and isolated between pods, allowed on
/// every node. (Kubelet drops those the running kernel does not namespace; every kernel Skiff
/// runs on, 5.x and later, namespaces them all.)
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The dotted spelling of a sysctl name: `net/ipv4/ip_local_port_range` (whose first
/// separator is a slash) swaps its slashes and dots, as the kernel's sysctl(8) reads it; a name
/// already dotted stays as it is.
pub fn dotted(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// The namespace of sysctl `name` (dotted), None when it is not known to be namespaced.
pub fn namespace_of(name: &str) -> Option<SysctlNamespace> {
    if name == "kernel.sem" {
        return Some(SysctlNamespace::Ipc);
    }
    if ["kernel.shm", "kernel.msg", "fs.mqueue."]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Some(SysctlNamespace::Ipc);
    }
    name.starts_with("net.").then_some(SysctlNamespace::Net)
}

/// Whether `name` is a well-formed sysctl name (at most [`MAX_NAME_LENGTH`] characters matching
/// [`NAME_PATTERN`]).
pub fn is_valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return false;
    }
    let segment_ok = |s: &str| {
        let b = s.as_bytes();
        let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let inner = |c: u8| edge(c) || c == b'-' || c == b'_';
        !b.is_empty() && edge(b[0]) && edge(b[b.len() - 1]) && b.iter().all(|c| inner(*c))
    };
    name.split(['.', '/']).all(segment_ok)
}

/// Whether `pattern` is a well-formed allow-list entry: a sysctl name, optionally ending in
/// `*` (a prefix), or `*` alone.
pub fn is_valid_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        // A prefix ends at a separator or inside a segment: `net.*`, `kernel.shm*`.
        Some(prefix) => {
            let stem = prefix.trim_end_matches(['.', '/']);
            prefix.len() - stem.len() <= 1 && is_valid_name(stem)
        }
        None => is_valid_name(pattern),
    }
}

/// The sysctls a node admits: kubelet's safe set and the node's `--allowed-unsafe-sysctls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlAllowlist {
    names: Vec<(String, SysctlNamespace)>,
    prefixes: Vec<(String, SysctlNamespace)>,
}

impl SysctlAllowlist {
    /// The safe set plus `unsafe_patterns` (names, or prefixes ending in `*`). An entry that is
    /// malformed or not known to be namespaced is an error, as kubelet refuses to start with
    /// one.
    pub fn new(unsafe_patterns: &[String]) -> Result<SysctlAllowlist, String> {
        let mut list = SysctlAllowlist {
            names: Vec::new(),
            prefixes: Vec::new(),
        };
        let safe = SAFE_SYSCTLS.iter().map(|s| s.to_string());
        for pattern in safe.chain(unsafe_patterns.iter().cloned()) {
            if !is_valid_pattern(&pattern) {
                return Err(format!(
                    "sysctl {pattern:?} must have at most {MAX_NAME_LENGTH} characters and match \
                     regex {NAME_PATTERN} (optionally ending in *)"
                ));
            }
            let pattern = dotted(&pattern);
            match pattern.strip_suffix('*') {
                Some(prefix) => {
                    let ns = namespace_of(prefix).ok_or_else(|| {
                        format!("the sysctls {pattern:?} are not known to be namespaced")
                    })?;
                    list.prefixes.push((prefix.to_string(), ns));
                }
                None => {
                    let ns = namespace_of(&pattern).ok_or_else(|| {
                        format!("the sysctl {pattern:?} is not known to be namespaced")
                    })?;
                    list.names.push((pattern, ns));
                }
            }
        }
        Ok(list)
    }

    /// Whether a pod (with hostNetwork / hostIPC as given) may set `name`; the error is
    /// kubelet's reason, for the message `forbidden sysctl: <reason>`.
    pub fn check(&self, name: &str, host_network: bool, host_ipc: bool) -> Result<(), String> {
        let name = dotted(name);
        let found = self
            .names
            .iter()
            .find(|(n, _)| *n == name)
            .or_else(|| self.prefixes.iter().find(|(p, _)| name.starts_with(p)));
        match found {
            Some((_, ns)) => {
                let shared = match ns {
                    SysctlNamespace::Ipc => host_ipc,
                    SysctlNamespace::Net => host_network,
                };
                if shared {
                    Err(format!(
                        "{name:?} not allowed with host {} enabled",
                        ns.as_str()
                    ))
                } else {
                    Ok(())
                }
            }
            None => Err(format!("{name:?} not allowlisted")),
        }
    }

    /// kubelet's admission of `pod`: the message of its first sysctl the node does not allow
    /// (`forbidden sysctl: ...`), if any.
    pub fn admit(&self, pod: &k8s_openapi::api::core::v1::Pod) -> Result<(), String> {
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(());
        };
        let sysctls = spec
            .security_context
            .as_ref()
            .and_then(|s| s.sysctls.as_ref());
        let host_network = spec.host_network.unwrap_or(false);
        let host_ipc = spec.host_ipc.unwrap_or(false);
        for sysctl in sysctls.into_iter().flatten() {
            self.check(&sysctl.name, host_network, host_ipc)
                .map_err(|e| format!("forbidden sysctl: {e}"))?;
        }
        Ok(())
    }
}

impl Default for SysctlAllowlist {
    /// The safe set alone.
    fn default() -> Self {
        SysctlAllowlist::new(&[]).expect("the safe sysctls are well-formed and namespaced")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashed_names_read_as_dotted() {
        assert_eq!(
            dotted("net/ipv4/ip_local_port_range"),
            "net.ipv4.ip_local_port_range"
        );
        assert_eq!(
            dotted("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(dotted("net.ipv4.tcp_syncookies"), "net.ipv4.tcp_syncookies");
        assert_eq!(dotted("kernel"), "kernel");
    }

    #[test]
    fn namespaces_as_the_kernel_has_them() {
        assert_eq!(
            namespace_of("kernel.shm_rmid_forced"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(namespace_of("kernel.msgmax"), Some(SysctlNamespace::Ipc));
        assert_eq!(namespace_of("kernel.sem"), Some(SysctlNamespace::Ipc));
        assert_eq!(
            namespace_of("fs.mqueue.msg_max"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(
            namespace_of("net.core.somaxconn"),
            Some(SysctlNamespace::Net)
        );
        assert_eq!(namespace_of("kernel.semaphore"), None);
        assert_eq!(namespace_of("vm.swappiness"), None);
    }

    #[test]
    fn names_are_checked_as_the_api_server_does() {
        assert!(is_valid_name("net.ipv4.ip_local_port_range"));
        assert!(is_valid_name("net/ipv4/ip_local_port_range"));
        assert!(is_valid_name("a"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("Net.ipv4"));
        assert!(!is_valid_name("net..ipv4"));
        assert!(!is_valid_name("net.ipv4."));
        assert!(!is_valid_name("net.-ipv4"));
        assert!(!is_valid_name(&"a".repeat(254)));
        assert!(is_valid_pattern("net.*"));
        assert!(is_valid_pattern("kernel.shm*"));
        assert!(is_valid_pattern("*"));
        assert!(!is_valid_pattern("net..*"));
    }

    #[test]
    fn the_safe_set_is_admitted_and_the_rest_is_not() {
        let list = SysctlAllowlist::default();
        assert_eq!(list.check("kernel.shm_rmid_forced", false, false), Ok(()));
        assert_eq!(list.check("net/ipv4/tcp_syncookies", false, false), Ok(()));
        assert_eq!(
            list.check("kernel.msgmax", false, false),
            Err(r#""kernel.msgmax" not allowlisted"#.into())
        );
        assert_eq!(
            list.check("net.ipv4.tcp_syncookies", true, false),
            Err(r#""net.ipv4.tcp_syncookies" not allowed with host net enabled"#.into())
        );
        assert_eq!(
            list.check("kernel.shm_rmid_forced", false, true),
            Err(r#""kernel.shm_rmid_forced" not allowed with host ipc enabled"#.into())
        );
    }

    #[test]
    fn unsafe_patterns_widen_the_list_when_namespaced() {
        let list = SysctlAllowlist::new(&["kernel.msg*".into(), "net.core.somaxconn".into()])
            .expect("valid");
        assert_eq!(list.check("kernel.msgmax", false, false), Ok(()));
        assert_eq!(list.check("net.core.somaxconn", false, false), Ok(()));
        assert!(list.check("net.core.rmem_max", false, false).is_err());
        assert_eq!(
            SysctlAllowlist::new(&["vm.swappiness".into()]),
            Err(r#"the sysctl "vm.swappiness" is not known to be namespaced"#.into())
        );
        assert!(SysctlAllowlist::new(&["kernel.*".into()]).is_err());
        assert!(SysctlAllowlist::new(&["Bad".into()]).is_err());
    }
}
