//! Namespace lifecycle: the built-in namespaces exist from the start, and a namespace being
//! deleted is emptied (pods deleted gracefully; events, secrets, leases) and then removed.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret};
use serde_json::Value;
use skiff_api::kinds::ApiKind;
use skiff_store::EventType;

use crate::codec;
use crate::error::{ApiError, Result};
use crate::registry::{BodyFormat, DeleteOptions, ListOptions, Registry};
use crate::resources::{self, ResourceInfo, NAMESPACES};

/// The namespaces every cluster has.
pub const BUILT_IN: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces that are missing.
pub async fn ensure_built_in(registry: &Registry) -> Result<()> {
    for name in BUILT_IN {
        if registry
            .store
            .get(&NAMESPACES.key(None, name))
            .await?
            .is_some()
        {
            continue;
        }
        let body = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{name}\"}}}}"
        );
        let decoded = registry.decode::<Namespace>(
            &NAMESPACES,
            body.as_bytes(),
            BodyFormat::Json,
            skiff_api::strict::FieldValidation::Strict,
        )?;
        match registry.create(&NAMESPACES, None, decoded, false).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn delete_all<K: ApiKind>(
    registry: &Registry,
    info: &ResourceInfo,
    namespace: &str,
) -> Result<usize> {
    let listed = registry
        .list(info, Some(namespace), &ListOptions::default())
        .await?;
    let mut left = 0;
    for item in &listed.items {
        let value: Value =
            serde_json::from_slice(item).map_err(|e| ApiError::internal(e.to_string()))?;
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match registry
            .delete::<K>(info, Some(namespace), name, &DeleteOptions::default())
            .await
        {
            Ok((_, true)) => {}
            Ok((_, false)) => left += 1,
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(left)
}

/// One pass over a terminating namespace: deletes its content; removes it once empty.
/// Returns whether it is gone.
async fn finalize(registry: &Registry, namespace: &str) -> Result<bool> {
    let mut left = 0;
    for info in resources::namespaced() {
        left += match info.kind {
            "Pod" => delete_all::<Pod>(registry, info, namespace).await?,
            "Event" => delete_all::<Event>(registry, info, namespace).await?,
            "Lease" => delete_all::<Lease>(registry, info, namespace).await?,
            "Secret" => delete_all::<Secret>(registry, info, namespace).await?,
            other => {
                return Err(ApiError::internal(format!(
                    "namespace deletion does not know how to delete {other}"
                )))
            }
        };
    }
    if left > 0 {
        return Ok(false);
    }
    let key = NAMESPACES.key(None, namespace);
    let Some(kv) = registry.store.get(&key).await? else {
        return Ok(true);
    };
    let ns: Namespace = codec::decode(&kv)?;
    if ns
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| !f.is_empty())
    {
        // Someone else's finalizer: clear ours and let them finish.
        return Ok(false);
    }
    match registry.store.delete(&key, Some(kv.mod_revision)).await {
        Ok(_) => {
            tracing::info!(namespace, "namespace deleted");
            Ok(true)
        }
        Err(skiff_store::Error::Conflict { .. }) => Ok(false),
        Err(skiff_store::Error::NotFound(_)) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

async fn terminating(registry: &Registry) -> Result<BTreeSet<String>> {
    let listed = registry.store.list(&NAMESPACES.prefix(None), None).await?;
    let mut out = BTreeSet::new();
    for kv in &listed.items {
        let ns: Namespace = codec::decode(kv)?;
        if ns.metadata.deletion_timestamp.is_some() {
            out.insert(ns.metadata.name.unwrap_or_default());
        }
    }
    Ok(out)
}

/// Runs the namespace controller until the store closes: reacts to namespaces being marked for
/// deletion and to objects leaving a terminating namespace.
pub async fn run(registry: Registry) -> Result<()> {
    let mut pending = terminating(&registry).await?;
    let from = registry.store.current_revision();
    // One watch over everything: namespace changes start work, deletions in a terminating
    // namespace let it finish.
    let mut changes = registry.store.watch("/registry/", from).await?;
    let mut retry = tokio::time::interval(Duration::from_secs(2));
    loop {
        let mut done = Vec::new();
        for ns in &pending {
            match finalize(&registry, ns).await {
                Ok(true) => done.push(ns.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(namespace = ns.as_str(), error = %e, "namespace deletion will be retried")
                }
            }
        }
        for ns in done {
            pending.remove(&ns);
        }
        tokio::select! {
            next = changes.next() => match next {
                None => return Ok(()),
                Some(Err(skiff_store::Error::WatchLagged)) => {
                    pending = terminating(&registry).await?;
                    changes = registry.store.watch("/registry/", registry.store.current_revision()).await?;
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(event)) => {
                    if event.kv.key.starts_with(&NAMESPACES.prefix(None)) && event.kind == EventType::Put {
                        let ns: Namespace = codec::decode(&event.kv)?;
                        if ns.metadata.deletion_timestamp.is_some() {
                            pending.insert(ns.metadata.name.unwrap_or_default());
                        }
                    }
                    // Any other change may be the last object of a terminating namespace going:
                    // the loop looks at the pending namespaces again.
                }
            },
            // Graceful pod deletions finish on their own time; look again now and then.
            _ = retry.tick(), if !pending.is_empty() => {}
        }
    }
}
