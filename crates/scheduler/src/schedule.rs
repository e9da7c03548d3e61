//! One scheduling decision over a snapshot: filter every node, score the feasible ones, pick the
//! best; or the reasons no node fits, worded as Kubernetes words them.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::filter::{run_filters, NodeInfo};
use crate::resources::{pod_requests, pod_requests_non_zero};
use crate::score::score_nodes;

/// The cluster as the scheduler sees it: every node, and every pod (those bound to a node
/// take its resources and ports; pending and finished ones are ignored).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
}

/// Why a pod fits no node: the number of nodes and how many nodes gave each reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    /// `0/3 nodes are available: 1 Insufficient memory, 2 node(s) were unschedulable.`: the
    /// "count reason" strings sorted as strings, as Kubernetes' `FitError` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.nodes)?;
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        if !parts.is_empty() {
            write!(f, " {}.", parts.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Whether a pod has finished: it no longer holds resources on its node.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The node a pod is bound to, if any.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The nodes with what their pods take, updated as the scheduler places pods.
#[derive(Debug)]
pub struct Cluster<'a> {
    infos: Vec<NodeInfo<'a>>,
}

impl<'a> Cluster<'a> {
    /// Aggregates the snapshot: each bound, unfinished pod counts against its node.
    pub fn new(snapshot: &'a Snapshot) -> Cluster<'a> {
        Cluster::build(&snapshot.nodes, &snapshot.pods)
    }

    /// Aggregates nodes and pods without copying them (the pods are only counted).
    pub fn build<'p>(
        nodes: impl IntoIterator<Item = &'a Node>,
        pods: impl IntoIterator<Item = &'p Pod>,
    ) -> Cluster<'a> {
        let mut infos: Vec<NodeInfo<'a>> = nodes.into_iter().map(NodeInfo::new).collect();
        infos.sort_by(|a, b| a.name().cmp(b.name()));
        let mut cluster = Cluster { infos };
        for pod in pods {
            if is_terminal(pod) {
                continue;
            }
            if let Some(node) = bound_node(pod) {
                cluster.assume(pod, node);
            }
        }
        cluster
    }

    /// Counts `pod` on `node` (a binding just made, not yet seen in the watch).
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        if let Ok(at) = self.infos.binary_search_by(|i| i.name().cmp(node)) {
            self.infos[at].add_pod(pod);
        }
    }

    /// The best node for the pod; ties go to the first name in order.
    pub fn schedule(&self, pod: &Pod) -> Result<String, FitError> {
        let requests = pod_requests(pod);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut feasible = Vec::new();
        for info in &self.infos {
            match run_filters(pod, &requests, info) {
                Ok(()) => feasible.push(info),
                Err(node_reasons) => {
                    for reason in node_reasons {
                        *reasons.entry(reason).or_insert(0) += 1;
                    }
                }
            }
        }
        if feasible.is_empty() {
            return Err(FitError {
                nodes: self.infos.len(),
                reasons,
            });
        }
        let scores = score_nodes(pod, &requests, &pod_requests_non_zero(pod), &feasible);
        let mut best = 0;
        for (at, score) in scores.iter().enumerate() {
            if *score > scores[best] {
                best = at;
            }
        }
        Ok(feasible[best].name().to_string())
    }
}

/// Where the pod should go in this snapshot, or why it fits nowhere.
pub fn schedule(pod: &Pod, snapshot: &Snapshot) -> Result<String, FitError> {
    Cluster::new(snapshot).schedule(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::{node, pod};
    use serde_json::{json, Value};

    fn sized(name: &str, cpu: &str, mem: &str, extra: Value) -> Pod {
        let mut p = json!({"spec": {"containers": [{"name": "main", "image": "x",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}});
        crate::filter::tests::merge(&mut p, extra);
        pod(name, p)
    }

    fn small(name: &str, cpu: &str, mem: &str) -> Node {
        node(
            name,
            json!({"status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}}),
        )
    }

    #[test]
    fn the_message_reads_as_kubernetes_writes_it() {
        let one = Snapshot {
            nodes: vec![small("n", "1", "1Gi")],
            pods: vec![],
        };
        let err = schedule(&sized("p", "100m", "2Gi", json!({})), &one).expect_err("too big");
        assert_eq!(
            err.to_string(),
            "0/1 nodes are available: 1 Insufficient memory."
        );

        let err = schedule(&sized("p", "2", "2Gi", json!({})), &one).expect_err("too big");
        assert_eq!(
            err.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        );

        let three = Snapshot {
            nodes: vec![
                node(
                    "a",
                    json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
                ),
                node(
                    "b",
                    json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
                ),
                node("c", json!({})),
            ],
            pods: vec![],
        };
        let err = schedule(
            &pod("p", json!({"spec": {"nodeSelector": {"disk": "ssd"}}})),
            &three,
        )
        .expect_err("nowhere");
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint(s)."
        );

        let none = Snapshot::default();
        assert_eq!(
            schedule(&pod("p", json!({})), &none)
                .expect_err("no nodes")
                .to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn reasons_sort_as_strings_so_ten_comes_before_two() {
        let err = FitError {
            nodes: 12,
            reasons: [
                ("node(s) were unschedulable".to_string(), 2),
                ("Insufficient cpu".to_string(), 10),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            err.to_string(),
            "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable."
        );
    }

    #[test]
    fn host_port_conflicts_on_every_node() {
        let with_port = |name: &str, node: Option<&str>| {
            let mut extra = json!({"spec": {"containers": [{"name": "main", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}});
            if let Some(n) = node {
                extra["spec"]["nodeName"] = json!(n);
            }
            pod(name, extra)
        };
        let snap = Snapshot {
            nodes: vec![node("a", json!({})), node("b", json!({}))],
            pods: vec![with_port("x", Some("a")), with_port("y", Some("b"))],
        };
        assert_eq!(
            schedule(&with_port("z", None), &snap).expect_err("ports taken").to_string(),
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
        );
    }

    #[test]
    fn bound_pods_take_resources_but_finished_and_pending_ones_do_not() {
        let mut done = sized("done", "900m", "1Mi", json!({"spec": {"nodeName": "n"}}));
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let pending = sized("pending", "900m", "1Mi", json!({}));
        let snap = Snapshot {
            nodes: vec![small("n", "1", "1Gi")],
            pods: vec![done, pending],
        };
        assert_eq!(
            schedule(&sized("p", "900m", "1Mi", json!({})), &snap),
            Ok("n".into())
        );
        let running = sized("running", "900m", "1Mi", json!({"spec": {"nodeName": "n"}}));
        let snap = Snapshot {
            pods: vec![running],
            ..snap
        };
        assert_eq!(
            schedule(&sized("p", "200m", "1Mi", json!({})), &snap)
                .expect_err("full")
                .to_string(),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn pods_spread_to_the_least_allocated_node_and_ties_go_by_name() {
        let snap = Snapshot {
            nodes: vec![small("b", "2", "2Gi"), small("a", "2", "2Gi")],
            pods: vec![],
        };
        let mut cluster = Cluster::new(&snap);
        let p = sized("p", "500m", "512Mi", json!({}));
        let first = cluster.schedule(&p).expect("fits");
        assert_eq!(first, "a", "a tie goes to the first name");
        cluster.assume(&p, &first);
        assert_eq!(
            cluster.schedule(&p).expect("fits"),
            "b",
            "then the emptier node"
        );
        let bigger = Snapshot {
            nodes: vec![small("a", "2", "2Gi"), small("z", "8", "8Gi")],
            pods: vec![],
        };
        assert_eq!(schedule(&p, &bigger), Ok("z".into()));
    }

    #[test]
    fn assumed_pods_fill_the_last_slot() {
        let snap = Snapshot {
            nodes: vec![small("n", "1", "1Gi")],
            pods: vec![],
        };
        let mut cluster = Cluster::new(&snap);
        let p = sized("p", "600m", "1Mi", json!({}));
        assert_eq!(cluster.schedule(&p), Ok("n".into()));
        cluster.assume(&p, "n");
        assert_eq!(
            cluster
                .schedule(&sized("q", "600m", "1Mi", json!({})))
                .expect_err("full")
                .to_string(),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn mixed_reasons_count_per_node() {
        let snap = Snapshot {
            nodes: vec![
                node("cordoned", json!({"spec": {"unschedulable": true}})),
                node(
                    "notready",
                    json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                ),
                small("tiny", "100m", "64Mi"),
                small("tiny2", "100m", "64Mi"),
            ],
            pods: vec![],
        };
        let err = schedule(&sized("p", "500m", "128Mi", json!({})), &snap).expect_err("nowhere");
        assert_eq!(
            err.to_string(),
            "0/4 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable, 2 Insufficient cpu, 2 Insufficient memory."
        );
    }
}
