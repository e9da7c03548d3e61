//! The node's containers: start one under its own monitor process, read its status (also after
//! the agent restarted: the monitors and their status files outlive it), stop and remove it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::Spec;

use super::runtime::CliRuntime;
use super::{ContainerStatus, Result};

/// Options of the CRI log files the monitors write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub max_size: u64,
    pub max_files: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size: super::log::DEFAULT_MAX_SIZE,
            max_files: super::log::DEFAULT_MAX_FILES,
        }
    }
}

/// Containers under `root` (`<data-dir>/containers`), each run by `runtime` under a monitor
/// process started from `monitor_binary` (`skiff internal monitor <container-dir>`).
///
/// The runtime is a concrete [`CliRuntime`] rather than a trait object because the monitor, a
/// separate process, rebuilds it from its configuration file.
#[derive(Clone, Debug)]
#[allow(dead_code)] // fields used once the manager lands
pub struct ContainerManager {
    root: PathBuf,
    runtime: CliRuntime,
    /// The program and leading arguments that start a monitor; the container directory is
    /// appended (`[/usr/bin/skiff, internal, monitor]`).
    monitor_command: Vec<PathBuf>,
    log_options: LogOptions,
}

impl ContainerManager {
    /// Opens (creating if needed) the containers directory `root`.
    pub fn open(
        root: &Path,
        runtime: CliRuntime,
        monitor_command: Vec<PathBuf>,
        log_options: LogOptions,
    ) -> Result<Self> {
        let _ = (root, runtime, monitor_command, log_options);
        todo!()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runtime(&self) -> &CliRuntime {
        &self.runtime
    }

    /// The directory (bundle) of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The host file bound at the container's terminationMessagePath; [`Self::start`] creates
    /// it empty.
    pub fn termination_log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("termination-log")
    }

    /// Writes the bundle, starts the monitor, and returns once the container runs (or failed to
    /// start: then the error carries the runtime's message, and the status says `StartError`).
    pub fn start(&self, id: &str, spec: &Spec, log_path: &Path) -> Result<ContainerStatus> {
        let _ = (id, spec, log_path);
        todo!()
    }

    /// The container's status from its monitor's status file; None when no such container.
    /// A monitor that died without recording an exit (e.g. killed) shows as Exited with reason
    /// `Error` and exit code 255 (containerd's "unknown" code).
    pub fn status(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let _ = id;
        todo!()
    }

    /// Sends `signal` to the container's init, waits up to `grace` for it to exit, then sends
    /// SIGKILL and waits for the monitor to record the exit. A container already exited is fine.
    pub fn stop(&self, id: &str, signal: i32, grace: Duration) -> Result<ContainerStatus> {
        let _ = (id, signal, grace);
        todo!()
    }

    /// Removes everything of the container: kills it if still running, the runtime's state,
    /// its cgroup in every hierarchy, and its directory (not the log file: the caller owns its
    /// path). Idempotent; keeps going past errors and reports them all.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _ = id;
        todo!()
    }

    /// The ids of every container under the root (for re-adoption and garbage collection).
    pub fn list(&self) -> Result<Vec<String>> {
        todo!()
    }
}
