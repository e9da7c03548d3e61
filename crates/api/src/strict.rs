//! Strict field validation: unknown and duplicate fields, reported with their full path, the
//! line they were written on and, for a misspelt name, the closest known field.

use serde_json::{Map, Value};

use crate::decode::{push_index, push_key, Document};
use crate::openapi::{schemas, REF_PREFIX};

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Reject the request (400 BadRequest) when any issue is found.
    #[default]
    Strict,
    /// Accept, and return each issue as a `Warning` header.
    Warn,
    /// Accept silently; unknown fields are dropped.
    Ignore,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// A field the schema does not have; `suggestion` is the closest known name at that level.
    Unknown { suggestion: Option<String> },
    /// A key given twice in one object.
    Duplicate,
}

/// One unknown or duplicate field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldIssue {
    /// Full path, e.g. `metadata.label`.
    pub path: String,
    pub kind: IssueKind,
    /// 1-based line in the submitted YAML.
    pub line: Option<u32>,
}

impl std::fmt::Display for FieldIssue {
    /// `unknown field "metadata.label" (line 12): did you mean "labels"?`
    /// `duplicate field "spec.containers[0].name"`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            IssueKind::Unknown { .. } => "unknown",
            IssueKind::Duplicate => "duplicate",
        };
        write!(f, "{what} field \"{}\"", self.path)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if let IssueKind::Unknown {
            suggestion: Some(suggestion),
        } = &self.kind
        {
            write!(f, ": did you mean \"{suggestion}\"?")?;
        }
        Ok(())
    }
}

/// Finds the unknown and duplicate fields of a document of the given kind (`Pod`, `Namespace`,
/// `Node`, `Event` of core/v1, `Lease` of coordination.k8s.io/v1, plus the list/option kinds the
/// server decodes: `DeleteOptions`). Unknown fields inside an unknown field are not reported again.
pub fn field_issues(doc: &Document, kind: &str) -> Vec<FieldIssue> {
    let mut issues: Vec<FieldIssue> = doc
        .duplicates
        .iter()
        .map(|path| FieldIssue {
            path: path.clone(),
            kind: IssueKind::Duplicate,
            line: doc.line_of(path),
        })
        .collect();
    if let Some(schema) = schema_name(kind).and_then(|name| schemas().get(name)) {
        let mut walk = Walk {
            doc,
            issues: &mut issues,
        };
        walk.object_root(&doc.value, schema);
    }
    // Report in the order the fields were written when lines are known, by path otherwise.
    issues.sort_by(|a, b| {
        (a.line.unwrap_or(u32::MAX), &a.path).cmp(&(b.line.unwrap_or(u32::MAX), &b.path))
    });
    issues.dedup();
    issues
}

/// The schema name of a kind strict validation knows.
fn schema_name(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "io.k8s.api.core.v1.Pod",
        "Namespace" => "io.k8s.api.core.v1.Namespace",
        "Node" => "io.k8s.api.core.v1.Node",
        "Event" => "io.k8s.api.core.v1.Event",
        "Secret" => "io.k8s.api.core.v1.Secret",
        "Lease" => "io.k8s.api.coordination.v1.Lease",
        "DeleteOptions" => "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        _ => return None,
    })
}

/// Follows `$ref` and the `allOf: [{$ref}]` wrapper that carries a field's own description.
fn resolve(schema: &Value) -> &Value {
    let mut current = schema;
    // Bounded: the schemas hold no reference cycles that resolve to themselves, but a bad one
    // must not hang a request.
    for _ in 0..16 {
        if let Some(name) = current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
        {
            match schemas().get(name) {
                Some(target) => current = target,
                None => return current,
            }
        } else if let Some([only]) = current
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            current = only;
        } else {
            return current;
        }
    }
    current
}

struct Walk<'a> {
    doc: &'a Document,
    issues: &'a mut Vec<FieldIssue>,
}

impl Walk<'_> {
    fn object_root(&mut self, value: &Value, schema: &Value) {
        let Value::Object(map) = value else {
            return;
        };
        let schema = resolve(schema);
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (key, child) in map {
            let path = push_key("", key);
            match properties.get(key) {
                Some(field) => self.value(child, field, &path),
                // Every object has these at the top, even kinds whose schema leaves one out.
                None if matches!(key.as_str(), "apiVersion" | "kind") => {}
                None if key == "metadata" => {
                    if let Some(meta) =
                        schemas().get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
                    {
                        self.value(child, meta, &path);
                    }
                }
                None => self.unknown(path, key, properties),
            }
        }
    }

    fn value(&mut self, value: &Value, schema: &Value, path: &str) {
        let schema = resolve(schema);
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return;
        }
        match value {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                if properties.is_none() && additional.is_none() {
                    // A free-form object (RawExtension, FieldsV1, an empty schema): anything goes.
                    return;
                }
                let empty = Map::new();
                for (key, child) in map {
                    let child_path = push_key(path, key);
                    match (properties.and_then(|p| p.get(key)), additional) {
                        (Some(field), _) | (None, Some(field)) => {
                            self.value(child, field, &child_path)
                        }
                        (None, None) => self.unknown(child_path, key, properties.unwrap_or(&empty)),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.value(item, item_schema, &push_index(path, index));
                    }
                }
            }
            // Wrong scalar types are for typed decoding to report.
            _ => {}
        }
    }

    fn unknown(&mut self, path: String, key: &str, known: &Map<String, Value>) {
        let line = self.doc.line_of(&path);
        self.issues.push(FieldIssue {
            path,
            kind: IssueKind::Unknown {
                suggestion: closest(key, known.keys().map(String::as_str)),
            },
            line,
        });
    }
}

/// The known name a misspelt `name` most likely meant, if any is close enough.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str> + Clone) -> Option<String> {
    let lower = name.to_lowercase();
    let singular_or_plural = |candidate: &str| {
        let c = candidate.to_lowercase();
        [(&lower, &c), (&c, &lower)].iter().any(|(short, long)| {
            long.strip_prefix(short.as_str())
                .is_some_and(|rest| rest == "s" || rest == "es")
                || (short.ends_with('y')
                    && long.strip_suffix("ies") == Some(&short[..short.len() - 1]))
        })
    };
    // Same name in another case, then singular/plural, then the nearest spelling.
    if let Some(found) = known.clone().find(|c| c.to_lowercase() == lower) {
        return Some(found.to_owned());
    }
    if let Some(found) = known.clone().find(|c| singular_or_plural(c)) {
        return Some(found.to_owned());
    }
    let allowed = match name.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    let nearest = known
        .clone()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= allowed)
        .min();
    if let Some((_, c)) = nearest {
        return Some(c.to_owned());
    }
    // A shortened or lengthened name (`propagation` for `propagationPolicy`): Jaro-Winkler
    // rewards the long common prefix that edit distance ignores. Short names match too easily.
    if name.chars().count() < 5 {
        return None;
    }
    known
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .filter(|(similarity, _)| *similarity >= 0.9)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c.to_owned())
}

/// Splits a path into its parent and its last segment: `spec.containers[0]` gives
/// (`spec.containers`, `0`), `metadata.labels[a.b/c]` gives (`metadata.labels`, `a.b/c`).
fn split_last(path: &str) -> (&str, &str) {
    if let Some(inner) = path.strip_suffix(']') {
        // The bracket that opens the last segment; keys inside may hold dots but not `[`.
        if let Some(open) = inner.rfind('[') {
            return (&path[..open], &inner[open + 1..]);
        }
    }
    match path.rfind(['.', ']']) {
        Some(at) if path.as_bytes()[at] == b'.' => (&path[..at], &path[at + 1..]),
        Some(at) => (&path[..=at], &path[at + 1..]),
        None => ("", path),
    }
}

/// Splits a path into its segments (see `split_last`).
fn segments(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let (parent, last) = split_last(rest);
        out.push(last);
        rest = parent;
    }
    out.reverse();
    out
}

/// Removes the fields reported as unknown from the value (used for Warn and Ignore, and before
/// typed decoding).
pub fn drop_unknown(value: &mut serde_json::Value, issues: &[FieldIssue]) {
    for issue in issues {
        if !matches!(issue.kind, IssueKind::Unknown { .. }) {
            continue;
        }
        remove_at(value, &segments(&issue.path));
    }
}

fn remove_at(value: &mut Value, segments: &[&str]) {
    match (segments, value) {
        ([last], Value::Object(map)) => {
            map.remove(*last);
        }
        ([first, rest @ ..], Value::Object(map)) => {
            if let Some(child) = map.get_mut(*first) {
                remove_at(child, rest);
            }
        }
        ([first, rest @ ..], Value::Array(items)) => {
            if let Some(child) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                remove_at(child, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{parse, Format};

    const BAD_POD_YAML: &str = "apiVersion: v1
kind: Pod
metadata:
  # name of the pod
  name: kubia-manual
  # key-value pair for organization
  # otherwise your cluster will look like a mess
  label:
    appName: kubia-app
    version: 1.0.0]
spec:
  containers:
    - image: luksa/kubia
      name: kubia
      imagePullPolicy: Never
      ports:
        - containerPort: 8080
          protocol: TCP
";

    fn issues(body: &str, format: Format, kind: &str) -> Vec<FieldIssue> {
        let doc = parse(body.as_bytes(), format).expect("well-formed body");
        field_issues(&doc, kind)
    }

    fn unknown(path: &str, suggestion: Option<&str>, line: Option<u32>) -> FieldIssue {
        FieldIssue {
            path: path.into(),
            kind: IssueKind::Unknown {
                suggestion: suggestion.map(Into::into),
            },
            line,
        }
    }

    #[test]
    fn seed_descriptor_in_yaml_reports_label_on_its_line() {
        let found = issues(BAD_POD_YAML, Format::Yaml, "Pod");
        assert_eq!(
            found,
            vec![unknown("metadata.label", Some("labels"), Some(8))]
        );
        assert_eq!(
            found[0].to_string(),
            "unknown field \"metadata.label\" (line 8): did you mean \"labels\"?"
        );
    }

    #[test]
    fn seed_descriptor_in_json_reports_label_without_line() {
        let doc = parse(BAD_POD_YAML.as_bytes(), Format::Yaml).expect("valid YAML");
        let json = doc.value.to_string();
        let found = issues(&json, Format::Json, "Pod");
        assert_eq!(found, vec![unknown("metadata.label", Some("labels"), None)]);
        assert_eq!(
            found[0].to_string(),
            "unknown field \"metadata.label\": did you mean \"labels\"?"
        );
    }

    #[test]
    fn nested_unknown_fields_get_suggestions() {
        let body = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    imagePullPolice: Always\n    ports:\n    - ContainerPort: 80\n      hostPot: 1\n      zzzzzz: 2\n";
        let found = issues(body, Format::Yaml, "Pod");
        assert_eq!(
            found,
            vec![
                unknown(
                    "spec.containers[0].imagePullPolice",
                    Some("imagePullPolicy"),
                    Some(8)
                ),
                unknown(
                    "spec.containers[0].ports[0].ContainerPort",
                    Some("containerPort"),
                    Some(10)
                ),
                unknown(
                    "spec.containers[0].ports[0].hostPot",
                    Some("hostPort"),
                    Some(11)
                ),
                unknown("spec.containers[0].ports[0].zzzzzz", None, Some(12)),
            ]
        );
        assert_eq!(
            found[3].to_string(),
            "unknown field \"spec.containers[0].ports[0].zzzzzz\" (line 12)"
        );
    }

    #[test]
    fn maps_and_free_form_fields_accept_any_key() {
        let body = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a",
            "labels":{"anything":"x","example.com/y":"z"},"annotations":{"whatever":"1"},
            "managedFields":[{"manager":"m","fieldsV1":{"f:metadata":{"f:labels":{}}}}]},
            "spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"1","example.com/gpu":"2"}}}],
            "nodeSelector":{"disk":"ssd"}}}"#;
        assert_eq!(issues(body, Format::Json, "Pod"), vec![]);
    }

    #[test]
    fn duplicates_are_reported_with_unknowns() {
        let body = "kind: Namespace\nmetadata:\n  name: a\n  name: b\nspec:\n  finalizer: []\n";
        let found = issues(body, Format::Yaml, "Namespace");
        assert_eq!(
            found,
            vec![
                FieldIssue {
                    path: "metadata.name".into(),
                    kind: IssueKind::Duplicate,
                    line: Some(4)
                },
                unknown("spec.finalizer", Some("finalizers"), Some(6)),
            ]
        );
        assert_eq!(
            found[0].to_string(),
            "duplicate field \"metadata.name\" (line 4)"
        );
        let json = r#"{"kind":"Node","spec":{"unschedulable":true,"unschedulable":false}}"#;
        assert_eq!(
            issues(json, Format::Json, "Node"),
            vec![FieldIssue {
                path: "spec.unschedulable".into(),
                kind: IssueKind::Duplicate,
                line: None
            }]
        );
    }

    #[test]
    fn other_kinds_are_checked_against_their_schema() {
        let lease = r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"n"},"spec":{"holderIdentity":"n","renewTim":"x"}}"#;
        assert_eq!(
            issues(lease, Format::Json, "Lease"),
            vec![unknown("spec.renewTim", Some("renewTime"), None)]
        );
        let event =
            r#"{"involvedObject":{"kind":"Pod","nam":"x"},"reason":"R","metadata":{"name":"e"}}"#;
        assert_eq!(
            issues(event, Format::Json, "Event"),
            vec![unknown("involvedObject.nam", Some("name"), None)]
        );
        let options = r#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":0,"propagation":"x"}"#;
        assert_eq!(
            issues(options, Format::Json, "DeleteOptions"),
            vec![unknown("propagation", Some("propagationPolicy"), None)]
        );
    }

    #[test]
    fn unknown_fields_inside_unknown_fields_are_not_reported_again() {
        let body = r#"{"metadata":{"name":"a"},"spek":{"containerz":[{"x":1}]}}"#;
        assert_eq!(
            issues(body, Format::Json, "Pod"),
            vec![unknown("spek", Some("spec"), None)]
        );
    }

    #[test]
    fn drop_unknown_removes_exactly_the_reported_fields() {
        let body = r#"{"metadata":{"name":"a","label":{"x":"y"},"labels":{"example.com/k":"v"}},
            "spec":{"containers":[{"name":"c"},{"name":"d","imagePullPolice":"Always"}]}}"#;
        let mut doc = parse(body.as_bytes(), Format::Json).expect("valid JSON");
        let found = field_issues(&doc, "Pod");
        assert_eq!(found.len(), 2);
        drop_unknown(&mut doc.value, &found);
        assert_eq!(
            doc.value,
            serde_json::json!({"metadata":{"name":"a","labels":{"example.com/k":"v"}},
                "spec":{"containers":[{"name":"c"},{"name":"d"}]}})
        );
        // A bracketed key is removed too.
        let mut value = serde_json::json!({"a": {"b.c/d": 1, "e": 2}});
        drop_unknown(&mut value, &[unknown("a[b.c/d]", None, None)]);
        assert_eq!(value, serde_json::json!({"a": {"e": 2}}));
    }

    #[test]
    fn suggestions_cover_case_plural_and_spelling() {
        let known = ["labels", "annotations", "containerPort", "policies", "name"];
        let pick = |name: &str| closest(name, known.iter().copied());
        assert_eq!(pick("label").as_deref(), Some("labels"));
        assert_eq!(pick("Annotation").as_deref(), Some("annotations"));
        assert_eq!(pick("ContainerPort").as_deref(), Some("containerPort"));
        assert_eq!(pick("policy").as_deref(), Some("policies"));
        assert_eq!(pick("nmae").as_deref(), Some("name"));
        assert_eq!(pick("completelyDifferent"), None);
    }

    #[test]
    fn paths_split_into_segments() {
        assert_eq!(
            segments("spec.containers[0].name"),
            vec!["spec", "containers", "0", "name"]
        );
        assert_eq!(
            segments("metadata.labels[a.b/c]"),
            vec!["metadata", "labels", "a.b/c"]
        );
        assert_eq!(segments("[odd key].x"), vec!["odd key", "x"]);
    }
}
