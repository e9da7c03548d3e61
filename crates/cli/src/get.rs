//! `kubectl get`: the server's Table printed as kubectl prints it (columns, `-o wide`, `-A`,
//! `--show-labels`, `--no-headers`), and `-o name|json|yaml` from plain lists.

use std::io::Write;

use serde_json::{json, Value};

use crate::client::{ApiClient, ACCEPT_JSON, ACCEPT_TABLE};
use crate::jsonpath::{self, Template};
use crate::kinds::{self, Resource};
use crate::{printer, report, Error, Flags, Result};

/// What the user asked for: kinds, each with the names of its objects (none: all of them).
pub(crate) struct Request {
    pub targets: Vec<(&'static Resource, Vec<String>)>,
}

#[derive(Clone, PartialEq)]
enum Output {
    Table { wide: bool },
    Name,
    Json,
    Yaml,
    JsonPath(Template),
    CustomColumns(Vec<(String, Template)>),
}

impl Output {
    fn parse(output: Option<&str>) -> Result<Output> {
        Ok(match output {
            None | Some("") => Output::Table { wide: false },
            Some("wide") => Output::Table { wide: true },
            Some("name") => Output::Name,
            Some("json") => Output::Json,
            Some("yaml") => Output::Yaml,
            Some("jsonpath" | "jsonpath-as-json") => {
                return Err(Error::Message(
                    "template format specified but no template given".to_owned(),
                ))
            }
            Some(other) if other.starts_with("jsonpath=") => {
                Output::JsonPath(Template::parse(&other["jsonpath=".len()..])?)
            }
            Some("custom-columns") => {
                return Err(Error::Message(
                    "custom-columns format specified but no custom columns given".to_owned(),
                ))
            }
            Some(other) if other.starts_with("custom-columns=") => {
                Output::CustomColumns(custom_columns(&other["custom-columns=".len()..])?)
            }
            Some(other) => {
                return Err(Error::Message(format!(
                    "unable to match a printer suitable for the output format \"{other}\", \
                     allowed formats are: custom-columns,custom-columns-file,go-template,\
                     go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,kyaml,name,\
                     template,templatefile,wide,yaml"
                )))
            }
        })
    }

    /// Whether the printer reads whole objects (a List), not the server's Table.
    fn reads_objects(&self) -> bool {
        !matches!(self, Output::Table { .. })
    }
}

/// `NAME:.path,NAME2:.path2`.
fn custom_columns(spec: &str) -> Result<Vec<(String, Template)>> {
    let mut columns = Vec::new();
    for part in spec.split(',') {
        let Some((header, path)) = part.split_once(':') else {
            return Err(Error::Message(format!(
                "unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
            )));
        };
        columns.push((header.to_owned(), Template::parse_relaxed(path)?));
    }
    Ok(columns)
}

/// The rows of `-o custom-columns` for `objects`.
fn render_custom_columns(
    columns: &[(String, Template)],
    objects: &[Value],
    no_headers: bool,
) -> String {
    let mut rows = Vec::new();
    if !no_headers {
        rows.push(columns.iter().map(|(h, _)| h.clone()).collect());
    }
    for object in objects {
        rows.push(
            columns
                .iter()
                .map(|(_, template)| {
                    let values = template.values(object);
                    if values.is_empty() {
                        "<none>".to_owned()
                    } else {
                        values
                            .iter()
                            .map(jsonpath::go_value)
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                })
                .collect(),
        );
    }
    printer::table(&rows)
}

/// Sorts objects by a relaxed JSONPath as `--sort-by` does (numbers by value, strings in
/// byte order (kubectl's `pod-10` before `pod-2`), objects without the field first). None when no object has the field.
pub(crate) fn sort_objects<T: Clone>(
    items: &mut [T],
    template: &Template,
    object: impl Fn(&T) -> &Value,
) -> bool {
    let keys: Vec<Option<Value>> = items
        .iter()
        .map(|item| template.values(object(item)).into_iter().next())
        .collect();
    if !items.is_empty() && keys.iter().all(Option::is_none) {
        return false;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| compare_keys(keys[a].as_ref(), keys[b].as_ref()));
    let sorted: Vec<T> = order.iter().map(|&i| items[i].clone()).collect();
    items.clone_from_slice(&sorted);
    true
}

fn compare_keys(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x), Some(y)) => jsonpath::result_text(x).cmp(&jsonpath::result_text(y)),
    }
}

/// What `-o json|yaml|jsonpath=` print: the one object named alone as it is, else a List.
fn as_printed(mut objects: Vec<Value>, single_item: bool) -> Value {
    if single_item && objects.len() == 1 {
        objects.pop().unwrap_or(Value::Null)
    } else {
        json!({"apiVersion": "v1", "items": objects, "kind": "List",
               "metadata": {"resourceVersion": ""}})
    }
}

/// kubectl's message for a kind the server does not serve, with the closest known name when
/// the word looks like a typo of one (kubectl gives no hint).
pub(crate) fn unknown_kind(name: &str) -> Error {
    let mut message = format!("the server doesn't have a resource type \"{name}\"");
    if let Some(close) = kinds::closest(name) {
        message.push_str(&format!("; did you mean \"{close}\"?"));
    }
    Error::Message(message)
}

fn separate_type_error() -> Error {
    Error::Message(
        "there is no need to specify a resource type as a separate argument when passing \
         arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of \
         'kubectl get resource resource/<resource_name>'"
            .to_owned(),
    )
}

/// Splits `get`'s and `delete`'s arguments as kubectl does: `KIND[,KIND] [NAME...]` or
/// `KIND/NAME...`.
pub(crate) fn parse_targets(args: &[String]) -> Result<Request> {
    let Some(first) = args.first() else {
        return Ok(Request {
            targets: Vec::new(),
        });
    };
    if first.contains('/') {
        let mut targets: Vec<(&'static Resource, Vec<String>)> = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                return Err(separate_type_error());
            };
            let resource = kinds::by_name(kind).ok_or_else(|| unknown_kind(kind))?;
            match targets.iter_mut().find(|(r, _)| *r == resource) {
                Some((_, names)) => names.push(name.to_owned()),
                None => targets.push((resource, vec![name.to_owned()])),
            }
        }
        return Ok(Request { targets });
    }
    let names: Vec<String> = args[1..].to_vec();
    if names.iter().any(|n| n.contains('/')) {
        return Err(separate_type_error());
    }
    let mut targets = Vec::new();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let resource = kinds::by_name(kind).ok_or_else(|| unknown_kind(kind))?;
        if !targets
            .iter()
            .any(|(r, _): &(&Resource, Vec<String>)| *r == resource)
        {
            targets.push((resource, names.clone()));
        }
    }
    Ok(Request { targets })
}

/// `parse_targets` for the verbs that act on named objects one at a time (`edit`, `patch`):
/// each (kind, name) in the order given; naming none is a usage error saying `usage`.
pub(crate) fn parse_named_objects(
    args: &[String],
    usage: &str,
) -> Result<Vec<(&'static Resource, String)>> {
    let request = parse_targets(args)?;
    let objects: Vec<(&'static Resource, String)> = request
        .targets
        .iter()
        .flat_map(|(resource, names)| names.iter().map(move |n| (*resource, n.clone())))
        .collect();
    if objects.is_empty() {
        return Err(Error::Usage(usage.to_owned()));
    }
    Ok(objects)
}

/// The objects `names` of `resource` in `namespace`, or, with no names, those the flags'
/// selectors list in `list_namespace` (None: every namespace); each failure is added to
/// `errors` and the others still fetched.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch_named_or_listed(
    api: &ApiClient,
    flags: &Flags,
    resource: &Resource,
    names: &[String],
    namespace: &str,
    list_namespace: Option<&str>,
    page_limit: bool,
    errors: &mut Vec<Error>,
) -> Vec<Value> {
    let mut objects = Vec::new();
    if names.is_empty() {
        let uri = format!(
            "{}{}",
            resource.collection_path(list_namespace),
            list_query(flags, page_limit)
        );
        match api.get_json(&uri, ACCEPT_JSON).await {
            Ok(list) => objects.extend(list["items"].as_array().cloned().unwrap_or_default()),
            Err(err) => errors.push(err),
        }
        return objects;
    }
    for name in names {
        let uri = resource.object_path(namespace, name);
        match api
            .get_resource_json(&uri, ACCEPT_JSON, resource.plural)
            .await
        {
            Ok(object) => objects.push(object),
            Err(err) => errors.push(err),
        }
    }
    objects
}

/// The query string of a list: selectors and kubectl's page size.
pub(crate) fn list_query(flags: &Flags, limit: bool) -> String {
    let mut query = form_query(flags);
    if limit {
        query.push(("limit".to_owned(), "500".to_owned()));
    }
    encode(&query)
}

fn form_query(flags: &Flags) -> Vec<(String, String)> {
    let mut query = Vec::new();
    if let Some(selector) = &flags.selector {
        query.push(("labelSelector".to_owned(), selector.clone()));
    }
    if let Some(selector) = &flags.field_selector {
        query.push(("fieldSelector".to_owned(), selector.clone()));
    }
    query
}

pub(crate) fn encode(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect();
    format!("?{}", encoded.join("&"))
}

fn escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

pub async fn run(flags: &Flags) -> Result<()> {
    if flags.watch {
        return crate::watch::run(flags).await;
    }
    let output = Output::parse(flags.output.as_deref())?;
    let sort_by = flags
        .sort_by
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(Template::parse_relaxed)
        .transpose()?;
    let request = parse_targets(&flags.args)?;
    if request.targets.is_empty() {
        return Err(Error::Message(
            "Required resource not specified.\nUse \"kubectl explain <resource>\" for a detailed \
             description of that resource (e.g. kubectl explain pods).\nSee 'kubectl get -h' for \
             help and examples"
                .to_owned(),
        ));
    }
    let api = ApiClient::connect(flags).await?;
    let all_namespaces = flags.all_namespaces;
    let namespace = api.namespace().to_owned();
    let accept = if output.reads_objects() {
        ACCEPT_JSON
    } else {
        ACCEPT_TABLE
    };
    let mut errors = Vec::new();
    let mut stdout = String::new();
    let mut objects: Vec<Value> = Vec::new();
    let mut printed_any = false;
    let several_kinds = request.targets.len() > 1;
    // kubectl prints a single object (not a List) for `-o json|yaml` when one name was asked.
    let single_item = request.targets.len() == 1 && request.targets[0].1.len() == 1;
    for (resource, names) in &request.targets {
        let ns = if all_namespaces {
            None
        } else {
            Some(namespace.as_str())
        };
        let mut answers: Vec<Value> = Vec::new();
        if names.is_empty() {
            let mut uri = format!(
                "{}{}",
                resource.collection_path(ns),
                list_query(flags, true)
            );
            if sort_by.is_some() && !output.reads_objects() {
                // Rows sort by their objects: kubectl asks for them whole.
                let sep = if uri.contains('?') { '&' } else { '?' };
                uri.push_str(&format!("{sep}includeObject=Object"));
            }
            let mut uri_page = uri.clone();
            loop {
                let value = match api
                    .get_resource_json(&uri_page, accept, resource.plural)
                    .await
                {
                    Ok(value) => value,
                    Err(err) => {
                        errors.push(err);
                        break;
                    }
                };
                let next = value["metadata"]["continue"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned);
                answers.push(value);
                match next {
                    Some(token) => {
                        let sep = if uri.contains('?') { '&' } else { '?' };
                        uri_page = format!("{uri}{sep}continue={}", escape(&token));
                    }
                    None => break,
                }
            }
        } else {
            for name in names {
                let uri = resource.object_path(&namespace, name);
                match api.get_resource_json(&uri, accept, resource.plural).await {
                    Ok(value) => answers.push(value),
                    Err(err) => errors.push(err),
                }
            }
        }
        match output {
            Output::Table { wide } => {
                if let Some(sort_by) = &sort_by {
                    if !sort_table_rows(&mut answers, sort_by) {
                        continue;
                    }
                }
                let table = TableOptions {
                    wide,
                    all_namespaces,
                    label_columns: flags.label_columns.clone(),
                    show_labels: flags.show_labels,
                    no_headers: flags.no_headers,
                    kind_prefix: several_kinds.then_some(resource.singular),
                };
                if let Some(text) = render_tables(&answers, &table) {
                    if printed_any {
                        stdout.push('\n');
                    }
                    stdout.push_str(&text);
                    printed_any = true;
                }
            }
            _ => {
                for answer in answers {
                    let items = match answer["items"].as_array() {
                        Some(items) => items.clone(),
                        None if answer.get("metadata").is_some() => vec![answer],
                        None => Vec::new(),
                    };
                    for mut item in items {
                        if let Some(object) = item.as_object_mut() {
                            object.insert("apiVersion".to_owned(), json!("v1"));
                            object.insert("kind".to_owned(), json!(resource.kind));
                        }
                        objects.push(item);
                    }
                }
            }
        }
    }
    if let Some(sort_by) = &sort_by {
        if output.reads_objects() && !sort_objects(&mut objects, sort_by, |o| o) {
            return Err(Error::Message(format!(
                "couldn't find any field with path \"{}\" in the list of objects",
                sort_by.source()
            )));
        }
    }
    match &output {
        Output::Name => {
            for object in &objects {
                let kind = object["kind"].as_str().unwrap_or_default();
                let singular = kinds::by_kind("v1", kind).map_or(kind, |r| r.singular);
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                stdout.push_str(&format!("{singular}/{name}\n"));
                printed_any = true;
            }
        }
        Output::CustomColumns(columns) if !objects.is_empty() => {
            stdout = render_custom_columns(columns, &objects, flags.no_headers);
            printed_any = true;
        }
        Output::JsonPath(template)
            if !(objects.is_empty() && !errors.is_empty() && single_item) =>
        {
            let value = as_printed(objects, single_item);
            stdout = template.render(&value)?;
            printed_any = true;
        }
        Output::Json | Output::Yaml
            if !(objects.is_empty() && !errors.is_empty() && single_item) =>
        {
            let value = as_printed(objects, single_item);
            stdout = if output == Output::Json {
                printer::json(&value)
            } else {
                printer::yaml(&value)
            };
            printed_any = true;
        }
        _ => {}
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(stdout.as_bytes());
        let _ = out.flush();
    }
    if !printed_any && errors.is_empty() {
        let namespaced = request.targets.iter().any(|(r, _)| r.namespaced);
        if namespaced && !all_namespaces {
            report(&format!("No resources found in {namespace} namespace."));
        } else {
            report("No resources found");
        }
    }
    finish(errors)
}

/// Prints every error but the last, and returns the last (kubectl's aggregate prints them all).
pub(crate) fn finish(mut errors: Vec<Error>) -> Result<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    for err in errors {
        report(&err.render());
    }
    Err(last)
}

/// `--sort-by` on Tables: the rows of all pages, sorted by their objects. False when no
/// object has the field (kubectl then prints no rows).
fn sort_table_rows(tables: &mut [Value], sort_by: &Template) -> bool {
    let mut rows: Vec<Value> = Vec::new();
    for table in tables.iter_mut() {
        if let Some(Value::Array(page)) = table.get_mut("rows").map(Value::take) {
            rows.extend(page);
        }
    }
    if !sort_objects(&mut rows, sort_by, |row| &row["object"]) {
        return false;
    }
    if let Some(first) = tables.first_mut() {
        first["rows"] = Value::Array(rows);
    }
    for table in tables.iter_mut().skip(1) {
        table["rows"] = json!([]);
    }
    true
}

pub(crate) struct TableOptions {
    pub wide: bool,
    pub all_namespaces: bool,
    /// `-L`: one column per label key, after the server's columns.
    pub label_columns: Vec<String>,
    pub show_labels: bool,
    pub no_headers: bool,
    /// `pod` when several kinds are printed: names come out as `pod/x`.
    pub kind_prefix: Option<&'static str>,
}

/// One aligned table from the Tables the server sent (one per page or per name); None when
/// they have no rows.
fn render_tables(tables: &[Value], options: &TableOptions) -> Option<String> {
    let columns = tables.first()?["columnDefinitions"].as_array()?.clone();
    let (rows, any) = table_rows(&columns, tables, options);
    any.then(|| printer::table(&rows))
}

/// The header (unless `--no-headers`) and the rows of `tables`, with the columns `columns`
/// defines; and whether there was any row.
pub(crate) fn table_rows(
    columns: &[Value],
    tables: &[Value],
    options: &TableOptions,
) -> (Vec<Vec<String>>, bool) {
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| options.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !options.no_headers {
        let mut header = Vec::new();
        if options.all_namespaces {
            header.push("NAMESPACE".to_owned());
        }
        for &i in &shown {
            header.push(
                columns[i]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_uppercase(),
            );
        }
        for key in &options.label_columns {
            header.push(label_header(key));
        }
        if options.show_labels {
            header.push("LABELS".to_owned());
        }
        rows.push(header);
    }
    let mut any = false;
    for table in tables {
        for row in table["rows"].as_array().into_iter().flatten() {
            any = true;
            let cells = row["cells"].as_array().cloned().unwrap_or_default();
            let metadata = &row["object"]["metadata"];
            let mut line = Vec::new();
            if options.all_namespaces {
                line.push(
                    metadata["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            for (n, &i) in shown.iter().enumerate() {
                let mut text = cell_text(cells.get(i).unwrap_or(&Value::Null));
                if n == 0 {
                    if let Some(kind) = options.kind_prefix {
                        text = format!("{kind}/{text}");
                    }
                }
                line.push(text);
            }
            for key in &options.label_columns {
                line.push(
                    metadata["labels"][key.as_str()]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            if options.show_labels {
                line.push(labels_text(&metadata["labels"]));
            }
            rows.push(line);
        }
    }
    (rows, any)
}

/// `-L app.kubernetes.io/name` heads its column `NAME`, as kubectl does.
fn label_header(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_uppercase()
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_owned(),
        other => other.to_string(),
    }
}

/// `--show-labels`: `k=v,k2=v2` sorted, or `<none>`.
fn labels_text(labels: &Value) -> String {
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".to_owned();
    };
    // labels.Set.String sorts the `k=v` pairs, not the keys: `a.b=x` before `a=y`.
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_as_kubectl_splits_them() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let request = parse_targets(&args(&["po", "a", "b"])).expect("kind and names");
        assert_eq!(request.targets.len(), 1);
        assert_eq!(request.targets[0].1, ["a", "b"]);
        let request = parse_targets(&args(&["pod/a", "ns/b", "po/c"])).expect("TYPE/NAME");
        assert_eq!(request.targets.len(), 2);
        assert_eq!(request.targets[0].1, ["a", "c"]);
        assert!(parse_targets(&args(&["pods", "x/y"])).is_err());
        let err = parse_targets(&args(&["foo"]))
            .err()
            .expect("foo is unknown");
        assert_eq!(
            err.render(),
            "error: the server doesn't have a resource type \"foo\""
        );
    }

    #[test]
    fn selectors_are_url_encoded() {
        let flags = Flags {
            selector: Some("app=kubia,env in (a)".into()),
            ..Flags::default()
        };
        assert_eq!(
            list_query(&flags, true),
            "?labelSelector=app%3Dkubia%2Cenv%20in%20%28a%29&limit=500"
        );
    }

    #[test]
    fn tables_add_namespace_and_labels_columns() {
        let table = json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Age", "priority": 0},
                {"name": "IP", "priority": 1}],
            "rows": [{"cells": ["kubia", "1s", "<none>"],
                      "object": {"metadata": {"namespace": "default",
                                              "labels": {"b": "2", "a": "1"}}}}]
        });
        let options = TableOptions {
            wide: false,
            all_namespaces: true,
            label_columns: vec!["app".into()],
            show_labels: true,
            no_headers: false,
            kind_prefix: None,
        };
        assert_eq!(
            render_tables(&[table], &options).as_deref(),
            Some(
                "NAMESPACE   NAME    AGE   APP   LABELS\ndefault     kubia   1s          a=1,b=2\n"
            )
        );
    }
}
