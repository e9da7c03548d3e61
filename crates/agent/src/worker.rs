//! The pod workers: a watch of the pods bound to this node, and per pod a task that drives it
//! (sandbox, image, containers, restarts with back-off, status) and, once the pod is deleted,
//! stops its containers gracefully, removes everything and confirms the deletion. At start the
//! runtime's leftovers of pods that no longer exist here are removed and the rest re-adopted.
//! One pod's failure is reported on that pod and never stops the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use skiff_runtime::image::policy::{self, PullDecision};
use skiff_runtime::image::reference::Reference;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::events::{EventRecorder, EventType};
use crate::lifecycle::{self, Hook, HookTarget};
use crate::probe::action::PodTarget;
use crate::probe::{ProbeContext, ProbeKind, ProbeReport, Prober};
use crate::runtime::{
    container_id, container_pod_uid, parse_container_id, ImageRef, PodRuntime, RuntimeFailure,
    RuntimeResult, RuntimeState,
};
use crate::status::{
    back_off_message, pod_status, should_restart, status_patch, Backoff, ContainerRecord,
    ContainerView, PodView, RestartGate, Terminated, CONTAINER_CREATING, CRASH_LOOP_BACK_OFF,
};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
/// The longest a postStart hook may run: kubelet sets none, but a hook that never ends would
/// hold the pod's worker (and its deletion) for good.
const POST_START_LIMIT: Duration = Duration::from_secs(300);
/// kubelet's reason and message for a pod past its activeDeadlineSeconds.
const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// kubelet's reason for a pod its sysctl admission refused.
const SYSCTL_FORBIDDEN: &str = "SysctlForbidden";

/// What every pod worker of the node shares.
pub struct WorkerContext {
    pub client: kube::Client,
    pub node_name: String,
    /// The node's InternalIP: each pod's hostIP.
    pub host_ip: String,
    pub runtime: Arc<dyn PodRuntime>,
    pub events: EventRecorder,
    /// How often a pod's containers are looked at for exits.
    pub poll: Duration,
    /// The sysctls this node admits (kubelet's sysctl admission).
    pub sysctls: skiff_api::sysctl::SysctlAllowlist,
}

impl WorkerContext {
    pub fn new(
        client: kube::Client,
        node_name: impl Into<String>,
        host_ip: impl Into<String>,
        runtime: Arc<dyn PodRuntime>,
    ) -> WorkerContext {
        let node_name = node_name.into();
        WorkerContext {
            events: EventRecorder::new(client.clone(), node_name.clone()),
            client,
            node_name,
            host_ip: host_ip.into(),
            runtime,
            poll: Duration::from_secs(1),
            sysctls: skiff_api::sysctl::SysctlAllowlist::default(),
        }
    }
}

/// Runs a runtime call on a blocking thread; a panic in it becomes a failure of that call.
async fn blocking<T: Send + 'static>(
    runtime: &Arc<dyn PodRuntime>,
    call: impl FnOnce(&dyn PodRuntime) -> RuntimeResult<T> + Send + 'static,
) -> RuntimeResult<T> {
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || call(runtime.as_ref()))
        .await
        .unwrap_or_else(|e| Err(RuntimeFailure::new(format!("the runtime call failed: {e}"))))
}

/// Watches the pods bound to this node and keeps one worker per pod until the stream ends.
pub async fn run(ctx: Arc<WorkerContext>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut initial: Vec<Pod> = Vec::new();
    let mut adopted = false;
    // Pods whose worker ended (they were being deleted) while their object may still be
    // seen: a new worker for one of them takes over whatever its predecessor left.
    let mut ended: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        workers.retain(|uid, tx| {
            let live = !tx.is_closed();
            if !live {
                ended.insert(uid.clone());
            }
            live
        });
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(pod)) => initial.push(pod),
            Ok(Event::InitDone) => {
                let uids: HashSet<String> = initial
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect();
                if !adopted {
                    collect_garbage(&ctx, &uids).await;
                    adopted = true;
                }
                // Pods that went while the watch was away.
                for (uid, tx) in &workers {
                    if !uids.contains(uid) {
                        let _ = tx.send(None);
                    }
                }
                ended.retain(|uid| uids.contains(uid));
                // The runtime may hold something of any of these (the agent restarted, or the
                // watch was away): their workers adopt it.
                for pod in std::mem::take(&mut initial) {
                    dispatch(&ctx, &mut workers, pod, true);
                }
            }
            Ok(Event::Apply(pod)) => {
                // A pod first seen now has nothing in the runtime yet, unless a worker of
                // the same pod ended before: only then is the runtime's state listed.
                let adopt = pod.metadata.uid.as_ref().is_some_and(|u| ended.contains(u));
                dispatch(&ctx, &mut workers, pod, adopt);
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_ref() {
                    ended.remove(uid);
                    if let Some(tx) = workers.get(uid) {
                        let _ = tx.send(None);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(node = %ctx.node_name, error = %e, "watch of the node's pods failed; retrying")
            }
        }
    }
}

/// Hands `pod` to its worker, starting one if there is none; a new worker first takes over
/// what the runtime holds for the pod when `adopt` (a listing of every sandbox and container,
/// which a pod created while the agent runs does not need).
fn dispatch(
    ctx: &Arc<WorkerContext>,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    pod: Pod,
    adopt: bool,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(tx) = workers.get(&uid) {
        if tx.send(Some(pod.clone())).is_ok() {
            return;
        }
        // The worker ended: only a pod being deleted ends its worker, and a new one finds
        // nothing left to stop and confirms the deletion again (idempotent).
    }
    let (tx, rx) = watch::channel(Some(pod));
    workers.insert(uid.clone(), tx);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let worker = if adopt {
            PodWorker::adopt(ctx, uid).await
        } else {
            PodWorker::new(ctx, uid)
        };
        worker.run(rx).await;
    });
}

/// Removes what the runtime holds for pods that are not bound here any more (the agent was
/// away when they were deleted).
async fn collect_garbage(ctx: &WorkerContext, live: &HashSet<String>) {
    let live = live.clone();
    let result = blocking(&ctx.runtime, move |rt| {
        let mut errors = Vec::new();
        for id in rt.list_containers()? {
            let keep = container_pod_uid(&id).is_some_and(|uid| live.contains(uid));
            if !keep {
                tracing::info!(container = %id, "removing a container of a pod that is gone");
                let _ = rt.stop_container(&id, SIGKILL, Duration::ZERO);
                if let Err(e) = rt.remove_container(&id) {
                    errors.push(format!("container {id}: {e}"));
                }
            }
        }
        for sandbox in rt.list_sandboxes()? {
            let keep = sandbox
                .pod_uid
                .as_ref()
                .is_some_and(|uid| live.contains(uid));
            if !keep {
                tracing::info!(sandbox = %sandbox.id, "removing a sandbox of a pod that is gone");
                if let Err(e) = rt.remove_sandbox(&sandbox.id) {
                    errors.push(format!("sandbox {}: {e}", sandbox.id));
                }
            }
        }
        if let Err(e) = rt.collect_orphans(&live) {
            errors.push(e.0);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuntimeFailure(errors.join("; ")))
        }
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cleaning up leftovers of gone pods");
    }
}

/// One container of the pod as the worker tracks it.
#[derive(Default)]
struct Slot {
    /// The runtime id of the current instance.
    current: Option<String>,
    /// The previous instance, kept (for its status and logs) until the next restart.
    previous: Option<String>,
    /// How many times the container was restarted: the instance number of `current`.
    attempt: u32,
    last_terminated: Option<Terminated>,
    view: Option<ContainerView>,
    image: Option<ImageRef>,
    backoff: Backoff,
    pull_failures: u32,
    pull_retry_at: Option<Instant>,
    create_retry_at: Option<Instant>,
    /// The waiting reason last announced by an event, so a wait is announced once.
    announced: Option<String>,
    /// The probes of the running instance.
    prober: Option<Prober>,
}

impl Slot {
    /// Shows the container as waiting for `reason`; true when that reason was not announced
    /// yet (the caller then records its events), so each wait is announced once.
    fn wait(&mut self, reason: &str, message: String) -> bool {
        self.view = Some(ContainerView::Waiting {
            reason: reason.into(),
            message: Some(message),
        });
        if self.announced.as_deref() == Some(reason) {
            return false;
        }
        self.announced = Some(reason.into());
        true
    }
}

/// A new instance of a container, ready for the runtime to start.
struct PendingStart {
    id: String,
    container: Container,
    image: ImageRef,
}

/// What one container needs after a look at it.
enum Step {
    /// Nothing now; look again after this long if earlier than the poll.
    Wait(Option<Duration>),
    /// A new instance to start.
    Start(Box<PendingStart>),
}

/// The earlier of two optional wake-ups.
fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct PodWorker {
    ctx: Arc<WorkerContext>,
    uid: String,
    sandbox: Option<String>,
    pod_ips: Vec<String>,
    slots: BTreeMap<String, Slot>,
    start_time: Timestamp,
    posted: Option<PodStatus>,
    /// The last sandbox failure announced by an event (retries every few seconds would
    /// otherwise flood the pod's events).
    sandbox_failure: Option<String>,
    events: EventQueue,
    /// Woken by a prober whose report changed.
    probe_wake: Arc<Notify>,
    /// The pod's network namespace file, once looked up (probes and hooks connect in it).
    netns: Option<std::path::PathBuf>,
    /// Set when the node failed the pod (reason, message): rejected at admission, or past its
    /// activeDeadlineSeconds. Its containers are stopped and none starts again.
    failed: Option<(String, String)>,
    /// Containers taken over at start have their ended instances' messages read again with
    /// the pod's spec at hand (FallbackToLogsOnError needs it).
    adopted_messages: bool,
}

/// The pod's events, recorded in order by a task of their own so that their API calls overlap
/// the runtime's work instead of adding to a pod's start time. [`EventQueue::flush`] waits
/// until those queued so far are recorded: before a status patch, so whoever sees the status
/// also sees the events that led to it.
#[derive(Clone)]
struct EventQueue {
    tx: mpsc::UnboundedSender<Queued>,
}

enum Queued {
    Event {
        pod: Box<Pod>,
        container: Option<String>,
        kind: EventType,
        reason: String,
        message: String,
    },
    Flush(oneshot::Sender<()>),
}

impl EventQueue {
    fn new(ctx: Arc<WorkerContext>) -> EventQueue {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Ends once the worker (the only sender) is gone and the queue is drained.
        tokio::spawn(async move {
            while let Some(queued) = rx.recv().await {
                match queued {
                    Queued::Event {
                        pod,
                        container,
                        kind,
                        reason,
                        message,
                    } => {
                        ctx.events
                            .record(&pod, container.as_deref(), kind, &reason, &message)
                            .await
                    }
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        EventQueue { tx }
    }

    /// Queues `reason`/`message` about `pod` (and its container `container`); returns at once.
    async fn record(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.queue(pod, container, kind, reason, message);
    }

    /// [`EventQueue::record`] outside async code (a prober's event sink).
    fn queue(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let _ = self.tx.send(Queued::Event {
            pod: Box::new(pod.clone()),
            container: container.map(str::to_owned),
            kind,
            reason: reason.to_owned(),
            message: message.to_owned(),
        });
    }

    /// Waits until every event queued so far is recorded (or failed, which is logged).
    async fn flush(&self) {
        let (done, recorded) = oneshot::channel();
        if self.tx.send(Queued::Flush(done)).is_ok() {
            let _ = recorded.await;
        }
    }
}

/// Stopping one container: its preStop hook (counted against the grace period), then the
/// signal, SIGKILL after what is left of the grace.
struct StopOrder {
    runtime: Arc<dyn PodRuntime>,
    events: EventQueue,
    /// None: the pod object is gone, no hook runs.
    pod: Option<Pod>,
    container: Option<Container>,
    id: String,
    signal: i32,
    grace: Duration,
    target: PodTarget,
}

impl StopOrder {
    async fn run(self) -> RuntimeResult<()> {
        let mut grace = self.grace;
        if let (Some(pod), Some(container)) = (&self.pod, &self.container) {
            let handler = lifecycle::handler(container, Hook::PreStop).filter(|_| !grace.is_zero());
            if let Some(handler) = handler {
                let started = Instant::now();
                let label = hook_pod_label(pod);
                let target = HookTarget {
                    runtime: &self.runtime,
                    container,
                    container_id: &self.id,
                    pod: &label,
                    network: &self.target,
                };
                if let Err(message) = lifecycle::run(handler, &target, grace).await {
                    self.events.queue(
                        pod,
                        Some(&container.name),
                        EventType::Warning,
                        "FailedPreStopHook",
                        &message,
                    );
                }
                grace = lifecycle::grace_after_pre_stop(grace, started.elapsed());
            }
        }
        let (id, signal) = (self.id.clone(), self.signal);
        blocking(&self.runtime, move |rt| {
            rt.stop_container(&id, signal, grace)
        })
        .await
    }
}

/// The pod as kubelet names it in hook messages: `name_namespace(uid)`.
fn hook_pod_label(pod: &Pod) -> String {
    let (namespace, name) = pod_label(pod);
    format!(
        "{name}_{namespace}({})",
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The spec of container `name` of `pod` (regular or init).
fn container_spec(pod: &Pod, name: &str) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

fn terminated_from(id: &str, state: &RuntimeState) -> Option<Terminated> {
    match state {
        RuntimeState::Exited {
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => Some(Terminated {
            container_id: id.to_string(),
            exit_code: *exit_code,
            signal: None,
            reason: reason.clone(),
            message: message.clone(),
            started_at: *started_at,
            finished_at: *finished_at,
        }),
        _ => None,
    }
}

/// The message already worked out for instance `id` of the slot's container (its last look
/// saw it ended), so its log is read once, not at every look.
fn known_message(slot: &Slot, id: &str) -> Option<Option<String>> {
    let seen = match &slot.view {
        Some(ContainerView::Terminated(t)) if t.container_id == id => Some(t),
        _ => slot
            .last_terminated
            .as_ref()
            .filter(|t| t.container_id == id),
    };
    seen.map(|t| t.message.clone())
}

/// kubelet's limits on a termination message taken from the log.
const FALLBACK_LOG_LINES: usize = 80;
const FALLBACK_LOG_BYTES: usize = 2048;

/// The termination message of `ended` as kubelet reports it: what the container wrote to its
/// terminationMessagePath, or, with terminationMessagePolicy FallbackToLogsOnError, when it
/// failed (and did start) without writing one, the end of its log.
async fn fallback_message(
    runtime: &Arc<dyn PodRuntime>,
    container: &Container,
    ended: &Terminated,
) -> Option<String> {
    let written = ended.message.clone().filter(|m| !m.is_empty());
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        && ended.exit_code != 0
        && ended.reason != "StartError";
    if written.is_some() || !fallback {
        return written;
    }
    let id = ended.container_id.clone();
    match blocking(runtime, move |rt| {
        rt.log_tail(&id, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
    })
    .await
    {
        Ok(text) => text.filter(|t| !t.is_empty()),
        Err(e) => Some(format!(
            "Error on reading termination message from logs: {e}"
        )),
    }
}

/// How long a pod's containers get between the stop signal and SIGKILL, as kubelet:
/// `first` (a probe's or the deletion's own period) when set, else the pod's
/// terminationGracePeriodSeconds, else 30 s; a negative period counts as zero.
fn grace_period(pod: &Pod, first: Option<i64>) -> Duration {
    let seconds = first
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn pod_label(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl PodWorker {
    /// A worker for pod `uid`, which has nothing in the runtime yet.
    fn new(ctx: Arc<WorkerContext>, uid: String) -> PodWorker {
        PodWorker {
            events: EventQueue::new(ctx.clone()),
            ctx,
            uid,
            sandbox: None,
            pod_ips: Vec::new(),
            slots: BTreeMap::new(),
            start_time: Timestamp::now(),
            posted: None,
            sandbox_failure: None,
            probe_wake: Arc::new(Notify::new()),
            netns: None,
            failed: None,
            adopted_messages: false,
        }
    }

    /// A worker for pod `uid`, taking over the sandbox and containers the runtime already holds
    /// for it (the agent restarted): nothing is restarted.
    async fn adopt(ctx: Arc<WorkerContext>, uid: String) -> PodWorker {
        let mut worker = PodWorker::new(ctx, uid);
        let uid = worker.uid.clone();
        let found = blocking(&worker.ctx.runtime, move |rt| {
            let sandboxes: Vec<(String, Vec<String>)> = rt
                .list_sandboxes()?
                .into_iter()
                .filter(|s| s.pod_uid.as_deref() == Some(uid.as_str()))
                .map(|s| (s.id, s.pod_ips))
                .collect();
            let mut containers = Vec::new();
            for id in rt.list_containers()? {
                if let Some((attempt, name)) = parse_container_id(&uid, &id) {
                    let state = rt.container_state(&id)?;
                    containers.push((attempt, name.to_string(), id.clone(), state));
                }
            }
            Ok((sandboxes, containers))
        })
        .await;
        let (sandboxes, mut containers) = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(pod_uid = %worker.uid, error = %e, "cannot list the runtime's containers; starting afresh");
                return worker;
            }
        };
        // The pod keeps its IPs: they are the sandbox's.
        if let Some((id, ips)) = sandboxes.first().cloned() {
            worker.sandbox = Some(id);
            worker.pod_ips = ips;
        }
        if let Some(id) = worker.sandbox.clone() {
            let check = id.clone();
            if let Err(e) = blocking(&worker.ctx.runtime, move |rt| rt.verify_sandbox(&check)).await
            {
                // Kubelet's answer to a sandbox that changed: a new one, and every container
                // started again in it (as restarts).
                tracing::warn!(pod_uid = %worker.uid, sandbox = %id, error = %e, "the pod's sandbox is broken; replacing it");
                let ids: Vec<String> = containers.iter().map(|(_, _, id, _)| id.clone()).collect();
                let removed = blocking(&worker.ctx.runtime, move |rt| {
                    for c in &ids {
                        let _ = rt.stop_container(c, SIGKILL, Duration::ZERO);
                        let _ = rt.remove_container(c);
                    }
                    rt.remove_sandbox(&id)
                })
                .await;
                if let Err(e) = removed {
                    tracing::warn!(pod_uid = %worker.uid, error = %e, "removing the broken sandbox");
                }
                worker.sandbox = None;
                for (attempt, name, _, _) in containers {
                    let slot = worker.slots.entry(name).or_default();
                    slot.attempt = slot.attempt.max(attempt + 1);
                }
                return worker;
            }
        }
        containers.sort_by_key(|(attempt, _, _, _)| *attempt);
        for (attempt, name, id, state) in containers {
            let slot = worker.slots.entry(name).or_default();
            // In attempt order: the last one seen is the current instance.
            if let Some(current) = slot.current.take() {
                slot.previous = Some(current);
                slot.last_terminated = slot.view.take().and_then(|v| match v {
                    ContainerView::Terminated(t) => Some(t),
                    _ => None,
                });
            }
            slot.view = state
                .as_ref()
                .and_then(|s| terminated_from(&id, s))
                .map(ContainerView::Terminated);
            slot.current = Some(id);
            slot.attempt = attempt;
        }
        worker.adopted_messages = !worker.slots.is_empty();
        worker
    }

    /// The termination messages of the ended instances taken over at start, as kubelet
    /// reports them: with the log's tail for a FallbackToLogsOnError container that failed
    /// without writing one.
    async fn fill_adopted_messages(&mut self, pod: &Pod) {
        self.adopted_messages = false;
        let runtime = self.ctx.runtime.clone();
        for (name, slot) in self.slots.iter_mut() {
            let Some(container) = container_spec(pod, name) else {
                continue;
            };
            if let Some(ContainerView::Terminated(ended)) = slot.view.as_mut() {
                ended.message = fallback_message(&runtime, &container, ended).await;
            }
            if let Some(ended) = slot.last_terminated.as_mut() {
                ended.message = fallback_message(&runtime, &container, ended).await;
            }
        }
    }

    async fn run(mut self, mut rx: watch::Receiver<Option<Pod>>) {
        loop {
            let pod = rx.borrow_and_update().clone();
            let Some(pod) = pod else {
                // The object is gone (force-deleted, or deleted while the agent was away).
                self.tear_down(None, SIGKILL, Duration::ZERO).await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate(&pod).await;
                return;
            }
            let wake = self.sync(&pod).await;
            let probed = self.probe_wake.clone();
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The agent is stopping: the containers keep running.
                        return;
                    }
                }
                () = tokio::time::sleep(wake) => {}
                () = probed.notified() => {}
            }
        }
    }

    /// One pass over the pod: sandbox, each container, status. Returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> Duration {
        if self.adopted_messages {
            self.fill_adopted_messages(pod).await;
        }
        let (namespace, name) = pod_label(pod);
        let mut wake = self.ctx.poll;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        // kubelet's admission, before anything is made for the pod: a sysctl the node does
        // not allow rejects it.
        if self.failed.is_none() && self.sandbox.is_none() && !terminal {
            if let Err(message) = self.ctx.sysctls.admit(pod) {
                tracing::info!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, reason = SYSCTL_FORBIDDEN, %message, "pod rejected");
                self.events
                    .record(pod, None, EventType::Warning, SYSCTL_FORBIDDEN, &message)
                    .await;
                self.failed = Some((
                    SYSCTL_FORBIDDEN.into(),
                    format!("Pod was rejected: {message}"),
                ));
            }
        }
        if self.failed.is_none() && !terminal {
            if let Some(left) = self.deadline_left(pod) {
                if left.is_zero() {
                    self.fail(pod, DEADLINE_REASON, DEADLINE_MESSAGE).await;
                } else {
                    wake = wake.min(left);
                }
            }
        }
        if self.failed.is_some() {
            return self.sync_failed(pod).await;
        }
        if terminal && self.sandbox.is_none() {
            // It ended before this worker (the agent restarted; rejected, or its sandbox gone):
            // nothing is made for a finished pod again, and its status stays as it is.
            return self.ctx.poll.max(Duration::from_secs(5));
        }
        if self.sandbox.is_none() {
            let p = pod.clone();
            match blocking(&self.ctx.runtime, move |rt| rt.create_sandbox(&p)).await {
                Ok(created) => {
                    self.sandbox = Some(created.id);
                    self.pod_ips = created.pod_ips;
                    self.sandbox_failure = None;
                }
                Err(e) => {
                    tracing::warn!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, error = %e, "cannot create the pod sandbox");
                    let message = format!("Failed to create pod sandbox: {e}");
                    if self.sandbox_failure.as_ref() != Some(&message) {
                        self.events
                            .record(
                                pod,
                                None,
                                EventType::Warning,
                                "FailedCreatePodSandBox",
                                &message,
                            )
                            .await;
                        self.sandbox_failure = Some(message);
                    }
                    self.post_status(pod).await;
                    return Duration::from_secs(5);
                }
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_policy = spec.restart_policy.as_deref().unwrap_or("Always");
        // Init containers one at a time, each to completion (a sidecar, restartPolicy Always,
        // until it runs), before any regular container; a failed one is retried unless the
        // pod's policy is Never, as kubelet does.
        let init_policy = if pod_policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let mut initialized = true;
        for container in spec.init_containers.iter().flatten() {
            let sidecar = container.restart_policy.as_deref() == Some("Always");
            let policy = if sidecar { "Always" } else { init_policy };
            let step = self.sync_container(pod, container, terminal, policy).await;
            if let Some(next) = self.run_steps(pod, vec![step]).await {
                wake = wake.min(next);
            }
            let done = match self
                .slots
                .get(&container.name)
                .and_then(|s| s.view.as_ref())
            {
                // A sidecar lets the next one start once started (its startup probe passed).
                Some(ContainerView::Running { .. }) => {
                    sidecar && self.probe_report(container).started
                }
                Some(ContainerView::Terminated(t)) => !sidecar && t.exit_code == 0,
                _ => false,
            };
            if !done {
                initialized = false;
                break;
            }
        }
        if initialized {
            // Every container due is started at once: their runtime calls (most of a pod's
            // start time) overlap instead of adding up.
            let mut steps = Vec::with_capacity(spec.containers.len());
            for container in &spec.containers {
                steps.push(
                    self.sync_container(pod, container, terminal, pod_policy)
                        .await,
                );
            }
            if let Some(next) = self.run_steps(pod, steps).await {
                wake = wake.min(next);
            }
        }
        // Regular containers and sidecars are probed (the others' probers just stop).
        let probed: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .chain(&spec.containers)
            .cloned()
            .collect();
        if let Some(next) = self.sync_probes(pod, &probed).await {
            wake = wake.min(next);
        }
        self.post_status(pod).await;
        if terminal {
            self.stop_sandbox_when_done(pod).await;
        }
        wake
    }

    /// A finished pod keeps nothing running: once none of its containers runs, its sandbox
    /// (namespaces, network, address) is stopped, as kubelet stops a finished pod's sandbox.
    /// Its logs and status (its IPs included) stay until the pod is deleted.
    async fn stop_sandbox_when_done(&mut self, pod: &Pod) {
        // Running, or made and not yet started.
        let running = self.slots.values().any(|s| match &s.view {
            Some(ContainerView::Running { .. }) => true,
            Some(ContainerView::Waiting { reason, .. }) => {
                s.current.is_some() && reason == CONTAINER_CREATING
            }
            _ => false,
        });
        let Some(id) = self.sandbox.clone().filter(|_| !running) else {
            return;
        };
        let (namespace, name) = pod_label(pod);
        let stop = id.clone();
        match blocking(&self.ctx.runtime, move |rt| rt.stop_sandbox(&stop)).await {
            Ok(()) => {
                tracing::debug!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, sandbox = %id, "stopped the sandbox of a finished pod");
                self.sandbox = None;
                self.netns = None;
                // PodReadyToStartContainers turns False, as kubelet reports it.
                self.post_status(pod).await;
            }
            Err(e) => {
                tracing::warn!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, sandbox = %id, error = %e, "cannot stop the sandbox of a finished pod yet");
            }
        }
    }

    /// How long until the pod has been active (since its status.startTime) for its
    /// activeDeadlineSeconds; zero once it has; None without a deadline.
    fn deadline_left(&self, pod: &Pod) -> Option<Duration> {
        let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or(self.start_time, |t| t.0);
        let deadline = started
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds.max(0)))
            .ok()?;
        let left = Timestamp::now().duration_until(deadline);
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    /// Fails the pod as kubelet does one past its deadline: the event, then its containers
    /// stopped within the pod's grace period (preStop hooks run); the status says why.
    async fn fail(&mut self, pod: &Pod, reason: &str, message: &str) {
        let (namespace, name) = pod_label(pod);
        tracing::info!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, reason, "failing the pod");
        self.events
            .record(pod, None, EventType::Normal, reason, message)
            .await;
        self.failed = Some((reason.into(), message.into()));
        let grace = grace_period(pod, None);
        self.stop_containers(Some(pod), SIGTERM, grace).await;
    }

    /// A pass over a pod the node failed: its containers' last states, no start, no probe.
    async fn sync_failed(&mut self, pod: &Pod) -> Duration {
        let runtime = self.ctx.runtime.clone();
        for (name, slot) in self.slots.iter_mut() {
            slot.prober = None;
            let Some(id) = slot.current.clone() else {
                continue;
            };
            let query = id.clone();
            match blocking(&runtime, move |rt| rt.container_state(&query)).await {
                Ok(Some(state)) => {
                    if let Some(mut ended) = terminated_from(&id, &state) {
                        ended.message = match known_message(slot, &id) {
                            Some(known) => known,
                            None => {
                                let spec = container_spec(pod, name);
                                match spec {
                                    Some(c) => fallback_message(&runtime, &c, &ended).await,
                                    None => ended.message.clone(),
                                }
                            }
                        };
                        slot.view = Some(ContainerView::Terminated(ended));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(pod_uid = %self.uid, container = %name, error = %e, "cannot read the container's state")
                }
            }
        }
        self.post_status(pod).await;
        self.ctx.poll.max(Duration::from_secs(5))
    }

    /// What the probes of running `container` say: its prober's report, or before the prober
    /// of this instance ran, the initial one (not ready while a readiness probe is declared).
    fn probe_report(&self, container: &Container) -> ProbeReport {
        let slot = self.slots.get(&container.name);
        let running = match slot.and_then(|s| s.view.as_ref()) {
            Some(ContainerView::Running { container_id, .. }) => container_id,
            _ => return ProbeReport::default(),
        };
        slot.and_then(|s| s.prober.as_ref())
            .filter(|p| &p.container_id == running)
            .map(Prober::report)
            .unwrap_or_else(|| crate::probe::initial_report(container))
    }

    /// Where the pod's network actions go; the namespace is looked up once.
    async fn target(&mut self) -> PodTarget {
        if self.netns.is_none() {
            let uid = self.uid.clone();
            match blocking(&self.ctx.runtime, move |rt| rt.pod_network_namespace(&uid)).await {
                Ok(found) => self.netns = found,
                Err(e) => {
                    tracing::debug!(pod_uid = %self.uid, error = %e, "no network namespace for probes")
                }
            }
        }
        PodTarget {
            netns: self.netns.clone(),
            pod_ip: self.pod_ips.first().cloned(),
        }
    }

    /// Starts the probes of containers that began running, stops those of containers that
    /// stopped, and kills a container that failed its liveness or startup probe (it is then
    /// restarted as its restart policy says). Returns when to look again, if soon.
    async fn sync_probes(&mut self, pod: &Pod, containers: &[Container]) -> Option<Duration> {
        let mut wake = None;
        for container in containers {
            let running = match self
                .slots
                .get(&container.name)
                .and_then(|s| s.view.as_ref())
            {
                Some(ContainerView::Running {
                    container_id,
                    started_at,
                }) => Some((container_id.clone(), *started_at)),
                _ => None,
            };
            let Some((id, started_at)) = running else {
                if let Some(slot) = self.slots.get_mut(&container.name) {
                    slot.prober = None;
                }
                continue;
            };
            let current = self
                .slots
                .get(&container.name)
                .and_then(|s| s.prober.as_ref())
                .map(|p| p.container_id == id);
            let probes = crate::probe::probes_of(container);
            if current != Some(true) && !probes.is_empty() {
                // Only network probes need the pod's namespace looked up.
                let network = probes.iter().any(|(_, p)| {
                    p.http_get.is_some() || p.tcp_socket.is_some() || p.grpc.is_some()
                });
                let target = if network {
                    self.target().await
                } else {
                    PodTarget {
                        netns: None,
                        pod_ip: self.pod_ips.first().cloned(),
                    }
                };
                let (events, p, name) = (self.events.clone(), pod.clone(), container.name.clone());
                let sink: crate::probe::EventSink = Arc::new(move |kind, reason, message| {
                    events.queue(&p, Some(&name), kind, reason, &message);
                });
                let prober = Prober::start(ProbeContext {
                    container: container.clone(),
                    container_id: id.clone(),
                    started_at,
                    target,
                    runtime: self.ctx.runtime.clone(),
                    events: sink,
                    wake: self.probe_wake.clone(),
                });
                if let Some(slot) = self.slots.get_mut(&container.name) {
                    slot.prober = prober;
                }
            }
            let kill = self
                .slots
                .get(&container.name)
                .and_then(|s| s.prober.as_ref())
                .and_then(|p| p.report().kill);
            if let Some(kind) = kill {
                self.kill_unhealthy(pod, container, &id, kind).await;
                wake = Some(Duration::from_millis(50));
            }
        }
        wake
    }

    /// Kills a container that failed its liveness or startup probe, as kubelet: the Killing
    /// event, its preStop hook, then the stop signal with the grace period (the probe's own
    /// terminationGracePeriodSeconds, else the pod's).
    async fn kill_unhealthy(
        &mut self,
        pod: &Pod,
        container: &Container,
        id: &str,
        kind: ProbeKind,
    ) {
        let name = &container.name;
        let probe = match kind {
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            _ => container.startup_probe.as_ref(),
        };
        let what = match kind {
            ProbeKind::Liveness => "liveness",
            _ => "startup",
        };
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        let mut message = format!("Container {name} failed {what} probe");
        if policy != "Never" {
            message.push_str(", will be restarted");
        }
        self.events
            .record(pod, Some(name), EventType::Normal, "Killing", &message)
            .await;
        let grace = grace_period(pod, probe.and_then(|p| p.termination_grace_period_seconds));
        let signal = self
            .slots
            .get(name)
            .and_then(|s| s.image.as_ref())
            .and_then(|i| i.stop_signal)
            .unwrap_or(SIGTERM);
        let target = self.target().await;
        if let Some(slot) = self.slots.get_mut(name) {
            slot.prober = None;
        }
        let stop = StopOrder {
            runtime: self.ctx.runtime.clone(),
            events: self.events.clone(),
            pod: Some(pod.clone()),
            container: Some(container.clone()),
            id: id.to_string(),
            signal,
            grace,
            target,
        };
        if let Err(e) = stop.run().await {
            tracing::warn!(pod_uid = %self.uid, container = %name, error = %e, "cannot stop an unhealthy container");
        }
    }

    /// Looks at one container and decides what it needs: nothing yet (and when to look again,
    /// if earlier than the poll), or a new instance started.
    async fn sync_container(
        &mut self,
        pod: &Pod,
        container: &Container,
        terminal: bool,
        restart_policy: &str,
    ) -> Step {
        let name = container.name.clone();
        let runtime = self.ctx.runtime.clone();
        let slot = self.slots.entry(name.clone()).or_default();
        if let Some(id) = slot.current.clone() {
            let query = id.clone();
            match blocking(&runtime, move |rt| rt.container_state(&query)).await {
                Ok(Some(RuntimeState::Running { started_at })) => {
                    slot.view = Some(ContainerView::Running {
                        container_id: id,
                        started_at,
                    });
                    return Step::Wait(None);
                }
                Ok(Some(RuntimeState::Created)) => {
                    slot.view = Some(ContainerView::Waiting {
                        reason: CONTAINER_CREATING.into(),
                        message: None,
                    });
                    return Step::Wait(None);
                }
                Ok(Some(state)) => {
                    let Some(mut ended) = terminated_from(&id, &state) else {
                        return Step::Wait(None);
                    };
                    ended.message = match known_message(slot, &id) {
                        Some(known) => known,
                        None => fallback_message(&runtime, container, &ended).await,
                    };
                    if terminal || !should_restart(Some(restart_policy), ended.exit_code) {
                        slot.view = Some(ContainerView::Terminated(ended));
                        return Step::Wait(None);
                    }
                    match slot.backoff.gate(ended.finished_at, Timestamp::now()) {
                        RestartGate::Wait { remaining, delay } => {
                            let message = back_off_message(delay, &name, pod);
                            slot.view = Some(ContainerView::Waiting {
                                reason: CRASH_LOOP_BACK_OFF.into(),
                                message: Some(message),
                            });
                            slot.last_terminated = Some(ended);
                            if slot.announced.as_deref() != Some(id.as_str()) {
                                slot.announced = Some(id.clone());
                                let (namespace, pod_name) = pod_label(pod);
                                self.events
                                    .record(pod, Some(&name), EventType::Warning, "BackOff", &format!("Back-off restarting failed container {name} in pod {pod_name}_{namespace}({})", self.uid))
                                    .await;
                            }
                            return Step::Wait(Some(remaining));
                        }
                        RestartGate::Now => {
                            slot.last_terminated = Some(ended);
                            // Keep this instance as the previous one; drop the one before.
                            if let Some(old) = slot.previous.replace(id) {
                                let _ =
                                    blocking(&runtime, move |rt| rt.remove_container(&old)).await;
                            }
                            slot.current = None;
                            slot.attempt += 1;
                        }
                    }
                }
                Ok(None) => {
                    // The runtime lost it (removed by hand): start a new instance.
                    slot.current = None;
                    slot.attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(pod_uid = %self.uid, container = %name, error = %e, "cannot read the container's state");
                    return Step::Wait(None);
                }
            }
        }
        self.prepare_start(pod, container).await
    }

    /// Pulls the image as the policy says; the new instance of the container is then started
    /// by [`PodWorker::run_steps`].
    async fn prepare_start(&mut self, pod: &Pod, container: &Container) -> Step {
        let name = container.name.clone();
        let runtime = self.ctx.runtime.clone();
        let events = &self.events;
        if self.sandbox.is_none() {
            return Step::Wait(None);
        }
        let slot = self.slots.entry(name.clone()).or_default();
        let now = Instant::now();
        if let Some(at) = slot.create_retry_at.filter(|at| *at > now) {
            return Step::Wait(Some(at - now));
        }
        let image = container.image.clone().unwrap_or_default();
        let wanted = image.clone();
        let present = match blocking(&runtime, move |rt| rt.find_image(&wanted)).await {
            Ok(p) => p,
            Err(e) => {
                slot.view = Some(ContainerView::Waiting {
                    reason: "ErrImagePull".into(),
                    message: Some(e.to_string()),
                });
                return Step::Wait(Some(Duration::from_secs(5)));
            }
        };
        let client = &self.ctx.client;
        let pull_policy = container.image_pull_policy.clone().unwrap_or_default();
        let image_ref = match (
            policy::decide(&pull_policy, &image, present.is_some()),
            present,
        ) {
            (PullDecision::NeverPull { message }, _) => {
                let reason = "ErrImageNeverPull";
                if slot.wait(reason, message.clone()) {
                    events
                        .record(pod, Some(&name), EventType::Warning, reason, &message)
                        .await;
                    events
                        .record(
                            pod,
                            Some(&name),
                            EventType::Warning,
                            "Failed",
                            "Error: ErrImageNeverPull",
                        )
                        .await;
                }
                return Step::Wait(None);
            }
            (PullDecision::UseLocal, Some(found)) => {
                // As kubelet, which reads them on every sync: a pod naming a secret that is not
                // there hears of it even when its image is already on the node.
                fetch_pull_secrets(client, events, pod).await;
                events
                    .record(
                        pod,
                        Some(&name),
                        EventType::Normal,
                        "Pulled",
                        &format!("Container image {image:?} already present on machine"),
                    )
                    .await;
                found
            }
            (_, _) => {
                if let Some(at) = slot.pull_retry_at.filter(|at| *at > now) {
                    let reason = "ImagePullBackOff";
                    let message = format!("Back-off pulling image {image:?}");
                    if slot.wait(reason, message.clone()) {
                        events
                            .record(pod, Some(&name), EventType::Normal, "BackOff", &message)
                            .await;
                    }
                    return Step::Wait(Some(at - now));
                }
                let secrets = fetch_pull_secrets(client, events, pod).await;
                let credentials = match Reference::parse(&image) {
                    Ok(reference) => secrets.keyring.lookup(&reference),
                    Err(_) => Vec::new(),
                };
                events
                    .record(
                        pod,
                        Some(&name),
                        EventType::Normal,
                        "Pulling",
                        &format!("Pulling image {image:?}"),
                    )
                    .await;
                let started = Instant::now();
                let wanted = image.clone();
                match blocking(&runtime, move |rt| rt.pull_image(&wanted, &credentials)).await {
                    Ok(pulled) => {
                        slot.pull_failures = 0;
                        slot.pull_retry_at = None;
                        events
                            .record(
                                pod,
                                Some(&name),
                                EventType::Normal,
                                "Pulled",
                                &format!(
                                    "Successfully pulled image {image:?} in {:.3}s",
                                    started.elapsed().as_secs_f64()
                                ),
                            )
                            .await;
                        pulled
                    }
                    Err(e) => {
                        slot.pull_failures += 1;
                        let wait = policy::backoff(slot.pull_failures);
                        slot.pull_retry_at = Some(Instant::now() + wait);
                        // A failed pull is announced every time, as kubelet does.
                        slot.wait("ErrImagePull", e.to_string());
                        events
                            .record(
                                pod,
                                Some(&name),
                                EventType::Warning,
                                "Failed",
                                &format!("Failed to pull image {image:?}: {e}"),
                            )
                            .await;
                        events
                            .record(
                                pod,
                                Some(&name),
                                EventType::Warning,
                                "Failed",
                                "Error: ErrImagePull",
                            )
                            .await;
                        return Step::Wait(Some(wait));
                    }
                }
            }
        };
        slot.image = Some(image_ref.clone());
        Step::Start(Box::new(PendingStart {
            id: container_id(&self.uid, slot.attempt, &name),
            container: container.clone(),
            image: image_ref,
        }))
    }

    /// Starts the containers of `steps` that are due, all at once, and records how each start
    /// went; returns the earliest time to look again, if earlier than the poll.
    async fn run_steps(&mut self, pod: &Pod, steps: Vec<Step>) -> Option<Duration> {
        let mut wake: Option<Duration> = None;
        let mut starts = Vec::new();
        for step in steps {
            match step {
                Step::Wait(next) => wake = earliest(wake, next),
                Step::Start(start) => starts.push(*start),
            }
        }
        let Some(sandbox) = self.sandbox.clone() else {
            return wake;
        };
        let calls = starts.iter().map(|start| {
            let (p, c, id, image, sandbox) = (
                pod.clone(),
                start.container.clone(),
                start.id.clone(),
                start.image.clone(),
                sandbox.clone(),
            );
            blocking(&self.ctx.runtime, move |rt| {
                rt.start_container(&id, &p, &sandbox, &c, &image)
            })
        });
        let results = futures_util::future::join_all(calls).await;
        for (start, started) in starts.into_iter().zip(results) {
            let next = self.finish_start(pod, start, started).await;
            wake = earliest(wake, next);
        }
        wake
    }

    /// Records the outcome of starting `start`: running, or why not and when to retry.
    async fn finish_start(
        &mut self,
        pod: &Pod,
        start: PendingStart,
        started: RuntimeResult<()>,
    ) -> Option<Duration> {
        let PendingStart { id, container, .. } = start;
        let name = container.name.clone();
        let runtime = self.ctx.runtime.clone();
        let post_start = match (&started, lifecycle::handler(&container, Hook::PostStart)) {
            (Ok(()), Some(h)) if h.http_get.is_some() => Some(self.target().await),
            (Ok(()), Some(_)) => Some(PodTarget {
                netns: None,
                pod_ip: self.pod_ips.first().cloned(),
            }),
            _ => None,
        };
        let events = &self.events;
        let slot = self.slots.entry(name.clone()).or_default();
        match started {
            Ok(()) => {
                slot.current = Some(id.clone());
                slot.create_retry_at = None;
                slot.announced = None;
                slot.view = Some(ContainerView::Running {
                    container_id: id.clone(),
                    started_at: Timestamp::now(),
                });
                events
                    .record(
                        pod,
                        Some(&name),
                        EventType::Normal,
                        "Created",
                        &format!("Created container: {name}"),
                    )
                    .await;
                events
                    .record(
                        pod,
                        Some(&name),
                        EventType::Normal,
                        "Started",
                        &format!("Started container {name}"),
                    )
                    .await;
                if let (Some(network), Some(handler)) =
                    (post_start, lifecycle::handler(&container, Hook::PostStart))
                {
                    // As kubelet: the container is not Running until its postStart hook
                    // completed; a failed hook kills it (then the restart policy applies).
                    let running = slot.view.replace(ContainerView::Waiting {
                        reason: CONTAINER_CREATING.into(),
                        message: None,
                    });
                    let label = hook_pod_label(pod);
                    let target = HookTarget {
                        runtime: &runtime,
                        container: &container,
                        container_id: &id,
                        pod: &label,
                        network: &network,
                    };
                    let hooked = lifecycle::run(handler, &target, POST_START_LIMIT).await;
                    if hooked.is_ok() {
                        slot.view = running;
                    }
                    if let Err(message) = hooked {
                        events
                            .record(
                                pod,
                                Some(&name),
                                EventType::Warning,
                                "FailedPostStartHook",
                                &message,
                            )
                            .await;
                        events
                            .record(
                                pod,
                                Some(&name),
                                EventType::Normal,
                                "Killing",
                                "FailedPostStartHook",
                            )
                            .await;
                        let grace = grace_period(pod, None);
                        let signal = slot
                            .image
                            .as_ref()
                            .and_then(|i| i.stop_signal)
                            .unwrap_or(SIGTERM);
                        let stopped = id.clone();
                        if let Err(e) = blocking(&runtime, move |rt| {
                            rt.stop_container(&stopped, signal, grace)
                        })
                        .await
                        {
                            tracing::warn!(pod_uid = %self.uid, container = %name, error = %e, "cannot stop a container whose postStart hook failed");
                        }
                    }
                }
                // Read its real state (start time, or an exit already) at once.
                Some(Duration::from_millis(50))
            }
            Err(e) => {
                events
                    .record(
                        pod,
                        Some(&name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {e}"),
                    )
                    .await;
                let query = id.clone();
                let recorded = blocking(&runtime, move |rt| rt.container_state(&query)).await;
                if let Ok(Some(state @ RuntimeState::Exited { .. })) = recorded {
                    // The process could not start (a missing command): it counts as an exit,
                    // and the restart policy and back-off apply.
                    slot.view = terminated_from(&id, &state).map(ContainerView::Terminated);
                    slot.current = Some(id);
                    return Some(Duration::from_millis(50));
                }
                let cleanup = id.clone();
                let _ = blocking(&runtime, move |rt| rt.remove_container(&cleanup)).await;
                slot.view = Some(ContainerView::Waiting {
                    reason: e.create_reason().into(),
                    message: Some(e.to_string()),
                });
                let wait = Duration::from_secs(10);
                slot.create_retry_at = Some(Instant::now() + wait);
                Some(wait)
            }
        }
    }

    fn view(&self, pod: &Pod) -> PodView {
        let spec = pod.spec.clone().unwrap_or_default();
        PodView {
            sandbox_ready: self.sandbox.is_some(),
            host_ip: Some(self.ctx.host_ip.clone()),
            pod_ips: self.pod_ips.clone(),
            start_time: Some(self.start_time),
            failed: self.failed.clone(),
            containers: self.records(&spec.containers, false),
            init_containers: self
                .records(spec.init_containers.as_deref().unwrap_or_default(), true),
        }
    }

    /// What the worker knows of each of `containers` (none yet for one never tried).
    fn records(&self, containers: &[Container], init: bool) -> Vec<ContainerRecord> {
        containers
            .iter()
            .filter_map(|c| {
                let slot = self.slots.get(&c.name)?;
                let state = slot.view.clone()?;
                // Regular containers and sidecars have probes; other init containers cannot.
                let probed = !init || c.restart_policy.as_deref() == Some("Always");
                let report = match &state {
                    ContainerView::Running { .. } if !probed => ProbeReport {
                        started: true,
                        ready: true,
                        kill: None,
                    },
                    ContainerView::Running { .. } => self.probe_report(c),
                    _ => ProbeReport::default(),
                };
                Some(ContainerRecord {
                    name: c.name.clone(),
                    started: report.started,
                    ready: report.ready,
                    state,
                    last_terminated: slot.last_terminated.clone(),
                    restart_count: i32::try_from(slot.attempt).unwrap_or(i32::MAX),
                    image: slot
                        .image
                        .as_ref()
                        .map(|i| i.image.clone())
                        .unwrap_or_default(),
                    image_id: slot
                        .image
                        .as_ref()
                        .map(|i| i.image_id.clone())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Patches pods/status with what changed since the pod's current status (after the events
    /// queued so far are recorded).
    async fn post_status(&mut self, pod: &Pod) {
        self.events.flush().await;
        let status = pod_status(pod, &self.view(pod), Timestamp::now());
        if self.posted.as_ref() == Some(&status) {
            return;
        }
        let Some(patch) = status_patch(pod.status.as_ref(), &status) else {
            self.posted = Some(status);
            return;
        };
        let (namespace, name) = pod_label(pod);
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.posted = Some(status),
            Err(e) => {
                tracing::warn!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, error = %e, "cannot patch the pod's status")
            }
        }
    }

    /// The pod is being deleted: stop its containers within the grace period, remove
    /// everything, then confirm the deletion so the object goes.
    async fn terminate(&mut self, pod: &Pod) {
        let grace = grace_period(pod, pod.metadata.deletion_grace_period_seconds);
        self.tear_down(Some(pod), SIGTERM, grace).await;
        self.events.flush().await;
        let (namespace, name) = pod_label(pod);
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let mut pause = Duration::from_millis(500);
        for _ in 0..6 {
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, "pod deleted");
                    return;
                }
                // Already gone, or a new pod of the same name: nothing left to confirm.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod_namespace = %namespace, pod_name = %name, pod_uid = %self.uid, error = %e, "cannot confirm the pod's deletion; retrying")
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }

    /// Stops every container (`signal`, SIGKILL after `grace`; the image's StopSignal instead
    /// of SIGTERM), then removes the containers and the sandbox. Errors are collected and the
    /// removal retried a few times; what is still left is the start-up cleanup's job.
    async fn tear_down(&mut self, pod: Option<&Pod>, signal: i32, grace: Duration) {
        self.stop_containers(pod, signal, grace).await;
        self.remove_all().await;
    }

    /// Stops every container that has an instance (`signal`, SIGKILL after `grace`; the
    /// image's StopSignal instead of SIGTERM; preStop hooks of running ones first), and ends
    /// their probes.
    async fn stop_containers(&mut self, pod: Option<&Pod>, signal: i32, grace: Duration) {
        let mut stops = Vec::new();
        // Only an httpGet preStop hook needs the pod's network namespace looked up.
        let network_hook = pod.is_some_and(|p| {
            p.spec.iter().any(|spec| {
                spec.containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .filter_map(|c| lifecycle::handler(c, Hook::PreStop))
                    .any(|h| h.http_get.is_some())
            })
        });
        let target = if network_hook {
            self.target().await
        } else {
            PodTarget {
                netns: None,
                pod_ip: self.pod_ips.first().cloned(),
            }
        };
        for slot in self.slots.values_mut() {
            slot.prober = None;
        }
        for (name, slot) in &self.slots {
            let Some(id) = slot.current.clone() else {
                continue;
            };
            let running = matches!(slot.view, Some(ContainerView::Running { .. }));
            if let (Some(pod), true) = (pod, running) {
                self.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {name}"),
                    )
                    .await;
            }
            let signal = match (signal, slot.image.as_ref().and_then(|i| i.stop_signal)) {
                (SIGTERM, Some(custom)) => custom,
                (s, _) => s,
            };
            let stop = StopOrder {
                runtime: self.ctx.runtime.clone(),
                events: self.events.clone(),
                pod: pod.filter(|_| running).cloned(),
                container: pod.and_then(|p| container_spec(p, name)),
                id,
                signal,
                grace,
                target: target.clone(),
            };
            stops.push(tokio::spawn(stop.run()));
        }
        for stop in stops {
            match stop.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(pod_uid = %self.uid, error = %e, "cannot stop a container")
                }
                Err(e) => {
                    tracing::warn!(pod_uid = %self.uid, error = %e, "stopping a container failed")
                }
            }
        }
    }

    /// Removes every container instance and the sandbox, retrying a few times; what is still
    /// left is the start-up cleanup's job.
    async fn remove_all(&mut self) {
        let mut ids: Vec<String> = self
            .slots
            .values()
            .flat_map(|s| s.current.iter().chain(s.previous.iter()).cloned())
            .collect();
        let mut sandbox = self.sandbox.clone();
        for attempt in 0..5 {
            let (todo, sb, uid) = (ids.clone(), sandbox.clone(), self.uid.clone());
            let left = blocking(&self.ctx.runtime, move |rt| {
                let mut left = Vec::new();
                let mut errors = Vec::new();
                for id in todo {
                    if let Err(e) = rt.remove_container(&id) {
                        errors.push(format!("container {id}: {e}"));
                        left.push(id);
                    }
                }
                let mut sandbox_left = None;
                if let Some(sb) = sb {
                    if let Err(e) = rt.remove_sandbox(&sb) {
                        errors.push(format!("sandbox {sb}: {e}"));
                        sandbox_left = Some(sb);
                    }
                } else if let Err(e) = rt.remove_pod_files(&uid) {
                    // A finished pod's sandbox was stopped already; its files remain.
                    errors.push(format!("pod files: {e}"));
                }
                Ok((left, sandbox_left, errors))
            })
            .await;
            match left {
                Ok((left, sandbox_left, errors)) => {
                    if errors.is_empty() {
                        break;
                    }
                    tracing::warn!(pod_uid = %self.uid, attempt, errors = %errors.join("; "), "cannot remove all of the pod's containers and sandbox yet");
                    ids = left;
                    sandbox = sandbox_left;
                }
                Err(e) => {
                    tracing::warn!(pod_uid = %self.uid, error = %e, "removing the pod's containers failed")
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        self.slots.clear();
        self.sandbox = None;
        self.netns = None;
    }
}

/// The pod's pull secrets, with kubelet's warning about those that cannot be retrieved.
async fn fetch_pull_secrets(
    client: &kube::Client,
    events: &EventQueue,
    pod: &Pod,
) -> crate::pull_secrets::PullSecrets {
    let secrets = crate::pull_secrets::fetch(client, pod).await;
    if let Some(message) = secrets.missing_message() {
        events
            .record(
                pod,
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                &message,
            )
            .await;
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("pod")
    }

    #[test]
    fn grace_period_prefers_its_own_then_the_pods_then_30_seconds() {
        let with = pod(serde_json::json!({"containers": [], "terminationGracePeriodSeconds": 5}));
        let without = pod(serde_json::json!({"containers": []}));
        assert_eq!(grace_period(&with, Some(2)), Duration::from_secs(2));
        assert_eq!(grace_period(&with, None), Duration::from_secs(5));
        assert_eq!(grace_period(&without, None), Duration::from_secs(30));
        assert_eq!(grace_period(&with, Some(-1)), Duration::ZERO);
    }
}
