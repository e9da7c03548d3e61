//! Events about pods, as kubelet records them (source component `kubelet`, the node as host).
//! An event identical to one recorded before (same object, container, type, reason and message:
//! a probe failing every second) bumps that event's count and lastTimestamp instead of adding
//! another, as client-go's event correlator does. Recording is best effort: a failure is
//! logged, never stops the pod's work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Records events for the pods of one node.
pub struct EventRecorder {
    client: kube::Client,
    node_name: String,
    sequence: AtomicU64,
    /// The events recorded so far, by what makes them identical: their name and count.
    recorded: Mutex<HashMap<String, (String, i32)>>,
}

/// At most this many distinct events are remembered for aggregation (client-go's cache size).
const REMEMBERED: usize = 4096;

impl EventRecorder {
    pub fn new(client: kube::Client, node_name: impl Into<String>) -> EventRecorder {
        EventRecorder {
            client,
            node_name: node_name.into(),
            sequence: AtomicU64::new(0),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Records `reason`/`message` about `pod` (and its container `container`, if any).
    pub async fn record(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let now = Timestamp::now();
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let key = format!(
            "{namespace}\0{name}\0{}\0{}\0{kind:?}\0{reason}\0{message}",
            pod.metadata.uid.as_deref().unwrap_or_default(),
            container.unwrap_or_default()
        );
        let seen = self.remembered(&key);
        if let Some((event_name, count)) = seen {
            let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now)});
            match api
                .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                // Gone (expired, deleted): recorded anew below.
                Err(e) => {
                    tracing::debug!(pod_namespace = namespace, pod_name = name, reason, error = %e, "cannot update an event; recording it again")
                }
            }
        }
        // Unique like client-go's `<pod>.<hex nanoseconds>`, plus a sequence for two events in
        // the same nanosecond.
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let event_name = format!("{name}.{:x}{seq:x}", now.as_nanosecond());
        let event = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": namespace,
                "name": name,
                "uid": pod.metadata.uid,
                "resourceVersion": pod.metadata.resource_version,
                "fieldPath": container.map(|c| format!("spec.containers{{{c}}}")),
            },
            "reason": reason,
            "message": message,
            "type": match kind { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
            "firstTimestamp": Time(now),
            "lastTimestamp": Time(now),
            "count": 1,
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, reason, "cannot build an event");
                return;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.remember(key, event_name),
            Err(e) => {
                tracing::warn!(pod_namespace = namespace, pod_name = name, reason, error = %e, "cannot record an event")
            }
        }
    }

    /// The name of the event recorded under `key` and its count with this one, if any.
    fn remembered(&self, key: &str) -> Option<(String, i32)> {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let (name, count) = recorded.get_mut(key)?;
        *count = count.saturating_add(1);
        Some((name.clone(), *count))
    }

    fn remember(&self, key: String, event_name: String) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.len() >= REMEMBERED {
            recorded.clear();
        }
        recorded.insert(key, (event_name, 1));
    }
}
