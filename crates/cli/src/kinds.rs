//! The kinds Skiff serves, as a static table: `get` needs no discovery round trip to know that
//! `po` means pods, namespaced, at `/api/v1`.

/// One resource the CLI knows by name.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// The plural, as in URLs and messages: `pods`.
    pub plural: &'static str,
    /// The lower-case singular, as in `pod/kubia` and `pod "kubia" deleted`.
    pub singular: &'static str,
    /// The kind, as in manifests: `Pod`.
    pub kind: &'static str,
    pub short: &'static [&'static str],
    pub namespaced: bool,
}

pub const RESOURCES: &[Resource] = &[
    Resource {
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        short: &["po"],
        namespaced: true,
    },
    Resource {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        short: &["ns"],
        namespaced: false,
    },
    Resource {
        plural: "nodes",
        singular: "node",
        kind: "Node",
        short: &["no"],
        namespaced: false,
    },
    Resource {
        plural: "events",
        singular: "event",
        kind: "Event",
        short: &["ev"],
        namespaced: true,
    },
    Resource {
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        short: &[],
        namespaced: true,
    },
];

/// The resource a user typed (`po`, `pod`, `pods`, `Pod`, `pods.v1.`, `all` = pods here).
pub fn by_name(name: &str) -> Option<&'static Resource> {
    let name = name.to_ascii_lowercase();
    let name = name
        .strip_suffix(".v1.")
        .or_else(|| name.strip_suffix(".v1"))
        .unwrap_or(&name);
    let name = if name == "all" { "pods" } else { name };
    RESOURCES
        .iter()
        .find(|r| r.plural == name || r.singular == name || r.short.contains(&name))
}

/// The known name (plural, singular or short) closest to a misspelt one, if one is close.
pub fn closest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    RESOURCES
        .iter()
        .flat_map(|r| {
            [r.plural, r.singular]
                .into_iter()
                .chain(r.short.iter().copied())
        })
        .filter(|known| known.len() > 2)
        .map(|known| (strsim::damerau_levenshtein(&name, known), known))
        // One edit in a short word, two in a longer one: `foo` is no typo of `pod`.
        .filter(|(distance, known)| *distance <= if known.len() > 4 { 2 } else { 1 })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// The resource of a manifest's kind (`apiVersion: v1` only: Skiff serves the core group).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    if api_version != "v1" {
        return None;
    }
    RESOURCES.iter().find(|r| r.kind == kind)
}

impl Resource {
    /// The URL path of the collection, in `namespace` (None: all namespaces).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/api/v1/namespaces/{ns}/{}", self.plural),
            _ => format!("/api/v1/{}", self.plural),
        }
    }

    /// The URL path of one object.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_kubectl_accepts_finds_the_resource() {
        for name in ["po", "pod", "pods", "Pod", "PODS", "pods.v1.", "all"] {
            assert_eq!(by_name(name).map(|r| r.plural), Some("pods"), "{name}");
        }
        assert_eq!(by_name("ns").map(|r| r.plural), Some("namespaces"));
        assert_eq!(by_name("no").map(|r| r.plural), Some("nodes"));
        assert_eq!(by_name("ev").map(|r| r.plural), Some("events"));
        assert_eq!(by_name("secret").map(|r| r.plural), Some("secrets"));
        assert_eq!(by_kind("v1", "Secret").map(|r| r.plural), Some("secrets"));
        assert_eq!(by_name("services"), None);
        assert_eq!(closest("pdos"), Some("pods"));
        assert_eq!(closest("namespcae"), Some("namespace"));
        assert_eq!(closest("foo"), None);
    }

    #[test]
    fn paths_follow_the_scope() {
        let pods = by_name("po").expect("pods are known");
        assert_eq!(pods.object_path("x", "a"), "/api/v1/namespaces/x/pods/a");
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        let ns = by_name("ns").expect("namespaces are known");
        assert_eq!(ns.object_path("x", "a"), "/api/v1/namespaces/a");
    }
}
