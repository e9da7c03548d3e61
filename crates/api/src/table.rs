//! Server-side printing: the `meta.k8s.io/v1` Table columns and cells kubectl shows for
//! `kubectl get`, with Kubernetes' column names and cell formats.
//!
//! The server always fills every column, `-o wide` ones included (priority 1); kubectl picks
//! which to show. Cells follow Kubernetes' printers so `kubectl get` reads the same as against a
//! real cluster.

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// One column: name, type, format, description, priority.
type Column = (&'static str, &'static str, &'static str, &'static str, u8);

const NAME: Column = (
    "Name",
    "string",
    "name",
    "The object's name, unique within its namespace.",
    0,
);
const AGE: Column = (
    "Age",
    "string",
    "",
    "How long ago the object was created.",
    0,
);

const POD_COLUMNS: &[Column] = &[
    NAME,
    (
        "Ready",
        "string",
        "",
        "Ready containers out of all containers of the pod.",
        0,
    ),
    (
        "Status",
        "string",
        "",
        "The pod's phase, or why its containers are not running.",
        0,
    ),
    (
        "Restarts",
        "string",
        "",
        "Container restarts, and how long ago the last one was.",
        0,
    ),
    AGE,
    ("IP", "string", "", "The pod's first IP address.", 1),
    ("Node", "string", "", "The node the pod is bound to.", 1),
    (
        "Nominated Node",
        "string",
        "",
        "The node the scheduler intends to preempt pods on for this pod.",
        1,
    ),
    (
        "Readiness Gates",
        "string",
        "",
        "Readiness gates that are true, out of all the pod declares.",
        1,
    ),
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    (
        "Status",
        "string",
        "",
        "The namespace's phase: Active or Terminating.",
        0,
    ),
    AGE,
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    (
        "Status",
        "string",
        "",
        "Whether the node is ready, and whether scheduling on it is disabled.",
        0,
    ),
    (
        "Roles",
        "string",
        "",
        "Roles from the node's node-role.kubernetes.io labels.",
        0,
    ),
    AGE,
    ("Version", "string", "", "The node agent's version.", 0),
    (
        "Internal-IP",
        "string",
        "",
        "The node's first internal address.",
        1,
    ),
    (
        "External-IP",
        "string",
        "",
        "The node's first external address.",
        1,
    ),
    (
        "OS-Image",
        "string",
        "",
        "The operating system the node reports.",
        1,
    ),
    (
        "Kernel-Version",
        "string",
        "",
        "The node's kernel version.",
        1,
    ),
    (
        "Container-Runtime",
        "string",
        "",
        "The container runtime and its version.",
        1,
    ),
];

const EVENT_COLUMNS: &[Column] = &[
    (
        "Last Seen",
        "string",
        "",
        "How long ago the event last happened.",
        0,
    ),
    ("Type", "string", "", "Normal or Warning.", 0),
    (
        "Reason",
        "string",
        "",
        "Why the event happened, in one word.",
        0,
    ),
    ("Object", "string", "", "The object the event is about.", 0),
    (
        "Subobject",
        "string",
        "",
        "The part of the object, such as a container.",
        1,
    ),
    (
        "Source",
        "string",
        "",
        "The component (and host) that reported the event.",
        1,
    ),
    ("Message", "string", "", "What happened, for a human.", 0),
    (
        "First Seen",
        "string",
        "",
        "How long ago the event first happened.",
        1,
    ),
    (
        "Count",
        "string",
        "",
        "How many times the event happened.",
        1,
    ),
    ("Name", "string", "name", "The event's name.", 1),
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    ("Holder", "string", "", "Who holds the lease now.", 0),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    ("Type", "string", "", "The type of the secret's data.", 0),
    (
        "Data",
        "string",
        "",
        "How many entries the secret holds.",
        0,
    ),
    AGE,
];

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

fn columns(plural: &str) -> &'static [Column] {
    match plural {
        "pods" => POD_COLUMNS,
        "namespaces" => NAMESPACE_COLUMNS,
        "nodes" => NODE_COLUMNS,
        "events" => EVENT_COLUMNS,
        "leases" => LEASE_COLUMNS,
        "secrets" => SECRET_COLUMNS,
        _ => DEFAULT_COLUMNS,
    }
}

/// The `columnDefinitions` of a resource's table (`pods`, `namespaces`, `nodes`, `events`, any
/// other: Name, Age). Priority 1 columns are the `-o wide` ones.
pub fn column_definitions(plural: &str) -> serde_json::Value {
    let list = columns(plural)
        .iter()
        .map(|(name, kind, format, description, priority)| {
            json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
        })
        .collect();
    Value::Array(list)
}

/// The `cells` of one row for an object (JSON, as stored) at time `now`.
pub fn row_cells(
    plural: &str,
    object: &serde_json::Value,
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<serde_json::Value> {
    match plural {
        "pods" => pod_cells(object, now),
        "namespaces" => vec![
            json!(name(object)),
            json!(text(object, "/status/phase")),
            json!(age(object, now)),
        ],
        "nodes" => node_cells(object, now),
        "events" => event_cells(object, now),
        "leases" => vec![
            json!(name(object)),
            json!(text(object, "/spec/holderIdentity")),
            json!(age(object, now)),
        ],
        "secrets" => vec![
            json!(name(object)),
            json!(text(object, "/type")),
            json!(object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |d| d.len())),
            json!(age(object, now)),
        ],
        _ => vec![json!(name(object)), json!(age(object, now))],
    }
}

/// Kubernetes' short human duration (`5s`, `3m20s`, `60m`, `2d3h`, `4y`), as in the AGE column.
///
/// Precision falls as the duration grows: seconds up to 2 minutes, minutes and seconds under
/// 10 minutes, minutes under 3 hours, hours and minutes under 8 hours, hours under 2 days,
/// days and hours under 8 days, days under 2 years, years and days under 8 years, then years.
/// A clock skew of one second reads `0s`; anything further in the future is `<invalid>`.
pub fn human_duration(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const YEAR: i64 = 365 * DAY;
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 2 * MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % MINUTE, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / HOUR;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = seconds / DAY;
    if hours < 8 * 24 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if days < 2 * 365 {
        return format!("{days}d");
    }
    let years = seconds / YEAR;
    if days < 8 * 365 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `2m` or `2m3s`: the smaller unit is left out when it is zero.
fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

/// The string at a JSON pointer, or "".
fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn name(object: &Value) -> &str {
    text(object, "/metadata/name")
}

fn timestamp(object: &Value, pointer: &str) -> Option<Timestamp> {
    text(object, pointer).parse().ok()
}

/// How long ago a timestamp was, `<unknown>` when it is missing (as Kubernetes prints it).
fn since(at: Option<Timestamp>, now: Timestamp) -> String {
    match at {
        Some(at) => human_duration(now.duration_since(at).as_secs()),
        None => "<unknown>".to_owned(),
    }
}

fn age(object: &Value, now: Timestamp) -> String {
    since(timestamp(object, "/metadata/creationTimestamp"), now)
}

fn array<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

/// A condition's status by type, from a `conditions` list.
fn condition_status<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| text(c, "/type") == kind)
        .map(|c| text(c, "/status"))
}

/// The restart count and the latest restart time of a set of container statuses.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int(status, "/restartCount");
        if let Some(finished) = timestamp(status, "/lastState/terminated/finishedAt") {
            self.last = Some(self.last.map_or(finished, |last| last.max(finished)));
        }
    }
}

/// Why a terminated container stopped: its reason, else its signal or exit code.
fn terminated_reason(terminated: &Value) -> String {
    let reason = text(terminated, "/reason");
    if !reason.is_empty() {
        return reason.to_owned();
    }
    let signal = int(terminated, "/signal");
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int(terminated, "/exitCode"))
    }
}

/// The pod's row: Name, Ready, Status, Restarts, Age, IP, Node, Nominated Node, Readiness Gates.
///
/// Status follows Kubernetes' printer: start from the phase (or `status.reason`); an init
/// container that has not finished gives `Init:<reason>` or `Init:i/n`; otherwise the last
/// container that is waiting or terminated gives its reason; a pod being deleted is
/// `Terminating`.
fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let phase = text(pod, "/status/phase");
    let conditions = array(pod, "/status/conditions");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if conditions
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }

    let init_specs = array(pod, "/spec/initContainers");
    // Sidecars (init containers that restart always) count as containers of the pod.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
    };
    let total = array(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| is_sidecar(text(c, "/name")))
            .count();
    let mut ready = 0;
    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();

    let mut initializing = false;
    for (i, status) in array(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let sidecar = is_sidecar(text(status, "/name"));
        restarts.add(status);
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| int(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            format!("Init:{}", terminated_reason(terminated))
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_status(conditions, "Initialized") == Some("True") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        // Backwards, so the first container's reason wins, as in Kubernetes.
        for status in array(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(status);
            let waiting_reason = text(status, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if let Some(terminated) = status.pointer("/state/terminated") {
                reason = terminated_reason(terminated);
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_status(conditions, "Ready") == Some("True") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }

    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        if text(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    // Kubernetes' printer gives this cell as a string in every case ("0", "5 (3m ago)").
    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, since(Some(last), now))
        }
        _ => restarts.count.to_string(),
    };

    let ip = array(pod, "/status/podIPs")
        .first()
        .map(|ip| text(ip, "/ip"))
        .unwrap_or_default();
    let ip = if ip.is_empty() {
        text(pod, "/status/podIP")
    } else {
        ip
    };
    let gates = array(pod, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let met = gates
            .iter()
            .filter(|g| condition_status(conditions, text(g, "/conditionType")) == Some("True"))
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

/// The node's row: Name, Status, Roles, Age, Version, Internal-IP, External-IP, OS-Image,
/// Kernel-Version, Container-Runtime.
fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let mut status = match condition_status(array(node, "/status/conditions"), "Ready") {
        Some("True") => "Ready",
        // False and Unknown both read NotReady; Unknown is for a node with no Ready condition.
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_owned();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }

    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(
                    |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                        Some(role) if !role.is_empty() => Some(role),
                        Some(_) => None,
                        None if key == "kubernetes.io/role" => {
                            value.as_str().filter(|v| !v.is_empty())
                        }
                        None => None,
                    },
                )
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    roles.dedup();

    let address = |kind: &str| {
        let found = array(node, "/status/addresses")
            .iter()
            .find(|a| text(a, "/type") == kind);
        or_none(found.map(|a| text(a, "/address")).unwrap_or_default())
    };
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_owned(),
        v => v.to_owned(),
    };
    vec![
        json!(name(node)),
        json!(status),
        json!(or_none(&roles.join(","))),
        json!(age(node, now)),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// The event's row: Last Seen, Type, Reason, Object, Subobject, Source, Message, First Seen,
/// Count, Name.
fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    // Events from the newer API have eventTime and series instead of the timestamps and count.
    let first = match timestamp(event, "/firstTimestamp") {
        Some(at) => since(Some(at), now),
        None => since(timestamp(event, "/eventTime"), now),
    };
    let mut last = match timestamp(event, "/lastTimestamp") {
        Some(at) => since(Some(at), now),
        None => first.clone(),
    };
    let mut count = int(event, "/count");
    if event.get("series").is_some_and(|s| s.is_object()) {
        last = since(timestamp(event, "/series/lastObservedTime"), now);
        count = int(event, "/series/count");
    } else if count == 0 {
        count = 1;
    }

    let kind = text(event, "/involvedObject/kind").to_lowercase();
    let object = match text(event, "/involvedObject/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let first_non_empty = |a: &'static str, b: &'static str| match text(event, a) {
        "" => text(event, b),
        v => v,
    };
    let component = first_non_empty("/source/component", "/reportingComponent");
    let host = first_non_empty("/source/host", "/reportingInstance");
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(object),
        json!(text(event, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(event, "/message").trim()),
        json!(first),
        json!(count),
        json!(name(event)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-01-01T12:00:00Z".parse().expect("a valid timestamp")
    }

    fn strings(cells: &[Value]) -> Vec<String> {
        cells
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
            .collect()
    }

    #[test]
    fn human_durations_at_the_boundaries() {
        let cases = [
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (123, "2m3s"),
            (599, "9m59s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (2 * 365 * 86400 - 1, "729d"),
            (2 * 365 * 86400, "2y"),
            (3 * 365 * 86400 + 5 * 86400, "3y5d"),
            (8 * 365 * 86400 - 1, "7y364d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(human_duration(seconds), want, "{seconds}s");
        }
    }

    #[test]
    fn pod_columns_match_kubernetes() {
        let columns = column_definitions("pods");
        let names: Vec<&str> = columns
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| text(c, "/name"))
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(columns[0]["format"], "name");
        assert_eq!(columns[4]["priority"], 0);
        assert_eq!(columns[5]["priority"], 1);
        assert_eq!(row_cells("pods", &json!({}), now()).len(), names.len());
    }

    #[test]
    fn every_table_has_as_many_cells_as_columns() {
        for plural in [
            "pods",
            "namespaces",
            "nodes",
            "events",
            "leases",
            "secrets",
            "configmaps",
        ] {
            let columns = column_definitions(plural);
            assert_eq!(
                row_cells(plural, &json!({}), now()).len(),
                columns.as_array().map_or(0, Vec::len),
                "{plural}"
            );
        }
        let names: Vec<String> = column_definitions("leases")
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| text(c, "/name").to_owned())
            .collect();
        assert_eq!(names, ["Name", "Holder", "Age"]);
    }

    #[test]
    fn pending_pod_waiting_for_its_image() {
        let pod = json!({
            "metadata": {"name": "kubia", "creationTimestamp": "2025-01-01T11:59:30Z"},
            "spec": {"containers": [{"name": "kubia"}], "nodeName": "node1"},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "kubia", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }]}
        });
        assert_eq!(
            strings(&row_cells("pods", &pod, now())),
            [
                "kubia",
                "0/1",
                "ContainerCreating",
                "0",
                "30s",
                "<none>",
                "node1",
                "<none>",
                "<none>"
            ]
        );
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            strings(&row_cells("pods", &unscheduled, now()))[..5],
            ["p", "0/1", "Pending", "0", "<unknown>"]
        );
    }

    #[test]
    fn running_pod_with_restarts() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node1",
                     "readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/lb", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:55:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ]}
        });
        assert_eq!(
            strings(&row_cells("pods", &pod, now())),
            [
                "web",
                "1/2",
                "Running",
                "2 (5m ago)",
                "60m",
                "10.244.0.5",
                "node1",
                "<none>",
                "1/1"
            ]
        );
    }

    #[test]
    fn crashing_and_completed_and_initializing_pods() {
        let crashing = json!({"metadata": {"name": "c"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(
            strings(&row_cells("pods", &crashing, now()))[2..4],
            ["CrashLoopBackOff", "5"]
        );
        let completed = json!({"metadata": {"name": "c"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(
            strings(&row_cells("pods", &completed, now()))[2],
            "Completed"
        );
        let killed = json!({"metadata": {"name": "c"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(strings(&row_cells("pods", &killed, now()))[2], "Signal:9");
        let init = json!({"metadata": {"name": "i"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "state": {"running": {}}}]}});
        assert_eq!(
            strings(&row_cells("pods", &init, now()))[1..3],
            ["0/1", "Init:0/1"]
        );
        let init_failed = json!({"metadata": {"name": "i"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}});
        assert_eq!(
            strings(&row_cells("pods", &init_failed, now()))[2],
            "Init:Error"
        );
    }

    #[test]
    fn terminating_pod() {
        let pod = json!({
            "metadata": {"name": "kubia", "creationTimestamp": "2025-01-01T10:00:00Z",
                         "deletionTimestamp": "2025-01-01T12:00:30Z"},
            "spec": {"containers": [{"name": "kubia"}], "nodeName": "node1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.244.0.5"}], "containerStatuses": [
                {"name": "kubia", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        });
        assert_eq!(
            strings(&row_cells("pods", &pod, now())),
            [
                "kubia",
                "1/1",
                "Terminating",
                "0",
                "120m",
                "10.244.0.5",
                "node1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn node_rows() {
        let node = json!({
            "metadata": {"name": "node1", "creationTimestamp": "2024-12-30T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node1"}],
                "nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": "skiff://0.1.0"}}
        });
        assert_eq!(
            strings(&row_cells("nodes", &node, now())),
            [
                "node1",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "2d",
                "v1.35.0",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0",
                "skiff://0.1.0"
            ]
        );
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(
            strings(&row_cells("nodes", &not_ready, now()))[1..3],
            ["NotReady", "<none>"]
        );
        assert_eq!(
            strings(&row_cells("nodes", &json!({}), now()))[1],
            "Unknown"
        );
    }

    #[test]
    fn event_rows() {
        let event = json!({
            "metadata": {"name": "kubia.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "kubia", "fieldPath": "spec.containers{kubia}"},
            "reason": "Pulled", "type": "Normal", "message": "Container image pulled\n",
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": "2025-01-01T11:50:00Z", "lastTimestamp": "2025-01-01T11:59:00Z", "count": 3
        });
        assert_eq!(
            strings(&row_cells("events", &event, now())),
            [
                "60s",
                "Normal",
                "Pulled",
                "pod/kubia",
                "spec.containers{kubia}",
                "kubelet, node1",
                "Container image pulled",
                "10m",
                "3",
                "kubia.17a"
            ]
        );
        assert_eq!(row_cells("events", &event, now())[8], json!(3));
        let new_style = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"},
            "eventTime": "2025-01-01T11:58:00.000000Z", "reportingComponent": "skiff-scheduler"});
        assert_eq!(
            strings(&row_cells("events", &new_style, now())),
            [
                "2m",
                "",
                "",
                "node",
                "",
                "skiff-scheduler",
                "",
                "2m",
                "1",
                "e"
            ]
        );
    }

    #[test]
    fn namespace_lease_and_other_rows() {
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2025-01-01T11:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            strings(&row_cells("namespaces", &ns, now())),
            ["default", "Active", "60m"]
        );
        let lease = json!({"metadata": {"name": "node1", "creationTimestamp": "2025-01-01T11:59:50Z"}, "spec": {"holderIdentity": "node1"}});
        assert_eq!(
            strings(&row_cells("leases", &lease, now())),
            ["node1", "node1", "10s"]
        );
        assert_eq!(
            strings(&row_cells("configmaps", &lease, now())),
            ["node1", "10s"]
        );
    }

    #[test]
    fn secret_rows_count_entries_and_never_show_values() {
        let secret = json!({"metadata": {"name": "reg", "creationTimestamp": "2025-01-01T11:59:00Z"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}});
        assert_eq!(
            strings(&row_cells("secrets", &secret, now())),
            ["reg", "kubernetes.io/dockerconfigjson", "1", "60s"]
        );
        let names: Vec<String> = column_definitions("secrets")
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| text(c, "/name").to_string())
            .collect();
        assert_eq!(names, ["Name", "Type", "Data", "Age"]);
    }
}
