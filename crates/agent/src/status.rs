//! What Kubernetes reports for a pod, computed from its spec and the runtime's view of each
//! container: phase (kubelet's getPhase), conditions with kubelet's reasons, container statuses,
//! IPs, start time and QoS class; and the restart policy with CrashLoopBackOff's back-off. Pure
//! functions: the pod worker gathers the view, this module says what it means.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A container that ended, as the runtime recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    /// The runtime's id (reported as `skiff://<id>`).
    pub container_id: String,
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, ...
    pub reason: String,
    /// The termination message, or the runtime's error.
    pub message: Option<String>,
    /// None when the process never started.
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

/// The current state of one container of the pod.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerView {
    /// Not running, and why (`ContainerCreating`, `ErrImageNeverPull`, `CrashLoopBackOff`, ...).
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        container_id: String,
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// One container of the pod as the node knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    pub state: ContainerView,
    /// The previous instance, when the container was restarted (or waits to be).
    pub last_terminated: Option<Terminated>,
    pub restart_count: i32,
    /// The startup probe passed (or there is none); only meant while running.
    pub started: bool,
    /// Started and the readiness probe passed (or there is none); only meant while running.
    pub ready: bool,
    /// The image as reported (`docker.io/library/busybox:1.36`) and its id (`...@sha256:...`);
    /// empty until the image is known.
    pub image: String,
    pub image_id: String,
}

/// Everything the node knows about a pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView {
    /// The sandbox exists (namespaces and network set up): PodReadyToStartContainers.
    pub sandbox_ready: bool,
    pub host_ip: Option<String>,
    pub pod_ips: Vec<String>,
    /// When the agent first accepted the pod.
    pub start_time: Option<Timestamp>,
    /// The node failed the pod (reason, message): rejected at admission (`SysctlForbidden`)
    /// or past its activeDeadlineSeconds (`DeadlineExceeded`).
    pub failed: Option<(String, String)>,
    pub containers: Vec<ContainerRecord>,
    pub init_containers: Vec<ContainerRecord>,
}

/// The waiting reason of a container that has not been created yet.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// The waiting reason of containers of a pod whose init containers have not completed.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// The waiting reason of a container held back by the restart back-off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// The pod's status at `now`. Conditions not owned by the agent are kept from the pod's current
/// status, a condition whose status did not change keeps its lastTransitionTime, and a terminal
/// phase never changes back, as in kubelet.
pub fn pod_status(pod: &Pod, view: &PodView, now: Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let previous = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();
    // Kubelet's default waiting reason: PodInitializing while the pod has init containers.
    let first_wait = if init_specs.is_empty() {
        CONTAINER_CREATING
    } else {
        POD_INITIALIZING
    };
    let statuses = container_statuses(&spec.containers, &view.containers, first_wait);
    let init_statuses = container_statuses(init_specs, &view.init_containers, POD_INITIALIZING);
    let mut phase = phase(&spec, &statuses, &init_statuses);
    let old_phase = previous.phase.as_deref().unwrap_or_default();
    if matches!(old_phase, "Succeeded" | "Failed") {
        phase = old_phase;
    } else if view.failed.is_some() {
        phase = "Failed";
    }
    let rejected = view.failed.is_some()
        && !view.sandbox_ready
        && view.containers.is_empty()
        && view.init_containers.is_empty();
    let (pod_reason, pod_message) = match &view.failed {
        Some((reason, message)) if old_phase != "Succeeded" => {
            (Some(reason.clone()), Some(message.clone()))
        }
        _ => (
            previous.reason.clone().filter(|_| phase == old_phase),
            previous.message.clone().filter(|_| phase == old_phase),
        ),
    };

    let mut conditions: Vec<PodCondition> = previous
        .conditions
        .iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let old = previous.conditions.as_deref().unwrap_or_default();
    // Kubernetes 1.35 (PodObservedGenerationTracking): which spec the status describes.
    let generation = pod.metadata.generation;
    let mut set = |kind: &str, status: bool, reason: Option<String>, message: Option<String>| {
        let status = if status { "True" } else { "False" };
        let transition = old
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        conditions.push(PodCondition {
            type_: kind.into(),
            status: status.into(),
            reason,
            message,
            observed_generation: generation,
            last_transition_time: Some(transition),
            ..PodCondition::default()
        });
    };
    // A pod rejected at admission has no condition at all (kubelet writes only its phase,
    // reason and message, and drops the conditions it owns, the scheduler's PodScheduled too).
    if !rejected {
        set("PodReadyToStartContainers", view.sandbox_ready, None, None);
        let (initialized, reason, message) = initialized(&spec, &init_statuses, phase);
        set("Initialized", initialized, reason, message);
        let sidecars: Vec<&ContainerStatus> = init_specs
            .iter()
            .filter(|c| is_restartable_init(c))
            .filter_map(|c| find(&init_statuses, &c.name))
            .collect();
        let (ready, reason, message) = containers_ready(&sidecars, &statuses, phase);
        set("Ready", ready, reason.clone(), message.clone());
        set("ContainersReady", ready, reason, message);
        set("PodScheduled", true, None, None);
    }

    let host_ip = view.host_ip.clone().or(previous.host_ip);
    let pod_ip = view.pod_ips.first().cloned().or(previous.pod_ip);
    let pod_ips = if view.pod_ips.is_empty() {
        previous.pod_ips
    } else {
        Some(
            view.pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect(),
        )
    };
    PodStatus {
        phase: Some(phase.into()),
        observed_generation: generation,
        // Always sent: an empty list clears the scheduler's condition of a rejected pod too.
        conditions: Some(conditions),
        host_ips: host_ip.clone().map(|ip| vec![HostIP { ip }]),
        host_ip,
        pod_ip,
        pod_ips,
        start_time: previous.start_time.or_else(|| view.start_time.map(Time)),
        qos_class: previous
            .qos_class
            .or_else(|| Some(skiff_api::defaults::qos_class(&spec).into())),
        // A pod rejected at admission never had a container: kubelet reports none.
        container_statuses: (!rejected).then_some(statuses),
        init_container_statuses: (!init_statuses.is_empty() && !rejected).then_some(init_statuses),
        reason: pod_reason,
        message: pod_message,
        ..PodStatus::default()
    }
}

/// The conditions the agent owns; others (e.g. DisruptionTarget) pass through.
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(container_id(&t.container_id)),
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(Time),
        finished_at: Some(Time(t.finished_at)),
    }
}

/// A container id as reported: `skiff://<id>`.
pub fn container_id(id: &str) -> String {
    format!("skiff://{id}")
}

/// One status per container of the spec, in the spec's order; a container the node has no
/// record of yet is waiting in ContainerCreating.
fn container_statuses(
    specs: &[Container],
    records: &[ContainerRecord],
    first_wait: &str,
) -> Vec<ContainerStatus> {
    specs
        .iter()
        .map(|c| {
            let Some(record) = records.iter().find(|r| r.name == c.name) else {
                return ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: String::new(),
                    ready: false,
                    restart_count: 0,
                    started: Some(false),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(first_wait.into()),
                            message: None,
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                };
            };
            let (state, id, running) = match &record.state {
                ContainerView::Waiting { reason, message } => (
                    ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.clone()),
                            message: message.clone(),
                        }),
                        ..ContainerState::default()
                    },
                    // A waiting container reports the id of the instance that last ran.
                    record
                        .last_terminated
                        .as_ref()
                        .map(|t| t.container_id.clone()),
                    false,
                ),
                ContainerView::Running {
                    container_id,
                    started_at,
                } => (
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(*started_at)),
                        }),
                        ..ContainerState::default()
                    },
                    Some(container_id.clone()),
                    true,
                ),
                ContainerView::Terminated(t) => (
                    ContainerState {
                        terminated: Some(terminated_state(t)),
                        ..ContainerState::default()
                    },
                    Some(t.container_id.clone()),
                    false,
                ),
            };
            let image = if record.image.is_empty() {
                c.image.clone().unwrap_or_default()
            } else {
                record.image.clone()
            };
            ContainerStatus {
                name: c.name.clone(),
                image,
                image_id: record.image_id.clone(),
                container_id: id.map(|i| container_id(&i)),
                ready: running && record.ready,
                started: Some(running && record.started),
                restart_count: record.restart_count,
                state: Some(state),
                last_state: Some(ContainerState {
                    terminated: record.last_terminated.as_ref().map(terminated_state),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }
        })
        .collect()
}

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn state_of(s: &ContainerStatus) -> ContainerState {
    s.state.clone().unwrap_or_default()
}

fn last_terminated(s: &ContainerStatus) -> Option<ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|l| l.terminated.clone())
}

/// kubelet's getPhase (for a pod that is not being torn down).
pub fn phase(
    spec: &PodSpec,
    containers: &[ContainerStatus],
    init_containers: &[ContainerStatus],
) -> &'static str {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut pending_initialization = 0;
    let mut failed_initialization = 0;
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(init_containers, &c.name) else {
            if is_restartable_init(c) {
                unknown += 1;
            } else {
                pending_initialization += 1;
            }
            continue;
        };
        let state = state_of(s);
        if is_restartable_init(c) {
            if state.running.is_some() {
                if s.started != Some(true) {
                    pending_initialization += 1;
                }
                running += 1;
            } else if state.waiting.is_some() && last_terminated(s).is_none() {
                pending_initialization += 1;
                waiting += 1;
            } else if state.terminated.is_none() && state.waiting.is_none() {
                pending_initialization += 1;
                unknown += 1;
            }
            continue;
        }
        if state.running.is_some() {
            pending_initialization += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_initialization += 1;
            }
        } else if state.waiting.is_some() {
            match last_terminated(s) {
                Some(t) if t.exit_code != 0 => failed_initialization += 1,
                Some(_) => {}
                None => pending_initialization += 1,
            }
        } else {
            pending_initialization += 1;
        }
    }
    for c in &spec.containers {
        let Some(s) = find(containers, &c.name) else {
            unknown += 1;
            continue;
        };
        let state = state_of(s);
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if last_terminated(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_initialization > 0 && policy == "Never" {
        return "Failed";
    }
    let any_regular_started = containers.iter().any(|s| {
        let state = state_of(s);
        state.running.is_some() || state.terminated.is_some() || last_terminated(s).is_some()
    });
    if (pending_initialization > 0 && !any_regular_started) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// kubelet's Initialized condition: all regular init containers completed.
fn initialized(
    spec: &PodSpec,
    init_statuses: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    let mut incomplete = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let done = find(init_statuses, &c.name).is_some_and(|s| {
            let state = state_of(s);
            if is_restartable_init(c) {
                s.started == Some(true)
            } else {
                state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
            }
        });
        if !done {
            incomplete.push(c.name.clone());
        }
    }
    if incomplete.is_empty() || phase == "Succeeded" {
        return (true, None, None);
    }
    (
        false,
        Some("ContainersNotInitialized".into()),
        Some(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        )),
    )
}

/// kubelet's ContainersReady (and, without readiness gates, Ready) condition.
fn containers_ready(
    sidecars: &[&ContainerStatus],
    statuses: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    if phase == "Succeeded" {
        return (false, Some("PodCompleted".into()), None);
    }
    // Sidecars (restartable init containers) count, first, as in kubelet.
    let unready: Vec<&str> = sidecars
        .iter()
        .copied()
        .chain(statuses)
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    if unready.is_empty() {
        return (true, None, None);
    }
    (
        false,
        Some("ContainersNotReady".into()),
        Some(format!(
            "containers with unready status: [{}]",
            unready.join(" ")
        )),
    )
}

/// Whether a container that ended with `exit_code` is started again under `restart_policy`
/// (kubelet's ShouldContainerBeRestarted, for a pod not being deleted).
pub fn should_restart(restart_policy: Option<&str>, exit_code: i32) -> bool {
    match restart_policy.unwrap_or("Always") {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The first back-off after a crash.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The back-off never grows beyond this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A back-off not touched for this long (the container ran that long) starts over.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// CrashLoopBackOff of one container, as kubelet's flowcontrol.Backoff keyed by container: the
/// first restart is immediate and arms 10 s; each restart while armed doubles it up to 5 min; a
/// restart 10 min after the previous one starts over.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backoff {
    delay: Option<Duration>,
    last_update: Option<Timestamp>,
}

/// What the back-off allows for a container that finished at some time.
#[derive(Clone, Debug, PartialEq)]
pub enum RestartGate {
    /// Restart now (the back-off has been advanced).
    Now,
    /// Wait `remaining` more; `delay` is the back-off in force (for the waiting message).
    Wait {
        remaining: Duration,
        delay: Duration,
    },
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    to.duration_since(from)
        .max(SignedDuration::ZERO)
        .try_into()
        .unwrap_or_default()
}

impl Backoff {
    /// The back-off in force, if armed.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// May the container that finished at `finished_at` be restarted at `now`?
    pub fn gate(&mut self, finished_at: Timestamp, now: Timestamp) -> RestartGate {
        if let Some(delay) = self.delay {
            let waited = elapsed(finished_at, now);
            if waited < delay {
                return RestartGate::Wait {
                    remaining: delay - waited,
                    delay,
                };
            }
        }
        let expired = self
            .last_update
            .is_none_or(|at| elapsed(at, now) > BACKOFF_RESET);
        self.delay = Some(match self.delay {
            Some(d) if !expired => (d * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        });
        self.last_update = Some(now);
        RestartGate::Now
    }
}

/// The waiting message of a container in CrashLoopBackOff, in kubelet's words.
pub fn back_off_message(delay: Duration, container: &str, pod: &Pod) -> String {
    let meta = &pod.metadata;
    format!(
        "back-off {} restarting failed container={container} pod={}_{}({})",
        go_duration(delay),
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
    )
}

/// A whole-second duration as Go prints it: `10s`, `1m20s`, `5m0s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The reason of a terminated container from its exit, as containerd reports it.
pub fn terminated_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    match (oom_killed, exit_code) {
        (true, _) => "OOMKilled",
        (false, 0) => "Completed",
        _ => "Error",
    }
}

/// A merge patch turning `old` into `new` (only the fields that changed), or None when equal.
pub fn status_patch(old: Option<&PodStatus>, new: &PodStatus) -> Option<serde_json::Value> {
    let old = serde_json::to_value(old.cloned().unwrap_or_default()).ok()?;
    let new = serde_json::to_value(new).ok()?;
    let mut diff = merge_diff(&old, &new)?;
    // Top-level fields the agent does not compute (e.g. the scheduler's nominatedNodeName) stay.
    if let Some(map) = diff.as_object_mut() {
        map.retain(|_, v| !v.is_null());
        if map.is_empty() {
            return None;
        }
    }
    Some(serde_json::json!({ "status": diff }))
}

/// The JSON merge patch (RFC 7386) from `old` to `new`; None when they are equal.
fn merge_diff(old: &serde_json::Value, new: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = serde_json::Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, v) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

/// The conditions of a status by type, for tests and logs.
pub fn condition_map(status: &PodStatus) -> BTreeMap<String, PodCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn two() -> Pod {
        pod(json!({"containers": [
            {"name": "a", "image": "busybox"},
            {"name": "b", "image": "busybox"},
        ]}))
    }

    fn with_policy(policy: &str) -> Pod {
        pod(json!({"restartPolicy": policy, "containers": [
            {"name": "a", "image": "busybox"},
            {"name": "b", "image": "busybox"},
        ]}))
    }

    fn running(name: &str) -> ContainerRecord {
        ContainerRecord {
            name: name.into(),
            state: ContainerView::Running {
                container_id: format!("id-{name}"),
                started_at: t(5),
            },
            last_terminated: None,
            restart_count: 0,
            started: true,
            ready: true,
            image: "docker.io/library/busybox:latest".into(),
            image_id: "docker.io/library/busybox@sha256:abc".into(),
        }
    }

    fn ended(name: &str, code: i32) -> Terminated {
        Terminated {
            container_id: format!("id-{name}"),
            exit_code: code,
            signal: None,
            reason: terminated_reason(code, false).into(),
            message: None,
            started_at: Some(t(5)),
            finished_at: t(9),
        }
    }

    fn exited(name: &str, code: i32) -> ContainerRecord {
        ContainerRecord {
            state: ContainerView::Terminated(ended(name, code)),
            ..running(name)
        }
    }

    fn waiting(name: &str, reason: &str) -> ContainerRecord {
        ContainerRecord {
            state: ContainerView::Waiting {
                reason: reason.into(),
                message: None,
            },
            ..running(name)
        }
    }

    fn crash_looping(name: &str, code: i32) -> ContainerRecord {
        ContainerRecord {
            last_terminated: Some(ended(name, code)),
            restart_count: 3,
            ..waiting(name, CRASH_LOOP_BACK_OFF)
        }
    }

    fn view(containers: Vec<ContainerRecord>) -> PodView {
        PodView {
            sandbox_ready: true,
            host_ip: Some("10.0.0.5".into()),
            pod_ips: vec![],
            start_time: Some(t(1)),
            failed: None,
            containers,
            init_containers: vec![],
        }
    }

    #[test]
    fn a_pod_the_node_failed_is_failed_with_its_reason_for_good() {
        let mut p = two();
        let failed = PodView {
            failed: Some(("DeadlineExceeded".into(), "too long".into())),
            ..view(vec![running("a"), running("b")])
        };
        let s = pod_status(&p, &failed, t(5));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(s.message.as_deref(), Some("too long"));
        // A succeeded pod stays succeeded.
        p.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        });
        let s = pod_status(&p, &failed, t(5));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(s.reason, None);
    }

    #[test]
    fn a_pod_rejected_at_admission_has_no_kubelet_conditions_or_containers() {
        let p = two();
        let rejected = PodView {
            sandbox_ready: false,
            failed: Some(("SysctlForbidden".into(), "Pod was rejected: ...".into())),
            ..view(vec![])
        };
        let s = pod_status(&p, &rejected, t(5));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("SysctlForbidden"));
        assert_eq!(s.conditions, Some(Vec::new()), "{:?}", s.conditions);
        assert_eq!(s.container_statuses, None);
        // A pod that ran before failing keeps its conditions.
        let failed = PodView {
            failed: Some(("DeadlineExceeded".into(), "too long".into())),
            ..view(vec![running("a"), running("b")])
        };
        let c = condition_map(&pod_status(&p, &failed, t(5)));
        assert!(c.contains_key("Ready") && c.contains_key("PodScheduled"));
    }

    fn phase_of(p: &Pod, v: &PodView) -> String {
        pod_status(p, v, t(20)).phase.expect("phase")
    }

    #[test]
    fn nothing_created_is_pending_with_container_creating() {
        let p = two();
        let s = pod_status(
            &p,
            &PodView {
                sandbox_ready: false,
                ..view(vec![])
            },
            t(2),
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = s.container_statuses.as_ref().expect("statuses");
        assert_eq!(cs.len(), 2);
        let w = cs[0]
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
        assert_eq!(cs[0].image, "busybox");
        assert_eq!(cs[0].started, Some(false));
        assert!(!cs[0].ready);
        let c = condition_map(&s);
        assert_eq!(c["PodScheduled"].status, "True");
        assert_eq!(c["PodReadyToStartContainers"].status, "False");
        assert_eq!(c["Initialized"].status, "True");
        assert_eq!(c["Ready"].status, "False");
        assert_eq!(c["Ready"].reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            c["ContainersReady"].message.as_deref(),
            Some("containers with unready status: [a b]")
        );
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(
            s.host_ips.as_ref().map(|h| h[0].ip.as_str()),
            Some("10.0.0.5")
        );
        assert_eq!(s.start_time, Some(Time(t(1))));
    }

    #[test]
    fn probes_decide_ready_and_started_of_running_containers() {
        let p = two();
        let unready = ContainerRecord {
            ready: false,
            ..running("a")
        };
        let not_started = ContainerRecord {
            started: false,
            ready: false,
            ..running("b")
        };
        let s = pod_status(&p, &view(vec![unready, not_started]), t(6));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = s.container_statuses.as_ref().expect("statuses");
        assert!(!cs[0].ready);
        assert_eq!(cs[0].started, Some(true));
        assert!(!cs[1].ready);
        assert_eq!(cs[1].started, Some(false));
        let c = condition_map(&s);
        assert_eq!(c["Ready"].status, "False");
        assert_eq!(
            c["ContainersReady"].message.as_deref(),
            Some("containers with unready status: [a b]")
        );
        // A stopped container is never ready, whatever its probes said last.
        let ended = ContainerRecord {
            ready: true,
            ..exited("a", 1)
        };
        let s = pod_status(&p, &view(vec![ended, running("b")]), t(6));
        assert!(!s.container_statuses.as_ref().expect("statuses")[0].ready);
    }

    #[test]
    fn an_unready_sidecar_keeps_the_pod_unready() {
        let p = pod(json!({
            "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [{"name": "a", "image": "busybox"}],
        }));
        let mut v = view(vec![running("a")]);
        v.init_containers = vec![ContainerRecord {
            ready: false,
            ..running("side")
        }];
        let s = pod_status(&p, &v, t(6));
        let c = condition_map(&s);
        assert_eq!(c["ContainersReady"].status, "False");
        assert_eq!(
            c["ContainersReady"].message.as_deref(),
            Some("containers with unready status: [side]")
        );
        v.init_containers = vec![running("side")];
        let s = pod_status(&p, &v, t(6));
        assert_eq!(condition_map(&s)["Ready"].status, "True");
    }

    #[test]
    fn all_running_is_running_and_ready() {
        let mut p = two();
        p.metadata.generation = Some(3);
        let mut v = view(vec![running("a"), running("b")]);
        v.pod_ips = vec!["10.42.0.7".into()];
        let s = pod_status(&p, &v, t(6));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.observed_generation, Some(3));
        let c = condition_map(&s);
        for kind in KUBELET_CONDITIONS {
            assert_eq!(c[kind].observed_generation, Some(3), "{kind}");
            assert_eq!(c[kind].status, "True", "{kind}");
            assert_eq!(c[kind].reason, None, "{kind}");
        }
        let a = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(a.container_id.as_deref(), Some("skiff://id-a"));
        assert_eq!(a.image_id, "docker.io/library/busybox@sha256:abc");
        assert_eq!(a.image, "docker.io/library/busybox:latest");
        assert!(a.ready);
        assert_eq!(a.started, Some(true));
        let started = a
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .expect("running");
        assert_eq!(started.started_at, Some(Time(t(5))));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.7"));
        assert_eq!(
            s.pod_ips.as_ref().map(|i| i[0].ip.as_str()),
            Some("10.42.0.7")
        );
    }

    #[test]
    fn one_waiting_keeps_the_pod_pending() {
        let p = two();
        let v = view(vec![running("a"), waiting("b", "ErrImageNeverPull")]);
        let s = pod_status(&p, &v, t(6));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            condition_map(&s)["Ready"].message.as_deref(),
            Some("containers with unready status: [b]")
        );
    }

    #[test]
    fn phase_follows_the_restart_policy() {
        // Both ended well.
        let ok = view(vec![exited("a", 0), exited("b", 0)]);
        assert_eq!(phase_of(&with_policy("Always"), &ok), "Running");
        assert_eq!(phase_of(&with_policy("OnFailure"), &ok), "Succeeded");
        assert_eq!(phase_of(&with_policy("Never"), &ok), "Succeeded");
        // One failed.
        let bad = view(vec![exited("a", 0), exited("b", 2)]);
        assert_eq!(phase_of(&with_policy("Always"), &bad), "Running");
        assert_eq!(phase_of(&with_policy("OnFailure"), &bad), "Running");
        assert_eq!(phase_of(&with_policy("Never"), &bad), "Failed");
        // One still running.
        let mixed = view(vec![running("a"), exited("b", 1)]);
        assert_eq!(phase_of(&with_policy("Never"), &mixed), "Running");
        // Crash-looping (waiting with a last state) counts as stopped, not waiting.
        let looping = view(vec![running("a"), crash_looping("b", 1)]);
        assert_eq!(phase_of(&with_policy("Always"), &looping), "Running");
        // A container the node knows nothing about: unknown, so not Running.
        let partial = view(vec![running("a")]);
        assert_eq!(phase_of(&with_policy("Always"), &partial), "Pending");
    }

    #[test]
    fn succeeded_pod_reports_pod_completed() {
        let p = with_policy("Never");
        let s = pod_status(&p, &view(vec![exited("a", 0), exited("b", 0)]), t(20));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let c = condition_map(&s);
        assert_eq!(c["Ready"].status, "False");
        assert_eq!(c["Ready"].reason.as_deref(), Some("PodCompleted"));
        assert_eq!(c["ContainersReady"].reason.as_deref(), Some("PodCompleted"));
        let term = s.container_statuses.as_ref().expect("statuses")[1]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(term.reason.as_deref(), Some("Completed"));
        assert_eq!(term.exit_code, 0);
        assert_eq!(term.finished_at, Some(Time(t(9))));
        assert_eq!(term.container_id.as_deref(), Some("skiff://id-b"));
    }

    #[test]
    fn terminal_phase_never_goes_back() {
        let mut p = with_policy("Never");
        p.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..PodStatus::default()
        });
        // Whatever the node now thinks (e.g. after a restart it lost the containers).
        assert_eq!(phase_of(&p, &view(vec![])), "Failed");
    }

    #[test]
    fn crash_loop_shows_waiting_and_last_state() {
        let p = two();
        let s = pod_status(&p, &view(vec![running("a"), crash_looping("b", 3)]), t(20));
        let b = &s.container_statuses.as_ref().expect("statuses")[1];
        assert_eq!(b.restart_count, 3);
        let w = b
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = b
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last state");
        assert_eq!(last.exit_code, 3);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert_eq!(b.container_id.as_deref(), Some("skiff://id-b"));
        assert!(!b.ready);
    }

    #[test]
    fn transition_times_move_only_on_change() {
        let mut p = two();
        let first = pod_status(&p, &view(vec![]), t(2));
        p.status = Some(first);
        let second = pod_status(&p, &view(vec![running("a"), running("b")]), t(7));
        let c = condition_map(&second);
        assert_eq!(c["PodScheduled"].last_transition_time, Some(Time(t(2))));
        assert_eq!(c["Ready"].last_transition_time, Some(Time(t(7))));
        // Nothing changed: no patch at all.
        p.status = Some(second.clone());
        let third = pod_status(&p, &view(vec![running("a"), running("b")]), t(30));
        assert_eq!(third, second);
        assert_eq!(status_patch(p.status.as_ref(), &third), None);
    }

    #[test]
    fn foreign_conditions_and_fields_are_kept() {
        let mut p = two();
        p.status = Some(
            serde_json::from_value(json!({
                "nominatedNodeName": "n2",
                "conditions": [
                    {"type": "DisruptionTarget", "status": "True"},
                    {"type": "PodScheduled", "status": "True"},
                ],
            }))
            .expect("status"),
        );
        let s = pod_status(&p, &view(vec![running("a"), running("b")]), t(7));
        let c = condition_map(&s);
        assert_eq!(c["DisruptionTarget"].status, "True");
        assert_eq!(s.conditions.as_ref().map(Vec::len), Some(6));
        let patch = status_patch(p.status.as_ref(), &s).expect("a patch");
        assert!(
            patch["status"].get("nominatedNodeName").is_none(),
            "{patch}"
        );
        assert_eq!(patch["status"]["phase"], "Running");
    }

    #[test]
    fn status_patch_carries_only_changes() {
        let old: PodStatus = serde_json::from_value(json!({
            "phase": "Pending", "hostIP": "10.0.0.5", "qosClass": "BestEffort",
        }))
        .expect("status");
        let mut new = old.clone();
        new.phase = Some("Running".into());
        let patch = status_patch(Some(&old), &new).expect("patch");
        assert_eq!(patch, json!({"status": {"phase": "Running"}}));
        assert_eq!(status_patch(Some(&old), &old), None);
    }

    #[test]
    fn qos_class_from_resources() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "64Mi"},
                          "requests": {"cpu": "1", "memory": "64Mi"}}}]}));
        assert_eq!(
            pod_status(&p, &view(vec![]), t(1)).qos_class.as_deref(),
            Some("Guaranteed")
        );
        let p = pod(json!({"containers": [{"name": "a", "image": "x",
            "resources": {"requests": {"memory": "64Mi"}}}]}));
        assert_eq!(
            pod_status(&p, &view(vec![]), t(1)).qos_class.as_deref(),
            Some("Burstable")
        );
    }

    #[test]
    fn init_containers_gate_initialized_and_phase() {
        let spec = json!({"restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}]});
        let p = pod(spec);
        let mut v = view(vec![]);
        v.init_containers = vec![running("init")];
        let s = pod_status(&p, &v, t(6));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let c = condition_map(&s);
        assert_eq!(c["Initialized"].status, "False");
        assert_eq!(
            c["Initialized"].reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            c["Initialized"].message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        let waiting = |s: &PodStatus, list: &str| {
            let statuses = if list == "init" {
                s.init_container_statuses.clone()
            } else {
                s.container_statuses.clone()
            };
            statuses.expect("statuses")[0]
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.clone())
        };
        let fresh = pod_status(&p, &view(vec![]), t(1));
        assert_eq!(waiting(&fresh, "init").as_deref(), Some("PodInitializing"));
        assert_eq!(waiting(&fresh, "app").as_deref(), Some("PodInitializing"));
        v.init_containers = vec![exited("init", 0)];
        let s = pod_status(&p, &v, t(10));
        assert_eq!(condition_map(&s)["Initialized"].status, "True");
        assert_eq!(s.init_container_statuses.as_ref().map(Vec::len), Some(1));
        // A failed init container with Never fails the pod.
        v.init_containers = vec![exited("init", 1)];
        assert_eq!(phase_of(&p, &v), "Failed");
    }

    #[test]
    fn restart_decision_per_policy() {
        assert!(should_restart(None, 0));
        assert!(should_restart(Some("Always"), 0));
        assert!(should_restart(Some("Always"), 1));
        assert!(!should_restart(Some("OnFailure"), 0));
        assert!(should_restart(Some("OnFailure"), 137));
        assert!(!should_restart(Some("Never"), 1));
        assert!(!should_restart(Some("Never"), 0));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let mut b = Backoff::default();
        // First crash at 0: restart at once, arming 10 s.
        assert_eq!(b.gate(t(0), t(0)), RestartGate::Now);
        assert_eq!(b.delay(), Some(Duration::from_secs(10)));
        // Second crash at 1: wait 10 s from its end.
        assert_eq!(
            b.gate(t(1), t(4)),
            RestartGate::Wait {
                remaining: Duration::from_secs(7),
                delay: Duration::from_secs(10)
            }
        );
        assert_eq!(b.gate(t(1), t(11)), RestartGate::Now);
        assert_eq!(b.delay(), Some(Duration::from_secs(20)));
        let mut now = 11;
        let mut seen = vec![];
        for _ in 0..8 {
            // Crash right away each time; restart exactly when allowed.
            let RestartGate::Wait { remaining, delay } = b.gate(t(now), t(now)) else {
                panic!("expected a wait");
            };
            assert_eq!(remaining, delay);
            seen.push(delay.as_secs());
            now += delay.as_secs() as i64;
            assert_eq!(
                b.gate(t(now - delay.as_secs() as i64), t(now)),
                RestartGate::Now
            );
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300, 300]);
    }

    #[test]
    fn backoff_resets_after_ten_minutes_of_running() {
        let mut b = Backoff::default();
        assert_eq!(b.gate(t(0), t(0)), RestartGate::Now);
        assert_eq!(b.gate(t(0), t(10)), RestartGate::Now);
        assert_eq!(b.delay(), Some(Duration::from_secs(20)));
        // It then ran 11 minutes before crashing again: the wait still applies from the
        // crash... but it has long passed, and the back-off starts over at 10 s.
        assert_eq!(b.gate(t(670), t(670 + 20)), RestartGate::Now);
        assert_eq!(b.delay(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn messages_in_kubelet_words() {
        let p = two();
        assert_eq!(
            back_off_message(Duration::from_secs(20), "b", &p),
            "back-off 20s restarting failed container=b pod=p_ns(u1)"
        );
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(terminated_reason(0, false), "Completed");
        assert_eq!(terminated_reason(1, false), "Error");
        assert_eq!(terminated_reason(137, true), "OOMKilled");
    }
}
