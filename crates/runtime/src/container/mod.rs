//! Containers: OCI runtime bundles built from a pod's container and its image
//! ([`spec::build_spec`]), run by an external OCI runtime ([`runtime::OciRuntime`], runc by
//! default) under a small per-container monitor process ([`monitor`]) that outlives the agent.
//!
//! On disk, under `<data-dir>/containers/<id>/` (the [`ContainerManager`]'s root):
//! - `config.json`: the OCI runtime spec (the directory is the bundle);
//! - `monitor.json`: what the monitor needs ([`monitor::MonitorConfig`]);
//! - `status.json`: the container's [`ContainerStatus`], written atomically by the monitor;
//! - `monitor.lock`: held (flock) by the monitor for its whole life, so a reader can tell a live
//!   monitor from a dead one;
//! - `termination-log`: bound at the container's terminationMessagePath;
//! - `monitor.log`, `runtime.log`: the monitor's and the runtime's own diagnostics;
//! - `attach.sock`: for a container with stdin or a terminal, where its monitor serves attach
//!   sessions ([`attach`]).

pub mod attach;
pub mod cgroup;
mod entry;
pub mod exec;
pub mod expand;
pub mod launcher;
pub mod log;
pub mod log_read;
pub mod manager;
pub mod monitor;
pub mod nsexec;
pub mod resources;
pub mod runtime;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod spec;
mod syscalls_x86_64;
pub mod user;

use std::path::PathBuf;
use std::time::SystemTime;

pub use manager::ContainerManager;
pub use runtime::{check_runtime_supported, signal_number, CliRuntime, OciRuntime, RuntimeKind};
pub use seccomp::SeccompOptions;
pub use spec::{
    build_spec, is_config_error, ContainerSpecInput, FieldValues, MountSpec, NamespacePaths,
    PodFiles,
};

/// Errors of the container subsystem; each carries what failed and the underlying cause.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A pod configuration kubelet refuses before the runtime is asked (runAsNonRoot), in
    /// kubelet's words.
    #[error("{0}")]
    Config(String),
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("{runtime} {operation} {id}: {message}")]
    Runtime {
        runtime: String,
        operation: &'static str,
        id: String,
        message: String,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("starting container {id}: {message}")]
    Start { id: String, message: String },
    #[error("timed out after {seconds:.1} s waiting for container {id} to {what}")]
    Timeout {
        id: String,
        what: &'static str,
        seconds: f64,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cleaning up container {id}: {}", .errors.join("; "))]
    Cleanup { id: String, errors: Vec<String> },
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

pub(crate) fn io_error(
    operation: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.into();
    move |source| ContainerError::Io {
        operation,
        path,
        source,
    }
}

/// Where a container is in its life, as its monitor last recorded it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum ContainerState {
    /// The monitor runs but the runtime has not started the process yet.
    Created,
    /// The container's init process runs (`pid` in the host's PID namespace).
    Running { pid: u32, started_at: SystemTime },
    /// The container's init exited (or could never start: `started_at` is None).
    Exited {
        exit_code: i32,
        /// As Kubernetes reports it: `Completed` (exit 0), `Error`, `OOMKilled`, or
        /// `StartError` when the runtime could not start the process.
        reason: String,
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
        /// The termination message (terminationMessagePath), or the runtime's error.
        message: Option<String>,
    },
}

/// A container as the node sees it: what [`ContainerManager::status`] returns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub id: String,
    #[serde(flatten)]
    pub state: ContainerState,
    pub created_at: SystemTime,
    /// The monitor's pid (for diagnostics; the agent never signals it).
    pub monitor_pid: u32,
    /// The CRI log file the monitor writes.
    pub log_path: PathBuf,
}
