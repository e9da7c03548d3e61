//! Authorization: who may do what. The admin may do everything; the join token only obtains node
//! credentials; a node (Kubernetes' Node authorizer and NodeRestriction, in one pure function)
//! reads what its agent needs and writes only its own Node, its own Lease, the status and the
//! deletion of pods bound to it, and events.

use k8s_openapi::api::core::v1::Pod;

use crate::auth::{User, UserKind};
use crate::error::ApiError;

/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What a resource request asks, in Kubernetes' terms.
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'a str,
    pub group: &'a str,
    /// The plural, e.g. `pods`.
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// The object's name: from the path, or for a create from the body.
    pub name: Option<&'a str>,
}

/// The authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed if the pod named in the request is bound to this node (or does not exist, so the
    /// request fails on its own): the handler looks the pod up.
    AllowIfPodBoundTo(String),
    /// Allowed if a pod bound to this node uses the secret named in the request (Kubernetes'
    /// node authorizer graph, as a look at the namespace's pods): the handler lists them.
    AllowIfSecretUsedOn(String),
    /// Forbidden; the reason ends Kubernetes' message (may be empty).
    Deny(String),
}

const READS: &[&str] = &["get", "list", "watch"];
const WRITES: &[&str] = &["create", "update", "patch"];

/// Decides a resource request.
pub fn authorize(user: &User, attrs: &Attributes<'_>) -> Decision {
    match &user.kind {
        UserKind::Admin => Decision::Allow,
        UserKind::Join => Decision::Deny(String::new()),
        UserKind::Node(node) => authorize_node(node, attrs),
    }
}

fn authorize_node(node: &str, a: &Attributes<'_>) -> Decision {
    let read = READS.contains(&a.verb);
    let own = a.name == Some(node);
    match (a.group, a.resource, a.subresource) {
        ("", "nodes", None | Some("status")) if read => Decision::Allow,
        ("", "nodes", None | Some("status")) if WRITES.contains(&a.verb) => {
            if own {
                Decision::Allow
            } else {
                match a.name {
                    Some(other) => {
                        Decision::Deny(format!("node {node:?} cannot modify node {other:?}"))
                    }
                    None => Decision::Deny(format!("node {node:?} cannot modify other nodes")),
                }
            }
        }
        ("", "pods", None | Some("status")) if read => Decision::Allow,
        ("", "pods", Some("status")) if matches!(a.verb, "update" | "patch") => {
            Decision::AllowIfPodBoundTo(node.to_string())
        }
        // The agent confirms the deletion of a pod it stopped.
        ("", "pods", None) if a.verb == "delete" => Decision::AllowIfPodBoundTo(node.to_string()),
        ("", "namespaces", None) if read => Decision::Allow,
        // Only one secret at a time, and only one its pods use: a list or watch would show
        // every secret of the namespace.
        ("", "secrets", None) if a.verb == "get" && a.name.is_some() && a.namespace.is_some() => {
            Decision::AllowIfSecretUsedOn(node.to_string())
        }
        ("", "events", None) if matches!(a.verb, "create" | "patch") => Decision::Allow,
        ("coordination.k8s.io", "leases", None) if a.namespace == Some(LEASE_NAMESPACE) => {
            if read || (WRITES.contains(&a.verb) && own) {
                Decision::Allow
            } else {
                Decision::Deny(format!(
                    "node {node:?} can only modify its own lease in {LEASE_NAMESPACE}"
                ))
            }
        }
        _ => Decision::Deny(String::new()),
    }
}

/// Whether `pod` refers to the secret `name` of its namespace: as an image pull secret, a
/// volume (plain or projected), or the source of environment variables.
pub fn pod_uses_secret(pod: &Pod, name: &str) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let pull = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .any(|r| r.name == name);
    let volumes = spec.volumes.iter().flatten().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(name))
            || v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == name))
            })
    });
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let env = containers.clone().any(|c| {
        c.env.iter().flatten().any(|e| {
            e.value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == name)
        }) || c
            .env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == name))
    });
    pull || volumes || env
}

/// Kubernetes' 403 for a denied resource request, e.g. `nodes "b" is forbidden: User
/// "system:node:a" cannot patch resource "nodes" in API group "" at the cluster scope: node "a"
/// cannot modify node "b"`.
pub fn forbidden(user: &User, attrs: &Attributes<'_>, reason: &str) -> ApiError {
    let resource = match attrs.subresource {
        Some(sub) => format!("{}/{sub}", attrs.resource),
        None => attrs.resource.to_string(),
    };
    let qualified = if attrs.group.is_empty() {
        attrs.resource.to_string()
    } else {
        format!("{}.{}", attrs.resource, attrs.group)
    };
    let subject = match attrs.name {
        Some(name) if attrs.verb != "create" => format!("{qualified} {name:?}"),
        _ => qualified,
    };
    let scope = match attrs.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    let mut message = format!(
        "{subject} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.name, attrs.verb, attrs.group
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    let name = if attrs.verb == "create" {
        ""
    } else {
        attrs.name.unwrap_or("")
    };
    ApiError::forbidden(message)
        .with_details(attrs.resource, name)
        .with_group(attrs.group)
}

/// Kubernetes' 403 for a path outside the resource API (discovery, OpenAPI) or a skiff endpoint.
pub fn forbidden_path(user: &User, verb: &str, path: &str) -> ApiError {
    ApiError::forbidden(format!(
        "forbidden: User {:?} cannot {verb} path {path:?}",
        user.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> User {
        User::node(name)
    }

    fn attrs<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        ns: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: if resource == "leases" {
                "coordination.k8s.io"
            } else {
                ""
            },
            resource,
            subresource: sub,
            namespace: ns,
            name,
        }
    }

    #[test]
    fn a_node_may_do_what_its_agent_does() {
        let a = node("a");
        let allowed = [
            attrs("create", "nodes", None, None, Some("a")),
            attrs("patch", "nodes", None, None, Some("a")),
            attrs("update", "nodes", None, None, Some("a")),
            attrs("patch", "nodes", Some("status"), None, Some("a")),
            attrs("get", "nodes", None, None, Some("b")),
            attrs("list", "nodes", None, None, None),
            attrs("watch", "pods", None, None, None),
            attrs("list", "pods", None, None, None),
            attrs("get", "pods", None, Some("default"), Some("p")),
            attrs("get", "namespaces", None, None, Some("default")),
            attrs("get", "leases", None, Some("kube-node-lease"), Some("a")),
            attrs("create", "leases", None, Some("kube-node-lease"), Some("a")),
            attrs("update", "leases", None, Some("kube-node-lease"), Some("a")),
            attrs("create", "events", None, Some("default"), None),
            attrs("patch", "events", None, Some("kube-system"), Some("e")),
        ];
        for at in allowed {
            assert_eq!(authorize(&a, &at), Decision::Allow, "{at:?}");
        }
        for at in [
            attrs("patch", "pods", Some("status"), Some("default"), Some("p")),
            attrs("update", "pods", Some("status"), Some("default"), Some("p")),
            attrs("delete", "pods", None, Some("default"), Some("p")),
        ] {
            assert_eq!(
                authorize(&a, &at),
                Decision::AllowIfPodBoundTo("a".into()),
                "{at:?}"
            );
        }
    }

    #[test]
    fn a_node_may_not_touch_what_is_not_its_own() {
        let a = node("a");
        let denied = [
            attrs("patch", "nodes", None, None, Some("b")),
            attrs("patch", "nodes", Some("status"), None, Some("b")),
            attrs("create", "nodes", None, None, Some("b")),
            attrs("delete", "nodes", None, None, Some("a")),
            attrs("deletecollection", "nodes", None, None, None),
            attrs("update", "leases", None, Some("kube-node-lease"), Some("b")),
            attrs("create", "leases", None, Some("default"), Some("a")),
            attrs("get", "leases", None, Some("default"), Some("a")),
            attrs("create", "pods", None, Some("default"), Some("p")),
            attrs("patch", "pods", None, Some("default"), Some("p")),
            attrs(
                "create",
                "pods",
                Some("binding"),
                Some("default"),
                Some("p"),
            ),
            attrs("get", "pods", Some("log"), Some("default"), Some("p")),
            // A node's credentials open no stream into any pod, its own included.
            attrs("get", "pods", Some("exec"), Some("default"), Some("p")),
            attrs("create", "pods", Some("exec"), Some("default"), Some("p")),
            attrs("get", "pods", Some("attach"), Some("default"), Some("p")),
            attrs("create", "pods", Some("attach"), Some("default"), Some("p")),
            attrs("deletecollection", "pods", None, Some("default"), None),
            attrs("create", "namespaces", None, None, Some("x")),
            attrs("delete", "namespaces", None, None, Some("default")),
            attrs("delete", "events", None, Some("default"), Some("e")),
            attrs("list", "events", None, None, None),
        ];
        for at in denied {
            assert!(
                matches!(authorize(&a, &at), Decision::Deny(_)),
                "{at:?} should be denied"
            );
        }
    }

    #[test]
    fn a_node_reads_a_secret_only_one_by_one_and_only_if_its_pods_use_it() {
        let a = node("a");
        assert_eq!(
            authorize(
                &a,
                &attrs("get", "secrets", None, Some("default"), Some("s"))
            ),
            Decision::AllowIfSecretUsedOn("a".into())
        );
        for at in [
            attrs("list", "secrets", None, Some("default"), None),
            attrs("watch", "secrets", None, None, None),
            attrs("create", "secrets", None, Some("default"), Some("s")),
            attrs("update", "secrets", None, Some("default"), Some("s")),
            attrs("delete", "secrets", None, Some("default"), Some("s")),
        ] {
            assert!(
                matches!(authorize(&a, &at), Decision::Deny(_)),
                "{at:?} should be denied"
            );
        }
    }

    #[test]
    fn pods_use_secrets_for_pulls_volumes_and_env() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "v", "secret": {"secretName": "vol"}},
                    {"name": "p", "projected": {"sources": [{"secret": {"name": "proj"}}]}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "from"}}]}],
                "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}}]}]
            }
        }))
        .expect("a pod");
        for used in ["pull", "vol", "proj", "from", "key"] {
            assert!(pod_uses_secret(&pod, used), "{used}");
        }
        assert!(!pod_uses_secret(&pod, "other"));
        assert!(!pod_uses_secret(&Pod::default(), "pull"));
    }

    #[test]
    fn the_admin_may_do_anything_and_the_join_token_nothing() {
        let admin = User::admin();
        let join = User::join();
        for at in [
            attrs("delete", "nodes", None, None, Some("a")),
            attrs("list", "pods", None, None, None),
            attrs(
                "create",
                "pods",
                Some("binding"),
                Some("default"),
                Some("p"),
            ),
        ] {
            assert_eq!(authorize(&admin, &at), Decision::Allow);
            assert!(matches!(authorize(&join, &at), Decision::Deny(_)));
        }
    }

    #[test]
    fn forbidden_messages_are_kubernetes_own() {
        let a = node("a");
        let at = attrs("patch", "nodes", None, None, Some("b"));
        let Decision::Deny(reason) = authorize(&a, &at) else {
            panic!("denied");
        };
        let err = forbidden(&a, &at, &reason);
        assert_eq!(err.code, 403);
        assert_eq!(err.reason, "Forbidden");
        assert_eq!(
            err.message,
            "nodes \"b\" is forbidden: User \"system:node:a\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope: node \"a\" cannot modify node \"b\""
        );
        let status = err.to_status();
        assert_eq!(status["details"]["kind"], "nodes");
        assert_eq!(status["details"]["name"], "b");

        let join = User::join();
        let at = attrs("list", "pods", None, Some("default"), None);
        let err = forbidden(&join, &at, "");
        assert_eq!(
            err.message,
            "pods is forbidden: User \"system:bootstrap:skiff-join\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let at = attrs("update", "leases", None, Some("kube-node-lease"), Some("b"));
        let err = forbidden(&a, &at, "x");
        assert!(err.message.starts_with("leases.coordination.k8s.io \"b\" is forbidden: User \"system:node:a\" cannot update resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"kube-node-lease\": x"), "{}", err.message);
        let at = attrs("patch", "pods", Some("status"), Some("default"), Some("p"));
        let err = forbidden(&a, &at, "");
        assert!(
            err.message
                .contains("cannot patch resource \"pods/status\""),
            "{}",
            err.message
        );
        assert_eq!(
            forbidden_path(&join, "get", "/api").message,
            "forbidden: User \"system:bootstrap:skiff-join\" cannot get path \"/api\""
        );
    }
}
