//! Cgroups of containers: which layout the host has (v1 or hybrid, or pure v2), where a
//! container's cgroup lives in each hierarchy, its OOM-kill counter, and removal.

use std::path::PathBuf;

use super::Result;

/// The host's cgroup layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 controllers (each mounted under /sys/fs/cgroup/<name>), possibly with a v2
    /// hierarchy at /sys/fs/cgroup/unified (hybrid).
    V1 {
        /// Every v1 hierarchy's mount point.
        hierarchies: Vec<PathBuf>,
        unified: Option<PathBuf>,
    },
    /// Pure cgroup v2 at /sys/fs/cgroup.
    V2,
}

impl CgroupLayout {
    /// The layout of this host (reads /proc/self/mountinfo).
    pub fn detect() -> Result<Self> {
        todo!()
    }

    /// The directories of cgroup `path` (`/skiff/pod<uid>/<id>`) in every hierarchy.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let _ = path;
        todo!()
    }

    /// How many processes of cgroup `path` the kernel's OOM killer has killed (v1
    /// memory.oom_control `oom_kill`, v2 memory.events `oom_kill`); 0 when it cannot tell.
    pub fn oom_kills(&self, path: &str) -> u64 {
        let _ = path;
        todo!()
    }

    /// Removes cgroup `path` (and its children) in every hierarchy; a missing one is fine.
    /// Keeps going past errors and reports them all.
    pub fn remove(&self, path: &str) -> Result<()> {
        let _ = path;
        todo!()
    }
}
