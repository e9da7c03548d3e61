//! The filters of Kubernetes' default profile that apply here, in its order and with its
//! reasons: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit. Each is a pure function of the pod and one node's aggregated state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint};

use crate::resources::{node_allocatable, Resources};

/// NodeUnschedulable's reason.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeName's reason.
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// TaintToleration's reason. Kubernetes 1.35 no longer names the taint (taint keys and values
/// may be sensitive); the scheduler logs it instead.
pub const REASON_TAINT: &str = "node(s) had untolerated taint(s)";
/// NodeAffinity's reason for nodeSelector and required node affinity.
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// NodePorts' reason.
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
/// NodeResourcesFit's reason when the node holds its maximum number of pods.
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// The taint a cordoned node carries, which a pod may tolerate to land there anyway.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The taint Kubernetes puts on a node whose Ready condition is False (or missing).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint Kubernetes puts on a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// A host port a container asks for, with Kubernetes' defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound: same protocol and port, and the same
    /// address or either one on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// The host ports a pod's containers (and sidecars) ask for.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: p
                    .protocol
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

/// A node with what its pods (bound or assumed) already take.
#[derive(Clone, Debug)]
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub pod_count: i64,
    pub requested: Resources,
    /// Requests with defaults for missing cpu and memory, for scoring.
    pub non_zero_requested: Resources,
    pub used_ports: Vec<HostPort>,
}

impl<'a> NodeInfo<'a> {
    pub fn new(node: &'a Node) -> NodeInfo<'a> {
        let (allocatable, allowed_pods) = node_allocatable(node);
        NodeInfo {
            node,
            allocatable,
            allowed_pods,
            pod_count: 0,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            used_ports: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// Counts a pod as running here.
    pub fn add_pod(&mut self, pod: &Pod) {
        self.pod_count += 1;
        self.requested.add(&crate::resources::pod_requests(pod));
        self.non_zero_requested
            .add(&crate::resources::pod_requests_non_zero(pod));
        self.used_ports.extend(pod_host_ports(pod));
    }
}

/// What a filter says: fits, or the reasons it does not (NodeResourcesFit may give several).
pub type FilterResult = Result<(), Vec<String>>;

fn reject(reason: &str) -> FilterResult {
    Err(vec![reason.to_string()])
}

/// All filters in Kubernetes' order; the first that rejects gives the node's reasons.
pub fn run_filters(pod: &Pod, pod_requests: &Resources, info: &NodeInfo) -> FilterResult {
    node_unschedulable(pod, info.node)?;
    node_name(pod, info.node)?;
    taint_toleration(pod, info.node)?;
    node_affinity(pod, info.node)?;
    node_ports(pod, info)?;
    node_resources_fit(pod_requests, info)
}

fn tolerations(pod: &Pod) -> &[k8s_openapi::api::core::v1::Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// Whether one toleration tolerates a taint (Kubernetes' `ToleratesTaint`): an empty effect
/// matches every effect, an empty key with Exists matches every key.
pub fn tolerates(toleration: &k8s_openapi::api::core::v1::Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating its unschedulable taint.
pub fn node_unschedulable(pod: &Pod, node: &Node) -> FilterResult {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        Ok(())
    } else {
        reject(REASON_UNSCHEDULABLE)
    }
}

/// NodeName: a pod naming a node fits only there (pods already bound never reach the
/// scheduler, so this matters only for pure callers).
pub fn node_name(pod: &Pod, node: &Node) -> FilterResult {
    match pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        Some(wanted) if Some(wanted) != node.metadata.name.as_deref() => reject(REASON_NODE_NAME),
        _ => Ok(()),
    }
}

/// The node's taints plus those Kubernetes' node lifecycle controller would add for its Ready
/// condition (not-ready when False or missing, unreachable when Unknown): this is how a node
/// that is not ready stops taking pods, and how pods tolerating that still may land there.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = implied {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    taints
}

/// The first NoSchedule or NoExecute taint of the node no toleration of the pod tolerates.
pub fn untolerated_taint(pod: &Pod, node: &Node) -> Option<Taint> {
    let tolerations = tolerations(pod);
    effective_taints(node).into_iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated.
pub fn taint_toleration(pod: &Pod, node: &Node) -> FilterResult {
    match untolerated_taint(pod, node) {
        None => Ok(()),
        Some(taint) => {
            tracing::debug!(
                node = node.metadata.name.as_deref().unwrap_or_default(),
                pod = pod.metadata.name.as_deref().unwrap_or_default(),
                taint = %format!("{}={}:{}", taint.key, taint.value.as_deref().unwrap_or_default(), taint.effect),
                "node has an untolerated taint"
            );
            reject(REASON_TAINT)
        }
    }
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(actual), [bound]) = (value.and_then(|v| v.parse::<i64>().ok()), values)
            else {
                return false;
            };
            let Ok(bound) = bound.parse::<i64>() else {
                return false;
            };
            if op == "Gt" {
                actual > bound
            } else {
                actual < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: every expression over labels and every field
/// requirement (only `metadata.name`) holds; a term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    expressions
        .iter()
        .all(|r| requirement_matches(r, label(&r.key)))
        && fields.iter().all(|r| {
            r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_deref())
        })
}

/// NodeAffinity: the node's labels match the pod's nodeSelector and one of the terms of its
/// required node affinity, when it has one.
pub fn node_affinity(pod: &Pod, node: &Node) -> FilterResult {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        reject(REASON_NODE_AFFINITY)
    }
}

/// NodePorts: no host port the pod wants is taken on the node.
pub fn node_ports(pod: &Pod, info: &NodeInfo) -> FilterResult {
    let wanted = pod_host_ports(pod);
    if wanted
        .iter()
        .any(|w| info.used_ports.iter().any(|u| u.conflicts(w)))
    {
        reject(REASON_NODE_PORTS)
    } else {
        Ok(())
    }
}

/// NodeResourcesFit: one more pod fits the node's pod limit, and each requested resource fits
/// what its allocatable leaves after the pods already there. Every shortfall is a reason.
pub fn node_resources_fit(requests: &Resources, info: &NodeInfo) -> FilterResult {
    let mut reasons = Vec::new();
    if info.pod_count + 1 > info.allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    if requests.is_zero() {
        return if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        };
    }
    let free = |name: &str| {
        info.allocatable
            .get(name)
            .saturating_sub(info.requested.get(name))
    };
    for name in ["cpu", "memory", "ephemeral-storage"] {
        let want = requests.get(name);
        if want > 0 && want > free(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    for (name, want) in &requests.scalar {
        if *want > 0 && *want > free(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resources::pod_requests;
    use serde_json::{json, Value};

    pub(crate) fn node(name: &str, extra: Value) -> Node {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut n, extra);
        serde_json::from_value(n).expect("node")
    }

    pub(crate) fn pod(name: &str, extra: Value) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        });
        merge(&mut p, extra);
        serde_json::from_value(p).expect("pod")
    }

    /// JSON merge patch semantics, enough to vary fixtures.
    pub(crate) fn merge(target: &mut Value, patch: Value) {
        match patch {
            Value::Object(map) => {
                if !target.is_object() {
                    *target = json!({});
                }
                for (k, v) in map {
                    if v.is_null() {
                        if let Some(o) = target.as_object_mut() {
                            o.remove(&k);
                        }
                    } else {
                        merge(&mut target[&k], v);
                    }
                }
            }
            other => *target = other,
        }
    }

    fn check(pod: &Pod, node: &Node) -> FilterResult {
        let info = NodeInfo::new(node);
        run_filters(pod, &pod_requests(pod), &info)
    }

    fn tol(t: Value) -> Value {
        json!({"spec": {"tolerations": [t]}})
    }

    #[test]
    fn a_plain_pod_fits_a_ready_node() {
        assert_eq!(check(&pod("p", json!({})), &node("n", json!({}))), Ok(()));
    }

    #[test]
    fn cordoned_nodes_take_only_pods_tolerating_it() {
        let n = node("n", json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            check(&pod("p", json!({})), &n),
            Err(vec![REASON_UNSCHEDULABLE.into()])
        );
        let tolerant = pod(
            "p",
            tol(json!({"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"})),
        );
        assert_eq!(check(&tolerant, &n), Ok(()));
    }

    #[test]
    fn node_name_must_match_when_set() {
        let p = pod("p", json!({"spec": {"nodeName": "other"}}));
        assert_eq!(
            check(&p, &node("n", json!({}))),
            Err(vec![REASON_NODE_NAME.into()])
        );
        assert_eq!(check(&p, &node("other", json!({}))), Ok(()));
    }

    #[test]
    fn not_ready_nodes_are_tainted_as_kubernetes_does() {
        let not_ready = node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        let unknown = node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        let missing = node("n", json!({"status": {"conditions": []}}));
        for n in [&not_ready, &missing] {
            assert_eq!(
                check(&pod("p", json!({})), n),
                Err(vec![REASON_TAINT.into()])
            );
            assert_eq!(
                untolerated_taint(&pod("p", json!({})), n).map(|t| t.key),
                Some(TAINT_NOT_READY.into())
            );
        }
        assert_eq!(
            untolerated_taint(&pod("p", json!({})), &unknown).map(|t| t.key),
            Some(TAINT_UNREACHABLE.into())
        );
        // A pod tolerating not-ready (as DaemonSet pods do) still lands.
        let tolerant = pod(
            "p",
            tol(json!({"key": TAINT_NOT_READY, "operator": "Exists"})),
        );
        assert_eq!(check(&tolerant, &not_ready), Ok(()));
        // The NoExecute toleration every pod gets by default does not tolerate NoSchedule.
        let default_toleration = pod(
            "p",
            tol(
                json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
        );
        assert_eq!(
            check(&default_toleration, &not_ready),
            Err(vec![REASON_TAINT.into()])
        );
    }

    #[test]
    fn taints_and_tolerations_match_as_kubernetes_does() {
        let n = node(
            "n",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        let cases = [
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "dedicated", "value": "gpu"}), true),
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}),
                false,
            ),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (
                json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoSchedule"}), true),
            (
                json!({"operator": "Exists", "effect": "PreferNoSchedule"}),
                false,
            ),
        ];
        for (t, fits) in cases {
            let p = pod("p", tol(t.clone()));
            assert_eq!(check(&p, &n).is_ok(), fits, "toleration {t}");
        }
        assert_eq!(
            check(&pod("p", json!({})), &n),
            Err(vec![REASON_TAINT.into()])
        );
        let no_execute = node(
            "n",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
        );
        assert_eq!(
            check(&pod("p", json!({})), &no_execute),
            Err(vec![REASON_TAINT.into()])
        );
        let prefer = node(
            "n",
            json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        );
        assert_eq!(
            check(&pod("p", json!({})), &prefer),
            Ok(()),
            "PreferNoSchedule only scores"
        );
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = node(
            "n",
            json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}),
        );
        let p = |sel: Value| pod("p", json!({"spec": {"nodeSelector": sel}}));
        assert_eq!(check(&p(json!({"disk": "ssd"})), &n), Ok(()));
        assert_eq!(check(&p(json!({"disk": "ssd", "zone": "a"})), &n), Ok(()));
        assert_eq!(
            check(&p(json!({"disk": "hdd"})), &n),
            Err(vec![REASON_NODE_AFFINITY.into()])
        );
        assert_eq!(
            check(&p(json!({"gpu": "yes"})), &n),
            Err(vec![REASON_NODE_AFFINITY.into()])
        );
    }

    #[test]
    fn required_node_affinity_terms_are_ored_and_expressions_anded() {
        let n = node(
            "n1",
            json!({"metadata": {"labels": {"disk": "ssd", "cores": "8"}}}),
        );
        let p = |terms: Value| {
            pod(
                "p",
                json!({"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
            )
        };
        let expr = |key: &str, op: &str, values: Value| json!({"key": key, "operator": op, "values": values});
        let fits = |terms: Value| check(&p(terms), &n).is_ok();
        assert!(fits(
            json!([{"matchExpressions": [expr("disk", "In", json!(["ssd", "nvme"]))]}])
        ));
        assert!(!fits(
            json!([{"matchExpressions": [expr("disk", "NotIn", json!(["ssd"]))]}])
        ));
        assert!(fits(
            json!([{"matchExpressions": [expr("gpu", "NotIn", json!(["x"]))]}])
        ));
        assert!(fits(
            json!([{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}])
        ));
        assert!(!fits(
            json!([{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}])
        ));
        assert!(fits(
            json!([{"matchExpressions": [expr("cores", "Gt", json!(["4"]))]}])
        ));
        assert!(!fits(
            json!([{"matchExpressions": [expr("cores", "Lt", json!(["4"]))]}])
        ));
        assert!(
            !fits(
                json!([{"matchExpressions": [expr("disk", "In", json!(["ssd"])), expr("cores", "Lt", json!(["4"]))]}])
            ),
            "AND within a term"
        );
        assert!(
            fits(
                json!([{"matchExpressions": [expr("disk", "In", json!(["hdd"]))]}, {"matchFields": [expr("metadata.name", "In", json!(["n1"]))]}])
            ),
            "OR across terms"
        );
        assert!(!fits(
            json!([{"matchFields": [expr("metadata.name", "In", json!(["n2"]))]}])
        ));
        assert!(!fits(json!([{}])), "an empty term matches nothing");
    }

    #[test]
    fn host_ports_conflict_by_protocol_address_and_port() {
        let hp = |protocol: &str, ip: &str, port| HostPort {
            protocol: protocol.into(),
            ip: ip.into(),
            port,
        };
        assert!(hp("TCP", "0.0.0.0", 80).conflicts(&hp("TCP", "10.0.0.1", 80)));
        assert!(hp("TCP", "10.0.0.1", 80).conflicts(&hp("TCP", "0.0.0.0", 80)));
        assert!(hp("TCP", "10.0.0.1", 80).conflicts(&hp("TCP", "10.0.0.1", 80)));
        assert!(!hp("TCP", "10.0.0.1", 80).conflicts(&hp("TCP", "10.0.0.2", 80)));
        assert!(!hp("TCP", "0.0.0.0", 80).conflicts(&hp("UDP", "0.0.0.0", 80)));
        assert!(!hp("TCP", "0.0.0.0", 80).conflicts(&hp("TCP", "0.0.0.0", 81)));

        let with_port = |name: &str, port: Value| {
            pod(
                name,
                json!({"spec": {"containers": [{"name": "main", "image": "x", "ports": [port]}]}}),
            )
        };
        let n = node("n", json!({}));
        let mut info = NodeInfo::new(&n);
        info.add_pod(&with_port(
            "a",
            json!({"containerPort": 8080, "hostPort": 80}),
        ));
        let b = with_port("b", json!({"containerPort": 80, "hostPort": 80}));
        assert_eq!(
            run_filters(&b, &pod_requests(&b), &info),
            Err(vec![REASON_NODE_PORTS.into()])
        );
        let udp = with_port(
            "c",
            json!({"containerPort": 80, "hostPort": 80, "protocol": "UDP"}),
        );
        assert_eq!(run_filters(&udp, &pod_requests(&udp), &info), Ok(()));
        let no_host_port = with_port("d", json!({"containerPort": 80}));
        assert_eq!(
            run_filters(&no_host_port, &pod_requests(&no_host_port), &info),
            Ok(())
        );
    }

    #[test]
    fn resources_fit_against_what_bound_pods_leave() {
        let n = node(
            "n",
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "512Mi", "pods": "3"}}}),
        );
        let sized = |name: &str, cpu: &str, mem: &str| {
            pod(
                name,
                json!({"spec": {"containers": [{"name": "main", "image": "x",
                "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
            )
        };
        let mut info = NodeInfo::new(&n);
        info.add_pod(&sized("a", "600m", "512Mi"));
        let fit = |p: &Pod, info: &NodeInfo| run_filters(p, &pod_requests(p), info);
        assert_eq!(
            fit(&sized("b", "400m", "512Mi"), &info),
            Ok(()),
            "exactly the rest fits"
        );
        assert_eq!(
            fit(&sized("b", "401m", "100Mi"), &info),
            Err(vec!["Insufficient cpu".into()])
        );
        assert_eq!(
            fit(&sized("b", "1", "1Gi"), &info),
            Err(vec![
                "Insufficient cpu".into(),
                "Insufficient memory".into()
            ])
        );
        let storage = pod(
            "s",
            json!({"spec": {"containers": [{"name": "main", "image": "x",
            "resources": {"requests": {"ephemeral-storage": "1Gi", "example.com/gpu": "1"}}}]}}),
        );
        assert_eq!(
            fit(&storage, &info),
            Err(vec![
                "Insufficient ephemeral-storage".into(),
                "Insufficient example.com/gpu".into()
            ])
        );
        info.add_pod(&pod("b", json!({})));
        info.add_pod(&pod("c", json!({})));
        assert_eq!(
            fit(&pod("d", json!({})), &info),
            Err(vec![REASON_TOO_MANY_PODS.into()])
        );
        assert_eq!(
            fit(&sized("d", "1", "1Mi"), &info),
            Err(vec![REASON_TOO_MANY_PODS.into(), "Insufficient cpu".into()])
        );
    }

    #[test]
    fn the_first_failing_filter_decides_in_kubernetes_order() {
        let n = node(
            "n",
            json!({
                "metadata": {"labels": {"disk": "hdd"}},
                "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
            }),
        );
        let p = pod("p", json!({"spec": {"nodeSelector": {"disk": "ssd"}}}));
        assert_eq!(check(&p, &n), Err(vec![REASON_UNSCHEDULABLE.into()]));
        let uncordoned = node(
            "n",
            json!({
                "metadata": {"labels": {"disk": "hdd"}},
                "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            }),
        );
        assert_eq!(check(&p, &uncordoned), Err(vec![REASON_TAINT.into()]));
    }
}
