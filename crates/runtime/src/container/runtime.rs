//! OCI runtimes driven through their command line (runc, crun: same verbs), behind a trait so the
//! manager and the monitor do not care which one runs the container.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::Result;

/// Which OCI runtime binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Runc,
    Crun,
}

/// What the runtime reports of a container (`runc state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeState {
    /// `created`, `running`, `stopped`, `paused`.
    pub status: String,
    pub pid: u32,
}

/// The verbs of the OCI runtime command line.
pub trait OciRuntime: Send + Sync {
    /// `runc`, `crun`.
    fn name(&self) -> &str;
    /// The runtime's version line (`runc version 1.1.5`).
    fn version(&self) -> Result<String>;
    /// Creates the container from `bundle`; its init's stdio are `stdout`/`stderr` (stdin is
    /// /dev/null) and its pid is written to `pid_file`.
    fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<()>;
    fn start(&self, id: &str) -> Result<()>;
    /// Sends `signal` (a number) to the container's init (`all`: to every process in it).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Deletes the runtime's state (`force`: kills a running container first). A container the
    /// runtime does not know is not an error.
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// None when the runtime does not know the container.
    fn state(&self, id: &str) -> Result<Option<RuntimeState>>;
}

/// runc or crun through its command line, with its state under `root`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CliRuntime {
    pub kind: RuntimeKind,
    pub binary: PathBuf,
    /// `--root`: where the runtime keeps its state (e.g. `<data-dir>/runc`).
    pub root: PathBuf,
    /// `--log`: where the runtime writes its own diagnostics, if anywhere.
    pub log: Option<PathBuf>,
}

impl CliRuntime {
    /// The runtime of `kind` found at its usual place (`/usr/sbin/runc`, `/usr/bin/crun`, else
    /// on PATH), with its state under `root`.
    pub fn new(kind: RuntimeKind, root: PathBuf) -> Self {
        let _ = (kind, root);
        todo!()
    }
}

impl OciRuntime for CliRuntime {
    fn name(&self) -> &str {
        todo!()
    }
    fn version(&self) -> Result<String> {
        todo!()
    }
    fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<()> {
        let _ = (id, bundle, pid_file, stdout, stderr);
        todo!()
    }
    fn start(&self, id: &str) -> Result<()> {
        let _ = id;
        todo!()
    }
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let _ = (id, signal, all);
        todo!()
    }
    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let _ = (id, force);
        todo!()
    }
    fn state(&self, id: &str) -> Result<Option<RuntimeState>> {
        let _ = id;
        todo!()
    }
}

/// Whether `kind` can run containers on this host's cgroup layout; the error says why not
/// (crun refuses cgroup v1 hosts whose v2 hierarchy holds a controller).
pub fn check_runtime_supported(kind: RuntimeKind) -> Result<()> {
    let _ = kind;
    todo!()
}
