//! The kinds the server stores and what each one needs from this crate: defaults, validation,
//! and how a write to the main resource or to `/status` treats spec and status.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::defaults;
use crate::validation::{self, FieldError};

/// A stored API kind.
pub trait ApiKind:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Whether the name must be a DNS-1123 label (namespaces) rather than a subdomain.
    const NAME_IS_LABEL: bool = false;

    /// Fills in defaults (create and update).
    fn set_defaults(&mut self) {}

    /// Validation of a new object, metadata included.
    fn validate_create(&self) -> Vec<FieldError>;

    /// Validation of an update, metadata included; `old` is the stored object.
    fn validate_update(&self, old: &Self) -> Vec<FieldError>;

    /// A write to the main resource keeps the stored status (for kinds with a status).
    fn keep_status_of(&mut self, old: &Self) {
        let _ = old;
    }

    /// A write to `/status` keeps the stored spec and metadata other than labels/annotations.
    fn keep_spec_of(&mut self, old: &Self) {
        let _ = old;
    }

    /// The spec as JSON, to tell whether `metadata.generation` must go up; None for kinds
    /// without a spec.
    fn spec_json(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Metadata a `/status` write may not change: everything but labels and annotations (and the
/// resourceVersion, which the server checks for conflicts).
fn keep_meta_for_status(new: &mut ObjectMeta, old: &ObjectMeta) {
    let (resource_version, labels, annotations, managed_fields) = (
        new.resource_version.take(),
        new.labels.take(),
        new.annotations.take(),
        new.managed_fields.take(),
    );
    *new = old.clone();
    new.resource_version = resource_version;
    new.labels = labels;
    new.annotations = annotations;
    new.managed_fields = managed_fields;
}

fn spec_value<T: serde::Serialize>(spec: &Option<T>) -> Option<serde_json::Value> {
    Some(
        spec.as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(serde_json::Value::Null),
    )
}

impl ApiKind for Pod {
    fn set_defaults(&mut self) {
        defaults::pod(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        validation::validate_pod(self)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        validation::validate_pod_update(self, old)
    }

    fn keep_status_of(&mut self, old: &Self) {
        self.status = old.status.clone();
    }

    fn keep_spec_of(&mut self, old: &Self) {
        self.spec = old.spec.clone();
        keep_meta_for_status(&mut self.metadata, &old.metadata);
    }

    /// Kubernetes tracks `metadata.generation` for pods (since 1.33); the other kinds here have
    /// no generation in Kubernetes, so they return None and keep theirs unset.
    fn spec_json(&self) -> Option<serde_json::Value> {
        spec_value(&self.spec)
    }
}

/// The finalizer of the namespace controller, which empties a namespace before it goes.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";
/// The label every namespace carries with its own name, so selectors can pick namespaces.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl ApiKind for Namespace {
    const NAME_IS_LABEL: bool = true;

    fn set_defaults(&mut self) {
        // Only while the namespace lives: once deleting, the namespace controller removes the
        // finalizer and it must not come back.
        if self.metadata.deletion_timestamp.is_none() {
            let spec = self.spec.get_or_insert_with(Default::default);
            if spec.finalizers.is_none() {
                spec.finalizers = Some(vec![NAMESPACE_FINALIZER.to_string()]);
            }
        }
        let status = self.status.get_or_insert_with(Default::default);
        if status.phase.as_deref().unwrap_or_default().is_empty() {
            status.phase = Some("Active".to_string());
        }
        if let Some(name) = self.metadata.name.clone().filter(|n| !n.is_empty()) {
            self.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(NAMESPACE_NAME_LABEL.to_string(), name);
        }
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta(&self.metadata, false, Self::NAME_IS_LABEL);
        errs.extend(namespace_finalizers(self));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate_create());
        errs
    }

    /// Keeps the status only. Kubernetes also keeps `spec.finalizers` here and changes them
    /// through a `finalize` subresource; Skiff has none, so the namespace controller removes
    /// its finalizer with a plain update.
    fn keep_status_of(&mut self, old: &Self) {
        self.status = old.status.clone();
    }

    fn keep_spec_of(&mut self, old: &Self) {
        self.spec = old.spec.clone();
        keep_meta_for_status(&mut self.metadata, &old.metadata);
    }
}

fn namespace_finalizers(ns: &Namespace) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.as_ref());
    for (i, f) in finalizers.into_iter().flatten().enumerate() {
        let path = format!("spec.finalizers[{i}]");
        let msgs = validation::is_qualified_name(f);
        if !msgs.is_empty() {
            errs.extend(
                msgs.into_iter()
                    .map(|m| FieldError::invalid(&path, f.as_str(), m)),
            );
        } else if !f.contains('/') && f != NAMESPACE_FINALIZER {
            errs.push(FieldError::invalid(
                &path,
                f.as_str(),
                "name is neither a standard finalizer name nor is it fully qualified (e.g. 'example.com/my-finalizer')",
            ));
        }
    }
    errs
}

impl ApiKind for Node {
    fn set_defaults(&mut self) {
        // A node that reports only its capacity can allocate all of it.
        if let Some(status) = self.status.as_mut() {
            if status.allocatable.is_none() && status.capacity.is_some() {
                status.allocatable = status.capacity.clone();
            }
        }
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta(&self.metadata, false, Self::NAME_IS_LABEL);
        if let Some(taints) = self.spec.as_ref().and_then(|s| s.taints.as_ref()) {
            errs.extend(validation::validate_taints(taints, "spec.taints"));
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate_create());
        errs
    }

    fn keep_status_of(&mut self, old: &Self) {
        self.status = old.status.clone();
    }

    fn keep_spec_of(&mut self, old: &Self) {
        self.spec = old.spec.clone();
        keep_meta_for_status(&mut self.metadata, &old.metadata);
    }
}

impl ApiKind for Event {
    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta(&self.metadata, true, Self::NAME_IS_LABEL);
        errs.extend(event_fields(self));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate_create());
        errs
    }
}

/// Event rules as Kubernetes' core/v1 events have them: the involved object's namespace agrees
/// with the event's, and events with an `eventTime` (the newer style) name their reporter.
fn event_fields(event: &Event) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let involved = &event.involved_object;
    if involved.kind.as_deref().unwrap_or_default().is_empty()
        && involved.name.as_deref().unwrap_or_default().is_empty()
    {
        errs.push(FieldError::required(
            "involvedObject",
            "an event must name the object it is about (kind and name)",
        ));
    }
    let namespace = event.metadata.namespace.as_deref().unwrap_or_default();
    let involved_ns = involved.namespace.as_deref().unwrap_or_default();
    let mismatch = if event.event_time.is_none() {
        if involved_ns.is_empty() {
            !namespace.is_empty() && namespace != "default"
        } else {
            namespace != involved_ns
        }
    } else {
        involved_ns.is_empty() && namespace != "default" && namespace != "kube-system"
            || !involved_ns.is_empty() && namespace != involved_ns
    };
    if mismatch {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            format!("does not match event.namespace ({namespace:?})"),
        ));
    }
    if event.event_time.is_some() {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let component = text(&event.reporting_component);
        if component.is_empty() {
            errs.push(FieldError::required("reportingComponent", ""));
        } else {
            errs.extend(
                validation::is_qualified_name(&component)
                    .into_iter()
                    .map(|m| FieldError::invalid("reportingComponent", component.as_str(), m)),
            );
        }
        for (field, value, max) in [
            ("reportingInstance", text(&event.reporting_instance), 128),
            ("action", text(&event.action), 128),
            ("reason", text(&event.reason), 128),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(field, ""));
            } else if value.len() > max {
                errs.push(FieldError::invalid(
                    field,
                    "",
                    format!("can have at most {max} characters"),
                ));
            }
        }
        if text(&event.message).len() > 1024 {
            errs.push(FieldError::invalid(
                "message",
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    errs
}

impl ApiKind for Lease {
    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta(&self.metadata, true, Self::NAME_IS_LABEL);
        if let Some(spec) = &self.spec {
            if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    d,
                    "must be greater than 0",
                ));
            }
            if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
                errs.push(FieldError::invalid(
                    "spec.leaseTransitions",
                    t,
                    "must be greater than or equal to 0",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate_create());
        errs
    }
}

/// The largest total size of a Secret's data values, as Kubernetes (`MaxSecretSize`).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
/// The type of a Secret that holds a `~/.docker/config.json` (`auths` inside).
pub const SECRET_TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The key of such a Secret's content.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The type of a Secret that holds a legacy `~/.dockercfg` (the `auths` map itself).
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// The key of such a Secret's content.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

impl ApiKind for Secret {
    /// `stringData` is write-only: merged into `data` (its values win) and never stored, as the
    /// Kubernetes API server converts it; an empty type is `Opaque`.
    fn set_defaults(&mut self) {
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (key, value) in strings {
                data.insert(key, k8s_openapi::ByteString(value.into_bytes()));
            }
        }
        if self.type_.as_deref().unwrap_or_default().is_empty() {
            self.type_ = Some("Opaque".to_string());
        }
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta(&self.metadata, true, Self::NAME_IS_LABEL);
        errs.extend(secret_fields(self));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = validation::validate_object_meta_update(&self.metadata, &old.metadata);
        errs.extend(self.validate_create());
        if self.type_ != old.type_ {
            errs.push(FieldError::invalid(
                "type",
                self.type_.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
            if self.data != old.data {
                errs.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        errs
    }
}

/// Whether `key` may name an entry of a Secret's (or ConfigMap's) data, as Kubernetes'
/// `IsConfigMapKey`; the messages of what is wrong.
pub fn config_key_errors(key: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if key.len() > 253 {
        msgs.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty() {
        msgs.push("a valid config key must not be empty".to_string());
    } else if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        msgs.push(format!(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
             (e.g. 'key.name', or 'KEY_NAME', or 'key-name'), not {bad:?}"
        ));
    }
    if key == "." {
        msgs.push("must not be '.'".to_string());
    } else if key == ".." {
        msgs.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        msgs.push("must not start with '..'".to_string());
    }
    msgs
}

/// A Secret's data as Kubernetes checks it: keys, total size, and the keys its type requires.
fn secret_fields(secret: &Secret) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Default::default();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let mut total = 0usize;
    for (key, value) in data {
        let path = validation::key_path("data", key);
        errs.extend(
            config_key_errors(key)
                .into_iter()
                .map(|m| FieldError::invalid(&path, key.as_str(), m)),
        );
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let required_json = |key: &str, errs: &mut Vec<FieldError>| {
        let path = validation::key_path("data", key);
        match data.get(key) {
            None => errs.push(FieldError::required(&path, "")),
            Some(value) => {
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&value.0) {
                    errs.push(FieldError::invalid(
                        &path,
                        "<secret contents redacted>",
                        format!("not valid JSON: {e}"),
                    ));
                }
            }
        }
    };
    let has = |key: &str| data.contains_key(key);
    match secret.type_.as_deref().unwrap_or_default() {
        SECRET_TYPE_DOCKER_CONFIG_JSON => required_json(DOCKER_CONFIG_JSON_KEY, &mut errs),
        SECRET_TYPE_DOCKERCFG => required_json(DOCKERCFG_KEY, &mut errs),
        "kubernetes.io/service-account-token" => {
            let annotated = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .is_some_and(|n| !n.is_empty());
            if !annotated {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data.username", ""));
            errs.push(FieldError::required("data.password", ""));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            errs.push(FieldError::required("data.ssh-privatekey", ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(FieldError::required(validation::key_path("data", key), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;
    use serde_json::json;

    fn namespace(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn namespace_defaults() {
        let mut ns = namespace("team-a");
        ns.set_defaults();
        let v = serde_json::to_value(&ns).unwrap();
        assert_eq!(v["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(v["status"], json!({"phase": "Active"}));
        assert_eq!(
            v["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "team-a"})
        );
        assert_eq!(ns.validate_create(), vec![]);
    }

    #[test]
    fn a_terminating_namespace_does_not_get_its_finalizer_back() {
        let mut ns = namespace("team-a");
        ns.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        ns.spec = Some(Default::default());
        ns.set_defaults();
        assert_eq!(ns.spec.unwrap().finalizers, None);
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        let mut ns = namespace("a.b");
        ns.set_defaults();
        let errs = ns.validate_create();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "metadata.name");
        assert!(errs[0].detail.contains("RFC 1123 label"));
    }

    #[test]
    fn pod_status_and_spec_are_kept_by_the_right_writes() {
        let mut old = Pod::default();
        old.set_defaults();
        let mut new = Pod {
            status: None,
            ..old.clone()
        };
        new.keep_status_of(&old);
        assert_eq!(new.status, old.status);

        let mut status_write = Pod {
            spec: None,
            ..old.clone()
        };
        status_write.metadata.finalizers = Some(vec!["x/y".into()]);
        status_write.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        status_write.keep_spec_of(&old);
        assert_eq!(status_write.spec, old.spec);
        assert_eq!(status_write.metadata.finalizers, None);
        assert!(status_write.metadata.labels.is_some());
        assert!(old.spec_json().is_some());
    }

    #[test]
    fn event_needs_an_involved_object_in_its_namespace() {
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {}
        }))
        .unwrap();
        let errs = event.validate_create();
        assert_eq!(errs[0].path, "involvedObject");
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}
        }))
        .unwrap();
        let errs = event.validate_create();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "involvedObject.namespace");
    }

    #[test]
    fn lease_values() {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}
        }))
        .unwrap();
        let paths: Vec<String> = lease
            .validate_create()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            vec!["spec.leaseDurationSeconds", "spec.leaseTransitions"]
        );
    }

    #[test]
    fn node_taints_are_checked() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1"},
            "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}
        }))
        .unwrap();
        let errs = node.validate_create();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason(), "FieldValueNotSupported");
    }

    fn secret(value: serde_json::Value) -> Secret {
        let mut s: Secret = serde_json::from_value(value).unwrap();
        s.set_defaults();
        s
    }

    #[test]
    fn secret_string_data_merges_into_data_and_is_not_kept() {
        let s = secret(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "data": {"a": "b2xk", "b": "Yg=="},
            "stringData": {"a": "new", "c": "see"}
        }));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["data"], json!({"a": "bmV3", "b": "Yg==", "c": "c2Vl"}));
        assert!(v.get("stringData").is_none());
        assert_eq!(v["type"], "Opaque");
        assert_eq!(s.validate_create(), vec![]);
    }

    #[test]
    fn secret_keys_size_and_typed_contents_are_checked() {
        let s = secret(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "stringData": {"bad/key": "x", "..x": "y", "ok.key-1_": "z"}
        }));
        let paths: Vec<String> = s.validate_create().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["data[..x]", "data[bad/key]"]);

        let s = secret(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {"other": "{}"}
        }));
        let errs = s.validate_create();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "data[.dockerconfigjson]");
        assert_eq!(errs[0].reason(), "FieldValueRequired");

        let s = secret(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "type": "kubernetes.io/dockercfg",
            "stringData": {".dockercfg": "{not json"}
        }));
        let errs = s.validate_create();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "data[.dockercfg]");
        assert!(
            errs[0].message().contains("not valid JSON"),
            "{}",
            errs[0].message()
        );
        assert!(!errs[0].message().contains("{not json"));

        let big = "x".repeat(MAX_SECRET_SIZE / 2 + 1);
        let s = secret(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "stringData": {"a": big.clone(), "b": big}
        }));
        let errs = s.validate_create();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].path.as_str(), errs[0].reason()),
            ("data", "FieldValueTooLong")
        );
    }

    #[test]
    fn secret_type_and_immutable_data_cannot_change() {
        let old = secret(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "immutable": true,
            "stringData": {"a": "1"}
        }));
        let mut new = old.clone();
        new.type_ = Some("kubernetes.io/basic-auth".into());
        new.data = Some(
            [(
                "username".to_string(),
                k8s_openapi::ByteString(b"u".to_vec()),
            )]
            .into(),
        );
        new.immutable = Some(false);
        let paths: Vec<String> = new
            .validate_update(&old)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, vec!["type", "immutable", "data"]);
        let mut mutable = old.clone();
        mutable.immutable = None;
        let mut changed = mutable.clone();
        changed.data = None;
        assert_eq!(changed.validate_update(&mutable), vec![]);
    }
}
