//! The server's node IPAM controller (kube-controller-manager's range allocator): gives every
//! Node without one a subnet of the cluster CIDR in spec.podCIDR and spec.podCIDRs. The subnets
//! in use are those the Nodes carry, so a deleted Node's subnet is free again, and nothing but
//! the Nodes has to be stored.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};

use crate::cidr::{ClusterCidr, Ipv4Cidr};

/// The subnet a Node carries, if it is one of this cluster CIDR's.
fn node_subnet(node: &Node, cluster: &ClusterCidr) -> Option<Ipv4Cidr> {
    let text = node.spec.as_ref()?.pod_cidr.as_deref()?;
    text.parse().ok().filter(|s| cluster.is_node_subnet(s))
}

/// Which subnet every Node holds, and the choice for Nodes without one.
#[derive(Debug)]
pub struct RangeAllocator {
    cluster: ClusterCidr,
    /// By node name; None: the Node has no (usable) podCIDR yet.
    nodes: HashMap<String, Option<Ipv4Cidr>>,
}

impl RangeAllocator {
    pub fn new(cluster: ClusterCidr) -> RangeAllocator {
        RangeAllocator {
            cluster,
            nodes: HashMap::new(),
        }
    }

    fn used(&self) -> HashSet<Ipv4Cidr> {
        self.nodes.values().flatten().copied().collect()
    }

    /// Records `node` as it is now.
    pub fn observe(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        match node_subnet(node, &self.cluster) {
            Some(subnet) => {
                self.nodes.insert(name, Some(subnet));
            }
            // An event from before our patch landed must not free the subnet just assigned
            // (another node could get it meanwhile).
            None => {
                self.nodes.entry(name).or_insert(None);
            }
        }
    }

    /// Frees the subnet of a deleted node.
    pub fn forget(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Picks (and records) a subnet for `name` if it has none; None when it has one, or when
    /// the cluster CIDR is full.
    pub fn assign(&mut self, name: &str) -> Option<Ipv4Cidr> {
        if self.nodes.get(name).copied().flatten().is_some() {
            return None;
        }
        let subnet = self.cluster.first_free(&self.used())?;
        self.nodes.insert(name.to_string(), Some(subnet));
        Some(subnet)
    }

    /// The nodes still without a subnet.
    pub fn waiting(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

async fn give(nodes: &Api<Node>, name: &str, subnet: Ipv4Cidr) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"spec": {
        "podCIDR": subnet.to_string(),
        "podCIDRs": [subnet.to_string()],
    }});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Runs the controller until the watch ends (it retries with back-off, so in practice until the
/// task is dropped).
pub async fn run(client: kube::Client, cluster: ClusterCidr) {
    let nodes: Api<Node> = Api::all(client);
    let mut allocator = RangeAllocator::new(cluster);
    let mut initial: Option<Vec<Node>> = None;
    let mut events = watcher(nodes.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                initial = Some(Vec::new());
                continue;
            }
            Ok(watcher::Event::InitApply(node)) => {
                if let Some(list) = initial.as_mut() {
                    list.push(node);
                }
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                // Known subnets first, so a new assignment never takes a held one.
                allocator = RangeAllocator::new(cluster);
                for node in initial.take().unwrap_or_default() {
                    allocator.observe(&node);
                }
                allocator.waiting()
            }
            Ok(watcher::Event::Apply(node)) => {
                allocator.observe(&node);
                node.metadata.name.into_iter().collect()
            }
            Ok(watcher::Event::Delete(node)) => {
                if let Some(name) = &node.metadata.name {
                    allocator.forget(name);
                }
                // A freed subnet may be what a waiting node needs.
                allocator.waiting()
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching nodes for podCIDR allocation");
                continue;
            }
        };
        for name in changed {
            let Some(subnet) = allocator.assign(&name) else {
                if allocator.waiting().contains(&name) {
                    tracing::warn!(node = %name, cluster_cidr = %cluster.cluster, "no podCIDR left for node: the cluster CIDR is full");
                }
                continue;
            };
            match give(&nodes, &name, subnet).await {
                Ok(()) => tracing::info!(node = %name, pod_cidr = %subnet, "node podCIDR assigned"),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "cannot set the node's podCIDR; retrying");
                    // Waiting again: retried at the node's next update (a heartbeat).
                    allocator.nodes.insert(name.clone(), None);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
        }))
        .expect("a node")
    }

    #[test]
    fn assigns_free_subnets_and_frees_them_with_the_node() {
        let cluster = ClusterCidr::parse("10.42.0.0/23", 24).expect("valid");
        let mut allocator = RangeAllocator::new(cluster);
        allocator.observe(&node("a", Some("10.42.0.0/24")));
        allocator.observe(&node("b", None));
        allocator.observe(&node("c", None));
        assert_eq!(allocator.waiting(), vec!["b", "c"]);
        assert_eq!(allocator.assign("a"), None, "a has one");
        assert_eq!(
            allocator.assign("b"),
            Some("10.42.1.0/24".parse().expect("valid"))
        );
        assert_eq!(allocator.assign("c"), None, "the cluster CIDR is full");
        allocator.forget("a");
        assert_eq!(
            allocator.assign("c"),
            Some("10.42.0.0/24".parse().expect("valid"))
        );
        // An update from before the assignment was stored keeps the subnet assigned.
        allocator.observe(&node("b", None));
        assert_eq!(allocator.assign("b"), None);
        assert!(allocator.waiting().is_empty());
        // A podCIDR outside the cluster CIDR does not count as one of ours.
        allocator.observe(&node("d", Some("192.168.0.0/24")));
        assert_eq!(allocator.waiting(), vec!["d"]);
    }
}
