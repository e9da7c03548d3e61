//! The monitor launcher: one small, single-threaded process per container manager, started
//! once from this binary (`skiff internal monitor <containers-dir> --launcher`), that forks
//! each container's monitor on request.
//!
//! Why: executing the (large, position-independent) binary for every container costs a few
//! milliseconds of exec and relocation per start, and leaves every monitor with a private copy
//! of the relocated data (about 600 KiB each). Monitors forked from the launcher skip the exec
//! and share those pages with it.
//!
//! Protocol: a `SOCK_SEQPACKET` socket pair; the launcher's end is its stdin. A request is one
//! message: the container directory as payload, and two descriptors as `SCM_RIGHTS`: the write
//! end of the report pipe (the monitor's stdout, where it writes `ok <pid>` or `error ...`) and
//! the monitor log (its stderr). The launcher answers nothing itself. End of file on its stdin
//! (the manager, or the whole agent, is gone) ends the launcher; the monitors live on, in
//! sessions of their own.

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

    /// Has the launcher fork the monitor of the container in `dir`, with `report` as its
    /// stdout and `log` as its stderr. Restarts a launcher that died, once.
    pub(crate) fn launch(
        &self,
        dir: &Path,
        report: BorrowedFd<'_>,
        log: BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        let payload = dir.as_os_str().as_bytes();
        if payload.is_empty() || payload.len() > MAX_PATH {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("container directory {} is too long", dir.display()),
            ));
        }
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
                Some(socket) => send(socket.as_fd(), payload, [report, log]),
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

fn send(socket: BorrowedFd<'_>, payload: &[u8], fds: [BorrowedFd<'_>; 2]) -> Result<(), Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::NOBUFS);
    }
    loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(payload)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// The launcher process: forks a monitor for every request on stdin until end of file.
#[allow(unsafe_code)]
pub fn serve() -> ExitCode {
    let _ = rustix::thread::set_name(c"skiff-launcher");
    // Monitors are reaped by the kernel when they exit: the launcher never waits for them.
    set_sigchld(libc::SIG_IGN);
    // SAFETY: fd 0 is the socket the manager gave as stdin, open for this process's life; it is
    // only borrowed here.
    let socket = unsafe { BorrowedFd::borrow_raw(0) };
    let mut buffer = vec![0u8; MAX_PATH];
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buffer)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => received,
            Err(Errno::INTR) => continue,
            Err(e) => {
                eprintln!("monitor launcher: receiving a request: {e}");
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
            return ExitCode::SUCCESS;
        }
        let [report, log]: [OwnedFd; 2] = match fds.try_into() {
            Ok(pair) => pair,
            Err(other) => {
                eprintln!(
                    "monitor launcher: a request with {} descriptors instead of 2",
                    other.len()
                );
                continue;
            }
        };
        let dir = PathBuf::from(OsStr::from_bytes(&buffer[..received.bytes]));
        // SAFETY: the launcher has a single thread (it starts none), so the child may run any
        // code after the fork: no lock can be held by a thread that is not copied.
        match unsafe { libc::fork() } {
            0 => std::process::exit(monitor(&dir, report, log)),
            -1 => {
                let e = std::io::Error::last_os_error();
                let _ = writeln!(
                    std::fs::File::from(report),
                    "error forking the monitor: {e}"
                );
            }
            // The monitor holds its own copies of the descriptors now.
            _ => {}
        }
    }
}

/// The forked child: the stdio the manager sent, then the monitor proper.
fn monitor(dir: &Path, report: OwnedFd, log: OwnedFd) -> i32 {
    // The monitor waits for runc and for the container's init; ignoring SIGCHLD would also make
    // the runtime it executes inherit that.
    set_sigchld(libc::SIG_DFL);
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

#[allow(unsafe_code)]
fn set_sigchld(handler: libc::sighandler_t) {
    // SAFETY: installs SIG_IGN or SIG_DFL, no handler function; the process is single-threaded.
    unsafe {
        libc::signal(libc::SIGCHLD, handler);
    }
}
