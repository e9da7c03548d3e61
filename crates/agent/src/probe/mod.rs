//! Container probes as kubelet runs them: per running container instance one tokio task runs its
//! startup, readiness and liveness probes on their periods and publishes what they mean (the
//! container started, is ready, must be killed); the pod worker reads that when it reports the
//! status and acts on a kill. The decisions (defaults, thresholds, what gates what) are pure
//! functions here; the actions are in [`action`].

pub mod action;
pub mod grpc;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::EventType;
use crate::runtime::PodRuntime;
use action::{ExecEnd, Outcome, PodTarget};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    /// As kubelet names it in events.
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
        }
    }
}

/// A probe's timing and thresholds, with Kubernetes' defaults for what the spec leaves out
/// (and for values below their minimum, which validation refuses anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: i32, min: i32) -> Duration {
    let v = value.filter(|v| *v >= min).unwrap_or(default);
    Duration::from_secs(u64::try_from(v).unwrap_or(0))
}

impl Timing {
    pub fn of(probe: &Probe, kind: ProbeKind) -> Timing {
        let count = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v >= 1)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            // Must be 1 for liveness and startup (validation says so; held here too).
            success_threshold: match kind {
                ProbeKind::Readiness => count(probe.success_threshold, 1),
                _ => 1,
            },
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// A probe's published result: kubelet's results.Result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unknown,
    Success,
    Failure,
}

/// One probe of one container instance: kubelet's prober worker (lastResult, resultRun, the
/// published result, onHold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    pub kind: ProbeKind,
    last: Option<bool>,
    run: u32,
    pub verdict: Verdict,
    /// A liveness or startup probe that failed: no more probing of this instance.
    pub on_hold: bool,
}

impl ProbeState {
    /// Before any probe: readiness fails, liveness succeeds, startup is unknown.
    pub fn new(kind: ProbeKind) -> ProbeState {
        ProbeState {
            kind,
            last: None,
            run: 0,
            verdict: match kind {
                ProbeKind::Readiness => Verdict::Failure,
                ProbeKind::Liveness => Verdict::Success,
                ProbeKind::Startup => Verdict::Unknown,
            },
            on_hold: false,
        }
    }

    /// Counts one probe's outcome (`true`: success) against the thresholds; returns whether
    /// the verdict changed. An errored probe is not counted at all (kubelet throws it away).
    pub fn observe(&mut self, success: bool, timing: &Timing) -> bool {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            timing.success_threshold
        } else {
            timing.failure_threshold
        };
        if self.run < threshold {
            return false;
        }
        let verdict = if success {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        let changed = self.verdict != verdict;
        self.verdict = verdict;
        if !success && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            // The container will be restarted: stop until a new instance.
            self.on_hold = true;
            self.run = 0;
        }
        changed
    }
}

/// What the probes of one container instance say, as the pod worker reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeReport {
    /// The startup probe succeeded (or there is none): the status's `started`.
    pub started: bool,
    /// Started, and the readiness probe succeeded (or there is none): the status's `ready`.
    pub ready: bool,
    /// The container failed its liveness or startup probe and must be killed.
    pub kill: Option<ProbeKind>,
}

/// What `states` (the container's probes) mean for the container (kubelet's
/// UpdatePodStatus and computePodActions).
pub fn report(states: &[ProbeState]) -> ProbeReport {
    let verdict = |kind| states.iter().find(|s| s.kind == kind).map(|s| s.verdict);
    let started = verdict(ProbeKind::Startup).is_none_or(|v| v == Verdict::Success);
    let ready = started && verdict(ProbeKind::Readiness).is_none_or(|v| v == Verdict::Success);
    let kill = if verdict(ProbeKind::Liveness) == Some(Verdict::Failure) {
        Some(ProbeKind::Liveness)
    } else if verdict(ProbeKind::Startup) == Some(Verdict::Failure) {
        Some(ProbeKind::Startup)
    } else {
        None
    };
    ProbeReport {
        started,
        ready,
        kill,
    }
}

/// Whether a probe of `kind` runs now, given whether the container `started` (kubelet's
/// worker: startup stops once started, the others wait for it).
pub fn runs(kind: ProbeKind, started: bool, on_hold: bool) -> bool {
    !on_hold && (kind == ProbeKind::Startup) != started
}

/// The probes `container` declares, in the order they are looked at.
pub fn probes_of(container: &Container) -> Vec<(ProbeKind, Probe)> {
    [
        (ProbeKind::Startup, container.startup_probe.as_ref()),
        (ProbeKind::Readiness, container.readiness_probe.as_ref()),
        (ProbeKind::Liveness, container.liveness_probe.as_ref()),
    ]
    .into_iter()
    .filter_map(|(kind, p)| p.map(|p| (kind, p.clone())))
    .collect()
}

/// The report of a running container whose prober has not run yet.
pub fn initial_report(container: &Container) -> ProbeReport {
    let states: Vec<ProbeState> = probes_of(container)
        .into_iter()
        .map(|(kind, _)| ProbeState::new(kind))
        .collect();
    report(&states)
}

/// Records a probe event about the container (Warning `Unhealthy`, ...).
pub type EventSink = Arc<dyn Fn(EventType, &str, String) + Send + Sync>;

/// The probes of one running container instance; dropping it stops them.
pub struct Prober {
    /// The container instance probed.
    pub container_id: String,
    report: Arc<Mutex<ProbeReport>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a prober needs to know of its container.
pub struct ProbeContext {
    pub container: Container,
    pub container_id: String,
    pub started_at: Timestamp,
    pub target: PodTarget,
    pub runtime: Arc<dyn PodRuntime>,
    pub events: EventSink,
    /// Woken when the report changes.
    pub wake: Arc<Notify>,
}

impl Prober {
    /// Starts probing (None when the container has no probes).
    pub fn start(ctx: ProbeContext) -> Option<Prober> {
        let probes = probes_of(&ctx.container);
        if probes.is_empty() {
            return None;
        }
        let report = Arc::new(Mutex::new(initial_report(&ctx.container)));
        let container_id = ctx.container_id.clone();
        let task = tokio::spawn(run(ctx, probes, report.clone()));
        Some(Prober {
            container_id,
            report,
            task,
        })
    }

    pub fn report(&self) -> ProbeReport {
        match self.report.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// One probe in the prober's loop.
struct Scheduled {
    probe: Probe,
    timing: Timing,
    state: ProbeState,
    due: Instant,
}

/// The prober's loop: each probe first due `initialDelaySeconds` after the container started,
/// then every `periodSeconds`; the due ones run together.
async fn run(ctx: ProbeContext, probes: Vec<(ProbeKind, Probe)>, shared: Arc<Mutex<ProbeReport>>) {
    let now = Instant::now();
    let age = Timestamp::now()
        .duration_since(ctx.started_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    // When the container started, on the monotonic clock.
    let origin = now.checked_sub(age).unwrap_or(now);
    let mut scheduled: Vec<Scheduled> = probes
        .into_iter()
        .map(|(kind, probe)| {
            let timing = Timing::of(&probe, kind);
            Scheduled {
                due: (origin + timing.initial_delay).max(now),
                probe,
                timing,
                state: ProbeState::new(kind),
            }
        })
        .collect();
    loop {
        let Some(next) = scheduled.iter().map(|s| s.due).min() else {
            return;
        };
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let started = report(&states(&scheduled)).started;
        let due: Vec<usize> = (0..scheduled.len())
            .filter(|i| scheduled[*i].due <= now)
            .collect();
        let runs_now: Vec<usize> = due
            .iter()
            .copied()
            .filter(|i| {
                runs(
                    scheduled[*i].state.kind,
                    started,
                    scheduled[*i].state.on_hold,
                )
            })
            .collect();
        let outcomes = futures_util::future::join_all(runs_now.iter().map(|i| {
            let s = &scheduled[*i];
            probe_once(&ctx, s.state.kind, &s.probe, s.timing.timeout)
        }))
        .await;
        let mut changed = false;
        for (i, outcome) in runs_now.iter().zip(outcomes) {
            let s = &mut scheduled[*i];
            if let Some(success) = outcome {
                changed |= s.state.observe(success, &s.timing);
            }
        }
        for i in due {
            let s = &mut scheduled[i];
            s.due = (s.due + s.timing.period).max(now);
        }
        if changed {
            let fresh = report(&states(&scheduled));
            if fresh.started && !started {
                // Readiness runs at once after start-up (kubelet triggers it), not a period
                // later.
                if let Some(s) = scheduled
                    .iter_mut()
                    .find(|s| s.state.kind == ProbeKind::Readiness)
                {
                    s.due = (origin + s.timing.initial_delay).max(now);
                }
            }
            match shared.lock() {
                Ok(mut r) => *r = fresh,
                Err(poisoned) => *poisoned.into_inner() = fresh,
            }
            ctx.wake.notify_one();
        }
        // A startup probe that succeeded has done its work.
        scheduled.retain(|s| {
            !(s.state.kind == ProbeKind::Startup && s.state.verdict == Verdict::Success)
        });
    }
}

fn states(scheduled: &[Scheduled]) -> Vec<ProbeState> {
    scheduled.iter().map(|s| s.state.clone()).collect()
}

/// Runs one probe; Some(success), or None when it errored (an event says why; the result is
/// not counted).
async fn probe_once(
    ctx: &ProbeContext,
    kind: ProbeKind,
    probe: &Probe,
    timeout: Duration,
) -> Option<bool> {
    let result = if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        match action::exec_in(&ctx.runtime, &ctx.container_id, &command, timeout).await {
            Ok(ExecEnd::Exited { code: 0, .. }) => Ok(Outcome::Success),
            Ok(ExecEnd::Exited { output, .. }) => Ok(Outcome::Failure(output)),
            Ok(ExecEnd::TimedOut) => Ok(Outcome::Failure(format!(
                "command timed out after {}s",
                timeout.as_secs()
            ))),
            Err(e) => Err(e),
        }
    } else if let Some(http) = &probe.http_get {
        action::http_get(http, &ctx.container, &ctx.target, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        match action::resolve_port(&tcp.port, &ctx.container) {
            Ok(port) => action::tcp_check(tcp.host.as_deref(), port, &ctx.target, timeout).await,
            Err(e) => Err(e),
        }
    } else if let Some(grpc) = &probe.grpc {
        action::grpc_check(grpc, &ctx.target, timeout).await
    } else {
        Err("the probe has no action (exec, httpGet, tcpSocket or grpc)".to_string())
    };
    match result {
        Ok(Outcome::Success) => Some(true),
        Ok(Outcome::Warning(output)) => {
            (ctx.events)(
                EventType::Warning,
                "ProbeWarning",
                format!("{} probe warning: {output}", kind.label()),
            );
            Some(true)
        }
        Ok(Outcome::Failure(output)) => {
            (ctx.events)(
                EventType::Warning,
                "Unhealthy",
                format!("{} probe failed: {output}", kind.label()),
            );
            Some(false)
        }
        Err(e) => {
            (ctx.events)(
                EventType::Warning,
                "Unhealthy",
                format!(
                    "{} probe errored and resulted in unknown state: {e}",
                    kind.label()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_are_kubernetes() {
        let t = Timing::of(&Probe::default(), ProbeKind::Readiness);
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.success_threshold, 1);
        assert_eq!(t.failure_threshold, 3);
        let probe = Probe {
            success_threshold: Some(3),
            period_seconds: Some(0),
            failure_threshold: Some(-1),
            initial_delay_seconds: Some(5),
            ..Probe::default()
        };
        assert_eq!(
            Timing::of(&probe, ProbeKind::Readiness).success_threshold,
            3
        );
        let liveness = Timing::of(&probe, ProbeKind::Liveness);
        assert_eq!(liveness.success_threshold, 1, "liveness needs one success");
        assert_eq!(liveness.period, Duration::from_secs(10));
        assert_eq!(liveness.failure_threshold, 3);
        assert_eq!(liveness.initial_delay, Duration::from_secs(5));
    }

    #[test]
    fn readiness_starts_failed_and_flips_on_thresholds() {
        let t = timing(2, 3);
        let mut s = ProbeState::new(ProbeKind::Readiness);
        assert_eq!(s.verdict, Verdict::Failure);
        assert!(
            !s.observe(true, &t),
            "one success is below the threshold of 2"
        );
        assert!(s.observe(true, &t));
        assert_eq!(s.verdict, Verdict::Success);
        assert!(!s.observe(false, &t));
        assert!(!s.observe(false, &t));
        assert!(!s.observe(true, &t), "a success resets the failures");
        assert!(!s.observe(false, &t));
        assert!(!s.observe(false, &t));
        assert!(s.observe(false, &t));
        assert_eq!(s.verdict, Verdict::Failure);
        assert!(!s.on_hold, "readiness keeps probing");
    }

    #[test]
    fn liveness_fails_after_the_threshold_and_holds() {
        let t = timing(1, 3);
        let mut s = ProbeState::new(ProbeKind::Liveness);
        assert_eq!(s.verdict, Verdict::Success);
        assert!(!s.observe(false, &t));
        assert!(!s.observe(false, &t));
        assert!(s.observe(false, &t));
        assert_eq!(s.verdict, Verdict::Failure);
        assert!(s.on_hold);
        assert!(!runs(ProbeKind::Liveness, true, s.on_hold));
    }

    #[test]
    fn startup_gates_the_others() {
        assert!(runs(ProbeKind::Startup, false, false));
        assert!(!runs(ProbeKind::Startup, true, false));
        assert!(!runs(ProbeKind::Readiness, false, false));
        assert!(!runs(ProbeKind::Liveness, false, false));
        assert!(runs(ProbeKind::Readiness, true, false));
        assert!(runs(ProbeKind::Liveness, true, false));
    }

    #[test]
    fn reports_follow_kubelet() {
        // No probes: started and ready.
        assert_eq!(
            report(&[]),
            ProbeReport {
                started: true,
                ready: true,
                kill: None
            }
        );
        // A startup probe not passed yet: neither started nor ready, even without readiness.
        let startup = ProbeState::new(ProbeKind::Startup);
        let r = report(std::slice::from_ref(&startup));
        assert!(!r.started && !r.ready && r.kill.is_none());
        // Readiness before its first success: started, not ready.
        let readiness = ProbeState::new(ProbeKind::Readiness);
        let r = report(std::slice::from_ref(&readiness));
        assert!(r.started && !r.ready);
        // A failed liveness probe kills; a failed startup probe too.
        let t = timing(1, 1);
        let mut liveness = ProbeState::new(ProbeKind::Liveness);
        liveness.observe(false, &t);
        assert_eq!(report(&[liveness]).kill, Some(ProbeKind::Liveness));
        let mut startup = ProbeState::new(ProbeKind::Startup);
        startup.observe(false, &t);
        let r = report(&[startup, readiness]);
        assert_eq!(r.kill, Some(ProbeKind::Startup));
        assert!(!r.started && !r.ready);
    }

    #[test]
    fn probes_are_listed_startup_first() {
        let c = Container {
            liveness_probe: Some(Probe::default()),
            startup_probe: Some(Probe::default()),
            ..Container::default()
        };
        let kinds: Vec<ProbeKind> = probes_of(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, [ProbeKind::Startup, ProbeKind::Liveness]);
        let r = initial_report(&c);
        assert!(!r.started && !r.ready && r.kill.is_none());
    }
}
