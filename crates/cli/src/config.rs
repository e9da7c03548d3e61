//! `kubectl config view|get-contexts|current-context|use-context|set-context`: the kubeconfig
//! files read as documents (every field kept), merged as kubectl merges them, and edits written
//! back to the file that holds the stanza, in kubectl's layout (sorted keys, no empty
//! preferences).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use skiff_api::decode::{self, Format};

use crate::jsonpath::Template;
use crate::{kubeconfig, printer, Error, Flags, Result};

/// One kubeconfig file as a JSON document.
struct File {
    path: PathBuf,
    doc: Value,
}

fn read(path: &Path) -> Result<File> {
    let text = std::fs::read(path).map_err(|err| {
        Error::Message(format!(
            "error loading config file \"{}\": {err}",
            path.display()
        ))
    })?;
    let doc = if text.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode::parse(&text, Format::Yaml)
            .map_err(|err| {
                Error::Message(format!(
                    "error loading config file \"{}\": {err}",
                    path.display()
                ))
            })?
            .value
    };
    Ok(File {
        path: path.to_owned(),
        doc,
    })
}

fn load(flags: &Flags) -> Result<Vec<File>> {
    kubeconfig::files(flags)
        .iter()
        .filter(|p| p.exists() || flags.kubeconfig.is_some())
        .map(|p| read(p))
        .collect()
}

fn entries<'a>(doc: &'a Value, list: &str) -> impl Iterator<Item = &'a Value> {
    doc[list].as_array().into_iter().flatten()
}

fn name_of(entry: &Value) -> &str {
    entry["name"].as_str().unwrap_or_default()
}

/// The merged view: the first file to name a cluster, context or user wins, and the first
/// non-empty current-context.
fn merged(files: &[File]) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".to_owned(), json!("v1"));
    out.insert("kind".to_owned(), json!("Config"));
    for list in ["clusters", "contexts", "users"] {
        let mut seen: Vec<Value> = Vec::new();
        for file in files {
            for entry in entries(&file.doc, list) {
                if !seen.iter().any(|e| name_of(e) == name_of(entry)) {
                    seen.push(entry.clone());
                }
            }
        }
        seen.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        out.insert(
            list.to_owned(),
            if seen.is_empty() {
                Value::Null
            } else {
                Value::Array(seen)
            },
        );
    }
    let current = files
        .iter()
        .filter_map(|f| f.doc["current-context"].as_str())
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    out.insert("current-context".to_owned(), json!(current));
    if let Some(preferences) = files
        .iter()
        .filter_map(|f| f.doc["preferences"].as_object())
        .find(|p| !p.is_empty())
    {
        out.insert("preferences".to_owned(), Value::Object(preferences.clone()));
    }
    Value::Object(out)
}

/// What kubectl writes and prints: empty maps (`preferences: {}`) and empty strings dropped
/// where the Go types omit them.
fn tidy(doc: &mut Value) {
    if let Some(map) = doc.as_object_mut() {
        if map
            .get("preferences")
            .is_some_and(|p| p.as_object().is_some_and(|m| m.is_empty()))
        {
            map.remove("preferences");
        }
        for list in ["clusters", "contexts", "users"] {
            if let Some(items) = map.get_mut(list).and_then(Value::as_array_mut) {
                items.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            }
            for entry in map
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                // A context's cluster and user are always written (not omitempty in Go).
                if let Some(fields) = entry.get_mut("context").and_then(Value::as_object_mut) {
                    for key in ["cluster", "user"] {
                        fields.entry(key).or_insert_with(|| json!(""));
                    }
                }
            }
        }
    }
}

/// `config view` without `--raw`: secrets and certificate data hidden as kubectl hides them.
fn redact(doc: &mut Value) {
    for (list, inner) in [("clusters", "cluster"), ("users", "user")] {
        for entry in doc[list].as_array_mut().into_iter().flatten() {
            if let Some(fields) = entry[inner].as_object_mut() {
                for (key, value) in fields.iter_mut() {
                    if key.ends_with("-data") {
                        *value = json!("DATA+OMITTED");
                    } else if key == "token" || key == "password" {
                        *value = json!("REDACTED");
                    }
                }
            }
        }
    }
}

fn write(file: &File) -> Result<()> {
    let mut doc = file.doc.clone();
    tidy(&mut doc);
    // kubectl writes every list (null when empty) and the current context.
    if let Some(map) = doc.as_object_mut() {
        for list in ["clusters", "contexts", "users"] {
            map.entry(list).or_insert(Value::Null);
        }
        map.entry("current-context").or_insert_with(|| json!(""));
    }
    std::fs::write(&file.path, printer::yaml(&doc)).map_err(|err| {
        Error::Message(format!(
            "error writing the kubeconfig {}: {err}",
            file.path.display()
        ))
    })
}

/// The field order of clientcmd's v1 types, which `config view -o json` follows.
fn field_order(path: &str) -> &'static [&'static str] {
    match path {
        "" => &[
            "kind",
            "apiVersion",
            "preferences",
            "clusters",
            "users",
            "contexts",
            "current-context",
            "extensions",
        ],
        "clusters" | "users" | "contexts" => &["name", "cluster", "user", "context"],
        "clusters.cluster" => &[
            "server",
            "tls-server-name",
            "insecure-skip-tls-verify",
            "certificate-authority",
            "certificate-authority-data",
            "proxy-url",
            "disable-compression",
            "extensions",
        ],
        "users.user" => &[
            "client-certificate",
            "client-certificate-data",
            "client-key",
            "client-key-data",
            "token",
            "tokenFile",
            "as",
            "as-uid",
            "as-groups",
            "as-user-extra",
            "username",
            "password",
            "auth-provider",
            "exec",
            "extensions",
        ],
        "contexts.context" => &["cluster", "user", "namespace", "extensions"],
        _ => &[],
    }
}

/// Go's json.MarshalIndent (4 spaces) with keys in the Go struct's order (others after,
/// sorted), as kubectl prints the config.
fn go_ordered_json(value: &Value, path: &str, depth: usize) -> String {
    let pad = "    ".repeat(depth + 1);
    let close = "    ".repeat(depth);
    match value {
        Value::Object(map) if !map.is_empty() => {
            let order = field_order(path);
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    order.iter().position(|o| o == k).unwrap_or(order.len()),
                    k.to_string(),
                )
            });
            let entries: Vec<String> = keys
                .into_iter()
                .map(|key| {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    format!(
                        "{pad}{}: {}",
                        printer::json(&Value::String(key.clone())).trim_end(),
                        go_ordered_json(&map[key], &child, depth + 1)
                    )
                })
                .collect();
            format!("{{\n{}\n{close}}}", entries.join(",\n"))
        }
        Value::Array(items) if !items.is_empty() => {
            let entries: Vec<String> = items
                .iter()
                .map(|item| format!("{pad}{}", go_ordered_json(item, path, depth + 1)))
                .collect();
            format!("[\n{}\n{close}]", entries.join(",\n"))
        }
        other => printer::json(other).trim_end().to_owned(),
    }
}

pub async fn run(flags: &Flags) -> Result<()> {
    let Some((sub, rest)) = flags.args.split_first() else {
        return Err(Error::Message(
            "a config subcommand is needed: view, get-contexts, current-context, use-context \
             or set-context"
                .to_owned(),
        ));
    };
    match sub.as_str() {
        "view" => view(flags),
        "current-context" => {
            let files = load(flags)?;
            let current = merged(&files)["current-context"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if current.is_empty() {
                return Err(Error::Message("current-context is not set".to_owned()));
            }
            println!("{current}");
            Ok(())
        }
        "get-contexts" => get_contexts(flags, rest),
        "use-context" => use_context(flags, rest),
        "set-context" => set_context(flags, rest),
        other => Err(Error::Message(format!(
            "unknown command \"{other}\" for \"kubectl config\" (this Skiff CLI knows: view, \
             get-contexts, current-context, use-context, set-context)"
        ))),
    }
}

fn view(flags: &Flags) -> Result<()> {
    let files = load(flags)?;
    let mut doc = merged(&files);
    if flags.minify {
        let current = doc["current-context"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if current.is_empty() {
            return Err(Error::Message(
                "current-context must exist in order to minify".to_owned(),
            ));
        }
        let context = entries(&doc, "contexts")
            .find(|c| name_of(c) == current)
            .cloned()
            .ok_or_else(|| Error::Message(format!("cannot locate context {current}")))?;
        let cluster = context["context"]["cluster"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let user = context["context"]["user"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for (list, keep) in [
            ("contexts", current.as_str()),
            ("clusters", &cluster),
            ("users", &user),
        ] {
            let kept: Vec<Value> = entries(&doc, list)
                .filter(|e| name_of(e) == keep)
                .cloned()
                .collect();
            doc[list] = Value::Array(kept);
        }
    }
    if !flags.raw {
        redact(&mut doc);
    }
    tidy(&mut doc);
    let text = match flags.output.as_deref() {
        None | Some("") | Some("yaml") => printer::yaml(&doc),
        Some("json") => format!("{}\n", go_ordered_json(&doc, "", 0)),
        Some(other) if other.starts_with("jsonpath=") => {
            Template::parse(&other["jsonpath=".len()..])?.render(&doc)?
        }
        Some(other) => {
            return Err(Error::Message(format!(
                "unable to match a printer suitable for the output format \"{other}\", allowed \
                 formats are: json,jsonpath,yaml"
            )))
        }
    };
    print!("{text}");
    Ok(())
}

fn get_contexts(flags: &Flags, names: &[String]) -> Result<()> {
    let files = load(flags)?;
    let doc = merged(&files);
    let current = doc["current-context"].as_str().unwrap_or_default();
    let contexts: Vec<&Value> = entries(&doc, "contexts").collect();
    let mut chosen = Vec::new();
    let mut missing = None;
    for name in names {
        match contexts.iter().find(|c| name_of(c) == name) {
            Some(context) => chosen.push(*context),
            None => {
                missing = Some(name);
                break;
            }
        }
    }
    if names.is_empty() {
        chosen = contexts;
    }
    if flags.output.as_deref() == Some("name") {
        for context in chosen {
            println!("{}", name_of(context));
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    if !flags.no_headers {
        rows.push(
            ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
                .map(str::to_owned)
                .to_vec(),
        );
    }
    for context in chosen {
        let field = |key: &str| {
            context["context"][key]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let name = name_of(context);
        rows.push(vec![
            if name == current { "*" } else { "" }.to_owned(),
            name.to_owned(),
            field("cluster"),
            field("user"),
            field("namespace"),
        ]);
    }
    print!("{}", printer::table(&rows));
    // kubectl prints the table (its header at least) before the error.
    match missing {
        Some(name) => Err(Error::Message(format!("context {name} not found"))),
        None => Ok(()),
    }
}

/// The file to edit: the one that defines the named entry of `list`, else the first one.
fn holder<'a>(files: &'a mut [File], list: &str, name: &str) -> Option<&'a mut File> {
    let index = files
        .iter()
        .position(|f| entries(&f.doc, list).any(|e| name_of(e) == name))
        .unwrap_or(0);
    files.get_mut(index)
}

fn use_context(flags: &Flags, names: &[String]) -> Result<()> {
    let [name] = names else {
        return Err(Error::Message(format!(
            "Unexpected args: {names:?}\nSee 'kubectl config use-context -h' for help and examples"
        )));
    };
    let mut files = load(flags)?;
    if !entries(&merged(&files), "contexts").any(|c| name_of(c) == name) {
        return Err(Error::Message(format!(
            "no context exists with the name: \"{name}\""
        )));
    }
    let index = files
        .iter()
        .position(|f| {
            f.doc["current-context"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .unwrap_or(0);
    let file = files
        .get_mut(index)
        .ok_or_else(|| Error::Message("no kubeconfig file to write".to_owned()))?;
    file.doc["current-context"] = json!(name);
    write(file)?;
    println!("Switched to context \"{name}\".");
    Ok(())
}

fn set_context(flags: &Flags, names: &[String]) -> Result<()> {
    let mut files = load(flags)?;
    let name = match (names, flags.current) {
        ([], true) => {
            let current = merged(&files)["current-context"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if current.is_empty() {
                return Err(Error::Message("no current context is set".to_owned()));
            }
            current
        }
        ([name], false) => name.clone(),
        ([_], true) => {
            return Err(Error::Message(
                "you cannot specify both a context name and --current".to_owned(),
            ))
        }
        _ => {
            return Err(Error::Message(
                "you must specify a non-empty context name or --current".to_owned(),
            ))
        }
    };
    let file = holder(&mut files, "contexts", &name)
        .ok_or_else(|| Error::Message("no kubeconfig file to write".to_owned()))?;
    if !file.doc.is_object() {
        file.doc = json!({});
    }
    if !file.doc["contexts"].is_array() {
        file.doc["contexts"] = json!([]);
    }
    let contexts = file.doc["contexts"]
        .as_array_mut()
        .ok_or_else(|| Error::Message("the kubeconfig's contexts are not a list".to_owned()))?;
    let existed = contexts.iter().any(|c| name_of(c) == name);
    if !existed {
        contexts.push(json!({"name": name, "context": {}}));
    }
    if let Some(context) = contexts.iter_mut().find(|c| name_of(c) == name) {
        if !context["context"].is_object() {
            context["context"] = json!({});
        }
        for (key, value) in [
            ("namespace", &flags.namespace),
            ("cluster", &flags.cluster),
            ("user", &flags.user),
        ] {
            if let Some(value) = value {
                context["context"][key] = json!(value);
            }
        }
    }
    if file.doc.get("apiVersion").is_none() {
        file.doc["apiVersion"] = json!("v1");
        file.doc["kind"] = json!("Config");
    }
    write(file)?;
    println!(
        "Context \"{name}\" {}.",
        if existed { "modified" } else { "created" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_merge_and_hide_secrets() {
        let first = File {
            path: PathBuf::from("a"),
            doc: json!({"clusters": [{"name": "c", "cluster": {"server": "https://a",
                "certificate-authority-data": "QQ=="}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "secret"}}],
                "current-context": "x", "preferences": {}}),
        };
        let second = File {
            path: PathBuf::from("b"),
            doc: json!({"contexts": [{"name": "x", "context": {"cluster": "other"}},
                                     {"name": "a", "context": {"cluster": "c"}}],
                        "current-context": "a"}),
        };
        let mut doc = merged(&[first, second]);
        redact(&mut doc);
        tidy(&mut doc);
        assert_eq!(
            printer::yaml(&doc),
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: DATA+OMITTED\n    \
             server: https://a\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: \"\"\n  name: a\n\
             - context:\n    cluster: c\n    user: u\n  name: x\ncurrent-context: x\nkind: Config\n\
             users:\n- name: u\n  user:\n    token: REDACTED\n"
        );
    }
}
