//! Reading `-f` sources as kubectl reads them: files, directories (`-R` to descend), `-` for
//! stdin; multi-document YAML and JSON; `kind: List` expanded into its items.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::Value;
use skiff_api::decode::{self, Format};

use crate::kinds::{self, Resource};
use crate::{Error, Result};

/// One object of a manifest, with the source kubectl names in its messages.
pub struct Object {
    /// The file as the user named it (`pod.yaml`, `dir/pod.yaml`), or `STDIN`.
    pub source: String,
    pub value: Value,
    pub resource: &'static Resource,
    /// The line of the source each field path was written on (YAML; empty for JSON and for
    /// the items of a List).
    pub lines: BTreeMap<String, u32>,
}

impl Object {
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value["metadata"]["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty())
    }
}

/// Every object of every `-f` source, in order.
pub fn read(filenames: &[String], recursive: bool) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for filename in filenames {
        if filename == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|err| Error::Message(format!("cannot read stdin: {err}")))?;
            parse_source("STDIN", &text, &mut objects)?;
            continue;
        }
        let path = Path::new(filename);
        if !path.exists() {
            return Err(Error::Message(format!(
                "the path \"{filename}\" does not exist"
            )));
        }
        if path.is_dir() {
            visit_dir(path, recursive, &mut objects)?;
        } else {
            read_file(path, &mut objects)?;
        }
    }
    Ok(objects)
}

fn visit_dir(dir: &Path, recursive: bool, objects: &mut Vec<Object>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|err| Error::Message(format!("cannot read {}: {err}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                visit_dir(&path, recursive, objects)?;
            }
            continue;
        }
        let manifest = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml")
        );
        if manifest {
            read_file(&path, objects)?;
        }
    }
    Ok(())
}

fn read_file(path: &Path, objects: &mut Vec<Object>) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Error::Message(format!("error reading {}: {err}", path.display())))?;
    parse_source(&path.display().to_string(), &text, objects)
}

/// The documents of a YAML stream: split at lines that start with `---` (followed by nothing
/// but blanks or a comment), as kubectl's YAML reader splits them.
/// Each with the number of lines of the source before it.
fn documents(text: &str) -> Vec<(u32, String)> {
    let mut docs = vec![(0, String::new())];
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if rest.is_empty() || rest.starts_with('#') {
                docs.push((u32::try_from(index + 1).unwrap_or(u32::MAX), String::new()));
                continue;
            }
        }
        if let Some((_, doc)) = docs.last_mut() {
            doc.push_str(line);
        }
    }
    docs
}

fn parse_source(source: &str, text: &str, objects: &mut Vec<Object>) -> Result<()> {
    let trimmed = text.trim_start();
    let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![(0, text.to_owned(), Format::Json)]
    } else {
        documents(text)
            .into_iter()
            .map(|(before, d)| (before, d, Format::Yaml))
            .collect()
    };
    for (before, doc, format) in docs {
        let parsed = decode::parse(doc.as_bytes(), format).map_err(|err| {
            Error::Message(format!(
                "error parsing {source}: error converting YAML to JSON: {err}"
            ))
        })?;
        let count = objects.len();
        add_object(source, parsed.value, objects)?;
        // One object from this document (not a List's items): its fields' lines.
        if objects.len() == count + 1 {
            if let Some(object) = objects.last_mut() {
                object.lines = parsed
                    .lines
                    .into_iter()
                    .map(|(path, line)| (path, line + before))
                    .collect();
            }
        }
    }
    Ok(())
}

/// On a terminal, a field error from the server about `object` gets a line pointing at where
/// the field is written (`  --> pod.yaml:12 (spec.containers[0].image)`): the longest field
/// path of the object that the error names. Scripts (stderr not a terminal) see kubectl's
/// output unchanged.
pub fn point_at_field(err: Error, object: &Object) -> Error {
    if !std::io::stderr().is_terminal() {
        return err;
    }
    with_field_line(err, object)
}

fn with_field_line(err: Error, object: &Object) -> Error {
    let Error::Api(mut api) = err else {
        return err;
    };
    let named = |path: &str| {
        api.causes.iter().any(|(field, _)| field == path)
            || api.message.match_indices(path).any(|(at, _)| {
                // The whole path, not the start of a longer one.
                !api.message[at + path.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[' || c == '.')
            })
    };
    let found = object
        .lines
        .iter()
        .filter(|(path, _)| named(path))
        .max_by_key(|(path, _)| path.len());
    if let Some((path, line)) = found {
        api.hint = Some(format!("  --> {}:{line} ({path})", object.source));
    }
    Error::Api(api)
}

fn add_object(source: &str, value: Value, objects: &mut Vec<Object>) -> Result<()> {
    if value.is_null() || value.as_object().is_some_and(|m| m.is_empty()) {
        return Ok(());
    }
    let kind = value["kind"].as_str().unwrap_or_default().to_owned();
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
    if kind.is_empty() {
        return Err(Error::Message(format!(
            "error validating \"{source}\": error validating data: kind not set; if you choose \
             to ignore these errors, turn validation off with --validate=false"
        )));
    }
    if kind == "List" || kind.ends_with("List") && value["items"].is_array() {
        for item in value["items"].as_array().cloned().unwrap_or_default() {
            add_object(source, item, objects)?;
        }
        return Ok(());
    }
    let Some(resource) = kinds::by_kind(&api_version, &kind) else {
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = value["metadata"]["namespace"].as_str().unwrap_or_default();
        let version = api_version.rsplit('/').next().unwrap_or_default();
        return Err(Error::Message(format!(
            "resource mapping not found for name: \"{name}\" namespace: \"{namespace}\" from \
             \"{source}\": no matches for kind \"{kind}\" in version \"{version}\"\nensure CRDs \
             are installed first"
        )));
    };
    objects.push(Object {
        source: source.to_owned(),
        lines: BTreeMap::new(),
        value,
        resource,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_streams_split_at_document_markers() {
        let text = "a: 1\n--- # two\nb: 2\n---\n\n---\nc: ---x\n";
        assert_eq!(
            documents(text),
            [
                (0, "a: 1\n".to_owned()),
                (2, "b: 2\n".to_owned()),
                (4, "\n".to_owned()),
                (6, "c: ---x\n".to_owned())
            ]
        );
    }

    #[test]
    fn a_field_error_points_at_the_line_of_the_longest_field_it_names() {
        let mut objects = Vec::new();
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\n\
                    kind: Pod\nmetadata:\n  name: b\nspec:\n  containers:\n  - name: c\n    \
                    image: x\n    ports:\n    - containerPort: 99999\n";
        parse_source("two.yaml", text, &mut objects).expect("the stream parses");
        let error = |message: &str, cause: bool| {
            Error::Api(Box::new(crate::client::ApiError {
                code: 422,
                reason: "Invalid".to_owned(),
                message: message.to_owned(),
                kind: "Pod".to_owned(),
                name: "b".to_owned(),
                causes: if cause {
                    vec![(
                        "spec.containers[0].ports[0].containerPort".to_owned(),
                        "Invalid value: 99999".to_owned(),
                    )]
                } else {
                    Vec::new()
                },
                hint: None,
            }))
        };
        let pointed = with_field_line(error("The Pod \"b\" is invalid", true), &objects[1]);
        assert!(
            pointed
                .render()
                .ends_with("\n  --> two.yaml:14 (spec.containers[0].ports[0].containerPort)"),
            "{}",
            pointed.render()
        );
        // A path that is only the start of a longer word is not named.
        let other = with_field_line(error("spec.containersX: nope", false), &objects[1]);
        assert!(!other.render().contains("-->"), "{}", other.render());
    }

    #[test]
    fn lists_are_expanded_and_empty_documents_skipped() {
        let mut objects = Vec::new();
        let text = "---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  \
                    metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n---\n";
        parse_source("f.yaml", text, &mut objects).expect("the stream parses");
        let names: Vec<_> = objects
            .iter()
            .map(|o| (o.resource.kind, o.name()))
            .collect();
        assert_eq!(names, [("Pod", "a"), ("Namespace", "b")]);
    }

    #[test]
    fn unknown_kinds_get_kubectls_message() {
        let mut objects = Vec::new();
        let err = parse_source(
            "f.yaml",
            "apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n",
            &mut objects,
        )
        .expect_err("Foo is not served");
        assert!(err.render().starts_with(
            "error: resource mapping not found for name: \"x\" namespace: \"\" from \"f.yaml\": no matches for kind \"Foo\" in version \"v1\""
        ));
    }
}
