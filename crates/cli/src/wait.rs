//! `kubectl wait --for=condition=C[=V]|delete|create|jsonpath=EXPR[=V] --timeout`: each object
//! is read, then watched until it meets the condition or the timeout passes (no polling).

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::get::{encode, list_query, parse_targets};
use crate::jsonpath::{result_text, Template};
use crate::kinds::Resource;
use crate::{Error, Flags, Result};

/// What `--for` asks.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Delete,
    Create,
    /// `condition=Ready` (value `True`), `condition=Ready=false`.
    Status {
        kind: String,
        value: String,
    },
    /// `jsonpath={.status.phase}=Running`; without a value the field only has to exist.
    JsonPath {
        template: Template,
        value: Option<String>,
    },
}

impl Condition {
    fn parse(text: &str) -> Result<Condition> {
        let unrecognized = || Error::Message(format!("unrecognized condition: \"{text}\""));
        if text == "delete" {
            return Ok(Condition::Delete);
        }
        if text == "create" {
            return Ok(Condition::Create);
        }
        if let Some(rest) = text.strip_prefix("condition=") {
            let (kind, value) = rest.split_once('=').unwrap_or((rest, "True"));
            if kind.is_empty() {
                return Err(unrecognized());
            }
            return Ok(Condition::Status {
                kind: kind.to_owned(),
                value: value.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("jsonpath=") {
            // The expression ends at its closing brace, or at the first `=` when unbraced.
            let (expr, value) = match rest.strip_prefix('{') {
                Some(inner) => match inner.find('}') {
                    Some(end) => {
                        let after = &inner[end + 1..];
                        let value = after.strip_prefix('=').map(str::to_owned);
                        if value.is_none() && !after.is_empty() {
                            return Err(unrecognized());
                        }
                        (format!("{{{}}}", &inner[..end]), value)
                    }
                    None => return Err(unrecognized()),
                },
                None => match rest.split_once('=') {
                    Some((expr, value)) => (expr.to_owned(), Some(value.to_owned())),
                    None => (rest.to_owned(), None),
                },
            };
            return Ok(Condition::JsonPath {
                template: Template::parse_relaxed(&expr)?,
                value,
            });
        }
        Err(unrecognized())
    }

    /// Whether an object (None: absent) meets the condition.
    fn met(&self, object: Option<&Value>) -> bool {
        let Some(object) = object else {
            return *self == Condition::Delete;
        };
        match self {
            Condition::Delete => false,
            Condition::Create => true,
            Condition::Status { kind, value } => object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                        && c["status"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(value))
                }),
            Condition::JsonPath { template, value } => {
                let values = template.values(object);
                match value {
                    None => !values.is_empty(),
                    Some(value) => values.first().is_some_and(|v| result_text(v) == *value),
                }
            }
        }
    }
}

/// A Go duration as `--timeout` takes it: `30s`, `1m30s`, `500ms`, `0`; a negative one means a
/// week, as in kubectl.
fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if negative {
        return Some(Duration::from_secs(7 * 24 * 3600));
    }
    Some(Duration::from_secs_f64(total))
}

pub async fn run(flags: &Flags) -> Result<()> {
    let timeout = match flags.timeout.as_deref() {
        None => Duration::from_secs(30),
        Some(text) => parse_duration(text).ok_or_else(|| {
            Error::Raw(format!(
                "error: invalid argument \"{text}\" for \"--timeout\" flag: time: invalid \
                 duration \"{text}\"\nSee 'kubectl wait --help' for usage."
            ))
        })?,
    };
    let condition = Condition::parse(flags.wait_for.as_deref().unwrap_or(""))?;
    let request = parse_targets(&flags.args)?;
    if request.targets.is_empty() {
        return Err(Error::Message(
            "You must provide one or more resources by argument or filename.\nExample resource \
             specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   \
             '<resource> <name>'\n   '<resource>'"
                .to_owned(),
        ));
    }
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let mut errors = Vec::new();
    let mut any = false;
    for (resource, names) in &request.targets {
        let names: Vec<String> = if names.is_empty() {
            let uri = format!(
                "{}{}",
                resource.collection_path(Some(&namespace)),
                list_query(flags, false)
            );
            let list = api.get_json(&uri, ACCEPT_JSON).await?;
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        } else {
            names.clone()
        };
        for name in names {
            any = true;
            match wait_for(&api, resource, &namespace, &name, &condition, timeout).await {
                Ok(true) => println!("{}/{name} condition met", resource.singular),
                Ok(false) => {}
                Err(err) => errors.push(err),
            }
        }
    }
    if !any && condition != Condition::Delete {
        return Err(Error::Message("no matching resources found".to_owned()));
    }
    crate::apply::finish_aggregate(errors)
}

/// Waits for one object; Ok(false) when there is nothing to report (deleted before we looked).
async fn wait_for(
    api: &ApiClient,
    resource: &Resource,
    namespace: &str,
    name: &str,
    condition: &Condition,
    timeout: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let path = resource.object_path(namespace, name);
    let mut first = true;
    loop {
        let current = match api
            .get_resource_json(&path, ACCEPT_JSON, resource.plural)
            .await
        {
            Ok(object) => Some(object),
            Err(Error::Api(err)) if err.is_not_found() => {
                if *condition == Condition::Delete {
                    // Gone before the first look: kubectl prints nothing for it.
                    return Ok(!first);
                }
                if *condition != Condition::Create {
                    return Err(Error::Api(err));
                }
                None
            }
            Err(err) => return Err(err),
        };
        first = false;
        if condition.met(current.as_ref()) {
            return Ok(true);
        }
        if timeout.is_zero() {
            return Err(Error::Message(format!(
                "condition not met for {}/{name}",
                resource.plural
            )));
        }
        let timed_out = || {
            Error::Message(format!(
                "timed out waiting for the condition on {}/{name}",
                resource.plural
            ))
        };
        let version = current
            .as_ref()
            .and_then(|o| o["metadata"]["resourceVersion"].as_str())
            .unwrap_or_default()
            .to_owned();
        let mut query = vec![
            ("fieldSelector".to_owned(), format!("metadata.name={name}")),
            ("watch".to_owned(), "true".to_owned()),
        ];
        if !version.is_empty() {
            query.push(("resourceVersion".to_owned(), version));
        }
        let uri = format!(
            "{}{}",
            resource.collection_path(Some(namespace)),
            encode(&query)
        );
        let watched = api.watch_until(&uri, |event| {
            let object = (event["type"] != "DELETED").then_some(&event["object"]);
            condition.met(object)
        });
        match tokio::time::timeout_at(deadline, watched).await {
            Ok(Ok(true)) => return Ok(true),
            // The server ended the watch: look again.
            Ok(Ok(false)) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(timed_out()),
        }
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_and_match_as_kubectl_matches_them() {
        let pod = json!({"metadata": {"name": "a"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False"}]}});
        let met = |text: &str| Condition::parse(text).expect("valid").met(Some(&pod));
        assert!(met("condition=PodScheduled=false"));
        assert!(!met("condition=PodScheduled"));
        assert!(met("jsonpath={.status.phase}=Pending"));
        assert!(met("jsonpath=.status.phase=Pending"));
        assert!(met("jsonpath={.metadata.name}"));
        assert!(!met("jsonpath={.status.nope}"));
        assert!(met("create"));
        assert!(Condition::Delete.met(None));
        assert_eq!(
            Condition::parse("bogus").err().map(|e| e.render()),
            Some("error: unrecognized condition: \"bogus\"".to_owned())
        );
    }

    #[test]
    fn durations_parse_as_go_parses_them() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("bogus"), None);
        assert_eq!(parse_duration("5"), None);
    }
}
