//! Events about pods, as kubelet records them (source component `kubelet`, the node as host).
//! An event identical to one recorded before (same object, container, type, reason and message:
//! a probe failing every second) bumps that event's count and lastTimestamp instead of adding
//! another, and past a burst of 25 only one in 5 minutes is written, as client-go's event
//! correlator does (its spam filter). Recording is best effort: a failure is logged, never
//! stops the pod's work.

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
    /// The events recorded so far, by what makes them identical.
    recorded: Mutex<HashMap<String, Remembered>>,
}

/// An event recorded before: its name, count and the spam filter's tokens.
struct Remembered {
    name: String,
    count: i32,
    bucket: SpamBucket,
}

/// client-go's spam filter for one event: a burst of 25, then one token per 5 minutes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpamBucket {
    tokens: f64,
    refilled: std::time::Instant,
}

const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: std::time::Duration = std::time::Duration::from_secs(300);

impl SpamBucket {
    /// A bucket that just paid for the event's first recording.
    pub fn new(now: std::time::Instant) -> SpamBucket {
        SpamBucket {
            tokens: SPAM_BURST - 1.0,
            refilled: now,
        }
    }

    /// Whether one more recording may go through at `now` (a token is taken if so).
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        let earned =
            now.saturating_duration_since(self.refilled).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        self.tokens = (self.tokens + earned).min(SPAM_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// What to do with an event.
enum Lookup {
    /// Record it (never seen, or forgotten).
    New,
    /// Bump the count of the event of this name to this.
    Repeat(String, i32),
    /// Too many of it lately: drop it.
    Skip,
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
        if let Lookup::Skip = seen {
            return;
        }
        if let Lookup::Repeat(event_name, count) = seen {
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

    /// What to do with the event identical to those recorded under `key`.
    fn remembered(&self, key: &str) -> Lookup {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let Some(seen) = recorded.get_mut(key) else {
            return Lookup::New;
        };
        if !seen.bucket.take(std::time::Instant::now()) {
            return Lookup::Skip;
        }
        seen.count = seen.count.saturating_add(1);
        Lookup::Repeat(seen.name.clone(), seen.count)
    }

    fn remember(&self, key: String, event_name: String) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.len() >= REMEMBERED {
            recorded.clear();
        }
        recorded.insert(
            key,
            Remembered {
                name: event_name,
                count: 1,
                bucket: SpamBucket::new(std::time::Instant::now()),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_spam_filter_lets_a_burst_through_then_one_per_five_minutes() {
        let start = Instant::now();
        let mut bucket = SpamBucket::new(start);
        // The first recording took one token: 24 more at once.
        for i in 0..24 {
            assert!(bucket.take(start), "repeat {i}");
        }
        assert!(!bucket.take(start));
        assert!(!bucket.take(start + Duration::from_secs(299)));
        assert!(bucket.take(start + Duration::from_secs(301)));
        assert!(!bucket.take(start + Duration::from_secs(302)));
        // A long quiet spell refills the burst, no more.
        let later = start + Duration::from_secs(86_400);
        for _ in 0..25 {
            assert!(bucket.take(later));
        }
        assert!(!bucket.take(later));
    }
}
