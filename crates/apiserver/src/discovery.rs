//! Discovery documents: /version, /api, /apis (aggregated and legacy forms), the per
//! group-version resource lists, and the OpenAPI v3 index.

use serde_json::{json, Value};

use crate::resources::{self, ResourceInfo, VERBS};

/// The Kubernetes version Skiff implements.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "35";
pub const KUBE_GIT_VERSION: &str = concat!("v1.35.0+skiff-", env!("CARGO_PKG_VERSION"));

/// The content type that tells kubectl a body is aggregated discovery.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        "gitVersion": KUBE_GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (Skiff is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    resources::ALL
        .iter()
        .copied()
        .filter(move |r| r.group == group && r.version == version)
}

/// The verbs of a resource: all of them, except that namespaces have no deletecollection.
fn verbs(r: &ResourceInfo) -> Vec<&'static str> {
    VERBS
        .iter()
        .copied()
        .filter(|v| !(r.kind == "Namespace" && *v == "deletecollection"))
        .collect()
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| json!({"subresource": s.name, "responseKind": {"group": r.group, "version": r.version, "kind": s.kind}, "verbs": s.verbs}))
        .collect();
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": verbs(r),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        v["subresources"] = Value::Array(subresources);
    }
    v
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"version": v, "resources": resources_of(g, v).map(aggregated_resource).collect::<Vec<_>>(), "freshness": "Current"}))
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// `/api` (core) or `/apis` (named groups) in the aggregated form.
pub fn aggregated(core: bool) -> Value {
    let mut groups: Vec<&str> = resources::group_versions()
        .into_iter()
        .map(|(g, _)| g)
        .filter(|g| g.is_empty() == core)
        .collect();
    groups.dedup();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": groups.into_iter().map(aggregated_group).collect::<Vec<_>>(),
    })
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    let mut groups: Vec<&str> = resources::group_versions()
        .into_iter()
        .map(|(g, _)| g)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.into_iter().map(api_group).collect::<Vec<_>>()})
}

/// `/apis/<group>`, if served.
pub fn group(group: &str) -> Option<Value> {
    resources::ALL
        .iter()
        .any(|r| r.group == group && !group.is_empty())
        .then(|| {
            let mut g = api_group(group);
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        })
}

/// `/api/v1` or `/apis/<group>/<version>`, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources_of(group, version) {
        let mut v = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs(r)});
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        list.push(v);
        for s in r.subresources {
            list.push(json!({"name": format!("{}/{}", r.plural, s.name), "singularName": "", "namespaced": r.namespaced, "kind": s.kind, "verbs": s.verbs}));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_group_has_pods_with_short_name_and_no_name() {
        let doc = aggregated(true);
        let item = &doc["items"][0];
        assert!(item["metadata"].get("name").is_none());
        let pods = item["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "pods")
            .cloned()
            .expect("pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["scope"], "Namespaced");
    }

    #[test]
    fn named_groups_include_coordination() {
        let doc = aggregated(false);
        assert_eq!(doc["items"][0]["metadata"]["name"], "coordination.k8s.io");
        assert!(group("coordination.k8s.io").is_some());
        assert!(group("apps").is_none());
        assert!(resource_list("", "v1").is_some());
        assert!(resource_list("", "v2").is_none());
    }
}
