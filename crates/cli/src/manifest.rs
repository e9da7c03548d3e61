//! Reading `-f` sources as kubectl reads them: files, directories (`-R` to descend), `-` for
//! stdin; multi-document YAML and JSON; `kind: List` expanded into its items.

use std::io::Read;
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
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if rest.is_empty() || rest.starts_with('#') {
                docs.push(String::new());
                continue;
            }
        }
        if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
        }
    }
    docs
}

fn parse_source(source: &str, text: &str, objects: &mut Vec<Object>) -> Result<()> {
    let trimmed = text.trim_start();
    let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![(text.to_owned(), Format::Json)]
    } else {
        documents(text)
            .into_iter()
            .map(|d| (d, Format::Yaml))
            .collect()
    };
    for (doc, format) in docs {
        let parsed = decode::parse(doc.as_bytes(), format).map_err(|err| {
            Error::Message(format!(
                "error parsing {source}: error converting YAML to JSON: {err}"
            ))
        })?;
        add_object(source, parsed.value, objects)?;
    }
    Ok(())
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
        assert_eq!(documents(text), ["a: 1\n", "b: 2\n", "\n", "c: ---x\n"]);
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
