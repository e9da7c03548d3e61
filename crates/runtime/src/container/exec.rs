//! Running a command in a running container (`kubectl exec`): `skiff internal exec` (nsexec.rs)
//! with the container's own process settings (env, working directory, user, capabilities,
//! limits), so the command gets the container's namespaces, cgroup and root, as the OCI
//! runtime's `exec` would give them.
//!
//! With a tty the command's stdio is the child side of a pty of ours, its controlling terminal:
//! the session reads and writes the parent side, and sets the window size there (the kernel then
//! signals the command's foreground process group).
//!
//! [`ContainerManager::spawn_exec`] starts a command through the launcher instead (ADR 017): no
//! process of this binary per command, the container's settings read once per container
//! instance, and the exit and start failures reported on a control socket ([`ExecReport`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

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

/// What the launcher said on an exec's control socket ([`ContainerManager::spawn_exec`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecReport {
    /// The command's host pid, once it was started.
    pub pid: Option<i32>,
    pub end: ExecEnd,
}

/// How a command started through the launcher ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEnd {
    /// It ran and exited with this code (128 + signal when killed).
    Exited(i32),
    /// It could not start: the code Kubernetes reports (127: no such command, 126: cannot
    /// run, 255: anything else) and runc's words (`exec failed: ...`).
    NotStarted { code: i32, message: String },
    /// The control socket closed without an end (the launcher died).
    Lost,
}

impl ExecReport {
    /// Parses the control socket's whole text (lines `pid N`, `failed CODE MESSAGE`,
    /// `exit CODE`); a start failure wins over the exit code that follows it.
    pub fn parse(text: &str) -> ExecReport {
        let mut report = ExecReport {
            pid: None,
            end: ExecEnd::Lost,
        };
        for line in text.lines() {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "pid" => report.pid = rest.trim().parse().ok(),
                "failed" => {
                    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                    report.end = ExecEnd::NotStarted {
                        code: code.parse().unwrap_or(255),
                        message: message.to_owned(),
                    };
                }
                "exit" if !matches!(report.end, ExecEnd::NotStarted { .. }) => {
                    report.end = match rest.trim().parse() {
                        Ok(code) => ExecEnd::Exited(code),
                        Err(_) => ExecEnd::Lost,
                    };
                }
                _ => {}
            }
        }
        report
    }
}

/// A container's exec plan as the manager keeps it: its name for the launcher's cache
/// (`<id>/<init pid>`) and its JSON.
#[derive(Debug)]
pub(crate) struct CachedPlan {
    name: String,
    json: Vec<u8>,
}

impl ContainerManager {
    /// The launcher's plan for execs in container `id` (which must run): which container, and
    /// its process settings; read from the container's files once per container.
    fn exec_plan(&self, id: &str) -> Result<Arc<CachedPlan>> {
        let mut plans = self
            .exec_plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(plan) = plans.get(id) {
            return Ok(plan.clone());
        }
        let dir = self.container_dir(id);
        let read = |name: &str| -> Result<Value> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(io_error("reading", &path))?;
            serde_json::from_slice(&bytes).map_err(|source| ContainerError::Json { path, source })
        };
        let config = read("config.json")?;
        let monitor: super::monitor::MonitorConfig =
            serde_json::from_value(read(super::monitor::CONFIG_FILE)?).map_err(|source| {
                ContainerError::Json {
                    path: dir.join(super::monitor::CONFIG_FILE),
                    source,
                }
            })?;
        let status = self
            .status(id)?
            .ok_or_else(|| ContainerError::NotFound(id.to_owned()))?;
        let super::ContainerState::Running { pid, .. } = status.state else {
            return Err(ContainerError::Spec(format!(
                "container {id} is not running"
            )));
        };
        let mut process = exec_process(&config, &[], false);
        if let Some(object) = process.as_object_mut() {
            object.remove("args");
        }
        let plan = super::launcher::ExecPlan {
            target: super::nsexec::ExecTarget {
                id: id.to_owned(),
                pid,
                cgroup_path: monitor.cgroup_path,
            },
            process,
        };
        let bytes = serde_json::to_vec(&plan).map_err(|source| ContainerError::Json {
            path: dir.join("config.json"),
            source,
        })?;
        let plan = Arc::new(CachedPlan {
            name: format!("{id}/{pid}"),
            json: bytes,
        });
        plans.insert(id.to_owned(), plan.clone());
        Ok(plan)
    }

    /// Forgets the exec plan of container `id` (removed, or its init gone).
    pub(crate) fn forget_exec_plan(&self, id: &str) {
        self.exec_plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Starts `args` in the running container `id` through the launcher, with `stdio` as the
    /// command's stdin, stdout and stderr (a terminal's child side when `tty`). Returns the
    /// control socket: read it to its end and parse it with [`ExecReport::parse`]; closing it
    /// before the end kills the command's process group. Does not block on the command; the
    /// first exec in a container reads its files.
    pub fn spawn_exec(
        &self,
        id: &str,
        args: &[String],
        tty: bool,
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<UnixStream> {
        if args.is_empty() {
            return Err(ContainerError::Spec(
                "exec needs a command (kubectl exec POD -- COMMAND)".into(),
            ));
        }
        let plan = self.exec_plan(id)?;
        let CachedPlan { name, json: plan } = &*plan;
        let header = super::launcher::ExecHeader {
            args: args.to_vec(),
            tty,
            plan: name.clone(),
        };
        let dir = self.container_dir(id);
        let head = super::launcher::encode_exec_head(&header, plan.len())
            .map_err(io_error("starting exec in", &dir))?;
        let (ours, theirs) = UnixStream::pair().map_err(io_error("starting exec in", &dir))?;
        self.launcher()
            .exec(&[&head, plan], theirs.as_fd(), stdio)
            .map_err(io_error("starting exec in", &dir))?;
        Ok(ours)
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
    fn control_lines_parse() {
        assert_eq!(
            ExecReport::parse("pid 1234\nexit 0\n"),
            ExecReport {
                pid: Some(1234),
                end: ExecEnd::Exited(0)
            }
        );
        assert_eq!(
            ExecReport::parse("pid 9\nexit 137\n").end,
            ExecEnd::Exited(137)
        );
        // The child's start failure, then the launcher's exit line with the same code.
        let missing = "failed 127 exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert_eq!(
            ExecReport::parse(&format!("pid 5\n{missing}\nexit 127\n")),
            ExecReport {
                pid: Some(5),
                end: ExecEnd::NotStarted {
                    code: 127,
                    message: "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH".into()
                }
            }
        );
        // Refused before a process existed (no pid line).
        assert_eq!(
            ExecReport::parse("failed 255 exec failed: container c is not running\n"),
            ExecReport {
                pid: None,
                end: ExecEnd::NotStarted {
                    code: 255,
                    message: "exec failed: container c is not running".into()
                }
            }
        );
        // The launcher died: no end.
        assert_eq!(ExecReport::parse("pid 7\n").end, ExecEnd::Lost);
        assert_eq!(ExecReport::parse("").end, ExecEnd::Lost);
        assert_eq!(ExecReport::parse("exit x\n").end, ExecEnd::Lost);
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
