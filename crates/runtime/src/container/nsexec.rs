//! `skiff internal exec`: runs a command in a running container as the OCI runtime's `exec`
//! does, without the runtime. The container init's namespaces are joined through a pidfd (all
//! at once from Linux 5.8, and never another process's should its pid be reused), the process joins the
//! container's cgroup, and gets the container's process settings from the exec's process file
//! (user and groups, capabilities, no_new_privs, rlimits, OOM score, environment, working
//! directory), with a controlling terminal when its stdio is one. `runc exec` costs two Go
//! start-ups, 15–20 ms per exec on the machines we measure on; this costs about 2 ms.
//!
//! The first process joins the PID namespace (only its children enter it), starts the command's
//! process as the launcher starts exec probes' ([`spawn`], `entry.rs`), writes that process's host pid to the pid file (the agent kills it by that pid if
//! the client goes away), waits, and exits with its code (128 + signal when it was killed).
//! Failures to start print runc's words (`exec failed: ...`), with 127 for a command that is
//! not there and 126 for one that cannot run, which the agent reports as Kubernetes does.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::cgroup::CgroupLayout;
use super::entry::{strings, Entry, Exec, Report, NAMESPACES};
use super::monitor::{MonitorConfig, CONFIG_FILE, STATUS_FILE};
use super::{ContainerState, ContainerStatus};

pub(crate) use super::entry::Spawned;

/// Exit code of a failure before the command ran (runc's).
const FAILED: u8 = 255;

/// Runs the process described by `process_file` (an OCI `process`) in the container whose
/// directory is `container_dir`; writes its host pid to `pid_file`.
pub fn main(container_dir: &Path, process_file: &Path, pid_file: &Path) -> ExitCode {
    match run(container_dir, process_file, pid_file) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("exec failed: {message}");
            ExitCode::from(FAILED)
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("reading {}: {e}", path.display()))
}

#[allow(unsafe_code)]
fn run(container_dir: &Path, process_file: &Path, pid_file: &Path) -> Result<u8, String> {
    let process: Value = read_json(process_file)?;
    let config: MonitorConfig = read_json(&container_dir.join(CONFIG_FILE))?;
    let status: ContainerStatus = read_json(&container_dir.join(STATUS_FILE))?;
    let ContainerState::Running { pid, .. } = status.state else {
        return Err(format!("container {} is not running", config.id));
    };
    let layout = match config.cgroup_path {
        Some(_) => Some(CgroupLayout::detect().map_err(|e| e.to_string())?),
        None => None,
    };
    let entry = Entry::new(
        &config.id,
        pid,
        config.cgroup_path.as_deref(),
        layout.as_ref(),
        &process,
    )?;
    let own_pid_ns: OwnedFd = std::fs::File::open("/proc/self/ns/pid")
        .map_err(|e| format!("opening the PID namespace: {e}"))?
        .into();
    let args = strings(&process["args"]);
    // SAFETY: this process's stdio stays open for its life; it is only borrowed here.
    let stdio = unsafe { [0, 1, 2].map(|fd| BorrowedFd::borrow_raw(fd)) };
    let spawned = spawn(
        &entry,
        &args,
        process["terminal"].as_bool() == Some(true),
        stdio,
        Report::Stderr,
        std::os::fd::AsFd::as_fd(&own_pid_ns),
    )?;
    drop(entry);
    if let Err(e) = std::fs::write(pid_file, spawned.pid.to_string()) {
        eprintln!("exec: writing {}: {e}", pid_file.display());
    }
    Ok(reap(std::os::fd::AsFd::as_fd(&spawned.pidfd), true).unwrap_or(FAILED))
}

/// Whether this kernel's setns takes a pidfd and several namespaces at once.
fn pidfd_setns() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED
        .get_or_init(|| setns_takes_pidfd(&rustix::system::uname().release().to_string_lossy()))
}

/// Whether a kernel of `release` (`uname -r`) is Linux 5.8 or later.
fn setns_takes_pidfd(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (5, 8)
}

/// The PID namespace's file (when it is joined) and the others' with their CLONE_NEW* flags.
type NamespaceFiles = (Option<OwnedFd>, Vec<(OwnedFd, c_int)>);

/// Namespace files of the container's init, opened per exec on kernels whose setns takes no
/// pidfd: the PID namespace (when joined) and the others in the order they are joined, once
/// the init's pidfd shows it still ran after they were opened (a reused pid never hands out
/// another process's namespaces).
fn namespace_files(entry: &Entry) -> Result<NamespaceFiles, String> {
    let open = |name: &str| -> Result<OwnedFd, String> {
        let path = format!("/proc/{}/ns/{name}", entry.init_pid);
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| format!("opening {path}: {e}"))
    };
    let pid = match entry.pid_is_own {
        true => None,
        false => Some(open("pid")?),
    };
    let mut others = Vec::with_capacity(NAMESPACES.len());
    for (name, flag) in NAMESPACES {
        if entry.namespaces & flag != 0 {
            others.push((open(name)?, flag));
        }
    }
    match entry.init_exited() {
        true => Err(format!("container {} is not running", entry.id)),
        false => Ok((pid, others)),
    }
}

/// Which container an exec enters: its id, its init's host pid and its cgroup path
/// (`linux.cgroupsPath`), as the manager read them from the container's files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecTarget {
    pub id: String,
    pub pid: u32,
    pub cgroup_path: Option<String>,
}

/// Starts `args` in the container of `entry` as a child of the calling thread, without a
/// process in between: the caller joins the container's PID namespace for its children only,
/// clones the child (ADR 018: sharing the caller's memory, into the container's v2 cgroup
/// where it can, with a pidfd), and goes back to `own_pid_ns` at once. The caller must not
/// ignore SIGCHLD (the kernel would reap the child, its status lost) and must reap it
/// ([`reap`]). The child takes `stdio`, a session of its own (so a timeout kills its whole
/// process group; with `terminal`, stdin becomes its controlling terminal), then the
/// container's cgroup, namespaces and process settings, and executes the command; when that
/// fails it says why to `report` and exits with runc's code (127, 126, 255).
///
/// An error: nothing was started. When going back to its own PID namespace fails, the
/// process exits (its next children would be born in the container's namespace).
pub(crate) fn spawn(
    entry: &Entry,
    args: &[String],
    terminal: bool,
    stdio: [BorrowedFd<'_>; 3],
    report: Report<'_>,
    own_pid_ns: BorrowedFd<'_>,
) -> Result<Spawned, String> {
    // The namespaces: through the init's pidfd in one call, or by their files.
    let files;
    let (pid_join, joins): (Option<RawFd>, Vec<(RawFd, c_int)>) = if pidfd_setns() {
        (
            (!entry.pid_is_own).then(|| entry.init.as_raw_fd()),
            vec![(entry.init.as_raw_fd(), entry.namespaces)],
        )
    } else {
        files = namespace_files(entry)?;
        (
            files.0.as_ref().map(AsRawFd::as_raw_fd),
            files
                .1
                .iter()
                .map(|(fd, flag)| (fd.as_raw_fd(), *flag))
                .collect(),
        )
    };
    let mut exec = Exec::new(entry, args, terminal, stdio, report, joins)?;
    // A hostPID container's children are born in the caller's own PID namespace already.
    if let Some(fd) = pid_join {
        set_namespace(fd, libc::CLONE_NEWPID).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => format!("container {} is not running", entry.id),
            _ => format!("joining the container's PID namespace: {e}"),
        })?;
    }
    let spawned = super::entry::spawn(&mut exec);
    if pid_join.is_some() {
        if let Err(e) = set_namespace(own_pid_ns.as_raw_fd(), libc::CLONE_NEWPID) {
            eprintln!("exec: cannot return to the own PID namespace: {e}; exiting");
            std::process::exit(1);
        }
    }
    spawned
}

#[allow(unsafe_code)]
fn set_namespace(fd: RawFd, flags: c_int) -> std::io::Result<()> {
    // SAFETY: setns with a descriptor and flags only.
    match unsafe { libc::setns(fd, flags) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Collects the exit of a process started by [`spawn`] through its pidfd: its exit code as a
/// shell reports it (128 + signal when killed); None when it has not exited (with `wait`
/// false) or cannot be collected.
#[allow(unsafe_code)]
pub(crate) fn reap(pidfd: BorrowedFd<'_>, wait: bool) -> Option<u8> {
    use std::os::fd::AsRawFd;
    const P_PIDFD: libc::idtype_t = 3;
    let mut options = libc::WEXITED | libc::__WALL;
    if !wait {
        options |= libc::WNOHANG;
    }
    loop {
        // SAFETY: a zeroed siginfo_t is a valid value for the kernel to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`, valid for the call; the pidfd is open.
        let done =
            unsafe { libc::waitid(P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, options) };
        if done != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        // SAFETY: waitid filled `info` for a child's exit (si_pid 0: nothing exited yet).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return None;
        }
        return Some(match info.si_code {
            libc::CLD_EXITED => u8::try_from(status & 0xff).unwrap_or(FAILED),
            _ => u8::try_from(128 + (status & 0x7f)).unwrap_or(FAILED),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_from_5_8_take_a_pidfd_in_setns() {
        for (release, takes) in [
            ("6.1.0-27-amd64", true),
            ("5.8.0", true),
            ("5.10.0-33-cloud-amd64", true),
            ("5.7.19", false),
            ("4.18.0-553.el8_10.x86_64", false),
            ("", false),
        ] {
            assert_eq!(setns_takes_pidfd(release), takes, "{release}");
        }
    }
}
