//! Harness for the end-to-end tests: starts the real `skiff` binary on a fresh data directory
//! and a free port, and drives it with the real kubectl (and curl), the way a user does.
//!
//! Everything a test creates lives under one temporary directory that is removed, and the
//! server killed, when the [`Cluster`] is dropped, also when the test panics. Several tests
//! run at once, so nothing here uses a fixed port or path.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

pub mod golden;
pub mod multinode;
pub mod pod_network;
pub use multinode::{AgentHost, MultiNode};

/// The line `skiff server` prints once it serves; the URL follows it.
pub const LISTENING_PREFIX: &str = "Skiff API server listening on ";
/// The line `skiff server` prints with the path of the admin kubeconfig.
pub const KUBECONFIG_PREFIX: &str = "Admin kubeconfig: ";
/// How long the server may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one kubectl or curl invocation may take before the test fails (instead of hanging).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The root of the workspace (this package lives in `<root>/tests/e2e`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The `skiff` binary under test: `$SKIFF_BIN`, else `<target>/debug/skiff`.
pub fn skiff_bin() -> PathBuf {
    let path = match std::env::var_os("SKIFF_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug")
            .join("skiff"),
    };
    assert!(
        path.is_file(),
        "the skiff binary {} does not exist: run `cargo build -p skiff` first \
         (scripts/test.sh does), or point $SKIFF_BIN at it",
        path.display()
    );
    path
}

/// Where [`kubectl_bin`] looks, without checking that it is there.
fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".skiff-tools/bin/kubectl"))
}

/// The real kubectl v1.35: `$KUBECTL`, else `<root>/.skiff-tools/bin/kubectl`.
pub fn kubectl_bin() -> PathBuf {
    let path = kubectl_path();
    assert!(
        path.is_file(),
        "kubectl {} does not exist: run scripts/install-kubectl.sh (scripts/test.sh does), \
         or point $KUBECTL at a kubectl v1.35",
        path.display()
    );
    path
}

/// The path of a file in `tests/e2e/tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A running `skiff server` on its own data directory and port, with a kubectl set up for it.
pub struct Cluster {
    /// The running server; `None` between [`Cluster::crash`] and [`Cluster::restart`].
    child: Option<Child>,
    /// Everything the server printed on stdout, across restarts.
    stdout_log: Arc<Mutex<Vec<String>>>,
    root: TempDir,
    data_dir: PathBuf,
    url: String,
    port: u16,
    kubeconfig: PathBuf,
    /// The node name of the agent the server runs; None: started with `--disable-agent`.
    agent: Option<String>,
    /// More `skiff server` flags, given at every start.
    extra_args: Vec<String>,
    /// The pod network of the cluster's agent (its own bridge, table and cluster CIDR).
    network: Option<TestNetwork>,
    /// `--bind-address` (and so the URL's host).
    bind_address: String,
}

/// A pod network of one test cluster: a slot claimed with a lock file under
/// `/tmp/skiff-e2e-net` (shared by every test process on the machine, released when the
/// process ends however it ends), giving the cluster its own bridge, nftables table and cluster
/// CIDR; what is left of them is removed on drop.
pub struct TestNetwork {
    pub slot: u32,
    pub bridge: String,
    pub table: String,
    pub cluster_cidr: String,
    _lock: File,
}

/// Test clusters' CIDRs are `10.243.<slot>.0/24`.
const NETWORK_SLOTS: u32 = 256;

impl TestNetwork {
    /// Claims a free slot.
    pub fn claim() -> TestNetwork {
        let dir = Path::new("/tmp/skiff-e2e-net");
        fs::create_dir_all(dir).expect("create /tmp/skiff-e2e-net");
        let start = std::process::id()
            .wrapping_mul(7)
            .wrapping_add(NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 13);
        for i in 0..NETWORK_SLOTS {
            let slot = (start + i) % NETWORK_SLOTS;
            let path = dir.join(format!("{slot}.lock"));
            let Ok(file) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            if file.try_lock().is_ok() {
                let network = TestNetwork {
                    slot,
                    bridge: format!("ske2e{slot}"),
                    table: format!("skiff_e2e_{slot}"),
                    cluster_cidr: format!("10.243.{slot}.0/24"),
                    _lock: file,
                };
                // Left by a test process that was killed: the slot is ours now.
                network.remove();
                return network;
            }
        }
        panic!("no free pod network slot under {}", dir.display());
    }

    /// The `skiff server` / `skiff agent` flags of this network.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cluster-cidr".to_string(),
            self.cluster_cidr.clone(),
            "--bridge-name".to_string(),
            self.bridge.clone(),
            "--nft-table".to_string(),
            self.table.clone(),
        ]
    }

    /// The host ends of pods' veths still on the bridge.
    pub fn veths(&self) -> Vec<String> {
        bridge_ports(&self.bridge)
    }

    /// Removes the veths, the bridge and the table (whatever exists of them).
    fn remove(&self) {
        for veth in self.veths() {
            let _ = Command::new("ip")
                .args(["link", "del", &veth])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Ok(mut nft) = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            if let Some(mut stdin) = nft.stdin.take() {
                let _ = write!(
                    stdin,
                    "add table ip {t}\ndelete table ip {t}\n",
                    t = self.table
                );
            }
            let _ = nft.wait();
        }
    }
}

/// The interfaces attached to bridge `bridge` (in this network namespace): the host ends of
/// pods' veths; none if there is no such bridge.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let output = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .stderr(Stdio::null())
        .output();
    output
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Cluster {
    /// Starts `skiff server` on a fresh data directory and a free port, and waits until it
    /// prints that it is listening (at most [`START_TIMEOUT`]).
    pub fn start() -> Cluster {
        Cluster::create(None, |_| {})
    }

    /// Starts `skiff server` with its node agent (node name unique to this cluster), after
    /// `prepare` ran on the fresh data directory (e.g. `skiff image import` of test images).
    /// On drop, the cluster's pods are force-deleted and their containers given time to go,
    /// and whatever is still mounted under the data directory is unmounted.
    pub fn start_with_agent(prepare: impl FnOnce(&Path)) -> Cluster {
        let node = format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Cluster::create(Some(node), prepare)
    }

    /// [`Cluster::start_with_agent`] with more `skiff server` flags (e.g. `--pod-max-pids`).
    pub fn start_with_agent_args(args: &[&str], prepare: impl FnOnce(&Path)) -> Cluster {
        let node = format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT_NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Cluster::create_with(Some(node), args, prepare)
    }

    /// The pid the monitor recorded for container `id` (its status.json).
    pub fn container_pid(&self, id: &str) -> u64 {
        let path = self
            .data_dir
            .join("containers")
            .join(id)
            .join("status.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let status: serde_json::Value = serde_json::from_str(&text).expect("status.json is JSON");
        status["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid in {text}"))
    }

    /// The pid of the running `skiff server`.
    pub fn server_pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server runs")
    }

    /// The pod network of the server's agent, if it runs one.
    pub fn network(&self) -> Option<&TestNetwork> {
        self.network.as_ref()
    }

    /// The node name of the server's agent, if it runs one.
    pub fn node_name(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Starts `skiff server --disable-agent` listening on `bind_address` (an address of this
    /// machine; it joins the certificate's names), with more flags `args`: the control plane
    /// of clusters whose agents run elsewhere (see [`crate::multinode`]).
    pub fn start_control_plane(bind_address: &str, args: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(None, args);
        cluster.bind_address = bind_address.to_string();
        cluster.launch(0);
        cluster
    }

    fn create(agent: Option<String>, prepare: impl FnOnce(&Path)) -> Cluster {
        Cluster::create_with(agent, &[], prepare)
    }

    fn create_with(agent: Option<String>, args: &[&str], prepare: impl FnOnce(&Path)) -> Cluster {
        let mut cluster = Cluster::prepare(agent, args);
        prepare(&cluster.data_dir);
        cluster.launch(0);
        cluster
    }

    /// The cluster's directories and settings, not started yet.
    fn prepare(agent: Option<String>, args: &[&str]) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("skiff-e2e-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        let data_dir = root.path().join("data");
        for dir in [&data_dir, &root.path().join("home")] {
            fs::create_dir_all(dir).expect("create a directory in the cluster's temp dir");
        }
        Cluster {
            child: None,
            stdout_log: Arc::default(),
            kubeconfig: data_dir.join("admin.kubeconfig"),
            data_dir,
            root,
            url: String::new(),
            port: 0,
            network: agent.as_ref().map(|_| TestNetwork::claim()),
            agent,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            bind_address: "127.0.0.1".to_string(),
        }
    }

    /// Kills the server with SIGKILL (as a crash would) and waits for it to be gone.
    /// The data directory stays; [`Cluster::restart`] starts it again.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL to this one pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL (if it runs) and starts it again on the same data
    /// directory and port.
    pub fn restart(&mut self) {
        self.crash();
        self.launch(self.port);
    }

    /// `https://127.0.0.1:<port>`, as the server printed it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch directory that is removed with the cluster.
    pub fn scratch_dir(&self) -> &Path {
        self.root.path()
    }

    /// Directory `name` under [`Cluster::scratch_dir`], created, as a string for a hostPath
    /// in a manifest.
    pub fn scratch_subdir(&self, name: &str) -> String {
        let dir = self.scratch_dir().join(name);
        fs::create_dir_all(&dir).expect("a scratch directory");
        dir.to_str().expect("utf-8 path").to_string()
    }

    /// The table of `kubectl get events` about object `name` (headers only, or kubectl's "No
    /// resources found", when there are none).
    pub fn events_about(&self, name: &str) -> String {
        self.kubectl_ok([
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ])
    }

    /// `reason: message` of every event about object `name`, one a line.
    pub fn event_messages(&self, name: &str) -> Vec<String> {
        self.kubectl_ok([
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// The READY and STATUS columns of `kubectl get po <pod>` (empty when it shows no row).
    pub fn pod_ready_and_status(&self, pod: &str) -> (String, String) {
        let table = parse_table(&self.kubectl_ok(["get", "po", pod]));
        let row = table.get(1).cloned().unwrap_or_default();
        (
            row.get(1).cloned().unwrap_or_default(),
            row.get(2).cloned().unwrap_or_default(),
        )
    }

    /// Waits (at most `timeout`) until pod `name` reaches `phase`, panicking with its status
    /// and logs if it reaches the other terminal phase instead.
    pub fn wait_pod_phase(&self, name: &str, phase: &str, timeout: Duration) {
        wait_until(timeout, &format!("{name} {phase}"), || {
            let now = self.jsonpath(&["pod", name], "{.status.phase}");
            if now != phase && matches!(now.as_str(), "Succeeded" | "Failed") {
                let status = self.jsonpath(&["pod", name], "{.status}");
                let logs = stdout(&self.kubectl(["logs", name]));
                panic!("{name} is {now}, not {phase}: {status}\n{logs}");
            }
            now == phase
        });
    }

    /// The `key=value` lines of pod `name`'s log once it Succeeded (within `timeout`) and
    /// printed `done`: what the report scripts of [`busybox_script_pod`] pods print.
    pub fn pod_report(&self, name: &str, timeout: Duration) -> BTreeMap<String, String> {
        self.wait_pod_phase(name, "Succeeded", timeout);
        let logs = self.kubectl_ok(["logs", name]);
        assert!(logs.lines().any(|l| l == "done"), "{name}: {logs}");
        logs.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// What the server printed so far (stdout, then the stderr log).
    pub fn server_output(&self) -> String {
        let stdout = self
            .stdout_log
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default();
        let stderr = fs::read_to_string(self.stderr_path()).unwrap_or_default();
        format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")
    }

    /// A kubectl command for this cluster: its kubeconfig, its own discovery cache (kubectl
    /// caches discovery on disk) and a private HOME (so no user kuberc or cache leaks in).
    pub fn kubectl_command(&self) -> Command {
        self.kubectl_command_with(&self.kubeconfig)
    }

    /// Like [`Cluster::kubectl_command`], with another kubeconfig.
    pub fn kubectl_command_with(&self, kubeconfig: &Path) -> Command {
        let mut command = Command::new(kubectl_bin());
        self.set_up_kubectl(&mut command, kubeconfig);
        command
    }

    /// Skiff's own kubectl (`skiff kubectl`) set up as [`Cluster::kubectl_command`] sets up
    /// the real one: same kubeconfig, cache dir and private HOME.
    pub fn skiff_kubectl_command(&self) -> Command {
        let mut command = Command::new(skiff_bin());
        command.arg("kubectl");
        self.set_up_kubectl(&mut command, &self.kubeconfig);
        command
    }

    /// What both kubectls get: `kubeconfig`, the cluster's discovery cache and private HOME,
    /// no KUBECONFIG from the environment, no stdin.
    fn set_up_kubectl(&self, command: &mut Command, kubeconfig: &Path) {
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.root.path().join("kubectl-cache"))
            .env("HOME", self.root.path().join("home"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
    }

    /// Runs kubectl with `args` and returns what it did (at most [`COMMAND_TIMEOUT`]).
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.kubectl_command();
        command.args(args);
        run(command, None)
    }

    /// Runs kubectl with `args`, feeding `input` on its stdin (for `-f -`).
    pub fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.kubectl_command();
        command.args(args);
        run(command, Some(input))
    }

    /// Runs kubectl with `args`, asserts that it succeeded and returns its stdout.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.kubectl(&args);
        assert_success(&output, &describe_args("kubectl", &args));
        stdout(&output)
    }

    /// The `-o jsonpath=PATH` output of `kubectl get WHAT...` (empty when kubectl fails, e.g.
    /// the object is not there yet).
    pub fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args: Vec<String> = vec!["get".into()];
        args.extend(what.iter().map(|w| w.to_string()));
        args.extend(["-o".into(), format!("jsonpath={path}")]);
        stdout(&self.kubectl(&args))
    }

    /// Creates the objects of `manifest` (YAML) with `kubectl create -f -`, failing the test if
    /// kubectl refuses them.
    pub fn create_from(&self, manifest: &str) {
        let created = self.kubectl_stdin(["create", "-f", "-"], manifest);
        assert_success(&created, "kubectl create -f -");
    }

    /// Starts a long-running kubectl (`get po -w`) whose stdout lines can be read with a
    /// timeout. It is killed when the stream is dropped.
    pub fn kubectl_stream<I, S>(&self, args: I) -> LineStream
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.kubectl_command();
        command.args(args);
        LineStream::spawn(command)
    }

    /// The kubeconfig as JSON, read back by kubectl itself (whatever format the server wrote).
    pub fn kubeconfig_json(&self) -> serde_json::Value {
        let text = self.kubectl_ok(["config", "view", "--raw", "-o", "json"]);
        serde_json::from_str(&text).expect("kubectl config view -o json prints JSON")
    }

    /// The bearer token of the admin kubeconfig.
    pub fn token(&self) -> String {
        let config = self.kubeconfig_json();
        config["users"][0]["user"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no users[0].user.token in the admin kubeconfig: {config}"))
            .to_owned()
    }

    /// The cluster CA from the admin kubeconfig, written to a PEM file (for curl).
    pub fn ca_file(&self) -> PathBuf {
        let path = self.root.path().join("ca.crt");
        if !path.exists() {
            let config = self.kubeconfig_json();
            let data = config["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("no certificate-authority-data in the admin kubeconfig: {config}")
                });
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .expect("certificate-authority-data is base64");
            fs::write(&path, pem).expect("write the CA file");
        }
        path
    }

    /// A curl command that trusts the cluster CA and, with `authenticated`, sends the admin
    /// bearer token. Add the method, URL and body.
    pub fn curl_command(&self, authenticated: bool) -> Command {
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--cacert"])
            .arg(self.ca_file())
            .stdin(Stdio::null());
        if authenticated {
            command
                .arg("--header")
                .arg(format!("Authorization: Bearer {}", self.token()));
        }
        command
    }

    fn stderr_path(&self) -> PathBuf {
        self.root.path().join("server.stderr.log")
    }

    /// Spawns the server on `port` (0: any free port) and waits until it is ready.
    fn launch(&mut self, port: u16) {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open the server's stderr log");
        let mut command = Command::new(skiff_bin());
        command
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--bind-address")
            .arg(&self.bind_address)
            .arg("--https-listen-port")
            .arg(port.to_string());
        match &self.agent {
            // The node's streaming server on the loopback, on a free port: clusters of
            // parallel tests do not collide, and no traffic leaves the machine.
            Some(node) => command.arg("--node-name").arg(node).args([
                "--node-ip",
                "127.0.0.1",
                "--streaming-port",
                "0",
            ]),
            None => command.arg("--disable-agent"),
        };
        if let Some(network) = &self.network {
            command.args(network.args());
        }
        command.args(&self.extra_args);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", skiff_bin().display()));
        let stdout = child.stdout.take().expect("stdout was piped above");
        self.child = Some(child);
        let lines = forward_lines(stdout, Arc::clone(&self.stdout_log));

        let deadline = Instant::now() + START_TIMEOUT;
        let mut url: Option<String> = None;
        let mut kubeconfig: Option<PathBuf> = None;
        loop {
            if let Some(url) = &url {
                let path: &PathBuf = kubeconfig.as_ref().unwrap_or(&self.kubeconfig);
                if path.is_file() {
                    self.kubeconfig = path.clone();
                    self.url = url.clone();
                    self.port = port_of(url);
                    return;
                }
            }
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.split(LISTENING_PREFIX).nth(1) {
                        url = Some(rest.trim().trim_end_matches('/').to_owned());
                    }
                    if let Some(rest) = line.split(KUBECONFIG_PREFIX).nth(1) {
                        kubeconfig = Some(PathBuf::from(rest.trim()));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.crash();
                    panic!(
                        "skiff server did not print \"{LISTENING_PREFIX}...\" and write its \
                         kubeconfig within {START_TIMEOUT:?}\n{}",
                        self.server_output()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    self.child = None;
                    panic!(
                        "skiff server exited before it was ready ({status:?})\n{}",
                        self.server_output()
                    );
                }
            }
        }
    }
}

impl Cluster {
    /// For a cluster with an agent: force-deletes every pod and waits (bounded) until the agent
    /// removed their containers and sandboxes. Then, after the server is gone, unmounts what
    /// is still mounted under the cluster's directory (deepest first).
    fn remove_node_leftovers(&mut self) {
        // Without kubectl (kubectl_bin would panic, and a panic in drop during a test's panic
        // aborts the process, leaking the server) the pods stay; the server is still killed.
        if self.agent.is_some() && self.child.is_some() && kubectl_path().is_file() {
            let _ = self.kubectl([
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
            let empty = |dir: PathBuf| fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline
                && !(empty(self.data_dir.join("containers"))
                    && empty(self.data_dir.join("sandboxes")))
            {
                thread::sleep(Duration::from_millis(100));
            }
        }
        self.crash();
        // Anything under the cluster's directory: also an agent a test joined with its own
        // data dir in the scratch directory.
        let prefix = format!("{}/", self.root.path().display());
        let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["--lazy", &point]).status();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.remove_node_leftovers();
        self.crash();
        if thread::panicking() {
            // The test failed: what the server said is the first thing one wants to see.
            eprintln!("skiff server output:\n{}", self.server_output());
        }
    }
}

/// Makes agent node names unique within a test binary.
static NEXT_NODE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The port of `https://host:port`.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in the server URL {url:?}"))
}

/// Reads `stdout` line by line on a thread, appending each line to `log` and sending it on the
/// returned channel (the receiver may be dropped; the pipe keeps being drained so the server
/// never blocks on a full pipe).
fn forward_lines(stdout: ChildStdout, log: Arc<Mutex<Vec<String>>>) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut log) = log.lock() {
                log.push(line.clone());
            }
            let _ = sender.send(line);
        }
    });
    receiver
}

/// Runs `command` to completion with piped output and an optional stdin, killing it (by its
/// pid) and panicking if it takes longer than [`COMMAND_TIMEOUT`].
pub fn run(mut command: Command, input: Option<&str>) -> Output {
    let what = describe_command(&command);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_owned();
        // A thread, so that a command that does not read all its input cannot block us.
        thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let stdout = read_to_end_on_thread(child.stdout.take());
    let stderr = read_to_end_on_thread(child.stderr.take());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let collect = |receiver: &Receiver<Vec<u8>>| {
        receiver
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    };
    let (out, err) = (collect(&stdout), collect(&stderr));
    match (out, err) {
        (Some(stdout), Some(stderr)) => {
            let status = child.wait().expect("wait for a child whose pipes closed");
            Output {
                status,
                stdout,
                stderr,
            }
        }
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
        }
    }
}

fn read_to_end_on_thread<R: Read + Send + 'static>(pipe: Option<R>) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        let _ = sender.send(buffer);
    });
    receiver
}

fn describe_command(command: &Command) -> String {
    let args: Vec<_> = command.get_args().map(OsStr::to_owned).collect();
    describe_args(&command.get_program().to_string_lossy(), &args)
}

fn describe_args(program: &str, args: &[std::ffi::OsString]) -> String {
    let args: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    format!("`{program} {}`", args.join(" "))
}

/// Stdout of a finished command, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a finished command, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics with the command's exit status and output unless it succeeded.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// Panics unless the command exited with `code`.
pub fn assert_exit_code(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit code {code}, got {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// Polls `condition` until it holds, panicking with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        // Polling interval, not synchronisation: the condition is checked again.
        thread::sleep(Duration::from_millis(50));
    }
}

/// The rows of a kubectl table (header first), cells split on runs of two or more spaces
/// (kubectl pads columns with at least three; headers such as `NOMINATED NODE` keep theirs).
pub fn parse_table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The stdout of a long-running command, line by line, with timeouts.
pub struct LineStream {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl LineStream {
    /// Spawns `command` with its stdout piped (stderr goes to a file-less sink: kubectl's
    /// "No resources found" must not block it).
    pub fn spawn(mut command: Command) -> LineStream {
        let what = describe_command(&command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout was piped above");
        let lines = forward_lines(stdout, Arc::default());
        LineStream {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, or `None` if none came within `timeout` or the command ended.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads lines until one satisfies `matches` and returns it; panics after `timeout`,
    /// showing every line read so far.
    pub fn expect_line(
        &mut self,
        timeout: Duration,
        what: &str,
        mut matches: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) if matches(&line) => return line,
                Some(_) => {}
                None => panic!(
                    "no line with {what} within {timeout:?}; lines so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Stops the command (SIGKILL to its pid) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `python3 tests/fixtures/<script>` with the Python `kubernetes` client that scripts/test.sh
/// installs in .skiff-tools/python on its path; fails the test if the client is not there.
pub fn python_fixture(script: &str) -> Command {
    let client = workspace_root().join(".skiff-tools/python");
    assert!(
        client.join("kubernetes").is_dir(),
        "the Python kubernetes client is not installed in {}: run scripts/test.sh",
        client.display()
    );
    let mut python = Command::new("python3");
    python.env("PYTHONPATH", &client).arg(fixture(script));
    python
}

/// How many file descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Builds the project's test images (scripts/build-test-images.sh) and imports `luksa/kubia`
/// and `busybox` into the node data dir `data_dir`, as `up.sh` does.
pub fn import_test_images(data_dir: &Path) {
    let out = data_dir.with_file_name("images-out");
    let mut build = Command::new(workspace_root().join("scripts/build-test-images.sh"));
    build.arg(&out);
    assert_success(&run(build, None), "scripts/build-test-images.sh");
    for image in ["kubia.tar", "busybox.tar"] {
        let mut import = Command::new(skiff_bin());
        import
            .args(["image", "import", "--data-dir"])
            .arg(data_dir)
            .arg(out.join(image));
        assert_success(&run(import, None), &format!("skiff image import {image}"));
    }
}

/// Writes `contents` to `<dir>/<name>` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let mut file = File::create(&path).expect("create a file in a temp dir");
    file.write_all(contents.as_bytes())
        .expect("write a file in a temp dir");
    path
}

/// A pod `name` (restartPolicy Never) of one busybox container `main` running `script` with
/// `sh -c`, with `container` and `spec` merged into its container's and its spec's fields.
pub fn busybox_script_pod(
    name: &str,
    script: &str,
    container: serde_json::Value,
    spec: serde_json::Value,
) -> String {
    let mut c = serde_json::json!({
        "name": "main", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    });
    for (k, v) in container.as_object().expect("an object").clone() {
        c[k] = v;
    }
    let mut s = serde_json::json!({"restartPolicy": "Never", "containers": [c]});
    for (k, v) in spec.as_object().expect("an object").clone() {
        s[k] = v;
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": s,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table_keeps_multi_word_headers() {
        let text = "NAME           READY   STATUS    RESTARTS   AGE   IP       NODE     NOMINATED NODE   READINESS GATES\n\
                    kubia-manual   0/1     Pending   0          5s    <none>   <none>   <none>           <none>\n";
        let rows = parse_table(text);
        assert_eq!(
            rows[0],
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(rows[1][0], "kubia-manual");
        assert_eq!(rows[1][2], "Pending");
        assert_eq!(rows[1].len(), 9);
    }

    #[test]
    fn port_of_reads_the_last_component() {
        assert_eq!(port_of("https://127.0.0.1:6443"), 6443);
        assert_eq!(port_of("https://127.0.0.1:40123/"), 40123);
    }

    #[test]
    fn run_returns_output_and_status() {
        let mut command = Command::new("sh");
        command.args(["-c", "cat; echo err >&2; exit 3"]);
        let output = run(command, Some("hello"));
        assert_eq!(stdout(&output), "hello");
        assert_eq!(stderr(&output), "err\n");
        assert_eq!(output.status.code(), Some(3));
    }

    #[test]
    fn line_stream_reads_lines_with_timeout() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo one; echo two; exec sleep 30"]);
        let mut stream = LineStream::spawn(command);
        let line = stream.expect_line(Duration::from_secs(10), "two", |l| l == "two");
        assert_eq!(line, "two");
        assert_eq!(stream.seen(), ["one", "two"]);
        assert_eq!(stream.next_line(Duration::from_millis(100)), None);
        assert!(stream.stop().is_some_and(|status| !status.success()));
    }

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let mut calls = 0;
        wait_until(Duration::from_secs(5), "the third call", || {
            calls += 1;
            calls == 3
        });
        assert_eq!(calls, 3);
    }
}
