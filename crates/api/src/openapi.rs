//! OpenAPI v3 documents for the served group-versions, generated from the `k8s-openapi` types'
//! JSON schemas. kubectl reads them before `create -f`/`apply -f` and for `explain`.
//!
//! kubectl trusts the server to validate fields (`fieldValidation=Strict`) only when the
//! group-version's document has, for the kind at hand, a `patch` operation carrying the kind's
//! `x-kubernetes-group-version-kind` and a `fieldValidation` parameter; `kubectl explain` finds a
//! kind through the same extension on `components.schemas`. Schema names are the ones
//! `k8s-openapi` gives its schemars schemas, which are Kubernetes' own
//! (`io.k8s.api.core.v1.Pod`), so `$ref`s point at `#/components/schemas/<name>` unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Patch, Status};
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// The group-versions served: `api/v1` and `apis/coordination.k8s.io/v1`.
pub const GROUP_VERSIONS: &[&str] = &["api/v1", "apis/coordination.k8s.io/v1"];

/// The document for one group-version path (`api/v1`), or None when not served.
/// Deterministic: the same bytes every call, so the server can hash it.
pub fn document(group_version: &str) -> Option<serde_json::Value> {
    documents()
        .get(group_version)
        .map(|(value, _)| value.clone())
}

/// The document for one group-version path as compact JSON, built once: what the server sends
/// and hashes, without cloning and serializing the (large) value on every request.
pub fn document_json(group_version: &str) -> Option<&'static str> {
    documents()
        .get(group_version)
        .map(|(_, text)| text.as_str())
}

/// Where `$ref`s point.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// One served kind and the REST paths it has.
struct ServedKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    /// The schema name, as `k8s-openapi` names it.
    schema: &'static str,
    /// Whether it has a `/status` subresource.
    status: bool,
}

const CORE_KINDS: &[ServedKind] = &[
    ServedKind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        schema: "io.k8s.api.core.v1.Pod",
        status: true,
    },
    ServedKind {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        schema: "io.k8s.api.core.v1.Namespace",
        status: true,
    },
    ServedKind {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        schema: "io.k8s.api.core.v1.Node",
        status: true,
    },
    ServedKind {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        schema: "io.k8s.api.core.v1.Event",
        status: false,
    },
    ServedKind {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        schema: "io.k8s.api.core.v1.Secret",
        status: false,
    },
];

const COORDINATION_KINDS: &[ServedKind] = &[ServedKind {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    namespaced: true,
    schema: "io.k8s.api.coordination.v1.Lease",
    status: false,
}];

const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Lists that strategic merge patch merges by a key rather than replacing, with the key and the
/// strategy Kubernetes declares for them. kubectl's client-side `apply` reads these from the
/// document to compute its patches; `k8s-openapi`'s schemas do not carry them.
const PATCH_STRATEGIES: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        Some("name"),
        "merge,retainKeys",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        Some("ip"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        Some("name"),
        "merge,retainKeys",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        Some("topologyKey"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        Some("containerPort"),
        "merge",
    ),
    ("io.k8s.api.core.v1.Container", "env", Some("name"), "merge"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        Some("mountPath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        Some("devicePath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        Some("containerPort"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        Some("mountPath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        Some("devicePath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        Some("ip"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        Some("ip"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        Some("type"),
        "merge",
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", None, "merge"),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        None,
        "merge",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        Some("uid"),
        "merge",
    ),
];

/// Every schema the served kinds need, keyed by name, built once. Shared with strict field
/// validation, which walks the same schemas.
pub(crate) fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: OnceLock<Map<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(build_schemas)
}

fn build_schemas() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    // Each call adds the type's schema and everything it refers to; the returned `$ref` is not
    // needed here.
    let _ = generator.subschema_for::<Pod>();
    let _ = generator.subschema_for::<Namespace>();
    let _ = generator.subschema_for::<Node>();
    let _ = generator.subschema_for::<Event>();
    let _ = generator.subschema_for::<Secret>();
    let _ = generator.subschema_for::<Lease>();
    let _ = generator.subschema_for::<DeleteOptions>();
    let _ = generator.subschema_for::<Status>();
    let _ = generator.subschema_for::<Patch>();
    let _ = generator.subschema_for::<ListMeta>();
    let mut schemas = generator.take_definitions(true);

    for served in CORE_KINDS.iter().chain(COORDINATION_KINDS) {
        let list = list_schema(&schemas, served);
        schemas.insert(format!("{}List", served.schema), list);
        set_gvk(
            &mut schemas,
            served.schema,
            &[(served.group, served.version, served.kind)],
        );
    }
    set_gvk(&mut schemas, STATUS, &[("", "v1", "Status")]);
    set_gvk(
        &mut schemas,
        DELETE_OPTIONS,
        &[
            ("", "v1", "DeleteOptions"),
            ("coordination.k8s.io", "v1", "DeleteOptions"),
        ],
    );
    for (schema, property, key, strategy) in PATCH_STRATEGIES {
        let Some(field) = schemas
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        field.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if let Some(key) = key {
            field.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
    schemas
}

fn set_gvk(schemas: &mut Map<String, Value>, name: &str, gvks: &[(&str, &str, &str)]) {
    if let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) {
        let list: Vec<Value> = gvks
            .iter()
            .map(|(group, version, kind)| json!({"group": group, "version": version, "kind": kind}))
            .collect();
        schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
    }
}

/// `<Kind>List`, which `k8s-openapi` models as a generic type without a schema.
fn list_schema(schemas: &Map<String, Value>, served: &ServedKind) -> Value {
    // The item kind's own `apiVersion` and `kind` properties describe these fields for lists too.
    let item_property = |name: &str| {
        schemas
            .get(served.schema)
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    json!({
        "description": format!("{}List is a list of {} objects.", served.kind, served.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": item_property("apiVersion"),
            "kind": item_property("kind"),
            "items": {
                "description": format!("The {} in the list.", served.plural),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{}", served.schema)},
            },
            "metadata": {
                "description": "Standard list metadata: the resourceVersion of the list and the continue token.",
                "allOf": [{"$ref": format!("{REF_PREFIX}{LIST_META}")}],
            },
        },
        "x-kubernetes-group-version-kind": [
            {"group": served.group, "version": served.version, "kind": format!("{}List", served.kind)}
        ],
    })
}

fn documents() -> &'static BTreeMap<&'static str, (Value, String)> {
    static DOCUMENTS: OnceLock<BTreeMap<&'static str, (Value, String)>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut documents = BTreeMap::new();
        for (path, kinds) in [
            ("api/v1", CORE_KINDS),
            ("apis/coordination.k8s.io/v1", COORDINATION_KINDS),
        ] {
            let value = build_document(path, kinds);
            let text = value.to_string();
            documents.insert(path, (value, text));
        }
        documents
    })
}

fn build_document(group_version_path: &str, kinds: &[ServedKind]) -> Value {
    let mut paths = Map::new();
    let mut roots = vec![
        DELETE_OPTIONS.to_owned(),
        STATUS.to_owned(),
        PATCH.to_owned(),
    ];
    for served in kinds {
        add_paths(&mut paths, group_version_path, served);
        roots.push(served.schema.to_owned());
        roots.push(format!("{}List", served.schema));
    }
    let all = schemas();
    let mut components = Map::new();
    for name in reachable(all, roots) {
        if let Some(schema) = all.get(&name) {
            components.insert(name, schema.clone());
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// The names of the schemas `roots` refer to, directly or through other schemas.
fn reachable(schemas: &Map<String, Value>, roots: Vec<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending = roots;
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = schemas.get(&name) {
            collect_refs(schema, &mut pending);
        }
    }
    seen
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
            {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        query(
            "dryRun",
            "string",
            "When present (`All`), the change is checked but not stored.",
        ),
        query(
            "fieldManager",
            "string",
            "The name of the actor making the change, recorded in managedFields.",
        ),
        query(
            "fieldValidation",
            "string",
            "What to do with unknown or duplicate fields: `Strict` rejects the request, `Warn` \
             accepts it with a warning per field, `Ignore` drops them silently.",
        ),
    ];
    if patch {
        params.push(query(
            "force",
            "boolean",
            "Server-side apply only: take over fields other managers own instead of failing on the conflict.",
        ));
    }
    params
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "string",
            "When present (`All`), the deletion is checked but not carried out.",
        ),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is deleted; 0 deletes it at once.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated: use propagationPolicy.",
        ),
        query(
            "propagationPolicy",
            "string",
            "How dependents are deleted: `Orphan`, `Background` or `Foreground`.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Watch only: send BOOKMARK events carrying the latest resourceVersion.",
        ),
        query(
            "continue",
            "string",
            "The token from a previous page's `metadata.continue`, to read the next page.",
        ),
        query(
            "fieldSelector",
            "string",
            "Only objects whose fields match, such as `metadata.name=x`.",
        ),
        query(
            "labelSelector",
            "string",
            "Only objects whose labels match, such as `app=web,tier!=db`.",
        ),
        query(
            "limit",
            "integer",
            "The most objects to return; a `continue` token follows when there are more.",
        ),
        query(
            "resourceVersion",
            "string",
            "Read at or after this version of the store (list), or watch from it.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion is read: `Exact` or `NotOlderThan`.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "Watch only: start with the current objects as ADDED events, then a bookmark.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "End the list or watch after this many seconds.",
        ),
        query(
            "watch",
            "boolean",
            "Stream changes instead of returning a list.",
        ),
    ]
}

fn ok_response(code: &str, schema: &str) -> (String, Value) {
    (
        code.to_owned(),
        json!({"description": if code == "201" { "Created" } else if code == "202" { "Accepted" } else { "OK" },
               "content": {"application/json": {"schema": schema_ref(schema)}}}),
    )
}

struct Operation<'a> {
    served: &'a ServedKind,
    action: &'static str,
    operation_id: String,
    description: String,
    parameters: Vec<Value>,
    request_body: Option<Value>,
    responses: Vec<(String, Value)>,
}

impl Operation<'_> {
    fn into_value(self, tag: &str) -> Value {
        let mut responses = Map::new();
        for (code, response) in self.responses {
            responses.insert(code, response);
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        let mut op = json!({
            "tags": [tag],
            "description": self.description,
            "operationId": self.operation_id,
            "parameters": self.parameters,
            "responses": responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": {
                "group": self.served.group, "version": self.served.version, "kind": self.served.kind,
            },
        });
        if let (Some(body), Some(map)) = (self.request_body, op.as_object_mut()) {
            map.insert("requestBody".into(), body);
        }
        op
    }
}

fn add_paths(paths: &mut Map<String, Value>, group_version_path: &str, served: &ServedKind) {
    // Kubernetes' naming: `core_v1`/`CoreV1` for the core group, `coordination_v1`/
    // `CoordinationV1` for `coordination.k8s.io/v1`.
    let short = if served.group.is_empty() {
        "core"
    } else {
        served.group.split('.').next().unwrap_or(served.group)
    };
    let group_id = format!("{}{}", capitalize(short), capitalize(served.version));
    let tag = format!("{short}_{}", served.version);
    let scope = if served.namespaced { "Namespaced" } else { "" };
    let kind = served.kind;
    let list_name = format!("{}List", served.schema);
    let base = if served.namespaced {
        format!(
            "/{group_version_path}/namespaces/{{namespace}}/{}",
            served.plural
        )
    } else {
        format!("/{group_version_path}/{}", served.plural)
    };
    let mut scope_params = vec![query("pretty", "string", "Indent the output when 'true'.")];
    if served.namespaced {
        scope_params.insert(
            0,
            path_param("namespace", "The namespace the objects live in."),
        );
    }
    let mut item_params = scope_params.clone();
    item_params.insert(0, path_param("name", &format!("The name of the {kind}.")));

    let object_body =
        json!({"required": true, "content": {"*/*": {"schema": schema_ref(served.schema)}}});
    let patch_body = json!({"required": true, "content": {
        "application/apply-patch+yaml": {"schema": schema_ref(PATCH)},
        "application/json-patch+json": {"schema": schema_ref(PATCH)},
        "application/merge-patch+json": {"schema": schema_ref(PATCH)},
        "application/strategic-merge-patch+json": {"schema": schema_ref(PATCH)},
    }});
    let delete_body = json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}});

    let collection = vec![
        Operation {
            served,
            action: "list",
            operation_id: format!("list{group_id}{scope}{kind}"),
            description: format!("list or watch objects of kind {kind}"),
            parameters: list_params(),
            request_body: None,
            responses: vec![ok_response("200", &list_name)],
        },
        Operation {
            served,
            action: "post",
            operation_id: format!("create{group_id}{scope}{kind}"),
            description: format!("create a {kind}"),
            parameters: write_params(false),
            request_body: Some(object_body.clone()),
            responses: vec![
                ok_response("200", served.schema),
                ok_response("201", served.schema),
                ok_response("202", served.schema),
            ],
        },
        Operation {
            served,
            action: "deletecollection",
            operation_id: format!("delete{group_id}Collection{scope}{kind}"),
            description: format!("delete a collection of {kind}"),
            parameters: [delete_params(), list_params()].concat(),
            request_body: Some(delete_body.clone()),
            responses: vec![ok_response("200", STATUS)],
        },
    ];
    let item = vec![
        Operation {
            served,
            action: "get",
            operation_id: format!("read{group_id}{scope}{kind}"),
            description: format!("read the specified {kind}"),
            parameters: vec![],
            request_body: None,
            responses: vec![ok_response("200", served.schema)],
        },
        Operation {
            served,
            action: "put",
            operation_id: format!("replace{group_id}{scope}{kind}"),
            description: format!("replace the specified {kind}"),
            parameters: write_params(false),
            request_body: Some(object_body.clone()),
            responses: vec![
                ok_response("200", served.schema),
                ok_response("201", served.schema),
            ],
        },
        Operation {
            served,
            action: "patch",
            operation_id: format!("patch{group_id}{scope}{kind}"),
            description: format!("partially update the specified {kind}"),
            parameters: write_params(true),
            request_body: Some(patch_body.clone()),
            responses: vec![
                ok_response("200", served.schema),
                ok_response("201", served.schema),
            ],
        },
        Operation {
            served,
            action: "delete",
            operation_id: format!("delete{group_id}{scope}{kind}"),
            description: format!("delete a {kind}"),
            parameters: delete_params(),
            request_body: Some(delete_body),
            responses: vec![
                ok_response("200", served.schema),
                ok_response("202", served.schema),
            ],
        },
    ];
    let status = vec![
        Operation {
            served,
            action: "get",
            operation_id: format!("read{group_id}{scope}{kind}Status"),
            description: format!("read status of the specified {kind}"),
            parameters: vec![],
            request_body: None,
            responses: vec![ok_response("200", served.schema)],
        },
        Operation {
            served,
            action: "put",
            operation_id: format!("replace{group_id}{scope}{kind}Status"),
            description: format!("replace status of the specified {kind}"),
            parameters: write_params(false),
            request_body: Some(object_body),
            responses: vec![
                ok_response("200", served.schema),
                ok_response("201", served.schema),
            ],
        },
        Operation {
            served,
            action: "patch",
            operation_id: format!("patch{group_id}{scope}{kind}Status"),
            description: format!("partially update status of the specified {kind}"),
            parameters: write_params(true),
            request_body: Some(patch_body),
            responses: vec![
                ok_response("200", served.schema),
                ok_response("201", served.schema),
            ],
        },
    ];

    let methods = |ops: Vec<Operation>, params: &[Value]| {
        let mut item = Map::new();
        for op in ops {
            let method = match op.action {
                "list" | "get" => "get",
                "post" => "post",
                "put" => "put",
                "patch" => "patch",
                _ => "delete",
            };
            item.insert(method.into(), op.into_value(&tag));
        }
        item.insert("parameters".into(), Value::Array(params.to_vec()));
        Value::Object(item)
    };
    paths.insert(base.clone(), methods(collection, &scope_params));
    paths.insert(format!("{base}/{{name}}"), methods(item, &item_params));
    if served.status {
        paths.insert(
            format!("{base}/{{name}}/status"),
            methods(status, &item_params),
        );
    }
    if served.namespaced {
        let all = vec![Operation {
            served,
            action: "list",
            operation_id: format!("list{group_id}{kind}ForAllNamespaces"),
            description: format!("list or watch objects of kind {kind} in every namespace"),
            parameters: list_params(),
            request_body: None,
            responses: vec![ok_response("200", &list_name)],
        }];
        let pretty = [query("pretty", "string", "Indent the output when 'true'.")];
        paths.insert(
            format!("/{group_version_path}/{}", served.plural),
            methods(all, &pretty),
        );
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Value {
        document("api/v1").expect("api/v1 is served")
    }

    #[test]
    fn pod_patch_operation_proves_server_side_validation() {
        let doc = core();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(patch["x-kubernetes-action"], "patch");
        let params = patch["parameters"].as_array().expect("parameters");
        assert!(params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
    }

    #[test]
    fn every_kind_has_a_patch_with_its_gvk_and_field_validation() {
        for (path, gv, kinds) in [
            (
                "api/v1",
                ("", "v1"),
                vec!["Pod", "Namespace", "Node", "Event", "Secret"],
            ),
            (
                "apis/coordination.k8s.io/v1",
                ("coordination.k8s.io", "v1"),
                vec!["Lease"],
            ),
        ] {
            let doc = document(path).expect("served");
            for kind in kinds {
                let gvk = json!({"group": gv.0, "version": gv.1, "kind": kind});
                let found = doc["paths"]
                    .as_object()
                    .expect("paths")
                    .values()
                    .any(|item| {
                        item["patch"]["x-kubernetes-group-version-kind"] == gvk
                            && item["patch"]["parameters"]
                                .as_array()
                                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"))
                    });
                assert!(found, "{path}: no patch operation for {kind}");
                let schema_name = match kind {
                    "Lease" => "io.k8s.api.coordination.v1.Lease".to_owned(),
                    _ => format!("io.k8s.api.core.v1.{kind}"),
                };
                let schema = &doc["components"]["schemas"][&schema_name];
                assert_eq!(
                    schema["x-kubernetes-group-version-kind"],
                    json!([gvk]),
                    "{schema_name}"
                );
            }
        }
    }

    #[test]
    fn schemas_are_named_and_referenced_as_kubernetes_does() {
        let doc = core();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert!(pod["description"].as_str().is_some_and(|d| !d.is_empty()));
        let spec = &pod["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(spec["description"].is_string());
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodList"));
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(
            containers["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        // Every reference resolves inside the document.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for name in refs {
            assert!(schemas.contains_key(&name), "dangling $ref to {name}");
        }
        // The coordination document carries only what Lease needs.
        let lease = document("apis/coordination.k8s.io/v1").expect("served");
        let lease_schemas = lease["components"]["schemas"].as_object().expect("schemas");
        assert!(lease_schemas.contains_key("io.k8s.api.coordination.v1.LeaseSpec"));
        assert!(!lease_schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
    }

    #[test]
    fn documents_are_deterministic_and_only_for_served_versions() {
        assert_eq!(core().to_string(), core().to_string());
        assert_eq!(
            document_json("api/v1").map(str::to_owned),
            Some(core().to_string())
        );
        assert_eq!(
            build_document("api/v1", CORE_KINDS).to_string(),
            core().to_string()
        );
        assert!(document("apis/apps/v1").is_none());
        for gv in GROUP_VERSIONS {
            assert!(document(gv).is_some(), "{gv}");
        }
    }
}
