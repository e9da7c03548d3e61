//! OCI runtimes driven through their command line (runc, crun: same verbs), behind a trait so the
//! manager and the monitor do not care which one runs the container.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cgroup::CgroupLayout;
use super::{ContainerError, Result};

/// Which OCI runtime binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Runc,
    Crun,
}

/// What the runtime reports of a container (`runc state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeState {
    /// `created`, `running`, `stopped`, `paused`.
    pub status: String,
    pub pid: u32,
}

/// The stdio of a container's init as the runtime is to set it up.
#[derive(Debug)]
pub struct ProcessIo {
    /// /dev/null, or a pipe when the container has `stdin` without a terminal.
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// With `process.terminal`: the socket (relative to the bundle) on which the runtime sends
    /// the master of the container's pty (`--console-socket`); stdio are then unused.
    pub console_socket: Option<PathBuf>,
}

impl ProcessIo {
    /// stdin /dev/null, output to `stdout` and `stderr`.
    pub fn output(stdout: Stdio, stderr: Stdio) -> ProcessIo {
        ProcessIo {
            stdin: Stdio::null(),
            stdout,
            stderr,
            console_socket: None,
        }
    }
}

/// The verbs of the OCI runtime command line.
pub trait OciRuntime: Send + Sync {
    /// `runc`, `crun`.
    fn name(&self) -> &str;
    /// The runtime's version line (`runc version 1.1.5`).
    fn version(&self) -> Result<String>;
    /// Creates the container from `bundle` with its init's stdio set up as `io` says; its pid
    /// is written to `pid_file`.
    fn create(&self, id: &str, bundle: &Path, pid_file: &Path, io: ProcessIo) -> Result<()>;
    fn start(&self, id: &str) -> Result<()>;
    /// Creates and starts the container in one step (`runc run --detach`: one runtime process
    /// fewer than create then start).
    fn run_detached(&self, id: &str, bundle: &Path, pid_file: &Path, io: ProcessIo) -> Result<()> {
        self.create(id, bundle, pid_file, io)?;
        self.start(id)
    }
    /// Sends `signal` (a number) to the container's init (`all`: to every process in it).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Deletes the runtime's state (`force`: kills a running container first). A container the
    /// runtime does not know is not an error.
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    /// None when the runtime does not know the container.
    fn state(&self, id: &str) -> Result<Option<RuntimeState>>;
}

/// runc or crun through its command line, with its state under `root`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CliRuntime {
    pub kind: RuntimeKind,
    pub binary: PathBuf,
    /// `--root`: where the runtime keeps its state (e.g. `<data-dir>/runc`).
    pub root: PathBuf,
    /// `--log`: where the runtime writes its own diagnostics, if anywhere.
    pub log: Option<PathBuf>,
}

impl CliRuntime {
    /// The runtime of `kind` found at its usual place (`/usr/sbin/runc`, `/usr/bin/crun`, else
    /// on PATH), with its state under `root`.
    pub fn new(kind: RuntimeKind, root: PathBuf) -> Self {
        let name = match kind {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
        };
        let binary = [
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/sbin",
            "/usr/local/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name));
        CliRuntime {
            kind,
            binary,
            root,
            log: None,
        }
    }

    /// Forgets container `id` once it has stopped and its cgroup is gone: removes its state
    /// directory (`<root>/<id>`), which is what the runtime's own `delete` of a stopped
    /// container does beyond removing the cgroup, without a runtime process (10–20 ms of CPU).
    pub fn remove_state(&self, id: &str) -> Result<()> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(ContainerError::Spec(format!("invalid container id {id:?}")));
        }
        let dir = self.root.join(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(super::io_error("removing the runtime state", &dir)(e))
            }
            _ => Ok(()),
        }
    }

    /// The same runtime writing its diagnostics (JSON lines) to `log`.
    pub fn with_log(&self, log: PathBuf) -> Self {
        CliRuntime {
            log: Some(log),
            ..self.clone()
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root);
        if let Some(log) = &self.log {
            command
                .arg("--log")
                .arg(log)
                .arg("--log-format")
                .arg("json");
        }
        command.stdin(Stdio::null());
        command
    }

    /// Runs `command` to completion; a failure carries the runtime's own message.
    fn run(&self, mut command: Command, operation: &'static str, id: &str) -> Result<Vec<u8>> {
        let output = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| {
                self.error(
                    operation,
                    id,
                    format!("running {}: {e}", self.binary.display()),
                )
            })?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(self.error(
                operation,
                id,
                runtime_message(&output.stderr, &output.stdout),
            ))
        }
    }

    /// `create` or `run --detach`: the container's stdio are the runtime's, so the runtime's
    /// own errors go to its log file, where the failure's message is read from.
    fn create_or_run(
        &self,
        verb: &'static str,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        io: ProcessIo,
    ) -> Result<()> {
        let operation = verb;
        let mut command = self.command();
        command.arg(verb);
        if verb == "run" {
            command.arg("--detach");
        }
        command
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = &io.console_socket {
            // Relative to the bundle, the runtime's working directory: a socket's path must fit
            // in 108 bytes, which the bundle's own path may not.
            command
                .arg("--console-socket")
                .arg(socket)
                .current_dir(bundle);
        }
        command
            .arg(id)
            .stdin(io.stdin)
            .stdout(io.stdout)
            .stderr(io.stderr);
        let status = command.status().map_err(|e| {
            self.error(
                operation,
                id,
                format!("running {}: {e}", self.binary.display()),
            )
        })?;
        if status.success() {
            Ok(())
        } else {
            // The runtime's own stderr is the container's: its message is in the log file.
            let message = self
                .log
                .as_ref()
                .and_then(|log| std::fs::read(log).ok())
                .map(|text| last_log_error(&text))
                .unwrap_or_else(|| format!("exited with {status}"));
            Err(self.error(operation, id, message))
        }
    }

    fn error(&self, operation: &'static str, id: &str, message: String) -> ContainerError {
        ContainerError::Runtime {
            runtime: self.name().to_owned(),
            operation,
            id: id.to_owned(),
            message,
        }
    }
}

/// The runtime's error text, without its decorations: the last non-empty line of stderr (runc
/// prints `time=... level=error msg="..."` when logging, else the bare message).
pub fn runtime_message(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.trim_ascii().is_empty() {
        stdout
    } else {
        stderr
    });
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("failed without a message")
        .to_owned();
    match line.find("msg=\"") {
        Some(start) => {
            let rest = &line[start + 5..];
            let end = rest.rfind('"').unwrap_or(rest.len());
            rest[..end].replace("\\\"", "\"")
        }
        None => line,
    }
}

/// Whether a runtime's error says it does not know the container.
fn is_not_found(error: &ContainerError) -> bool {
    match error {
        ContainerError::Runtime { message, .. } => {
            message.contains("does not exist")
                || message.contains("not found")
                || message.contains("No such file")
        }
        _ => false,
    }
}

impl OciRuntime for CliRuntime {
    fn name(&self) -> &str {
        match self.kind {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
        }
    }

    fn version(&self) -> Result<String> {
        let mut command = Command::new(&self.binary);
        command.arg("--version").stdin(Stdio::null());
        let out = self.run(command, "version", "")?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    fn create(&self, id: &str, bundle: &Path, pid_file: &Path, io: ProcessIo) -> Result<()> {
        self.create_or_run("create", id, bundle, pid_file, io)
    }

    fn run_detached(&self, id: &str, bundle: &Path, pid_file: &Path, io: ProcessIo) -> Result<()> {
        self.create_or_run("run", id, bundle, pid_file, io)
    }

    fn start(&self, id: &str) -> Result<()> {
        let mut command = self.command();
        command.arg("start").arg(id);
        self.run(command, "start", id).map(drop)
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let mut command = self.command();
        command.arg("kill");
        if all {
            command.arg("--all");
        }
        command.arg(id).arg(signal.to_string());
        self.run(command, "kill", id).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut command = self.command();
        command.arg("delete");
        if force {
            command.arg("--force");
        }
        command.arg(id);
        match self.run(command, "delete", id) {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map(drop),
        }
    }

    fn state(&self, id: &str) -> Result<Option<RuntimeState>> {
        let mut command = self.command();
        command.arg("state").arg(id);
        match self.run(command, "state", id) {
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
            Ok(out) => {
                let value: serde_json::Value = serde_json::from_slice(&out)
                    .map_err(|e| self.error("state", id, format!("unreadable state: {e}")))?;
                Ok(Some(RuntimeState {
                    status: value["status"].as_str().unwrap_or_default().to_owned(),
                    pid: value["pid"].as_u64().unwrap_or_default() as u32,
                }))
            }
        }
    }
}

/// The message of the last `error`-level line of a runtime's JSON log.
fn last_log_error(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .collect::<Vec<_>>()
        .into_iter()
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .next_back()
        .unwrap_or_else(|| "failed without a message".to_owned())
}

/// Whether `kind` can run containers on this host's cgroup layout; the error says why not
/// (crun refuses cgroup v1 hosts whose v2 hierarchy holds a controller).
pub fn check_runtime_supported(kind: RuntimeKind) -> Result<()> {
    if kind == RuntimeKind::Runc {
        return Ok(());
    }
    match CgroupLayout::detect()? {
        CgroupLayout::V2 { .. } => Ok(()),
        CgroupLayout::V1 { unified: None, .. } => Ok(()),
        CgroupLayout::V1 {
            unified: Some(unified),
            ..
        } => {
            let controllers =
                std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
            let controllers = controllers.trim();
            if controllers.is_empty() {
                Ok(())
            } else {
                Err(ContainerError::Unsupported(format!(
                    "crun cannot run containers on this host: its cgroups are in hybrid mode \
                     (v1 controllers, and the v2 hierarchy at {} holds {controllers}), which crun \
                     refuses; use --container-runtime runc, or boot with cgroup v2 only \
                     (systemd.unified_cgroup_hierarchy=1)",
                    unified.display()
                )))
            }
        }
    }
}

/// The number of a signal given by name as images' StopSignal gives it (`SIGTERM`, `TERM`,
/// `15`, `SIGRTMIN+3`).
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        let offset: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        return (offset <= 30).then_some(34 + offset);
    }
    Some(match bare {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("term"), Some(15));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGQUIT"), Some(3));
        assert_eq!(signal_number("SIGRTMIN+3"), Some(37));
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number("0"), None);
    }

    #[test]
    fn runtime_messages_lose_their_decorations() {
        assert_eq!(
            runtime_message(
                b"time=\"2026-01-01T00:00:00Z\" level=error msg=\"exec: \\\"/x\\\": not found\"\n",
                b""
            ),
            "exec: \"/x\": not found"
        );
        assert_eq!(runtime_message(b"plain failure\n\n", b""), "plain failure");
        assert_eq!(
            last_log_error(
                br#"{"level":"info","msg":"a"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"/no\": stat /no: no such file or directory"}
"#
            ),
            "runc create failed: unable to start container process: exec: \"/no\": stat /no: no such file or directory"
        );
    }

    /// This host (cgroup v1 with hugetlb on the v2 mount) is one crun refuses; runc is fine.
    #[test]
    fn crun_on_a_hybrid_host_with_v2_controllers_is_refused() {
        assert!(check_runtime_supported(RuntimeKind::Runc).is_ok());
        let layout = CgroupLayout::detect().expect("layout");
        let hybrid_with_controllers = match &layout {
            CgroupLayout::V1 {
                unified: Some(u), ..
            } => !std::fs::read_to_string(u.join("cgroup.controllers"))
                .unwrap_or_default()
                .trim()
                .is_empty(),
            _ => false,
        };
        let result = check_runtime_supported(RuntimeKind::Crun);
        assert_eq!(result.is_err(), hybrid_with_controllers, "{result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("hybrid"), "{e}");
        }
    }
}
