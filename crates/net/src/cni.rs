//! CNI mode: pods are wired by a chain of standard CNI plugins (spec 1.0) instead of the
//! built-in bridge. The network is the first configuration file, in lexical order, of the conf
//! dir (kubelet's and k3s' rule); each plugin of its list runs as a process with the `CNI_*`
//! environment and its configuration on stdin: ADD in order with the previous result threaded
//! through, DEL in reverse order, CHECK in order.
//!
//! What was run for a sandbox (the configuration, the arguments, and the final ADD result) is
//! kept under `<data-dir>/net/cni/<sandbox id>.json`, written before the first plugin runs and
//! completed with the result after the last, so DEL uses the same configuration and result
//! after an agent restart or a change of the conf dir, as libcni's cache does; and a set-up cut
//! short by a crash is still found and deleted by the collection at start.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::{
    io_error, Error, HostPort, Ipv4Cidr, PodNetwork, PodNetworkRequest, PodNetworkStatus, Result,
};

/// The interface every pod gets (as kubelet names it).
pub const IFNAME: &str = "eth0";
/// How long one plugin run may take before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The spec versions whose configurations and results this runner understands.
const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// Where the CNI network of a node is described and its plugins live.
#[derive(Clone, Debug)]
pub struct CniConfig {
    /// The agent's data dir (`net/cni/` beneath it holds the cache).
    pub data_dir: PathBuf,
    /// The first `*.conflist`, `*.conf` or `*.json` here in lexical order is the network.
    pub conf_dir: PathBuf,
    /// Where plugin executables are looked up, in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// How long one plugin run may take.
    pub plugin_timeout: Duration,
}

/// A network configuration list: the network's name and version and its plugins in order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfigList {
    pub name: String,
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "disableCheck", default)]
    pub disable_check: bool,
    /// Each plugin's configuration as written (its `type`, `capabilities` and own keys).
    pub plugins: Vec<Map<String, Value>>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::CniConfig {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl NetworkConfigList {
    /// Parses a configuration file: a list (`*.conflist`) or a single plugin's configuration
    /// (`*.conf`, `*.json`, taken as a list of that one plugin, as libcni does).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<NetworkConfigList> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(path, format!("not JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(invalid(path, "not a JSON object"));
        };
        let is_list = path.extension().is_some_and(|e| e == "conflist");
        let string = |object: &Map<String, Value>, key: &str| -> Result<String> {
            match object.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(invalid(path, format!("{key:?} must be a non-empty string"))),
                None => Err(invalid(path, format!("{key:?} is missing"))),
            }
        };
        let name = string(&object, "name")?;
        let cni_version = string(&object, "cniVersion")?;
        let (disable_check, plugins) = if is_list {
            let disable_check = match object.get("disableCheck") {
                None => false,
                Some(Value::Bool(b)) => *b,
                // libcni also takes the string forms.
                Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
                Some(_) => return Err(invalid(path, "\"disableCheck\" must be a boolean")),
            };
            let plugins = match object.remove("plugins") {
                Some(Value::Array(plugins)) if !plugins.is_empty() => plugins,
                Some(Value::Array(_)) => return Err(invalid(path, "\"plugins\" is empty")),
                Some(_) => return Err(invalid(path, "\"plugins\" must be a list")),
                None => return Err(invalid(path, "\"plugins\" is missing")),
            };
            let plugins = plugins
                .into_iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::Object(p) => Ok(p),
                    _ => Err(invalid(path, format!("plugins[{i}] is not an object"))),
                })
                .collect::<Result<Vec<_>>>()?;
            (disable_check, plugins)
        } else {
            (false, vec![object])
        };
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(invalid(
                path,
                format!(
                    "cniVersion {cni_version:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if !valid_network_name(&name) {
            return Err(invalid(
                path,
                format!(
                    "the network name {name:?} may only hold letters, digits, '_', '.' and '-'"
                ),
            ));
        }
        for (i, plugin) in plugins.iter().enumerate() {
            match plugin.get("type") {
                Some(Value::String(t)) if valid_plugin_type(t) => {}
                Some(Value::String(t)) => {
                    return Err(invalid(
                        path,
                        format!("plugins[{i}]: the type {t:?} is not a plugin name"),
                    ))
                }
                _ => return Err(invalid(path, format!("plugins[{i}]: \"type\" is missing"))),
            }
        }
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            plugins,
        })
    }

    /// The `type` of plugin `index` (checked by [`NetworkConfigList::parse`]).
    fn plugin_type(&self, index: usize) -> &str {
        self.plugins
            .get(index)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The configuration plugin `index` gets on stdin: its own, with the network's name and
    /// version, the runtime values of the capabilities it declares, and the previous result.
    pub fn plugin_stdin(
        &self,
        index: usize,
        runtime_config: &Map<String, Value>,
        prev_result: Option<&Value>,
    ) -> Value {
        let mut config = self.plugins.get(index).cloned().unwrap_or_default();
        config.insert("name".into(), Value::String(self.name.clone()));
        config.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        let declared: Map<String, Value> = config
            .get("capabilities")
            .and_then(Value::as_object)
            .map(|caps| {
                caps.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .filter_map(|(cap, _)| {
                        runtime_config.get(cap).map(|v| (cap.clone(), v.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Only capabilities the plugin declares, and only those given (as libcni does).
        config.remove("runtimeConfig");
        if !declared.is_empty() {
            config.insert("runtimeConfig".into(), Value::Object(declared));
        }
        config.remove("prevResult");
        if let Some(prev) = prev_result {
            config.insert("prevResult".into(), prev.clone());
        }
        Value::Object(config)
    }
}

/// Network names appear in file names of plugins (host-local's state dir): libcni's rule.
fn valid_network_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A plugin's type is the file name of its executable in a bin dir.
fn valid_plugin_type(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// The configuration files of `dir` that may hold the network, in lexical order.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The network of `dir`: its first configuration file in lexical order.
pub fn load_network(dir: &Path) -> Result<NetworkConfigList> {
    let files = config_files(dir)?;
    let Some(first) = files.first() else {
        return Err(Error::NoCniConfig {
            dir: dir.to_path_buf(),
        });
    };
    let bytes = std::fs::read(first).map_err(|e| io_error("reading", first, e))?;
    NetworkConfigList::parse(first, &bytes)
}

/// A CNI operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    pub fn name(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// The arguments of one sandbox's attachment, the same for every plugin and operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS`, in order.
    pub args: Vec<(String, String)>,
}

impl Attachment {
    /// Kubelet's arguments for a pod's sandbox.
    pub fn for_pod(request: &PodNetworkRequest<'_>) -> Attachment {
        Attachment {
            container_id: request.sandbox_id.to_string(),
            netns: request.netns.to_path_buf(),
            ifname: IFNAME.to_string(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), request.pod_namespace.into()),
                ("K8S_POD_NAME".into(), request.pod_name.into()),
                (
                    "K8S_POD_INFRA_CONTAINER_ID".into(),
                    request.sandbox_id.into(),
                ),
                ("K8S_POD_UID".into(), request.pod_uid.into()),
            ],
        }
    }

    /// The `CNI_*` environment of a run of `command`; `netns_alive` false leaves `CNI_NETNS`
    /// empty (a DEL after the namespace went: plugins then skip what was inside it).
    pub fn environment(
        &self,
        command: CniCommand,
        bin_dirs: &[PathBuf],
        netns_alive: bool,
    ) -> Vec<(String, String)> {
        let path = bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let args = self
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let netns = if netns_alive {
            self.netns.display().to_string()
        } else {
            String::new()
        };
        vec![
            ("CNI_COMMAND".into(), command.name().into()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), netns),
            ("CNI_IFNAME".into(), self.ifname.clone()),
            ("CNI_ARGS".into(), args),
            ("CNI_PATH".into(), path),
        ]
    }
}

/// The runtime values for capabilities: `portMappings` from the pod's hostPorts, and
/// `ipRanges` (one range: the Node's podCIDR) once the node has one, as containerd and CRI-O
/// pass them (host-local takes its range from it).
pub fn runtime_config(host_ports: &[HostPort], pod_cidr: Option<Ipv4Cidr>) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(cidr) = pod_cidr {
        config.insert(
            "ipRanges".into(),
            serde_json::json!([[{"subnet": cidr.to_string()}]]),
        );
    }
    if !host_ports.is_empty() {
        let mappings = host_ports
            .iter()
            .map(|p| {
                serde_json::json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.nft_name(),
                })
            })
            .collect();
        config.insert("portMappings".into(), Value::Array(mappings));
    }
    config
}

/// The addresses of a result's `ips` (CIDR notation, as `10.22.0.5/16`), loopback left out.
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect()
}

/// Runs one plugin: a process in real life, a recording in tests.
pub trait PluginExec: Send + Sync {
    /// Runs plugin `plugin` with `env` and `stdin`; its stdout on success, the plugin's error
    /// otherwise.
    fn exec(
        &self,
        plugin: &str,
        command: CniCommand,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<Vec<u8>>;
}

/// Plugins as processes: the executable named by `type` in the first bin dir that has it.
#[derive(Clone, Debug)]
pub struct ProcessExec {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

/// A plugin's error object (spec: "Error" on stdout with a non-zero exit).
#[derive(Debug, Default, serde::Deserialize)]
struct PluginErrorObject {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// The error of a plugin that exited with `status`, from its stdout (the error object) or,
/// failing that, its stderr.
pub fn plugin_error(
    plugin: &str,
    command: CniCommand,
    status: &str,
    stdout: &[u8],
    stderr: &[u8],
) -> Error {
    match serde_json::from_slice::<PluginErrorObject>(stdout) {
        Ok(object) if !object.msg.is_empty() || object.code != 0 => Error::CniPlugin {
            plugin: plugin.to_string(),
            command: command.name(),
            code: object.code,
            msg: object.msg,
            details: if object.details.is_empty() {
                String::new()
            } else {
                format!(" ({})", object.details)
            },
        },
        _ => {
            let stderr = String::from_utf8_lossy(stderr);
            let stdout = String::from_utf8_lossy(stdout);
            let said = [stderr.trim(), stdout.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            Error::CniRun {
                plugin: plugin.to_string(),
                command: command.name(),
                reason: if said.is_empty() {
                    format!("{status}, saying nothing")
                } else {
                    format!("{status}: {said}")
                },
            }
        }
    }
}

impl ProcessExec {
    fn find(&self, plugin: &str, command: CniCommand) -> Result<PathBuf> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::CniRun {
                plugin: plugin.to_string(),
                command: command.name(),
                reason: format!(
                    "no executable {plugin:?} in the CNI bin dir {}",
                    self.bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            })
    }
}

/// Waits for `child` at most `timeout`; kills it (through its pidfd, so never another process
/// that took its pid) when it takes longer. True if it exited in time.
fn wait_or_kill(child: &mut std::process::Child, timeout: Duration) -> std::io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("the plugin has no pid"))?;
    // Our own child, not yet waited for: its pid cannot have been reused.
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            return Ok(false);
        }
        let left = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&left)) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

impl PluginExec for ProcessExec {
    fn exec(
        &self,
        plugin: &str,
        command: CniCommand,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<Vec<u8>> {
        let path = self.find(plugin, command)?;
        let run_error = |reason: String| Error::CniRun {
            plugin: plugin.to_string(),
            command: command.name(),
            reason,
        };
        let mut cmd = Command::new(&path);
        // The agent's environment (PATH for the plugins' own tools, as libcni passes it) with
        // no CNI_* of its own, then ours.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CNI_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| run_error(format!("cannot start {}: {e}", path.display())))?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(mut input), Some(mut output), Some(mut errors)) = pipes else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(run_error("no pipes to the plugin".into()));
        };
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            output.read_to_end(&mut bytes).map(|_| bytes)
        });
        let error_reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            errors.read_to_end(&mut bytes).map(|_| bytes)
        });
        let in_time = wait_or_kill(&mut child, self.timeout);
        let status = child.wait();
        let _ = writer.join();
        let stdout = reader.join().ok().and_then(|r| r.ok()).unwrap_or_default();
        let stderr = error_reader
            .join()
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        match in_time {
            Ok(true) => {}
            Ok(false) => {
                return Err(run_error(format!(
                    "did not finish within {} s and was killed",
                    self.timeout.as_secs()
                )))
            }
            Err(e) => return Err(run_error(format!("cannot wait for it: {e}"))),
        }
        let status = status.map_err(|e| run_error(format!("cannot wait for it: {e}")))?;
        if status.success() {
            Ok(stdout)
        } else {
            Err(plugin_error(
                plugin,
                command,
                &status.to_string(),
                &stdout,
                &stderr,
            ))
        }
    }
}

/// The chain of a network's plugins for one attachment.
pub struct Chain<'a> {
    pub network: &'a NetworkConfigList,
    pub attachment: &'a Attachment,
    pub runtime_config: &'a Map<String, Value>,
    pub bin_dirs: &'a [PathBuf],
    pub exec: &'a dyn PluginExec,
}

impl Chain<'_> {
    fn run_plugin(
        &self,
        index: usize,
        command: CniCommand,
        prev_result: Option<&Value>,
        netns_alive: bool,
    ) -> Result<Vec<u8>> {
        let plugin = self.network.plugin_type(index);
        let stdin = self
            .network
            .plugin_stdin(index, self.runtime_config, prev_result);
        let env = self
            .attachment
            .environment(command, self.bin_dirs, netns_alive);
        let bytes = serde_json::to_vec(&stdin).map_err(|e| Error::CniRun {
            plugin: plugin.to_string(),
            command: command.name(),
            reason: format!("cannot encode its configuration: {e}"),
        })?;
        self.exec.exec(plugin, command, &env, &bytes)
    }

    /// ADD through every plugin in order, each given the previous one's result; the last
    /// result.
    pub fn add(&self) -> Result<Value> {
        let mut result: Option<Value> = None;
        for index in 0..self.network.plugins.len() {
            let plugin = self.network.plugin_type(index);
            let out = self.run_plugin(index, CniCommand::Add, result.as_ref(), true)?;
            let value: Value = serde_json::from_slice(&out).map_err(|e| Error::CniRun {
                plugin: plugin.to_string(),
                command: "ADD",
                reason: format!(
                    "its result is not JSON ({e}): {}",
                    String::from_utf8_lossy(&out).trim()
                ),
            })?;
            result = Some(value);
        }
        result.ok_or_else(|| Error::Missing("the CNI network has no plugins".into()))
    }

    /// DEL through every plugin in reverse order, each given the cached ADD result; keeps going
    /// after failures and reports them all.
    pub fn del(&self, result: Option<&Value>, netns_alive: bool) -> Result<()> {
        let mut errors = Vec::new();
        for index in (0..self.network.plugins.len()).rev() {
            if let Err(e) = self.run_plugin(index, CniCommand::Del, result, netns_alive) {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(errors))
        }
    }

    /// CHECK through every plugin in order with the cached ADD result (nothing to do when the
    /// network disables it; not defined before spec 0.4.0).
    pub fn check(&self, result: &Value) -> Result<()> {
        if self.network.disable_check {
            return Ok(());
        }
        if matches!(self.network.cni_version.as_str(), "0.3.0" | "0.3.1") {
            return Err(Error::Missing(format!(
                "CHECK needs cniVersion 0.4.0 or later; the network {} has {}",
                self.network.name, self.network.cni_version
            )));
        }
        for index in 0..self.network.plugins.len() {
            self.run_plugin(index, CniCommand::Check, Some(result), true)?;
        }
        Ok(())
    }
}

/// What was run for one sandbox (the cache entry).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CachedAttachment {
    network: NetworkConfigList,
    attachment: Attachment,
    #[serde(default)]
    runtime_config: Map<String, Value>,
    /// The final ADD result; None while the ADD runs (or if it was cut short).
    #[serde(default)]
    result: Option<Value>,
}

/// The node's network through CNI plugins.
pub struct CniNetwork {
    config: CniConfig,
    cache: PathBuf,
    exec: Box<dyn PluginExec>,
    /// The Node's podCIDR, once known: the `ipRanges` capability's value.
    pod_cidr: std::sync::Mutex<Option<Ipv4Cidr>>,
}

/// True if `path` is a mounted network namespace (a sandbox's that still exists).
fn netns_alive(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // f_type is i64 on x86_64 and narrower on other targets.
    #[allow(clippy::useless_conversion)]
    rustix::fs::statfs(path).is_ok_and(|s| i64::from(s.f_type) == NSFS_MAGIC)
}

impl CniNetwork {
    /// The network for `config`, running plugins as processes.
    pub fn new(config: CniConfig) -> Result<CniNetwork> {
        let exec = ProcessExec {
            bin_dirs: config.bin_dirs.clone(),
            timeout: config.plugin_timeout,
        };
        CniNetwork::with_exec(config, Box::new(exec))
    }

    /// The network for `config`, running plugins with `exec`.
    pub fn with_exec(config: CniConfig, exec: Box<dyn PluginExec>) -> Result<CniNetwork> {
        let cache = config.data_dir.join("net").join("cni");
        std::fs::create_dir_all(&cache).map_err(|e| io_error("creating", &cache, e))?;
        Ok(CniNetwork {
            config,
            cache,
            exec,
            pod_cidr: std::sync::Mutex::new(None),
        })
    }

    fn pod_cidr(&self) -> Option<Ipv4Cidr> {
        *self
            .pod_cidr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The directory of the cache entries (`<id>.json`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    fn cache_path(&self, sandbox_id: &str) -> PathBuf {
        self.cache.join(format!("{sandbox_id}.json"))
    }

    fn read_cache(&self, sandbox_id: &str) -> Result<Option<CachedAttachment>> {
        crate::read_record(self.cache_path(sandbox_id))
    }

    /// Writes the entry whole or not at all (a crash leaves the old one).
    fn write_cache(&self, sandbox_id: &str, entry: &CachedAttachment) -> Result<()> {
        let path = self.cache_path(sandbox_id);
        let bytes = crate::record_bytes(&path, entry)?;
        let temporary = self.cache.join(format!(".{sandbox_id}.json.tmp"));
        std::fs::write(&temporary, bytes).map_err(|e| io_error("writing", &temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| io_error("renaming", &temporary, e))
    }

    fn chain<'a>(&'a self, entry: &'a CachedAttachment) -> Chain<'a> {
        Chain {
            network: &entry.network,
            attachment: &entry.attachment,
            runtime_config: &entry.runtime_config,
            bin_dirs: &self.config.bin_dirs,
            exec: self.exec.as_ref(),
        }
    }

    /// CHECK of a sandbox's attachment with its cached result.
    pub fn check(&self, sandbox_id: &str) -> Result<()> {
        let entry = self
            .read_cache(sandbox_id)?
            .ok_or_else(|| Error::Missing(format!("no CNI attachment of sandbox {sandbox_id}")))?;
        let result = entry.result.as_ref().ok_or_else(|| {
            Error::Missing(format!(
                "the CNI ADD of sandbox {sandbox_id} did not finish"
            ))
        })?;
        self.chain(&entry).check(result)
    }

    /// The sandbox ids with a cache entry.
    fn cached(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.cache).map_err(|e| io_error("listing", &self.cache, e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                (!name.starts_with('.'))
                    .then(|| name.strip_suffix(".json").map(str::to_string))
                    .flatten()
            })
            .collect())
    }
}

impl PodNetwork for CniNetwork {
    fn set_up(&self, request: &PodNetworkRequest<'_>) -> Result<PodNetworkStatus> {
        let started = Instant::now();
        if let Some(entry) = self.read_cache(request.sandbox_id)? {
            if let Some(result) = &entry.result {
                return Ok(PodNetworkStatus {
                    ips: result_ips(result),
                });
            }
            // An ADD cut short (the agent stopped in it): undo it before starting again.
            if let Err(e) = self.tear_down(request.sandbox_id) {
                tracing::warn!(
                    pod_namespace = %request.pod_namespace, pod_name = %request.pod_name,
                    pod_uid = %request.pod_uid, sandbox = %request.sandbox_id, error = %e,
                    "CNI DEL of an ADD that did not finish"
                );
            }
        }
        let entry = CachedAttachment {
            network: load_network(&self.config.conf_dir)?,
            attachment: Attachment::for_pod(request),
            runtime_config: runtime_config(&request.host_ports, self.pod_cidr()),
            result: None,
        };
        self.write_cache(request.sandbox_id, &entry)?;
        let added = self.chain(&entry).add().and_then(|result| {
            let ips = result_ips(&result);
            if ips.is_empty() {
                return Err(Error::Missing(format!(
                    "the CNI network {} gave the pod no address (its result has no ips)",
                    entry.network.name
                )));
            }
            let done = CachedAttachment {
                result: Some(result),
                ..entry.clone()
            };
            self.write_cache(request.sandbox_id, &done)?;
            Ok(ips)
        });
        match added {
            Ok(ips) => {
                tracing::debug!(
                    pod_namespace = %request.pod_namespace, pod_name = %request.pod_name,
                    pod_uid = %request.pod_uid, sandbox = %request.sandbox_id, ips = ?ips,
                    network = %entry.network.name,
                    "CNI ADD done in {:.2} ms", started.elapsed().as_secs_f64() * 1e3
                );
                Ok(PodNetworkStatus { ips })
            }
            Err(error) => {
                // As kubelet does: a failed ADD is followed by a DEL of the whole chain.
                if let Err(cleanup) = self.tear_down(request.sandbox_id) {
                    tracing::warn!(
                        pod_namespace = %request.pod_namespace, pod_name = %request.pod_name,
                        pod_uid = %request.pod_uid, sandbox = %request.sandbox_id, error = %cleanup,
                        "CNI DEL after a failed ADD"
                    );
                }
                Err(error)
            }
        }
    }

    fn tear_down(&self, sandbox_id: &str) -> Result<()> {
        let Some(entry) = self.read_cache(sandbox_id)? else {
            return Ok(());
        };
        let alive = netns_alive(&entry.attachment.netns);
        let deleted = self.chain(&entry).del(entry.result.as_ref(), alive);
        // A failed DEL of a finished ADD is kept for the next removal or collection (the
        // plugins hold an address, rules). One of an ADD that failed or was cut short is not:
        // the plugins' own ADD failure is theirs to clean up, and a broken configuration would
        // fail every DEL again for ever.
        if deleted.is_err() && entry.result.is_some() {
            return deleted;
        }
        let path = self.cache_path(sandbox_id);
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &path, e)),
        };
        deleted.and(removed)
    }

    fn tears_down_before_sandbox(&self) -> bool {
        true
    }

    /// When a plugin of the network takes the `ipRanges` capability (host-local does): its
    /// pods' addresses then come from the Node's podCIDR.
    fn uses_pod_cidr(&self) -> bool {
        load_network(&self.config.conf_dir).is_ok_and(|network| {
            network.plugins.iter().any(|plugin| {
                plugin
                    .get("capabilities")
                    .and_then(|c| c.get("ipRanges"))
                    .and_then(Value::as_bool)
                    == Some(true)
            })
        })
    }

    fn configure(&self, pod_cidr: Ipv4Cidr) -> Result<()> {
        *self
            .pod_cidr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(pod_cidr);
        Ok(())
    }

    fn collect_garbage(&self, live: &HashSet<String>) -> Result<()> {
        let mut errors = Vec::new();
        for id in self.cached()?.into_iter().filter(|id| !live.contains(id)) {
            tracing::info!(sandbox = %id, "CNI DEL of a sandbox that is gone");
            if let Err(e) = self.tear_down(&id) {
                errors.push(format!("sandbox {id}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const CONFLIST: &str = r#"{
        "cniVersion": "1.0.0", "name": "podnet",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
            {"type": "loopback"},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}
        ]
    }"#;

    fn conflist() -> NetworkConfigList {
        NetworkConfigList::parse(Path::new("10-pods.conflist"), CONFLIST.as_bytes())
            .expect("a valid list")
    }

    fn parse_error(name: &str, text: &str) -> String {
        NetworkConfigList::parse(Path::new(name), text.as_bytes())
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn a_list_and_a_single_plugin_configuration_parse() {
        let list = conflist();
        assert_eq!(list.name, "podnet");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.plugins.len(), 3);
        assert_eq!(list.plugin_type(2), "portmap");
        let single = NetworkConfigList::parse(
            Path::new("10-one.conf"),
            br#"{"cniVersion": "0.4.0", "name": "one", "type": "ptp", "mtu": 1400}"#,
        )
        .expect("valid");
        assert_eq!(single.plugins.len(), 1);
        assert_eq!(single.plugin_type(0), "ptp");
        assert_eq!(single.plugins[0]["mtu"], 1400);
    }

    #[test]
    fn bad_configurations_are_refused_with_the_reason() {
        for (name, text, reason) in [
            ("a.conflist", "{", "not JSON"),
            ("a.conflist", "[]", "not a JSON object"),
            (
                "a.conflist",
                r#"{"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}"#,
                "\"name\" is missing",
            ),
            (
                "a.conflist",
                r#"{"name": "n", "plugins": [{"type": "x"}]}"#,
                "\"cniVersion\" is missing",
            ),
            (
                "a.conflist",
                r#"{"name": "n", "cniVersion": "1.0.0"}"#,
                "\"plugins\" is missing",
            ),
            (
                "a.conflist",
                r#"{"name": "n", "cniVersion": "1.0.0", "plugins": []}"#,
                "\"plugins\" is empty",
            ),
            (
                "a.conflist",
                r#"{"name": "n", "cniVersion": "1.0.0", "plugins": [{}]}"#,
                "plugins[0]: \"type\" is missing",
            ),
            (
                "a.conflist",
                r#"{"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "../sh"}]}"#,
                "not a plugin name",
            ),
            (
                "a.conflist",
                r#"{"name": "n", "cniVersion": "9.9.9", "plugins": [{"type": "x"}]}"#,
                "cniVersion \"9.9.9\" is not supported",
            ),
            (
                "a.conflist",
                r#"{"name": "n/x", "cniVersion": "1.0.0", "plugins": [{"type": "x"}]}"#,
                "network name",
            ),
            (
                "a.conf",
                r#"{"name": "n", "cniVersion": "1.0.0"}"#,
                "plugins[0]: \"type\" is missing",
            ),
        ] {
            let error = parse_error(name, text);
            assert!(error.contains(reason), "{text}: {error}");
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn the_first_configuration_file_in_lexical_order_is_the_network() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = load_network(dir.path()).expect_err("empty").to_string();
        assert!(error.contains("no CNI network configuration"), "{error}");
        std::fs::write(dir.path().join("README"), "not a config").expect("write");
        std::fs::write(
            dir.path().join("20-second.conf"),
            r#"{"cniVersion": "1.0.0", "name": "second", "type": "ptp"}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("10-first.conflist"),
            CONFLIST.replace("podnet", "first"),
        )
        .expect("write");
        std::fs::write(dir.path().join("00-ignored.txt"), "{}").expect("write");
        assert_eq!(load_network(dir.path()).expect("loads").name, "first");
        std::fs::write(dir.path().join("05-broken.json"), "{").expect("write");
        let error = load_network(dir.path()).expect_err("broken").to_string();
        assert!(error.contains("05-broken.json"), "{error}");
    }

    #[test]
    fn each_plugin_gets_the_name_version_its_capabilities_and_the_previous_result() {
        let list = conflist();
        let runtime = runtime_config(
            &[HostPort {
                protocol: crate::Protocol::Tcp,
                host_port: 30080,
                container_port: 8080,
            }],
            None,
        );
        let first = list.plugin_stdin(0, &runtime, None);
        assert_eq!(first["name"], "podnet");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert_eq!(first["bridge"], "cni0");
        assert!(first.get("prevResult").is_none());
        assert!(
            first.get("runtimeConfig").is_none(),
            "bridge declares no capability"
        );
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24"}]});
        let last = list.plugin_stdin(2, &runtime, Some(&prev));
        assert_eq!(last["prevResult"], prev);
        assert_eq!(
            last["runtimeConfig"],
            serde_json::json!({"portMappings": [{"hostPort": 30080, "containerPort": 8080, "protocol": "tcp"}]})
        );
        // A declared capability with no value is left out.
        let none = list.plugin_stdin(2, &Map::new(), Some(&prev));
        assert!(none.get("runtimeConfig").is_none());
        // The node's podCIDR, once known, as containerd passes it for host-local.
        let cidr: Ipv4Cidr = "10.42.3.0/24".parse().expect("cidr");
        assert_eq!(
            serde_json::Value::Object(runtime_config(&[], Some(cidr))),
            serde_json::json!({"ipRanges": [[{"subnet": "10.42.3.0/24"}]]})
        );
    }

    #[test]
    fn the_environment_is_kubelets() {
        let attachment = Attachment {
            container_id: "abc".into(),
            netns: "/run/netns/x".into(),
            ifname: IFNAME.into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "web".into()),
            ],
        };
        let env = attachment.environment(
            CniCommand::Add,
            &[PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            true,
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("CNI_COMMAND"), "ADD");
        assert_eq!(get("CNI_CONTAINERID"), "abc");
        assert_eq!(get("CNI_NETNS"), "/run/netns/x");
        assert_eq!(get("CNI_IFNAME"), "eth0");
        assert_eq!(get("CNI_ARGS"), "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(get("CNI_PATH"), "/opt/cni/bin:/usr/lib/cni");
        let gone = attachment.environment(CniCommand::Del, &[], false);
        assert!(gone.contains(&("CNI_NETNS".into(), String::new())));
    }

    #[test]
    fn plugin_errors_name_the_plugin_code_and_message() {
        let error = plugin_error(
            "bridge",
            CniCommand::Add,
            "exit status: 1",
            br#"{"cniVersion": "1.0.0", "code": 7, "msg": "failed to set bridge addr", "details": "file exists"}"#,
            b"",
        )
        .to_string();
        assert!(error.contains("bridge"), "{error}");
        assert!(error.contains("ADD"), "{error}");
        assert!(error.contains("code 7"), "{error}");
        assert!(error.contains("failed to set bridge addr"), "{error}");
        assert!(error.contains("file exists"), "{error}");
        let error =
            plugin_error("x", CniCommand::Del, "exit status: 2", b"", b"segfault\n").to_string();
        assert!(error.contains("exit status: 2: segfault"), "{error}");
    }

    #[test]
    fn result_ips_are_the_addresses_without_loopback() {
        let result = serde_json::json!({"cniVersion": "1.0.0", "ips": [
            {"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 2},
            {"address": "127.0.0.1/8"},
            {"address": "fd00::5/64"}
        ]});
        assert_eq!(
            result_ips(&result),
            vec![
                "10.9.0.5".parse::<IpAddr>().expect("ip"),
                "fd00::5".parse::<IpAddr>().expect("ip")
            ]
        );
        assert!(result_ips(&serde_json::json!({})).is_empty());
    }

    /// Plugins that record their runs and answer from a script.
    #[derive(Default)]
    struct Recorder {
        runs: Mutex<Vec<(String, String, Value)>>,
        fail: Vec<(&'static str, CniCommand)>,
    }

    impl PluginExec for Recorder {
        fn exec(
            &self,
            plugin: &str,
            command: CniCommand,
            env: &[(String, String)],
            stdin: &[u8],
        ) -> Result<Vec<u8>> {
            let config: Value = serde_json::from_slice(stdin).expect("stdin is JSON");
            let cmd = env
                .iter()
                .find(|(k, _)| k == "CNI_COMMAND")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            self.runs
                .lock()
                .expect("lock")
                .push((plugin.to_string(), cmd, config.clone()));
            if self.fail.contains(&(plugin_static(plugin), command)) {
                return Err(plugin_error(
                    plugin,
                    command,
                    "exit status: 1",
                    br#"{"code": 11, "msg": "try again"}"#,
                    b"",
                ));
            }
            if command != CniCommand::Add {
                return Ok(Vec::new());
            }
            // Each plugin adds an address to what it got, so the threading shows.
            let mut result = config
                .get("prevResult")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"cniVersion": "1.0.0", "ips": []}));
            let n = result["ips"].as_array().map_or(0, Vec::len);
            if let Some(ips) = result["ips"].as_array_mut() {
                ips.push(serde_json::json!({"address": format!("10.9.0.{}/24", n + 2)}));
            }
            Ok(serde_json::to_vec(&result).expect("encode"))
        }
    }

    fn plugin_static(plugin: &str) -> &'static str {
        match plugin {
            "bridge" => "bridge",
            "loopback" => "loopback",
            "portmap" => "portmap",
            _ => "",
        }
    }

    struct Shared(std::sync::Arc<Recorder>);

    impl PluginExec for Shared {
        fn exec(
            &self,
            plugin: &str,
            command: CniCommand,
            env: &[(String, String)],
            stdin: &[u8],
        ) -> Result<Vec<u8>> {
            self.0.exec(plugin, command, env, stdin)
        }
    }

    fn network_with(recorder: std::sync::Arc<Recorder>) -> (tempfile::TempDir, CniNetwork) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(conf.join("10-pods.conflist"), CONFLIST).expect("write");
        let network = CniNetwork::with_exec(
            CniConfig {
                data_dir: dir.path().join("data"),
                conf_dir: conf,
                bin_dirs: vec![PathBuf::from("/nowhere")],
                plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
            },
            Box::new(Shared(recorder)),
        )
        .expect("network");
        (dir, network)
    }

    fn request(host_ports: Vec<HostPort>) -> PodNetworkRequest<'static> {
        PodNetworkRequest {
            sandbox_id: "sb1",
            netns: Path::new("/nonexistent/netns"),
            pod_namespace: "default",
            pod_name: "web",
            pod_uid: "uid-1",
            host_ports,
        }
    }

    fn order(recorder: &Recorder) -> Vec<String> {
        recorder
            .runs
            .lock()
            .expect("lock")
            .iter()
            .map(|(p, c, _)| format!("{c} {p}"))
            .collect()
    }

    #[test]
    fn add_threads_results_del_runs_in_reverse_with_the_cached_result() {
        let recorder = std::sync::Arc::new(Recorder::default());
        let (_dir, network) = network_with(recorder.clone());
        let status = network.set_up(&request(Vec::new())).expect("ADD");
        // Three plugins, each adding an address to the previous result.
        assert_eq!(status.ips.len(), 3);
        assert_eq!(
            order(&recorder),
            ["ADD bridge", "ADD loopback", "ADD portmap"]
        );
        {
            let runs = recorder.runs.lock().expect("lock");
            assert!(runs[0].2.get("prevResult").is_none());
            assert_eq!(
                runs[1].2["prevResult"]["ips"].as_array().map(Vec::len),
                Some(1)
            );
            assert_eq!(
                runs[2].2["prevResult"]["ips"].as_array().map(Vec::len),
                Some(2)
            );
        }
        // Set up again (a retried sandbox): the cached result, no plugin runs.
        assert_eq!(network.set_up(&request(Vec::new())).expect("again"), status);
        assert_eq!(order(&recorder).len(), 3);

        network.check("sb1").expect("CHECK");
        // The conf dir changes; DEL still uses what ADD ran with.
        std::fs::remove_dir_all(&network.config.conf_dir).expect("rm conf");
        recorder.runs.lock().expect("lock").clear();
        network.tear_down("sb1").expect("DEL");
        assert_eq!(
            order(&recorder),
            ["DEL portmap", "DEL loopback", "DEL bridge"]
        );
        let runs = recorder.runs.lock().expect("lock");
        for (_, _, config) in runs.iter() {
            assert_eq!(
                config["prevResult"]["ips"].as_array().map(Vec::len),
                Some(3)
            );
        }
        assert!(network.cached().expect("list").is_empty());
        drop(runs);
        // Idempotent: nothing cached, nothing run.
        network.tear_down("sb1").expect("DEL again");
    }

    #[test]
    fn check_runs_in_order_with_the_cached_result() {
        let recorder = std::sync::Arc::new(Recorder::default());
        let (_dir, network) = network_with(recorder.clone());
        network.set_up(&request(Vec::new())).expect("ADD");
        recorder.runs.lock().expect("lock").clear();
        network.check("sb1").expect("CHECK");
        assert_eq!(
            order(&recorder),
            ["CHECK bridge", "CHECK loopback", "CHECK portmap"]
        );
        let error = network.check("other").expect_err("none").to_string();
        assert!(error.contains("no CNI attachment"), "{error}");
    }

    #[test]
    fn a_failed_add_is_undone_by_a_del_of_the_whole_chain() {
        let recorder = std::sync::Arc::new(Recorder {
            fail: vec![("loopback", CniCommand::Add)],
            ..Recorder::default()
        });
        let (_dir, network) = network_with(recorder.clone());
        let error = network
            .set_up(&request(Vec::new()))
            .expect_err("fails")
            .to_string();
        assert!(
            error.contains("loopback") && error.contains("code 11"),
            "{error}"
        );
        assert_eq!(
            order(&recorder),
            [
                "ADD bridge",
                "ADD loopback",
                "DEL portmap",
                "DEL loopback",
                "DEL bridge"
            ]
        );
        assert!(network.cached().expect("list").is_empty());
    }

    #[test]
    fn a_failed_add_whose_del_fails_too_leaves_no_cache_to_retry_for_ever() {
        let recorder = std::sync::Arc::new(Recorder {
            fail: vec![("portmap", CniCommand::Add), ("bridge", CniCommand::Del)],
            ..Recorder::default()
        });
        let (_dir, network) = network_with(recorder.clone());
        let error = network
            .set_up(&request(Vec::new()))
            .expect_err("fails")
            .to_string();
        assert!(error.contains("portmap"), "{error}");
        assert!(network.cached().expect("list").is_empty());
    }

    #[test]
    fn a_failed_del_keeps_the_cache_for_the_next_try_and_runs_every_plugin() {
        let recorder = std::sync::Arc::new(Recorder {
            fail: vec![("portmap", CniCommand::Del)],
            ..Recorder::default()
        });
        let (_dir, network) = network_with(recorder.clone());
        network.set_up(&request(Vec::new())).expect("ADD");
        recorder.runs.lock().expect("lock").clear();
        let error = network.tear_down("sb1").expect_err("fails").to_string();
        assert!(error.contains("portmap"), "{error}");
        assert_eq!(
            order(&recorder),
            ["DEL portmap", "DEL loopback", "DEL bridge"]
        );
        assert_eq!(network.cached().expect("list"), ["sb1"]);
    }

    #[test]
    fn garbage_is_the_cached_sandboxes_that_are_not_live() {
        let recorder = std::sync::Arc::new(Recorder::default());
        let (_dir, network) = network_with(recorder.clone());
        network.set_up(&request(Vec::new())).expect("ADD");
        let mut other = request(Vec::new());
        other.sandbox_id = "sb2";
        network.set_up(&other).expect("ADD");
        let live: HashSet<String> = ["sb2".to_string()].into();
        network.collect_garbage(&live).expect("collect");
        assert_eq!(network.cached().expect("list"), ["sb2"]);
        // The namespace file does not exist: DEL runs without CNI_NETNS.
        let runs = recorder.runs.lock().expect("lock");
        let (_, command, _) = runs.last().expect("a run");
        assert_eq!(command, "DEL");
    }
}
