//! `kubectl describe node`: the node, its lease, conditions, addresses, capacity, system info,
//! the pods it runs with their requests and limits, and its events, in kubectl's layout.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::describe::{
    annotations_multiline, describe_events, labels_multiline, rfc1123z, since, tabwriter, text,
};
use crate::get::encode;

/// A resource quantity: its value in thousandths of the unit, and whether it was written
/// with binary suffixes (`Mi`), which its canonical form keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quantity {
    millis: i128,
    binary: bool,
}

impl Quantity {
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let (scale, binary): (f64, bool) = match suffix {
            "" => (1.0, false),
            "m" => (1e-3, false),
            "k" => (1e3, false),
            "M" => (1e6, false),
            "G" => (1e9, false),
            "T" => (1e12, false),
            "P" => (1e15, false),
            "E" => (1e18, false),
            "Ki" => (1024f64, true),
            "Mi" => (1024f64.powi(2), true),
            "Gi" => (1024f64.powi(3), true),
            "Ti" => (1024f64.powi(4), true),
            "Pi" => (1024f64.powi(5), true),
            "Ei" => (1024f64.powi(6), true),
            _ => return None,
        };
        let number: f64 = number.parse().ok()?;
        Some(Quantity {
            millis: (number * scale * 1000.0).round() as i128,
            binary,
        })
    }

    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            millis: self.millis + other.millis,
            binary: if self.millis == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }

    /// Kubernetes' canonical form: `0`, `100m`, `2`, `64Mi`, `1G`.
    pub fn canonical(self) -> String {
        if self.millis == 0 {
            return "0".to_owned();
        }
        if self.millis % 1000 != 0 {
            return format!("{}m", self.millis);
        }
        let units = self.millis / 1000;
        let suffixes: &[(&str, i128)] = if self.binary {
            &[
                ("Ei", 1 << 60),
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ]
        } else {
            &[
                ("E", 1_000_000_000_000_000_000),
                ("P", 1_000_000_000_000_000),
                ("T", 1_000_000_000_000),
                ("G", 1_000_000_000),
                ("M", 1_000_000),
                ("k", 1_000),
            ]
        };
        for (suffix, size) in suffixes {
            if units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
        units.to_string()
    }
}

fn quantity(value: &Value) -> Quantity {
    match value {
        Value::String(text) => Quantity::parse(text).unwrap_or_default(),
        Value::Number(n) => Quantity {
            millis: (n.as_f64().unwrap_or(0.0) * 1000.0) as i128,
            binary: false,
        },
        _ => Quantity::default(),
    }
}

/// A pod's requests and limits of `resource` (kubectl's PodRequestsAndLimits, simplified: the
/// sum over app containers, or the largest init container when that is more).
fn pod_total(pod: &Value, field: &str, resource: &str) -> Quantity {
    let sum = |list: &str| {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| quantity(&c["resources"][field][resource]))
            .collect::<Vec<_>>()
    };
    let app = sum("containers")
        .into_iter()
        .fold(Quantity::default(), Quantity::add);
    let init = sum("initContainers")
        .into_iter()
        .max_by_key(|q| q.millis)
        .unwrap_or_default();
    let mut total = if init.millis > app.millis { init } else { app };
    if let Some(overhead) = pod["spec"]["overhead"].get(resource) {
        total = total.add(quantity(overhead));
    }
    total
}

fn percent(part: Quantity, whole: Quantity) -> i64 {
    if whole.millis == 0 {
        return 0;
    }
    (part.millis as f64 / whole.millis as f64 * 100.0) as i64
}

pub async fn describe(
    api: &ApiClient,
    node: &Value,
    events: Option<&Value>,
    now: Timestamp,
) -> String {
    let name = text(node, "/metadata/name");
    let mut out = String::new();
    out.push_str(&format!("Name:\t{name}\n"));
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then(|| role.to_owned())
            } else if key == "kubernetes.io/role" {
                value.as_str().map(str::to_owned)
            } else {
                None
            }
        })
        .collect();
    roles.sort();
    out.push_str(&format!(
        "Roles:\t{}\n",
        if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        }
    ));
    labels_multiline(&mut out, "Labels", &node["metadata"]["labels"]);
    annotations_multiline(&mut out, "Annotations", &node["metadata"]["annotations"]);
    out.push_str(&format!(
        "CreationTimestamp:\t{}\n",
        rfc1123z(text(node, "/metadata/creationTimestamp"))
    ));
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out.push_str("Taints:\t");
    if taints.is_empty() {
        out.push_str("<none>\n");
    }
    for (i, taint) in taints.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        let value = text(taint, "/value");
        let value = if value.is_empty() {
            String::new()
        } else {
            format!("={value}")
        };
        out.push_str(&format!(
            "{}{value}:{}\n",
            text(taint, "/key"),
            text(taint, "/effect")
        ));
    }
    out.push_str(&format!(
        "Unschedulable:\t{}\n",
        node["spec"]["unschedulable"].as_bool().unwrap_or(false)
    ));
    let lease = api
        .get_json(
            &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"),
            ACCEPT_JSON,
        )
        .await
        .ok();
    let lease_field = |field: &str, time: bool| -> String {
        let value = lease
            .as_ref()
            .map(|l| text(l, &format!("/spec/{field}")))
            .unwrap_or_default();
        match (value.is_empty(), time) {
            (true, _) => "<unset>".to_owned(),
            (false, true) => rfc1123z(value),
            (false, false) => value.to_owned(),
        }
    };
    out.push_str("Lease:\n");
    out.push_str(&format!(
        "  HolderIdentity:\t{}\n",
        lease_field("holderIdentity", false)
    ));
    out.push_str(&format!(
        "  AcquireTime:\t{}\n",
        lease_field("acquireTime", true)
    ));
    out.push_str(&format!(
        "  RenewTime:\t{}\n",
        lease_field("renewTime", true)
    ));
    let conditions = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !conditions.is_empty() {
        out.push_str(
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        out.push_str("  ----\t------\t-----------------\t------------------\t------\t-------\n");
        for c in &conditions {
            out.push_str(&format!(
                "  {} \t{} \t{} \t{} \t{} \t{}\n",
                text(c, "/type"),
                text(c, "/status"),
                rfc1123z(text(c, "/lastHeartbeatTime")),
                rfc1123z(text(c, "/lastTransitionTime")),
                text(c, "/reason"),
                text(c, "/message")
            ));
        }
    }
    out.push_str("Addresses:\n");
    for address in node["status"]["addresses"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}:\t{}\n",
            text(address, "/type"),
            text(address, "/address")
        ));
    }
    for (field, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(list) = node["status"][field].as_object().filter(|m| !m.is_empty()) {
            out.push_str(&format!("{title}:\n"));
            for (resource, value) in list {
                out.push_str(&format!("  {resource}:\t{}\n", quantity(value).canonical()));
            }
        }
    }
    let info = &node["status"]["nodeInfo"];
    out.push_str("System Info:\n");
    for (label, field) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ] {
        out.push_str(&format!(
            "  {label}:\t{}\n",
            info[field].as_str().unwrap_or_default()
        ));
    }
    let cidr = text(node, "/spec/podCIDR");
    if !cidr.is_empty() {
        out.push_str(&format!("PodCIDR:\t{cidr}\n"));
    }
    let cidrs: Vec<&str> = node["spec"]["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !cidrs.is_empty() {
        out.push_str(&format!("PodCIDRs:\t{}\n", cidrs.join(",")));
    }
    let provider = text(node, "/spec/providerID");
    if !provider.is_empty() {
        out.push_str(&format!("ProviderID:\t{provider}\n"));
    }
    let selector = format!("spec.nodeName={name},status.phase!=Failed,status.phase!=Succeeded");
    let uri = format!(
        "/api/v1/pods{}",
        encode(&[("fieldSelector".to_owned(), selector)])
    );
    match api.get_json(&uri, ACCEPT_JSON).await {
        Ok(list) => describe_node_resources(&mut out, node, &list, now),
        Err(_) => out.push_str("Pods:\tnot authorized\n"),
    }
    if let Some(events) = events {
        describe_events(&mut out, events, now);
    }
    tabwriter(&out)
}

fn describe_node_resources(out: &mut String, node: &Value, pods: &Value, now: Timestamp) {
    let pods = pods["items"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "Non-terminated Pods:\t({} in total)\n",
        pods.len()
    ));
    out.push_str(
        "  Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    out.push_str(
        "  ---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let allocatable = if node["status"]["allocatable"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        &node["status"]["allocatable"]
    } else {
        &node["status"]["capacity"]
    };
    let cpu = quantity(&allocatable["cpu"]);
    let memory = quantity(&allocatable["memory"]);
    let storage = quantity(&allocatable["ephemeral-storage"]);
    let mut totals = [Quantity::default(); 6];
    for pod in &pods {
        let values = [
            pod_total(pod, "requests", "cpu"),
            pod_total(pod, "limits", "cpu"),
            pod_total(pod, "requests", "memory"),
            pod_total(pod, "limits", "memory"),
            pod_total(pod, "requests", "ephemeral-storage"),
            pod_total(pod, "limits", "ephemeral-storage"),
        ];
        for (total, value) in totals.iter_mut().zip(values) {
            *total = total.add(value);
        }
        out.push_str(&format!(
            "  {}\t{}\t\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{}\n",
            text(pod, "/metadata/namespace"),
            text(pod, "/metadata/name"),
            values[0].canonical(),
            percent(values[0], cpu),
            values[1].canonical(),
            percent(values[1], cpu),
            values[2].canonical(),
            percent(values[2], memory),
            values[3].canonical(),
            percent(values[3], memory),
            since(text(pod, "/metadata/creationTimestamp"), now)
        ));
    }
    out.push_str(
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    out.push_str("  Resource\tRequests\tLimits\n");
    out.push_str("  --------\t--------\t------\n");
    for (n, (resource, whole)) in [
        ("cpu", cpu),
        ("memory", memory),
        ("ephemeral-storage", storage),
    ]
    .into_iter()
    .enumerate()
    {
        let (requests, limits) = (totals[2 * n], totals[2 * n + 1]);
        out.push_str(&format!(
            "  {resource}\t{} ({}%)\t{} ({}%)\n",
            requests.canonical(),
            percent(requests, whole),
            limits.canonical(),
            percent(limits, whole)
        ));
    }
    for (resource, _) in allocatable.as_object().into_iter().flatten() {
        if resource.starts_with("hugepages-") {
            out.push_str(&format!("  {resource}\t0 (0%)\t0 (0%)\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_in_canonical_form() {
        let canonical = |text: &str| Quantity::parse(text).expect("a quantity").canonical();
        assert_eq!(canonical("100m"), "100m");
        assert_eq!(canonical("2"), "2");
        assert_eq!(canonical("2000m"), "2");
        assert_eq!(canonical("64Mi"), "64Mi");
        assert_eq!(canonical("1024Mi"), "1Gi");
        assert_eq!(canonical("16318540Ki"), "16318540Ki");
        assert_eq!(canonical("0"), "0");
        assert_eq!(canonical("110"), "110");
        let sum = Quantity::parse("50m")
            .expect("cpu")
            .add(Quantity::parse("1").expect("cpu"));
        assert_eq!(sum.canonical(), "1050m");
        assert_eq!(
            percent(
                Quantity::parse("50m").expect("cpu"),
                Quantity::parse("2").expect("cpu")
            ),
            2
        );
    }
}
