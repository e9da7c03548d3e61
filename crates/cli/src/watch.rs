//! `kubectl get -w`: the table (or names), then one row per watch event as the server sends
//! them, aligned to the widest cell seen so far as kubectl aligns them;
//! `--output-watch-events` adds the EVENT column.

use std::io::Write;

use http::Method;
use serde_json::Value;

use crate::client::ACCEPT_JSON;
use crate::client::{self, ApiClient, ACCEPT_TABLE};
use crate::get::{encode, parse_targets, table_rows, TableOptions};
use crate::jsonpath::Template;
use crate::{printer, Error, Flags, Result};

/// Column widths that only grow: kubectl's tabwriter keeps them across the rows it prints.
#[derive(Default)]
struct Widths(Vec<usize>);

impl Widths {
    fn grow(&mut self, row: &[String]) {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let wanted = (cell.chars().count() + 3).max(6);
            match self.0.get_mut(i) {
                Some(width) => *width = (*width).max(wanted),
                None => self.0.push(wanted),
            }
        }
    }

    fn format(&self, row: &[String]) -> String {
        let mut out = String::new();
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let width = self.0.get(i).copied().unwrap_or(0);
                out.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push('\n');
        out
    }
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub async fn run(flags: &Flags) -> Result<()> {
    let (wide, names_only) = match flags.output.as_deref() {
        None | Some("") => (false, false),
        Some("wide") => (true, false),
        Some("name") => (false, true),
        Some("json" | "yaml") => return watch_objects(flags, ObjectOutput::parse(flags)?).await,
        Some(other) if other.starts_with("jsonpath=") => {
            return watch_objects(flags, ObjectOutput::parse(flags)?).await
        }
        Some(other) => {
            return Err(Error::Message(format!(
                "get -w prints tables, names, json, yaml and jsonpath in this Skiff CLI, not \
                 \"{other}\""
            )))
        }
    };
    let request = parse_targets(&flags.args)?;
    let [(resource, names)] = request.targets.as_slice() else {
        return Err(Error::Message(format!(
            "watch is only supported on individual resources and resource collections, but {} \
             resources were found",
            request.targets.len()
        )));
    };
    if names.len() > 1 {
        return Err(Error::Message(format!(
            "watch is only supported on individual resources and resource collections, but {} \
             resources were found",
            names.len()
        )));
    }
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let ns = (!flags.all_namespaces).then_some(namespace.as_str());
    let mut query: Vec<(String, String)> = Vec::new();
    if let Some(selector) = &flags.selector {
        query.push(("labelSelector".to_owned(), selector.clone()));
    }
    let mut field_selector = flags.field_selector.clone();
    let first = match names.first() {
        Some(name) => {
            field_selector = Some(match field_selector {
                Some(other) => format!("metadata.name={name},{other}"),
                None => format!("metadata.name={name}"),
            });
            let uri = resource.object_path(&namespace, name);
            let bytes = api
                .send(
                    Method::GET,
                    &uri,
                    ACCEPT_TABLE,
                    None,
                    ("get", resource.plural),
                )
                .await?;
            client::parse(&bytes, &uri)?
        }
        None => {
            let mut list_query = query.clone();
            if let Some(selector) = &field_selector {
                list_query.push(("fieldSelector".to_owned(), selector.clone()));
            }
            let uri = format!("{}{}", resource.collection_path(ns), encode(&list_query));
            api.get_json(&uri, ACCEPT_TABLE).await?
        }
    };
    if let Some(selector) = field_selector {
        query.push(("fieldSelector".to_owned(), selector));
    }
    let columns = first["columnDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let options = TableOptions {
        wide,
        all_namespaces: flags.all_namespaces,
        label_columns: flags.label_columns.clone(),
        show_labels: flags.show_labels,
        no_headers: flags.no_headers,
        kind_prefix: None,
    };
    let events = flags.output_watch_events;
    let version = first["metadata"]["resourceVersion"]
        .as_str()
        .or_else(|| first["rows"][0]["object"]["metadata"]["resourceVersion"].as_str())
        .unwrap_or_default()
        .to_owned();

    let mut widths = Widths::default();
    let mut header_printed = false;
    let mut print_rows = |table: &Value, event: &str, widths: &mut Widths| {
        if names_only {
            let mut text = String::new();
            for row in table["rows"].as_array().into_iter().flatten() {
                let name = row["object"]["metadata"]["name"]
                    .as_str()
                    .or_else(|| row["cells"][0].as_str())
                    .unwrap_or_default();
                text.push_str(&format!("{}/{name}\n", resource.singular));
            }
            emit(&text);
            return;
        }
        let (mut rows, any) = table_rows(&columns, std::slice::from_ref(table), &options);
        if !any {
            return;
        }
        let has_header = !options.no_headers;
        if events {
            for (i, row) in rows.iter_mut().enumerate() {
                // kubectl pads the event's type to eight characters (`MODIFIED`).
                let cell = if i == 0 && has_header {
                    "EVENT".to_owned()
                } else {
                    format!("{event:<8}")
                };
                row.insert(0, cell);
            }
        }
        if has_header && header_printed {
            rows.remove(0);
        }
        header_printed = true;
        for row in &rows {
            widths.grow(row);
        }
        let text: String = rows.iter().map(|row| widths.format(row)).collect();
        emit(&text);
    };
    print_rows(&first, "ADDED", &mut widths);

    query.push(("resourceVersion".to_owned(), version));
    query.push(("watch".to_owned(), "1".to_owned()));
    let uri = format!("{}{}", resource.collection_path(ns), encode(&query));
    api.watch_with_accept(&uri, ACCEPT_TABLE, |event| {
        let kind = event["type"].as_str().unwrap_or_default();
        if matches!(kind, "ADDED" | "MODIFIED" | "DELETED") {
            print_rows(&event["object"], kind, &mut widths);
        }
        false
    })
    .await?;
    Ok(())
}

/// `-w -o json|yaml|jsonpath=`: each object as it is, then as it changes.
enum ObjectOutput {
    Json,
    Yaml,
    JsonPath(Template),
}

impl ObjectOutput {
    fn parse(flags: &Flags) -> Result<ObjectOutput> {
        Ok(match flags.output.as_deref() {
            Some("json") => ObjectOutput::Json,
            Some("yaml") => ObjectOutput::Yaml,
            Some(other) => ObjectOutput::JsonPath(Template::parse(
                other.strip_prefix("jsonpath=").unwrap_or(other),
            )?),
            None => ObjectOutput::Json,
        })
    }

    /// The text of one object; YAML documents after the first start with `---`.
    fn render(&self, object: &Value, first: bool) -> Result<String> {
        Ok(match self {
            ObjectOutput::Json => printer::json(object),
            ObjectOutput::Yaml if first => printer::yaml(object),
            ObjectOutput::Yaml => format!("---\n{}", printer::yaml(object)),
            ObjectOutput::JsonPath(template) => template.render(object)?,
        })
    }
}

async fn watch_objects(flags: &Flags, output: ObjectOutput) -> Result<()> {
    let request = parse_targets(&flags.args)?;
    let [(resource, names)] = request.targets.as_slice() else {
        return Err(Error::Message(format!(
            "watch is only supported on individual resources and resource collections, but {} \
             resources were found",
            request.targets.len()
        )));
    };
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let ns = (!flags.all_namespaces).then_some(namespace.as_str());
    let mut query: Vec<(String, String)> = Vec::new();
    if let Some(selector) = &flags.selector {
        query.push(("labelSelector".to_owned(), selector.clone()));
    }
    let mut field_selector = flags.field_selector.clone();
    let (items, version) = match names.as_slice() {
        [name] => {
            field_selector = Some(match field_selector {
                Some(other) => format!("metadata.name={name},{other}"),
                None => format!("metadata.name={name}"),
            });
            let uri = resource.object_path(&namespace, name);
            let bytes = api
                .send(
                    Method::GET,
                    &uri,
                    ACCEPT_JSON,
                    None,
                    ("get", resource.plural),
                )
                .await?;
            let object = client::parse(&bytes, &uri)?;
            let version = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (vec![object], version)
        }
        [] => {
            let mut list_query = query.clone();
            if let Some(selector) = &field_selector {
                list_query.push(("fieldSelector".to_owned(), selector.clone()));
            }
            let uri = format!("{}{}", resource.collection_path(ns), encode(&list_query));
            let list = api.get_json(&uri, ACCEPT_JSON).await?;
            let version = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (
                list["items"].as_array().cloned().unwrap_or_default(),
                version,
            )
        }
        _ => {
            return Err(Error::Message(format!(
                "watch is only supported on individual resources and resource collections, \
                 but {} resources were found",
                names.len()
            )))
        }
    };
    if let Some(selector) = field_selector {
        query.push(("fieldSelector".to_owned(), selector));
    }
    let mut first = true;
    for mut item in items {
        if let Some(map) = item.as_object_mut() {
            map.insert("apiVersion".to_owned(), Value::String("v1".to_owned()));
            map.insert("kind".to_owned(), Value::String(resource.kind.to_owned()));
        }
        emit(&output.render(&item, first)?);
        first = false;
    }
    query.push(("resourceVersion".to_owned(), version));
    query.push(("watch".to_owned(), "1".to_owned()));
    let uri = format!("{}{}", resource.collection_path(ns), encode(&query));
    let mut failure = None;
    api.watch_until(&uri, |event| {
        if !matches!(
            event["type"].as_str(),
            Some("ADDED" | "MODIFIED" | "DELETED")
        ) {
            return false;
        }
        match output.render(&event["object"], first) {
            Ok(text) => emit(&text),
            Err(err) => {
                failure = Some(err);
                return true;
            }
        }
        first = false;
        false
    })
    .await?;
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_only_grow() {
        let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let mut widths = Widths::default();
        widths.grow(&row(&["NAME", "AGE"]));
        widths.grow(&row(&["a-much-longer-name", "1s"]));
        widths.grow(&row(&["a", "2s"]));
        assert_eq!(
            widths.format(&row(&["a", "2s"])),
            format!("a{}2s\n", " ".repeat(20))
        );
    }
}
