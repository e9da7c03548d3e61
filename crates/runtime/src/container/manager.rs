//! The node's containers: start one under its own monitor process, read its status (also after
//! the agent restarted: the monitors and their status files outlive it), stop and remove it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use oci_spec::runtime::Spec;

use super::attach::{StdioConfig, CONSOLE_SOCKET_FILE, SOCKET_FILE};
use super::cgroup::CgroupLayout;
use super::launcher::Launcher;
use super::monitor::{
    MonitorConfig, CONFIG_FILE, LOCK_FILE, MONITOR_LOG, PID_FILE, RUNTIME_LOG, STATUS_FILE,
    TERMINATION_LOG,
};
use super::runtime::{CliRuntime, OciRuntime};
use super::{io_error, ContainerError, ContainerState, ContainerStatus, Result};

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
/// process forked by a launcher (`skiff internal monitor <root> --launcher`, see launcher.rs);
/// `helper_command` is the program and leading arguments of these helpers (`[skiff, internal]`),
/// to which `monitor ...` or `exec ...` is appended.
///
/// The runtime is a concrete [`CliRuntime`] rather than a trait object because the monitor, a
/// separate process, rebuilds it from its configuration file.
#[derive(Clone, Debug)]
pub struct ContainerManager {
    root: PathBuf,
    runtime: CliRuntime,
    log_options: LogOptions,
    /// Forks the monitors (started on first use, shared by the manager's clones).
    launcher: Arc<Launcher>,
    /// `[skiff, internal]`: runs `exec` (nsexec.rs) and the launcher.
    helper_command: Vec<PathBuf>,
    /// Per running container, the launcher's exec plan (JSON), read once from its files
    /// (exec.rs); forgotten when the container is removed.
    pub(crate) exec_plans: Arc<Mutex<HashMap<String, Arc<super::exec::CachedPlan>>>>,
}

impl ContainerManager {
    /// Opens (creating if needed) the containers directory `root`.
    pub fn open(
        root: &Path,
        runtime: CliRuntime,
        helper_command: Vec<PathBuf>,
        log_options: LogOptions,
    ) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(io_error("creating", root))?;
        std::fs::create_dir_all(&runtime.root).map_err(io_error("creating", &runtime.root))?;
        if helper_command.is_empty() {
            return Err(ContainerError::Spec("empty monitor command".to_owned()));
        }
        Ok(ContainerManager {
            root: root.to_owned(),
            runtime,
            launcher: Arc::new(Launcher::new(&helper_command, root)),
            helper_command,
            log_options,
            exec_plans: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runtime(&self) -> &CliRuntime {
        &self.runtime
    }

    /// The pid of the launcher process (None until the first container or exec started it).
    pub fn launcher_pid(&self) -> Option<u32> {
        self.launcher.pid()
    }

    /// The launcher (exec.rs sends it commands to start).
    pub(crate) fn launcher(&self) -> &Launcher {
        &self.launcher
    }

    /// `[skiff, internal]`, before `monitor ...` or `exec ...`.
    pub(crate) fn helper_command(&self) -> &[PathBuf] {
        &self.helper_command
    }

    /// The directory (bundle) of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The host file bound at the container's terminationMessagePath; [`Self::start`] creates
    /// it empty.
    pub fn termination_log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(TERMINATION_LOG)
    }

    /// Writes the bundle, starts the monitor, and returns once the container runs (or failed to
    /// start: then the error carries the runtime's message, and the status says `StartError`).
    /// Blocks for the runtime's create and start (tens of ms): call it off the async runtime.
    pub fn start(&self, id: &str, spec: &Spec, log_path: &Path) -> Result<ContainerStatus> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(ContainerError::Spec(format!("invalid container id {id:?}")));
        }
        let dir = self.container_dir(id);
        if dir.join(STATUS_FILE).exists() {
            return Err(ContainerError::AlreadyExists(id.to_owned()));
        }
        std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let config_path = dir.join("config.json");
        let bytes = serde_json::to_vec(spec).map_err(|source| ContainerError::Json {
            path: config_path.clone(),
            source,
        })?;
        std::fs::write(&config_path, bytes).map_err(io_error("writing", &config_path))?;
        let termination_log = self.termination_log_path(id);
        if !termination_log.exists() {
            std::fs::write(&termination_log, b"")
                .map_err(io_error("creating", &termination_log))?;
        }
        let monitor_config = MonitorConfig {
            id: id.to_owned(),
            runtime: self.runtime.clone(),
            log_path: log_path.to_owned(),
            log_max_size: self.log_options.max_size,
            log_max_files: self.log_options.max_files,
            cgroup_path: spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().as_ref())
                .map(|p| p.to_string_lossy().into_owned()),
            stdio: StdioConfig::from_spec(spec),
        };
        let monitor_json = dir.join(CONFIG_FILE);
        let bytes = serde_json::to_vec(&monitor_config).map_err(|source| ContainerError::Json {
            path: monitor_json.clone(),
            source,
        })?;
        std::fs::write(&monitor_json, bytes).map_err(io_error("writing", &monitor_json))?;

        let monitor_log_path = dir.join(MONITOR_LOG);
        let monitor_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&monitor_log_path)
            .map_err(io_error("opening", &monitor_log_path))?;
        let (report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| io_error("creating the monitor's pipe for", &dir)(e.into()))?;
        self.launcher
            .launch(&dir, report_write.as_fd(), monitor_log.as_fd())
            .map_err(io_error("starting the monitor of", &dir))?;
        // Only the monitor holds the write end now: the read below ends at its report or exit.
        drop(report_write);
        drop(monitor_log);
        let mut line = String::new();
        // The monitor reports, or dies and the pipe closes; a runtime that hangs must not hang
        // the caller forever.
        let mut fds = [rustix::event::PollFd::new(
            &report_read,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: START_TIMEOUT.as_secs() as i64,
            tv_nsec: 0,
        };
        let ready = loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.unwrap_or(0),
            }
        };
        if ready == 0 {
            return Err(ContainerError::Timeout {
                id: id.to_owned(),
                what: "start",
                seconds: START_TIMEOUT.as_secs_f64(),
            });
        }
        let _ = BufReader::new(std::fs::File::from(report_read)).read_line(&mut line);
        let line = line.trim();
        if let Some(pid) = line.strip_prefix("ok ") {
            tracing::debug!(container = id, pid, "container started");
            return self
                .status(id)?
                .ok_or_else(|| ContainerError::NotFound(id.to_owned()));
        }
        let message = match line.strip_prefix("error ") {
            Some(message) => message.to_owned(),
            None => {
                let log = std::fs::read_to_string(&monitor_log_path).unwrap_or_default();
                format!(
                    "the monitor exited without reporting: {}",
                    log.lines().last().unwrap_or("no output")
                )
            }
        };
        Err(ContainerError::Start {
            id: id.to_owned(),
            message,
        })
    }

    /// The container's status from its monitor's status file; None when no such container.
    /// A monitor that died without recording an exit (e.g. killed) shows as Exited with reason
    /// `Error` and exit code 255 (containerd's "unknown" code).
    pub fn status(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let dir = self.container_dir(id);
        let path = dir.join(STATUS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", &path)(e)),
        };
        let mut status: ContainerStatus =
            serde_json::from_slice(&bytes).map_err(|source| ContainerError::Json {
                path: path.clone(),
                source,
            })?;
        if !matches!(status.state, ContainerState::Exited { .. }) && !monitor_alive(&dir) {
            // Read again: the monitor may have recorded the exit just before it let go.
            if let Ok(Some(again)) = self.read_status_file(&path) {
                if matches!(again.state, ContainerState::Exited { .. }) {
                    return Ok(Some(again));
                }
            }
            let started_at = match &status.state {
                ContainerState::Running { started_at, .. } => Some(*started_at),
                _ => None,
            };
            status.state = ContainerState::Exited {
                exit_code: 255,
                reason: "Error".to_owned(),
                started_at,
                finished_at: std::fs::metadata(dir.join(LOCK_FILE))
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| SystemTime::now()),
                message: Some("the container's monitor process is gone".to_owned()),
            };
        }
        Ok(Some(status))
    }

    fn read_status_file(&self, path: &Path) -> Result<Option<ContainerStatus>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ContainerError::Json {
                path: path.to_owned(),
                source,
            })
    }

    /// Waits until the container has exited, up to `timeout`; returns its last status.
    pub fn wait_exited(&self, id: &str, timeout: Duration) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .status(id)?
                .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
            if matches!(status.state, ContainerState::Exited { .. }) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ContainerError::Timeout {
                    id: id.to_owned(),
                    what: "exit",
                    seconds: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` to the container's init, waits up to `grace` for it to exit, then sends
    /// SIGKILL and waits for the monitor to record the exit. A container already exited is fine.
    pub fn stop(&self, id: &str, signal: i32, grace: Duration) -> Result<ContainerStatus> {
        let status = self
            .status(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        if matches!(status.state, ContainerState::Exited { .. }) {
            return Ok(status);
        }
        if !grace.is_zero() {
            // The container may have exited meanwhile: the wait below tells. Straight to its
            // init when we can tell it is that process (one runtime process less per stop).
            let direct = match status.state {
                ContainerState::Running { pid, .. } => signal_init(id, pid, signal),
                _ => false,
            };
            if !direct {
                if let Err(e) = self.runtime.kill(id, signal, false) {
                    tracing::debug!(container = id, error = %e, "signal not delivered");
                }
            }
            if let Ok(status) = self.wait_exited(id, grace) {
                return Ok(status);
            }
        }
        if let Err(e) = self.runtime.kill(id, SIGKILL, true) {
            tracing::debug!(container = id, error = %e, "SIGKILL not delivered");
        }
        self.wait_exited(id, KILL_TIMEOUT)
    }

    /// Removes everything of the container: kills it if still running, the runtime's state,
    /// its cgroup in every hierarchy, and its directory (not the log file: the caller owns its
    /// path). Idempotent; keeps going past errors and reports them all.
    pub fn remove(&self, id: &str) -> Result<()> {
        self.forget_exec_plan(id);
        let dir = self.container_dir(id);
        let mut errors = Vec::new();
        // The monitor deletes the runtime's state after the exit: ask the runtime only when it
        // still holds some (a running container, or a monitor that died).
        if self.runtime.root.join(id).exists() {
            if let Err(e) = self.runtime.delete(id, true) {
                errors.push(e.to_string());
            }
        }
        // The monitor records the exit and deletes the runtime's state; give it the time.
        let deadline = Instant::now() + KILL_TIMEOUT;
        while dir.exists() && monitor_alive(&dir) {
            if Instant::now() >= deadline {
                errors.push(format!(
                    "the monitor of {id} still runs {KILL_TIMEOUT:?} after its container was killed"
                ));
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let cgroup_path = std::fs::read(dir.join(CONFIG_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<MonitorConfig>(&b).ok())
            .and_then(|c| c.cgroup_path);
        if let Some(path) = cgroup_path {
            match CgroupLayout::detect() {
                Ok(layout) => {
                    if let Err(e) = layout.remove(&path) {
                        errors.push(e.to_string());
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        // The runtime's state directory, in case the runtime itself could not remove it.
        let state_dir = self.runtime.root.join(id);
        if let Err(e) = std::fs::remove_dir_all(&state_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("removing {}: {e}", state_dir.display()));
            }
        }
        for name in OWN_FILES {
            let path = dir.join(name);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(format!("removing {}: {e}", path.display()));
                }
            }
        }
        // Only the files the manager and monitor wrote: the directory may also hold the
        // container's root filesystem, which its owner removes (then the directory goes too).
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => errors.push(format!("removing {}: {e}", dir.display())),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ContainerError::Cleanup {
                id: id.to_owned(),
                errors,
            })
        }
    }

    /// The ids of every container under the root (for re-adoption and garbage collection).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(io_error("listing", &self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.root))?;
            if entry.path().join(CONFIG_FILE).exists() {
                if let Some(name) = entry.file_name().to_str() {
                    ids.push(name.to_owned());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

const SIGKILL: i32 = 9;
/// How long the runtime may take to start a container before `start` gives up waiting (the
/// monitor goes on; its status file tells what happened).
const START_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long a SIGKILLed container may take to be recorded as exited.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the manager and the monitor write into a container's directory.
const OWN_FILES: &[&str] = &[
    "config.json",
    CONFIG_FILE,
    STATUS_FILE,
    ".status.json.tmp",
    LOCK_FILE,
    PID_FILE,
    MONITOR_LOG,
    RUNTIME_LOG,
    TERMINATION_LOG,
    SOCKET_FILE,
    CONSOLE_SOCKET_FILE,
];

/// Whether the monitor of the container in `dir` still holds its lock.
fn monitor_alive(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        // No lock file yet: the monitor is starting (or never ran).
        return dir.join(STATUS_FILE).exists();
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(_) => true,
    }
}

/// Sends `signal` to the container's init `pid` through a pidfd ([`open_init`]). False when it
/// cannot tell or send: the caller asks the runtime instead.
fn signal_init(id: &str, pid: u32, signal: i32) -> bool {
    let Some(signal) = rustix::process::Signal::from_named_raw(signal) else {
        return false;
    };
    open_init(id, pid)
        .is_some_and(|pidfd| rustix::process::pidfd_send_signal(&pidfd, signal).is_ok())
}

/// A pidfd of container `id`'s init `pid`, once /proc shows that process in a cgroup named
/// after the container. A pid can be reused once its process is gone; a pidfd keeps referring
/// to the process checked, so whatever is done through it never reaches another one.
pub(crate) fn open_init(id: &str, pid: u32) -> Option<std::os::fd::OwnedFd> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()?;
    let suffix = format!("/{id}");
    let in_container = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|text| text.lines().any(|line| line.trim_end().ends_with(&suffix)));
    in_container.then_some(pidfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For real (root): a process is signalled directly only once it is in a cgroup named
    /// after the container.
    #[test]
    fn init_is_signalled_directly_only_inside_its_containers_cgroup() {
        let layout = CgroupLayout::detect().expect("layout");
        let top = format!("/skiff-test-signal-{}", std::process::id());
        let id = "c1";
        let relative = format!("{}/{id}", top.trim_start_matches('/'));
        let dir = match &layout {
            CgroupLayout::V1 { pids, .. } => {
                pids.clone().expect("a pids hierarchy").join(&relative)
            }
            CgroupLayout::V2 { root } => root.join(&relative),
        };
        std::fs::create_dir_all(&dir).expect("cgroup");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let outside = signal_init(id, pid, 15);
        let moved = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        let inside = moved.is_ok() && signal_init(id, pid, 15);
        let status = if inside {
            child.wait().ok()
        } else {
            let _ = child.kill();
            child.wait().ok()
        };
        let removed = layout.remove(&top);
        assert!(
            !outside,
            "a process outside the container's cgroup was signalled"
        );
        moved.expect("moved into the cgroup");
        assert!(inside, "not signalled from inside the container's cgroup");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.and_then(|s| s.signal()), Some(15));
        removed.expect("cgroup removed");
    }
}
