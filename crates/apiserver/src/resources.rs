//! The resources the server serves: names, scope, verbs, short names, storage keys.

/// A served resource (one group/version/plural).
#[derive(Debug)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// PUT of a missing object creates it (Kubernetes allows it for events and leases).
    pub create_on_update: bool,
    pub subresources: &'static [Subresource],
}

/// A served subresource.
#[derive(Debug)]
pub struct Subresource {
    pub name: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

pub static PODS: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    list_kind: "PodList",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    create_on_update: false,
    subresources: &[
        Subresource {
            name: "binding",
            kind: "Binding",
            verbs: &["create"],
        },
        Subresource {
            name: "status",
            kind: "Pod",
            verbs: STATUS_VERBS,
        },
    ],
};

pub static NAMESPACES: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    list_kind: "NamespaceList",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    create_on_update: false,
    subresources: &[Subresource {
        name: "status",
        kind: "Namespace",
        verbs: STATUS_VERBS,
    }],
};

pub static NODES: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    list_kind: "NodeList",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    create_on_update: false,
    subresources: &[Subresource {
        name: "status",
        kind: "Node",
        verbs: STATUS_VERBS,
    }],
};

pub static EVENTS: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    list_kind: "EventList",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    create_on_update: true,
    subresources: &[],
};

pub static SECRETS: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    list_kind: "SecretList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    create_on_update: false,
    subresources: &[],
};

pub static LEASES: ResourceInfo = ResourceInfo {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    list_kind: "LeaseList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    create_on_update: true,
    subresources: &[],
};

/// Every served resource, core group first.
pub static ALL: &[&ResourceInfo] = &[&PODS, &NAMESPACES, &NODES, &EVENTS, &SECRETS, &LEASES];

/// The namespaced resources, deleted when their namespace is.
pub fn namespaced() -> impl Iterator<Item = &'static ResourceInfo> {
    ALL.iter().copied().filter(|r| r.namespaced)
}

/// The group-versions served, as (group, version).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in ALL {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `leases.coordination.k8s.io`, as Kubernetes names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn prefix_base(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.prefix_base()),
            _ => format!("{}{name}", self.prefix_base()),
        }
    }

    /// The storage prefix of a collection: one namespace, or all of them.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.prefix_base()),
            _ => self.prefix_base(),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes_nest() {
        assert_eq!(PODS.key(Some("default"), "a"), "/registry/pods/default/a");
        assert!(PODS
            .key(Some("default"), "a")
            .starts_with(&PODS.prefix(Some("default"))));
        assert!(PODS
            .key(Some("default"), "a")
            .starts_with(&PODS.prefix(None)));
        assert_eq!(NAMESPACES.key(None, "x"), "/registry/namespaces/x");
        assert_eq!(
            LEASES.key(Some("kube-node-lease"), "n1"),
            "/registry/coordination.k8s.io/leases/kube-node-lease/n1"
        );
        // A namespace named like a prefix of another must not see its objects.
        assert!(!PODS
            .key(Some("ab"), "x")
            .starts_with(&PODS.prefix(Some("a"))));
    }
}
