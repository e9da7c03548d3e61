//! Resource amounts as the scheduler counts them: a pod's effective requests (Kubernetes'
//! `PodRequests`: the larger of the init containers' peak and the app containers' sum, sidecars
//! included, plus overhead) and a node's allocatable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What a container without a cpu request counts as when scoring (Kubernetes'
/// `DefaultMilliCPURequest`), so that best-effort pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// What a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Extended and hugepages resources by name, in their own units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// The amounts of a resource list (`requests`, `allocatable`, `overhead`); `pods` and
    /// unparsable quantities (the API server validated them already) are left out.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            out.set(name, quantity_value(name, quantity));
        }
        out
    }

    /// The amount of one resource by its Kubernetes name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.milli_cpu = value,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral_storage = value,
            "pods" => {}
            other => {
                self.scalar.insert(other.to_string(), value);
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, value) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_insert(0);
            *slot = slot.saturating_add(*value);
        }
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, value) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_insert(0);
            *slot = (*slot).max(*value);
        }
    }

    /// Whether nothing at all is asked for.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// A quantity in the unit the scheduler counts: millicores for cpu, whole units (bytes)
/// otherwise, rounded up as Kubernetes' `MilliValue`/`Value` do.
pub fn quantity_value(name: &str, quantity: &Quantity) -> i64 {
    let Some(nanos) = skiff_api::validation::parse_quantity(&quantity.0) else {
        return 0;
    };
    let per_unit: i128 = if name == "cpu" {
        1_000_000
    } else {
        1_000_000_000
    };
    let value = if nanos >= 0 {
        (nanos + per_unit - 1) / per_unit
    } else {
        nanos / per_unit
    };
    i64::try_from(value).unwrap_or(if value > 0 { i64::MAX } else { i64::MIN })
}

/// A container's requests, a limit standing in for a missing request as API defaulting does.
fn container_requests(container: &Container) -> Resources {
    let resources = container.resources.as_ref();
    let mut out = Resources::from_list(resources.and_then(|r| r.limits.as_ref()));
    let requests = Resources::from_list(resources.and_then(|r| r.requests.as_ref()));
    let requested = resources.and_then(|r| r.requests.as_ref());
    for name in requested.into_iter().flat_map(|r| r.keys()) {
        out.set(name, requests.get(name));
    }
    out
}

/// A container's requests for scoring: a missing cpu or memory request counts as the default.
fn container_requests_non_zero(container: &Container) -> Resources {
    let mut out = container_requests(container);
    let has = |name: &str| {
        container.resources.as_ref().is_some_and(|r| {
            r.requests.as_ref().is_some_and(|q| q.contains_key(name))
                || r.limits.as_ref().is_some_and(|q| q.contains_key(name))
        })
    };
    if !has("cpu") {
        out.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if !has("memory") {
        out.memory = DEFAULT_MEMORY_REQUEST;
    }
    out
}

fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

fn aggregate(pod: &Pod, per_container: fn(&Container) -> Resources) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut requests = Resources::default();
    for container in &spec.containers {
        requests.add(&per_container(container));
    }
    // Init containers run one after another, each beside the sidecars started before it;
    // sidecars keep running beside the app containers.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let own = per_container(container);
        let during = if is_sidecar(container) {
            requests.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut during = own;
            during.add(&sidecars);
            during
        };
        init_peak.max_with(&during);
    }
    requests.max_with(&init_peak);
    // Pod-level requests, when given, replace the containers' cpu and memory sum.
    let pod_level = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    let pod_level_values = Resources::from_list(pod_level);
    for name in ["cpu", "memory"] {
        if pod_level.is_some_and(|l| l.contains_key(name)) {
            requests.set(name, pod_level_values.get(name));
        }
    }
    requests.add(&Resources::from_list(spec.overhead.as_ref()));
    requests
}

/// The pod's effective requests, which `NodeResourcesFit` checks against free allocatable.
pub fn pod_requests(pod: &Pod) -> Resources {
    aggregate(pod, container_requests)
}

/// The pod's requests with defaults for missing cpu and memory, which scoring uses.
pub fn pod_requests_non_zero(pod: &Pod) -> Resources {
    aggregate(pod, container_requests_non_zero)
}

/// A node's allocatable (capacity when allocatable is not reported) and its pod count limit.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref())
        .filter(|l| !l.is_empty())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    let pods = list
        .and_then(|l| l.get("pods"))
        .map(|q| quantity_value("pods", q))
        .unwrap_or(0);
    (Resources::from_list(list), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn c(name: &str, requests: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "image": "busybox", "resources": {"requests": requests}})
    }

    #[test]
    fn quantities_round_up_in_scheduler_units() {
        assert_eq!(quantity_value("cpu", &Quantity("500m".into())), 500);
        assert_eq!(quantity_value("cpu", &Quantity("1.5".into())), 1500);
        assert_eq!(quantity_value("cpu", &Quantity("1n".into())), 1);
        assert_eq!(quantity_value("memory", &Quantity("1Gi".into())), 1 << 30);
        assert_eq!(quantity_value("memory", &Quantity("1500m".into())), 2);
        assert_eq!(quantity_value("memory", &Quantity("nonsense".into())), 0);
        assert_eq!(quantity_value("pods", &Quantity("110".into())), 110);
    }

    #[test]
    fn app_containers_sum() {
        let p = pod(json!({"containers": [
            c("a", json!({"cpu": "100m", "memory": "64Mi"})),
            c("b", json!({"cpu": "250m", "memory": "32Mi", "ephemeral-storage": "1Gi"})),
        ]}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 350);
        assert_eq!(r.memory, 96 << 20);
        assert_eq!(r.ephemeral_storage, 1 << 30);
    }

    #[test]
    fn init_containers_count_by_their_peak_then_overhead_is_added() {
        let p = pod(json!({
            "initContainers": [c("i1", json!({"cpu": "2", "memory": "10Mi"})), c("i2", json!({"cpu": "1", "memory": "300Mi"}))],
            "containers": [c("a", json!({"cpu": "500m", "memory": "100Mi"})), c("b", json!({"cpu": "500m", "memory": "100Mi"}))],
            "overhead": {"cpu": "100m", "memory": "1Mi"},
        }));
        let r = pod_requests(&p);
        assert_eq!(
            r.milli_cpu,
            2000 + 100,
            "max(init 2000, app 1000) + overhead"
        );
        assert_eq!(
            r.memory,
            (300 << 20) + (1 << 20),
            "max(init 300Mi, app 200Mi) + overhead"
        );
    }

    #[test]
    fn sidecars_add_to_the_app_sum_and_to_later_init_containers() {
        let mut sidecar = c("s", json!({"cpu": "200m", "memory": "50Mi"}));
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({
            "initContainers": [sidecar, c("i", json!({"cpu": "1", "memory": "10Mi"}))],
            "containers": [c("a", json!({"cpu": "300m", "memory": "100Mi"}))],
        }));
        let r = pod_requests(&p);
        // Init peak: i beside the sidecar = 1200m; app + sidecar = 500m.
        assert_eq!(r.milli_cpu, 1200);
        // Memory: app + sidecar = 150Mi beats i + sidecar = 60Mi.
        assert_eq!(r.memory, 150 << 20);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_defaults_apply_only_for_scoring() {
        let p = pod(json!({"containers": [
            {"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "300m"}}},
            {"name": "b", "image": "x"},
        ]}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 300);
        assert_eq!(r.memory, 1 << 30);
        let nz = pod_requests_non_zero(&p);
        assert_eq!(nz.milli_cpu, 300 + DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(nz.memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn pod_level_requests_replace_the_container_sum() {
        let p = pod(json!({
            "resources": {"requests": {"cpu": "2"}},
            "containers": [c("a", json!({"cpu": "100m", "memory": "10Mi"}))],
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.memory, 10 << 20);
    }

    #[test]
    fn extended_resources_are_counted_by_name() {
        let p = pod(json!({"containers": [c("a", json!({"example.com/gpu": "2"}))]}));
        assert_eq!(pod_requests(&p).get("example.com/gpu"), 2);
        assert!(!pod_requests(&p).is_zero());
        assert!(pod_requests(&pod(json!({"containers": [{"name": "a", "image": "x"}]}))).is_zero());
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        }))
        .expect("node");
        let (r, pods) = node_allocatable(&node);
        assert_eq!((r.milli_cpu, r.memory, pods), (4000, 8 << 30, 110));
    }
}
