//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch
//! (lists merged by key where Kubernetes' types declare a merge key: containers by name, ...).
//!
//! The strategic merge works on JSON with a small table of the lists Kubernetes merges rather
//! than replaces, for the kinds this server stores. It understands the directives kubectl's
//! client-side `apply` and `edit` send: `$patch` (`merge`, `replace`, `delete`),
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and `$retainKeys`.

use serde_json::{Map, Value};

/// The patch formats, by their Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
}

/// A patch that is malformed or does not apply; the message says which operation and path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Applies `patch` (raw body) to `original` (the stored object as JSON) of kind `kind` (`Pod`, ...).
pub fn apply(
    original: &serde_json::Value,
    patch: &[u8],
    patch_type: PatchType,
    kind: &str,
) -> Result<serde_json::Value, PatchError> {
    match patch_type {
        PatchType::Json => apply_json_patch(original, patch),
        PatchType::Merge => {
            let patch = parse_object(patch, "JSON merge patch")?;
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &Value::Object(patch));
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let patch = parse_object(patch, "strategic merge patch")?;
            let original = match original {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            };
            let schema = Schema { kind };
            Ok(Value::Object(merge_map(original, &patch, "", &schema)?))
        }
    }
}

fn parse(body: &[u8], what: &str) -> Result<Value, PatchError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PatchError(format!("the {what} is empty")));
    }
    serde_json::from_slice(body)
        .map_err(|e| PatchError(format!("the {what} is not valid JSON: {e}")))
}

fn parse_object(body: &[u8], what: &str) -> Result<Map<String, Value>, PatchError> {
    match parse(body, what)? {
        Value::Object(map) => Ok(map),
        other => Err(PatchError(format!(
            "a {what} must be a JSON object, not {}",
            type_name(&other)
        ))),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 6902, one operation at a time so an error names the operation that failed and why.
fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let Value::Array(operations) = parse(body, "JSON patch")? else {
        return Err(PatchError(
            "a JSON patch must be a JSON array of operations, e.g. [{\"op\": \"replace\", \"path\": \"/spec/x\", \"value\": 1}]"
                .to_owned(),
        ));
    };
    let mut doc = original.clone();
    for (index, raw) in operations.into_iter().enumerate() {
        let number = index + 1;
        let op_name = raw
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let operation: json_patch::PatchOperation = serde_json::from_value(raw).map_err(|e| {
            PatchError(format!(
                "JSON patch operation {number} ({op_name}) is malformed: {e}"
            ))
        })?;
        let path = operation.path().to_string();
        if let Err(e) = json_patch::patch(&mut doc, std::slice::from_ref(&operation)) {
            let why = match (&e.kind, &operation) {
                (
                    json_patch::PatchErrorKind::TestFailed,
                    json_patch::PatchOperation::Test(test),
                ) => {
                    let found = doc
                        .pointer(&path)
                        .map_or_else(|| "nothing".to_owned(), Value::to_string);
                    format!("the value there is {found}, not {}", test.value)
                }
                (json_patch::PatchErrorKind::InvalidFromPointer, _) => {
                    let from = match &operation {
                        json_patch::PatchOperation::Move(op) => op.from.to_string(),
                        json_patch::PatchOperation::Copy(op) => op.from.to_string(),
                        _ => String::new(),
                    };
                    format!("the \"from\" path \"{from}\" does not exist")
                }
                (json_patch::PatchErrorKind::CannotMoveInsideItself, _) => {
                    "a value cannot be moved inside itself".to_owned()
                }
                (
                    json_patch::PatchErrorKind::InvalidPointer,
                    json_patch::PatchOperation::Add(_),
                ) => "the parent of the path does not exist (or the array index is out of range)"
                    .to_owned(),
                (json_patch::PatchErrorKind::InvalidPointer, _) => {
                    "the path does not exist".to_owned()
                }
                (kind, _) => kind.to_string(),
            };
            return Err(PatchError(format!(
                "JSON patch operation {number} ({op_name} at \"{path}\") failed: {why}"
            )));
        }
    }
    Ok(doc)
}

/// How a list is merged by a strategic merge patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind {
    /// Replaced whole by the patch's list (the default).
    Atomic,
    /// A set of scalars: the patch's values are added to the object's.
    Set,
    /// A list of objects merged element by element on this key.
    Keyed(&'static str),
}

/// The per-kind knowledge a strategic merge needs: which lists merge, and on what.
struct Schema<'a> {
    kind: &'a str,
}

const CONTAINER_LISTS: &[&str] = &[
    "spec.containers",
    "spec.initContainers",
    "spec.ephemeralContainers",
];

impl Schema<'_> {
    /// `path` is the dotted field path from the root, list indices left out
    /// (`spec.containers.env`).
    fn list_kind(&self, path: &str) -> ListKind {
        let known = matches!(
            self.kind,
            "Pod" | "Namespace" | "Node" | "Event" | "Lease" | "Secret"
        );
        if !known {
            return ListKind::Atomic;
        }
        match path {
            "metadata.ownerReferences" => return ListKind::Keyed("uid"),
            "metadata.finalizers" => return ListKind::Set,
            _ => {}
        }
        match self.kind {
            "Pod" => Self::pod_list(path),
            "Node" => match path {
                "spec.podCIDRs" => ListKind::Set,
                "status.addresses" | "status.conditions" => ListKind::Keyed("type"),
                _ => ListKind::Atomic,
            },
            "Namespace" => match path {
                "status.conditions" => ListKind::Keyed("type"),
                _ => ListKind::Atomic,
            },
            _ => ListKind::Atomic,
        }
    }

    fn pod_list(path: &str) -> ListKind {
        if CONTAINER_LISTS.contains(&path) {
            return ListKind::Keyed("name");
        }
        if let Some((list, field)) = path.rsplit_once('.') {
            if CONTAINER_LISTS.contains(&list) {
                return match field {
                    "ports" => ListKind::Keyed("containerPort"),
                    "env" => ListKind::Keyed("name"),
                    "volumeMounts" => ListKind::Keyed("mountPath"),
                    "volumeDevices" => ListKind::Keyed("devicePath"),
                    _ => ListKind::Atomic,
                };
            }
        }
        match path {
            "spec.volumes"
            | "spec.imagePullSecrets"
            | "spec.schedulingGates"
            | "spec.resourceClaims" => ListKind::Keyed("name"),
            "spec.hostAliases" | "status.podIPs" | "status.hostIPs" => ListKind::Keyed("ip"),
            "spec.topologySpreadConstraints" => ListKind::Keyed("topologyKey"),
            "status.conditions" => ListKind::Keyed("type"),
            // Container statuses are atomic in Kubernetes: a status update replaces them whole,
            // so a container's old `state.waiting` cannot linger next to its new `state.running`.
            _ => ListKind::Atomic,
        }
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "the object"
    } else {
        path
    }
}

const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Merges a patch map into an object map (both at `path`).
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
    schema: &Schema,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get("$patch") {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "delete" => return Ok(Map::new()),
        Some(Value::String(s)) if s == "replace" => {
            let mut replacement = patch.clone();
            replacement.remove("$patch");
            // Merged into nothing, so directives and nulls inside it are resolved, not stored.
            return merge_map(Map::new(), &replacement, path, schema);
        }
        Some(other) => {
            return Err(PatchError(format!(
            "unknown $patch directive {other} at {}: expected \"merge\", \"replace\" or \"delete\"",
            shown(path)
        )))
        }
    }

    if let Some(retain) = patch.get("$retainKeys") {
        let keys = string_list(retain, "$retainKeys", path)?;
        if let Some(extra) = patch
            .keys()
            .find(|k| !k.starts_with('$') && !keys.contains(&k.as_str()))
        {
            return Err(PatchError(format!(
                "the patch sets \"{extra}\" at {} but its $retainKeys does not list it",
                shown(path)
            )));
        }
        original.retain(|k, _| keys.contains(&k.as_str()));
    }

    for (key, values) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(remove) = values else {
                return Err(PatchError(format!(
                    "{key} at {} must be a list of the values to remove",
                    shown(path)
                )));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
        } else if key.starts_with('$')
            && !key.starts_with(SET_ELEMENT_ORDER)
            && key != "$patch"
            && key != "$retainKeys"
        {
            return Err(PatchError(format!(
                "unknown directive \"{key}\" at {}: expected $patch, $retainKeys, $setElementOrder/<list> or $deleteFromPrimitiveList/<list>",
                shown(path)
            )));
        }
    }

    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let field_path = child_path(path, key);
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                Value::Object(merge_map(old, new, &field_path, schema)?)
            }
            (_, Value::Object(new)) => {
                Value::Object(merge_map(Map::new(), new, &field_path, schema)?)
            }
            (old, Value::Array(new)) => {
                let old = match old {
                    Some(Value::Array(old)) => old,
                    _ => Vec::new(),
                };
                let server_order = old.clone();
                let merged = merge_list(old, new, &field_path, schema)?;
                match patch.get(&format!("{SET_ELEMENT_ORDER}{key}")) {
                    Some(order) => {
                        Value::Array(reorder(merged, order, &server_order, &field_path, schema)?)
                    }
                    None => Value::Array(merged),
                }
            }
            (_, scalar) => scalar.clone(),
        };
        original.insert(key.clone(), merged);
    }

    // An order for a list the patch leaves alone (kubectl sends these when only order changed).
    for (key, order) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        if patch.contains_key(field) {
            continue;
        }
        if let Some(Value::Array(list)) = original.remove(field) {
            let field_path = child_path(path, field);
            let reordered = reorder(list.clone(), order, &list, &field_path, schema)?;
            original.insert(field.to_owned(), Value::Array(reordered));
        }
    }
    Ok(original)
}

fn string_list<'a>(
    value: &'a Value,
    directive: &str,
    path: &str,
) -> Result<Vec<&'a str>, PatchError> {
    let list = value
        .as_array()
        .and_then(|list| list.iter().map(Value::as_str).collect::<Option<Vec<_>>>());
    list.ok_or_else(|| {
        PatchError(format!(
            "{directive} at {} must be a list of field names",
            shown(path)
        ))
    })
}

/// Merges a patch list into an object list (both at `path`).
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    path: &str,
    schema: &Schema,
) -> Result<Vec<Value>, PatchError> {
    let kind = schema.list_kind(path);
    let key = match kind {
        ListKind::Atomic => return Ok(patch.to_vec()),
        ListKind::Set => None,
        ListKind::Keyed(key) => Some(key),
    };

    // `{"$patch": "replace"}` as an element: the rest of the patch list is the whole new list.
    let is_replace = |v: &Value| v.get("$patch").and_then(Value::as_str) == Some("replace");
    if patch.iter().any(is_replace) {
        let rest: Vec<Value> = patch.iter().filter(|v| !is_replace(v)).cloned().collect();
        return merge_list(Vec::new(), &rest, path, schema);
    }

    let mut merged = original;
    for element in patch {
        let (Some(key), Value::Object(fields)) = (key, element) else {
            // A set, or scalars in a keyed list: add what is missing.
            if !merged.contains(element) {
                merged.push(element.clone());
            }
            continue;
        };
        let Some(id) = fields.get(key) else {
            return Err(PatchError(format!(
                "an element of the list {path} has no \"{key}\", the key its elements are merged by: {element}"
            )));
        };
        let position = merged.iter().position(|e| e.get(key) == Some(id));
        match fields.get("$patch").and_then(Value::as_str) {
            Some("delete") => {
                merged.retain(|e| e.get(key) != Some(id));
                continue;
            }
            Some("merge") | None => {}
            Some(other) => {
                return Err(PatchError(format!(
                    "unknown $patch directive \"{other}\" in the element {key}={id} of {path}: expected \"merge\" or \"delete\""
                )))
            }
        }
        match position {
            Some(at) => {
                let old = match std::mem::take(&mut merged[at]) {
                    Value::Object(old) => old,
                    _ => Map::new(),
                };
                merged[at] = Value::Object(merge_map(old, fields, path, schema)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), fields, path, schema)?)),
        }
    }
    Ok(merged)
}

/// Applies `$setElementOrder/<list>`: the elements it names come in its order; elements it
/// does not name (the server's own) keep their place relative to the others, as in
/// Kubernetes.
fn reorder(
    merged: Vec<Value>,
    order: &Value,
    server_order: &[Value],
    path: &str,
    schema: &Schema,
) -> Result<Vec<Value>, PatchError> {
    let Value::Array(order) = order else {
        return Err(PatchError(format!(
            "$setElementOrder for {path} must be a list"
        )));
    };
    let key = match schema.list_kind(path) {
        ListKind::Keyed(key) => Some(key),
        ListKind::Set => None,
        // Atomic lists are replaced whole, in the patch's order already.
        ListKind::Atomic => return Ok(merged),
    };
    let id = |v: &Value| -> Option<Value> {
        match key {
            Some(key) => v.get(key).cloned(),
            None => Some(v.clone()),
        }
    };
    let wanted: Vec<Option<Value>> = order.iter().map(id).collect();
    let server: Vec<Option<Value>> = server_order.iter().map(id).collect();
    let rank = |list: &[Option<Value>], v: &Value| {
        let v = id(v);
        list.iter().position(|x| x.is_some() && *x == v)
    };

    let (mut named, unnamed): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|v| rank(&wanted, v).is_some());
    named.sort_by_key(|v| rank(&wanted, v));

    // Interleave: an element the patch names goes first only when both are known to the server
    // and it came first there.
    let mut out = Vec::with_capacity(named.len() + unnamed.len());
    let mut named = named.into_iter().peekable();
    let mut unnamed = unnamed.into_iter().peekable();
    loop {
        let take_named = match (named.peek(), unnamed.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => match (rank(&server, a), rank(&server, b)) {
                (Some(ra), Some(rb)) => ra < rb,
                _ => false,
            },
        };
        let next = if take_named {
            named.next()
        } else {
            unnamed.next()
        };
        out.extend(next);
    }
    Ok(out)
}

/// The strategic merge patch client-side `kubectl apply` sends (CreateThreeWayMergePatch):
/// what `modified` (the manifest) adds or changes against `current` (the live object), and
/// what it drops against `original` (the last applied manifest), as `null`s and `$patch: delete`
/// entries, with `$setElementOrder` for merged lists. An empty map: nothing to change.
pub fn three_way(
    original: &Value,
    modified: &Value,
    current: &Value,
    kind: &str,
) -> Map<String, Value> {
    let schema = Schema { kind };
    let empty = Map::new();
    three_way_map(
        original.as_object().unwrap_or(&empty),
        modified.as_object().unwrap_or(&empty),
        current.as_object().unwrap_or(&empty),
        "",
        &schema,
    )
}

fn three_way_map(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    current: &Map<String, Value>,
    path: &str,
    schema: &Schema,
) -> Map<String, Value> {
    let empty_map = Map::new();
    let mut patch = Map::new();
    for (key, want) in modified {
        let child = child_path(path, key);
        let Some(live) = current.get(key) else {
            patch.insert(key.clone(), want.clone());
            continue;
        };
        let before = original.get(key);
        match (want, live) {
            (Value::Object(want), Value::Object(live)) => {
                let before = before.and_then(Value::as_object).unwrap_or(&empty_map);
                let sub = three_way_map(before, want, live, &child, schema);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Value::Array(want), Value::Array(live)) => {
                let before: &[Value] = before.and_then(Value::as_array).map_or(&[], Vec::as_slice);
                three_way_list(key, before, want, live, &child, schema, &mut patch);
            }
            (want, live) if want != live => {
                patch.insert(key.clone(), want.clone());
            }
            _ => {}
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

fn three_way_list(
    key: &str,
    original: &[Value],
    modified: &[Value],
    current: &[Value],
    path: &str,
    schema: &Schema,
    patch: &mut Map<String, Value>,
) {
    let keyed = match schema.list_kind(path) {
        ListKind::Keyed(merge_key)
            if modified
                .iter()
                .chain(original)
                .all(|item| item.get(merge_key).is_some()) =>
        {
            merge_key
        }
        ListKind::Set => {
            let added: Vec<Value> = modified
                .iter()
                .filter(|v| !current.contains(v))
                .cloned()
                .collect();
            let dropped: Vec<Value> = original
                .iter()
                .filter(|v| !modified.contains(v))
                .cloned()
                .collect();
            if !added.is_empty() || !dropped.is_empty() {
                patch.insert(
                    format!("{SET_ELEMENT_ORDER}{key}"),
                    Value::Array(modified.to_vec()),
                );
            }
            if !added.is_empty() {
                patch.insert(key.to_owned(), Value::Array(added));
            }
            if !dropped.is_empty() {
                patch.insert(
                    format!("{DELETE_FROM_PRIMITIVE_LIST}{key}"),
                    Value::Array(dropped),
                );
            }
            return;
        }
        _ => {
            if modified != current {
                patch.insert(key.to_owned(), Value::Array(modified.to_vec()));
            }
            return;
        }
    };
    let find = |list: &[Value], id: &Value| -> Option<Value> {
        list.iter()
            .find(|item| item.get(keyed) == Some(id))
            .cloned()
    };
    let empty = Map::new();
    let mut items = Vec::new();
    for want in modified {
        let id = &want[keyed];
        match (find(current, id), want.as_object()) {
            (Some(Value::Object(live)), Some(want_map)) => {
                let before = find(original, id);
                let before = before.as_ref().and_then(Value::as_object).unwrap_or(&empty);
                let mut sub = three_way_map(before, want_map, &live, path, schema);
                if !sub.is_empty() {
                    sub.insert(keyed.to_owned(), id.clone());
                    items.push(Value::Object(sub));
                }
            }
            _ => items.push(want.clone()),
        }
    }
    for before in original {
        let id = &before[keyed];
        if find(modified, id).is_none() {
            let mut delete = Map::new();
            delete.insert("$patch".to_owned(), Value::String("delete".to_owned()));
            delete.insert(keyed.to_owned(), id.clone());
            items.push(Value::Object(delete));
        }
    }
    if items.is_empty() {
        return;
    }
    let order: Vec<Value> = modified
        .iter()
        .map(|item| {
            let mut entry = Map::new();
            entry.insert(keyed.to_owned(), item[keyed].clone());
            Value::Object(entry)
        })
        .collect();
    if !order.is_empty() {
        patch.insert(format!("{SET_ELEMENT_ORDER}{key}"), Value::Array(order));
    }
    patch.insert(key.to_owned(), Value::Array(items));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "kubia", "namespace": "default", "labels": {"app": "kubia", "tier": "web"},
                         "finalizers": ["a", "b"]},
            "spec": {
                "containers": [
                    {"name": "kubia", "image": "luksa/kubia:v1", "ports": [{"containerPort": 8080}],
                     "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "x", "operator": "Exists"}]
            },
            "status": {"phase": "Running"}
        })
    }

    fn smp(original: &Value, patch: Value) -> Value {
        apply(
            original,
            patch.to_string().as_bytes(),
            PatchType::StrategicMerge,
            "Pod",
        )
        .expect("patch applies")
    }

    fn smp_error(patch: Value) -> String {
        apply(
            &pod(),
            patch.to_string().as_bytes(),
            PatchType::StrategicMerge,
            "Pod",
        )
        .expect_err("patch fails")
        .0
    }

    fn json_patch(patch: &str) -> Result<Value, PatchError> {
        apply(&pod(), patch.as_bytes(), PatchType::Json, "Pod")
    }

    #[test]
    fn containers_merge_by_name() {
        let out = smp(
            &pod(),
            json!({"spec": {"containers": [{"name": "kubia", "image": "luksa/kubia:v2"}]}}),
        );
        let containers = &out["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(2));
        assert_eq!(containers[0]["image"], "luksa/kubia:v2");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 8080);
        assert_eq!(containers[1]["name"], "sidecar");
    }

    #[test]
    fn new_container_is_appended_and_atomic_lists_replaced() {
        let out = smp(
            &pod(),
            json!({"spec": {"containers": [{"name": "extra", "image": "nginx"}], "tolerations": [{"key": "y"}]}}),
        );
        assert_eq!(out["spec"]["containers"][2]["name"], "extra");
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "y"}]));
    }

    #[test]
    fn patch_delete_removes_a_container() {
        let out = smp(
            &pod(),
            json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
        );
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
        assert_eq!(out["spec"]["containers"][0]["name"], "kubia");
    }

    #[test]
    fn patch_replace_on_list_and_map() {
        let out = smp(
            &pod(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let out = smp(
            &pod(),
            json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"new": "1"}));
        let out = smp(
            &pod(),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({}));
    }

    #[test]
    fn null_deletes_a_label() {
        let out = smp(
            &pod(),
            json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "kubia", "env": "prod"})
        );
        // A null inside a value that is new is dropped, not stored.
        let out = smp(
            &pod(),
            json!({"metadata": {"annotations": {"a": "1", "b": null}}}),
        );
        assert_eq!(out["metadata"]["annotations"], json!({"a": "1"}));
    }

    #[test]
    fn kubectl_apply_label_change() {
        let last_applied = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{},"labels":{"app":"kubia","env":"prod"},"name":"kubia","namespace":"default"}}"#;
        let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
                                        "labels": {"env": "prod", "tier": null}}});
        let out = smp(&pod(), patch);
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "kubia", "env": "prod"})
        );
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            last_applied
        );
        assert_eq!(out["spec"], pod()["spec"]);
    }

    #[test]
    fn kubectl_apply_image_change() {
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
            "spec": {"$setElementOrder/containers": [{"name": "kubia"}, {"name": "sidecar"}],
                     "containers": [{"image": "luksa/kubia:v2", "name": "kubia"}]}
        });
        let out = smp(&pod(), patch);
        assert_eq!(out["spec"]["containers"][0]["image"], "luksa/kubia:v2");
        assert_eq!(out["spec"]["containers"][1]["image"], "busybox");
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn kubectl_apply_adds_an_env_var() {
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
            "spec": {"$setElementOrder/containers": [{"name": "kubia"}, {"name": "sidecar"}],
                     "containers": [{"$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                                     "env": [{"name": "B", "value": "2"}], "name": "kubia"},
                                    {"$setElementOrder/env": [{"name": "C"}],
                                     "env": [{"name": "C", "value": "3"}], "name": "sidecar"}]}
        });
        let out = smp(&pod(), patch);
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
        );
        assert_eq!(
            out["spec"]["containers"][1]["env"],
            json!([{"name": "C", "value": "3"}])
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "luksa/kubia:v1");
    }

    #[test]
    fn set_element_order_keeps_server_only_elements_in_place() {
        let original =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "injected"}, {"name": "b"}]}});
        let out = smp(
            &original,
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
        );
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["injected", "b", "a"]);
    }

    #[test]
    fn primitive_lists_and_retain_keys() {
        let out = smp(&pod(), json!({"metadata": {"finalizers": ["c", "a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            &pod(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = smp(
            &pod(),
            json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "data", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn unknown_kinds_replace_lists() {
        let original = json!({"spec": {"items": [{"name": "a"}], "keep": 1}});
        let patch = json!({"spec": {"items": [{"name": "b"}]}});
        let out = apply(
            &original,
            patch.to_string().as_bytes(),
            PatchType::StrategicMerge,
            "Widget",
        )
        .expect("applies");
        assert_eq!(out, json!({"spec": {"items": [{"name": "b"}], "keep": 1}}));
    }

    #[test]
    fn strategic_merge_errors() {
        let e = smp_error(json!({"spec": {"containers": [{"image": "x"}]}}));
        assert!(e.contains("spec.containers has no \"name\""), "{e}");
        let e = smp_error(json!({"metadata": {"$patch": "remove"}}));
        assert!(
            e.contains("unknown $patch directive \"remove\" at metadata"),
            "{e}"
        );
        let e = smp_error(json!({"spec": {"$fancy": 1}}));
        assert!(e.contains("unknown directive \"$fancy\" at spec"), "{e}");
        let e = apply(&pod(), b"[1]", PatchType::StrategicMerge, "Pod")
            .expect_err("not an object")
            .0;
        assert_eq!(
            e,
            "a strategic merge patch must be a JSON object, not an array"
        );
    }

    #[test]
    fn merge_patch() {
        let out = apply(
            &pod(),
            br#"{"metadata":{"labels":{"tier":null}},"spec":{"containers":[{"name":"x"}]}}"#,
            PatchType::Merge,
            "Pod",
        )
        .expect("applies");
        assert_eq!(out["metadata"]["labels"], json!({"app": "kubia"}));
        // RFC 7386 replaces lists whole.
        assert_eq!(out["spec"]["containers"], json!([{"name": "x"}]));
    }

    #[test]
    fn json_patch_applies() {
        let out = json_patch(
            r#"[{"op":"test","path":"/metadata/labels/app","value":"kubia"},
                {"op":"replace","path":"/spec/containers/0/image","value":"luksa/kubia:v2"},
                {"op":"add","path":"/metadata/labels/env","value":"prod"}]"#,
        )
        .expect("applies");
        assert_eq!(out["spec"]["containers"][0]["image"], "luksa/kubia:v2");
        assert_eq!(out["metadata"]["labels"]["env"], "prod");
    }

    #[test]
    fn json_patch_test_failure_names_operation_and_path() {
        let e = json_patch(
            r#"[{"op":"add","path":"/metadata/labels/x","value":"1"},{"op":"test","path":"/metadata/labels/app","value":"other"}]"#,
        )
        .expect_err("test fails")
        .0;
        assert_eq!(
            e,
            "JSON patch operation 2 (test at \"/metadata/labels/app\") failed: the value there is \"kubia\", not \"other\""
        );
    }

    #[test]
    fn json_patch_missing_path() {
        let e = json_patch(r#"[{"op":"remove","path":"/metadata/labels/nope"}]"#)
            .expect_err("no such path")
            .0;
        assert_eq!(e, "JSON patch operation 1 (remove at \"/metadata/labels/nope\") failed: the path does not exist");
        let e = json_patch(r#"[{"op":"add","path":"/nope/deeper","value":1}]"#)
            .expect_err("no parent")
            .0;
        assert!(
            e.contains("(add at \"/nope/deeper\") failed: the parent of the path does not exist"),
            "{e}"
        );
        let e = json_patch(r#"[{"op":"move","from":"/nope","path":"/x"}]"#)
            .expect_err("no from")
            .0;
        assert!(
            e.contains("the \"from\" path \"/nope\" does not exist"),
            "{e}"
        );
    }

    #[test]
    fn malformed_patches() {
        let e = json_patch(r#"{"op":"add"}"#).expect_err("not a list").0;
        assert!(
            e.starts_with("a JSON patch must be a JSON array of operations"),
            "{e}"
        );
        let e = json_patch(r#"[{"op":"frobnicate","path":"/x"}]"#)
            .expect_err("unknown op")
            .0;
        assert!(
            e.starts_with(
                "JSON patch operation 1 (frobnicate) is malformed: unknown variant `frobnicate`"
            ),
            "{e}"
        );
        let e = json_patch(r#"[{"op":"add","value":1}]"#)
            .expect_err("no path")
            .0;
        assert!(e.contains("missing field `path`"), "{e}");
        let e = apply(&pod(), b"{not json", PatchType::Merge, "Pod")
            .expect_err("bad JSON")
            .0;
        assert!(
            e.starts_with(
                "the JSON merge patch is not valid JSON: key must be a string at line 1 column 2"
            ),
            "{e}"
        );
        let e = apply(&pod(), b"  ", PatchType::StrategicMerge, "Pod")
            .expect_err("empty")
            .0;
        assert_eq!(e, "the strategic merge patch is empty");
    }

    #[test]
    fn three_way_patches_are_what_kubectl_apply_sends() {
        let original = json!({"metadata": {"labels": {"app": "z", "extra": "1"}},
            "spec": {"containers": [{"name": "main", "image": "b", "env": [{"name": "A", "value": "1"}]}]}});
        let modified = json!({"metadata": {"labels": {"app": "z"}},
            "spec": {"containers": [{"name": "main", "image": "b", "env": [{"name": "A", "value": "2"}]}]}});
        let current = json!({"metadata": {"labels": {"app": "z", "extra": "1"}, "uid": "u"},
            "spec": {"containers": [{"name": "main", "image": "b", "imagePullPolicy": "Always",
                                     "env": [{"name": "A", "value": "1"}]}]}});
        let patch = three_way(&original, &modified, &current, "Pod");
        assert_eq!(
            Value::Object(patch).to_string(),
            r#"{"metadata":{"labels":{"extra":null}},"spec":{"$setElementOrder/containers":[{"name":"main"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"name":"A","value":"2"}],"name":"main"}]}}"#
        );
        assert!(three_way(&modified, &modified, &current, "Pod").len() == 1);
        let same = json!({"spec": {"containers": [{"name": "main", "image": "b"}]}});
        assert!(three_way(&same, &same, &current, "Pod").is_empty());
        let dropped = three_way(
            &original,
            &json!({"spec": {"containers": []}}),
            &current,
            "Pod",
        );
        assert_eq!(
            Value::Object(dropped).to_string(),
            r#"{"metadata":null,"spec":{"containers":[{"$patch":"delete","name":"main"}]}}"#
        );
    }
}
