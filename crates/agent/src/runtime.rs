//! What the pod worker needs from the node's container runtime, as a narrow trait so the
//! worker's logic runs against a fake in tests and against `skiff-runtime` on a node. Methods
//! block (they run runc, mount, read files): the worker calls them on blocking threads.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
pub use skiff_runtime::image::pull::Credentials;

/// A runtime operation failed; the message is the runtime's own, shown in the pod's status
/// and events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeFailure(pub String);

impl RuntimeFailure {
    pub fn new(message: impl std::fmt::Display) -> RuntimeFailure {
        RuntimeFailure(message.to_string())
    }

    /// The Waiting reason of a container this failure kept from being created: kubelet's
    /// `CreateContainerConfigError` for a pod configuration it refuses itself (runAsNonRoot),
    /// else `CreateContainerError`.
    pub fn create_reason(&self) -> &'static str {
        if skiff_runtime::container::is_config_error(&self.0) {
            "CreateContainerConfigError"
        } else {
            "CreateContainerError"
        }
    }
}

pub type RuntimeResult<T> = Result<T, RuntimeFailure>;

/// An image on the node, as a container status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io/library/busybox:latest`.
    pub image: String,
    /// `docker.io/library/busybox@sha256:...` or `sha256:<config>`.
    pub image_id: String,
    /// The image's StopSignal as a number (None: SIGTERM).
    pub stop_signal: Option<i32>,
}

/// A sandbox the runtime holds, and the pod it belongs to (None: a half-created sandbox whose
/// record is missing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSandbox {
    pub id: String,
    pub pod_uid: Option<String>,
    /// The pod's IPs as the sandbox recorded them (empty: none, or no record).
    pub pod_ips: Vec<String>,
}

/// A sandbox just created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSandbox {
    pub id: String,
    pub pod_ips: Vec<String>,
}

/// A container as the runtime last recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeState {
    /// Created, not started yet.
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, `StartError`.
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

/// The node's runtime as the pod worker uses it.
pub trait PodRuntime: Send + Sync + 'static {
    /// The image if it is on the node.
    fn find_image(&self, image: &str) -> RuntimeResult<Option<ImageRef>>;
    /// Pulls the image with each of `credentials` in turn until one works (a pod's pull
    /// secrets matching the registry, most specific first); with none, with the node's own
    /// (its docker config) or anonymously.
    fn pull_image(&self, image: &str, credentials: &[Credentials]) -> RuntimeResult<ImageRef>;
    /// Creates the pod's sandbox (namespaces, /dev/shm, hosts files).
    fn create_sandbox(&self, pod: &Pod) -> RuntimeResult<CreatedSandbox>;
    /// Tears a sandbox down with the pod's files (logs, volumes, cgroup); idempotent.
    fn remove_sandbox(&self, id: &str) -> RuntimeResult<()>;
    /// Stops a finished pod's sandbox: its namespaces, network and address go, its files
    /// (logs, volumes) stay until the pod is removed; idempotent.
    fn stop_sandbox(&self, id: &str) -> RuntimeResult<()>;
    /// Removes what a pod has on the node besides its sandbox and containers: logs, volumes,
    /// its cgroup; idempotent.
    fn remove_pod_files(&self, uid: &str) -> RuntimeResult<()>;
    fn list_sandboxes(&self) -> RuntimeResult<Vec<RuntimeSandbox>>;
    /// Whether a sandbox found at start still holds what containers join (after a reboot its
    /// mounts are gone); an error says what is broken.
    fn verify_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let _ = id;
        Ok(())
    }
    /// Creates and starts container `id` for `container` of `pod` in sandbox `sandbox_id`.
    /// On a failure after the container was recorded (the process could not start), the
    /// container exists and its state says so.
    fn start_container(
        &self,
        id: &str,
        pod: &Pod,
        sandbox_id: &str,
        container: &Container,
        image: &ImageRef,
    ) -> RuntimeResult<()>;
    /// None when no such container.
    fn container_state(&self, id: &str) -> RuntimeResult<Option<RuntimeState>>;
    /// Sends `signal`, SIGKILL after `grace`, and returns once the container exited.
    fn stop_container(&self, id: &str, signal: i32, grace: Duration) -> RuntimeResult<()>;
    /// Removes everything of the container; idempotent.
    fn remove_container(&self, id: &str) -> RuntimeResult<()>;
    /// The last lines of container `id`'s output (at most `max_lines` lines, `max_bytes`
    /// bytes): a terminationMessagePolicy of FallbackToLogsOnError. None: no log.
    fn log_tail(
        &self,
        id: &str,
        max_lines: usize,
        max_bytes: usize,
    ) -> RuntimeResult<Option<String>> {
        let _ = (id, max_lines, max_bytes);
        Ok(None)
    }
    fn list_containers(&self) -> RuntimeResult<Vec<String>>;
    /// Removes what is left on the node of pods whose uid is not in `live` beyond their
    /// sandboxes and containers (a step that failed halfway, an agent killed mid-removal):
    /// pod directories (volumes, logs), root filesystems. (Not pod cgroups: `/skiff` is shared
    /// by every agent on the machine, and another agent's pods are not "gone".)
    fn collect_orphans(&self, live: &std::collections::HashSet<String>) -> RuntimeResult<()> {
        let _ = live;
        Ok(())
    }
    /// Whether sandboxes get addresses from the node's podCIDR, so the agent must hand it over
    /// ([`PodRuntime::configure_pod_network`]) before pods can start.
    fn needs_pod_cidr(&self) -> bool {
        false
    }
    /// Whether sandboxes get addresses from the node's podCIDR once it is handed over (needed
    /// before pods start or not): the agent hands it over and keeps routes to other nodes'.
    fn uses_pod_cidr(&self) -> bool {
        self.needs_pod_cidr()
    }
    /// Sets the node's pod network up for `pod_cidr` (the Node's spec.podCIDR); idempotent.
    fn configure_pod_network(&self, pod_cidr: &str) -> RuntimeResult<()> {
        let _ = pod_cidr;
        Ok(())
    }
    /// Prepares `args` to run in the running container `id` (`kubectl exec`), with a pty when
    /// `tty`. A runtime that cannot exec says so.
    fn prepare_exec(
        &self,
        id: &str,
        args: &[String],
        tty: bool,
    ) -> RuntimeResult<skiff_runtime::container::exec::PreparedExec> {
        let _ = (args, tty);
        Err(RuntimeFailure(format!(
            "this runtime cannot run commands in container {id}"
        )))
    }
    /// Starts `args` in the running container `id` with `stdio` (stdin, stdout, stderr) as its
    /// standard descriptors, without waiting for it; returns the control socket on which the
    /// runtime reports its start and exit (`skiff_runtime::container::exec::ExecReport`);
    /// closing that socket early kills the command. Exec probes and hooks use this. A runtime
    /// that cannot exec says so.
    fn spawn_exec(
        &self,
        id: &str,
        args: &[String],
        stdio: [std::os::fd::BorrowedFd<'_>; 3],
    ) -> RuntimeResult<std::os::unix::net::UnixStream> {
        let _ = (args, stdio);
        Err(RuntimeFailure(format!(
            "this runtime cannot run commands in container {id}"
        )))
    }
    /// Connects to the attach socket of the running container `id` (`kubectl attach`); None
    /// when the container has neither stdin nor a terminal (its monitor serves no socket).
    fn attach(&self, id: &str) -> RuntimeResult<Option<std::os::unix::net::UnixStream>> {
        Err(RuntimeFailure(format!(
            "this runtime cannot attach to container {id}"
        )))
    }
    /// The network namespace file of the sandbox of pod `pod_uid` (`kubectl port-forward`
    /// connects inside it); None when the pod has no sandbox on this node.
    fn pod_network_namespace(&self, pod_uid: &str) -> RuntimeResult<Option<std::path::PathBuf>> {
        Err(RuntimeFailure(format!(
            "this runtime cannot reach the network of pod {pod_uid}"
        )))
    }
}

/// The runtime id of the `attempt`-th instance of container `name` of pod `uid`: the pod and
/// container can be told from the id alone, so the agent re-adopts containers after a restart.
pub fn container_id(uid: &str, attempt: u32, name: &str) -> String {
    format!("{uid}_{attempt}_{name}")
}

/// The attempt and container name of an id of pod `uid`, if it is one.
pub fn parse_container_id<'a>(uid: &str, id: &'a str) -> Option<(u32, &'a str)> {
    let rest = id.strip_prefix(uid)?.strip_prefix('_')?;
    let (attempt, name) = rest.split_once('_')?;
    Some((attempt.parse().ok()?, name))
}

/// The pod uid an id names (everything before the attempt).
pub fn container_pod_uid(id: &str) -> Option<&str> {
    let mut parts = id.rsplitn(3, '_');
    let _name = parts.next()?;
    let attempt = parts.next()?;
    attempt.parse::<u32>().ok()?;
    parts.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_round_trip() {
        let uid = "0b7e3c1a-1111-4222-8333-944455556666";
        let id = container_id(uid, 3, "web-server");
        assert_eq!(parse_container_id(uid, &id), Some((3, "web-server")));
        assert_eq!(parse_container_id("other", &id), None);
        assert_eq!(container_pod_uid(&id), Some(uid));
        assert_eq!(container_pod_uid("junk"), None);
        assert_eq!(container_pod_uid("a_b_c"), None);
    }
}
