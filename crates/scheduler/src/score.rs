//! Scores of the nodes a pod fits, from the default profile's plugins that apply here:
//! NodeResourcesFit (least allocated), NodeResourcesBalancedAllocation, TaintToleration
//! (PreferNoSchedule) and NodeAffinity (preferred terms), each 0..=100 and weighted as
//! Kubernetes weighs them.

use k8s_openapi::api::core::v1::Pod;

use crate::filter::{effective_taints, term_matches, tolerates, NodeInfo};
use crate::resources::Resources;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Default profile weights.
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;
const WEIGHT_TAINT: i64 = 3;
const WEIGHT_AFFINITY: i64 = 2;

/// LeastAllocated: the share of cpu and memory left free once the pod is placed, averaged.
/// Missing requests count as defaults so best-effort pods spread too.
pub fn least_allocated(pod_non_zero: &Resources, info: &NodeInfo) -> i64 {
    let mut total = 0;
    for name in ["cpu", "memory"] {
        let capacity = info.allocatable.get(name);
        let requested = info
            .non_zero_requested
            .get(name)
            .saturating_add(pod_non_zero.get(name));
        total += if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_NODE_SCORE / capacity
        };
    }
    total / 2
}

/// BalancedAllocation: how evenly cpu and memory would be used, 100 when equally; a pod that
/// requests neither gets no preference from it.
pub fn balanced_allocation(pod_requests: &Resources, info: &NodeInfo) -> i64 {
    if pod_requests.milli_cpu == 0 && pod_requests.memory == 0 {
        return 0;
    }
    let fraction = |name: &str| {
        let capacity = info.allocatable.get(name);
        if capacity <= 0 {
            return 1.0;
        }
        let used = info
            .requested
            .get(name)
            .saturating_add(pod_requests.get(name));
        (used as f64 / capacity as f64).min(1.0)
    };
    let std_dev = (fraction("cpu") - fraction("memory")).abs() / 2.0;
    ((1.0 - std_dev) * MAX_NODE_SCORE as f64) as i64
}

/// How many PreferNoSchedule taints of the node the pod does not tolerate.
fn intolerable_preferred_taints(pod: &Pod, info: &NodeInfo) -> i64 {
    let tolerations: Vec<_> = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    effective_taints(info.node)
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
        .count() as i64
}

/// The sum of the weights of the pod's preferred node affinity terms the node matches.
fn preferred_affinity(pod: &Pod, info: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| t.weight != 0 && term_matches(&t.preference, info.node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// Scales raw scores to 0..=100 by the highest, optionally reversed (fewer is better).
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|r| {
            if max == 0 {
                if reverse {
                    MAX_NODE_SCORE
                } else {
                    0
                }
            } else {
                let scaled = r * MAX_NODE_SCORE / max;
                if reverse {
                    MAX_NODE_SCORE - scaled
                } else {
                    scaled
                }
            }
        })
        .collect()
}

/// The weighted total score of each feasible node, in the order given.
pub fn score_nodes(
    pod: &Pod,
    pod_requests: &Resources,
    pod_non_zero: &Resources,
    feasible: &[&NodeInfo],
) -> Vec<i64> {
    let taints: Vec<i64> = feasible
        .iter()
        .map(|i| intolerable_preferred_taints(pod, i))
        .collect();
    let affinity: Vec<i64> = feasible
        .iter()
        .map(|i| preferred_affinity(pod, i))
        .collect();
    let taints = normalize(&taints, true);
    let affinity = normalize(&affinity, false);
    feasible
        .iter()
        .enumerate()
        .map(|(at, info)| {
            least_allocated(pod_non_zero, info) * WEIGHT_LEAST_ALLOCATED
                + balanced_allocation(pod_requests, info) * WEIGHT_BALANCED
                + taints[at] * WEIGHT_TAINT
                + affinity[at] * WEIGHT_AFFINITY
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::{node, pod};
    use crate::resources::{pod_requests, pod_requests_non_zero};
    use serde_json::json;

    fn sized(cpu: &str, mem: &str) -> Pod {
        pod(
            "p",
            json!({"spec": {"containers": [{"name": "main", "image": "x",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
        )
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let n = node(
            "n",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
        );
        let empty = NodeInfo::new(&n);
        let mut busy = NodeInfo::new(&n);
        busy.add_pod(&sized("500m", "512Mi"));
        let p = sized("250m", "256Mi");
        let nz = pod_requests_non_zero(&p);
        assert_eq!(least_allocated(&nz, &empty), 75);
        assert_eq!(least_allocated(&nz, &busy), 25);
        // Over capacity scores 0 rather than going negative.
        assert_eq!(
            least_allocated(&pod_requests_non_zero(&sized("2", "2Gi")), &empty),
            0
        );
    }

    #[test]
    fn best_effort_pods_count_default_requests() {
        let n = node(
            "n",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1000Mi", "pods": "10"}}}),
        );
        let info = NodeInfo::new(&n);
        let p = pod("p", json!({}));
        // cpu: (1000-100)/1000 = 90; memory: (1000-200)/1000 = 80.
        assert_eq!(least_allocated(&pod_requests_non_zero(&p), &info), 85);
        assert_eq!(balanced_allocation(&pod_requests(&p), &info), 0);
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let n = node(
            "n",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
        );
        let info = NodeInfo::new(&n);
        assert_eq!(
            balanced_allocation(&pod_requests(&sized("500m", "512Mi")), &info),
            100
        );
        assert_eq!(
            balanced_allocation(&pod_requests(&sized("1", "1Mi")), &info),
            50
        );
    }

    #[test]
    fn prefer_no_schedule_taints_and_preferred_affinity_steer() {
        let plain = node("a", json!({}));
        let tainted = node(
            "b",
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        );
        let labelled = node("c", json!({"metadata": {"labels": {"disk": "ssd"}}}));
        let infos = [
            NodeInfo::new(&plain),
            NodeInfo::new(&tainted),
            NodeInfo::new(&labelled),
        ];
        let refs: Vec<&NodeInfo> = infos.iter().collect();
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}}),
        );
        let scores = score_nodes(&p, &pod_requests(&p), &pod_requests_non_zero(&p), &refs);
        assert!(scores[1] < scores[0], "{scores:?}");
        assert!(scores[2] > scores[0], "{scores:?}");
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
        );
        let scores = score_nodes(
            &tolerant,
            &pod_requests(&tolerant),
            &pod_requests_non_zero(&tolerant),
            &refs,
        );
        assert_eq!(scores[0], scores[1], "{scores:?}");
    }
}
