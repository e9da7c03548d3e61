//! `kubectl api-resources`: the server's discovery documents as kubectl tabulates them
//! (`-o wide|name`, `--namespaced`, `--api-group`, `--sort-by=name|kind`, `--no-headers`).

use serde_json::Value;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::{printer, Error, Flags, Result};

struct Row {
    name: String,
    short: String,
    group: String,
    api_version: String,
    namespaced: bool,
    kind: String,
    verbs: String,
    categories: String,
}

fn rows_of(list: &Value, group: &str) -> Vec<Row> {
    let api_version = list["groupVersion"].as_str().unwrap_or_default().to_owned();
    let join = |v: &Value| -> String {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(",")
    };
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !r["name"].as_str().unwrap_or("/").contains('/'))
        .map(|r| Row {
            name: r["name"].as_str().unwrap_or_default().to_owned(),
            short: join(&r["shortNames"]),
            group: group.to_owned(),
            api_version: api_version.clone(),
            namespaced: r["namespaced"].as_bool().unwrap_or(false),
            kind: r["kind"].as_str().unwrap_or_default().to_owned(),
            verbs: join(&r["verbs"]),
            categories: join(&r["categories"]),
        })
        .collect()
}

pub async fn run(flags: &Flags) -> Result<()> {
    let wide = match flags.output.as_deref() {
        None | Some("") => false,
        Some("wide") => true,
        Some("name") => false,
        Some(other) => return Err(Error::Message(format!("--output {other} is not available"))),
    };
    let api = ApiClient::connect(flags).await?;
    let mut rows = rows_of(&api.get_json("/api/v1", ACCEPT_JSON).await?, "");
    let groups = api.get_json("/apis", ACCEPT_JSON).await?;
    for group in groups["groups"].as_array().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or_default();
        let Some(version) = group["preferredVersion"]["groupVersion"].as_str() else {
            continue;
        };
        let list = api
            .get_json(&format!("/apis/{version}"), ACCEPT_JSON)
            .await?;
        rows.extend(rows_of(&list, name));
    }
    if let Some(namespaced) = flags.namespaced {
        rows.retain(|r| r.namespaced == namespaced);
    }
    if let Some(group) = &flags.api_group {
        rows.retain(|r| &r.group == group);
    }
    match flags.sort_by.as_deref() {
        Some("name") => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("kind") => rows.sort_by(|a, b| a.kind.cmp(&b.kind)),
        None | Some("") => rows.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name))),
        Some(other) => {
            return Err(Error::Message(format!(
                "--sort-by accepts only name or kind, got \"{other}\""
            )))
        }
    }
    if flags.output.as_deref() == Some("name") {
        for row in &rows {
            if row.group.is_empty() {
                println!("{}", row.name);
            } else {
                println!("{}.{}", row.name, row.group);
            }
        }
        return Ok(());
    }
    let mut table = Vec::new();
    if !flags.no_headers {
        let mut header: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
            .map(str::to_owned)
            .to_vec();
        if wide {
            header.extend(["VERBS".to_owned(), "CATEGORIES".to_owned()]);
        }
        table.push(header);
    }
    for row in rows {
        let mut line = vec![
            row.name,
            row.short,
            row.api_version,
            row.namespaced.to_string(),
            row.kind,
        ];
        if wide {
            line.extend([row.verbs, row.categories]);
        }
        table.push(line);
    }
    print!("{}", printer::table(&table));
    Ok(())
}
