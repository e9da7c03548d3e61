//! Running a command in a running container (`kubectl exec`): `skiff internal exec` (nsexec.rs)
//! with the container's own process settings (env, working directory, user, capabilities,
//! limits), so the command gets the container's namespaces, cgroup and root, as the OCI
//! runtime's `exec` would give them.
//!
//! With a tty the command's stdio is the child side of a pty of ours, its controlling terminal:
//! the session reads and writes the parent side, and sets the window size there (the kernel then
//! signals the command's foreground process group).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::manager::ContainerManager;
use super::{io_error, ContainerError, Result};

/// Where the process file of an exec carries the container's seccomp profile (not an OCI
/// process field: `skiff internal exec` compiles and installs it).
pub const SECCOMP_KEY: &str = "skiffSeccomp";

/// The process of an exec: the container's process with `args` and a terminal or not, and the
/// container's seccomp profile.
pub fn exec_process(config: &Value, args: &[String], tty: bool) -> Value {
    let mut process = config
        .get("process")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}}));
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(tty);
    if let Some(profile) = config.get("linux").and_then(|l| l.get("seccomp")) {
        process[SECCOMP_KEY] = profile.clone();
    }
    if let Some(object) = process.as_object_mut() {
        // The container's console size means nothing to this process; kubectl sends its own.
        object.remove("consoleSize");
    }
    process
}

/// A terminal for an exec: the command gets `child` as its stdin, stdout and stderr (and
/// controlling terminal, with the kernel's line discipline: echo, line editing, Ctrl-C); the
/// session reads and writes `parent`, and sets its size there.
pub struct Terminal {
    pub parent: OwnedFd,
    pub child: OwnedFd,
}

impl Terminal {
    /// A new pty pair, 80x24 until told otherwise.
    pub fn open() -> std::io::Result<Terminal> {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let parent = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&parent)?;
        unlockpt(&parent)?;
        let name = ptsname(&parent, Vec::new())?;
        let child = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let terminal = Terminal { parent, child };
        terminal.resize(24, 80)?;
        Ok(terminal)
    }

    /// Sets the window size (the kernel tells the terminal's foreground process group).
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.parent, size)?;
        Ok(())
    }
}

/// An exec ready to spawn: its command line and the files it uses, removed on drop.
pub struct PreparedExec {
    /// `skiff internal exec ...`: without a tty the process's stdio are this command's.
    pub command: Command,
    /// Where the process's host pid is written once it runs (to kill it, if the client goes
    /// away, by that pid: killing the waiting `skiff internal exec` alone would leave it).
    pub pid_file: PathBuf,
    /// With a tty: the terminal to give the command as its stdio.
    pub terminal: Option<Terminal>,
    dir: PathBuf,
}

impl PreparedExec {
    /// The process's pid once it was written.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
        // Our own exec (nsexec.rs) rather than the runtime's: the same result, without the
        // runtime's start-up.
        let helper = self.helper_command();
        let mut command = Command::new(&helper[0]);
        command
            .args(&helper[1..])
            .arg("exec")
            .arg("--process")
            .arg(&process_path)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&container);
        let terminal = if tty {
            Some(Terminal::open().map_err(io_error("opening a pty in", &dir))?)
        } else {
            None
        };
        Ok(PreparedExec {
            command,
            pid_file,
            terminal,
            dir,
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
