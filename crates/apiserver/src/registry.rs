//! The core of the API server: create, read, update, patch and delete of typed objects over the
//! store, with Kubernetes' metadata, validation, optimistic concurrency and graceful deletion.
//! No HTTP types here: handlers turn requests into these calls.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use skiff_api::decode::{self, Document, Format};
use skiff_api::kinds::ApiKind;
use skiff_api::patch::{self, PatchType};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::strict::{self, FieldValidation, IssueKind};
use skiff_api::validation::FieldError;
use skiff_store::{KeyValue, Revision, Store};

use crate::codec;
use crate::error::{ApiError, Cause, Result};
use crate::resources::{ResourceInfo, NAMESPACES};

/// How a body was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf`, already decoded into JSON by the handler.
    Decoded,
}

/// A decoded write: the object and the warnings to return.
pub struct Decoded<K> {
    pub object: K,
    pub warnings: Vec<String>,
}

/// The result of a write: the object as JSON (with resourceVersion) and warnings.
#[derive(Debug)]
pub struct Written {
    pub body: Vec<u8>,
    pub warnings: Vec<String>,
    /// The write created the object (a create, or an update of a missing lease or event):
    /// answered with 201 instead of 200.
    pub created: bool,
}

/// Options of a DELETE (body `DeleteOptions` and query parameters).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// A list request.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    /// List at exactly this revision (resourceVersionMatch=Exact).
    pub exact_revision: Option<Revision>,
    /// The result must be at least this fresh.
    pub min_revision: Option<Revision>,
}

/// Objects read from the store, as JSON with their resourceVersions.
pub struct Listed {
    pub items: Vec<Vec<u8>>,
    pub revision: Revision,
}

/// The registry of all resources over one store.
#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Store>,
}

/// The uid of a stored object, read without decoding the rest of it.
fn stored_uid(kv: &KeyValue) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Stored {
        metadata: StoredMeta,
    }
    #[derive(serde::Deserialize)]
    struct StoredMeta {
        #[serde(default)]
        uid: String,
    }
    serde_json::from_slice::<Stored>(&kv.value)
        .map(|s| s.metadata.uid)
        .map_err(|e| ApiError::internal(format!("stored object {} cannot be read: {e}", kv.key)))
}

/// Namespaces Kubernetes refuses to delete (its NamespaceLifecycle admission): the cluster
/// needs them. kube-node-lease may go, as in Kubernetes.
pub const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Seconds since the epoch.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The current time with second precision, as Kubernetes timestamps have.
pub fn now() -> Time {
    Time(Timestamp::from_second(now_seconds()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn field_causes(errors: &[FieldError]) -> Vec<Cause> {
    errors
        .iter()
        .map(|e| Cause {
            reason: e.reason().to_string(),
            message: e.message(),
            field: e.path.clone(),
        })
        .collect()
}

fn invalid(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(info.kind, info.group, name, field_causes(errors))
}

/// Parses a resourceVersion given by a client.
pub fn parse_revision(text: &str, what: &str) -> Result<Revision> {
    text.parse::<Revision>().ok().filter(|r| *r >= 0).ok_or_else(|| {
        ApiError::bad_request(format!("invalid {what} {text:?}: a resourceVersion is a non-negative integer returned by the server"))
    })
}

/// Splits a field path into segments: `spec.containers[0].name` -> spec, containers, [0], name.
fn path_segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            '[' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                let mut inner = String::from("[");
                for c in chars.by_ref() {
                    inner.push(c);
                    if c == ']' {
                        break;
                    }
                }
                out.push(inner);
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn value_at_mut<'a>(value: &'a mut Value, segments: &[String]) -> Option<&'a mut Value> {
    let mut v = value;
    for seg in segments {
        v = if let Some(inner) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            match inner.parse::<usize>() {
                Ok(i) => v.get_mut(i)?,
                Err(_) => v.get_mut(inner)?,
            }
        } else {
            v.get_mut(seg.as_str())?
        };
    }
    Some(v)
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store }
    }

    /// Decodes a body into `K` with strict field validation, type checks and kind checks.
    pub fn decode<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        body: &[u8],
        format: BodyFormat,
        validation: FieldValidation,
    ) -> Result<Decoded<K>> {
        let doc = match format {
            BodyFormat::Json | BodyFormat::Decoded => decode::parse(body, Format::Json),
            BodyFormat::Yaml => decode::parse(body, Format::Yaml),
        }
        .map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not valid {}: {e}",
                if format == BodyFormat::Yaml {
                    "YAML"
                } else {
                    "JSON"
                }
            ))
        })?;
        self.decode_document(info, doc, validation)
    }

    /// As `decode`, from a document already parsed (patch results).
    pub fn decode_document<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        mut doc: Document,
        validation: FieldValidation,
    ) -> Result<Decoded<K>> {
        let cannot = |detail: String| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {detail}",
                K::KIND,
                K::VERSION,
                K::KIND
            ))
        };
        if !doc.value.is_object() {
            return Err(cannot("the body must be a JSON or YAML object".into()));
        }
        match doc.value.get("apiVersion") {
            None => {}
            Some(Value::String(v)) if v == K::API_VERSION => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({}): use \"apiVersion: {}\" for {}",
                    other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string()),
                    K::API_VERSION,
                    K::API_VERSION,
                    info.plural
                )))
            }
        }
        match doc.value.get("kind") {
            None => {}
            Some(Value::String(k)) if k == K::KIND => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({}) does not match the expected kind ({}) of {}",
                    other
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| other.to_string()),
                    K::KIND,
                    info.plural
                )))
            }
        }

        let mut warnings = Vec::new();
        let issues = strict::field_issues(&doc, K::KIND);
        if !issues.is_empty() {
            match validation {
                FieldValidation::Strict => return Err(self.strict_error::<K>(info, &doc, &issues)),
                FieldValidation::Warn => warnings.extend(issues.iter().map(|i| i.to_string())),
                FieldValidation::Ignore => {}
            }
            strict::drop_unknown(&mut doc.value, &issues);
        }
        let object: K = decode::into_typed(doc.value.clone()).map_err(|e| {
            let line = doc
                .line_of(&e.path)
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            cannot(format!("{}{line}: {}", e.path, e.message))
        })?;
        Ok(Decoded { object, warnings })
    }

    /// The 400 for unknown or duplicate fields. Where a misspelt field has a close match, the
    /// content is also validated as if it had the right name, so one answer names every mistake.
    fn strict_error<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        doc: &Document,
        issues: &[strict::FieldIssue],
    ) -> ApiError {
        let mut renamed = doc.value.clone();
        let mut renames: Vec<(String, String)> = Vec::new();
        for issue in issues {
            if let IssueKind::Unknown {
                suggestion: Some(suggestion),
            } = &issue.kind
            {
                let mut segments = path_segments(&issue.path);
                let Some(last) = segments.pop() else { continue };
                let Some(Value::Object(parent)) = value_at_mut(&mut renamed, &segments) else {
                    continue;
                };
                if parent.contains_key(suggestion) {
                    continue;
                }
                if let Some(v) = parent.remove(&last) {
                    parent.insert(suggestion.clone(), v);
                    let prefix = if segments.is_empty() {
                        String::new()
                    } else {
                        format!("{}.", segments.join(".").replace(".[", "["))
                    };
                    renames.push((format!("{prefix}{suggestion}"), issue.path.clone()));
                }
            }
        }
        let mut after_rename: Vec<String> = Vec::new();
        if !renames.is_empty() {
            let mut rdoc = Document {
                value: renamed,
                ..Default::default()
            };
            let rissues = strict::field_issues(&rdoc, K::KIND);
            strict::drop_unknown(&mut rdoc.value, &rissues);
            if let Ok(mut object) = decode::into_typed::<K>(rdoc.value) {
                object.set_defaults();
                for err in object.validate_create() {
                    if let Some((new_path, old_path)) = renames.iter().find(|(n, _)| {
                        err.path == *n
                            || err.path.starts_with(&format!("{n}."))
                            || err.path.starts_with(&format!("{n}["))
                    }) {
                        let original = format!("{old_path}{}", &err.path[new_path.len()..]);
                        let line = doc
                            .line_of(&original)
                            .map(|l| format!(" (line {l})"))
                            .unwrap_or_default();
                        after_rename.push(format!("{original}{line}: {}", err.message()));
                    }
                }
            }
        }
        let mut message = format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            K::KIND,
            K::VERSION,
            K::KIND,
            issues
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !after_rename.is_empty() {
            message.push_str(&format!(
                "; even with the suggested name, {}",
                after_rename.join(", ")
            ));
        }
        let name = doc
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let causes = issues
            .iter()
            .map(|i| Cause {
                reason: match i.kind {
                    IssueKind::Unknown { .. } => "FieldValueInvalid".into(),
                    IssueKind::Duplicate => "FieldValueDuplicate".into(),
                },
                message: i.to_string(),
                field: i.path.clone(),
            })
            .collect();
        ApiError::bad_request(message)
            .with_details(info.plural, name)
            .with_causes(causes)
    }

    async fn get_kv(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<KeyValue> {
        self.store
            .get(&info.key(namespace, name))
            .await?
            .ok_or_else(|| ApiError::not_found(&info.qualified(), name))
    }

    /// GET of one object, as JSON.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Vec<u8>> {
        Ok(codec::read(&self.get_kv(info, namespace, name).await?))
    }

    /// GET of one typed object.
    pub async fn get_typed<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<K> {
        codec::decode(&self.get_kv(info, namespace, name).await?)
    }

    /// LIST with selectors.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Listed> {
        if let Some(min) = options.min_revision {
            let current = self.store.current_revision();
            if min > current {
                return Err(skiff_store::Error::FutureRevision {
                    requested: min,
                    current,
                }
                .into());
            }
        }
        // metadata.name=x needs one key, not the collection. The revision is read first, so a
        // watch that follows may see a change twice but never misses one.
        if options.exact_revision.is_none() && (namespace.is_some() || !info.namespaced) {
            if let Some(name) = options.field_selector.exact("metadata.name") {
                let revision = self.store.current_revision();
                let mut items = Vec::new();
                if let Some(kv) = self.store.get(&info.key(namespace, name)).await? {
                    let body = codec::read(&kv);
                    if self.matches(info, &body, options) {
                        items.push(body);
                    }
                }
                return Ok(Listed { items, revision });
            }
        }
        let result = self
            .store
            .list(&info.prefix(namespace), options.exact_revision)
            .await?;
        let filter = !options.label_selector.is_empty() || !options.field_selector.is_empty();
        let mut items = Vec::with_capacity(result.items.len());
        for kv in &result.items {
            let body = codec::read(kv);
            if !filter || self.matches(info, &body, options) {
                items.push(body);
            }
        }
        Ok(Listed {
            items,
            revision: result.revision,
        })
    }

    /// Whether an object (JSON) matches the selectors of `options`.
    pub fn matches(&self, info: &ResourceInfo, body: &[u8], options: &ListOptions) -> bool {
        if options.label_selector.is_empty() && options.field_selector.is_empty() {
            return true;
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        matches_value(info, &value, options)
    }

    /// Checks the namespace of a new namespaced object exists and is not terminating.
    async fn check_namespace(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<()> {
        let Some(kv) = self.store.get(&NAMESPACES.key(None, namespace)).await? else {
            return Err(ApiError::not_found("namespaces", namespace));
        };
        let ns: Namespace = codec::decode(&kv)?;
        if ns.metadata.deletion_timestamp.is_some() {
            let mut err = ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                info.qualified()
            ))
            .with_details(info.plural, name)
            .with_group(info.group);
            err.details.causes = vec![Cause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {namespace} is being terminated"),
                field: "metadata.namespace".into(),
            }];
            return Err(err);
        }
        Ok(())
    }

    /// Puts the namespace of the request into the object, or refuses a mismatch.
    fn bind_namespace(
        info: &ResourceInfo,
        meta: &mut ObjectMeta,
        namespace: Option<&str>,
    ) -> Result<()> {
        if info.namespaced {
            let ns = namespace.unwrap_or("default");
            match meta.namespace.as_deref() {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({given}) does not match the namespace sent on the request ({ns})"
                    )))
                }
                _ => meta.namespace = Some(ns.to_string()),
            }
        } else {
            meta.namespace = None;
        }
        Ok(())
    }

    /// CREATE.
    pub async fn create<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        decoded: Decoded<K>,
        dry_run: bool,
    ) -> Result<Written> {
        let Decoded {
            mut object,
            warnings,
        } = decoded;
        let meta = object.metadata_mut();
        Self::bind_namespace(info, meta, namespace)?;
        if meta.name.as_deref().unwrap_or_default().is_empty() {
            if let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
                meta.name = Some(format!("{prefix}{}", random_suffix()));
            }
        }
        let name = meta.name.clone().unwrap_or_default();
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.creation_timestamp = Some(now());
        meta.resource_version = None;
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        meta.managed_fields = None;
        meta.self_link = None;
        reset_status_for_create(&mut object);
        object.set_defaults();
        if object.spec_json().is_some() {
            object.metadata_mut().generation = Some(1);
        }
        let errors = object.validate_create();
        if !errors.is_empty() {
            return Err(invalid(info, &name, &errors));
        }
        if info.namespaced {
            let ns = object.metadata().namespace.clone().unwrap_or_default();
            self.check_namespace(info, &ns, &name).await?;
        }
        let ns = object.metadata().namespace.clone();
        let bytes = codec::encode(&object)?;
        if dry_run {
            return Ok(Written {
                body: bytes.to_vec(),
                warnings,
                created: true,
            });
        }
        let kv = match self
            .store
            .create(&info.key(ns.as_deref(), &name), bytes)
            .await
        {
            Ok(kv) => kv,
            Err(skiff_store::Error::AlreadyExists(_)) => {
                return Err(ApiError::already_exists(&info.qualified(), &name))
            }
            Err(e) => return Err(e.into()),
        };
        tracing::debug!(
            resource = info.plural,
            namespace = ns.as_deref().unwrap_or(""),
            name,
            revision = kv.mod_revision,
            "created"
        );
        Ok(Written {
            body: codec::read(&kv),
            warnings,
            created: true,
        })
    }

    /// UPDATE (PUT) of the main resource or of `status`.
    pub async fn update<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        decoded: Decoded<K>,
        status: bool,
        dry_run: bool,
    ) -> Result<Written> {
        let Decoded {
            mut object,
            warnings,
        } = decoded;
        let meta = object.metadata_mut();
        match meta.name.as_deref() {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => meta.name = Some(name.to_string()),
        }
        Self::bind_namespace(info, meta, namespace)?;
        let precondition = match meta.resource_version.as_deref().filter(|s| !s.is_empty()) {
            Some(rv) => Some(parse_revision(rv, "metadata.resourceVersion")?),
            None => None,
        };
        // A uid in the body is a precondition, as in Kubernetes: an object deleted and created
        // again under the same name is not overwritten by an update meant for the old one.
        let uid = meta.uid.clone().filter(|u| !u.is_empty());
        loop {
            let current = match self.store.get(&info.key(namespace, name)).await? {
                Some(kv) => kv,
                None if info.create_on_update && !status => {
                    return self
                        .create(info, namespace, Decoded { object, warnings }, dry_run)
                        .await;
                }
                None => return Err(ApiError::not_found(&info.qualified(), name)),
            };
            if let Some(uid) = &uid {
                let stored = stored_uid(&current)?;
                if *uid != stored {
                    return Err(ApiError::conflict_message(
                        &info.qualified(),
                        name,
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {stored}"),
                    ));
                }
            }
            match self
                .replace(
                    info,
                    &current,
                    object.clone(),
                    precondition,
                    status,
                    dry_run,
                )
                .await
            {
                Err(Retry::Conflict) => continue,
                Err(Retry::Fail(e)) => return Err(e),
                Ok(body) => {
                    return Ok(Written {
                        body,
                        warnings,
                        created: false,
                    })
                }
            }
        }
    }

    /// Writes `object` over `current`. A store conflict is retried by the caller unless the
    /// client asked for a precondition.
    async fn replace<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        current: &KeyValue,
        mut object: K,
        precondition: Option<Revision>,
        status: bool,
        dry_run: bool,
    ) -> Result<Vec<u8>, Retry> {
        let name = object.metadata().name.clone().unwrap_or_default();
        if let Some(expected) = precondition {
            if expected != current.mod_revision {
                return Err(Retry::Fail(ApiError::conflict(&info.qualified(), &name)));
            }
        }
        let old: K = codec::decode(current).map_err(Retry::Fail)?;
        {
            let (meta, old_meta) = (object.metadata_mut(), old.metadata());
            meta.uid = old_meta.uid.clone();
            meta.creation_timestamp = old_meta.creation_timestamp.clone();
            meta.deletion_timestamp = old_meta.deletion_timestamp.clone();
            meta.deletion_grace_period_seconds = old_meta.deletion_grace_period_seconds;
            meta.generation = old_meta.generation;
            meta.managed_fields = None;
            meta.self_link = None;
            meta.generate_name = old_meta.generate_name.clone().or(meta.generate_name.take());
        }
        if status {
            object.keep_spec_of(&old);
        } else {
            object.keep_status_of(&old);
        }
        object.set_defaults();
        if object.spec_json() != old.spec_json() {
            let generation = old.metadata().generation.unwrap_or(0) + 1;
            object.metadata_mut().generation = Some(generation);
        }
        let errors = object.validate_update(&old);
        if !errors.is_empty() {
            return Err(Retry::Fail(invalid(info, &name, &errors)));
        }
        let bytes = codec::encode(&object).map_err(Retry::Fail)?;
        if bytes == current.value || dry_run {
            return Ok(if dry_run {
                codec::with_revision(&bytes, current.mod_revision)
            } else {
                codec::read(current)
            });
        }
        // The last finalizer of an object being deleted is gone: the object goes.
        let meta = object.metadata();
        if meta.deletion_timestamp.is_some()
            && meta.finalizers.as_ref().is_none_or(|f| f.is_empty())
            && meta.deletion_grace_period_seconds.unwrap_or(0) == 0
            && !has_spec_finalizers(&object)
        {
            return match self
                .store
                .delete(&current.key, Some(current.mod_revision))
                .await
            {
                Ok(kv) => Ok(codec::with_revision(&bytes, kv.mod_revision)),
                Err(e) => Err(write_failure(e, info, &name, precondition.is_some())),
            };
        }
        match self
            .store
            .update(&current.key, bytes, Some(current.mod_revision))
            .await
        {
            Ok(kv) => Ok(codec::read(&kv)),
            Err(e) => Err(write_failure(e, info, &name, precondition.is_some())),
        }
    }

    /// PATCH of the main resource or of `status`.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        body: &[u8],
        patch_type: PatchType,
        validation: FieldValidation,
        status: bool,
        dry_run: bool,
    ) -> Result<Written> {
        loop {
            let current = self.get_kv(info, namespace, name).await?;
            let original: Value = serde_json::from_slice(&codec::read(&current))
                .map_err(|e| ApiError::internal(format!("stored object cannot be read: {e}")))?;
            let patched = patch::apply(&original, body, patch_type, K::KIND).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "the patch does not apply to {} \"{name}\": {e}",
                        info.qualified()
                    ),
                )
                .with_details(info.plural, name)
            })?;
            let precondition = match patched
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                Some(rv) if rv != current.mod_revision.to_string() => {
                    Some(parse_revision(rv, "metadata.resourceVersion")?)
                }
                _ => None,
            };
            let decoded: Decoded<K> = self.decode_document(
                info,
                Document {
                    value: patched,
                    ..Default::default()
                },
                validation,
            )?;
            let Decoded {
                mut object,
                warnings,
            } = decoded;
            {
                let meta = object.metadata_mut();
                if meta.name.as_deref() != Some(name) {
                    return Err(ApiError::bad_request(format!(
                        "a patch may not change metadata.name (to {:?})",
                        meta.name.clone().unwrap_or_default()
                    )));
                }
                Self::bind_namespace(info, meta, namespace)?;
            }
            match self
                .replace(info, &current, object, precondition, status, dry_run)
                .await
            {
                Err(Retry::Conflict) => continue,
                Err(Retry::Fail(e)) => return Err(e),
                Ok(body) => {
                    return Ok(Written {
                        body,
                        warnings,
                        created: false,
                    })
                }
            }
        }
    }

    /// DELETE. Pods bound to a node are deleted gracefully (deletionTimestamp set, the node agent
    /// removes them); objects with finalizers wait for them; everything else goes at once.
    /// Returns the object and whether it is gone (false while a graceful deletion is under way).
    pub async fn delete<K: ApiKind>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(Vec<u8>, bool)> {
        if info.kind == "Namespace" && UNDELETABLE_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ))
            .with_details(info.plural, name));
        }
        loop {
            let current = self.get_kv(info, namespace, name).await?;
            let mut object: K = codec::decode(&current)?;
            let meta = object.metadata();
            if let Some(uid) = &options.precondition_uid {
                if meta.uid.as_deref() != Some(uid.as_str()) {
                    return Err(ApiError::conflict_message(
                        &info.qualified(),
                        name,
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta.uid.clone().unwrap_or_default()),
                    ));
                }
            }
            if let Some(rv) = &options.precondition_resource_version {
                if *rv != current.mod_revision.to_string() {
                    return Err(ApiError::conflict_message(
                        &info.qualified(),
                        name,
                        format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in meta: {}", current.mod_revision),
                    ));
                }
            }
            let grace = grace_period(&object, options);
            let has_finalizers = meta.finalizers.as_ref().is_some_and(|f| !f.is_empty());
            // A namespace always goes through its finalizer: the namespace controller empties it.
            let is_namespace = (&object as &dyn std::any::Any).is::<Namespace>();
            let graceful = grace > 0 || has_finalizers || is_namespace;
            if graceful {
                let meta = object.metadata_mut();
                if meta.deletion_timestamp.is_some() {
                    // Already terminating: only a shorter grace period changes anything.
                    match meta.deletion_grace_period_seconds {
                        Some(existing) if grace < existing => {}
                        _ => return Ok((codec::read(&current), false)),
                    }
                }
                let deadline = now_seconds() + grace;
                meta.deletion_timestamp = Some(Time(
                    Timestamp::from_second(deadline).unwrap_or(Timestamp::UNIX_EPOCH),
                ));
                meta.deletion_grace_period_seconds = Some(grace);
                mark_terminating(&mut object);
                if options.dry_run {
                    return codec::encode(&object)
                        .map(|b| (codec::with_revision(&b, current.mod_revision), false));
                }
                let bytes = codec::encode(&object)?;
                match self
                    .store
                    .update(&current.key, bytes, Some(current.mod_revision))
                    .await
                {
                    Ok(kv) => return Ok((codec::read(&kv), false)),
                    Err(skiff_store::Error::Conflict { .. }) => continue,
                    Err(skiff_store::Error::NotFound(_)) => {
                        return Err(ApiError::not_found(&info.qualified(), name))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if options.dry_run {
                return Ok((codec::read(&current), true));
            }
            match self
                .store
                .delete(&current.key, Some(current.mod_revision))
                .await
            {
                Ok(kv) => {
                    tracing::debug!(
                        resource = info.plural,
                        namespace = namespace.unwrap_or(""),
                        name,
                        "deleted"
                    );
                    return Ok((codec::read(&kv), true));
                }
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(skiff_store::Error::NotFound(_)) => {
                    return Err(ApiError::not_found(&info.qualified(), name))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// POST pods/NAME/binding: assigns a pending pod to a node.
    pub async fn bind_pod(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        node: &str,
    ) -> Result<()> {
        loop {
            let current = self.get_kv(info, Some(namespace), name).await?;
            let mut pod: Pod = codec::decode(&current)?;
            if pod.metadata.deletion_timestamp.is_some() {
                return Err(ApiError::conflict_message(
                    "pods",
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let spec = pod.spec.get_or_insert_with(Default::default);
            if let Some(existing) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict_message(
                    "pods",
                    name,
                    format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            spec.node_name = Some(node.to_string());
            let status = pod.status.get_or_insert_with(Default::default);
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            conditions.retain(|c| c.type_ != "PodScheduled");
            conditions.push(k8s_openapi::api::core::v1::PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(now()),
                ..Default::default()
            });
            let bytes = codec::encode(&pod)?;
            match self
                .store
                .update(&current.key, bytes, Some(current.mod_revision))
                .await
            {
                Ok(_) => return Ok(()),
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Whether a parsed object matches the selectors.
pub fn matches_value(info: &ResourceInfo, value: &Value, options: &ListOptions) -> bool {
    if !options.label_selector.is_empty() {
        let labels: Option<std::collections::BTreeMap<String, String>> = value
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok());
        if !options.label_selector.matches(labels.as_ref()) {
            return false;
        }
    }
    options.field_selector.is_empty() || options.field_selector.matches(info.plural, value)
}

enum Retry {
    Conflict,
    Fail(ApiError),
}

/// What a failed compare-and-swap write means: a conflict is retried from a fresh read unless
/// the client gave a resourceVersion, which then is stale.
fn write_failure(
    err: skiff_store::Error,
    info: &ResourceInfo,
    name: &str,
    client_precondition: bool,
) -> Retry {
    match err {
        skiff_store::Error::Conflict { .. } if !client_precondition => Retry::Conflict,
        skiff_store::Error::Conflict { .. } => {
            Retry::Fail(ApiError::conflict(&info.qualified(), name))
        }
        skiff_store::Error::NotFound(_) => {
            Retry::Fail(ApiError::not_found(&info.qualified(), name))
        }
        e => Retry::Fail(e.into()),
    }
}

fn random_suffix() -> String {
    // The alphabet Kubernetes uses for generated names: no vowels, no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    let _ = getrandom::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The grace period a delete gets: pods use theirs (or the request's); a pod bound to no node,
/// or already finished, goes at once. Other kinds have none.
fn grace_period<K: ApiKind>(object: &K, options: &DeleteOptions) -> i64 {
    let Some(pod) = (object as &dyn std::any::Any).downcast_ref::<Pod>() else {
        return 0;
    };
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return 0;
    }
    let grace = options
        .grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    // Kubernetes turns a negative grace period into the shortest graceful one.
    if grace < 0 {
        1
    } else {
        grace
    }
}

/// Whether a namespace still waits for `spec.finalizers` (the namespace controller's).
fn has_spec_finalizers<K: ApiKind>(object: &K) -> bool {
    (object as &dyn std::any::Any)
        .downcast_ref::<Namespace>()
        .and_then(|ns| ns.spec.as_ref())
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| !f.is_empty())
}

/// Pods and namespaces start with the server's status, whatever the client sent (a pod exported
/// with `-o yaml` and created again must not claim to be Running), as Kubernetes does; defaulting
/// then sets phase Pending or Active. Nodes keep theirs: the node agent registers with a status.
fn reset_status_for_create<K: ApiKind>(object: &mut K) {
    let any = object as &mut dyn std::any::Any;
    if let Some(pod) = any.downcast_mut::<Pod>() {
        pod.status = None;
    } else if let Some(ns) = any.downcast_mut::<Namespace>() {
        ns.status = None;
    }
}

/// A namespace being deleted shows phase Terminating.
fn mark_terminating<K: ApiKind>(object: &mut K) {
    if let Some(ns) = (object as &mut dyn std::any::Any).downcast_mut::<Namespace>() {
        ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(path_segments("metadata.label"), vec!["metadata", "label"]);
        assert_eq!(
            path_segments("spec.containers[0].imagePullPolice"),
            vec!["spec", "containers", "[0]", "imagePullPolice"]
        );
    }

    #[test]
    fn generated_suffix_has_five_safe_characters() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
