//! `kubectl patch TYPE NAME -p PATCH [--type strategic|merge|json]` (or `TYPE/NAME`): the patch
//! (JSON, or YAML for the two merge types) sent as is; `pod/x patched`, or `patched (no change)`
//! when the object came back as it was.

use http::Method;
use serde_json::Value;
use skiff_api::decode::{self, Format};

use crate::client::{self, ApiClient, ACCEPT_JSON};
use crate::get::{encode, parse_named_objects};
use crate::{printer, Error, Flags, Result};

pub async fn run(flags: &Flags) -> Result<()> {
    let Some(text) = flags.patch.as_deref() else {
        return Err(Error::Message(
            "must specify --patch or --patch-file containing the contents of the patch".to_owned(),
        ));
    };
    let (content_type, json_patch) = match flags.patch_type.as_deref().unwrap_or("strategic") {
        "strategic" => ("application/strategic-merge-patch+json", false),
        "merge" => ("application/merge-patch+json", false),
        "json" => ("application/json-patch+json", true),
        other => {
            return Err(Error::Message(format!(
                "--type must be one of [json merge strategic], not \"{other}\""
            )))
        }
    };
    let format = if text.trim_start().starts_with(['{', '[']) {
        Format::Json
    } else {
        Format::Yaml
    };
    let body = decode::parse(text.as_bytes(), format)
        .map(|parsed| parsed.value)
        .map_err(|e| Error::Message(format!("unable to parse \"{text}\": {e}")))?;
    if json_patch != body.is_array() {
        return Err(Error::Message(format!(
            "unable to parse \"{text}\": a {} patch is a JSON {}",
            if json_patch { "json" } else { "merge" },
            if json_patch { "array" } else { "object" }
        )));
    }
    let targets = parse_named_objects(
        &flags.args,
        "you must specify the object to patch: kubectl patch TYPE NAME -p PATCH",
    )?;
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    for (resource, name) in targets {
        let uri = resource.object_path(&namespace, &name);
        let before = api.get_json(&uri, ACCEPT_JSON).await?;
        let query = vec![("fieldManager".to_owned(), "kubectl-patch".to_owned())];
        let bytes = api
            .send_typed(
                Method::PATCH,
                &format!("{uri}{}", encode(&query)),
                content_type,
                body.to_string().into_bytes(),
                ("patch", resource.plural),
            )
            .await?;
        let mut after = client::parse(&bytes, &uri)?;
        match flags.output.as_deref() {
            Some("name") => println!("{}/{name}", resource.singular),
            Some(format @ ("json" | "yaml")) => {
                if let Some(map) = after.as_object_mut() {
                    map.entry("apiVersion").or_insert(Value::from("v1"));
                    map.entry("kind").or_insert(Value::from(resource.kind));
                }
                print!(
                    "{}",
                    if format == "json" {
                        printer::json(&after)
                    } else {
                        printer::yaml(&after)
                    }
                );
            }
            _ => {
                let unchanged = if before == after { " (no change)" } else { "" };
                println!("{}/{name} patched{unchanged}", resource.singular);
            }
        }
    }
    Ok(())
}
