//! `kubectl delete`: by name, `TYPE/NAME`, `-f`, `--all` or `-l`; `--grace-period`, `--now`,
//! `--force`; and, unless `--wait=false`, waiting until every deleted object is gone.

use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::client::{self, ApiClient, ACCEPT_JSON};
use crate::create::{target_namespace, with_source};
use crate::get::{encode, finish, list_query, parse_targets};
use crate::kinds::Resource;
use crate::{manifest, report, Error, Flags, Result};

/// The pause before the wait phase looks again after its watch ended early.
const WAIT_RETRY: Duration = Duration::from_millis(200);

/// One object to delete.
struct Target {
    resource: &'static Resource,
    namespace: String,
    name: String,
    /// The `-f` file it came from, for kubectl's `error when deleting "FILE"`.
    source: Option<String>,
}

pub async fn run(flags: &Flags) -> Result<()> {
    if flags.now && flags.grace_period.is_some() {
        return Err(Error::Message(
            "--now and --grace-period cannot be specified together".to_owned(),
        ));
    }
    // kubectl's conversions: --now is one second; 0 without --force would skip graceful
    // termination by accident, so it becomes 1; --force without a period is 0.
    let mut grace_period = flags.grace_period.unwrap_or(-1);
    if flags.now {
        grace_period = 1;
    }
    if grace_period == 0 && !flags.force {
        grace_period = 1;
    }
    if flags.force && grace_period < 0 {
        grace_period = 0;
    }
    let force_now = flags.force && grace_period == 0;
    let mut errors = Vec::new();
    let (api, targets) = if !flags.filenames.is_empty() {
        let objects = manifest::read(&flags.filenames, flags.recursive)?;
        let api = ApiClient::connect(flags).await?;
        let mut targets = Vec::new();
        for object in objects {
            let namespace = target_namespace(&api, flags, &object)?;
            targets.push(Target {
                resource: object.resource,
                name: object.name().to_owned(),
                namespace,
                source: Some(object.source.clone()),
            });
        }
        (api, targets)
    } else {
        let request = parse_targets(&flags.args)?;
        if request.targets.is_empty() {
            return Err(Error::Message(
                "You must provide one or more resources by argument or filename.\nExample \
                 resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   \
                 '<resource> <name>'\n   '<resource>'"
                    .to_owned(),
            ));
        }
        let by_selector = flags.all || flags.selector.is_some() || flags.field_selector.is_some();
        let has_names = request.targets.iter().any(|(_, names)| !names.is_empty());
        if flags.all && flags.selector.is_some() {
            return Err(Error::Message(
                "setting 'all' parameter but found a non empty selector. ".to_owned(),
            ));
        }
        if by_selector && has_names {
            return Err(Error::Message(
                "name cannot be provided when a selector is specified".to_owned(),
            ));
        }
        if !by_selector && !has_names {
            return Err(Error::Message(
                "resource(s) were provided, but no name was specified".to_owned(),
            ));
        }
        let api = ApiClient::connect(flags).await?;
        let namespace = api.namespace().to_owned();
        let mut targets = Vec::new();
        for (resource, names) in request.targets {
            if by_selector {
                let ns = (!flags.all_namespaces).then_some(namespace.as_str());
                let uri = format!(
                    "{}{}",
                    resource.collection_path(ns),
                    list_query(flags, false)
                );
                let list = api
                    .send(
                        Method::GET,
                        &uri,
                        ACCEPT_JSON,
                        None,
                        ("list", resource.plural),
                    )
                    .await
                    .and_then(|b| client::parse(&b, &uri))?;
                for item in list["items"].as_array().into_iter().flatten() {
                    let meta = &item["metadata"];
                    targets.push(Target {
                        resource,
                        namespace: meta["namespace"].as_str().unwrap_or(&namespace).to_owned(),
                        name: meta["name"].as_str().unwrap_or_default().to_owned(),
                        source: None,
                    });
                }
            } else {
                for name in names {
                    targets.push(Target {
                        resource,
                        namespace: namespace.clone(),
                        name,
                        source: None,
                    });
                }
            }
        }
        if by_selector && targets.is_empty() {
            // kubectl delete prints this one on stdout (kubectl get on stderr).
            println!("No resources found");
            return Ok(());
        }
        (api, targets)
    };
    if force_now {
        report(
            "Warning: Immediate deletion does not wait for confirmation that the running resource \
             has been terminated. The resource may continue to run on the cluster indefinitely.",
        );
    }
    let mut body = json!({"propagationPolicy": "Background"});
    if grace_period >= 0 {
        body["gracePeriodSeconds"] = json!(grace_period);
    }
    let body = serde_json::to_vec(&body)
        .map_err(|err| Error::Message(format!("cannot encode the delete options: {err}")))?;
    let mut deleted: Vec<(Target, Option<String>)> = Vec::new();
    for target in targets {
        let uri = target.resource.object_path(&target.namespace, &target.name);
        let answer = api
            .send(
                Method::DELETE,
                &uri,
                ACCEPT_JSON,
                Some(body.clone()),
                ("delete", target.resource.plural),
            )
            .await
            .and_then(|b| client::parse(&b, &uri));
        match answer {
            Ok(object) => {
                let verb = if force_now {
                    "force deleted"
                } else {
                    "deleted"
                };
                let scope = if target.resource.namespaced {
                    format!(" from {} namespace", target.namespace)
                } else {
                    String::new()
                };
                println!(
                    "{} \"{}\" {verb}{scope}",
                    target.resource.singular, target.name
                );
                let uid = object["metadata"]["uid"]
                    .as_str()
                    .or_else(|| object["details"]["uid"].as_str())
                    .map(str::to_owned);
                deleted.push((target, uid));
            }
            Err(Error::Api(err)) if err.is_not_found() && flags.ignore_not_found => {}
            Err(err) => match &target.source {
                Some(source) => errors.push(with_source(err, "deleting", source)),
                None => errors.push(err),
            },
        }
    }
    if flags.wait {
        for (target, uid) in &deleted {
            let spinner = crate::progress::waiting(format!(
                "waiting for {}/{} to go",
                target.resource.singular, target.name
            ));
            let gone = wait_gone(&api, target, uid.as_deref()).await;
            spinner.finish_and_clear();
            if let Err(err) = gone {
                errors.push(err);
            }
        }
    }
    finish(errors)
}

/// Waits until the object is gone (or replaced by another of the same name): a GET, then, while
/// it is there, a watch on its name from the version seen, as kubectl waits.
async fn wait_gone(api: &ApiClient, target: &Target, uid: Option<&str>) -> Result<()> {
    let uri = target.resource.object_path(&target.namespace, &target.name);
    loop {
        let current = match api
            .get_resource_json(&uri, ACCEPT_JSON, target.resource.plural)
            .await
        {
            Err(Error::Api(err)) if err.is_not_found() => return Ok(()),
            Err(err) => return Err(err),
            Ok(current) => current,
        };
        if uid.is_some() && current["metadata"]["uid"].as_str() != uid {
            return Ok(());
        }
        let version = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        let query = encode(&[
            (
                "fieldSelector".to_owned(),
                format!("metadata.name={}", target.name),
            ),
            ("resourceVersion".to_owned(), version.to_owned()),
            ("watch".to_owned(), "true".to_owned()),
        ]);
        let ns = target
            .resource
            .namespaced
            .then_some(target.namespace.as_str());
        let watch = format!("{}{query}", target.resource.collection_path(ns));
        let gone = api
            .watch_until(&watch, |event| {
                event["type"] == "DELETED"
                    || (uid.is_some()
                        && event["object"]["metadata"]["uid"].as_str() != uid
                        && event["type"] != "BOOKMARK"
                        && event["type"] != "ERROR")
            })
            .await;
        match gone {
            Ok(true) => return Ok(()),
            // The server ended the watch (or it failed): look again, after a pause so that a
            // server refusing watches is not asked in a tight loop.
            Ok(false) | Err(_) => tokio::time::sleep(WAIT_RETRY).await,
        }
    }
}
