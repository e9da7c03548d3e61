//! `kubectl apply -f` (client-side: the last-applied annotation and a three-way strategic
//! merge patch, `created` / `configured` / `unchanged`) and `kubectl replace -f` (a PUT),
//! both with `--dry-run=client|server`.

use http::Method;
use serde_json::{Map, Value};
use skiff_api::patch;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::create::{send_object, target_namespace, with_source};
use crate::get::{encode, finish};
use crate::jsonpath::go_json;
use crate::manifest::{self, Object};
use crate::{report, Error, Flags, Result};

/// The annotation client-side apply keeps the applied manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `--dry-run`: nothing is written (client), or the server checks and does not store (server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DryRun {
    None,
    Client,
    Server,
}

impl DryRun {
    pub fn parse(flags: &Flags) -> Result<DryRun> {
        match flags.dry_run.as_deref() {
            None | Some("none") => Ok(DryRun::None),
            Some("client") => Ok(DryRun::Client),
            Some("server") => Ok(DryRun::Server),
            Some(other) => Err(Error::Message(format!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            ))),
        }
    }

    /// What kubectl appends to its `pod/x created` line.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }

    /// kubectl's line for a written object: `pod/x created (dry run)`, or `pod/x` with `-o name`.
    pub fn line(self, flags: &Flags, singular: &str, name: &str, operation: &str) -> String {
        if flags.output.as_deref() == Some("name") {
            return format!("{singular}/{name}");
        }
        format!("{singular}/{name} {operation}{}", self.suffix())
    }

    /// The query parameters of a write: kubectl's field manager, validation and dry run.
    pub fn query(self, flags: &Flags, field_manager: &str) -> String {
        let mut query = Vec::new();
        if self == DryRun::Server {
            query.push(("dryRun".to_owned(), "All".to_owned()));
        }
        query.push(("fieldManager".to_owned(), field_manager.to_owned()));
        let validation = match flags.validate.as_deref() {
            Some("false" | "ignore") => "Ignore",
            Some("warn") => "Warn",
            _ => "Strict",
        };
        query.push(("fieldValidation".to_owned(), validation.to_owned()));
        encode(&query)
    }
}

fn need_files(flags: &Flags, verb: &str) -> Result<()> {
    if flags.filenames.is_empty() {
        return Err(Error::Message("must specify one of -f and -k".to_owned()));
    }
    if !flags.args.is_empty() {
        return Err(Error::Message(format!(
            "Unexpected args: [{}]\nSee 'kubectl {verb} -h' for help and examples",
            flags.args.join(" ")
        )));
    }
    Ok(())
}

pub async fn run_apply(flags: &Flags) -> Result<()> {
    let dry_run = DryRun::parse(flags)?;
    need_files(flags, "apply")?;
    let objects = manifest::read(&flags.filenames, flags.recursive)?;
    let api = ApiClient::connect(flags).await?;
    let mut errors = Vec::new();
    let bar = crate::progress::objects(objects.len(), "applying");
    for object in objects {
        bar.set_message(format!("{}/{}", object.resource.singular, object.name()));
        let result = if flags.server_side {
            server_side(&api, flags, object, dry_run).await
        } else {
            apply(&api, flags, object, dry_run).await
        };
        match result {
            Ok(line) => bar.suspend(|| println!("{line}")),
            Err(err) => errors.push(err),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    finish_aggregate(errors)
}

/// AddSourceToErr for every API error, Invalid ones too (their message shows in an aggregate).
fn with_any_source(err: Error, operation: &str, source: &str) -> Error {
    match err {
        Error::Api(mut api) if api.reason != "Unauthorized" => {
            api.message = format!("error when {operation} \"{source}\": {}", api.message);
            Error::Api(api)
        }
        other => other,
    }
}

/// kubectl apply (and label, annotate) returns one error as it is, several as an aggregate,
/// whose API errors print as `Error from server (Reason): message` (an Invalid one too,
/// message and all) and whose other errors print without `error: `.
pub(crate) fn finish_aggregate(mut errors: Vec<Error>) -> Result<()> {
    if errors.len() <= 1 {
        return errors.pop().map_or(Ok(()), Err);
    }
    for err in errors {
        match err {
            Error::Api(api) if !api.reason.is_empty() => report(&format!(
                "Error from server ({}): {}",
                api.reason, api.message
            )),
            Error::Message(message) => report(&message),
            other => report(&other.render()),
        }
    }
    Err(Error::AlreadyReported)
}

/// The object with its namespace filled in, as kubectl sends and records it.
fn with_namespace(api: &ApiClient, flags: &Flags, object: &mut Object) -> Result<String> {
    let namespace = target_namespace(api, flags, object)?;
    if object.resource.namespaced {
        if let Some(metadata) = object.value["metadata"].as_object_mut() {
            metadata.insert("namespace".to_owned(), namespace.clone().into());
        }
    }
    Ok(namespace)
}

/// The manifest as the annotation records it: without the annotation itself, with
/// `annotations: {}` kept, compact JSON ending in a newline.
fn last_applied(value: &Value) -> String {
    let mut recorded = value.clone();
    if let Some(metadata) = recorded["metadata"].as_object_mut() {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(map) = annotations.as_object_mut() {
            map.remove(LAST_APPLIED);
        } else {
            *annotations = Value::Object(Map::new());
        }
    }
    format!("{}\n", go_json(&recorded))
}

async fn apply(
    api: &ApiClient,
    flags: &Flags,
    mut object: Object,
    dry_run: DryRun,
) -> Result<String> {
    let resource = object.resource;
    let namespace = with_namespace(api, flags, &mut object)?;
    let name = object.name().to_owned();
    let annotation = last_applied(&object.value);
    let mut modified = object.value.clone();
    if let Some(metadata) = modified["metadata"].as_object_mut() {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        annotations[LAST_APPLIED] = Value::String(annotation);
    }
    let path = resource.object_path(&namespace, &name);
    let current = match api
        .get_resource_json(&path, ACCEPT_JSON, resource.plural)
        .await
    {
        Ok(current) => Some(current),
        Err(Error::Api(err)) if err.is_not_found() => None,
        Err(err) => {
            return Err(with_source(
                err,
                "retrieving current configuration of",
                &object.source,
            ))
        }
    };
    let Some(current) = current else {
        if dry_run != DryRun::Client {
            let uri = format!(
                "{}{}",
                resource.collection_path(Some(&namespace)),
                dry_run.query(flags, "kubectl-client-side-apply")
            );
            send_object(api, Method::POST, &uri, &modified, &object)
                .await
                .map_err(|err| with_any_source(err, "creating", &object.source))?;
        }
        return Ok(dry_run.line(flags, resource.singular, &name, "created"));
    };
    let original = match current["metadata"]["annotations"][LAST_APPLIED].as_str() {
        Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        None => {
            report(&format!(
                "Warning: resource {}/{name} is missing the {LAST_APPLIED} annotation which is \
                 required by kubectl apply. kubectl apply should only be used on resources \
                 created declaratively by either kubectl create --save-config or kubectl apply. \
                 The missing annotation will be patched automatically.",
                resource.plural
            ));
            Value::Null
        }
    };
    let patch = patch::three_way(&original, &modified, &current, resource.kind);
    if patch.is_empty() {
        return Ok(dry_run.line(flags, resource.singular, &name, "unchanged"));
    }
    if dry_run != DryRun::Client {
        let patch_text = go_json(&Value::Object(patch));
        let uri = format!(
            "{path}{}",
            dry_run.query(flags, "kubectl-client-side-apply")
        );
        api.send_typed(
            Method::PATCH,
            &uri,
            "application/strategic-merge-patch+json",
            patch_text.clone().into_bytes(),
            ("patch", resource.plural),
        )
        .await
        .map_err(|err| match err {
            Error::Api(mut api_err) => {
                // kubectl's "error when applying patch" names the patch and the object.
                api_err.message = format!(
                    "error when applying patch:\n{patch_text}\nto:\nResource: \"/v1, Resource={}\", \
                     GroupVersionKind: \"/v1, Kind={}\"\nName: \"{name}\", Namespace: \"{}\"\n\
                     for: \"{}\": error when patching \"{}\": {}",
                    resource.plural,
                    resource.kind,
                    if resource.namespaced { namespace.as_str() } else { "" },
                    object.source,
                    object.source,
                    api_err.message
                );
                Error::Api(api_err)
            }
            other => other,
        })?;
    }
    Ok(dry_run.line(flags, resource.singular, &name, "configured"))
}

/// `apply --server-side`: an apply patch; Skiff's server answers 415 and kubectl says so.
async fn server_side(
    api: &ApiClient,
    flags: &Flags,
    mut object: Object,
    dry_run: DryRun,
) -> Result<String> {
    let resource = object.resource;
    let namespace = with_namespace(api, flags, &mut object)?;
    let name = object.name().to_owned();
    let mut uri = format!(
        "{}{}",
        resource.object_path(&namespace, &name),
        dry_run.query(flags, "kubectl")
    );
    uri.push_str("&force=false");
    let body = serde_json::to_vec(&object.value)
        .map_err(|err| Error::Message(format!("cannot encode {}: {err}", object.source)))?;
    match api
        .send_typed(
            Method::PATCH,
            &uri,
            "application/apply-patch+yaml",
            body,
            ("patch", resource.plural),
        )
        .await
    {
        Ok(_) => Ok(dry_run.line(flags, resource.singular, &name, "serverside-applied")),
        Err(Error::Api(err)) if err.code == 415 => Err(Error::Raw(format!(
            "error: Server-side apply not available on the server: ({})",
            err.message
        ))),
        Err(err) => Err(with_source(err, "patching", &object.source)),
    }
}

pub async fn run_replace(flags: &Flags) -> Result<()> {
    let dry_run = DryRun::parse(flags)?;
    need_files(flags, "replace")?;
    let objects = manifest::read(&flags.filenames, flags.recursive)?;
    let api = ApiClient::connect(flags).await?;
    let mut errors = Vec::new();
    for mut object in objects {
        let resource = object.resource;
        let result = async {
            let namespace = with_namespace(&api, flags, &mut object)?;
            let name = object.name().to_owned();
            if dry_run != DryRun::Client {
                let uri = format!(
                    "{}{}",
                    resource.object_path(&namespace, &name),
                    dry_run.query(flags, "kubectl-replace")
                );
                send_object(&api, Method::PUT, &uri, &object.value, &object)
                    .await
                    .map_err(|err| with_source(err, "replacing", &object.source))?;
            }
            Ok::<_, Error>(dry_run.line(flags, resource.singular, &name, "replaced"))
        }
        .await;
        match result {
            Ok(line) => println!("{line}"),
            Err(err) => errors.push(err),
        }
    }
    finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_annotation_records_the_manifest_without_itself() {
        let manifest = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "default"}});
        assert_eq!(
            last_applied(&manifest),
            "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"a\",\"namespace\":\"default\"}}\n"
        );
        let annotated = json!({"metadata": {"annotations": {LAST_APPLIED: "x", "k": "<v>"}}});
        assert_eq!(
            last_applied(&annotated),
            "{\"metadata\":{\"annotations\":{\"k\":\"\\u003cv\\u003e\"}}}\n"
        );
    }

    #[test]
    fn dry_run_values_are_checked() {
        let flags = |value: &str| Flags {
            dry_run: Some(value.to_owned()),
            ..Flags::default()
        };
        assert_eq!(DryRun::parse(&flags("server")).ok(), Some(DryRun::Server));
        assert_eq!(
            DryRun::parse(&flags("bogus")).err().map(|e| e.render()),
            Some(
                "error: Invalid dry-run value (bogus). Must be \"none\", \"server\", or \"client\"."
                    .to_owned()
            )
        );
    }
}
