//! Requests and limits as Kubernetes turns them into cgroup settings (kubelet's cpu shares and
//! CFS quota formulas, the memory limit), the pod's QoS class, the OOM score adjustment per QoS
//! class, and `resourceFieldRef` values of the downward API.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use serde_json::{json, Value};
use skiff_api::validation::parse_quantity;

use super::spec::ContainerSpecInput;
use super::Result;

/// Kubelet's bounds and CFS period.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const SHARES_PER_CPU: u64 = 1024;
const CFS_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: i64 = 1000;
const NANO: i128 = 1_000_000_000;

/// Kubelet's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = (milli_cpu as u64).saturating_mul(SHARES_PER_CPU) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// Kubelet's `MilliCPUToQuota` for the default 100 ms period: None when there is no limit.
pub fn milli_cpu_to_quota(milli_cpu: i64) -> Option<i64> {
    if milli_cpu <= 0 {
        return None;
    }
    let quota = milli_cpu.saturating_mul(CFS_PERIOD_US as i64) / 1000;
    Some(quota.max(MIN_QUOTA_US))
}

/// A quantity in the container's `requests` or `limits` (`cpu`, `memory`), in billionths.
fn quantity(container: &Container, limits: bool, name: &str) -> Option<i128> {
    let resources = container.resources.as_ref()?;
    let map = if limits {
        resources.limits.as_ref()?
    } else {
        resources.requests.as_ref()?
    };
    parse_quantity(&map.get(name)?.0).filter(|v| *v > 0)
}

/// Millicores, rounded up as Kubernetes' `MilliValue`.
fn milli(billionths: i128) -> i64 {
    let m = (billionths + 999_999).div_euclid(1_000_000);
    i64::try_from(m).unwrap_or(i64::MAX)
}

/// Whole units, rounded up as Kubernetes' `Value`.
fn whole(billionths: i128) -> i64 {
    let v = (billionths + NANO - 1).div_euclid(NANO);
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The cpu request in millicores, kubelet's way: the request, or the limit when only that is set.
fn cpu_request_milli(container: &Container) -> i64 {
    quantity(container, false, "cpu")
        .or_else(|| quantity(container, true, "cpu"))
        .map(milli)
        .unwrap_or(0)
}

/// The OCI `linux.resources` of a container: device rules (deny all; the runtime allows its
/// default devices), cpu shares from the request, CFS quota from the limit, memory limit.
pub fn container_resources(input: &ContainerSpecInput) -> Result<Value> {
    let container = input.container;
    let mut cpu = json!({"shares": milli_cpu_to_shares(cpu_request_milli(container))});
    if let Some(quota) = quantity(container, true, "cpu")
        .map(milli)
        .and_then(milli_cpu_to_quota)
    {
        cpu["quota"] = json!(quota);
        cpu["period"] = json!(CFS_PERIOD_US);
    }
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": cpu,
    });
    if let Some(limit) = quantity(container, true, "memory").map(whole) {
        resources["memory"] = json!({"limit": limit});
        // As containerd: memory+swap equal to memory, so a limited container never swaps.
        if super::cgroup::swap_limit_supported() {
            resources["memory"]["swap"] = json!(limit);
        }
    }
    Ok(resources)
}

/// The pod's QoS class as Kubernetes computes it: `Guaranteed`, `Burstable` or `BestEffort`.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for name in ["cpu", "memory"] {
            let request = quantity(container, false, name);
            let limit = quantity(container, true, name);
            any |= request.is_some() || limit.is_some();
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Kubelet's `GetContainerOOMScoreAdjust`: -997 Guaranteed, 1000 BestEffort, and for Burstable
/// `1000 - 1000 * memory request / node memory`, within [3, 999].
pub fn oom_score_adj(input: &ContainerSpecInput) -> i32 {
    match qos_class(input.pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let capacity = i128::from(input.fields.node_allocatable_memory.max(1));
            let request = quantity(input.container, false, "memory")
                .map(whole)
                .map(i128::from)
                .unwrap_or(0);
            let adj = 1000 - (1000 * request) / capacity;
            adj.clamp(3, 999) as i32
        }
    }
}

/// A `resourceFieldRef`'s value as kubelet gives it: rounded up in units of the divisor;
/// limits default to the node's allocatable when the container sets none.
pub fn resource_field_value(
    input: &ContainerSpecInput,
    selector: &ResourceFieldSelector,
) -> std::result::Result<String, String> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => input.container,
        Some(name) => input
            .pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
            })
            .ok_or_else(|| format!("resourceFieldRef: no container {name:?} in the pod"))?,
    };
    let divisor = match &selector.divisor {
        Some(q) => parse_quantity(&q.0)
            .ok_or_else(|| format!("resourceFieldRef: invalid divisor {:?}", q.0))?,
        None => NANO,
    };
    let divisor = if divisor <= 0 { NANO } else { divisor };
    let fields = &input.fields;
    let node_cpu = i128::from(fields.node_allocatable_millicpu) * 1_000_000;
    let node_memory = i128::from(fields.node_allocatable_memory) * NANO;
    let ceil_div = |a: i64, b: i64| -> i64 { (a + b - 1).div_euclid(b.max(1)) };
    let value = match selector.resource.as_str() {
        "limits.cpu" => {
            let cpu = quantity(container, true, "cpu").unwrap_or(node_cpu);
            ceil_div(milli(cpu), milli(divisor))
        }
        "requests.cpu" => {
            let cpu = quantity(container, false, "cpu").unwrap_or(0);
            ceil_div(milli(cpu), milli(divisor))
        }
        "limits.memory" => {
            let memory = quantity(container, true, "memory").unwrap_or(node_memory);
            ceil_div(whole(memory), whole(divisor))
        }
        "requests.memory" => {
            let memory = quantity(container, false, "memory").unwrap_or(0);
            ceil_div(whole(memory), whole(divisor))
        }
        other => return Err(format!("resourceFieldRef: unsupported resource {other:?}")),
    };
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_cpu_formulas() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), 262_144);
        assert_eq!(milli_cpu_to_quota(0), None);
        assert_eq!(milli_cpu_to_quota(5), Some(1000));
        assert_eq!(milli_cpu_to_quota(250), Some(25_000));
        assert_eq!(milli_cpu_to_quota(2000), Some(200_000));
    }

    #[test]
    fn qos_classes() {
        let pod = |resources: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"spec": {"containers": [
                {"name": "a", "resources": resources}, {"name": "b"}]}}))
            .expect("pod")
        };
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"requests": {"memory": "1Mi"}}))),
            "Burstable"
        );
        let both = |r: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"spec": {"containers": [
                {"name": "a", "resources": r.clone()}, {"name": "b", "resources": r}]}}))
            .expect("pod")
        };
        let full = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(qos_class(&both(full)), "Guaranteed");
        let unequal = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}});
        assert_eq!(qos_class(&both(unequal)), "Burstable");
    }
}
