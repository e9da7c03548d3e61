//! The per-container monitor (`skiff internal monitor <container-dir>`): a small process, in its
//! own session so it survives the agent, that runs the container through the OCI runtime as a
//! child subreaper, holds its stdout and stderr, writes them to the CRI log, waits for the exit,
//! records it in `status.json`, then deletes the runtime's state. No async runtime: a few
//! threads and blocking calls keep it near 2 MB resident.

use std::path::{Path, PathBuf};

use super::runtime::CliRuntime;

/// What the manager tells the monitor (`monitor.json` in the container directory).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorConfig {
    pub id: String,
    pub runtime: CliRuntime,
    pub log_path: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: usize,
    /// The container's cgroup (`linux.cgroupsPath`), to read its OOM-kill counter at exit.
    pub cgroup_path: Option<String>,
}

/// Runs the monitor of the container in `dir`; returns the process's exit code.
pub fn main(dir: &Path) -> std::process::ExitCode {
    let _ = dir;
    todo!()
}
