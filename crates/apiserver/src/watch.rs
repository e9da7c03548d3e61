//! Watches: the current objects as ADDED events when asked, then every change from a revision on,
//! filtered by selectors, with bookmarks. One store fan-out feeds every watcher.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use skiff_store::{EventType, Revision};
use tokio::sync::mpsc;

use crate::codec;
use crate::error::{ApiError, Result};
use crate::registry::{matches_value, ListOptions, Registry};
use crate::resources::ResourceInfo;

/// What a watcher asked for.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub list: ListOptions,
    /// Changes after this revision; None ("" or "0") starts with the current objects as ADDED.
    pub resource_version: Option<Revision>,
    /// The WatchList protocol: the current objects, then a bookmark marking their end.
    pub send_initial_events: bool,
    pub allow_bookmarks: bool,
    pub timeout: Duration,
    pub bookmark_interval: Duration,
}

/// One event on the wire.
#[derive(Debug)]
pub enum WatchEvent {
    Added(Vec<u8>),
    Modified(Vec<u8>),
    Deleted(Vec<u8>),
    Bookmark {
        revision: Revision,
        initial_events_end: bool,
    },
    Error(ApiError),
}

impl WatchEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark { .. } => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        }
    }
}

/// The object of a bookmark event.
pub fn bookmark_object(info: &ResourceInfo, revision: Revision, initial_events_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata})
}

fn matches(info: &ResourceInfo, body: &[u8], options: &ListOptions) -> bool {
    if options.label_selector.is_empty() && options.field_selector.is_empty() {
        return true;
    }
    serde_json::from_slice::<Value>(body)
        .map(|v| matches_value(info, &v, options))
        .unwrap_or(false)
}

/// Starts a watch. Errors that happen before the first event (a bad request) are returned;
/// later ones arrive as an ERROR event, as Kubernetes does.
pub async fn start(
    registry: &Registry,
    info: &'static ResourceInfo,
    namespace: Option<String>,
    options: WatchOptions,
) -> Result<mpsc::Receiver<WatchEvent>> {
    let (initial, from) = if options.send_initial_events || options.resource_version.is_none() {
        let listed = registry
            .list(info, namespace.as_deref(), &options.list)
            .await?;
        (listed.items, listed.revision)
    } else {
        (Vec::new(), options.resource_version.unwrap_or(0))
    };
    let current = registry.store.current_revision();
    if from > current {
        return Err(skiff_store::Error::FutureRevision {
            requested: from,
            current,
        }
        .into());
    }
    let prefix = info.prefix(namespace.as_deref());
    let stream = registry.store.watch(&prefix, from).await;
    let (tx, rx) = mpsc::channel(128);
    tokio::spawn(async move {
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                let _ = tx.send(WatchEvent::Error(e.into())).await;
                return;
            }
        };
        for item in initial {
            if tx.send(WatchEvent::Added(item)).await.is_err() {
                return;
            }
        }
        if options.send_initial_events
            && tx
                .send(WatchEvent::Bookmark {
                    revision: from,
                    initial_events_end: true,
                })
                .await
                .is_err()
        {
            return;
        }
        let mut last = from;
        let deadline = tokio::time::sleep(options.timeout);
        tokio::pin!(deadline);
        let mut bookmarks = tokio::time::interval(options.bookmark_interval);
        bookmarks.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmarks.tick(), if options.allow_bookmarks => {
                    if tx.send(WatchEvent::Bookmark { revision: last, initial_events_end: false }).await.is_err() {
                        return;
                    }
                }
                next = stream.next() => {
                    let event = match next {
                        None => return,
                        Some(Err(skiff_store::Error::WatchLagged)) => {
                            let _ = tx.send(WatchEvent::Error(ApiError::gone("the watch fell too far behind and was closed; list again and watch from the new resourceVersion"))).await;
                            return;
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(WatchEvent::Error(e.into())).await;
                            return;
                        }
                        Some(Ok(event)) => event,
                    };
                    last = event.kv.mod_revision;
                    let out = match event.kind {
                        EventType::Delete => {
                            let body = codec::with_revision(&event.kv.value, event.kv.mod_revision);
                            matches(info, &body, &options.list).then_some(WatchEvent::Deleted(body))
                        }
                        EventType::Put => {
                            let body = codec::read(&event.kv);
                            let now = matches(info, &body, &options.list);
                            let before = event.prev.as_ref().map(|p| matches(info, &codec::read(p), &options.list));
                            match (before, now) {
                                (None, true) | (Some(false), true) => Some(WatchEvent::Added(body)),
                                (Some(true), true) => Some(WatchEvent::Modified(body)),
                                // It no longer matches: for this watcher it is gone.
                                (Some(true), false) => Some(WatchEvent::Deleted(body)),
                                _ => None,
                            }
                        }
                    };
                    if let Some(out) = out {
                        if tx.send(out).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(rx)
}
