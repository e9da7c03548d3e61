//! Cgroups of containers: which layout the host has (v1 or hybrid, or pure v2), where a
//! container's cgroup lives in each hierarchy, its OOM-kill counter, and removal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_error, ContainerError, Result};

/// The host's cgroup layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 controllers (each hierarchy mounted under /sys/fs/cgroup), possibly with a v2
    /// hierarchy beside them (hybrid: /sys/fs/cgroup/unified).
    V1 {
        /// Every v1 hierarchy's mount point.
        hierarchies: Vec<PathBuf>,
        /// The hierarchy holding the memory controller.
        memory: Option<PathBuf>,
        /// The hierarchy holding the pids controller.
        pids: Option<PathBuf>,
        unified: Option<PathBuf>,
    },
    /// Pure cgroup v2, mounted at `root` (/sys/fs/cgroup).
    V2 { root: PathBuf },
}

impl CgroupLayout {
    /// The layout of this host, from /proc/self/mountinfo.
    pub fn detect() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_error("reading", "/proc/self/mountinfo"))?;
        Ok(Self::from_mountinfo(&text))
    }

    /// The layout described by a mountinfo text.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut hierarchies = Vec::new();
        let mut memory = None;
        let mut pids = None;
        let mut unified = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let super_options = right.nth(1).unwrap_or_default();
            let mount_point = PathBuf::from(mount_point.replace("\\040", " "));
            match fstype {
                "cgroup" => {
                    if super_options.split(',').any(|o| o == "memory") {
                        memory = Some(mount_point.clone());
                    }
                    if super_options.split(',').any(|o| o == "pids") {
                        pids = Some(mount_point.clone());
                    }
                    if !hierarchies.contains(&mount_point) {
                        hierarchies.push(mount_point);
                    }
                }
                "cgroup2" => unified = Some(mount_point),
                _ => {}
            }
        }
        match (hierarchies.is_empty(), unified) {
            (true, Some(root)) => CgroupLayout::V2 { root },
            (_, unified) => CgroupLayout::V1 {
                hierarchies,
                memory,
                pids,
                unified,
            },
        }
    }

    /// The directories of cgroup `path` (`/skiff/pod<uid>/<id>`) in every hierarchy.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        self.dirs_by_version(path)
            .into_iter()
            .map(|(dir, _)| dir)
            .collect()
    }

    /// The directories of cgroup `path` in every hierarchy, each with whether it is a v1
    /// hierarchy.
    pub fn dirs_by_version(&self, path: &str) -> Vec<(PathBuf, bool)> {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 {
                hierarchies,
                unified,
                ..
            } => hierarchies
                .iter()
                .map(|h| (h.join(relative), true))
                .chain(unified.iter().map(|u| (u.join(relative), false)))
                .collect(),
            CgroupLayout::V2 { root } => vec![(root.join(relative), false)],
        }
    }

    /// The directory of cgroup `path` in the v2 hierarchy (pure v2, or hybrid's unified one).
    pub fn v2_dir(&self, path: &str) -> Option<PathBuf> {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { unified, .. } => unified.as_ref().map(|u| u.join(relative)),
            CgroupLayout::V2 { root } => Some(root.join(relative)),
        }
    }

    /// How many processes of cgroup `path` the kernel's OOM killer has killed (v1
    /// memory.oom_control `oom_kill`, v2 memory.events `oom_kill`); 0 when it cannot tell.
    pub fn oom_kills(&self, path: &str) -> u64 {
        let relative = path.trim_start_matches('/');
        let (file, key) = match self {
            CgroupLayout::V1 {
                memory: Some(memory),
                ..
            } => (memory.join(relative).join("memory.oom_control"), "oom_kill"),
            CgroupLayout::V1 { memory: None, .. } => return 0,
            CgroupLayout::V2 { root } => (root.join(relative).join("memory.events"), "oom_kill"),
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let (name, value) = line.split_once(' ')?;
                    (name == key).then(|| value.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    /// Limits the number of processes (threads) in cgroup `path` and all below it: kubelet's
    /// pod pids limit (`--pod-max-pids`), set on the pod's cgroup before its containers' cgroups
    /// are made below it. Creates the cgroup; on cgroup v2 enables the pids controller for it
    /// in its ancestors.
    pub fn limit_pids(&self, path: &str, limit: i64) -> Result<()> {
        let relative = path.trim_start_matches('/');
        let dir = match self {
            CgroupLayout::V1 {
                pids: Some(pids), ..
            } => pids.join(relative),
            CgroupLayout::V1 { pids: None, .. } => {
                return Err(ContainerError::Unsupported(
                    "a pids limit needs the pids cgroup controller, which this host has not \
                     mounted"
                        .into(),
                ))
            }
            CgroupLayout::V2 { root } => {
                let mut parent = root.clone();
                for part in Path::new(relative)
                    .parent()
                    .into_iter()
                    .flat_map(Path::components)
                {
                    enable_pids(&parent)?;
                    parent = parent.join(part);
                    make_dir(&parent)?;
                }
                enable_pids(&parent)?;
                root.join(relative)
            }
        };
        make_dir(&dir)?;
        let file = dir.join("pids.max");
        std::fs::write(&file, limit.to_string()).map_err(io_error("writing", &file))
    }

    /// Removes cgroup `path` (and its children) in every hierarchy; a missing one is fine.
    /// Processes still inside are killed (they can only be the container's). Keeps going past
    /// errors and reports them all.
    pub fn remove(&self, path: &str) -> Result<()> {
        let mut errors = Vec::new();
        for dir in self.dirs(path) {
            if let Err(e) = remove_tree(&dir) {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ContainerError::Cleanup {
                id: path.to_owned(),
                errors,
            })
        }
    }
}

/// Whether containers' swap can be limited (containerd's `SwapControllerAvailable`): on cgroup
/// v1 the memory controller must account swap (`memory.memsw.*`, off with `swapaccount=0`); on
/// v2 runc ignores a zero swap limit where there is no swap controller, so it always may.
pub fn swap_limit_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| match CgroupLayout::detect() {
        Ok(CgroupLayout::V1 {
            memory: Some(memory),
            ..
        }) => memory.join("memory.memsw.limit_in_bytes").exists(),
        Ok(CgroupLayout::V1 { memory: None, .. }) | Err(_) => false,
        Ok(CgroupLayout::V2 { .. }) => true,
    })
}

/// rmdir of a cgroup directory, children first (their files cannot be unlinked), retried
/// while the kernel still counts exiting processes in it.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(16) && Instant::now() < deadline => {
                // EBUSY: processes remain; kill them and retry.
                kill_procs(dir);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(io_error("creating", dir)(e)),
    }
}

/// Adds the pids controller to the v2 cgroup `dir`'s subtree_control, unless it is there.
fn enable_pids(dir: &Path) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&file).map_err(io_error("reading", &file))?;
    if current.split_whitespace().any(|c| c == "pids") {
        return Ok(());
    }
    std::fs::write(&file, "+pids").map_err(io_error("writing", &file))
}

fn kill_procs(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            // Already gone is fine: the retry loop checks the cgroup again.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// What [`favor_dynamic_changes`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Favor {
    /// The v2 hierarchy (mounted at this path) already had `favordynmods`.
    Already(PathBuf),
    /// The v2 hierarchy at this path was remounted with `favordynmods`.
    Remounted(PathBuf),
    /// The host has no v2 hierarchy: only the kernel command line (`cgroup_favordynmods=true`)
    /// can do it.
    NoV2Hierarchy,
}

/// Makes the kernel favour dynamic cgroup changes: remounts the cgroup v2 hierarchy (pure v2,
/// or hybrid's unified one) with `favordynmods` (Linux 6.0), keeping its other options. Without
/// it every move of a process into a cgroup through `cgroup.procs`, as the OCI runtime does
/// for each container it starts, first waits for an RCU grace period (10 ms or so, measured);
/// with it forks and exits cost a little more. The setting is global (it also covers v1
/// hierarchies) and, like kubelet's kernel sysctls, the node agent's to make.
pub fn favor_dynamic_changes() -> Result<Favor> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_error("reading", "/proc/self/mountinfo"))?;
    let Some(mount) = v2_mount(&text) else {
        return Ok(Favor::NoV2Hierarchy);
    };
    if mount.super_options.iter().any(|o| o == "favordynmods") {
        return Ok(Favor::Already(mount.point));
    }
    let data: Vec<&str> = mount
        .super_options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "rw" && *o != "ro")
        .chain(["favordynmods"])
        .collect();
    rustix::mount::mount_remount(&mount.point, mount.flags, data.join(","))
        .map_err(|e| io_error("remounting with favordynmods", &mount.point)(e.into()))?;
    Ok(Favor::Remounted(mount.point))
}

/// The cgroup2 mount of a mountinfo text: where, its per-mount flags, its superblock options.
struct V2Mount {
    point: PathBuf,
    flags: rustix::mount::MountFlags,
    super_options: Vec<String>,
}

fn v2_mount(mountinfo: &str) -> Option<V2Mount> {
    use rustix::mount::MountFlags;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        if right.next()? != "cgroup2" {
            return None;
        }
        let super_options = right.nth(1)?.split(',').map(str::to_owned).collect();
        let mut left = left.split(' ');
        let point = PathBuf::from(left.nth(4)?.replace("\\040", " "));
        let mut flags = MountFlags::empty();
        for option in left.next()?.split(',') {
            flags |= match option {
                "ro" => MountFlags::RDONLY,
                "nosuid" => MountFlags::NOSUID,
                "nodev" => MountFlags::NODEV,
                "noexec" => MountFlags::NOEXEC,
                "noatime" => MountFlags::NOATIME,
                "nodiratime" => MountFlags::NODIRATIME,
                "relatime" => MountFlags::RELATIME,
                "strictatime" => MountFlags::STRICTATIME,
                _ => MountFlags::empty(),
            };
        }
        Some(V2Mount {
            point,
            flags,
            super_options,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// For real (root): a pids limit on a fresh cgroup is what the kernel then reports, and
    /// the cgroup goes with `remove`.
    #[test]
    fn pids_limit_on_this_host() {
        let layout = CgroupLayout::detect().expect("layout");
        let path = format!("/skiff-test-{}/pod-pids", std::process::id());
        let top = format!("/skiff-test-{}", std::process::id());
        let result = layout.limit_pids(&path, 42);
        let file = match &layout {
            CgroupLayout::V1 { pids, .. } => pids
                .as_ref()
                .map(|p| p.join(path.trim_start_matches('/')).join("pids.max")),
            CgroupLayout::V2 { root } => {
                Some(root.join(path.trim_start_matches('/')).join("pids.max"))
            }
        };
        let read = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok());
        let removed = layout.remove(&top);
        result.expect("limit_pids");
        assert_eq!(read.as_deref().map(str::trim), Some("42"));
        removed.expect("remove");
        assert!(layout.dirs(&top).iter().all(|d| !d.exists()));
    }

    #[test]
    fn hybrid_and_v2_layouts() {
        let layout = CgroupLayout::from_mountinfo(HYBRID);
        assert_eq!(
            layout,
            CgroupLayout::V1 {
                hierarchies: ["cpu", "memory", "pids", "systemd"]
                    .iter()
                    .map(|c| Path::new("/sys/fs/cgroup").join(c))
                    .collect(),
                memory: Some("/sys/fs/cgroup/memory".into()),
                pids: Some("/sys/fs/cgroup/pids".into()),
                unified: Some("/sys/fs/cgroup/unified".into()),
            }
        );
        assert_eq!(layout.dirs("/skiff/a").len(), 5);
        assert_eq!(
            layout.dirs("/skiff/a")[1],
            Path::new("/sys/fs/cgroup/memory/skiff/a")
        );
        let v2 = CgroupLayout::from_mountinfo(
            "25 22 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            v2,
            CgroupLayout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(
            v2.dirs("/skiff/a"),
            vec![Path::new("/sys/fs/cgroup/skiff/a")]
        );
    }

    #[test]
    fn the_v2_mount_keeps_its_flags_and_options_for_the_remount() {
        use rustix::mount::MountFlags;
        let text = "\
25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let mount = v2_mount(text).expect("a cgroup2 mount");
        assert_eq!(mount.point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            mount.flags,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RELATIME
        );
        assert_eq!(
            mount.super_options,
            ["rw", "nsdelegate", "memory_recursiveprot"]
        );
        assert!(v2_mount(&text.replace("cgroup2", "cgroup")).is_none());
    }
}
