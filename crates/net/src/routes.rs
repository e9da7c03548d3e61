//! Host-gateway routes between nodes (flannel's host-gw): on each node, a route to every other
//! node's podCIDR via that node's InternalIP, which must be on a directly connected subnet.
//! [`routes_to_other_nodes`] decides which routes the Nodes call for (pure);
//! [`HostRoutes::sync`] makes the kernel's main table match, through rtnetlink.
//!
//! Our routes carry the routing protocol number [`ROUTE_PROTOCOL`] (as calico and flannel mark
//! theirs) and lie inside the cluster CIDR: only routes with both are ever changed or removed,
//! so nothing else of the host's routing is touched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::cidr::Ipv4Cidr;
use crate::{Error, Result};

/// The `proto` of our routes (`ip route` shows `proto 115`): 115 is ASCII `s`, and no routing
/// daemon of iproute2's `rt_protos` list uses it.
pub const ROUTE_PROTOCOL: u8 = 115;

/// A route to another node's pods.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeRoute {
    pub node: String,
    pub pod_cidr: Ipv4Cidr,
    pub via: Ipv4Addr,
}

/// A Node that gets no route, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: String,
}

/// The routes to the Nodes other than `own`: each one's `spec.podCIDR` via its InternalIP.
/// Nodes without a podCIDR yet are left out silently (the server is about to assign one); a
/// podCIDR that is not IPv4, outside `cluster`, or already routed to another node (by name
/// order), and a Node without an IPv4 InternalIP, are skipped with a reason.
pub fn routes_to_other_nodes(
    own: &str,
    cluster: Ipv4Cidr,
    nodes: &[Node],
) -> (Vec<NodeRoute>, Vec<Skipped>) {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut routes: Vec<NodeRoute> = Vec::new();
    let mut skipped = Vec::new();
    let own_cidr = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(own))
        .and_then(|n| {
            n.spec
                .as_ref()?
                .pod_cidr
                .as_deref()?
                .parse::<Ipv4Cidr>()
                .ok()
        });
    for node in sorted {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if name == own {
            continue;
        }
        let mut skip = |reason: String| {
            skipped.push(Skipped {
                node: name.to_string(),
                reason,
            })
        };
        let Some(text) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) else {
            continue;
        };
        let pod_cidr = match text.parse::<Ipv4Cidr>() {
            Ok(cidr) => cidr,
            Err(e) => {
                skip(format!("its podCIDR {text:?} is not an IPv4 network: {e}"));
                continue;
            }
        };
        if !cluster.contains(pod_cidr.network()) || pod_cidr.prefix() < cluster.prefix() {
            skip(format!(
                "its podCIDR {pod_cidr} is outside the cluster CIDR {cluster}"
            ));
            continue;
        }
        if own_cidr.is_some_and(|own| own.overlaps(&pod_cidr)) {
            skip(format!("its podCIDR {pod_cidr} overlaps this node's"));
            continue;
        }
        if let Some(other) = routes.iter().find(|r| r.pod_cidr.overlaps(&pod_cidr)) {
            skip(format!(
                "its podCIDR {pod_cidr} overlaps node {}'s {}",
                other.node, other.pod_cidr
            ));
            continue;
        }
        let internal_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse::<Ipv4Addr>().ok());
        let Some(via) = internal_ip else {
            skip("it has no IPv4 InternalIP in status.addresses".to_string());
            continue;
        };
        routes.push(NodeRoute {
            node: name.to_string(),
            pod_cidr,
            via,
        });
    }
    (routes, skipped)
}

/// How this host reaches an address, as the kernel's route lookup says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// On a directly connected subnet: a gateway for host-gateway routes.
    Connected,
    /// An address of this host.
    Local,
    /// Only through the router `0`.
    ViaGateway(Ipv4Addr),
    /// No route at all.
    Unreachable,
}

/// What [`HostRoutes::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Routes added or changed.
    pub added: Vec<NodeRoute>,
    /// Destinations whose route was removed.
    pub removed: Vec<Ipv4Cidr>,
    /// Nodes left without a route because their InternalIP is no gateway of this host.
    pub skipped: Vec<Skipped>,
}

/// The host's routes to other nodes' pods, on a netlink connection of the caller's namespace.
pub struct HostRoutes {
    handle: Handle,
    cluster: Ipv4Cidr,
}

fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |source| Error::Netlink { what, source }
}

fn is_errno(error: &rtnetlink::Error, errno: rustix::io::Errno) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno.raw_os_error())
}

fn ipv4_of(address: &RouteAddress) -> Option<Ipv4Addr> {
    match address {
        RouteAddress::Inet(ip) => Some(*ip),
        _ => None,
    }
}

/// The destination and gateway of an IPv4 route.
fn destination_and_gateway(route: &RouteMessage) -> (Option<Ipv4Cidr>, Option<Ipv4Addr>) {
    let mut destination = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(a) => {
                destination =
                    ipv4_of(a).map(|ip| Ipv4Cidr::new(ip, route.header.destination_prefix_length));
            }
            RouteAttribute::Gateway(a) => gateway = ipv4_of(a),
            _ => {}
        }
    }
    (destination, gateway)
}

fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

impl HostRoutes {
    /// A connection in the calling thread's network namespace, driven by a task on the current
    /// tokio runtime; routes are kept for pods of `cluster`.
    pub fn connect(cluster: Ipv4Cidr) -> Result<HostRoutes> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| Error::Thread {
                what: "open a netlink socket",
                source,
            })?;
        tokio::spawn(connection);
        Ok(HostRoutes { handle, cluster })
    }

    /// Our routes in the main table: destination → gateway.
    pub async fn ours(&self) -> Result<BTreeMap<Ipv4Cidr, Option<Ipv4Addr>>> {
        let mut dump = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut ours = BTreeMap::new();
        while let Some(route) = dump.try_next().await.map_err(failed("list routes"))? {
            if u8::from(route.header.protocol) != ROUTE_PROTOCOL
                || table_of(&route) != u32::from(RouteHeader::RT_TABLE_MAIN)
            {
                continue;
            }
            if let (Some(destination), gateway) = destination_and_gateway(&route) {
                if self.cluster.contains(destination.network())
                    && destination.prefix() >= self.cluster.prefix()
                {
                    ours.insert(destination, gateway);
                }
            }
        }
        Ok(ours)
    }

    /// How the kernel would reach `address`, leaving our own routes aside (a node's address
    /// inside another node's podCIDR is no gateway).
    pub async fn reach(&self, address: Ipv4Addr) -> Result<Reach> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(address, 32)
            .build();
        let found = self.handle.route().get(query).execute().try_next().await;
        let route = match found {
            Ok(Some(route)) => route,
            Ok(None) => return Ok(Reach::Unreachable),
            Err(e)
                if is_errno(&e, rustix::io::Errno::NETUNREACH)
                    || is_errno(&e, rustix::io::Errno::HOSTUNREACH) =>
            {
                return Ok(Reach::Unreachable)
            }
            Err(e) => return Err(failed(format!("look up the route to {address}"))(e)),
        };
        if route.header.kind == RouteType::Local {
            return Ok(Reach::Local);
        }
        if route.header.kind != RouteType::Unicast {
            return Ok(Reach::Unreachable);
        }
        Ok(match destination_and_gateway(&route).1 {
            Some(gateway) => Reach::ViaGateway(gateway),
            None => Reach::Connected,
        })
    }

    async fn add(&self, route: &NodeRoute) -> Result<()> {
        let message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.pod_cidr.network(), route.pod_cidr.prefix())
            .gateway(route.via)
            .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(failed(format!(
                "add the route to node {}'s pods {} via {}",
                route.node, route.pod_cidr, route.via
            )))
    }

    async fn delete(&self, destination: Ipv4Cidr, gateway: Option<Ipv4Addr>) -> Result<()> {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.network(), destination.prefix())
            .protocol(RouteProtocol::from(ROUTE_PROTOCOL));
        if let Some(gateway) = gateway {
            builder = builder.gateway(gateway);
        }
        match self.handle.route().del(builder.build()).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(failed(format!("delete the route to {destination}"))(e)),
        }
    }

    /// Makes our routes exactly `wanted`, less those whose gateway is not on a directly
    /// connected subnet (reported in [`SyncReport::skipped`]): adds and changes what is
    /// missing or different, removes every other route of ours (also those a previous run
    /// left). Keeps going after errors and reports them all.
    pub async fn sync(&self, wanted: &[NodeRoute]) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let mut errors = Vec::new();
        let ours = self.ours().await?;
        let mut keep: HashMap<Ipv4Cidr, &NodeRoute> = HashMap::new();
        for route in wanted {
            let reach = match self.reach(route.via).await {
                Ok(reach) => reach,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let why = match reach {
                Reach::Connected => {
                    keep.insert(route.pod_cidr, route);
                    continue;
                }
                Reach::Local => format!(
                    "its InternalIP {} is an address of this host, not of another",
                    route.via
                ),
                Reach::ViaGateway(gateway) => format!(
                    "its InternalIP {} is not on a directly connected subnet (reached via \
                     {gateway}); host-gateway routing needs the nodes on one network",
                    route.via
                ),
                Reach::Unreachable => format!(
                    "its InternalIP {} is not on a directly connected subnet (no route to it)",
                    route.via
                ),
            };
            report.skipped.push(Skipped {
                node: route.node.clone(),
                reason: why,
            });
        }
        for (destination, gateway) in &ours {
            let current = keep.get(destination).map(|r| r.via);
            if current.is_none() {
                match self.delete(*destination, *gateway).await {
                    Ok(()) => report.removed.push(*destination),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        let mut added: HashSet<Ipv4Cidr> = HashSet::new();
        for route in wanted {
            if keep.get(&route.pod_cidr) != Some(&route) || !added.insert(route.pod_cidr) {
                continue;
            }
            if ours.get(&route.pod_cidr) == Some(&Some(route.via)) {
                continue;
            }
            match self.add(route).await {
                Ok(()) => report.added.push(route.clone()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(Error::Several(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, pod_cidr: Option<&str>, internal_ip: Option<&str>) -> Node {
        let addresses: Vec<serde_json::Value> = internal_ip
            .into_iter()
            .map(|ip| serde_json::json!({"type": "InternalIP", "address": ip}))
            .chain([serde_json::json!({"type": "Hostname", "address": name})])
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": pod_cidr},
            "status": {"addresses": addresses},
        }))
        .expect("a node")
    }

    fn cluster() -> Ipv4Cidr {
        "10.42.0.0/16".parse().expect("valid")
    }

    #[test]
    fn every_other_node_gets_a_route_via_its_internal_ip() {
        let nodes = [
            node("c", Some("10.42.2.0/24"), Some("192.168.1.3")),
            node("a", Some("10.42.0.0/24"), Some("192.168.1.1")),
            node("b", Some("10.42.1.0/24"), Some("192.168.1.2")),
        ];
        let (routes, skipped) = routes_to_other_nodes("a", cluster(), &nodes);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            routes,
            vec![
                NodeRoute {
                    node: "b".into(),
                    pod_cidr: "10.42.1.0/24".parse().expect("valid"),
                    via: Ipv4Addr::new(192, 168, 1, 2),
                },
                NodeRoute {
                    node: "c".into(),
                    pod_cidr: "10.42.2.0/24".parse().expect("valid"),
                    via: Ipv4Addr::new(192, 168, 1, 3),
                },
            ]
        );
    }

    #[test]
    fn nodes_without_what_a_route_needs_are_skipped_with_a_reason() {
        let nodes = [
            node("a", Some("10.42.0.0/24"), Some("192.168.1.1")),
            node("waiting", None, Some("192.168.1.2")),
            node("no-ip", Some("10.42.3.0/24"), None),
            node("v6", Some("fd00::/64"), Some("192.168.1.4")),
            node("outside", Some("10.99.0.0/24"), Some("192.168.1.5")),
            node("same-as-mine", Some("10.42.0.0/24"), Some("192.168.1.6")),
            node("b", Some("10.42.1.0/24"), Some("192.168.1.7")),
            node("c-dup", Some("10.42.1.0/24"), Some("192.168.1.8")),
        ];
        let (routes, skipped) = routes_to_other_nodes("a", cluster(), &nodes);
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(routes[0].node, "b");
        let reasons: HashMap<&str, &str> = skipped
            .iter()
            .map(|s| (s.node.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 5, "{skipped:?}");
        assert!(reasons["no-ip"].contains("no IPv4 InternalIP"));
        assert!(reasons["v6"].contains("not an IPv4 network"));
        assert!(reasons["outside"].contains("outside the cluster CIDR 10.42.0.0/16"));
        assert!(reasons["same-as-mine"].contains("overlaps this node's"));
        assert!(reasons["c-dup"].contains("overlaps node b's 10.42.1.0/24"));
    }
}
