//! The monitor launcher: one small, single-threaded process per container manager, started
//! once from this binary (`skiff internal monitor <containers-dir> --launcher`), that forks
//! each container's monitor on request.
//!
//! Why: executing the (large, position-independent) binary for every container costs a few
//! milliseconds of exec and relocation per start, and leaves every monitor with a private copy
//! of the relocated data (about 600 KiB each). Monitors forked from the launcher skip the exec
//! and share those pages with it.
//!
//! It also starts commands in containers (exec probes, hooks): forking a process that runs the
//! steps of nsexec.rs in-process costs a fork of this small process, where `skiff internal
//! exec` cost an exec and relocation of the whole binary per command (ADR 017).
//!
//! Protocol: a `SOCK_SEQPACKET` socket pair; the launcher's end is its stdin. A request is one
//! message (see [`Request`]), its first byte the kind:
//! - `M` and the container directory, with two descriptors as `SCM_RIGHTS`: the write end of
//!   the report pipe (the monitor's stdout, where it writes `ok <pid>` or `error ...`) and the
//!   monitor log (its stderr). The launcher answers nothing itself.
//! - `E`, a 32-bit little-endian length and that many bytes of JSON ([`ExecHeader`]: the
//!   command, a terminal or not), then the exec plan's JSON ([`ExecPlan`]: which container, its
//!   process settings), with four descriptors: the control socket (a stream socket), the
//!   command's stdin, stdout and stderr. On the control socket the launcher writes lines:
//!   `pid <host pid>` once the command's process runs, `failed <code> <message>` when it could
//!   not start (code 127: no such command, 126: cannot run, 255: anything else), and
//!   `exit <code>` (128 + signal when killed) once it ended and was reaped; then closes it. The
//!   manager's side closing (or writing to) the control socket before that kills the command's
//!   process group.
//!
//! End of file on its stdin (the manager, or the whole agent, is gone) ends the launcher,
//! killing the commands it still runs; the monitors live on, in sessions of their own.

use std::ffi::{CStr, OsStr, OsString};
use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The argument, after the containers directory, that makes `skiff internal monitor` the
/// launcher.
pub const LAUNCHER_FLAG: &str = "--launcher";

/// The longest container directory a request carries.
const MAX_PATH: usize = 4096;

/// The longest request (an exec's process settings: environment, seccomp profile). Below the
/// socket's default send buffer (212992 bytes), which bounds a datagram.
pub(crate) const MAX_REQUEST: usize = 192 * 1024;

/// A request to the launcher, decoded (an exec's plan still as the JSON bytes it came in: the
/// launcher parses a container's plan once and recognises it by its bytes after that).
#[derive(Debug, PartialEq)]
pub(crate) enum Request<'a> {
    /// Fork the monitor of the container in this directory.
    Monitor(PathBuf),
    /// Start a command in a container.
    Exec { header: ExecHeader, plan: &'a [u8] },
}

/// What changes from one exec of a container to the next, and which plan follows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExecHeader {
    pub args: Vec<String>,
    pub tty: bool,
    /// Names the plan for the launcher's cache (`<container id>/<init pid>`: a container
    /// instance's plan never changes); the launcher parses the plan only when it has not
    /// prepared this one.
    pub plan: String,
}

/// What stays the same for every exec in one container instance (the manager caches it):
/// which container, and the process settings its own process got (exec.rs's `exec_process`,
/// without args).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExecPlan {
    pub target: super::nsexec::ExecTarget,
    pub process: serde_json::Value,
}

impl Request<'_> {
    /// How many descriptors a request of this kind carries.
    fn descriptors(&self) -> usize {
        match self {
            Request::Monitor(_) => 2,
            Request::Exec { .. } => 4,
        }
    }
}

/// A monitor request's bytes.
pub(crate) fn encode_monitor(dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = dir.as_os_str().as_bytes();
    if path.is_empty() || path.len() > MAX_PATH {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("container directory {} is too long", dir.display()),
        ));
    }
    let mut bytes = Vec::with_capacity(1 + path.len());
    bytes.push(b'M');
    bytes.extend_from_slice(path);
    Ok(bytes)
}

/// The first part of an exec request's bytes (kind, header length, header); the plan's JSON,
/// as the manager cached it, follows (sent from where it is, not copied).
pub(crate) fn encode_exec_head(header: &ExecHeader, plan_len: usize) -> std::io::Result<Vec<u8>> {
    let header = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    let length = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    let total = 5 + header.len() + plan_len;
    if total > MAX_REQUEST {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the exec's process settings take {total} bytes, more than the {MAX_REQUEST} a request holds"
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(5 + header.len());
    bytes.push(b'E');
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(&header);
    Ok(bytes)
}

/// An exec plan's JSON, parsed.
pub(crate) fn parse_plan(bytes: &[u8]) -> Result<ExecPlan, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("an invalid exec plan: {e}"))
}

/// Decodes a request's bytes; the error says what is wrong with them.
pub(crate) fn decode(bytes: &[u8]) -> Result<Request<'_>, String> {
    match bytes.split_first() {
        None => Err("an empty request".to_owned()),
        Some((b'M', path)) if !path.is_empty() && path.len() <= MAX_PATH => {
            Ok(Request::Monitor(PathBuf::from(OsStr::from_bytes(path))))
        }
        Some((b'M', _)) => Err("a monitor request without a valid directory".to_owned()),
        Some((b'E', rest)) => {
            let (length, rest) = rest
                .split_first_chunk::<4>()
                .ok_or("an exec request without its header length")?;
            let length = usize::try_from(u32::from_le_bytes(*length))
                .map_err(|_| "an exec header length out of range".to_owned())?;
            if length > rest.len() {
                return Err(format!(
                    "an exec header of {length} bytes in a request of {} bytes",
                    bytes.len()
                ));
            }
            let (header, plan) = rest.split_at(length);
            let header: ExecHeader = serde_json::from_slice(header)
                .map_err(|e| format!("an invalid exec header: {e}"))?;
            if plan.is_empty() {
                return Err("an exec request without a plan".to_owned());
            }
            Ok(Request::Exec { header, plan })
        }
        Some((kind, _)) => Err(format!("a request of unknown kind {kind:#04x}")),
    }
}

/// The manager's side: starts the launcher on first use (again if it died) and sends it
/// requests. Requests are whole messages, so callers on several threads never interleave.
#[derive(Debug)]
pub(crate) struct Launcher {
    /// The program and arguments that start the launcher.
    command: Vec<OsString>,
    running: Mutex<Option<Running>>,
}

/// A started launcher: its process and the manager's end of the socket.
#[derive(Debug)]
struct Running {
    child: Child,
    /// Always Some until dropped.
    socket: Option<OwnedFd>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing the socket ends the launcher (end of file); then collect it, so the manager's
        // process keeps no zombie.
        drop(self.socket.take());
        let _ = self.child.wait();
    }
}

impl Launcher {
    /// A launcher started by `helper_command` (`[skiff, internal]`) for the containers under
    /// `root`: `skiff internal monitor ROOT --launcher`.
    pub(crate) fn new(helper_command: &[PathBuf], root: &Path) -> Launcher {
        let mut command: Vec<OsString> = helper_command
            .iter()
            .map(|p| p.as_os_str().to_owned())
            .collect();
        command.push("monitor".into());
        command.push(root.as_os_str().to_owned());
        command.push(LAUNCHER_FLAG.into());
        Launcher {
            command,
            running: Mutex::new(None),
        }
    }

    /// The running launcher's pid (None before its first use).
    pub(crate) fn pid(&self) -> Option<u32> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.as_ref().map(|r| r.child.id())
    }

    /// Has the launcher fork the monitor of the container in `dir`, with `report` as its
    /// stdout and `log` as its stderr. Restarts a launcher that died, once.
    pub(crate) fn launch(
        &self,
        dir: &Path,
        report: BorrowedFd<'_>,
        log: BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        self.request(&[&encode_monitor(dir)?], &[report, log])
    }

    /// Has the launcher start a command (`request`: [`encode_exec_head`], then the plan) with
    /// `control`, the
    /// launcher's end of the control socket, and the command's stdin, stdout and stderr.
    pub(crate) fn exec(
        &self,
        request: &[&[u8]],
        control: BorrowedFd<'_>,
        stdio: [BorrowedFd<'_>; 3],
    ) -> std::io::Result<()> {
        let [stdin, stdout, stderr] = stdio;
        self.request(request, &[control, stdin, stdout, stderr])
    }

    /// Sends one request, starting the launcher first if it is not running (again, once, if
    /// it died).
    fn request(&self, payload: &[&[u8]], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut last_error = None;
        for _ in 0..2 {
            let current = match running.as_mut() {
                Some(current) => current,
                None => running.insert(self.start()?),
            };
            let sent = match &current.socket {
                Some(socket) => send(socket.as_fd(), payload, fds),
                None => Err(Errno::BADF),
            };
            match sent {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "the monitor launcher is gone; starting another");
                    *running = None;
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.map_or_else(
            || std::io::Error::other("the monitor launcher failed"),
            std::io::Error::from,
        ))
    }

    fn start(&self) -> std::io::Result<Running> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty monitor command"))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Running {
            child,
            socket: Some(ours),
        })
    }
}

fn send(socket: BorrowedFd<'_>, payload: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
    let parts: Vec<IoSlice<'_>> = payload.iter().map(|p| IoSlice::new(p)).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::NOBUFS);
    }
    loop {
        match rustix::net::sendmsg(socket, &parts, &mut control, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// A command the launcher started and has not reaped yet.
struct RunningExec {
    pid: i32,
    pidfd: OwnedFd,
    /// None once the manager closed it (the command was killed then): only the exit is
    /// awaited.
    control: Option<OwnedFd>,
}

impl RunningExec {
    /// Kills the command's process group (its session, made by the child) and the process.
    fn kill(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid) {
            // The group's leader is not reaped yet, so its id is not anybody else's.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
    }
}

/// Writes one control line, never blocking or raising SIGPIPE (the manager may be gone).
fn tell(control: BorrowedFd<'_>, line: &str) {
    let _ = rustix::net::send(
        control,
        line.as_bytes(),
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    );
}

/// A container's exec plan as the launcher keeps it (not its bytes: the launcher stays small):
/// the container's entry, with its descriptors held open (ADR 018).
struct PreparedPlan {
    entry: super::entry::Entry,
}

/// How many containers' plans the launcher keeps at most (all are dropped when it is full:
/// they are made again at the next exec of each); fewer when its descriptors would not do.
const MAX_PLANS: usize = 1024;

/// Descriptors an entry holds at most (a pidfd, a v1 `tasks` file per hierarchy, a v2 one
/// and its directory), and those the launcher keeps for itself and its running commands.
const DESCRIPTORS_PER_PLAN: u64 = 16;
const DESCRIPTORS_SPARE: u64 = 256;

/// The state the launcher keeps for exec requests.
struct ExecServer {
    /// The launcher's own PID namespace, to come back to after a child was cloned into a
    /// container's.
    own_pid_ns: Result<OwnedFd, String>,
    /// The host's cgroup layout, read at the first exec.
    layout: Option<Option<super::cgroup::CgroupLayout>>,
    /// Plans prepared before, by the name the header gives them.
    plans: std::collections::HashMap<String, std::rc::Rc<PreparedPlan>>,
    /// How many plans fit in the launcher's descriptors.
    max_plans: usize,
    running: Vec<RunningExec>,
}

impl ExecServer {
    fn new() -> ExecServer {
        // The entries hold descriptors: the soft limit is raised to the hard one (which needs
        // no privilege), and the plans kept bounded by it.
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let hard = limit.maximum.unwrap_or(1 << 20);
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(hard),
                maximum: limit.maximum,
            },
        );
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(hard);
        let fit = soft.saturating_sub(DESCRIPTORS_SPARE) / DESCRIPTORS_PER_PLAN;
        ExecServer {
            own_pid_ns: std::fs::File::open("/proc/self/ns/pid")
                .map(OwnedFd::from)
                .map_err(|e| format!("opening the launcher's PID namespace: {e}")),
            layout: None,
            plans: std::collections::HashMap::new(),
            max_plans: usize::try_from(fit)
                .unwrap_or(MAX_PLANS)
                .clamp(8, MAX_PLANS),
            running: Vec::new(),
        }
    }

    /// The prepared plan named `name`, made now from `bytes` if it was not before.
    fn prepared(&mut self, name: &str, bytes: &[u8]) -> Result<std::rc::Rc<PreparedPlan>, String> {
        if let Some(plan) = self.plans.get(name) {
            return Ok(plan.clone());
        }
        let ExecPlan { target, process } = parse_plan(bytes)?;
        let layout = self
            .layout
            .get_or_insert_with(|| super::cgroup::CgroupLayout::detect().ok())
            .as_ref();
        let entry = super::entry::Entry::new(
            &target.id,
            target.pid,
            target.cgroup_path.as_deref(),
            layout,
            &process,
        )?;
        let plan = std::rc::Rc::new(PreparedPlan { entry });
        // Containers whose init has gone take their descriptors with them.
        self.plans.retain(|_, plan| !plan.entry.init_exited());
        if self.plans.len() >= self.max_plans {
            self.plans.clear();
        }
        self.plans.insert(name.to_owned(), plan.clone());
        Ok(plan)
    }

    fn start(&mut self, header: ExecHeader, plan: &[u8], fds: Vec<OwnedFd>) {
        let Ok([control, stdin, stdout, stderr]) = <[OwnedFd; 4]>::try_from(fds) else {
            return;
        };
        let failed = |message: String| {
            let line = format!("failed 255 exec failed: {}\n", message.replace('\n', " "));
            tell(control.as_fd(), &line);
        };
        if header.args.is_empty() {
            return failed("no command".to_owned());
        }
        let plan = match self.prepared(&header.plan, plan) {
            Ok(plan) => plan,
            Err(message) => return failed(message),
        };
        let own_pid_ns = match &self.own_pid_ns {
            Ok(fd) => fd.as_fd(),
            Err(e) => return failed(e.clone()),
        };
        match super::nsexec::spawn(
            &plan.entry,
            &header.args,
            header.tty,
            [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
            super::entry::Report::Control(control.as_fd()),
            own_pid_ns,
        ) {
            Err(message) => failed(message),
            Ok(spawned) => {
                tell(control.as_fd(), &format!("pid {}\n", spawned.pid));
                self.running.push(RunningExec {
                    pid: spawned.pid,
                    pidfd: spawned.pidfd,
                    control: Some(control),
                });
            }
        }
    }

    /// Kills and reaps every command still running (the manager is gone).
    fn stop_all(&mut self) {
        for exec in &mut self.running {
            exec.kill();
        }
        for exec in self.running.drain(..) {
            let _ = super::nsexec::reap(exec.pidfd.as_fd(), true);
        }
    }
}

/// The launcher process: forks a monitor, or starts a command, for every request on stdin
/// until end of file; reaps the commands and reports their exits.
#[allow(unsafe_code)]
pub fn serve() -> ExitCode {
    use rustix::event::{PollFd, PollFlags};
    let _ = rustix::thread::set_name(c"skiff-launcher");
    // Nothing but its stdio is the launcher's: a descriptor its starter leaked (one without
    // close-on-exec, open in another thread at the spawn) would otherwise live as long as the
    // launcher, and in every monitor it forks (a pod's socket keeps the pod's network alive).
    // SAFETY: close_range with integer arguments; no descriptor above 2 is in use here yet.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // SAFETY: fd 0 is the socket the manager gave as stdin, open for this process's life; it is
    // only borrowed here.
    let socket = unsafe { BorrowedFd::borrow_raw(0) };
    let mut server = ExecServer::new();
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        // Wait for a request, an exit, or a manager closing a control socket. Per running
        // command: whether it exited, whether its control socket was closed.
        let (request_ready, ready): (bool, Vec<(bool, bool)>) = {
            let mut fds = Vec::with_capacity(1 + 2 * server.running.len());
            fds.push(PollFd::new(&socket, PollFlags::IN));
            for exec in &server.running {
                fds.push(PollFd::new(&exec.pidfd, PollFlags::IN));
                if let Some(control) = &exec.control {
                    fds.push(PollFd::new(control, PollFlags::IN | PollFlags::RDHUP));
                }
            }
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => {
                    eprintln!("monitor launcher: poll: {e}");
                    server.stop_all();
                    return ExitCode::FAILURE;
                }
            }
            let mut events = fds.iter().map(|fd| !fd.revents().is_empty());
            let request_ready = events.next().unwrap_or(false);
            let ready = server
                .running
                .iter()
                .map(|exec| {
                    let exited = events.next().unwrap_or(false);
                    let closed = exec.control.is_some() && events.next().unwrap_or(false);
                    (exited, closed)
                })
                .collect();
            (request_ready, ready)
        };
        // Back to front, so removing one keeps the others' indexes.
        for (i, (exited, closed)) in ready.into_iter().enumerate().rev() {
            let exec = &mut server.running[i];
            if closed {
                exec.kill();
                exec.control = None;
            }
            if exited {
                let code = super::nsexec::reap(exec.pidfd.as_fd(), true).unwrap_or(255);
                if let Some(control) = &exec.control {
                    tell(control.as_fd(), &format!("exit {code}\n"));
                }
                server.running.swap_remove(i);
            }
        }
        if !request_ready {
            continue;
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buffer)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => received,
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(e) => {
                eprintln!("monitor launcher: receiving a request: {e}");
                server.stop_all();
                return ExitCode::FAILURE;
            }
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        if received.bytes == 0 && fds.is_empty() {
            server.stop_all();
            return ExitCode::SUCCESS;
        }
        let truncated = received
            .flags
            .intersects(rustix::net::ReturnFlags::TRUNC | rustix::net::ReturnFlags::CTRUNC);
        let request = if truncated {
            Err(format!("a request longer than {MAX_REQUEST} bytes"))
        } else {
            decode(&buffer[..received.bytes])
        };
        let request = match request {
            Ok(request) if request.descriptors() == fds.len() => request,
            Ok(request) => {
                eprintln!(
                    "monitor launcher: a request with {} descriptors instead of {}",
                    fds.len(),
                    request.descriptors()
                );
                continue;
            }
            Err(message) => {
                eprintln!("monitor launcher: {message}");
                // An exec's control socket comes first: say it there too.
                if fds.len() == 4 {
                    tell(
                        fds[0].as_fd(),
                        &format!("failed 255 exec failed: {message}\n"),
                    );
                }
                continue;
            }
        };
        match request {
            Request::Exec { header, plan } => server.start(header, plan, fds),
            Request::Monitor(dir) => {
                let Ok([report, log]) = <[OwnedFd; 2]>::try_from(fds) else {
                    continue;
                };
                fork_monitor(&dir, report, log);
            }
        }
    }
}

/// Forks the monitor of the container in `dir` through an intermediate process that exits at
/// once (reaped here): the monitor is then nobody's child here, so the launcher reaps only the
/// commands it starts, by their pidfds, and need not ignore SIGCHLD (which would make the
/// kernel reap those too, their exit codes lost).
#[allow(unsafe_code)]
fn fork_monitor(dir: &Path, report: OwnedFd, log: OwnedFd) {
    let failed = |report: OwnedFd, e: std::io::Error| {
        let _ = writeln!(
            std::fs::File::from(report),
            "error forking the monitor: {e}"
        );
    };
    // SAFETY: the launcher has a single thread (it starts none), so the child may run any
    // code after the fork: no lock can be held by a thread that is not copied.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: as above; the intermediate process is single-threaded too.
            let code = match unsafe { libc::fork() } {
                0 => monitor(dir, report, log),
                -1 => {
                    failed(report, std::io::Error::last_os_error());
                    1
                }
                _ => 0,
            };
            // SAFETY: _exit ends this process at once, running nothing of the launcher's.
            unsafe { libc::_exit(code) }
        }
        -1 => failed(report, std::io::Error::last_os_error()),
        pid => {
            // The monitor holds its own copies of the descriptors now.
            drop((report, log));
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                while let Err(Errno::INTR) =
                    rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
                {
                }
            }
        }
    }
}

/// The forked child: the stdio the manager sent, then the monitor proper.
fn monitor(dir: &Path, report: OwnedFd, log: OwnedFd) -> i32 {
    let _ = rustix::thread::set_name(MONITOR_NAME);
    let _ = rustix::stdio::dup2_stdout(&report);
    let _ = rustix::stdio::dup2_stderr(&log);
    drop((report, log));
    // Replaces the launcher's socket: a monitor must not keep the launcher's request channel.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    super::monitor::run_detached(dir)
}

/// The monitors' process name (`comm`, in `ps`): they share the launcher's command line.
pub(crate) const MONITOR_NAME: &CStr = c"skiff-monitor";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::nsexec::ExecTarget;

    fn plan() -> ExecPlan {
        ExecPlan {
            target: ExecTarget {
                id: "pod_0_main".into(),
                pid: 42,
                cgroup_path: Some("/skiff/podx/pod_0_main".into()),
            },
            process: serde_json::json!({"env": ["PATH=/bin"], "cwd": "/"}),
        }
    }

    #[test]
    fn monitor_requests_round_trip() {
        let bytes = encode_monitor(Path::new("/var/lib/skiff/containers/c1")).expect("encode");
        assert_eq!(bytes[0], b'M');
        assert_eq!(
            decode(&bytes),
            Ok(Request::Monitor(PathBuf::from(
                "/var/lib/skiff/containers/c1"
            )))
        );
        assert!(encode_monitor(Path::new("")).is_err());
        assert!(encode_monitor(&PathBuf::from("/".repeat(MAX_PATH + 1))).is_err());
    }

    #[test]
    fn exec_requests_round_trip() {
        let header = ExecHeader {
            args: vec!["cat".into(), "/tmp/ready".into()],
            tty: false,
            plan: "pod_0_main/42".into(),
        };
        let plan_json = serde_json::to_vec(&plan()).expect("plan");
        let mut bytes = encode_exec_head(&header, plan_json.len()).expect("encode");
        bytes.extend_from_slice(&plan_json);
        let decoded = decode(&bytes).expect("decode");
        assert_eq!(decoded.descriptors(), 4);
        assert_eq!(
            decoded,
            Request::Exec {
                header,
                plan: &plan_json
            }
        );
        assert_eq!(parse_plan(&plan_json), Ok(plan()));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(decode(b""), Err("an empty request".into()));
        assert_eq!(
            decode(b"M"),
            Err("a monitor request without a valid directory".into())
        );
        assert_eq!(
            decode(b"X/dir"),
            Err("a request of unknown kind 0x58".into())
        );
        assert_eq!(
            decode(b"E\x01"),
            Err("an exec request without its header length".into())
        );
        assert_eq!(
            decode(b"E\xff\x00\x00\x00{}"),
            Err("an exec header of 255 bytes in a request of 7 bytes".into())
        );
        let err = decode(b"E\x02\x00\x00\x00{}{}").expect_err("no args");
        assert!(err.starts_with("an invalid exec header: "), "{err}");
        let header = serde_json::to_vec(&ExecHeader {
            args: vec!["true".into()],
            tty: false,
            plan: "c/1".into(),
        })
        .expect("header");
        let mut bytes = vec![b'E'];
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        assert_eq!(decode(&bytes), Err("an exec request without a plan".into()));
        let err = parse_plan(b"{\"target\": 1}").expect_err("bad plan");
        assert!(err.starts_with("an invalid exec plan: "), "{err}");
        let err = encode_exec_head(
            &ExecHeader {
                args: vec!["true".into()],
                tty: false,
                plan: "c/1".into(),
            },
            MAX_REQUEST,
        )
        .expect_err("too long");
        assert!(err.to_string().contains("more than the"), "{err}");
    }
}
