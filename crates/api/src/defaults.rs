//! Defaulting as Kubernetes does it, applied before validation on create and update.
//!
//! Covers what the API server's defaulting and the admission plugins enabled by default
//! (Priority, DefaultTolerationSeconds, ServiceAccount without its token volume) add to a pod,
//! so `get -o yaml` shows what a real cluster shows. Every function is idempotent.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, Probe, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::validation::parse_quantity;

/// How long a pod stays on a not-ready or unreachable node before eviction
/// (DefaultTolerationSeconds admission).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The taints the node lifecycle puts on a node that stopped reporting.
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Pod defaults: restartPolicy Always, terminationGracePeriodSeconds 30, dnsPolicy ClusterFirst,
/// schedulerName default-scheduler, securityContext {}, enableServiceLinks true, priority 0,
/// imagePullPolicy (Always for `:latest` or no tag, IfNotPresent otherwise),
/// terminationMessagePath/Policy, port protocol TCP, status.phase Pending, ...
pub fn pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    pod_spec(spec);
    let qos = qos_class(spec);
    let status = pod.status.get_or_insert_with(Default::default);
    if status.phase.as_deref().unwrap_or_default().is_empty() {
        status.phase = Some("Pending".to_string());
    }
    // A pure function of the (immutable) resources, so it is always recomputed.
    status.qos_class = Some(qos.to_string());
}

fn pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.termination_grace_period_seconds.get_or_insert(30);
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");
    spec.enable_service_links.get_or_insert(true);
    // Priority admission: no priority class and no global default gives priority 0.
    spec.priority.get_or_insert(0);
    set_if_empty(&mut spec.preemption_policy, "PreemptLowerPriority");
    // ServiceAccount admission (its token volume is left out on purpose: no token controller).
    // The deprecated `serviceAccount` names the account when `serviceAccountName` does not.
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        spec.service_account_name = spec.service_account.clone().filter(|s| !s.is_empty());
    }
    set_if_empty(&mut spec.service_account_name, "default");
    // Kubernetes always writes the deprecated field as a copy of the current one.
    spec.service_account = spec.service_account_name.clone();
    let host_network = spec.host_network == Some(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
    default_tolerations(spec.tolerations.get_or_insert_with(Vec::new));
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable nodes for 300s unless
/// the pod already says how it tolerates them.
fn default_tolerations(tolerations: &mut Vec<Toleration>) {
    for taint in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        let tolerated = tolerations.iter().any(|t| {
            let key = t.key.as_deref().unwrap_or_default();
            let effect = t.effect.as_deref().unwrap_or_default();
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(taint.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

fn container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        c.image_pull_policy =
            Some(pull_policy_for(c.image.as_deref().unwrap_or_default()).to_string());
    }
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    let resources = c
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    requests_from_limits(resources);
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        self::probe(probe);
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(field_ref) = e.value_from.as_mut().and_then(|f| f.field_ref.as_mut()) {
            set_if_empty(&mut field_ref.api_version, "v1");
        }
    }
}

/// A container with limits but no request for a resource requests its limit.
fn requests_from_limits(resources: &mut ResourceRequirements) {
    let Some(limits) = resources.limits.as_ref().filter(|l| !l.is_empty()) else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (name, q) in limits {
        requests.entry(name.clone()).or_insert_with(|| q.clone());
    }
}

fn probe(p: &mut Probe) {
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(http) = p.http_get.as_mut() {
        set_if_empty(&mut http.path, "/");
        set_if_empty(&mut http.scheme, "HTTP");
    }
}

fn volume(v: &mut k8s_openapi::api::core::v1::Volume) {
    // File modes Kubernetes gives projected files: 0644.
    const DEFAULT_MODE: i32 = 0o644;
    let has_source = matches!(serde_json::to_value(&*v), Ok(serde_json::Value::Object(m)) if m.iter().any(|(k, v)| k != "name" && !v.is_null()));
    if !has_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(c) = v.config_map.as_mut() {
        c.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(d) = v.downward_api.as_mut() {
        d.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(p) = v.projected.as_mut() {
        p.default_mode.get_or_insert(DEFAULT_MODE);
    }
    if let Some(h) = v.host_path.as_mut() {
        h.type_.get_or_insert_with(String::new);
    }
}

/// Always for `:latest` or an untagged image without digest, IfNotPresent otherwise.
pub fn pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' before the last '/' is a registry port, not a tag.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':').map(|(_, tag)| tag) {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest.is_some() => "IfNotPresent",
        None => "Always",
    }
}

/// The pod's quality-of-service class from its containers' cpu and memory requests and limits:
/// `Guaranteed` when every container limits both and requests equal limits, `BestEffort` when
/// nothing is requested or limited, `Burstable` otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let positive = |q: &Quantity| parse_quantity(&q.0).filter(|v| *v > 0);
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let resources = c.resources.as_ref();
        for (name, q) in resources
            .and_then(|r| r.requests.as_ref())
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(v)) = (qos_resource(name), positive(q)) {
                *requests.entry(name).or_insert(0) += v;
            }
        }
        let mut found = (false, false);
        for (name, q) in resources
            .and_then(|r| r.limits.as_ref())
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(v)) = (qos_resource(name), positive(q)) {
                *limits.entry(name).or_insert(0) += v;
                if name == "cpu" {
                    found.0 = true;
                } else {
                    found.1 = true;
                }
            }
        }
        if found != (true, true) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(n, r)| limits.get(n) == Some(r))
    {
        return "Guaranteed";
    }
    "Burstable"
}

fn qos_resource(name: &str) -> Option<&'static str> {
    match name {
        "cpu" => Some("cpu"),
        "memory" => Some("memory"),
        _ => None,
    }
}

fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or_default().is_empty() {
        *field = Some(value.to_string());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_with_image(image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": 80}]}]}
        }))
        .unwrap()
    }

    fn defaulted(image: &str) -> Pod {
        let mut p = pod_with_image(image);
        pod(&mut p);
        p
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:1.36", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("busybox:latest@sha256:abcd", "Always"),
        ] {
            let p = defaulted(image);
            let got = p.spec.unwrap().containers[0].image_pull_policy.clone();
            assert_eq!(got.as_deref(), Some(policy), "{image}");
        }
    }

    #[test]
    fn a_pod_gets_what_kubernetes_shows() {
        let p = defaulted("busybox:1.36");
        let v = serde_json::to_value(&p).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert!(
            spec.get("volumes").is_none(),
            "no service account token volume"
        );
        let c = &spec["containers"][0];
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        assert_eq!(
            v["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn defaulting_twice_gives_the_same_pod() {
        let once = defaulted("busybox");
        let mut twice = once.clone();
        pod(&mut twice);
        assert_eq!(once, twice);
    }

    #[test]
    fn an_existing_toleration_for_all_taints_suppresses_the_defaults() {
        let mut p = pod_with_image("busybox");
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        pod(&mut p);
        assert_eq!(p.spec.unwrap().tolerations.unwrap().len(), 1);
    }

    #[test]
    fn qos_classes() {
        let with = |limits: &[(&str, &str)], requests: &[(&str, &str)]| {
            let mut p = pod_with_image("busybox");
            let to_map = |l: &[(&str, &str)]| {
                Some(
                    l.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect::<BTreeMap<_, _>>(),
                )
            };
            p.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
                limits: to_map(limits),
                requests: to_map(requests),
                ..Default::default()
            });
            pod(&mut p);
            p.status.unwrap().qos_class.unwrap()
        };
        assert_eq!(with(&[], &[]), "BestEffort");
        // Requests default to limits: both set and equal.
        assert_eq!(with(&[("cpu", "1"), ("memory", "1Gi")], &[]), "Guaranteed");
        assert_eq!(
            with(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "1000m")]),
            "Guaranteed"
        );
        assert_eq!(
            with(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "500m")]),
            "Burstable"
        );
        assert_eq!(with(&[], &[("memory", "10Mi")]), "Burstable");
        assert_eq!(with(&[("cpu", "1")], &[]), "Burstable");
    }

    #[test]
    fn requests_default_to_limits() {
        let mut p = pod_with_image("busybox");
        p.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("64Mi".into()),
            )])),
            ..Default::default()
        });
        pod(&mut p);
        let r = p.spec.unwrap().containers[0].resources.clone().unwrap();
        assert_eq!(r.requests.unwrap()["memory"], Quantity("64Mi".into()));
    }
}
