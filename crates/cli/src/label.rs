//! `kubectl label` and `kubectl annotate`: `key=value` and `key-` changes on named objects,
//! `TYPE/NAME`, `-l` or `--all`, refused over an existing value without `--overwrite`, sent as
//! a JSON merge patch; kubectl's `labeled` / `unlabeled` / `not labeled` / `annotated` lines.

use http::Method;
use serde_json::{json, Map, Value};

use crate::apply::{finish_aggregate, DryRun};
use crate::client::{self, ApiClient};
use crate::get::{encode, fetch_named_or_listed, parse_targets};
use crate::kinds::Resource;
use crate::{printer, Error, Flags, Result};

/// Which map of `metadata` the verb edits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotate",
        }
    }
}

/// The changes of the command line: values to set and keys to remove, in order.
#[derive(Debug, Default, PartialEq)]
struct Changes {
    set: Vec<(String, String)>,
    remove: Vec<String>,
}

const LABEL_VALUE_HELP: &str = "a valid label must be an empty string or consist of alphanumeric \
characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
'MyValue',  or 'my_value',  or '12345', regex used for validation is \
'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn valid_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    value.is_empty()
        || (value.len() <= 63
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes
                .iter()
                .all(|b| alnum(b) || matches!(b, b'-' | b'_' | b'.')))
}

/// Splits the arguments into objects and changes, as kubectl does: a change has `=` or ends
/// in `-`, and every object comes first.
fn split_args(args: &[String], field: Field) -> Result<(Vec<String>, Changes)> {
    let mut objects = Vec::new();
    let mut specs = Vec::new();
    for arg in args {
        if arg.contains('=') || arg.ends_with('-') {
            specs.push(arg.clone());
        } else if specs.is_empty() {
            objects.push(arg.clone());
        } else {
            let what = match field {
                Field::Labels => "label",
                Field::Annotations => "annotation",
            };
            return Err(Error::Message(format!(
                "all resources must be specified before {what} changes: {arg}"
            )));
        }
    }
    let mut changes = Changes::default();
    for spec in specs {
        if let Some((key, value)) = spec.split_once('=') {
            if field == Field::Labels {
                if value.contains('=') {
                    return Err(Error::Message(format!("invalid label spec: {spec}")));
                }
                if !valid_label_value(value) {
                    return Err(Error::Message(format!(
                        "invalid label value: \"{spec}\": {LABEL_VALUE_HELP}"
                    )));
                }
            }
            if key.is_empty() {
                continue;
            }
            changes.set.push((key.to_owned(), value.to_owned()));
        } else if let Some(key) = spec.strip_suffix('-') {
            changes.remove.push(key.to_owned());
        }
    }
    if changes.set.is_empty() && changes.remove.is_empty() {
        let what = match field {
            Field::Labels => "label",
            Field::Annotations => "annotation",
        };
        return Err(Error::Message(format!(
            "at least one {what} update is required"
        )));
    }
    Ok((objects, changes))
}

pub async fn run(flags: &Flags, field: Field) -> Result<()> {
    let dry_run = DryRun::parse(flags)?;
    let (objects, changes) = split_args(&flags.args, field)?;
    let request = parse_targets(&objects)?;
    if request.targets.is_empty() {
        return Err(Error::Message(
            "one or more resources must be specified as <resource> <name> or <resource>/<name>"
                .to_owned(),
        ));
    }
    let by_selector = flags.all || flags.selector.is_some();
    if !by_selector && request.targets.iter().any(|(_, names)| names.is_empty()) {
        return Err(Error::Message(
            "resource(s) were provided, but no name was specified".to_owned(),
        ));
    }
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let mut errors = Vec::new();
    for (resource, names) in &request.targets {
        let found = fetch_named_or_listed(
            &api,
            flags,
            resource,
            names,
            &namespace,
            Some(&namespace),
            true,
            &mut errors,
        )
        .await;
        for object in found {
            match update(
                &api, flags, field, &changes, resource, &namespace, object, dry_run,
            )
            .await
            {
                Ok(text) => print!("{text}"),
                Err(err) => errors.push(err),
            }
        }
    }
    finish_aggregate(errors)
}

/// Applies the changes to one object; returns what kubectl prints for it.
#[allow(clippy::too_many_arguments)]
async fn update(
    api: &ApiClient,
    flags: &Flags,
    field: Field,
    changes: &Changes,
    resource: &Resource,
    namespace: &str,
    object: Value,
    dry_run: DryRun,
) -> Result<String> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let old: Map<String, Value> = object["metadata"][field.key()]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut conflicts = Vec::new();
    for (key, value) in &changes.set {
        if let Some(existing) = old.get(key).and_then(Value::as_str) {
            if existing != value && !flags.overwrite {
                conflicts.push(match field {
                    Field::Labels => format!(
                        "'{key}' already has a value ({existing}), and --overwrite is false"
                    ),
                    Field::Annotations => format!("'{key}' already has a value ({existing})"),
                });
            }
        }
    }
    if let Some(first) = conflicts.first() {
        return Err(Error::Message(match field {
            Field::Labels => first.clone(),
            Field::Annotations => format!(
                "--overwrite is false but found the following declared annotation(s): {}",
                conflicts.join("; ")
            ),
        }));
    }
    let mut text = String::new();
    let mut new = old.clone();
    for key in &changes.remove {
        if new.remove(key).is_none() && field == Field::Labels {
            text.push_str(&format!("label \"{key}\" not found.\n"));
        }
    }
    for (key, value) in &changes.set {
        new.insert(key.clone(), Value::String(value.clone()));
    }
    // kubectl compares the object's JSON before and after: shorter without --overwrite is
    // `unlabeled`.
    let mut after = object.clone();
    after["metadata"][field.key()] = Value::Object(new.clone());
    if new.is_empty() {
        if let Some(metadata) = after["metadata"].as_object_mut() {
            metadata.remove(field.key());
        }
    }
    let (before_len, after_len) = (object.to_string().len(), after.to_string().len());
    let message = match field {
        Field::Annotations => "annotated",
        Field::Labels if old == new => "not labeled",
        Field::Labels if !flags.overwrite && after_len < before_len => "unlabeled",
        Field::Labels => "labeled",
    };
    let mut result = after;
    if dry_run != DryRun::Client {
        let mut patch = Map::new();
        for key in old.keys() {
            if !new.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
        for (key, value) in &new {
            if old.get(key) != Some(value) {
                patch.insert(key.clone(), value.clone());
            }
        }
        let body = json!({"metadata": {field.key(): patch}});
        let mut query = vec![(
            "fieldManager".to_owned(),
            format!("kubectl-{}", field.verb()),
        )];
        if dry_run == DryRun::Server {
            query.insert(0, ("dryRun".to_owned(), "All".to_owned()));
        }
        let uri = format!(
            "{}{}",
            resource.object_path(namespace, &name),
            encode(&query)
        );
        let bytes = api
            .send_typed(
                Method::PATCH,
                &uri,
                "application/merge-patch+json",
                body.to_string().into_bytes(),
                ("patch", resource.plural),
            )
            .await?;
        result = client::parse(&bytes, &uri)?;
    }
    match flags.output.as_deref() {
        Some("name") => text.push_str(&format!("{}/{name}\n", resource.singular)),
        Some("json" | "yaml") => {
            if let Some(map) = result.as_object_mut() {
                map.insert("apiVersion".to_owned(), json!("v1"));
                map.insert("kind".to_owned(), json!(resource.kind));
            }
            text.push_str(&if flags.output.as_deref() == Some("json") {
                printer::json(&result)
            } else {
                printer::yaml(&result)
            });
        }
        _ => text.push_str(&format!(
            "{}/{name} {message}{}\n",
            resource.singular,
            dry_run.suffix()
        )),
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn changes_follow_the_objects() {
        let (objects, changes) =
            split_args(&args(&["po", "a", "k=v", "gone-"]), Field::Labels).expect("valid");
        assert_eq!(objects, ["po", "a"]);
        assert_eq!(changes.set, [("k".to_owned(), "v".to_owned())]);
        assert_eq!(changes.remove, ["gone"]);
        let err = split_args(&args(&["po", "k=v", "b"]), Field::Labels).expect_err("late object");
        assert_eq!(
            err.render(),
            "error: all resources must be specified before label changes: b"
        );
        assert!(split_args(&args(&["po", "a", "k=v,q=1"]), Field::Labels).is_err());
        assert!(split_args(&args(&["po", "a", "k=_x"]), Field::Labels).is_err());
        assert!(split_args(&args(&["po", "a", "k=a=b"]), Field::Annotations).is_ok());
        assert!(split_args(&args(&["po", "a"]), Field::Annotations).is_err());
    }
}
