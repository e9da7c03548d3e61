//! Events about pods, as kubelet records them (source component `kubelet`, the node as host).
//! Recording is best effort: a failure is logged, never stops the pod's work.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
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
}

impl EventRecorder {
    pub fn new(client: kube::Client, node_name: impl Into<String>) -> EventRecorder {
        EventRecorder {
            client,
            node_name: node_name.into(),
            sequence: AtomicU64::new(0),
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
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(pod_namespace = namespace, pod_name = name, reason, error = %e, "cannot record an event");
        }
    }
}
