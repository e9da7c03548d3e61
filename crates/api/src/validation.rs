//! Validation as Kubernetes does it, field by field, with Kubernetes' reasons and messages.
//!
//! The checks, their order and the short standard messages (`Required value`, `Invalid value:
//! "x": ...`) follow Kubernetes so that kubectl users see what they know. Where Kubernetes only
//! prints a regular expression we describe it in words and point at the offending character.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSpec, Probe, ResourceRequirements, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// The kinds of field error Kubernetes reports (`field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    TooLong,
    TooMany,
    Forbidden,
    /// A reference to something that does not exist (a volume mount naming no volume).
    NotFound,
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Full path, `spec.containers[0].image`.
    pub path: String,
    pub error_type: ErrorType,
    /// The offending value, when there is one to show.
    pub value: Option<serde_json::Value>,
    /// What is wrong and what to do, e.g. `must be no more than 63 characters`.
    pub detail: String,
}

impl FieldError {
    /// The `StatusCause.reason`: `FieldValueRequired`, `FieldValueInvalid`, ...
    pub fn reason(&self) -> &'static str {
        match self.error_type {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }

    /// The message without the path, as Kubernetes words it:
    /// `Invalid value: "1.0.0]": a valid label must be ...`, `Required value`.
    pub fn message(&self) -> String {
        let kind = match self.error_type {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::NotFound => "Not found",
        };
        // Kubernetes never shows the value of these three: it may be huge or secret.
        let show_value = !matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong
        );
        let mut s = kind.to_string();
        if show_value {
            if let Some(value) = &self.value {
                s.push_str(": ");
                s.push_str(&render_value(value));
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// `Required value`, with an optional detail.
    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            error_type: ErrorType::Required,
            value: None,
            detail: detail.into(),
        }
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(
        path: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            error_type: ErrorType::Invalid,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(path: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            path: path.into(),
            error_type: ErrorType::Duplicate,
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// `Unsupported value: <value>: supported values: "A", "B"` (listed in sorted order).
    pub fn not_supported(
        path: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let mut sorted: Vec<&str> = supported.to_vec();
        sorted.sort_unstable();
        let list = sorted
            .iter()
            .map(|v| go_quote(v))
            .collect::<Vec<_>>()
            .join(", ");
        FieldError {
            path: path.into(),
            error_type: ErrorType::NotSupported,
            value: Some(value.into()),
            detail: format!("supported values: {list}"),
        }
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(path: impl Into<String>, max_bytes: usize) -> Self {
        FieldError {
            path: path.into(),
            error_type: ErrorType::TooLong,
            value: None,
            detail: format!("may not be more than {max_bytes} bytes"),
        }
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            error_type: ErrorType::Forbidden,
            value: None,
            detail: detail.into(),
        }
    }

    /// `Not found: <value>`.
    pub fn not_found(path: impl Into<String>, value: impl Into<Value>) -> Self {
        FieldError {
            path: path.into(),
            error_type: ErrorType::NotFound,
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message())
    }
}

/// A value as Kubernetes prints it: strings quoted, numbers and booleans bare; structures as
/// compact JSON (Kubernetes prints Go syntax there, which users cannot paste back).
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Go's `%q`: double quotes, backslash escapes for quotes, backslashes and control characters.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `path.key` for plain keys, `path[key]` when the key holds dots or slashes (as Kubernetes
/// prints map keys), so a path stays unambiguous.
pub fn key_path(path: &str, key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key}]")
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

// ---------------------------------------------------------------------------------------------
// Syntax of names, keys and values. Each returns the list of problems, empty when valid.
// ---------------------------------------------------------------------------------------------

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest name part of a qualified name and longest label value.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Largest total size of all annotations of an object (keys and values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
const DNS_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Points at what breaks a `[alnum]([inner]*[alnum])?` pattern: the first character not allowed,
/// or the bad first or last character. None when the pattern holds.
fn pattern_hint(value: &str, alnum: fn(char) -> bool, inner: fn(char) -> bool) -> Option<String> {
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !alnum(*c) && !inner(*c))
    {
        let why = if c.is_ascii_uppercase() && alnum('a') && !alnum('A') {
            " (use lower case)"
        } else {
            ""
        };
        return Some(format!(
            "{} at position {} is not allowed{why}",
            describe_char(c),
            i + 1
        ));
    }
    let first = value.chars().next()?;
    if !alnum(first) {
        return Some(format!("it starts with {}", describe_char(first)));
    }
    let last = value.chars().last()?;
    if !alnum(last) {
        return Some(format!("it ends with {}", describe_char(last)));
    }
    None
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\'' => "\"'\"".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

fn with_hint(base: &str, hint: Option<String>) -> String {
    match hint {
        Some(h) => format!("{base}; here {h}"),
        None => base.to_string(),
    }
}

fn dns_label_inner(c: char) -> bool {
    c == '-'
}

fn matches_dns_label(value: &str) -> bool {
    !value.is_empty() && pattern_hint(value, is_lower_alnum, dns_label_inner).is_none()
}

/// A DNS-1123 label: at most 63 lower case alphanumerics or '-', alphanumeric at both ends.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns_label(value) {
        errs.push(with_hint(
            DNS_LABEL_ERR,
            pattern_hint(value, is_lower_alnum, dns_label_inner),
        ));
    }
    errs
}

fn subdomain_hint(value: &str) -> Option<String> {
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !is_lower_alnum(*c) && *c != '-' && *c != '.')
    {
        let why = if c.is_ascii_uppercase() {
            " (use lower case)"
        } else {
            ""
        };
        return Some(format!(
            "{} at position {} is not allowed{why}",
            describe_char(c),
            i + 1
        ));
    }
    if value.is_empty() {
        return Some("it is empty".to_string());
    }
    for part in value.split('.') {
        if part.is_empty() {
            return Some("it has an empty part between dots".to_string());
        }
        if let Some(h) = pattern_hint(part, is_lower_alnum, dns_label_inner) {
            return Some(format!("the part '{part}': {h}"));
        }
    }
    None
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated DNS labels.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if let Some(h) = subdomain_hint(value) {
        errs.push(with_hint(DNS_SUBDOMAIN_ERR, Some(h)));
    }
    errs
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn qualified_inner(c: char) -> bool {
    c == '-' || c == '_' || c == '.'
}

/// A qualified name (label and annotation keys, finalizers): an optional DNS subdomain prefix
/// and '/', then a name of at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_ERR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'); here it has {} '/'",
                parts.len() - 1
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !name.is_empty() {
        if let Some(h) = pattern_hint(name, is_alnum, qualified_inner) {
            errs.push(format!("name part {QUALIFIED_NAME_ERR}; here {h}"));
        }
    }
    errs
}

/// A label value: empty, or at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() {
        if let Some(h) = pattern_hint(value, is_alnum, qualified_inner) {
            errs.push(format!(
                "{LABEL_VALUE_ERR} (e.g. 'MyValue', or 'my_value', or '12345'); here {h}"
            ));
        }
    }
    errs
}

/// An IANA service name, as container port names must be.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.chars().all(|c| is_lower_alnum(c) || c == '-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    } else if !port.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// A port number, 1 to 65535.
pub fn is_valid_port_num(port: i32) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// An environment variable name: printable ASCII other than '=' (Kubernetes' relaxed rule, GA
/// since 1.34).
pub fn is_env_var_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if let Some((i, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(' '..='~').contains(c) || *c == '=')
    {
        errs.push(format!(
            "a valid environment variable name must consist only of printable ASCII characters other than '='; here {} at position {} is not allowed",
            describe_char(c),
            i + 1
        ));
    }
    errs
}

/// Name validation of a kind: DNS subdomain or DNS label. With `prefix` (generateName), a
/// trailing '-' is allowed since random characters follow it.
fn name_errors(name: &str, prefix: bool, label: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    if label {
        is_dns1123_label(name)
    } else {
        is_dns1123_subdomain(name)
    }
}

fn invalid_each(path: &str, value: &str, msgs: Vec<String>) -> Vec<FieldError> {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

/// Object metadata: name (DNS-1123 subdomain unless `name_is_label`), generateName, namespace
/// presence for namespaced kinds, labels, annotations (total size), finalizers, ownerReferences.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_is_label: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or_default();
    if !generate_name.is_empty() {
        errs.extend(invalid_each(
            "metadata.generateName",
            generate_name,
            name_errors(generate_name, true, name_is_label),
        ));
    }
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        errs.extend(invalid_each(
            "metadata.name",
            name,
            name_errors(name, false, name_is_label),
        ));
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            errs.extend(invalid_each(
                "metadata.namespace",
                namespace,
                is_dns1123_label(namespace),
            ));
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(generation) = meta.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            "metadata.generation",
            generation,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    if let Some(refs) = &meta.owner_references {
        errs.extend(validate_owner_references(refs, "metadata.ownerReferences"));
    }
    if let Some(finalizers) = &meta.finalizers {
        errs.extend(validate_finalizers(finalizers, "metadata.finalizers"));
    }
    errs
}

/// Metadata of an update: the fields Kubernetes keeps immutable, finalizers of an object being
/// deleted, and a generation that never goes down. Syntax is checked by `validate_object_meta`.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        let old_finalizers: BTreeSet<&String> = old.finalizers.iter().flatten().collect();
        for f in new.finalizers.iter().flatten() {
            if !old_finalizers.contains(f) {
                errs.push(FieldError::forbidden(
                    "metadata.finalizers",
                    format!("no new finalizers can be added if the object is being deleted, found new finalizer {f:?}"),
                ));
            }
        }
    }
    if new.generation.unwrap_or(0) < old.generation.unwrap_or(0) {
        errs.push(FieldError::invalid(
            "metadata.generation",
            new.generation.unwrap_or(0),
            "must not be decremented",
        ));
    }
    let immutable = |path: &str, new: Value, old: Value, errs: &mut Vec<FieldError>| {
        if new != old {
            errs.push(FieldError::invalid(
                path,
                new,
                format!("field is immutable (it was {})", render_value(&old)),
            ));
        }
    };
    let s = |v: &Option<String>| Value::String(v.clone().unwrap_or_default());
    immutable("metadata.name", s(&new.name), s(&old.name), &mut errs);
    immutable(
        "metadata.namespace",
        s(&new.namespace),
        s(&old.namespace),
        &mut errs,
    );
    immutable("metadata.uid", s(&new.uid), s(&old.uid), &mut errs);
    let ts = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or(Value::Null)
    };
    immutable(
        "metadata.creationTimestamp",
        ts(&new.creation_timestamp),
        ts(&old.creation_timestamp),
        &mut errs,
    );
    errs
}

/// Label keys and values at `path` (e.g. `metadata.labels`).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        let at = key_path(path, key);
        errs.extend(invalid_each(
            &at,
            key,
            is_qualified_name(key)
                .into_iter()
                .map(|m| format!("label key {m}"))
                .collect(),
        ));
        errs.extend(invalid_each(&at, value, is_valid_label_value(value)));
    }
    errs
}

/// Annotation keys (qualified names, case-insensitive) and their total size.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        total += key.len() + value.len();
        let msgs = is_qualified_name(&key.to_lowercase())
            .into_iter()
            .map(|m| format!("annotation key {m}"))
            .collect();
        errs.extend(invalid_each(&key_path(path, key), key, msgs));
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        let err = FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT);
        let detail = format!(
            "{} (keys and values together; these total {total} bytes)",
            err.detail
        );
        errs.push(err.with_detail(detail));
    }
    errs
}

fn validate_finalizers(finalizers: &[String], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, f) in finalizers.iter().enumerate() {
        errs.extend(invalid_each(&index_path(path, i), f, is_qualified_name(f)));
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(FieldError::invalid(
            path,
            serde_json::to_value(finalizers).unwrap_or(Value::Null),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

fn validate_owner_references(
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut controllers = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let at = index_path(path, i);
        // `group/version` or `version`: the version is what follows the last '/'.
        let version = r.api_version.rsplit('/').next().unwrap_or_default();
        if version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{at}.apiVersion"),
                r.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                format!("{at}.kind"),
                "",
                "must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                format!("{at}.name"),
                "",
                "must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                format!("{at}.uid"),
                "",
                "must not be empty",
            ));
        }
        if r.controller == Some(true) {
            controllers.push(r.name.clone());
        }
    }
    if controllers.len() > 1 {
        errs.push(FieldError::invalid(
            path,
            serde_json::to_value(refs).unwrap_or(Value::Null),
            format!("Only one reference can have Controller set to true. Found \"true\" in references for {}", controllers.join(" and ")),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];

/// A new pod (after defaulting).
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&pod.metadata, true, false);
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(validate_pod_spec(spec, "spec"));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create; add ephemeral containers with the ephemeralcontainers subresource",
        ));
    }
    errs
}

/// An update of a pod: everything `validate_pod` checks, plus the immutable spec fields.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_object_meta(&new.metadata, true, false));
    let default_spec = PodSpec::default();
    let new_spec = new.spec.as_ref().unwrap_or(&default_spec);
    let old_spec = old.spec.as_ref().unwrap_or(&default_spec);
    errs.extend(validate_pod_spec(new_spec, "spec"));

    let no_containers = Vec::new();
    for (field, new_list, old_list) in [
        ("containers", &new_spec.containers, &old_spec.containers),
        (
            "initContainers",
            new_spec.init_containers.as_ref().unwrap_or(&no_containers),
            old_spec.init_containers.as_ref().unwrap_or(&no_containers),
        ),
    ] {
        let path = format!("spec.{field}");
        if new_list.len() != old_list.len() {
            errs.push(FieldError::forbidden(
                path,
                format!(
                    "pod updates may not add or remove containers (there were {}, now {})",
                    old_list.len(),
                    new_list.len()
                ),
            ));
            return errs;
        }
        for (i, c) in new_list.iter().enumerate() {
            let image = c.image.as_deref().unwrap_or_default();
            if !image.is_empty() && image.trim() != image {
                errs.push(FieldError::invalid(
                    format!("{path}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }

    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(new_ads), old_ads) => {
            if !(0..=i32::MAX as i64).contains(&new_ads) {
                errs.push(FieldError::invalid(
                    "spec.activeDeadlineSeconds",
                    new_ads,
                    inclusive_range_error(0, i32::MAX as i64),
                ));
                return errs;
            }
            if old_ads.is_some_and(|o| o < new_ads) {
                errs.push(FieldError::invalid(
                    "spec.activeDeadlineSeconds",
                    new_ads,
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }

    let no_tolerations = Vec::new();
    let new_tolerations = new_spec.tolerations.as_ref().unwrap_or(&no_tolerations);
    for old_t in old_spec.tolerations.iter().flatten() {
        let kept = new_tolerations.iter().any(|n| {
            let mut o = old_t.clone();
            o.toleration_seconds = n.toleration_seconds;
            &o == n
        });
        if !kept {
            errs.push(FieldError::forbidden(
                "spec.tolerations",
                format!(
                    "existing toleration can not be modified except its tolerationSeconds; missing now: {}",
                    serde_json::to_string(old_t).unwrap_or_default()
                ),
            ));
            break;
        }
    }

    // Everything else must be unchanged: put the updatable fields of the old spec into the
    // new one and compare what is left.
    let mut munged = new_spec.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image = o.image.clone();
    }
    if let (Some(new_init), Some(old_init)) = (
        munged.init_containers.as_mut(),
        old_spec.init_containers.as_ref(),
    ) {
        for (c, o) in new_init.iter_mut().zip(old_init) {
            c.image = o.image.clone();
        }
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.tolerations = old_spec.tolerations.clone();
    munged.scheduling_gates = old_spec.scheduling_gates.clone();
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    let before = normalized(serde_json::to_value(old_spec).unwrap_or(Value::Null));
    let after = normalized(serde_json::to_value(&munged).unwrap_or(Value::Null));
    if before != after {
        let mut changes = Vec::new();
        diff_values("spec", &before, &after, &mut changes);
        let shown: Vec<String> = changes.iter().take(3).cloned().collect();
        let more = if changes.len() > 3 {
            format!(" and {} more", changes.len() - 3)
        } else {
            String::new()
        };
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, \
                 `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), \
                 `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative); \
                 this update changes {}{more}",
                shown.join(", ")
            ),
        ));
    }
    errs
}

/// Drops nulls and empty lists, which Kubernetes treats as equal to absent fields.
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !v.is_null() && !v.as_array().is_some_and(|a| a.is_empty()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

/// The paths where `before` and `after` differ, with the old and new values of leaves.
fn diff_values(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                let (bv, av) = (
                    b.get(k).unwrap_or(&Value::Null),
                    a.get(k).unwrap_or(&Value::Null),
                );
                if bv != av {
                    diff_values(&format!("{path}.{k}"), bv, av, out);
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                if bv != av {
                    diff_values(&format!("{path}[{i}]"), bv, av, out);
                }
            }
        }
        _ => out.push(format!(
            "`{path}` (from {} to {})",
            short_json(before),
            short_json(after)
        )),
    }
}

fn short_json(v: &Value) -> String {
    if v.is_null() {
        return "unset".to_string();
    }
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// A pod spec at `path`, in the order Kubernetes checks it.
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let no_volumes = Vec::new();
    let volumes = spec.volumes.as_ref().unwrap_or(&no_volumes);
    errs.extend(validate_volumes(volumes, &format!("{path}.volumes")));
    let volume_names: BTreeSet<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    let host_network = spec.host_network == Some(true);

    let containers_path = format!("{path}.containers");
    if spec.containers.is_empty() {
        errs.push(FieldError::required(
            &containers_path,
            "a pod needs at least one container",
        ));
    }
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let at = index_path(&containers_path, i);
        errs.extend(validate_container(c, &volume_names, host_network, &at));
        errs.extend(validate_probes(c, &at));
        if let Some(rp) = &c.restart_policy {
            errs.push(FieldError::forbidden(
                format!("{at}.restartPolicy"),
                format!(
                    "may not be set for non-init containers (found {rp:?}); use spec.restartPolicy"
                ),
            ));
        }
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{at}.name"), c.name.as_str()));
        }
    }
    let init_path = format!("{path}.initContainers");
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let at = index_path(&init_path, i);
        errs.extend(validate_container(c, &volume_names, host_network, &at));
        let sidecar = match c.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errs.push(FieldError::not_supported(
                    format!("{at}.restartPolicy"),
                    other,
                    &["Always"],
                ));
                false
            }
        };
        if sidecar {
            errs.extend(validate_probes(c, &at));
        } else {
            for (field, set) in [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        format!("{at}.{field}"),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{at}.name"), c.name.as_str()));
        }
    }
    errs.extend(validate_host_port_conflicts(spec, path));

    match spec.restart_policy.as_deref().unwrap_or_default() {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(format!("{path}.restartPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            other,
            RESTART_POLICIES,
        )),
    }
    let dns_policy = spec.dns_policy.as_deref().unwrap_or_default();
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(format!("{path}.dnsPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            other,
            DNS_POLICIES,
        )),
    }
    if let Some(selector) = &spec.node_selector {
        errs.extend(validate_labels(selector, &format!("{path}.nodeSelector")));
    }
    if dns_policy == "None" && spec.dns_config.is_none() {
        errs.push(FieldError::required(
            format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        errs.extend(invalid_each(
            &format!("{path}.serviceAccountName"),
            sa,
            is_dns1123_subdomain(sa),
        ));
    }
    if let Some(node) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(invalid_each(
            &format!("{path}.nodeName"),
            node,
            is_dns1123_subdomain(node),
        ));
    }
    if let Some(ads) = spec.active_deadline_seconds {
        if !(1..=i32::MAX as i64).contains(&ads) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                ads,
                inclusive_range_error(1, i32::MAX as i64),
            ));
        }
    }
    if let Some(grace) = spec.termination_grace_period_seconds.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            grace,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(hostname) = spec.hostname.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(invalid_each(
            &format!("{path}.hostname"),
            hostname,
            is_dns1123_label(hostname),
        ));
    }
    if let Some(subdomain) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(invalid_each(
            &format!("{path}.subdomain"),
            subdomain,
            is_dns1123_label(subdomain),
        ));
    }
    if let Some(tolerations) = &spec.tolerations {
        errs.extend(validate_tolerations(
            tolerations,
            &format!("{path}.tolerations"),
        ));
    }
    if let Some(pc) = spec
        .priority_class_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        errs.extend(invalid_each(
            &format!("{path}.priorityClassName"),
            pc,
            is_dns1123_subdomain(pc),
        ));
    }
    if let Some(pp) = spec.preemption_policy.as_deref() {
        if !PREEMPTION_POLICIES.contains(&pp) {
            errs.push(FieldError::not_supported(
                format!("{path}.preemptionPolicy"),
                pp,
                PREEMPTION_POLICIES,
            ));
        }
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(FieldError::invalid(
            format!("{path}.shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    if let Some(sc) = &spec.security_context {
        let at = format!("{path}.securityContext");
        errs.extend(validate_seccomp_profile(sc.seccomp_profile.as_ref(), &at));
        for (field, id) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
            ("fsGroup", sc.fs_group),
        ] {
            errs.extend(validate_id(id, &format!("{at}.{field}")));
        }
        for (i, gid) in sc.supplemental_groups.iter().flatten().enumerate() {
            errs.extend(validate_id(
                Some(*gid),
                &index_path(&format!("{at}.supplementalGroups"), i),
            ));
        }
        errs.extend(validate_sysctls(spec, &format!("{at}.sysctls")));
    }
    errs
}

/// spec.securityContext.sysctls as the API server checks a new pod's: names well-formed and
/// unique, and none of the network (IPC) namespace when the pod shares the host's.
fn validate_sysctls(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    use crate::sysctl::{self, SysctlNamespace};
    let mut errs = Vec::new();
    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref());
    let mut seen = BTreeSet::new();
    for (i, s) in sysctls.into_iter().flatten().enumerate() {
        let at = format!("{}.name", index_path(path, i));
        if s.name.is_empty() {
            errs.push(FieldError::required(&at, ""));
        } else if !sysctl::is_valid_name(&s.name) {
            errs.push(FieldError::invalid(
                &at,
                s.name.as_str(),
                format!(
                    "must have at most {} characters and match regex {}",
                    sysctl::MAX_NAME_LENGTH,
                    sysctl::NAME_PATTERN
                ),
            ));
        } else if !seen.insert(s.name.as_str()) {
            errs.push(FieldError::duplicate(&at, s.name.as_str()));
        }
        let shared = match sysctl::namespace_of(&sysctl::dotted(&s.name)) {
            Some(SysctlNamespace::Net) if spec.host_network == Some(true) => Some("hostNetwork"),
            Some(SysctlNamespace::Ipc) if spec.host_ipc == Some(true) => Some("hostIPC"),
            _ => None,
        };
        if let Some(field) = shared {
            errs.push(FieldError::invalid(
                &at,
                s.name.as_str(),
                format!("may not be specified when '{field}' is true"),
            ));
        }
    }
    errs
}

const SECCOMP_PROFILE_TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];
const PROC_MOUNT_TYPES: &[&str] = &["Default", "Unmasked"];

/// A uid or gid: Kubernetes takes 0 to 2147483647.
fn validate_id(id: Option<i64>, path: &str) -> Vec<FieldError> {
    match id {
        Some(id) if !(0..=i64::from(i32::MAX)).contains(&id) => vec![FieldError::invalid(
            path,
            id,
            inclusive_range_error(0, i64::from(i32::MAX)),
        )],
        _ => Vec::new(),
    }
}

/// A seccompProfile as Kubernetes checks it: a known type, and a localhostProfile exactly when
/// the type is Localhost.
fn validate_seccomp_profile(
    profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>,
    at: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(profile) = profile else {
        return errs;
    };
    let path = format!("{at}.seccompProfile");
    if !SECCOMP_PROFILE_TYPES.contains(&profile.type_.as_str()) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            profile.type_.as_str(),
            SECCOMP_PROFILE_TYPES,
        ));
    }
    let local = profile.localhost_profile.as_deref();
    if profile.type_ == "Localhost" && local.is_none_or(str::is_empty) {
        errs.push(FieldError::required(
            format!("{path}.localhostProfile"),
            "must be set when seccomp type is Localhost",
        ));
    }
    if let Some(local) = local.filter(|_| profile.type_ != "Localhost") {
        errs.push(FieldError::invalid(
            format!("{path}.localhostProfile"),
            local,
            "can only be set when seccomp type is Localhost",
        ));
    }
    errs
}

/// A container's securityContext: its seccompProfile, procMount and ids, and no
/// allowPrivilegeEscalation=false beside privileged or CAP_SYS_ADMIN (Kubernetes' rule).
fn validate_container_security(c: &Container, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(sc) = &c.security_context else {
        return errs;
    };
    let at = format!("{at}.securityContext");
    errs.extend(validate_seccomp_profile(sc.seccomp_profile.as_ref(), &at));
    if let Some(mount) = sc.proc_mount.as_deref() {
        if !PROC_MOUNT_TYPES.contains(&mount) {
            errs.push(FieldError::not_supported(
                format!("{at}.procMount"),
                mount,
                PROC_MOUNT_TYPES,
            ));
        }
    }
    for (field, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        errs.extend(validate_id(id, &format!("{at}.{field}")));
    }
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            errs.push(FieldError::invalid(
                at.clone(),
                "",
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        let adds_sys_admin = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|add| add.iter().any(|a| a == "SYS_ADMIN" || a == "CAP_SYS_ADMIN"));
        if adds_sys_admin {
            errs.push(FieldError::invalid(
                at.clone(),
                "",
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    errs
}

fn validate_volumes(volumes: &[Volume], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let at = index_path(path, i);
        if v.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            errs.extend(invalid_each(
                &format!("{at}.name"),
                &v.name,
                is_dns1123_label(&v.name),
            ));
        }
        if !v.name.is_empty() && !names.insert(v.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{at}.name"), v.name.as_str()));
        }
        // The volume types are the set fields other than the name.
        let types: Vec<String> = match serde_json::to_value(v) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter(|(k, v)| k != "name" && !v.is_null())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        };
        match types.as_slice() {
            [] => errs.push(FieldError::required(&at, "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for t in rest {
                    errs.push(FieldError::forbidden(
                        format!("{at}.{t}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if let Some(hp) = &v.host_path {
            if hp.path.is_empty() {
                errs.push(FieldError::required(format!("{at}.hostPath.path"), ""));
            }
        }
        if let Some(s) = &v.secret {
            if s.secret_name.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("{at}.secret.secretName"), ""));
            }
        }
        if let Some(c) = &v.config_map {
            if c.name.is_empty() {
                errs.push(FieldError::required(format!("{at}.configMap.name"), ""));
            }
        }
        if let Some(p) = &v.persistent_volume_claim {
            if p.claim_name.is_empty() {
                errs.push(FieldError::required(
                    format!("{at}.persistentVolumeClaim.claimName"),
                    "",
                ));
            }
        }
    }
    errs
}

/// The checks every container gets, regular or init.
fn validate_container(
    c: &Container,
    volumes: &BTreeSet<&str>,
    host_network: bool,
    at: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(format!("{at}.name"), ""));
    } else {
        errs.extend(invalid_each(
            &format!("{at}.name"),
            &c.name,
            is_dns1123_label(&c.name),
        ));
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(
            format!("{at}.image"),
            "the container image to run, e.g. 'busybox:1.36'",
        ));
    }
    match c.termination_message_policy.as_deref().unwrap_or_default() {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            format!("{at}.terminationMessagePolicy"),
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        other => errs.push(FieldError::not_supported(
            format!("{at}.terminationMessagePolicy"),
            other,
            TERMINATION_MESSAGE_POLICIES,
        )),
    }
    errs.extend(validate_ports(c, host_network, &format!("{at}.ports")));
    errs.extend(validate_env(c, &format!("{at}.env")));
    errs.extend(validate_volume_mounts(
        c,
        volumes,
        &format!("{at}.volumeMounts"),
    ));
    match c.image_pull_policy.as_deref().unwrap_or_default() {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(format!("{at}.imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            format!("{at}.imagePullPolicy"),
            other,
            PULL_POLICIES,
        )),
    }
    if let Some(resources) = &c.resources {
        errs.extend(validate_resources(resources, &format!("{at}.resources")));
    }
    errs.extend(validate_container_security(c, at));
    errs
}

fn validate_ports(c: &Container, host_network: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let at = index_path(path, i);
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(invalid_each(&format!("{at}.name"), name, msgs));
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(format!("{at}.containerPort"), ""));
        } else {
            for m in is_valid_port_num(p.container_port) {
                errs.push(FieldError::invalid(
                    format!("{at}.containerPort"),
                    p.container_port,
                    m,
                ));
            }
        }
        if let Some(hp) = p.host_port.filter(|h| *h != 0) {
            for m in is_valid_port_num(hp) {
                errs.push(FieldError::invalid(format!("{at}.hostPort"), hp, m));
            }
            if host_network && hp != p.container_port {
                errs.push(FieldError::invalid(
                    format!("{at}.hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
        match p.protocol.as_deref().unwrap_or_default() {
            "TCP" | "UDP" | "SCTP" => {}
            "" => errs.push(FieldError::required(format!("{at}.protocol"), "")),
            other => errs.push(FieldError::not_supported(
                format!("{at}.protocol"),
                other,
                PROTOCOLS,
            )),
        }
    }
    errs
}

/// Two containers may not claim the same host port for the same protocol and address.
fn validate_host_port_conflicts(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    let lists = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (field, list) in lists {
        for (ci, c) in list.into_iter().flatten().enumerate() {
            for (pi, p) in c.ports.iter().flatten().enumerate() {
                let Some(hp) = p.host_port.filter(|h| *h != 0) else {
                    continue;
                };
                let key = format!(
                    "{}/{}/{hp}",
                    p.host_ip.as_deref().unwrap_or_default(),
                    p.protocol.as_deref().unwrap_or("TCP")
                );
                if !seen.insert(key.clone()) {
                    errs.push(FieldError::duplicate(
                        format!("{path}.{field}[{ci}].ports[{pi}].hostPort"),
                        key,
                    ));
                }
            }
        }
    }
    errs
}

fn validate_env(c: &Container, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in c.env.iter().flatten().enumerate() {
        let at = index_path(path, i);
        if e.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            errs.extend(invalid_each(
                &format!("{at}.name"),
                &e.name,
                is_env_var_name(&e.name),
            ));
        }
        if let Some(from) = &e.value_from {
            let sources = match serde_json::to_value(from) {
                Ok(Value::Object(map)) => map.values().filter(|v| !v.is_null()).count(),
                _ => 0,
            };
            if sources != 1 {
                errs.push(FieldError::invalid(
                    format!("{at}.valueFrom"),
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`",
                ));
            }
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::invalid(
                    format!("{at}.valueFrom"),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
        }
    }
    errs
}

fn validate_volume_mounts(c: &Container, volumes: &BTreeSet<&str>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let at = index_path(path, i);
        if m.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        }
        if !volumes.contains(m.name.as_str()) {
            let known = if volumes.is_empty() {
                "the pod has no volumes".to_string()
            } else {
                format!(
                    "volumes of this pod: {}",
                    volumes.iter().copied().collect::<Vec<_>>().join(", ")
                )
            };
            errs.push(
                FieldError::not_found(format!("{at}.name"), m.name.as_str())
                    .with_detail(format!("no volume of this name in spec.volumes ({known})")),
            );
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{at}.mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                format!("{at}.mountPath"),
                m.mount_path.as_str(),
                "must be unique",
            ));
        }
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') {
                errs.push(FieldError::invalid(
                    format!("{at}.subPath"),
                    sub,
                    "must be a relative path",
                ));
            }
            if sub.split('/').any(|part| part == "..") {
                errs.push(FieldError::invalid(
                    format!("{at}.subPath"),
                    sub,
                    "must not contain '..'",
                ));
            }
        }
    }
    errs
}

fn validate_probes(c: &Container, at: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            errs.extend(validate_probe(p, field, &format!("{at}.{field}")));
        }
    }
    errs
}

fn validate_probe(p: &Probe, field: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if handlers == 0 {
        errs.push(FieldError::required(
            path,
            "must specify a handler type (exec, httpGet, tcpSocket or grpc)",
        ));
    } else if handlers > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not specify more than 1 handler type",
        ));
    }
    for (name, value) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = value.filter(|v| *v < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.{name}"),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
    if field != "readinessProbe" {
        if let Some(v) = p.success_threshold.filter(|v| *v != 1) {
            errs.push(FieldError::invalid(
                format!("{path}.successThreshold"),
                v,
                "must be 1",
            ));
        }
    } else if p.termination_grace_period_seconds.is_some() {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            p.termination_grace_period_seconds.unwrap_or_default(),
            "must not be set for readinessProbes",
        ));
    }
    errs
}

/// Resource names a container may request without an extended-resource prefix.
fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

fn validate_resources(r: &ResourceRequirements, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let limits_path = format!("{path}.limits");
    let requests_path = format!("{path}.requests");
    let check = |map: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                 base: &str,
                 errs: &mut Vec<FieldError>| {
        let mut parsed = BTreeMap::new();
        for (name, q) in map.iter().flatten() {
            let at = key_path(base, name);
            if !is_standard_container_resource(name) && !name.contains('/') {
                errs.push(FieldError::invalid(
                    &at,
                    name.as_str(),
                    "must be a standard resource for containers (cpu, memory, ephemeral-storage, hugepages-<size>) or a fully qualified extended resource (example.com/device)",
                ));
            }
            match parse_quantity(&q.0) {
                None => errs.push(FieldError::invalid(
                    &at,
                    q.0.as_str(),
                    "quantities must be a number with an optional suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent e3), e.g. '500m', '128Mi', '1'",
                )),
                Some(v) if v < 0 => {
                    errs.push(FieldError::invalid(&at, q.0.as_str(), "must be greater than or equal to 0"))
                }
                Some(v) => {
                    parsed.insert(name.clone(), (v, q.0.clone()));
                }
            }
        }
        parsed
    };
    let limits = check(&r.limits, &limits_path, &mut errs);
    let requests = check(&r.requests, &requests_path, &mut errs);
    for (name, (req, req_text)) in &requests {
        if let Some((lim, lim_text)) = limits.get(name) {
            let overcommit = !name.starts_with("hugepages-")
                && (is_standard_container_resource(name) || !name.contains('/'));
            if !overcommit && req != lim {
                errs.push(FieldError::invalid(
                    &requests_path,
                    req_text.as_str(),
                    format!("must be equal to {name} limit of {lim_text}"),
                ));
            } else if req > lim {
                errs.push(FieldError::invalid(
                    &requests_path,
                    req_text.as_str(),
                    format!("must be less than or equal to {name} limit of {lim_text}"),
                ));
            }
        } else if name.starts_with("hugepages-")
            || (!is_standard_container_resource(name) && name.contains('/'))
        {
            errs.push(FieldError::required(
                &limits_path,
                format!("Limit must be set for non overcommitable resources ({name})"),
            ));
        }
    }
    errs
}

/// A Kubernetes quantity (`500m`, `128Mi`, `1e3`, `1.5G`) in billionths, rounded up as
/// Kubernetes rounds to its nano scale. None when the text is not a quantity or overflows.
pub fn parse_quantity(text: &str) -> Option<i128> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) && s.len() > 1 => {
            let e: i32 = s[1..].parse().ok()?;
            if !(-40..=40).contains(&e) {
                return None;
            }
            (e, 0)
        }
        _ => return None,
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let mut value = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    // value * 10^(9 + exp10 - frac digits) gives billionths.
    let scale = 9 + exp10 - frac_part.len() as i32;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale as u32)?)?;
    } else {
        let div = 10i128.checked_pow((-scale) as u32)?;
        value = (value + div - 1) / div;
    }
    Some(if negative { -value } else { value })
}

/// Tolerations at `path`: key syntax, operator and value, effect.
pub fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let at = index_path(path, i);
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        if !key.is_empty() {
            errs.extend(invalid_each(
                &format!("{at}.key"),
                key,
                is_qualified_name(key),
            ));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                format!("{at}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{at}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{at}.operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{at}.operator"),
                        serde_json::to_value(t).unwrap_or(Value::Null),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{at}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                format!("{at}.effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errs
}

/// Node taints at `path`: key required and qualified, value a label value, a known effect, and
/// each key and effect pair once.
pub fn validate_taints(
    taints: &[k8s_openapi::api::core::v1::Taint],
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let at = index_path(path, i);
        if t.key.is_empty() {
            errs.push(FieldError::required(format!("{at}.key"), ""));
        } else {
            errs.extend(invalid_each(
                &format!("{at}.key"),
                &t.key,
                is_qualified_name(&t.key),
            ));
        }
        let value = t.value.as_deref().unwrap_or_default();
        errs.extend(invalid_each(
            &format!("{at}.value"),
            value,
            is_valid_label_value(value),
        ));
        if t.effect.is_empty() {
            errs.push(FieldError::required(format!("{at}.effect"), ""));
        } else if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{at}.effect"),
                t.effect.as_str(),
                TAINT_EFFECTS,
            ));
        }
        if !seen.insert((t.key.as_str(), t.effect.as_str())) {
            errs.push(
                FieldError::duplicate(at, format!("{}:{}", t.key, t.effect))
                    .with_detail("taints must be unique by key and effect pair"),
            );
        }
    }
    errs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;
    use serde_json::json;

    /// The corrected seed descriptor, defaulted as the server does before validation.
    fn seed_pod() -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "kubia-manual",
                "namespace": "default",
                "labels": {"appName": "kubia-app", "version": "1.0.0"}
            },
            "spec": {"containers": [{
                "image": "luksa/kubia",
                "name": "kubia",
                "imagePullPolicy": "Never",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}]
            }]}
        }))
        .unwrap();
        crate::defaults::pod(&mut pod);
        pod
    }

    fn spec(pod: &mut Pod) -> &mut PodSpec {
        pod.spec.as_mut().unwrap()
    }

    #[test]
    fn corrected_seed_pod_is_valid() {
        assert_eq!(validate_pod(&seed_pod()), vec![]);
    }

    #[test]
    fn seed_label_value_is_one_invalid_error_at_the_key() {
        let mut pod = seed_pod();
        pod.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("version".into(), "1.0.0]".into());
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "metadata.labels.version");
        assert_eq!(errs[0].reason(), "FieldValueInvalid");
        let message = errs[0].message();
        assert!(
            message.starts_with(
                "Invalid value: \"1.0.0]\": a valid label must be an empty string or consist of \
                 alphanumeric characters, '-', '_' or '.', and must start and end with an \
                 alphanumeric character"
            ),
            "{message}"
        );
        assert!(
            message.contains("']' at position 6 is not allowed"),
            "{message}"
        );
    }

    #[test]
    fn label_keys_with_dots_use_brackets_and_bad_keys_are_explained() {
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "web".to_string()),
            ("-bad".to_string(), "".to_string()),
            ("a/b/c".to_string(), "x".to_string()),
        ]);
        let errs = validate_labels(&labels, "metadata.labels");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].path, "metadata.labels.-bad");
        assert!(
            errs[0].detail.contains("it starts with '-'"),
            "{}",
            errs[0].detail
        );
        assert_eq!(errs[1].path, "metadata.labels[a/b/c]");
    }

    #[test]
    fn long_label_value_is_reported() {
        let labels = BTreeMap::from([("k".to_string(), "a".repeat(64))]);
        let errs = validate_labels(&labels, "metadata.labels");
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .message()
            .ends_with("must be no more than 63 characters"));
    }

    #[test]
    fn duplicate_container_names_across_containers_and_init_containers() {
        let mut pod = seed_pod();
        let c = spec(&mut pod).containers[0].clone();
        spec(&mut pod).containers.push(c.clone());
        spec(&mut pod).init_containers = Some(vec![c]);
        let errs = validate_pod(&pod);
        let dups: Vec<&str> = errs
            .iter()
            .filter(|e| e.error_type == ErrorType::Duplicate)
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(
            dups,
            vec!["spec.containers[1].name", "spec.initContainers[0].name"]
        );
        assert!(errs
            .iter()
            .any(|e| e.message() == "Duplicate value: \"kubia\""));
    }

    #[test]
    fn security_context_fields_are_checked_as_kubernetes() {
        let mut pod = seed_pod();
        spec(&mut pod).security_context = Some(
            serde_json::from_value(json!({
                "seccompProfile": {"type": "Localhost"},
                "runAsUser": -1,
            }))
            .expect("pod security context"),
        );
        spec(&mut pod).containers[0].security_context = Some(
            serde_json::from_value(json!({
                "seccompProfile": {"type": "Strict", "localhostProfile": "x.json"},
                "procMount": "Raw",
                "privileged": true,
                "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NOT_A_CAP"]},
            }))
            .expect("container security context"),
        );
        let errs: Vec<String> = validate_pod(&pod)
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message()))
            .collect();
        for want in [
            "spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost",
            "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
            "spec.containers[0].securityContext.seccompProfile.type: Unsupported value: \"Strict\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\"",
            "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"x.json\": can only be set when seccomp type is Localhost",
            "spec.containers[0].securityContext.procMount: Unsupported value: \"Raw\": supported values: \"Default\", \"Unmasked\"",
        ] {
            assert!(errs.iter().any(|e| e == want), "{want} not in {errs:#?}");
        }
        assert!(errs.iter().any(|e| e
            .contains("cannot set `allowPrivilegeEscalation` to false and `privileged` to true")));
        // Kubernetes does not check capability names: the runtime refuses an unknown one.
        assert!(!errs.iter().any(|e| e.contains("NOT_A_CAP")), "{errs:#?}");
        assert_eq!(errs.len(), 6, "{errs:#?}");
    }

    #[test]
    fn sysctls_are_checked_as_kubernetes() {
        let mut pod = seed_pod();
        spec(&mut pod).host_network = Some(true);
        spec(&mut pod).security_context = Some(
            serde_json::from_value(json!({"sysctls": [
                {"name": "kernel.shm_rmid_forced", "value": "1"},
                {"name": "", "value": "1"},
                {"name": "Net.Bad", "value": "1"},
                {"name": "kernel.shm_rmid_forced", "value": "0"},
                {"name": "net/ipv4/tcp_syncookies", "value": "1"},
            ]}))
            .expect("pod security context"),
        );
        let errs: Vec<String> = validate_pod(&pod)
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message()))
            .collect();
        let at = "spec.securityContext.sysctls";
        for want in [
            format!("{at}[1].name: Required value"),
            format!("{at}[2].name: Invalid value: \"Net.Bad\": must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"),
            format!("{at}[3].name: Duplicate value: \"kernel.shm_rmid_forced\""),
            format!("{at}[4].name: Invalid value: \"net/ipv4/tcp_syncookies\": may not be specified when 'hostNetwork' is true"),
        ] {
            assert!(errs.contains(&want), "{want} not in {errs:#?}");
        }
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn host_pid_and_a_shared_process_namespace_exclude_each_other() {
        let mut pod = seed_pod();
        spec(&mut pod).host_pid = Some(true);
        assert!(validate_pod(&pod).is_empty());
        spec(&mut pod).share_process_namespace = Some(true);
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            format!("{}: {}", errs[0].path, errs[0].message()),
            "spec.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"
        );
    }

    #[test]
    fn missing_image_is_required() {
        let mut pod = seed_pod();
        spec(&mut pod).containers[0].image = None;
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.containers[0].image");
        assert_eq!(errs[0].reason(), "FieldValueRequired");
        assert!(errs[0].message().starts_with("Required value"));
    }

    #[test]
    fn no_containers_is_required() {
        let mut pod = seed_pod();
        spec(&mut pod).containers.clear();
        let errs = validate_pod(&pod);
        assert_eq!(errs[0].path, "spec.containers");
        assert_eq!(errs[0].error_type, ErrorType::Required);
    }

    #[test]
    fn bad_restart_policy_lists_supported_values() {
        let mut pod = seed_pod();
        spec(&mut pod).restart_policy = Some("Sometimes".into());
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "spec.restartPolicy");
        assert_eq!(errs[0].reason(), "FieldValueNotSupported");
        assert_eq!(
            errs[0].message(),
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\""
        );
    }

    #[test]
    fn too_long_name_is_invalid_as_kubernetes_reports_it() {
        let mut pod = seed_pod();
        pod.metadata.name = Some("a".repeat(254));
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "metadata.name");
        assert_eq!(errs[0].reason(), "FieldValueInvalid");
        assert!(errs[0]
            .message()
            .ends_with(": must be no more than 253 characters"));
    }

    #[test]
    fn uppercase_name_points_at_the_character() {
        let mut pod = seed_pod();
        pod.metadata.name = Some("Kubia".into());
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1);
        assert!(errs[0]
            .detail
            .contains("'K' at position 1 is not allowed (use lower case)"));
    }

    #[test]
    fn generate_name_may_end_with_a_dash() {
        let mut pod = seed_pod();
        pod.metadata.name = None;
        pod.metadata.generate_name = Some("kubia-".into());
        assert_eq!(validate_pod(&pod), vec![]);
        pod.metadata.generate_name = None;
        let errs = validate_pod(&pod);
        assert_eq!(
            errs[0].message(),
            "Required value: name or generateName is required"
        );
    }

    #[test]
    fn namespace_required_for_namespaced_and_forbidden_for_cluster_kinds() {
        let meta = ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            validate_object_meta(&meta, true, false)[0].path,
            "metadata.namespace"
        );
        let meta = ObjectMeta {
            namespace: Some("ns".into()),
            ..meta
        };
        let errs = validate_object_meta(&meta, false, true);
        assert_eq!(errs[0].error_type, ErrorType::Forbidden);
    }

    #[test]
    fn ports_protocols_and_port_names() {
        let mut pod = seed_pod();
        let ports = spec(&mut pod).containers[0].ports.as_mut().unwrap();
        ports[0].container_port = 70000;
        ports[0].protocol = Some("ICMP".into());
        ports[0].name = Some("http".into());
        ports.push(k8s_openapi::api::core::v1::ContainerPort {
            container_port: 80,
            name: Some("http".into()),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
        let errs = validate_pod(&pod);
        let messages: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
            ]
        );
    }

    #[test]
    fn volume_mounts_must_name_a_volume() {
        let mut pod = seed_pod();
        spec(&mut pod).containers[0].volume_mounts =
            Some(vec![k8s_openapi::api::core::v1::VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }]);
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason(), "FieldValueNotFound");
        assert!(errs[0].message().starts_with("Not found: \"data\""));
    }

    #[test]
    fn requests_above_limits_are_invalid() {
        let mut pod = seed_pod();
        let q = |s: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into());
        spec(&mut pod).containers[0].resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".to_string(), q("500m"))])),
            requests: Some(BTreeMap::from([("cpu".to_string(), q("1"))])),
            ..Default::default()
        });
        let errs = validate_pod(&pod);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "spec.containers[0].resources.requests");
        assert!(errs[0]
            .detail
            .contains("less than or equal to cpu limit of 500m"));
    }

    #[test]
    fn quantities_parse_to_billionths() {
        assert_eq!(parse_quantity("1"), Some(1_000_000_000));
        assert_eq!(parse_quantity("500m"), Some(500_000_000));
        assert_eq!(parse_quantity("1Ki"), Some(1024 * 1_000_000_000));
        assert_eq!(parse_quantity("1.5G"), Some(1_500_000_000 * 1_000_000_000));
        assert_eq!(parse_quantity("1e3"), Some(1000 * 1_000_000_000));
        assert_eq!(parse_quantity("0.1n"), Some(1));
        assert_eq!(parse_quantity("-2"), Some(-2_000_000_000));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Kb"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn tolerations_operator_and_effect() {
        let mut pod = seed_pod();
        spec(&mut pod).tolerations = Some(vec![Toleration {
            key: Some("k".into()),
            operator: Some("Maybe".into()),
            effect: Some("NoRun".into()),
            ..Default::default()
        }]);
        let errs = validate_pod(&pod);
        let reasons: Vec<(&str, &str)> =
            errs.iter().map(|e| (e.path.as_str(), e.reason())).collect();
        assert_eq!(
            reasons,
            vec![
                ("spec.tolerations[0].operator", "FieldValueNotSupported"),
                ("spec.tolerations[0].effect", "FieldValueNotSupported"),
            ]
        );
    }

    #[test]
    fn pod_level_values() {
        let mut pod = seed_pod();
        let s = spec(&mut pod);
        s.dns_policy = Some("Google".into());
        s.termination_grace_period_seconds = Some(-1);
        s.active_deadline_seconds = Some(0);
        s.containers[0].image_pull_policy = Some("Sometimes".into());
        s.containers[0].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "A=B".into(),
            ..Default::default()
        }]);
        let paths: Vec<String> = validate_pod(&pod).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "spec.containers[0].env[0].name",
                "spec.containers[0].imagePullPolicy",
                "spec.dnsPolicy",
                "spec.activeDeadlineSeconds",
                "spec.terminationGracePeriodSeconds",
            ]
        );
    }

    #[test]
    fn annotations_total_size_is_limited() {
        let big = BTreeMap::from([("a".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT))]);
        let errs = validate_annotations(&big, "metadata.annotations");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason(), "FieldValueTooLong");
        assert!(errs[0]
            .message()
            .starts_with("Too long: may not be more than 262144 bytes"));
    }

    #[test]
    fn owner_references_need_their_fields() {
        let meta = ObjectMeta {
            name: Some("x".into()),
            namespace: Some("default".into()),
            owner_references: Some(vec![Default::default()]),
            ..Default::default()
        };
        let paths: Vec<String> = validate_object_meta(&meta, true, false)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "metadata.ownerReferences[0].apiVersion",
                "metadata.ownerReferences[0].kind",
                "metadata.ownerReferences[0].name",
                "metadata.ownerReferences[0].uid",
            ]
        );
    }

    #[test]
    fn updating_the_command_is_forbidden_and_names_the_field() {
        let old = seed_pod();
        let mut new = old.clone();
        spec(&mut new).containers[0].command = Some(vec!["sh".into()]);
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec");
        assert_eq!(errs[0].reason(), "FieldValueForbidden");
        assert!(
            errs[0].detail.contains("`spec.containers[*].image`"),
            "{}",
            errs[0].detail
        );
        assert!(
            errs[0]
                .detail
                .contains("`spec.containers[0].command` (from unset to [\"sh\"])"),
            "{}",
            errs[0].detail
        );
    }

    #[test]
    fn updating_the_image_labels_and_tolerations_is_allowed() {
        let old = seed_pod();
        let mut new = old.clone();
        spec(&mut new).containers[0].image = Some("luksa/kubia:v2".into());
        spec(&mut new).active_deadline_seconds = Some(100);
        spec(&mut new)
            .tolerations
            .as_mut()
            .unwrap()
            .push(Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            });
        new.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "web".into());
        assert_eq!(validate_pod_update(&new, &old), vec![]);
    }

    #[test]
    fn removing_a_toleration_or_a_container_is_forbidden() {
        let old = seed_pod();
        let mut new = old.clone();
        spec(&mut new).tolerations.as_mut().unwrap().pop();
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.tolerations");

        let mut new = old.clone();
        let c = spec(&mut new).containers[0].clone();
        spec(&mut new).containers.push(Container {
            name: "second".into(),
            ..c
        });
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.containers");
    }

    #[test]
    fn metadata_identity_is_immutable() {
        let old = seed_pod();
        let mut new = old.clone();
        new.metadata.uid = Some("other".into());
        let errs = validate_pod_update(&new, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "metadata.uid");
        assert!(errs[0].detail.starts_with("field is immutable"));
    }

    #[test]
    fn values_render_as_kubernetes_does() {
        assert_eq!(
            FieldError::invalid("x", 5, "d").message(),
            "Invalid value: 5: d"
        );
        assert_eq!(
            FieldError::invalid("x", "a\"b", "d").message(),
            "Invalid value: \"a\\\"b\": d"
        );
        assert_eq!(
            FieldError::too_long("x", 63).message(),
            "Too long: may not be more than 63 bytes"
        );
        assert_eq!(FieldError::forbidden("x", "no").message(), "Forbidden: no");
        assert_eq!(
            FieldError::required("x", "").to_string(),
            "x: Required value"
        );
    }

    #[test]
    fn dns_subdomain_and_qualified_name_rules() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert!(!is_dns1123_subdomain("a..b").is_empty());
        assert!(!is_dns1123_subdomain("a.-b").is_empty());
        assert!(is_qualified_name("example.com/MyName").is_empty());
        assert_eq!(
            is_qualified_name("/x"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(!is_dns1123_label("my_name").is_empty());
        assert!(is_valid_port_name("http").is_empty());
        assert_eq!(is_valid_port_name("80").len(), 1);
    }
}
