//! The scheduling loop: watches nodes and pods, schedules each pending pod of the default
//! scheduler, binds it through `pods/NAME/binding`, and reports an unschedulable pod in its
//! PodScheduled condition and a FailedScheduling event, retrying when the cluster changes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Event, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

use crate::schedule::{bound_node, is_terminal, Cluster};
use crate::Error;

/// The name pods ask for in `spec.schedulerName` to be scheduled here.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Kubernetes' per-pod back-off after a failed attempt: 1 s doubling to 10 s.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An unschedulable pod is retried after this long even when nothing changed (Kubernetes'
/// podMaxInUnschedulablePodsDuration).
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(300);
/// Watch events handled before scheduling, so a burst (the initial list) is one pass.
const EVENT_BATCH: usize = 1000;

/// Whether the pod waits for this scheduler.
pub fn is_pending(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    bound_node(pod).is_none()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

/// Whether the pod takes resources on a node (freeing them may let a pending pod fit).
fn holds_resources(pod: &Pod) -> bool {
    bound_node(pod).is_some() && !is_terminal(pod)
}

/// Whether a node update may change which pods fit it: its labels, taints, cordon, allocatable
/// or readiness. Heartbeats (condition times, images, addresses) do not, and would otherwise
/// retry every unschedulable pod at each one.
fn may_change_fit(old: &Node, new: &Node) -> bool {
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    let allocatable = |n: &Node| crate::resources::node_allocatable(n);
    let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone());
    let cordoned = |n: &Node| n.spec.as_ref().and_then(|s| s.unschedulable);
    old.metadata.labels != new.metadata.labels
        || taints(old) != taints(new)
        || cordoned(old) != cordoned(new)
        || allocatable(old) != allocatable(new)
        || ready(old) != ready(new)
}

fn key(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => uid.to_string(),
        None => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A pending pod's place in the queue.
#[derive(Debug)]
struct QueuedPod {
    attempts: u32,
    /// Back-off: not tried again before this.
    not_before: Instant,
    last_attempt: Option<Instant>,
    /// The cluster generation when it last failed to fit; it is retried once the cluster
    /// changed since (or after `UNSCHEDULABLE_RETRY`).
    unschedulable_at: Option<u64>,
}

impl QueuedPod {
    fn new(now: Instant) -> QueuedPod {
        QueuedPod {
            attempts: 0,
            not_before: now,
            last_attempt: None,
            unschedulable_at: None,
        }
    }

    fn failed(&mut self, now: Instant, unschedulable_at: Option<u64>) {
        self.attempts = self.attempts.saturating_add(1);
        let factor = 1u32
            .checked_shl(self.attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.not_before = now + INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF);
        self.last_attempt = Some(now);
        self.unschedulable_at = unschedulable_at;
    }

    /// When the pod may be tried again given the cluster generation.
    fn due_at(&self, generation: u64) -> Instant {
        match (self.unschedulable_at, self.last_attempt) {
            (Some(at), Some(last)) if at >= generation => {
                self.not_before.max(last + UNSCHEDULABLE_RETRY)
            }
            _ => self.not_before,
        }
    }
}

/// The last FailedScheduling event of a pod, so a repeat bumps its count (as Kubernetes'
/// event recorder aggregates) instead of adding an event per attempt.
#[derive(Debug)]
struct RecordedEvent {
    name: String,
    message: String,
    count: i32,
}

struct SchedulingLoop {
    client: Client,
    nodes: BTreeMap<String, Node>,
    pods: HashMap<String, Pod>,
    /// Objects of a re-list in progress, swapped in when it completes.
    node_buffer: Option<BTreeMap<String, Node>>,
    pod_buffer: Option<HashMap<String, Pod>>,
    nodes_synced: bool,
    pods_synced: bool,
    /// Bumped by every change that may let a pending pod fit.
    generation: u64,
    queue: HashMap<String, QueuedPod>,
    /// Pods bound here whose binding the watch has not shown yet, with their node: they count
    /// on it meanwhile, so two pods never take one node's last slot.
    assumed: HashMap<String, Pod>,
    failures: HashMap<String, RecordedEvent>,
    instance: String,
}

/// Schedules pending pods until `shutdown` resolves. Watch failures are retried with back-off
/// (re-listing), API failures are logged and the pod retried; nothing here ends the loop.
pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    let mut state = SchedulingLoop::new(client.clone());
    let pods =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff();
    let nodes = watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff();
    tokio::pin!(pods, nodes, shutdown);
    tracing::info!("scheduler started");
    loop {
        let wake = state.next_due();
        tokio::select! {
            _ = &mut shutdown => break,
            event = pods.next() => match event {
                Some(event) => state.on_pod_event(event),
                None => break,
            },
            event = nodes.next() => match event {
                Some(event) => state.on_node_event(event),
                None => break,
            },
            _ = sleep_until(wake) => {}
        }
        for _ in 0..EVENT_BATCH {
            if let Some(Some(event)) = pods.next().now_or_never() {
                state.on_pod_event(event);
            } else if let Some(Some(event)) = nodes.next().now_or_never() {
                state.on_node_event(event);
            } else {
                break;
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = state.schedule_due() => {}
        }
    }
    tracing::info!("scheduler stopped");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl SchedulingLoop {
    fn new(client: Client) -> SchedulingLoop {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        SchedulingLoop {
            client,
            nodes: BTreeMap::new(),
            pods: HashMap::new(),
            node_buffer: None,
            pod_buffer: None,
            nodes_synced: false,
            pods_synced: false,
            generation: 0,
            queue: HashMap::new(),
            assumed: HashMap::new(),
            failures: HashMap::new(),
            instance: format!("{SCHEDULER_NAME}-{host}"),
        }
    }

    fn on_pod_event(&mut self, event: Result<watcher::Event<Pod>, watcher::Error>) {
        match event {
            Err(e) => tracing::warn!(error = %e, "pod watch failed; re-listing"),
            Ok(watcher::Event::Init) => self.pod_buffer = Some(HashMap::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(buffer) = self.pod_buffer.as_mut() {
                    buffer.insert(key(&pod), pod);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(buffer) = self.pod_buffer.take() {
                    self.pods = buffer;
                }
                self.pods_synced = true;
                self.generation += 1;
                self.resync();
            }
            Ok(watcher::Event::Apply(pod)) => self.apply_pod(pod),
            Ok(watcher::Event::Delete(pod)) => self.delete_pod(&pod),
        }
    }

    fn on_node_event(&mut self, event: Result<watcher::Event<Node>, watcher::Error>) {
        let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
        match event {
            Err(e) => tracing::warn!(error = %e, "node watch failed; re-listing"),
            Ok(watcher::Event::Init) => self.node_buffer = Some(BTreeMap::new()),
            Ok(watcher::Event::InitApply(node)) => {
                if let Some(buffer) = self.node_buffer.as_mut() {
                    buffer.insert(name(&node), node);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(buffer) = self.node_buffer.take() {
                    self.nodes = buffer;
                }
                self.nodes_synced = true;
                self.generation += 1;
            }
            Ok(watcher::Event::Apply(node)) => {
                let old = self.nodes.insert(name(&node), node.clone());
                if old.is_none_or(|old| may_change_fit(&old, &node)) {
                    self.generation += 1;
                }
            }
            Ok(watcher::Event::Delete(node)) => {
                self.nodes.remove(&name(&node));
                self.generation += 1;
            }
        }
    }

    /// After a re-list: queue every pending pod, forget what is gone or confirmed.
    fn resync(&mut self) {
        let now = Instant::now();
        let pods = &self.pods;
        self.queue
            .retain(|k, _| pods.get(k).is_some_and(is_pending));
        self.assumed
            .retain(|k, _| pods.get(k).is_some_and(|p| bound_node(p).is_none()));
        self.failures.retain(|k, _| pods.contains_key(k));
        for (k, pod) in pods {
            if is_pending(pod) {
                self.queue
                    .entry(k.clone())
                    .or_insert_with(|| QueuedPod::new(now));
            }
        }
    }

    fn apply_pod(&mut self, pod: Pod) {
        let k = key(&pod);
        let pending = is_pending(&pod);
        let bound = bound_node(&pod).is_some();
        let frees = holds_resources(&pod);
        let old = self.pods.insert(k.clone(), pod);
        if old.as_ref().is_some_and(holds_resources) && !frees {
            self.generation += 1;
        }
        if bound {
            self.assumed.remove(&k);
        }
        // A pod just bound here may still show unbound in an event sent before the binding.
        if pending && !self.assumed.contains_key(&k) {
            let now = Instant::now();
            let entry = self
                .queue
                .entry(k.clone())
                .or_insert_with(|| QueuedPod::new(now));
            // A changed spec (a toleration added, say) deserves a fresh try.
            let spec_changed = match (&old, self.pods.get(&k)) {
                (Some(old), Some(new)) => old.spec != new.spec,
                _ => false,
            };
            if spec_changed {
                *entry = QueuedPod::new(now);
            }
        } else {
            self.queue.remove(&k);
            self.failures.remove(&k);
        }
    }

    fn delete_pod(&mut self, pod: &Pod) {
        let k = key(pod);
        if self.pods.remove(&k).as_ref().is_some_and(holds_resources) || holds_resources(pod) {
            self.generation += 1;
        }
        self.queue.remove(&k);
        self.assumed.remove(&k);
        self.failures.remove(&k);
    }

    /// When the next queued pod becomes due; None when nothing waits (or before the first
    /// complete list of both nodes and pods).
    fn next_due(&self) -> Option<Instant> {
        if !(self.nodes_synced && self.pods_synced) {
            return None;
        }
        self.queue.values().map(|q| q.due_at(self.generation)).min()
    }

    /// Tries every due pod, highest priority first, then oldest.
    async fn schedule_due(&mut self) {
        if !(self.nodes_synced && self.pods_synced) {
            return;
        }
        let now = Instant::now();
        let mut due: Vec<(i32, Option<Time>, String)> = self
            .queue
            .iter()
            .filter(|(_, q)| q.due_at(self.generation) <= now)
            .filter_map(|(k, _)| {
                let pod = self.pods.get(k)?;
                let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                Some((priority, pod.metadata.creation_timestamp.clone(), k.clone()))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| a.2.cmp(&b.2))
        });
        let nodes: Vec<Node> = self.nodes.values().cloned().collect();
        let counted = self.pods.iter().map(|(k, p)| match self.assumed.get(k) {
            Some(assumed) if bound_node(p).is_none() => assumed,
            _ => p,
        });
        let mut cluster = Cluster::build(&nodes, counted);
        for (_, _, k) in due {
            let Some(pod) = self.pods.get(&k).filter(|p| is_pending(p)).cloned() else {
                self.queue.remove(&k);
                continue;
            };
            match cluster.schedule(&pod) {
                Ok(node) => {
                    if self.bind(&k, &pod, &node).await {
                        cluster.assume(&pod, &node);
                    }
                }
                Err(fit) => {
                    let generation = self.generation;
                    if let Some(q) = self.queue.get_mut(&k) {
                        q.failed(Instant::now(), Some(generation));
                    }
                    let message = fit.to_string();
                    tracing::info!(
                        pod = %pod_ref(&pod),
                        uid = pod.metadata.uid.as_deref().unwrap_or_default(),
                        %message,
                        "pod is unschedulable"
                    );
                    self.report_unschedulable(&k, &pod, "Unschedulable", &message)
                        .await;
                }
            }
        }
    }

    /// Binds the pod; true when it is now bound to `node`.
    async fn bind(&mut self, k: &str, pod: &Pod, node: &str) -> bool {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let result = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await;
        match result {
            Ok(_) => {
                let mut assumed = pod.clone();
                if let Some(spec) = assumed.spec.as_mut() {
                    spec.node_name = Some(node.to_string());
                }
                self.assumed.insert(k.to_string(), assumed);
                self.queue.remove(k);
                self.failures.remove(k);
                tracing::info!(pod = %pod_ref(pod), uid = pod.metadata.uid.as_deref().unwrap_or_default(), node, "bound");
                let message = format!("Successfully assigned {namespace}/{name} to {node}");
                // Not awaited: the next pod's binding need not wait for this event.
                tokio::spawn(self.record_event(pod, "Normal", "Scheduled", "Binding", &message));
                true
            }
            // Gone, being deleted, or bound by someone else: no longer ours to schedule.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                tracing::debug!(pod = %pod_ref(pod), reason = %status.message, "pod no longer needs scheduling");
                self.queue.remove(k);
                false
            }
            Err(source) => {
                let error = Error::Bind {
                    pod: pod_ref(pod),
                    node: node.to_string(),
                    source,
                };
                tracing::warn!(%error, "binding failed; retrying");
                if let Some(q) = self.queue.get_mut(k) {
                    q.failed(Instant::now(), None);
                }
                let message = format!("binding rejected: {error}");
                self.report_unschedulable(k, pod, "SchedulerError", &message)
                    .await;
                false
            }
        }
    }

    /// PodScheduled=False with the reason and message (written only when they change), and a
    /// FailedScheduling event.
    async fn report_unschedulable(&mut self, k: &str, pod: &Pod, reason: &str, message: &str) {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let unchanged = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        });
        if !unchanged {
            let transition = match current {
                Some(c) if c.status == "False" => c.last_transition_time.clone(),
                _ => None,
            }
            .unwrap_or_else(now);
            let patch = json!({"status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }]}});
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            if let Err(source) = api
                .patch_status(
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                let error = Error::UpdateStatus {
                    pod: pod_ref(pod),
                    source,
                };
                tracing::warn!(%error, "cannot report the pod unschedulable");
            }
        }
        if let Some(previous) = self.failures.get_mut(k).filter(|r| r.message == message) {
            previous.count += 1;
            let patch = json!({"count": previous.count, "lastTimestamp": now()});
            let name = previous.name.clone();
            let api: Api<Event> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                return;
            }
        }
        if let Some(name) = self
            .record_event(pod, "Warning", "FailedScheduling", "Scheduling", message)
            .await
        {
            self.failures.insert(
                k.to_string(),
                RecordedEvent {
                    name,
                    message: message.to_string(),
                    count: 1,
                },
            );
        }
    }

    /// Creates an event about the pod from the default scheduler; its name when created.
    fn record_event(
        &self,
        pod: &Pod,
        type_: &str,
        reason: &str,
        action: &str,
        message: &str,
    ) -> impl Future<Output = Option<String>> + Send + 'static {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{pod_name}.{nanos:x}");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            action: Some(action.into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(SCHEDULER_NAME.into()),
                host: None,
            }),
            reporting_component: Some(SCHEDULER_NAME.into()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(now()),
            last_timestamp: Some(now()),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let pod = pod_ref(pod);
        async move {
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => Some(name),
                Err(source) => {
                    let error = Error::RecordEvent { pod, source };
                    tracing::warn!(%error, "event not recorded");
                    None
                }
            }
        }
    }
}

/// The current time at second precision, as Kubernetes' timestamps have.
fn now() -> Time {
    let seconds = k8s_openapi::jiff::Timestamp::now().as_second();
    Time(
        k8s_openapi::jiff::Timestamp::from_second(seconds)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::pod;

    #[test]
    fn pending_means_unbound_ours_ungated_alive_and_unfinished() {
        assert!(is_pending(&pod("p", json!({}))));
        assert!(!is_pending(&pod("p", json!({"spec": {"nodeName": "n"}}))));
        assert!(!is_pending(&pod(
            "p",
            json!({"spec": {"schedulerName": "other"}})
        )));
        assert!(is_pending(&pod(
            "p",
            json!({"spec": {"schedulerName": "default-scheduler"}})
        )));
        assert!(!is_pending(&pod(
            "p",
            json!({"spec": {"schedulingGates": [{"name": "g"}]}})
        )));
        assert!(!is_pending(&pod(
            "p",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})
        )));
        assert!(!is_pending(&pod(
            "p",
            json!({"status": {"phase": "Failed"}})
        )));
    }

    #[test]
    fn only_node_changes_that_matter_retry_pods() {
        use crate::filter::tests::node;
        let base = node("n", json!({}));
        let heartbeat = node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:10Z"}], "nodeInfo": {"kernelVersion": "6"}}}),
        );
        assert!(!may_change_fit(&base, &heartbeat));
        for changed in [
            node("n", json!({"metadata": {"labels": {"disk": "ssd"}}})),
            node(
                "n",
                json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
            ),
            node("n", json!({"spec": {"unschedulable": true}})),
            node("n", json!({"status": {"allocatable": {"memory": "8Gi"}}})),
            node(
                "n",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        ] {
            assert!(may_change_fit(&base, &changed), "{changed:?}");
        }
    }

    #[test]
    fn back_off_doubles_to_ten_seconds_and_waits_for_a_change() {
        let start = Instant::now();
        let mut q = QueuedPod::new(start);
        assert_eq!(q.due_at(0), start);
        let waits: Vec<u64> = (0..6)
            .map(|_| {
                q.failed(start, None);
                (q.not_before - start).as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        q.failed(start, Some(7));
        assert_eq!(
            q.due_at(7),
            start + UNSCHEDULABLE_RETRY,
            "no change: the periodic retry"
        );
        assert_eq!(
            q.due_at(8),
            start + MAX_BACKOFF,
            "a change: after the back-off"
        );
    }
}
