//! Pod networking: every pod gets an address of its node's podCIDR on a bridge of the node
//! (`bridge`, through netlink), hostPorts and masquerade in an nftables table of our own
//! (`nft`), addresses kept on disk (`ipam`); and, in the server, the controller that gives each
//! Node its podCIDR (`node_ipam`); host-gateway routes to the other nodes' podCIDRs
//! (`routes`). [`PodNetwork`] is what the agent's runtime calls; the built-in bridge is one
//! implementation, a chain of CNI plugins (`cni`) the other.

pub mod bridge;
pub mod cidr;
pub mod cni;
pub mod ipam;
pub mod nft;
pub mod node_ipam;
pub mod routes;

mod netlink;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use bridge::{BridgeConfig, BridgeNetwork};
pub use cidr::{CidrError, ClusterCidr, Ipv4Cidr};
pub use cni::{CniConfig, CniNetwork};

/// What can go wrong while wiring pods up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the node has no podCIDR yet: waiting for the server to assign one (spec.podCIDR of the \
         Node)"
    )]
    NoPodCidr,
    #[error("the node's pod network could not be set up: {0}")]
    NotConfigured(String),
    #[error("no free address left in the node's podCIDR {subnet} ({in_use} addresses in use)")]
    Exhausted { subnet: Ipv4Cidr, in_use: usize },
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("netlink: cannot {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("nft: {0}")]
    Nft(String),
    #[error("{0}")]
    Missing(String),
    #[error("the sandbox record {} is not valid: {source}", path.display())]
    Record {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Cidr(#[from] CidrError),
    #[error("cannot {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("no CNI network configuration (*.conflist, *.conf or *.json) in {}", dir.display())]
    NoCniConfig { dir: PathBuf },
    #[error("the CNI network configuration {} is not valid: {reason}", path.display())]
    CniConfig { path: PathBuf, reason: String },
    #[error("CNI plugin {plugin} failed on {command} with code {code}: {msg}{details}")]
    CniPlugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        /// Empty, or ` (details)`.
        details: String,
    },
    #[error("CNI plugin {plugin} failed on {command}: {reason}")]
    CniRun {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    /// A teardown or collection that went on after failures.
    #[error("{}", .0.join("; "))]
    Several(Vec<String>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The JSON record at `path`, or None when there is none.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<Option<T>> {
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Record { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", &path, e)),
    }
}

/// `record` as JSON, for the record at `path`.
pub(crate) fn record_bytes<T: serde::Serialize>(path: &Path, record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|source| Error::Record {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A transport protocol of a hostPort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name as Kubernetes spells it in `ports[].protocol` (default TCP).
    pub fn from_kubernetes(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A container port published on the node (`ports[].hostPort`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostPort {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
}

/// A pod's sandbox to connect.
#[derive(Clone, Debug)]
pub struct PodNetworkRequest<'a> {
    pub sandbox_id: &'a str,
    /// The sandbox's network namespace file.
    pub netns: &'a Path,
    pub pod_namespace: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
    pub host_ports: Vec<HostPort>,
}

/// The hostPorts of a pod's containers.
pub fn host_ports(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<HostPort> {
    let spec = pod.spec.iter();
    spec.flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
    .flat_map(|c| c.ports.iter().flatten())
    .filter_map(|p| {
        let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
        Some(HostPort {
            protocol: Protocol::from_kubernetes(p.protocol.as_deref())?,
            host_port,
            container_port: u16::try_from(p.container_port).ok()?,
        })
    })
    .collect()
}

/// What a pod got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetworkStatus {
    pub ips: Vec<IpAddr>,
}

/// Connects pod sandboxes to the node's network. Methods block (netlink, files, nft): the
/// agent calls them on blocking threads.
pub trait PodNetwork: Send + Sync + 'static {
    /// Gives the sandbox its interface and address (idempotent for one sandbox id). On error
    /// nothing of the sandbox's networking is left.
    fn set_up(&self, request: &PodNetworkRequest<'_>) -> Result<PodNetworkStatus>;
    /// Removes what [`PodNetwork::set_up`] made for the sandbox; idempotent, keeps going after
    /// errors and reports them all.
    fn tear_down(&self, sandbox_id: &str) -> Result<()>;
    /// [`PodNetwork::tear_down`] of a sandbox whose network namespace is already gone: its
    /// interface went with it (the kernel removes the veth pair with the namespace, off our
    /// path: deleting it ourselves costs an RCU grace period, ~20 ms under the global
    /// netlink lock), so only the address, hostPorts and record are left to remove.
    fn release(&self, sandbox_id: &str) -> Result<()> {
        self.tear_down(sandbox_id)
    }
    /// Removes the networking of every sandbox not in `live` (the agent's collection at start).
    fn collect_garbage(&self, live: &HashSet<String>) -> Result<()>;
    /// True if [`PodNetwork::tear_down`] must run while the sandbox's namespace still exists
    /// (CNI plugins remove what they made inside it, as kubelet tears the network down before
    /// it stops the sandbox); false lets the runtime remove the sandbox first and call
    /// [`PodNetwork::release`].
    fn tears_down_before_sandbox(&self) -> bool {
        false
    }
    /// True if the network needs the Node's podCIDR ([`PodNetwork::configure`]) before pods
    /// can start.
    fn needs_pod_cidr(&self) -> bool {
        false
    }
    /// True if pods get addresses from the Node's podCIDR once [`PodNetwork::configure`]
    /// handed it over (needed or not): the agent then hands it over when it appears and keeps
    /// host-gateway routes to the other nodes' podCIDRs.
    fn uses_pod_cidr(&self) -> bool {
        self.needs_pod_cidr()
    }
    /// Sets the node up for pods of `pod_cidr` (the Node's spec.podCIDR); idempotent.
    fn configure(&self, pod_cidr: Ipv4Cidr) -> Result<()> {
        let _ = pod_cidr;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_come_from_every_container_with_their_protocol() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [
                {"name": "a", "ports": [
                    {"containerPort": 8080, "hostPort": 30080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                    {"containerPort": 9090}
                ]},
                {"name": "b", "ports": [{"containerPort": 80, "hostPort": 30081, "protocol": "TCP"}]}
            ]}
        }))
        .expect("a pod");
        assert_eq!(
            host_ports(&pod),
            vec![
                HostPort {
                    protocol: Protocol::Tcp,
                    host_port: 30080,
                    container_port: 8080
                },
                HostPort {
                    protocol: Protocol::Udp,
                    host_port: 5353,
                    container_port: 53
                },
                HostPort {
                    protocol: Protocol::Tcp,
                    host_port: 30081,
                    container_port: 80
                },
            ]
        );
    }
}
