//! Running a command in a running container (`kubectl exec`): the OCI runtime's `exec` with the
//! container's own process settings (env, working directory, user, capabilities, limits), so
//! the command gets the container's namespaces, cgroup and root; with a tty, the runtime hands
//! the pty's controlling side over a console socket.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::manager::ContainerManager;
use super::{io_error, ContainerError, Result};

/// The process of an exec: the container's process with `args` and a terminal or not.
pub fn exec_process(config: &Value, args: &[String], tty: bool) -> Value {
    let mut process = config
        .get("process")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}}));
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(tty);
    if let Some(object) = process.as_object_mut() {
        // The container's console size means nothing to this process; kubectl sends its own.
        object.remove("consoleSize");
    }
    process
}

/// An exec ready to spawn: the runtime's command line and the files it uses, removed on drop.
pub struct PreparedExec {
    /// `runc exec ...`: the process's stdio are this command's (without a tty).
    pub command: Command,
    /// Where the runtime writes the process's host pid once it runs (to kill it, if the client
    /// goes away, by that pid: killing the runtime alone would leave it running).
    pub pid_file: PathBuf,
    /// With a tty: where the runtime hands over the pty (see [`PreparedExec::receive_pty`]).
    pub console: Option<UnixListener>,
    dir: PathBuf,
    console_path: Option<PathBuf>,
}

impl PreparedExec {
    /// The pty's controlling side, sent by the runtime over the console socket once it made the
    /// pty; fails after `timeout` (the runtime failed before that point).
    pub fn receive_pty(&self, timeout: Duration) -> std::io::Result<OwnedFd> {
        let Some(listener) = &self.console else {
            return Err(std::io::Error::other("this exec has no tty"));
        };
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the runtime did not hand over the pty",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))?;
        receive_fd(&stream)
    }

    /// The process's pid once the runtime wrote it.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(path) = &self.console_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One fd from a SCM_RIGHTS message on `stream`.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // runc sends the pty's name as the data, which is of no use here.
    let mut name = [0u8; 256];
    rustix::net::recvmsg(
        stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::other(
        "the runtime's console message carried no file descriptor",
    ))
}

/// Makes exec sessions unique within the process.
static NEXT_EXEC: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ContainerManager {
    /// Prepares `args` to run in container `id` (which must run), with a pty when `tty`.
    pub fn prepare_exec(&self, id: &str, args: &[String], tty: bool) -> Result<PreparedExec> {
        if args.is_empty() {
            return Err(ContainerError::Spec(
                "exec needs a command (kubectl exec POD -- COMMAND)".into(),
            ));
        }
        let container = self.container_dir(id);
        let config_path = container.join("config.json");
        let text = std::fs::read(&config_path).map_err(io_error("reading", &config_path))?;
        let config: Value = serde_json::from_slice(&text)
            .map_err(|e| ContainerError::Spec(format!("{}: {e}", config_path.display())))?;
        let n = NEXT_EXEC.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let dir = container.join(format!("exec-{tag}"));
        std::fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let process_path = dir.join("process.json");
        let pid_file = dir.join("pid");
        let process = exec_process(&config, args, tty);
        std::fs::write(&process_path, process.to_string())
            .map_err(io_error("writing", &process_path))?;
        let runtime = self.runtime();
        let mut command = Command::new(&runtime.binary);
        command
            .arg("--root")
            .arg(&runtime.root)
            .arg("exec")
            .arg("--process")
            .arg(&process_path)
            .arg("--pid-file")
            .arg(&pid_file);
        // Unix socket paths are short (108 bytes): the console socket lives in the temp dir.
        let (console, console_path) = if tty {
            let path = std::env::temp_dir().join(format!("skiff-exec-{tag}.sock"));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(io_error("binding", &path))?;
            command.arg("--tty").arg("--console-socket").arg(&path);
            (Some(listener), Some(path))
        } else {
            (None, None)
        };
        command.arg(id);
        Ok(PreparedExec {
            command,
            pid_file,
            console,
            dir,
            console_path,
        })
    }
}

/// The exit code Kubernetes reports for an exec the runtime could not start: 127 when the
/// command is not there, 126 when it cannot be run, else the runtime's own code.
pub fn start_failure_code(runtime_stderr: &str, code: i32) -> i32 {
    if runtime_stderr.contains("executable file not found")
        || runtime_stderr.contains("no such file or directory")
    {
        127
    } else if runtime_stderr.contains("permission denied") {
        126
    } else {
        code
    }
}

/// Whether the runtime's stderr says it could not start the process (runc prints `exec failed: ...`).
pub fn is_start_failure(runtime_stderr: &str) -> bool {
    runtime_stderr.contains("exec failed")
        || runtime_stderr.contains("unable to start container process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_process_with_the_commands_args() {
        let config = serde_json::json!({"process": {
            "args": ["httpd"], "env": ["PATH=/bin", "A=1"], "cwd": "/www",
            "user": {"uid": 33, "gid": 33}, "terminal": false,
            "consoleSize": {"height": 1, "width": 1},
        }});
        let p = exec_process(&config, &["sh".into(), "-c".into(), "id".into()], true);
        assert_eq!(p["args"], serde_json::json!(["sh", "-c", "id"]));
        assert_eq!(p["env"], serde_json::json!(["PATH=/bin", "A=1"]));
        assert_eq!(p["cwd"], "/www");
        assert_eq!(p["user"]["uid"], 33);
        assert_eq!(p["terminal"], true);
        assert!(p.get("consoleSize").is_none());
    }

    #[test]
    fn start_failures_map_to_126_and_127() {
        let missing = "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert!(is_start_failure(missing));
        assert_eq!(start_failure_code(missing, 255), 127);
        assert_eq!(
            start_failure_code("exec: \"/etc\": permission denied", 255),
            126
        );
        assert_eq!(start_failure_code("something else", 3), 3);
    }
}
