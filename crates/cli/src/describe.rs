//! `kubectl describe`: pods (containers, conditions, volumes, tolerations, events), nodes
//! (in describe_node) and namespaces in kubectl's layout, aligned by a copy of Go's tabwriter as kubectl uses it.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::get::{encode, fetch_named_or_listed, parse_targets};
use crate::kinds::Resource;
use crate::{Error, Flags, Result};

/// Go's text/tabwriter with kubectl describe's settings (minwidth 0, padding 2, spaces):
/// tab-terminated cells align in column blocks of consecutive lines; the last cell of a line
/// is not aligned.
pub fn tabwriter(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|line| line.split('\t').collect())
        .collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    out
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut cell_width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            cell_width = cell_width.max(width(lines[this][column]) + 2);
            this += 1;
        }
        widths.push(cell_width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                out.extend(std::iter::repeat_n(
                    ' ',
                    widths[j].saturating_sub(width(cell)),
                ));
            }
        }
        out.push('\n');
    }
}

pub(crate) fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "<none>"
    } else {
        text
    }
}

/// Go's RFC1123Z, in UTC: `Sat, 05 Dec 2026 14:03:51 +0000`.
pub(crate) fn rfc1123z(stamp: &str) -> String {
    match stamp.parse::<Timestamp>() {
        Ok(time) => time.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => stamp.to_owned(),
    }
}

pub(crate) fn since(stamp: &str, now: Timestamp) -> String {
    match stamp.parse::<Timestamp>() {
        Ok(time) => skiff_api::table::human_duration(now.as_second() - time.as_second()),
        Err(_) => "<unknown>".to_owned(),
    }
}

/// `Labels:\tk=v` then `\tk2=v2` lines, keys sorted.
pub(crate) fn labels_multiline(out: &mut String, title: &str, labels: &Value) {
    out.push_str(&format!("{title}:\t"));
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        out.push_str("<none>\n");
        return;
    };
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        out.push_str(&format!("{key}={}\n", value.as_str().unwrap_or_default()));
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const MAX_ANNOTATION_LEN: usize = 140;

pub(crate) fn annotations_multiline(out: &mut String, title: &str, annotations: &Value) {
    out.push_str(&format!("{title}:\t"));
    let entries: Vec<(&String, &str)> = annotations
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED)
                .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if entries.is_empty() {
        out.push_str("<none>\n");
        return;
    }
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        let value = value.strip_suffix('\n').unwrap_or(value);
        if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            out.push_str(&format!("{key}:\n"));
            for line in value.split('\n') {
                let limit = MAX_ANNOTATION_LEN - 2;
                let shown: String = if line.chars().count() > limit {
                    format!("{}...", line.chars().take(limit).collect::<String>())
                } else {
                    line.to_owned()
                };
                out.push_str(&format!("\t  {shown}\n"));
            }
        } else {
            out.push_str(&format!("{key}: {value}\n"));
        }
    }
}

fn tolerations_multiline(out: &mut String, tolerations: &Value) {
    out.push_str("Tolerations:\t");
    let mut list = tolerations.as_array().cloned().unwrap_or_default();
    list.sort_by(|a, b| text(a, "/key").cmp(text(b, "/key")));
    if list.is_empty() {
        out.push_str("<none>\n");
        return;
    }
    for (i, t) in list.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        let key = text(t, "/key");
        let value = text(t, "/value");
        let effect = text(t, "/effect");
        out.push_str(key);
        if !value.is_empty() {
            out.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            out.push_str(&format!(":{effect}"));
        }
        if text(t, "/operator") == "Exists" && value.is_empty() {
            if !key.is_empty() || !effect.is_empty() {
                out.push_str(" op=Exists");
            } else {
                out.push_str("op=Exists");
            }
        }
        if let Some(seconds) = t["tolerationSeconds"].as_i64() {
            out.push_str(&format!(" for {seconds}s"));
        }
        out.push('\n');
    }
}

fn describe_state(out: &mut String, name: &str, state: &Value) {
    if let Some(running) = state.get("running") {
        out.push_str(&format!("    {name}:\tRunning\n"));
        out.push_str(&format!(
            "      Started:\t{}\n",
            rfc1123z(text(running, "/startedAt"))
        ));
    } else if let Some(terminated) = state.get("terminated") {
        out.push_str(&format!("    {name}:\tTerminated\n"));
        for (field, label) in [("/reason", "Reason"), ("/message", "Message")] {
            let value = text(terminated, field);
            if !value.is_empty() {
                out.push_str(&format!("      {label}:\t{value}\n"));
            }
        }
        out.push_str(&format!(
            "      Exit Code:\t{}\n",
            terminated["exitCode"].as_i64().unwrap_or(0)
        ));
        if let Some(signal) = terminated["signal"].as_i64().filter(|s| *s > 0) {
            out.push_str(&format!("      Signal:\t{signal}\n"));
        }
        out.push_str(&format!(
            "      Started:\t{}\n",
            rfc1123z(text(terminated, "/startedAt"))
        ));
        out.push_str(&format!(
            "      Finished:\t{}\n",
            rfc1123z(text(terminated, "/finishedAt"))
        ));
    } else {
        out.push_str(&format!("    {name}:\tWaiting\n"));
        let reason = state.pointer("/waiting/reason").and_then(Value::as_str);
        if let Some(reason) = reason.filter(|r| !r.is_empty()) {
            out.push_str(&format!("      Reason:\t{reason}\n"));
        }
    }
}

/// The value a `fieldRef` env var takes in the pod, where kubectl can tell
/// (fieldpath.ExtractFieldPathAsString: `metadata.name`, `.namespace`, `.uid`; else empty).
fn field_value(pod: &Value, path: &str) -> String {
    match path {
        "metadata.name" | "metadata.namespace" | "metadata.uid" => {
            text(pod, &format!("/{}", path.replace('.', "/"))).to_owned()
        }
        _ => String::new(),
    }
}

fn describe_containers(
    out: &mut String,
    pod: &Value,
    title: &str,
    containers: &Value,
    statuses: &Value,
) {
    out.push_str(&format!("{title}:\n"));
    for container in containers.as_array().into_iter().flatten() {
        let name = text(container, "/name");
        let status = statuses
            .as_array()
            .and_then(|list| list.iter().find(|s| text(s, "/name") == name));
        out.push_str(&format!("  {name}:\n"));
        if let Some(status) = status {
            out.push_str(&format!(
                "    Container ID:\t{}\n",
                text(status, "/containerID")
            ));
        }
        out.push_str(&format!("    Image:\t{}\n", text(container, "/image")));
        if let Some(status) = status {
            out.push_str(&format!("    Image ID:\t{}\n", text(status, "/imageID")));
        }
        let ports: Vec<&Value> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let protocol = |p: &Value| -> String {
            let protocol = text(p, "/protocol");
            if protocol.is_empty() { "TCP" } else { protocol }.to_owned()
        };
        let container_ports: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["containerPort"].as_i64().unwrap_or(0),
                    protocol(p)
                )
            })
            .collect();
        let host_ports: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p["hostPort"].as_i64().unwrap_or(0), protocol(p)))
            .collect();
        let (label, joined) = (
            if container_ports.len() > 1 {
                "Ports"
            } else {
                "Port"
            },
            container_ports.join(", "),
        );
        out.push_str(&format!("    {label}:\t{}\n", or_none(&joined)));
        let (label, joined) = (
            if host_ports.len() > 1 {
                "Host Ports"
            } else {
                "Host Port"
            },
            host_ports.join(", "),
        );
        out.push_str(&format!("    {label}:\t{}\n", or_none(&joined)));
        let restart = text(container, "/restartPolicy");
        if !restart.is_empty() {
            out.push_str(&format!("    Restart Policy:\t{restart}\n"));
        }
        for (field, label) in [("command", "Command"), ("args", "Args")] {
            let words = container[field].as_array().cloned().unwrap_or_default();
            if !words.is_empty() {
                out.push_str(&format!("    {label}:\n"));
                for word in &words {
                    for line in word.as_str().unwrap_or_default().split('\n') {
                        out.push_str(&format!("      {line}\n"));
                    }
                }
            }
        }
        if let Some(status) = status {
            describe_state(out, "State", &status["state"]);
            if status.pointer("/lastState/terminated").is_some() {
                describe_state(out, "Last State", &status["lastState"]);
            }
            let ready = if status["ready"].as_bool().unwrap_or(false) {
                "True"
            } else {
                "False"
            };
            out.push_str(&format!("    Ready:\t{ready}\n"));
            out.push_str(&format!(
                "    Restart Count:\t{}\n",
                status["restartCount"].as_i64().unwrap_or(0)
            ));
        }
        for (field, label) in [("limits", "Limits"), ("requests", "Requests")] {
            if let Some(map) = container["resources"][field]
                .as_object()
                .filter(|m| !m.is_empty())
            {
                out.push_str(&format!("    {label}:\n"));
                for (resource, quantity) in map {
                    out.push_str(&format!("      {resource}:\t{}\n", jsonpath_text(quantity)));
                }
            }
        }
        let env = container["env"].as_array().cloned().unwrap_or_default();
        out.push_str(if env.is_empty() {
            "    Environment:\t<none>\n"
        } else {
            "    Environment:\n"
        });
        for var in &env {
            let name = text(var, "/name");
            if var.get("valueFrom").is_none() {
                for (i, line) in text(var, "/value").split('\n').enumerate() {
                    if i == 0 {
                        out.push_str(&format!("      {name}:\t{line}\n"));
                    } else {
                        out.push_str(&format!("      \t{line}\n"));
                    }
                }
            } else if let Some(field) = var.pointer("/valueFrom/fieldRef") {
                let path = text(field, "/fieldPath");
                let version = text(field, "/apiVersion");
                let version = if version.is_empty() { "v1" } else { version };
                out.push_str(&format!(
                    "      {name}:\t{} ({version}:{path})\n",
                    field_value(pod, path)
                ));
            } else {
                out.push_str(&format!("      {name}:\t<set from a source>\n"));
            }
        }
        let mut mounts = container["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        mounts.sort_by(|a, b| text(a, "/mountPath").cmp(text(b, "/mountPath")));
        out.push_str(if mounts.is_empty() {
            "    Mounts:\t<none>\n"
        } else {
            "    Mounts:\n"
        });
        for mount in &mounts {
            let mut flags = vec![if mount["readOnly"].as_bool().unwrap_or(false) {
                "ro".to_owned()
            } else {
                "rw".to_owned()
            }];
            let sub_path = text(mount, "/subPath");
            if !sub_path.is_empty() {
                flags.push(format!("path={sub_path:?}"));
            }
            out.push_str(&format!(
                "      {} from {} ({})\n",
                text(mount, "/mountPath"),
                text(mount, "/name"),
                flags.join(",")
            ));
        }
    }
}

fn jsonpath_text(value: &Value) -> String {
    crate::jsonpath::result_text(value)
}

fn describe_volumes(out: &mut String, volumes: &Value) {
    let list = volumes.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        out.push_str("Volumes:\t<none>\n");
        return;
    }
    out.push_str("Volumes:\n");
    for volume in &list {
        out.push_str(&format!("  {}:\n", text(volume, "/name")));
        if let Some(empty) = volume.get("emptyDir") {
            out.push_str(
                "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n",
            );
            out.push_str(&format!("    Medium:\t{}\n", text(empty, "/medium")));
            let limit = empty
                .get("sizeLimit")
                .map(jsonpath_text)
                .unwrap_or_else(|| "<unset>".to_owned());
            out.push_str(&format!("    SizeLimit:\t{limit}\n"));
        } else if let Some(host) = volume.get("hostPath") {
            out.push_str("    Type:\tHostPath (bare host directory volume)\n");
            out.push_str(&format!("    Path:\t{}\n", text(host, "/path")));
            out.push_str(&format!("    HostPathType:\t{}\n", text(host, "/type")));
        } else {
            out.push_str("    <unknown>\n");
        }
    }
}

/// The `Events:` section: the events of the object, oldest first.
pub(crate) fn describe_events(out: &mut String, events: &Value, now: Timestamp) {
    let mut items = events["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        out.push_str("Events:\t<none>\n");
        return;
    }
    let stamp = |e: &Value| -> String {
        let last = text(e, "/lastTimestamp");
        if last.is_empty() {
            text(e, "/eventTime").to_owned()
        } else {
            last.to_owned()
        }
    };
    items.sort_by_key(|e| stamp(e).parse::<Timestamp>().ok());
    out.push_str("Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    out.push_str("  ----\t------\t----\t----\t-------\n");
    for event in &items {
        let first = if text(event, "/eventTime").is_empty() {
            since(text(event, "/firstTimestamp"), now)
        } else {
            since(text(event, "/eventTime"), now)
        };
        let count = event["count"].as_i64().unwrap_or(0);
        let interval = if let Some(series) = event.get("series").filter(|s| s.is_object()) {
            format!(
                "{} (x{} over {first})",
                since(text(series, "/lastObservedTime"), now),
                series["count"].as_i64().unwrap_or(0)
            )
        } else if count > 1 {
            format!(
                "{} (x{count} over {first})",
                since(text(event, "/lastTimestamp"), now)
            )
        } else {
            first
        };
        let mut source = text(event, "/source/component");
        if source.is_empty() {
            source = text(event, "/reportingComponent");
        }
        let mut message = text(event, "/message").trim().to_owned();
        let field_path = text(event, "/involvedObject/fieldPath");
        if !field_path.is_empty() {
            message = format!("{field_path}: {message}");
        }
        out.push_str(&format!(
            "  {}\t{}\t{interval}\t{source}\t{message}\n",
            text(event, "/type"),
            text(event, "/reason"),
        ));
    }
}

fn describe_pod(pod: &Value, events: Option<&Value>, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str(&format!("Name:\t{}\n", text(pod, "/metadata/name")));
    out.push_str(&format!(
        "Namespace:\t{}\n",
        text(pod, "/metadata/namespace")
    ));
    if let Some(priority) = pod["spec"]["priority"].as_i64() {
        out.push_str(&format!("Priority:\t{priority}\n"));
    }
    let class = text(pod, "/spec/priorityClassName");
    if !class.is_empty() {
        out.push_str(&format!("Priority Class Name:\t{class}\n"));
    }
    let runtime = text(pod, "/spec/runtimeClassName");
    if !runtime.is_empty() {
        out.push_str(&format!("Runtime Class Name:\t{runtime}\n"));
    }
    let account = text(pod, "/spec/serviceAccountName");
    if !account.is_empty() {
        out.push_str(&format!("Service Account:\t{account}\n"));
    }
    let node = text(pod, "/spec/nodeName");
    if node.is_empty() {
        out.push_str("Node:\t<none>\n");
    } else {
        out.push_str(&format!("Node:\t{node}/{}\n", text(pod, "/status/hostIP")));
    }
    let start = text(pod, "/status/startTime");
    if !start.is_empty() {
        out.push_str(&format!("Start Time:\t{}\n", rfc1123z(start)));
    }
    labels_multiline(&mut out, "Labels", &pod["metadata"]["labels"]);
    annotations_multiline(&mut out, "Annotations", &pod["metadata"]["annotations"]);
    let deletion = text(pod, "/metadata/deletionTimestamp");
    if deletion.is_empty() {
        out.push_str(&format!("Status:\t{}\n", text(pod, "/status/phase")));
    } else {
        out.push_str(&format!(
            "Status:\tTerminating (lasts {})\n",
            since(deletion, now)
        ));
        out.push_str(&format!(
            "Termination Grace Period:\t{}s\n",
            pod["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
        ));
    }
    for (field, label) in [("/status/reason", "Reason"), ("/status/message", "Message")] {
        let value = text(pod, field);
        if !value.is_empty() {
            out.push_str(&format!("{label}:\t{value}\n"));
        }
    }
    out.push_str(&format!("IP:\t{}\n", text(pod, "/status/podIP")));
    let ips = pod["status"]["podIPs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ips.is_empty() {
        out.push_str("IPs:\t<none>\n");
    } else {
        out.push_str("IPs:\n");
        for ip in &ips {
            out.push_str(&format!("  IP:\t{}\n", text(ip, "/ip")));
        }
    }
    let nominated = text(pod, "/status/nominatedNodeName");
    if !nominated.is_empty() {
        out.push_str(&format!("NominatedNodeName:\t{nominated}\n"));
    }
    if pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        describe_containers(
            &mut out,
            pod,
            "Init Containers",
            &pod["spec"]["initContainers"],
            &pod["status"]["initContainerStatuses"],
        );
    }
    describe_containers(
        &mut out,
        pod,
        "Containers",
        &pod["spec"]["containers"],
        &pod["status"]["containerStatuses"],
    );
    let conditions = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !conditions.is_empty() {
        out.push_str("Conditions:\n  Type\tStatus\n");
        for condition in &conditions {
            out.push_str(&format!(
                "  {} \t{} \n",
                text(condition, "/type"),
                text(condition, "/status")
            ));
        }
    }
    describe_volumes(&mut out, &pod["spec"]["volumes"]);
    out.push_str(&format!("QoS Class:\t{}\n", text(pod, "/status/qosClass")));
    labels_multiline(&mut out, "Node-Selectors", &pod["spec"]["nodeSelector"]);
    tolerations_multiline(&mut out, &pod["spec"]["tolerations"]);
    if let Some(events) = events {
        describe_events(&mut out, events, now);
    }
    tabwriter(&out)
}

fn describe_namespace(namespace: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("Name:\t{}\n", text(namespace, "/metadata/name")));
    labels_multiline(&mut out, "Labels", &namespace["metadata"]["labels"]);
    annotations_multiline(
        &mut out,
        "Annotations",
        &namespace["metadata"]["annotations"],
    );
    out.push_str(&format!("Status:\t{}\n", text(namespace, "/status/phase")));
    tabwriter(&out)
}

/// A secret as kubectl describes it: the size of each value, never the value.
fn describe_secret(secret: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("Name:\t{}\n", text(secret, "/metadata/name")));
    out.push_str(&format!(
        "Namespace:\t{}\n",
        text(secret, "/metadata/namespace")
    ));
    labels_multiline(&mut out, "Labels", &secret["metadata"]["labels"]);
    annotations_multiline(&mut out, "Annotations", &secret["metadata"]["annotations"]);
    out.push_str(&format!("\nType:\t{}\n", text(secret, "/type")));
    out.push_str("\nData\n====\n");
    let token_secret = text(secret, "/type") == "kubernetes.io/service-account-token";
    // k8s-openapi's ByteString decodes the base64 of the values.
    let data: std::collections::BTreeMap<String, k8s_openapi::ByteString> =
        serde_json::from_value(secret["data"].clone()).unwrap_or_default();
    for (key, value) in &data {
        // kubectl shows a service account token itself; every other value only by its size.
        if token_secret && key == "token" {
            out.push_str(&format!("{key}:\t{}\n", String::from_utf8_lossy(&value.0)));
        } else {
            out.push_str(&format!("{key}:\t{} bytes\n", value.0.len()));
        }
    }
    tabwriter(&out)
}

/// The events about one object, as describe asks for them.
async fn events_of(api: &ApiClient, object: &Value, resource: &Resource) -> Option<Value> {
    let name = text(object, "/metadata/name");
    let namespace = text(object, "/metadata/namespace");
    let uid = text(object, "/metadata/uid");
    let selector = format!(
        "involvedObject.name={name},involvedObject.namespace={namespace},involvedObject.uid={uid}"
    );
    let path = if resource.namespaced {
        format!("/api/v1/namespaces/{namespace}/events")
    } else {
        "/api/v1/events".to_owned()
    };
    let uri = format!(
        "{path}{}",
        encode(&[("fieldSelector".to_owned(), selector)])
    );
    api.get_json(&uri, ACCEPT_JSON).await.ok()
}

pub async fn run(flags: &Flags) -> Result<()> {
    let request = parse_targets(&flags.args)?;
    if request.targets.is_empty() {
        return Err(Error::Message(
            "You must specify the type of resource to describe. Use \"kubectl api-resources\" \
             for a complete list of supported resources."
                .to_owned(),
        ));
    }
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let now = Timestamp::now();
    let mut errors = Vec::new();
    let mut printed: Vec<String> = Vec::new();
    for (resource, names) in &request.targets {
        let ns = (!flags.all_namespaces).then_some(namespace.as_str());
        let objects = fetch_named_or_listed(
            &api,
            flags,
            resource,
            names,
            &namespace,
            ns,
            false,
            &mut errors,
        )
        .await;
        for object in objects {
            let text = match resource.plural {
                "pods" => {
                    let events = events_of(&api, &object, resource).await;
                    describe_pod(&object, events.as_ref(), now)
                }
                "namespaces" => describe_namespace(&object),
                "secrets" => describe_secret(&object),
                "nodes" => {
                    let events = events_of(&api, &object, resource).await;
                    crate::describe_node::describe(&api, &object, events.as_ref(), now).await
                }
                other => {
                    return Err(Error::Message(format!(
                        "describe {other} is not in this Skiff CLI yet: use `kubectl get \
                         {other} NAME -o yaml`"
                    )))
                }
            };
            printed.push(text);
        }
    }
    print!("{}", printed.join("\n\n"));
    crate::get::finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_described_by_sizes_only() {
        let secret = serde_json::json!({
            "metadata": {"name": "reg", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "eyJhdXRocyI6e319", "a": ""}
        });
        let text = describe_secret(&secret);
        assert_eq!(
            text,
            "Name:         reg\nNamespace:    default\nLabels:       <none>\nAnnotations:  <none>\n\n\
             Type:  kubernetes.io/dockerconfigjson\n\nData\n====\n.dockerconfigjson:  12 bytes\n\
             a:                  0 bytes\n"
        );
    }

    #[test]
    fn the_tabwriter_aligns_blocks_as_go_does() {
        let text = "Name:\ta\nService Account:\tdefault\nIP:\t\nContainers:\n  main:\n    \
                    Image:\tbusybox\n    Environment:\t<none>\nConditions:\n  Type\tStatus\n  \
                    PodScheduled \tFalse \n";
        assert_eq!(
            tabwriter(text),
            "Name:             a\nService Account:  default\nIP:               \nContainers:\n  \
             main:\n    Image:        busybox\n    Environment:  <none>\nConditions:\n  \
             Type           Status\n  PodScheduled   False \n"
        );
    }
}
