//! Lifecycle hooks (postStart, preStop) as kubelet runs them: a command in the container, an
//! HTTP GET into the pod's network namespace, or a sleep. A failure is a message for the
//! `FailedPostStartHook` / `FailedPreStopHook` event, worded as kubelet's.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use crate::probe::action::{self, ExecEnd, PodTarget};
use crate::runtime::PodRuntime;

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

/// What a hook runs on.
pub struct HookTarget<'a> {
    pub runtime: &'a Arc<dyn PodRuntime>,
    pub container: &'a Container,
    pub container_id: &'a str,
    /// `name_namespace(uid)`, as kubelet names the pod in hook messages.
    pub pod: &'a str,
    pub network: &'a PodTarget,
}

/// The handler of `hook` in `container`'s lifecycle, if any.
pub fn handler(container: &Container, hook: Hook) -> Option<&LifecycleHandler> {
    let lifecycle = container.lifecycle.as_ref()?;
    match hook {
        Hook::PostStart => lifecycle.post_start.as_ref(),
        Hook::PreStop => lifecycle.pre_stop.as_ref(),
    }
}

/// Runs `handler` within `limit`; Err is the message of the event that reports the failure.
/// A hook still running at `limit` is abandoned (an exec's process is killed).
pub async fn run(
    handler: &LifecycleHandler,
    target: &HookTarget<'_>,
    limit: Duration,
) -> Result<(), String> {
    let container = &target.container.name;
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let failed = |error: String, output: &str| {
            format!(
                "Exec lifecycle hook ({command:?}) for Container {container:?} in Pod {:?} failed - error: {error}, message: {output:?}",
                target.pod
            )
        };
        return match action::exec_in(target.runtime, target.container_id, &command, limit).await {
            Ok(ExecEnd::Exited { code: 0, .. }) => Ok(()),
            Ok(ExecEnd::Exited { code, output }) => Err(failed(
                format!("command '{}' exited with {code}", command.join(" ")),
                &output,
            )),
            Ok(ExecEnd::TimedOut) => Err(failed(
                format!(
                    "command '{}' timed out after {}s",
                    command.join(" "),
                    limit.as_secs()
                ),
                "",
            )),
            Err(e) => Err(failed(e, "")),
        };
    }
    if let Some(http) = &handler.http_get {
        let path = http.path.clone().unwrap_or_default();
        // As kubelet: only a failed request fails the hook, whatever the status code.
        return match action::http_status(http, target.container, target.network, limit).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) | Err(e) => Err(format!(
                "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {:?} failed - error: {e}",
                target.pod
            )),
        };
    }
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        tokio::time::sleep(wanted.min(limit)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        return Err(format!(
            "Container {container:?} in Pod {:?}: tcpSocket is not a lifecycle hook action (deprecated and never run)",
            target.pod
        ));
    }
    Err(format!(
        "Container {container:?} in Pod {:?}: the lifecycle hook has no action (exec, httpGet or sleep)",
        target.pod
    ))
}

/// The grace period left for the container after its preStop hook took `spent` of `grace`:
/// never below kubelet's minimum of 2 s.
pub fn grace_after_pre_stop(grace: Duration, spent: Duration) -> Duration {
    grace.saturating_sub(spent).max(MINIMUM_GRACE)
}

/// Kubelet's minimumGracePeriodInSeconds after a preStop hook.
pub const MINIMUM_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_stop_counts_against_the_grace_period() {
        let s = Duration::from_secs;
        assert_eq!(grace_after_pre_stop(s(30), s(10)), s(20));
        assert_eq!(grace_after_pre_stop(s(5), s(4)), s(2));
        assert_eq!(grace_after_pre_stop(s(5), s(9)), s(2));
    }
}
