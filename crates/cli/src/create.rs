//! `kubectl create -f`: each object POSTed with strict field validation, `pod/x created` per
//! object, server errors named by their file as kubectl names them.

use http::Method;

use crate::apply::DryRun;
use crate::client::{self, ApiClient, ACCEPT_JSON};
use crate::get::{encode, finish};
use crate::manifest::{self, Object};
use crate::{Error, Flags, Result};

pub async fn run(flags: &Flags) -> Result<()> {
    if let Some((what, names)) = flags.args.split_first() {
        if what == "namespace" || what == "ns" {
            return create_namespace(flags, names).await;
        }
        return Err(Error::Message(format!(
            "Unexpected args: [{}]\nSee 'kubectl create -h' for help and examples",
            flags.args.join(" ")
        )));
    }
    if flags.filenames.is_empty() {
        return Err(Error::Message("must specify one of -f and -k".to_owned()));
    }
    let dry_run = DryRun::parse(flags)?;
    let objects = manifest::read(&flags.filenames, flags.recursive)?;
    let api = ApiClient::connect(flags).await?;
    let mut errors = Vec::new();
    for object in objects {
        match create(&api, flags, object, dry_run).await {
            Ok(line) => println!("{line}"),
            Err(err) => errors.push(err),
        }
    }
    finish(errors)
}

/// The namespace an object goes to: its own, unless `-n` names another (an error, as in kubectl).
pub(crate) fn target_namespace(api: &ApiClient, flags: &Flags, object: &Object) -> Result<String> {
    match (object.namespace(), flags.namespace.as_deref()) {
        (Some(own), Some(flag)) if own != flag => Err(Error::Message(format!(
            "the namespace from the provided object \"{own}\" does not match the namespace \
             \"{flag}\". You must pass '--namespace={own}' to perform this operation."
        ))),
        (Some(own), _) => Ok(own.to_owned()),
        (None, _) => Ok(api.namespace().to_owned()),
    }
}

/// kubectl's AddSourceToErr: the server's message prefixed with the operation and the file.
pub(crate) fn with_source(err: Error, operation: &str, source: &str) -> Error {
    match err {
        Error::Api(mut api) if api.reason != "Invalid" && api.reason != "Unauthorized" => {
            api.message = format!("error when {operation} \"{source}\": {}", api.message);
            Error::Api(api)
        }
        other => other,
    }
}

async fn create(
    api: &ApiClient,
    flags: &Flags,
    mut object: Object,
    dry_run: DryRun,
) -> Result<String> {
    let resource = object.resource;
    let namespace = target_namespace(api, flags, &object)?;
    if resource.namespaced {
        if let Some(metadata) = object.value["metadata"].as_object_mut() {
            metadata.insert("namespace".to_owned(), namespace.clone().into());
        }
    }
    if dry_run == DryRun::Client {
        return Ok(dry_run.line(flags, resource.singular, object.name(), "created"));
    }
    let query = dry_run.query(flags, "kubectl-create");
    let uri = format!("{}{query}", resource.collection_path(Some(&namespace)));
    let body = serde_json::to_vec(&object.value)
        .map_err(|err| Error::Message(format!("cannot encode {}: {err}", object.source)))?;
    let created = api
        .send(
            Method::POST,
            &uri,
            ACCEPT_JSON,
            Some(body),
            ("post", resource.plural),
        )
        .await
        .and_then(|bytes| client::parse(&bytes, &uri))
        .map_err(|err| manifest::point_at_field(err, &object))
        .map_err(|err| with_source(err, "creating", &object.source))?;
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or(object.name());
    Ok(dry_run.line(flags, resource.singular, name, "created"))
}

/// `kubectl create namespace NAME`.
async fn create_namespace(flags: &Flags, names: &[String]) -> Result<()> {
    let [name] = names else {
        return Err(Error::Message(format!(
            "exactly one NAME is required, got {}\nSee 'kubectl create namespace -h' for help \
             and examples",
            names.len()
        )));
    };
    let api = ApiClient::connect(flags).await?;
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": name}, "spec": {}, "status": {}});
    let query = encode(&[("fieldManager".to_owned(), "kubectl-create".to_owned())]);
    let uri = format!("/api/v1/namespaces{query}");
    let body = serde_json::to_vec(&body)
        .map_err(|err| Error::Message(format!("cannot encode the namespace: {err}")))?;
    api.send(
        Method::POST,
        &uri,
        ACCEPT_JSON,
        Some(body),
        ("post", "namespaces"),
    )
    .await?;
    println!("namespace/{name} created");
    Ok(())
}
