//! `kubectl get -w`: the table (or names), then one row per watch event as the server sends
//! them, aligned to the widest cell seen so far as kubectl aligns them;
//! `--output-watch-events` adds the EVENT column.

use std::io::Write;

use serde_json::Value;

use crate::client::{ApiClient, ACCEPT_JSON, ACCEPT_TABLE};
use crate::get::{encode, parse_targets, table_rows, TableOptions};
use crate::jsonpath::Template;
use crate::kinds::Resource;
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

/// What one `get -w` follows: one kind, and one object of it or those the selectors pick.
struct Watched {
    resource: &'static Resource,
    name: Option<String>,
    all_namespaces: bool,
    /// The selectors, the name (as `metadata.name=`) folded into the field selector.
    query: Vec<(String, String)>,
}

impl Watched {
    fn parse(flags: &Flags) -> Result<Self> {
        let request = parse_targets(&flags.args)?;
        let [(resource, names)] = request.targets.as_slice() else {
            return Err(too_many_to_watch(request.targets.len()));
        };
        let name = match names.as_slice() {
            [] => None,
            [name] => Some(name.clone()),
            _ => return Err(too_many_to_watch(names.len())),
        };
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(selector) = &flags.selector {
            query.push(("labelSelector".to_owned(), selector.clone()));
        }
        let field_selector = match (&name, &flags.field_selector) {
            (Some(name), Some(other)) => Some(format!("metadata.name={name},{other}")),
            (Some(name), None) => Some(format!("metadata.name={name}")),
            (None, other) => other.clone(),
        };
        if let Some(selector) = field_selector {
            query.push(("fieldSelector".to_owned(), selector));
        }
        Ok(Watched {
            resource,
            name,
            all_namespaces: flags.all_namespaces,
            query,
        })
    }

    fn collection_path(&self, api: &ApiClient) -> String {
        self.resource
            .collection_path((!self.all_namespaces).then_some(api.namespace()))
    }

    /// The state the watch starts from, as `accept` asks: the named object, else the list.
    async fn fetch(&self, api: &ApiClient, accept: &str) -> Result<Value> {
        let Some(name) = &self.name else {
            let uri = format!("{}{}", self.collection_path(api), encode(&self.query));
            return api.get_json(&uri, accept).await;
        };
        let uri = self.resource.object_path(api.namespace(), name);
        api.get_resource_json(&uri, accept, self.resource.plural)
            .await
    }

    /// The watch request that goes on from `version`, the one of what [`Self::fetch`] got.
    fn watch_uri(&self, api: &ApiClient, version: String) -> String {
        let mut query = self.query.clone();
        query.push(("resourceVersion".to_owned(), version));
        query.push(("watch".to_owned(), "1".to_owned()));
        format!("{}{}", self.collection_path(api), encode(&query))
    }
}

fn too_many_to_watch(found: usize) -> Error {
    Error::Message(format!(
        "watch is only supported on individual resources and resource collections, but {found} \
         resources were found"
    ))
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
    let watched = Watched::parse(flags)?;
    let resource = watched.resource;
    let api = ApiClient::connect(flags).await?;
    let first = watched.fetch(&api, ACCEPT_TABLE).await?;
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

    let uri = watched.watch_uri(&api, version);
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
    let watched = Watched::parse(flags)?;
    let resource = watched.resource;
    let api = ApiClient::connect(flags).await?;
    let fetched = watched.fetch(&api, ACCEPT_JSON).await?;
    let version = fetched["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let items = match watched.name {
        Some(_) => vec![fetched],
        None => fetched["items"].as_array().cloned().unwrap_or_default(),
    };
    let mut first = true;
    for mut item in items {
        if let Some(map) = item.as_object_mut() {
            map.insert("apiVersion".to_owned(), Value::String("v1".to_owned()));
            map.insert("kind".to_owned(), Value::String(resource.kind.to_owned()));
        }
        emit(&output.render(&item, first)?);
        first = false;
    }
    let uri = watched.watch_uri(&api, version);
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
