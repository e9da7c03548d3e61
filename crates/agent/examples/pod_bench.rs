//! Pods on a real node, as root: a release `skiff server` with its agent on a fresh data dir
//! (127.0.0.1, busybox imported), and beside it in the same run `podman kube play` of the same
//! pods when podman is installed (runc, cgroupfs, no network, its own storage in a temporary
//! directory). Three figures for each:
//! - pod start latency, created → every container running as a watch sees it, p50 and p99 over
//!   PODS pods created one at a time (they keep running), for a one-container pod (busybox
//!   `sleep 3600`) and a two-container pod (busybox httpd on 8080 beside busybox sleep);
//! - memory per pod beyond the containers' own processes, with those PODS pods running: the
//!   proportional set size (PSS) of the per-container monitors (podman: conmon) and pause or
//!   infra processes, plus the growth of the `skiff server` process, divided by PODS;
//! - churn: CHURN pods created as fast as the API takes them until all run, then deleted with a
//!   5 s grace (their shell exits on SIGTERM) until gone; pods/s for the cycle and each half.
//!
//! `scripts/bench.sh` runs it; by hand:
//! `cargo build --release -p skiff -p skiff-agent --example pod_bench && scripts/build-test-images.sh`
//! then `target/release/examples/pod_bench [PODS] [CHURN]` (defaults 100 and 100). The skiff
//! binary is `$SKIFF_BIN`, else `$CARGO_TARGET_DIR/release/skiff`; the busybox image
//! `$BUSYBOX_TAR`, else `$CARGO_TARGET_DIR/test-images/busybox.tar`. `SKIP_PODMAN=1` skips
//! podman; `SKIFF_LOG` is the server's log filter (default `warn`) and `POD_BENCH_SERVER_LOG`
//! a file to keep its log in. Everything either side creates is removed at the end, also after a failure.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// How long one pod may take to run or to go before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(120);
const NAMESPACE: &str = "default";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pod_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let churn: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    if !rustix::process::geteuid().is_root() {
        return Err("pod_bench runs containers: run it as root".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let skiff = std::env::var_os("SKIFF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("release/skiff"));
    let busybox = std::env::var_os("BUSYBOX_TAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("test-images/busybox.tar"));
    for (what, path) in [("skiff binary", &skiff), ("busybox image", &busybox)] {
        if !path.is_file() {
            return Err(format!("the {what} {} does not exist", path.display()).into());
        }
    }
    println!("load before: {}", load_average());

    let skiff_figures = {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let server = SkiffServer::start(&skiff, &busybox)?;
        let result = runtime.block_on(skiff_bench(&server, pods, churn));
        let cleaned = runtime.block_on(server.delete_everything());
        drop(server);
        let figures = result?;
        cleaned?;
        figures
    };

    let podman_figures = if std::env::var_os("SKIP_PODMAN").is_some() {
        None
    } else if Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let podman = Podman::new(&busybox)?;
        let result = podman_bench(&podman, pods, churn);
        let cleaned = podman.remove_everything();
        drop(podman);
        let figures = result?;
        cleaned?;
        Some(figures)
    } else {
        println!("podman is not installed: no comparison");
        None
    };

    println!();
    println!("| figure | skiff | podman kube play |");
    println!("| --- | --- | --- |");
    let labels = [
        format!("one-container pod start p50 / p99 ({pods} pods)"),
        format!("two-container pod start p50 / p99 ({pods} pods)"),
        format!("churn of {churn} pods: cycle / create half / delete half"),
        format!("memory per one-container pod, {pods} running (PSS; RSS)"),
        format!("memory per two-container pod, {pods} running (PSS; RSS)"),
    ];
    let ours = skiff_figures.cells();
    let theirs = podman_figures.as_ref().map(Figures::cells);
    for (i, label) in labels.iter().enumerate() {
        let other = theirs.as_ref().map_or("—", |t| t[i].as_str());
        println!("| {label} | {} | {other} |", ours[i]);
    }
    println!();
    println!("load after: {}", load_average());
    Ok(())
}

/// What one side measured.
struct Figures {
    start_one: Latencies,
    start_two: Latencies,
    churn: Churn,
    memory_one: Memory,
    memory_two: Memory,
}

impl Figures {
    /// The cells of the summary table, in the order of its rows.
    fn cells(&self) -> [String; 5] {
        [
            self.start_one.p50_p99(),
            self.start_two.p50_p99(),
            self.churn.rates(),
            self.memory_one.per_pod(),
            self.memory_two.per_pod(),
        ]
    }
}

#[derive(Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[at.min(sorted.len() - 1)]
    }

    fn p50_p99(&self) -> String {
        format!(
            "{} / {}",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99))
        )
    }

    fn summary(&self) -> String {
        format!(
            "p50 {}, p99 {}, max {}",
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0))
        )
    }
}

struct Churn {
    pods: usize,
    create: Duration,
    delete: Duration,
}

impl Churn {
    fn rates(&self) -> String {
        let rate = |d: Duration| self.pods as f64 / d.as_secs_f64();
        format!(
            "{:.1} / {:.1} / {:.1} pods/s",
            rate(self.create + self.delete),
            rate(self.create),
            rate(self.delete)
        )
    }
}

/// Memory beyond the containers' own processes, summed over every pod.
#[derive(Default)]
struct Memory {
    pods: usize,
    pss_kib: u64,
    rss_kib: u64,
}

impl Memory {
    fn per_pod(&self) -> String {
        let per = |kib: u64| kib as f64 / 1024.0 / self.pods.max(1) as f64;
        format!("{:.2} MiB; {:.2} MiB", per(self.pss_kib), per(self.rss_kib))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resident and proportional set sizes of a process in KiB, from /proc/PID/smaps_rollup.
#[derive(Clone, Copy, Debug, Default)]
struct Resident {
    rss: u64,
    pss: u64,
    private: u64,
}

fn resident(pid: u32) -> Option<Resident> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let mut r = Resident::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(kib) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "Rss:" => r.rss = kib,
            "Pss:" => r.pss = kib,
            "Private_Clean:" | "Private_Dirty:" => r.private += kib,
            _ => {}
        }
    }
    Some(r)
}

/// Every process whose command line satisfies `matches` (the arguments, NUL-separated).
fn processes(matches: impl Fn(&[&str]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c);
                let args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
                matches(&args)
            })
        })
        .collect()
}

fn sum_resident(pids: &[u32]) -> Resident {
    pids.iter()
        .filter_map(|pid| resident(*pid))
        .fold(Resident::default(), |a, r| Resident {
            rss: a.rss + r.rss,
            pss: a.pss + r.pss,
            private: a.private + r.private,
        })
}

// ---------------------------------------------------------------------------------------------
// The pods, the same for both sides (JSON is YAML, so podman reads the same documents).

fn one_container_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"containers": [
            {"name": "sleep", "image": "busybox", "imagePullPolicy": "Never",
             "command": ["sleep", "3600"]},
        ]},
    })
}

fn two_container_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"containers": [
            {"name": "web", "image": "busybox", "imagePullPolicy": "Never",
             "command": ["httpd", "-f", "-p", "8080"]},
            {"name": "sleep", "image": "busybox", "imagePullPolicy": "Never",
             "command": ["sleep", "3600"]},
        ]},
    })
}

/// The churn pod: a shell that exits on SIGTERM (busybox `sleep` as PID 1 ignores it), so the
/// delete measures the runtime, not a grace period running out.
fn churn_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [
            {"name": "main", "image": "busybox", "imagePullPolicy": "Never",
             "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]},
        ]},
    })
}

fn pause_pod(name: &str) -> Value {
    let mut pod = one_container_pod(name);
    pod["spec"]["shareProcessNamespace"] = true.into();
    pod
}

fn container_count(pod: &Value) -> usize {
    pod["spec"]["containers"].as_array().map_or(0, Vec::len)
}

// ---------------------------------------------------------------------------------------------
// Skiff.

/// A `skiff server` with its agent on a fresh data dir; killed, and whatever it left mounted
/// or running under that dir removed, when dropped.
struct SkiffServer {
    child: Child,
    root: tempfile::TempDir,
    data: PathBuf,
    kubeconfig: PathBuf,
    log_path: PathBuf,
}

impl SkiffServer {
    fn start(skiff: &Path, busybox: &Path) -> Result<SkiffServer> {
        let root = tempfile::Builder::new()
            .prefix("skiff-pod-bench-")
            .tempdir()?;
        let data = root.path().join("data");
        std::fs::create_dir_all(&data)?;
        let import = Command::new(skiff)
            .args(["image", "import", "--data-dir"])
            .arg(&data)
            .arg(busybox)
            .output()?;
        if !import.status.success() {
            return Err(format!(
                "skiff image import failed: {}",
                String::from_utf8_lossy(&import.stderr)
            )
            .into());
        }
        let log_path = std::env::var_os("POD_BENCH_SERVER_LOG")
            .map_or_else(|| root.path().join("server.log"), PathBuf::from);
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(skiff)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--bind-address", "127.0.0.1", "--https-listen-port", "0"])
            .args(["--node-name", &format!("pod-bench-{}", std::process::id())])
            // A bridge and nftables table of its own (the defaults are a real node's), removed
            // when the benchmark ends.
            .args(["--bridge-name", BRIDGE, "--nft-table", NFT_TABLE])
            // Quiet unless asked (SKIFF_LOG=skiff_agent=debug shows the agent's timings).
            .args([
                "--log",
                &std::env::var("SKIFF_LOG").unwrap_or_else(|_| "warn".into()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut server = SkiffServer {
            child,
            root,
            data,
            kubeconfig: PathBuf::new(),
            log_path,
        };
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .map_err(|_| format!("skiff server did not start: {}", server.log()))?;
            if let Some(path) = line.strip_prefix("Admin kubeconfig: ") {
                server.kubeconfig = PathBuf::from(path.trim());
                break;
            }
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Monitor and pause processes of this server's pods.
    fn overhead_processes(&self) -> Vec<u32> {
        let data = self.data.display().to_string();
        let sandboxes: HashSet<String> = std::fs::read_dir(self.data.join("sandboxes"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        processes(|args| {
            let internal = args.len() >= 4 && args[1] == "internal";
            internal
                && ((args[2] == "monitor" && args[3].starts_with(&data))
                    || (args[2] == "pause"
                        && args.last().is_some_and(|id| sandboxes.contains(*id))))
        })
    }

    /// Force-deletes every pod and waits until the agent removed their containers and
    /// sandboxes.
    async fn delete_everything(&self) -> Result<()> {
        let client = skiff_agent::client_from_kubeconfig(&self.kubeconfig).await?;
        let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        api.delete_collection(&params, &ListParams::default())
            .await?;
        let deadline = Instant::now() + WAIT;
        let empty = |dir: PathBuf| std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        while !(empty(self.data.join("containers")) && empty(self.data.join("sandboxes"))) {
            if Instant::now() > deadline {
                return Err("the agent did not remove every container and sandbox".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for SkiffServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // After a failure: containers still running are killed through runc (their monitors
        // then record the exit and go).
        let runc_root = self.data.join("runc");
        if let Ok(entries) = std::fs::read_dir(self.data.join("containers")) {
            for entry in entries.flatten() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["kill", "--all"])
                    .arg(entry.file_name())
                    .arg("KILL")
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.overhead_processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        unmount_under(self.root.path());
        // The node network the agent set up outlives it, as on a real node.
        let _ = Command::new("ip")
            .args(["link", "del", BRIDGE])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", NFT_TABLE])
            .stderr(Stdio::null())
            .status();
    }
}

/// The benchmark node's bridge and nftables table.
const BRIDGE: &str = "skiffbench0";
const NFT_TABLE: &str = "skiff_bench";

/// Unmounts everything mounted under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        let _ = Command::new("umount").args(["--lazy", &point]).status();
    }
}

/// What the bench's watch saw of a pod.
enum Seen {
    /// Every container of the pod runs.
    Running(String, Instant),
    Gone(String, Instant),
}

/// Watches the namespace's pods and reports each pod once when all its containers run, and
/// when it is gone.
fn watch_pods(api: Api<Pod>) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reported: HashSet<String> = HashSet::new();
        let stream = watcher(api, watcher::Config::default());
        tokio::pin!(stream);
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if reported.contains(&uid) || !all_running(&pod) {
                        continue;
                    }
                    reported.insert(uid);
                    let _ = tx.send(Seen::Running(pod.metadata.name.unwrap_or_default(), now));
                }
                Ok(watcher::Event::Delete(pod)) => {
                    if let Some(uid) = &pod.metadata.uid {
                        reported.remove(uid);
                    }
                    let _ = tx.send(Seen::Gone(pod.metadata.name.unwrap_or_default(), now));
                }
                _ => {}
            }
        }
    });
    rx
}

fn all_running(pod: &Pod) -> bool {
    let wanted = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|s| {
        s.len() == wanted
            && s.iter()
                .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
    })
}

/// Waits until every pod of `names` was seen running (`running`) or gone; returns when each
/// was seen.
async fn wait_for(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    names: &HashSet<String>,
    running: bool,
) -> Result<HashMap<String, Instant>> {
    let mut at = HashMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while at.len() < names.len() {
        let event = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .map_err(|_| {
                format!(
                    "{} of {} pods not {} within {WAIT:?}",
                    names.len() - at.len(),
                    names.len(),
                    if running { "running" } else { "gone" }
                )
            })?
            .ok_or("the watch ended")?;
        match event {
            Seen::Running(name, when) if running && names.contains(&name) => {
                at.insert(name, when);
            }
            Seen::Gone(name, when) if !running && names.contains(&name) => {
                at.insert(name, when);
            }
            _ => {}
        }
    }
    Ok(at)
}

async fn create(api: &Api<Pod>, pod: &Value) -> Result<()> {
    let pod: Pod = serde_json::from_value(pod.clone())?;
    api.create(&PostParams::default(), &pod).await?;
    Ok(())
}

/// Creates pods one at a time, each once the previous one runs; the pods keep running.
async fn start_latencies(
    api: &Api<Pod>,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    pods: &[Value],
) -> Result<Latencies> {
    let mut latencies = Latencies::default();
    for pod in pods {
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let sent = Instant::now();
        create(api, pod).await?;
        let at = wait_for(seen, &HashSet::from([name.clone()]), true).await?;
        latencies.0.push(at[&name] - sent);
    }
    Ok(latencies)
}

/// Deletes every pod of the namespace (no grace: they are measured already) until gone.
async fn delete_all(api: &Api<Pod>, seen: &mut mpsc::UnboundedReceiver<Seen>) -> Result<()> {
    let names: HashSet<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let params = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::default()
    };
    api.delete_collection(&params, &ListParams::default())
        .await?;
    wait_for(seen, &names, false).await?;
    Ok(())
}

fn skiff_memory(server: &SkiffServer, pods: usize, baseline: Resident) -> Memory {
    let overhead = sum_resident(&server.overhead_processes());
    let now = resident(server.pid()).unwrap_or_default();
    Memory {
        pods,
        pss_kib: overhead.pss + now.pss.saturating_sub(baseline.pss),
        rss_kib: overhead.rss + now.rss.saturating_sub(baseline.rss),
    }
}

async fn skiff_bench(server: &SkiffServer, pods: usize, churn: usize) -> Result<Figures> {
    println!("\n== skiff (server pid {})", server.pid());
    let client = skiff_agent::client_from_kubeconfig(&server.kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err("the node did not become Ready".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut seen = watch_pods(api.clone());

    // Warm-up (first sandbox, first container, caches), and one pod with a pause process.
    start_latencies(
        &api,
        &mut seen,
        &[two_container_pod("warm-up"), pause_pod("pause")],
    )
    .await?;
    // Monitors share their launcher's command line; their names tell them apart.
    let named = |name: &str| {
        server.overhead_processes().into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
    };
    let monitor = named("skiff-monitor");
    let launcher = named("skiff-launcher");
    let pause = server.overhead_processes().into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("pause"))
    });
    for (what, pid) in [
        ("skiff internal monitor", monitor),
        ("monitor launcher", launcher),
        ("skiff internal pause", pause),
    ] {
        let r = pid.and_then(resident).unwrap_or_default();
        println!(
            "one {what}: RSS {:.2} MiB, PSS {:.2} MiB, private {:.2} MiB",
            r.rss as f64 / 1024.0,
            r.pss as f64 / 1024.0,
            r.private as f64 / 1024.0
        );
    }
    delete_all(&api, &mut seen).await?;
    let baseline = resident(server.pid()).unwrap_or_default();

    let one: Vec<Value> = (0..pods)
        .map(|i| one_container_pod(&format!("one-{i}")))
        .collect();
    let start_one = start_latencies(&api, &mut seen, &one).await?;
    println!(
        "one-container pod, {pods} one at a time: created → running {}",
        start_one.summary()
    );
    let memory_one = skiff_memory(server, pods, baseline);
    println!(
        "memory per pod with {pods} running: {}",
        memory_one.per_pod()
    );
    delete_all(&api, &mut seen).await?;

    let two: Vec<Value> = (0..pods)
        .map(|i| two_container_pod(&format!("two-{i}")))
        .collect();
    let start_two = start_latencies(&api, &mut seen, &two).await?;
    println!(
        "two-container pod, {pods} one at a time: created → running {}",
        start_two.summary()
    );
    let memory_two = skiff_memory(server, pods, baseline);
    println!(
        "memory per pod with {pods} running: {}",
        memory_two.per_pod()
    );
    delete_all(&api, &mut seen).await?;

    let manifests: Vec<Value> = (0..churn)
        .map(|i| churn_pod(&format!("churn-{i}")))
        .collect();
    let names: HashSet<String> = (0..churn).map(|i| format!("churn-{i}")).collect();
    let started = Instant::now();
    futures_util::stream::iter(manifests.iter().map(|pod| create(&api, pod)))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    wait_for(&mut seen, &names, true).await?;
    let create_half = started.elapsed();
    let started = Instant::now();
    let params = DeleteParams::default();
    futures_util::stream::iter(names.iter().map(|name| {
        let (api, params) = (&api, &params);
        async move { api.delete(name, params).await.map(|_| ()) }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    wait_for(&mut seen, &names, false).await?;
    let churn_figures = Churn {
        pods: churn,
        create: create_half,
        delete: started.elapsed(),
    };
    println!("churn of {churn} pods: {}", churn_figures.rates());
    Ok(Figures {
        start_one,
        start_two,
        churn: churn_figures,
        memory_one,
        memory_two,
    })
}

// ---------------------------------------------------------------------------------------------
// Podman.

/// Podman with its own configuration, storage and state in a temporary directory (runc,
/// cgroupfs, file events, rlimits this machine allows); what it creates outside that
/// directory is removed by [`Podman::remove_everything`] and on drop.
struct Podman {
    root: tempfile::TempDir,
    /// Cgroup directories podman's cgroupfs manager creates and leaves behind, each with
    /// whether it existed before.
    cgroup_parents: Vec<(PathBuf, bool)>,
    cni_lock_existed: bool,
    events: Option<Child>,
    started: std_mpsc::Receiver<(String, Instant)>,
}

const CNI_LOCK: &str = "/etc/cni/net.d/cni.lock";

impl Podman {
    fn new(busybox: &Path) -> Result<Podman> {
        let root = tempfile::Builder::new()
            .prefix("skiff-pod-bench-podman-")
            .tempdir()?;
        // The default rlimits (1048576 open files) are above this machine's hard limit.
        std::fs::write(
            root.path().join("containers.conf"),
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             runtime = \"runc\"\n",
        )?;
        let cgroup_parents = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().join("libpod_parent"))
                    .map(|p| {
                        let existed = p.exists();
                        (p, existed)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (_tx, started) = std_mpsc::channel();
        let mut podman = Podman {
            root,
            cgroup_parents,
            cni_lock_existed: Path::new(CNI_LOCK).exists(),
            events: None,
            started,
        };
        podman.run(&["load", "-q", "-i", &busybox.display().to_string()])?;
        podman.run(&[
            "tag",
            "localhost/busybox:latest",
            "docker.io/library/busybox:latest",
        ])?;
        // Container starts as podman reports them, stamped when read.
        let mut events = podman
            .command(&[
                "events",
                "--format",
                "json",
                "--filter",
                "type=container",
                "--filter",
                "event=start",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = events.stdout.take().ok_or("no stdout pipe")?;
        podman.events = Some(events);
        let (tx, rx) = std_mpsc::channel();
        podman.started = rx;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    let name = event["Name"].as_str().unwrap_or_default().to_owned();
                    let _ = tx.send((name, now));
                }
            }
        });
        Ok(podman)
    }

    fn command(&self, args: &[&str]) -> Command {
        let dir = self.root.path();
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.command(args).output()?;
        if !out.status.success() {
            return Err(format!(
                "podman {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `podman kube play` of `pods` in one file; returns once every container was seen
    /// started, with when each pod's last container started.
    fn play(&self, pods: &[Value]) -> Result<HashMap<String, Instant>> {
        let file = self.root.path().join("pods.yaml");
        let text: Vec<String> = pods.iter().map(Value::to_string).collect();
        std::fs::write(&file, text.join("\n---\n"))?;
        self.run(&[
            "kube",
            "play",
            "--network",
            "none",
            &file.display().to_string(),
        ])?;
        let mut waiting: HashMap<String, (String, usize)> = HashMap::new();
        for pod in pods {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
                let c = c["name"].as_str().unwrap_or_default();
                waiting.insert(
                    format!("{name}-{c}"),
                    (name.to_owned(), container_count(pod)),
                );
            }
        }
        let mut started: HashMap<String, (Instant, usize)> = HashMap::new();
        let deadline = Instant::now() + WAIT;
        while !waiting.is_empty() {
            let (name, at) = self
                .started
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| "podman did not report every container started")?;
            if let Some((pod, _)) = waiting.remove(&name) {
                let entry = started.entry(pod).or_insert((at, 0));
                entry.0 = entry.0.max(at);
                entry.1 += 1;
            }
        }
        Ok(started
            .into_iter()
            .map(|(pod, (at, _))| (pod, at))
            .collect())
    }

    /// Conmon and infra processes of every container.
    fn overhead(&self, pods: usize) -> Result<Memory> {
        let ids = self.run(&["ps", "-aq"])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        let mut args = vec![
            "inspect",
            "--format",
            "{{.State.Pid}} {{.State.ConmonPid}} {{.IsInfra}}",
        ];
        args.extend(ids);
        let mut pids = Vec::new();
        for line in self.run(&args)?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [pid, conmon, infra] = fields[..] {
                pids.push(conmon.parse::<u32>()?);
                if infra == "true" {
                    pids.push(pid.parse::<u32>()?);
                }
            }
        }
        let r = sum_resident(&pids);
        Ok(Memory {
            pods,
            pss_kib: r.pss,
            rss_kib: r.rss,
        })
    }

    fn remove_pods(&self, grace: &str) -> Result<()> {
        self.run(&["pod", "rm", "--all", "--force", "--time", grace])?;
        Ok(())
    }

    /// Removes the pods, images and storage, and what podman leaves outside its directories.
    fn remove_everything(&self) -> Result<()> {
        let mut errors = Vec::new();
        if let Err(e) = self.remove_pods("0") {
            errors.push(e.to_string());
        }
        if let Err(e) = self.run(&["rmi", "--all", "--force"]) {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; ").into())
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(mut events) = self.events.take() {
            let _ = events.kill();
            let _ = events.wait();
        }
        unmount_under(self.root.path());
        // Podman's cgroupfs manager leaves each pod's cgroup (and their parent) behind; after a
        // failed `pod rm` their last processes may take a moment to go.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut left = false;
            for (parent, existed) in &self.cgroup_parents {
                if !parent.exists() {
                    continue;
                }
                let mut dirs: Vec<PathBuf> = Vec::new();
                collect_dirs(parent, &mut dirs);
                dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
                for dir in dirs {
                    left |= std::fs::remove_dir(&dir).is_err();
                }
                if !existed {
                    left |= std::fs::remove_dir(parent).is_err();
                }
            }
            if !left || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !self.cni_lock_existed {
            let _ = std::fs::remove_file(CNI_LOCK);
        }
    }
}

/// Every directory below `dir` (not `dir` itself).
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let path = entry.path();
                collect_dirs(&path, out);
                out.push(path);
            }
        }
    }
}

fn podman_bench(podman: &Podman, pods: usize, churn: usize) -> Result<Figures> {
    println!(
        "\n== podman kube play ({})",
        podman.run(&["--version"])?.trim()
    );
    let latencies = |make: fn(&str) -> Value, prefix: &str| -> Result<Latencies> {
        let mut latencies = Latencies::default();
        let mut returned = Latencies::default();
        for i in 0..pods {
            let pod = make(&format!("{prefix}-{i}"));
            let sent = Instant::now();
            let started = podman.play(std::slice::from_ref(&pod))?;
            returned.0.push(sent.elapsed());
            latencies
                .0
                .push(started.values().max().copied().unwrap_or(sent) - sent);
        }
        println!(
            "{prefix}: kube play → containers started {}; until kube play returned {}",
            latencies.summary(),
            returned.summary()
        );
        Ok(latencies)
    };
    // Warm-up: podman builds its infra (pause) image on first use.
    podman.play(&[two_container_pod("warm-up")])?;
    podman.remove_pods("0")?;

    let start_one = latencies(one_container_pod, "one")?;
    let memory_one = podman.overhead(pods)?;
    println!(
        "memory per pod with {pods} running: {}",
        memory_one.per_pod()
    );
    podman.remove_pods("0")?;
    let start_two = latencies(two_container_pod, "two")?;
    let memory_two = podman.overhead(pods)?;
    println!(
        "memory per pod with {pods} running: {}",
        memory_two.per_pod()
    );
    podman.remove_pods("0")?;

    let manifests: Vec<Value> = (0..churn)
        .map(|i| churn_pod(&format!("churn-{i}")))
        .collect();
    let started = Instant::now();
    podman.play(&manifests)?;
    let create = started.elapsed();
    let started = Instant::now();
    podman.remove_pods("5")?;
    let churn_figures = Churn {
        pods: churn,
        create,
        delete: started.elapsed(),
    };
    println!("churn of {churn} pods: {}", churn_figures.rates());
    Ok(Figures {
        start_one,
        start_two,
        churn: churn_figures,
        memory_one,
        memory_two,
    })
}
