//! `skiff internal exec`: runs a command in a running container as the OCI runtime's `exec`
//! does, without the runtime. The container init's namespaces are joined through a pidfd (all
//! at once, and never another process's should its pid be reused), the process joins the
//! container's cgroup, and gets the container's process settings from the exec's process file
//! (user and groups, capabilities, no_new_privs, rlimits, OOM score, environment, working
//! directory), with a controlling terminal when its stdio is one. `runc exec` costs two Go
//! start-ups, 15–20 ms per exec on the machines we measure on; this costs about 2 ms.
//!
//! The first process joins the PID namespace (only its children enter it), forks the command's
//! process, writes that process's host pid to the pid file (the agent kills it by that pid if
//! the client goes away), waits, and exits with its code (128 + signal when it was killed).
//! Failures to start print runc's words (`exec failed: ...`), with 127 for a command that is
//! not there and 126 for one that cannot run, which the agent reports as Kubernetes does.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

use rustix::thread::{CapabilitySet, CapabilitySets, LinkNameSpaceType};
use serde_json::Value;

use super::cgroup::CgroupLayout;
use super::monitor::{MonitorConfig, CONFIG_FILE, STATUS_FILE};
use super::{ContainerState, ContainerStatus};

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
    let namespaces = Namespaces::open(&config.id, pid)?;
    // Children only: this process stays in the agent's PID namespace to wait.
    if !namespaces.pid_is_own {
        rustix::thread::move_into_link_name_space(
            namespaces.pid.as_fd(),
            Some(LinkNameSpaceType::ProcessID),
        )
        .map_err(|e| format!("joining the container's PID namespace: {e}"))?;
    }

    let layout = match config.cgroup_path {
        Some(_) => Some(CgroupLayout::detect().map_err(|e| e.to_string())?),
        None => None,
    };
    let setup = ExecSetup::new(&process, layout.as_ref(), config.cgroup_path.as_deref())?;
    // On the v2 hierarchy the command's process is born in the container's cgroup: moving it
    // there afterwards would take the kernel's cgroup write lock, which waits for an RCU grace
    // period (10 ms or so) unless the host favours dynamic cgroup changes.
    let v2_dir = setup.open_v2_dir();
    let (child_pid, born_in_v2) = fork_into(v2_dir.as_ref())?;
    if child_pid == 0 {
        let command = Command {
            args: strings(&process["args"]),
            terminal: process["terminal"].as_bool() == Some(true),
        };
        let (code, message) = child(&setup, born_in_v2, &process, &command, namespaces);
        eprintln!("exec failed: {message}");
        std::process::exit(code)
    }
    drop(namespaces);
    if let Err(e) = std::fs::write(pid_file, child_pid.to_string()) {
        eprintln!("exec: writing {}: {e}", pid_file.display());
    }
    Ok(wait(child_pid))
}

/// Forks, straight into the v2 cgroup `cgroup` when one is given and the kernel can
/// (clone3 with CLONE_INTO_CGROUP, Linux 5.7). Returns the child's pid (0 in the child) and
/// whether the child was born in that cgroup.
#[allow(unsafe_code)]
fn fork_into(cgroup: Option<&OwnedFd>) -> Result<(i32, bool), String> {
    use std::os::fd::AsRawFd;
    if let Some(cgroup) = cgroup {
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: cgroup.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: with no stack given, clone3 duplicates the calling process as fork does; this
        // process is single-threaded (a fresh `skiff internal exec` that starts no thread), so
        // the child may run any code. `args` lives across the call and its size is passed.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid >= 0 {
            return Ok((pid as i32, true));
        }
        // An older kernel (ENOSYS, E2BIG) or one that refuses the cgroup: fork, then move.
    }
    // SAFETY: as above, a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        pid => Ok((pid, false)),
    }
}

/// The namespaces of the container's init, opened while it was checked to run.
struct Namespaces {
    pid: OwnedFd,
    /// Whether the PID namespace is this process's own (hostPID): nothing to join then.
    pid_is_own: bool,
    /// In the order they are joined: the mount namespace last.
    others: Vec<(OwnedFd, LinkNameSpaceType)>,
}

impl Namespaces {
    /// Opens `/proc/PID/ns/*` of container `id`'s init `pid`, once a pidfd of it shows it in
    /// the container's cgroup, and checks through that pidfd that it still ran after the files
    /// were opened: a reused pid never hands out another process's namespaces. (setns on the
    /// pidfd itself would do it in one call, but only from Linux 5.8.)
    fn open(id: &str, pid: u32) -> Result<Namespaces, String> {
        let not_running = || format!("container {id} is not running");
        let init = super::manager::open_init(id, pid).ok_or_else(not_running)?;
        let open = |name: &str| -> Result<OwnedFd, String> {
            let path = format!("/proc/{pid}/ns/{name}");
            std::fs::File::open(&path)
                .map(OwnedFd::from)
                .map_err(|e| format!("opening {path}: {e}"))
        };
        let mut others = Vec::with_capacity(5);
        for (name, kind) in [
            ("ipc", LinkNameSpaceType::InterProcessCommunication),
            ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
            ("net", LinkNameSpaceType::Network),
            ("cgroup", LinkNameSpaceType::ControlGroup),
        ] {
            let fd = open(name)?;
            // A namespace the container shares with this process (hostIPC, hostNetwork, a
            // host's cgroup namespace) is joined already: setns to it would change nothing.
            if !is_own_namespace(fd.as_fd(), name) {
                others.push((fd, kind));
            }
        }
        // Always joined, even when it were this process's own: setns to a mount namespace
        // also sets the root and working directory to the namespace's.
        others.push((open("mnt")?, LinkNameSpaceType::Mount));
        let pid_fd = open("pid")?;
        let pid_is_own = is_own_namespace(pid_fd.as_fd(), "pid");
        let namespaces = Namespaces {
            pid: pid_fd,
            pid_is_own,
            others,
        };
        // A pidfd is readable once its process has exited.
        let mut fds = [rustix::event::PollFd::new(
            &init,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(0) => Ok(namespaces),
            _ => Err(not_running()),
        }
    }
}

/// Whether `fd` (an nsfs file) is the namespace `/proc/self/ns/NAME` of this process; false
/// when either cannot be read (the namespace is joined then, as before).
/// The launcher's own namespaces never change (only its children's PID namespace does, which
/// `/proc/self/ns/pid` does not show), so each is read once.
fn is_own_namespace(fd: BorrowedFd<'_>, name: &str) -> bool {
    const NAMES: [&str; 5] = ["ipc", "uts", "net", "cgroup", "pid"];
    /// Device and inode of each of [`NAMES`] of this process, when it could be read.
    static OWN: std::sync::OnceLock<[Option<(u64, u64)>; 5]> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        NAMES.map(|name| {
            rustix::fs::stat(format!("/proc/self/ns/{name}").as_str())
                .ok()
                .map(|s| (s.st_dev, s.st_ino))
        })
    });
    let Some(Some(own)) = NAMES.iter().position(|n| *n == name).map(|i| own[i]) else {
        return false;
    };
    rustix::fs::fstat(fd).is_ok_and(|theirs| (theirs.st_dev, theirs.st_ino) == own)
}

/// The command's exit code as a shell reports it: 128 + signal when killed.
fn wait(child_pid: i32) -> u8 {
    let Some(pid) = rustix::process::Pid::from_raw(child_pid) else {
        return FAILED;
    };
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) | Ok(None) => return FAILED,
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return u8::try_from(code & 0xff).unwrap_or(FAILED);
                }
                if let Some(signal) = status.terminating_signal() {
                    return u8::try_from(128 + (signal & 0x7f)).unwrap_or(FAILED);
                }
            }
        }
    }
}

/// The command's process: joins the container, takes its settings, and executes the command.
/// Returns only on failure: the exit code and what went wrong.
fn child(
    setup: &ExecSetup,
    born_in_v2: bool,
    process: &Value,
    command: &Command,
    namespaces: Namespaces,
) -> (i32, String) {
    match enter(setup, born_in_v2, process, command.terminal, namespaces) {
        Err(message) => (i32::from(FAILED), message),
        Ok(()) => {
            let args = &command.args;
            let Some((program, rest)) = args.split_first() else {
                return (i32::from(FAILED), "no command".to_owned());
            };
            let env = strings(&process["env"]);
            let mut command = std::process::Command::new(program);
            command.args(rest).env_clear();
            for pair in &env {
                let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
                command.env(key, value);
            }
            // Only returns on failure; then say it as runc does, for the agent's 126/127.
            let e = command.exec();
            let start = "unable to start container process: exec:";
            match e.kind() {
                std::io::ErrorKind::NotFound if !program.contains('/') => (
                    127,
                    format!("{start} \"{program}\": executable file not found in $PATH"),
                ),
                std::io::ErrorKind::NotFound => (
                    127,
                    format!("{start} \"{program}\": no such file or directory"),
                ),
                std::io::ErrorKind::PermissionDenied => {
                    (126, format!("{start} \"{program}\": permission denied"))
                }
                _ => (126, format!("{start} \"{program}\": {e}")),
            }
        }
    }
}

/// Everything but the exec, in runc's order: cgroup, namespaces, terminal, limits, identity
/// and capabilities, working directory.
fn enter(
    setup: &ExecSetup,
    born_in_v2: bool,
    process: &Value,
    terminal: bool,
    namespaces: Namespaces,
) -> Result<(), String> {
    for (file, v1) in &setup.cgroup_joins {
        if !v1 && born_in_v2 {
            continue;
        }
        std::fs::write(file, "0").map_err(|e| {
            let dir = file.parent().unwrap_or(file);
            format!("joining the cgroup {}: {e}", dir.display())
        })?;
    }
    // After the cgroup: the container's cgroup namespace is rooted at it. The mount namespace
    // comes last and also gives the container's root, with `/` as the working directory.
    for (fd, kind) in namespaces.others {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(kind))
            .map_err(|e| format!("joining the container's namespaces: {e}"))?;
    }

    if terminal {
        rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
        rustix::process::ioctl_tiocsctty(std::io::stdin())
            .map_err(|e| format!("making the terminal the controlling one: {e}"))?;
    }
    set_rlimits(&process["rlimits"])?;
    if let Some(score) = process["oomScoreAdj"].as_i64() {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| format!("setting the OOM score: {e}"))?;
    }
    // The container's seccomp filter (ADR 014), as runc orders it: without no_new_privs it
    // needs CAP_SYS_ADMIN, so before the identity drops it; with it, after.
    let filter = &setup.filter;
    let no_new_privs = process["noNewPrivileges"].as_bool() == Some(true);
    if let Some(filter) = filter.as_deref().filter(|_| !no_new_privs) {
        super::seccomp_bpf::install(filter)?;
    }
    set_identity(
        &process["user"],
        &process["capabilities"],
        setup.last_capability,
    )?;
    if no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
        if let Some(filter) = filter.as_deref() {
            super::seccomp_bpf::install(filter)?;
        }
    }
    let cwd = process["cwd"].as_str().unwrap_or("/");
    std::env::set_current_dir(cwd)
        .map_err(|e| format!("chdir to cwd (\"{cwd}\") set in config.json failed: {e}"))
}

/// What an exec's process needs that is the same for every exec in one container instance,
/// worked out once (the launcher keeps it per container): the cgroup files to join and the
/// compiled seccomp filter.
pub(crate) struct ExecSetup {
    /// The container's directory in each hierarchy (`tasks` on v1, `cgroup.procs` on v2) that
    /// exists, and whether it is a v1 one.
    cgroup_joins: Vec<(std::path::PathBuf, bool)>,
    /// The container's v2 directory, to be born in.
    v2_dir: Option<std::path::PathBuf>,
    filter: Option<Vec<super::seccomp_bpf::Instruction>>,
    /// The highest capability number the kernel knows.
    last_capability: u32,
}

impl ExecSetup {
    /// The setup of `process` (its seccomp profile) in the cgroup `cgroup_path`.
    pub(crate) fn new(
        process: &Value,
        layout: Option<&CgroupLayout>,
        cgroup_path: Option<&str>,
    ) -> Result<ExecSetup, String> {
        let (cgroup_joins, v2_dir) = match (cgroup_path, layout) {
            (Some(path), Some(layout)) => (
                layout
                    .dirs_by_version(path)
                    .into_iter()
                    // A hierarchy where the runtime made no directory for the container has
                    // nothing to join.
                    .filter(|(dir, _)| dir.is_dir())
                    // On v1 the single-threaded child moves its only thread through `tasks`
                    // ("0": itself), which needs no write lock and so no RCU grace period,
                    // where `cgroup.procs` would wait for one. v2 has only `cgroup.procs`.
                    .map(|(dir, v1)| (dir.join(if v1 { "tasks" } else { "cgroup.procs" }), v1))
                    .collect(),
                layout.v2_dir(path),
            ),
            (Some(_), None) => return Err("the host's cgroup layout is unknown".to_owned()),
            (None, _) => (Vec::new(), None),
        };
        // The container's seccomp filter (ADR 014).
        let filter = match process.get(super::exec::SECCOMP_KEY) {
            Some(profile) if !profile.is_null() => Some(super::seccomp_bpf::compile(profile)?),
            _ => None,
        };
        Ok(ExecSetup {
            cgroup_joins,
            v2_dir,
            filter,
            last_capability: last_capability(),
        })
    }

    /// The container's v2 directory, opened to clone a process into it.
    fn open_v2_dir(&self) -> Option<OwnedFd> {
        let dir = self.v2_dir.as_ref()?;
        std::fs::File::open(dir).ok().map(OwnedFd::from)
    }
}

/// The command an exec runs (the process settings' `args` and `terminal`).
pub(crate) struct Command {
    pub args: Vec<String>,
    pub terminal: bool,
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

/// A command's process started by [`spawn`]: its host pid, and a pidfd through which it is
/// signalled and its exit collected ([`reap`]).
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// The descriptors a spawned command gets: its stdin, stdout and stderr, and the control
/// socket where a start failure is written (`failed CODE MESSAGE`).
pub(crate) struct SpawnIo<'a> {
    pub stdio: [BorrowedFd<'a>; 3],
    pub control: BorrowedFd<'a>,
}

/// Starts `process` (an OCI process with the command's args) in the container `target` as a
/// child of the calling process, without a process in between: the caller joins the
/// container's PID namespace for its children only, clones the child (into the container's v2
/// cgroup where it can, with a pidfd), and goes back to `own_pid_ns` at once. The caller must
/// not ignore SIGCHLD (the kernel would reap the child, its status lost) and must reap it
/// ([`reap`]). The child takes
/// `io` as its stdio, a session of its own (so a timeout kills its whole process group), then
/// the container's cgroup, namespaces and process settings, and executes the command; when
/// that fails it writes why to the control socket and exits with runc's code (127, 126, 255).
///
/// The calling process must be single-threaded (the launcher is): the child runs any code.
/// An error: nothing was started. When going back to its own PID namespace fails, the
/// process exits (its next children would be born in the container's namespace).
#[allow(unsafe_code)]
pub(crate) fn spawn(
    target: &ExecTarget,
    process: &Value,
    command: &Command,
    setup: &ExecSetup,
    own_pid_ns: BorrowedFd<'_>,
    io: SpawnIo<'_>,
) -> Result<Spawned, String> {
    let namespaces = Namespaces::open(&target.id, target.pid)?;
    let v2_dir = setup.open_v2_dir();
    // A hostPID container's children are born in the launcher's own PID namespace already.
    let pid_is_own = namespaces.pid_is_own;
    if !pid_is_own {
        rustix::thread::move_into_link_name_space(
            namespaces.pid.as_fd(),
            Some(LinkNameSpaceType::ProcessID),
        )
        .map_err(|e| format!("joining the container's PID namespace: {e}"))?;
    }
    let cloned = clone_with_pidfd(v2_dir.as_ref());
    if let Ok((0, born_in_v2, _)) = cloned {
        let (code, message) = spawned_child(setup, born_in_v2, process, command, namespaces, &io);
        let line = format!(
            "failed {code} exec failed: {}\n",
            message.replace('\n', " ")
        );
        let _ = rustix::io::write(io.control, line.as_bytes());
        // SAFETY: _exit ends the child at once, running nothing of the launcher's (no atexit
        // handlers, no buffered output flushed twice).
        unsafe { libc::_exit(code) }
    }
    let returned = match pid_is_own {
        true => Ok(()),
        false => rustix::thread::move_into_link_name_space(
            own_pid_ns,
            Some(LinkNameSpaceType::ProcessID),
        ),
    };
    if let Err(e) = returned {
        eprintln!("exec: cannot return to the launcher's own PID namespace: {e}; exiting");
        std::process::exit(1);
    }
    match cloned? {
        (pid, _, Some(pidfd)) => Ok(Spawned { pid, pidfd }),
        (pid, _, None) => Err(format!("clone3 gave process {pid} no pidfd")),
    }
}

/// The child of [`spawn`]: its stdio and session, then [`child`]. Returns only on failure.
fn spawned_child(
    setup: &ExecSetup,
    born_in_v2: bool,
    process: &Value,
    command: &Command,
    namespaces: Namespaces,
    io: &SpawnIo<'_>,
) -> (i32, String) {
    let [stdin, stdout, stderr] = &io.stdio;
    let dup = rustix::stdio::dup2_stdin(stdin)
        .and_then(|()| rustix::stdio::dup2_stdout(stdout))
        .and_then(|()| rustix::stdio::dup2_stderr(stderr));
    if let Err(e) = dup {
        return (i32::from(FAILED), format!("setting up stdio: {e}"));
    }
    // With a terminal, `enter` makes the session and takes the terminal.
    if !command.terminal {
        if let Err(e) = rustix::process::setsid() {
            return (i32::from(FAILED), format!("setsid: {e}"));
        }
    }
    child(setup, born_in_v2, process, command, namespaces)
}

/// clone3 with a pidfd, into the v2 cgroup `cgroup` when given and the
/// kernel can. Returns the child's pid (0 in the child), whether it was born in that cgroup,
/// and the pidfd (in the parent only).
#[allow(unsafe_code)]
fn clone_with_pidfd(cgroup: Option<&OwnedFd>) -> Result<(i32, bool, Option<OwnedFd>), String> {
    use std::os::fd::{AsRawFd, FromRawFd};
    const CLONE_PIDFD: u64 = 0x1000;
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut attempts = Vec::with_capacity(2);
    if let Some(cgroup) = cgroup {
        attempts.push((CLONE_PIDFD | CLONE_INTO_CGROUP, cgroup.as_raw_fd() as u64));
    }
    attempts.push((CLONE_PIDFD, 0));
    let mut last = String::new();
    for (flags, cgroup_fd) in attempts {
        let mut pidfd: libc::c_int = -1;
        let args = CloneArgs {
            flags,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            // (An exec resets the exit signal to SIGCHLD anyway.)
            exit_signal: libc::SIGCHLD as u64,
            cgroup: cgroup_fd,
            ..CloneArgs::default()
        };
        // SAFETY: with no stack given, clone3 duplicates the calling process as fork does; the
        // caller is single-threaded (the launcher), so the child may run any code. `args` and
        // `pidfd` live across the call and the size of `args` is passed.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match pid {
            0 => return Ok((0, cgroup_fd != 0, None)),
            pid if pid > 0 && pidfd >= 0 => {
                // SAFETY: CLONE_PIDFD made the kernel write a new descriptor, owned by us now.
                let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
                return Ok((pid as i32, cgroup_fd != 0, Some(fd)));
            }
            _ => last = format!("clone3: {}", std::io::Error::last_os_error()),
        }
    }
    Err(last)
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
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

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[allow(unsafe_code)]
fn set_rlimits(rlimits: &Value) -> Result<(), String> {
    for limit in rlimits.as_array().into_iter().flatten() {
        let name = limit["type"].as_str().unwrap_or_default();
        let Some(resource) = rlimit_resource(name) else {
            return Err(format!("unknown rlimit {name}"));
        };
        let value = libc::rlimit {
            rlim_cur: limit["soft"].as_u64().unwrap_or(libc::RLIM_INFINITY),
            rlim_max: limit["hard"].as_u64().unwrap_or(libc::RLIM_INFINITY),
        };
        // SAFETY: setrlimit reads the struct passed by reference, valid for the call.
        if unsafe { libc::setrlimit(resource, &value) } != 0 {
            return Err(format!(
                "setting {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// The capability set named by `names` (`CAP_CHOWN`, ...); an unknown name is an error.
fn capability_set(names: &Value) -> Result<u64, String> {
    let mut set = 0u64;
    for name in strings(names) {
        let bit = super::spec::capability_number(&name)
            .ok_or_else(|| format!("unknown capability {name:?}"))?;
        set |= 1 << bit;
    }
    Ok(set)
}

/// Bounding set, then groups, gid and uid (keeping capabilities across the change of uid),
/// then the effective, permitted, inheritable and ambient sets, as runc does.
#[allow(unsafe_code)]
fn set_identity(user: &Value, capabilities: &Value, last: u32) -> Result<(), String> {
    let bounding = capability_set(&capabilities["bounding"])?;
    let effective = capability_set(&capabilities["effective"])?;
    let permitted = capability_set(&capabilities["permitted"])?;
    let inheritable = capability_set(&capabilities["inheritable"])?;
    let ambient = capability_set(&capabilities["ambient"])?;
    for bit in 0..=last {
        if bounding & (1 << bit) == 0 {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(bit), 0, 0, 0) } != 0
            {
                return Err(format!(
                    "dropping capability {bit} from the bounding set: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }

    let id = |key: &str| {
        user[key]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    let groups: Vec<rustix::process::Gid> = user["additionalGids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok()))
        .map(rustix::process::Gid::from_raw)
        .collect();
    rustix::thread::set_keep_capabilities(true).map_err(|e| format!("keepcaps: {e}"))?;
    rustix::thread::set_thread_groups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(id("gid")))
        .map_err(|e| format!("setgid: {e}"))?;
    rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(id("uid")))
        .map_err(|e| format!("setuid: {e}"))?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| format!("keepcaps: {e}"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::from_bits_retain(effective),
            permitted: CapabilitySet::from_bits_retain(permitted),
            inheritable: CapabilitySet::from_bits_retain(inheritable),
        },
    )
    .map_err(|e| format!("capset: {e}"))?;
    for bit in 0..=last {
        if ambient & (1 << bit) != 0 {
            // SAFETY: prctl with integer arguments only.
            let raised = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    libc::c_ulong::from(bit),
                    0,
                    0,
                )
            };
            if raised != 0 {
                return Err(format!(
                    "raising ambient capability {bit}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespaces_are_recognised_and_other_files_are_not() {
        for name in ["ipc", "uts", "net", "cgroup", "pid"] {
            let own = std::fs::File::open(format!("/proc/self/ns/{name}")).expect("own ns");
            assert!(is_own_namespace(own.as_fd(), name), "{name}");
        }
        // Another namespace type's file, and a file that is no namespace: joined as before.
        let net = std::fs::File::open("/proc/self/ns/net").expect("own net ns");
        assert!(!is_own_namespace(net.as_fd(), "ipc"));
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        assert!(!is_own_namespace(null.as_fd(), "net"));
        assert!(!is_own_namespace(net.as_fd(), "mnt"));
    }
}
