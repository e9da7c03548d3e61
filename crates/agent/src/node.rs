//! What the Node object says about this machine: capacity, addresses, nodeInfo and the
//! conditions kubelet reports, built by pure functions from facts gathered once per report.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// The kubelet version the node reports: the Kubernetes API level Skiff serves.
pub const KUBELET_VERSION: &str = "v1.35.0-skiff";

/// Facts about the machine, read from the kernel and /etc.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub cpus: usize,
    pub memory_kib: u64,
    pub ephemeral_storage_bytes: u64,
    pub internal_ip: IpAddr,
    pub hostname: String,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl NodeFacts {
    /// Reads the facts; each one that cannot be read falls back to a neutral value and a
    /// warning, since a node that reports less is better than no node.
    pub fn gather(data_dir: &Path) -> NodeFacts {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_kib = read("/proc/meminfo")
            .and_then(|text| mem_total_kib(&text))
            .unwrap_or(0);
        let ephemeral_storage_bytes = match rustix::fs::statvfs(data_dir) {
            Ok(s) => s.f_blocks.saturating_mul(s.f_frsize),
            Err(e) => {
                tracing::warn!(dir = %data_dir.display(), error = %e, "cannot statvfs the data dir");
                0
            }
        };
        NodeFacts {
            cpus,
            memory_kib,
            ephemeral_storage_bytes,
            internal_ip: primary_ipv4(),
            hostname: hostname(),
            kernel_version: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image: read("/etc/os-release")
                .and_then(|t| os_pretty_name(&t))
                .unwrap_or_else(|| "Linux".into()),
            architecture: go_arch(std::env::consts::ARCH).into(),
            machine_id: read("/etc/machine-id").unwrap_or_default(),
            boot_id: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        }
    }
}

fn read(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) => {
            tracing::debug!(path, error = %e, "cannot read a node fact");
            None
        }
    }
}

/// The machine's host name (the UTS name the agent runs under).
pub fn hostname() -> String {
    read("/proc/sys/kernel/hostname")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `MemTotal` of /proc/meminfo, in KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `PRETTY_NAME` of os-release, unquoted.
pub fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
}

/// Rust's architecture name as Go (and so Kubernetes) spells it.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The gateway of the IPv4 default route in /proc/net/route, if there is one.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags ...; the kernel prints addresses as little-endian hex.
        if fields.len() < 3 || fields[1] != "00000000" {
            return None;
        }
        let gateway = u32::from_str_radix(fields[2], 16).ok()?;
        Some(Ipv4Addr::from(gateway.swap_bytes()))
    })
}

/// The source address the kernel picks for the default route (the host's primary IPv4), or
/// 127.0.0.1 on a machine without one. Connecting a UDP socket only selects a route: nothing is
/// sent.
pub fn primary_ipv4() -> IpAddr {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(gateway) = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_gateway(&t))
    else {
        return loopback;
    };
    // A default route through a device without a gateway (point-to-point) has 0.0.0.0: any
    // outside address then selects the route.
    let target = if gateway.is_unspecified() {
        Ipv4Addr::new(192, 0, 2, 1)
    } else {
        gateway
    };
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((target, 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(loopback)
}

/// The Node as registered: its name and kubelet's well-known labels.
pub fn node_object(name: &str, facts: &NodeFacts) -> Node {
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), facts.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            facts.architecture.clone(),
        ),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

/// One condition kubelet reports, with its reason and message.
struct ConditionReport {
    kind: &'static str,
    status: &'static str,
    reason: &'static str,
    message: &'static str,
}

const CONDITIONS: [ConditionReport; 4] = [
    ConditionReport {
        kind: "MemoryPressure",
        status: "False",
        reason: "KubeletHasSufficientMemory",
        message: "kubelet has sufficient memory available",
    },
    ConditionReport {
        kind: "DiskPressure",
        status: "False",
        reason: "KubeletHasNoDiskPressure",
        message: "kubelet has no disk pressure",
    },
    ConditionReport {
        kind: "PIDPressure",
        status: "False",
        reason: "KubeletHasSufficientPID",
        message: "kubelet has sufficient PID available",
    },
    ConditionReport {
        kind: "Ready",
        status: "True",
        reason: "KubeletReady",
        message: "kubelet is posting ready status",
    },
];

/// The node's status at `now`. A condition whose status is unchanged since `previous` keeps its
/// lastTransitionTime, as kubelet does.
pub fn node_status(
    facts: &NodeFacts,
    max_pods: u32,
    now: Timestamp,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", facts.memory_kib)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", facts.ephemeral_storage_bytes / 1024)),
        ),
        ("pods".to_string(), Quantity(max_pods.to_string())),
    ]);
    let previous_conditions = previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let conditions = CONDITIONS
        .iter()
        .map(|c| {
            let transition = previous_conditions
                .iter()
                .find(|p| p.type_ == c.kind && p.status == c.status)
                .and_then(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: c.kind.into(),
                status: c.status.into(),
                reason: Some(c.reason.into()),
                message: Some(c.message.into()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(transition),
            }
        })
        .collect();
    NodeStatus {
        // Nothing is reserved for the system yet (kubelet's --system-reserved).
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: facts.internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: facts.hostname.clone(),
            },
        ]),
        conditions: Some(conditions),
        node_info: Some(NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: String::new(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            cpus: 2,
            memory_kib: 4_000_000,
            ephemeral_storage_bytes: 10 * 1024 * 1024 * 1024,
            internal_ip: "10.0.0.5".parse().expect("ip"),
            hostname: "box".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
        }
    }

    #[test]
    fn parses_proc_and_etc() {
        assert_eq!(
            mem_total_kib("MemTotal:        4026532 kB\nMemFree: 1 kB\n"),
            Some(4026532)
        );
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
        assert_eq!(
            os_pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_pretty_name("NAME=x\n"), None);
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn finds_the_default_gateway() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(192, 168, 0, 1)));
        let no_default = "Iface\tDestination\tGateway\n eth0\t0000A8C0\t00000000\n";
        assert_eq!(default_gateway(no_default), None);
    }

    #[test]
    fn status_reports_capacity_info_and_conditions() {
        let t0 = Timestamp::from_second(1_000).expect("time");
        let s = node_status(&facts(), 110, t0, None);
        let cap = s.capacity.as_ref().expect("capacity");
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4000000Ki");
        assert_eq!(cap["ephemeral-storage"].0, "10485760Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(s.allocatable.as_ref(), Some(cap));
        let info = s.node_info.as_ref().expect("info");
        assert_eq!(info.kubelet_version, "v1.35.0-skiff");
        assert!(info.container_runtime_version.starts_with("skiff://"));
        assert_eq!(info.operating_system, "linux");
        let addresses = s.addresses.as_ref().expect("addresses");
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.0.0.5");
        assert_eq!(addresses[1].address, "box");
        let conditions = s.conditions.as_ref().expect("conditions");
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert!(conditions
            .iter()
            .any(|c| c.type_ == "PIDPressure"
                && c.reason.as_deref() == Some("KubeletHasSufficientPID")));

        // A later report moves the heartbeat but keeps the transition time.
        let t1 = Timestamp::from_second(1_010).expect("time");
        let later = node_status(&facts(), 110, t1, Some(&s));
        let ready = later
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .expect("Ready");
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
    }

    #[test]
    fn gathers_this_machine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = NodeFacts::gather(dir.path());
        assert!(f.cpus >= 1);
        assert!(f.memory_kib > 0);
        assert!(f.ephemeral_storage_bytes > 0);
        assert!(!f.kernel_version.is_empty());
        assert!(matches!(f.internal_ip, IpAddr::V4(_)));
    }
}
