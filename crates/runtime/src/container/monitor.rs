//! The per-container monitor (`skiff internal monitor <container-dir>`): a small process, in its
//! own session so it survives the agent, that runs the container through the OCI runtime as a
//! child subreaper, holds its stdout and stderr, writes them to the CRI log, waits for the exit,
//! records it in `status.json`, then deletes the runtime's state. No async runtime: two copier
//! threads and blocking calls keep it near 2 MB resident. A container with stdin or a terminal
//! instead gets one thread serving its stdio and the attach socket ([`super::attach`]).
//!
//! Start-up: the manager's launcher process (launcher.rs) forks the monitor with a pipe as
//! stdout. The monitor writes one line to it, `ok <pid>` once the container runs or
//! `error <message>`, then points its stdout at /dev/null so the pipe closes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustix::process::{Pid, WaitOptions};

use super::attach::{AttachServer, ConsoleSocket, ContainerIo, StdioConfig};
use super::cgroup::CgroupLayout;
use super::log::{CriLogWriter, LogStream};
use super::runtime::{CliRuntime, OciRuntime, ProcessIo};
use super::{io_error, ContainerError, ContainerState, ContainerStatus, Result};

/// How much of the termination-log file becomes the status message, as kubelet reads it.
const MAX_MESSAGE: u64 = 4096;

/// How long the monitor waits, after the container's init exited, for the rest of its output
/// (processes that kept the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Whether the container has stdin, a terminal (then the monitor serves attach.sock).
    #[serde(default)]
    pub stdio: StdioConfig,
}

/// File names inside the container directory.
pub(crate) const CONFIG_FILE: &str = "monitor.json";
pub(crate) const STATUS_FILE: &str = "status.json";
pub(crate) const LOCK_FILE: &str = "monitor.lock";
pub(crate) const PID_FILE: &str = "init.pid";
pub(crate) const MONITOR_LOG: &str = "monitor.log";
pub(crate) const RUNTIME_LOG: &str = "runtime.log";
pub(crate) const TERMINATION_LOG: &str = "termination-log";

/// `skiff internal monitor DIR`: runs the monitor of the container in `dir` in the foreground
/// (the manager does not start monitors this way: its launcher forks them; this is for
/// debugging a container by hand).
pub fn main(dir: &Path) -> ExitCode {
    match run_detached(dir) {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The monitor proper, in a session of its own; returns the process's exit code.
pub(crate) fn run_detached(dir: &Path) -> i32 {
    // Its own session: no signal meant for the agent's terminal or process group reaches it.
    let _ = rustix::process::setsid();
    let _ = rustix::thread::set_name(super::launcher::MONITOR_NAME);
    match run(dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("monitor {}: {e}", dir.display());
            report(&format!("error {}", one_line(&e.to_string())));
            1
        }
    }
}

/// Writes the start-up result line to the manager's pipe, then detaches stdout from it.
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io_error("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Writes `status` to `dir/status.json` atomically (temporary file, fsync-free rename: a crash
/// leaves the old or the new file, never a torn one).
pub(crate) fn write_status(dir: &Path, status: &ContainerStatus) -> Result<()> {
    let tmp = dir.join(".status.json.tmp");
    let path = dir.join(STATUS_FILE);
    let bytes = serde_json::to_vec(status).map_err(|source| ContainerError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&tmp, bytes).map_err(io_error("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_error("renaming into place", &path))
}

fn run(dir: &Path) -> Result<()> {
    // One malloc arena for the copier threads too (glibc gives each thread its own, tens of
    // kB resident per thread per monitor, for a few small buffers).
    allocator::one_arena();
    let config: MonitorConfig = read_json(&dir.join(CONFIG_FILE))?;
    // Sockets are bound by relative names: a socket address holds 108 bytes, which the
    // container directory's path may exceed. (The process has a single thread here.)
    std::env::set_current_dir(dir).map_err(io_error("entering", dir))?;
    let runtime = config.runtime.with_log(dir.join(RUNTIME_LOG));
    let id = config.id.clone();

    // The container's init is runc's child, orphaned when `runc create` exits: as subreaper
    // the monitor inherits it and can collect its exit status.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| io_error("prctl(PR_SET_CHILD_SUBREAPER)", dir)(e.into()))?;

    // Held for the monitor's whole life: a reader that can take it knows the monitor is gone.
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error("opening", &lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| io_error("locking", &lock_path)(e.into()))?;

    let mut status = ContainerStatus {
        id: id.clone(),
        state: ContainerState::Created,
        created_at: SystemTime::now(),
        monitor_pid: std::process::id(),
        log_path: config.log_path.clone(),
    };
    write_status(dir, &status)?;

    let log = CriLogWriter::open(&config.log_path, config.log_max_size, config.log_max_files)
        .map_err(io_error("opening the log", &config.log_path))?;
    let log = Arc::new(Mutex::new(log));

    // The container's stdio. Plain: two pipes, copied to the log by two small threads. With
    // stdin or a terminal: what [`attach`] serves, on one thread.
    let stdio = config.stdio;
    let mut console = None;
    let (io, pipes) = if stdio.tty {
        let socket =
            ConsoleSocket::bind().map_err(io_error("binding the console socket in", dir))?;
        let io = ProcessIo {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            console_socket: Some(socket.path().to_owned()),
        };
        console = Some(socket);
        (io, None)
    } else {
        let (stdout_read, stdout_write) =
            std::io::pipe().map_err(io_error("creating the stdout pipe of", dir))?;
        let (stderr_read, stderr_write) =
            std::io::pipe().map_err(io_error("creating the stderr pipe of", dir))?;
        let mut io = ProcessIo::output(Stdio::from(stdout_write), Stdio::from(stderr_write));
        let mut stdin_write = None;
        if stdio.stdin {
            let (read, write) =
                std::io::pipe().map_err(io_error("creating the stdin pipe of", dir))?;
            io.stdin = Stdio::from(read);
            stdin_write = Some(write);
        }
        (io, Some((stdout_read, stderr_read, stdin_write)))
    };

    let pid_file = dir.join(PID_FILE);
    // One runtime process (`run --detach`) instead of create then start.
    let started = runtime
        .run_detached(&id, dir, &pid_file, io)
        .and_then(|()| {
            let text =
                std::fs::read_to_string(&pid_file).map_err(io_error("reading", &pid_file))?;
            text.trim()
                .parse::<i32>()
                .map_err(|_| ContainerError::Runtime {
                    runtime: runtime.name().to_owned(),
                    operation: "run",
                    id: id.clone(),
                    message: format!("unreadable pid file {text:?}"),
                })
        });
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            // containerd's code and reason for a process that never started.
            let message = match &e {
                ContainerError::Runtime { message, .. } => message.clone(),
                other => other.to_string(),
            };
            status.state = ContainerState::Exited {
                exit_code: 128,
                reason: "StartError".to_owned(),
                started_at: None,
                finished_at: SystemTime::now(),
                message: Some(message),
            };
            let recorded = write_status(dir, &status);
            let _ = runtime.delete(&id, true);
            recorded?;
            return Err(e);
        }
    };

    // The readers of the output hold the read ends; the write ends went with the runtime (only
    // the container has them now), so the reads end when the container's processes are gone.
    let (done_tx, done_rx) = mpsc::channel();
    let mut readers = 0;
    let container_io = match (console, pipes) {
        (Some(console), _) => Some(
            console
                .receive()
                .map(ContainerIo::Terminal)
                .map_err(io_error("receiving the terminal of", dir)),
        ),
        (None, Some((stdout, stderr, stdin))) if stdio.stdin => Some(Ok(ContainerIo::Pipes {
            stdout,
            stderr,
            stdin,
        })),
        (None, Some((stdout_read, stderr_read, _))) => {
            for (pipe, stream) in [
                (stdout_read, LogStream::Stdout),
                (stderr_read, LogStream::Stderr),
            ] {
                let log = Arc::clone(&log);
                let done = done_tx.clone();
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        copy(pipe, stream, &log);
                        let _ = done.send(());
                    })
                    .map_err(io_error("starting a log copier for", dir))?;
                readers += 1;
            }
            None
        }
        (None, None) => None,
    };
    if let Some(container_io) = container_io {
        // Bound before the start is reported: an attach right after finds the socket.
        let served = container_io.and_then(|container_io| {
            let server = AttachServer::new(container_io, stdio, Arc::clone(&log))
                .map_err(io_error("serving the attach socket in", dir))?;
            let done = done_tx.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    server.run();
                    let _ = done.send(());
                })
                .map_err(io_error("starting the attach server for", dir))
        });
        if let Err(e) = served {
            // A container whose stdio nobody serves would hang on them: it goes, and the
            // start failed.
            let _ = runtime.delete(&id, true);
            status.state = ContainerState::Exited {
                exit_code: 128,
                reason: "StartError".to_owned(),
                started_at: None,
                finished_at: SystemTime::now(),
                message: Some(e.to_string()),
            };
            write_status(dir, &status)?;
            return Err(e);
        }
        readers += 1;
    }
    drop(done_tx);

    let started_at = SystemTime::now();
    status.state = ContainerState::Running {
        pid: pid as u32,
        started_at,
    };
    write_status(dir, &status)?;
    report(&format!("ok {pid}"));
    // What start-up allocated (the command line parser, the configuration) is free now: give
    // its pages back, as the monitor lives as long as its container.
    allocator::trim();

    let exit_code = wait_for(pid);
    let finished_at = SystemTime::now();
    for _ in 0..readers {
        if done_rx.recv_timeout(DRAIN_TIMEOUT).is_err() {
            eprintln!(
                "monitor {id}: output still open {DRAIN_TIMEOUT:?} after the container exited"
            );
            break;
        }
    }
    // Gone with the container, even if its output outlived the drain (the attach thread
    // removes it itself otherwise).
    if stdio.attachable() {
        let _ = std::fs::remove_file(super::attach::SOCKET_FILE);
    }
    if let Ok(mut log) = log.lock() {
        if let Err(e) = log.finish() {
            eprintln!("monitor {id}: writing the log: {e}");
        }
    }

    let layout = CgroupLayout::detect();
    let oom_killed = match (&layout, config.cgroup_path.as_deref()) {
        (Ok(layout), Some(path)) => layout.oom_kills(path) > 0,
        _ => false,
    };
    let reason = if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    status.state = ContainerState::Exited {
        exit_code,
        reason: reason.to_owned(),
        started_at: Some(started_at),
        finished_at,
        message: termination_message(&dir.join(TERMINATION_LOG)),
    };
    write_status(dir, &status)?;
    // What the runtime's `delete` does for a stopped container, without starting it: remove
    // the cgroup (killing whatever outlived the init there, as runc does for a container in a
    // shared PID namespace), then the state directory. The runtime remains the fallback.
    let cleaned = match (layout, config.cgroup_path.as_deref()) {
        (Ok(layout), Some(path)) => layout.remove(path),
        (Err(e), Some(_)) => Err(e),
        (_, None) => Ok(()),
    }
    .and_then(|()| runtime.remove_state(&id));
    if let Err(e) = cleaned {
        eprintln!("monitor {id}: cleaning up after the exit: {e}; asking the runtime");
        if let Err(e) = runtime.delete(&id, true) {
            eprintln!("monitor {id}: {e}");
        }
    }
    drop(lock);
    Ok(())
}

/// Copies one stream of the container into the log until it closes.
fn copy(mut pipe: std::io::PipeReader, stream: LogStream, log: &Mutex<CriLogWriter>) {
    // Small: a pipe read returns what is there, and every monitor holds two of these.
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Ok(mut log) = log.lock() {
                    if let Err(e) = log.write(stream, &buf[..n]) {
                        eprintln!("monitor: writing the log: {e}");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("monitor: reading the container's output: {e}");
                return;
            }
        }
    }
}

/// Waits for the container's init and returns its exit code as a shell reports it (128 +
/// signal when killed); also reaps any other orphan handed to the monitor meanwhile.
fn wait_for(pid: i32) -> i32 {
    let Some(target) = Pid::from_raw(pid) else {
        return 255;
    };
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((reaped, status))) if reaped == target => {
                if let Some(code) = status.exit_status() {
                    return code;
                }
                if let Some(signal) = status.terminating_signal() {
                    return 128 + signal;
                }
                return 255;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                eprintln!("monitor: waiting for {pid}: {e}");
                return 255;
            }
        }
    }
}

/// The start of the termination-log file, if the container wrote one.
fn termination_message(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = Vec::new();
    file.take(MAX_MESSAGE).read_to_end(&mut text).ok()?;
    (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
}

/// Tuning of glibc's allocator for a long-lived, mostly idle process (no-ops elsewhere).
#[allow(unsafe_code)]
mod allocator {
    /// Every thread allocates from the main arena.
    pub(super) fn one_arena() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes a tuning parameter of glibc's allocator; it is called
        // before this process starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }

    /// Returns the free memory of the heap to the kernel.
    pub(super) fn trim() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of glibc's heap; it takes the
        // allocator's own locks, like any allocation.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
