//! Benchmark (not a test): what probes cost the node. PODS busybox pods, each with an exec
//! readiness probe and an httpGet liveness probe every second, run on a real `skiff server`
//! with its agent; once all are ready, the CPU time (utime+stime from /proc) of every skiff
//! process of that server is read over SECONDS and printed as % of one core: the server
//! itself, the children it reaped, its launcher (which starts the exec probes' commands) and
//! the commands the launcher reaped (the probe commands themselves, with their entry into the
//! container), and the containers' monitors. `--no-probes` runs the same pods without probes,
//! the baseline. Target: the probes under 5% of one core for 100 pods. At the end it measures
//! the floor of an exec probe's command: what a fork and exec of busybox `/bin/true` costs
//! inside a container, run by a shell there.
//!
//! Run as root on a quiet machine: `SKIFF_BIN=target/release/skiff cargo run --release -p
//! skiff-e2e --example probe_bench [PODS] [SECONDS] [--no-probes|--exec-only|--http-only]`
//! (scripts/bench.sh does; the last two split the cost between the two kinds of probe).

use std::time::{Duration, Instant};

use skiff_e2e::{import_test_images, wait_until, Cluster};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// (own, children) CPU time of process `pid` in clock ticks: utime+stime, cutime+cstime.
fn cpu_ticks(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').ok_or("malformed /proc/PID/stat")? + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .collect();
    // After the name: state is field 3, so utime (14) is index 11 here.
    let get = |i: usize| fields.get(i).copied().ok_or("short /proc/PID/stat");
    Ok((get(11)? + get(12)?, get(13)? + get(14)?))
}

/// Every process whose working directory is under `dir` and whose name is `comm`: the
/// monitors of a data directory's containers work in their container directories.
fn processes_named_under(comm: &str, dir: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                && std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// The children of process `parent` named `comm`.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rfind(')').is_some_and(|at| {
                        stat[at + 2..].split(' ').nth(1) == Some(&parent.to_string())
                    })
                })
        })
        .collect()
}

/// CPU ticks of the server's processes: (server, its reaped children, launcher, the
/// launcher's reaped children, monitors with theirs).
#[derive(Clone, Copy, Debug, Default)]
struct Ticks {
    server: u64,
    server_children: u64,
    launcher: u64,
    launcher_children: u64,
    monitors: u64,
}

fn sample(server: u32, launchers: &[u32], monitors: &[u32]) -> Result<Ticks> {
    let (own, children) = cpu_ticks(server)?;
    let mut ticks = Ticks {
        server: own,
        server_children: children,
        ..Ticks::default()
    };
    for pid in launchers {
        let (own, children) = cpu_ticks(*pid)?;
        ticks.launcher += own;
        ticks.launcher_children += children;
    }
    for pid in monitors {
        let (own, children) = cpu_ticks(*pid)?;
        ticks.monitors += own + children;
    }
    Ok(ticks)
}

/// CPU seconds (user + sys) that busybox `time` printed (`user 0m 0.01s`, `sys 0m 0.08s`).
fn busybox_time_cpu(text: &str) -> Option<f64> {
    let seconds = |line: &str| -> Option<f64> {
        let rest = line.split_whitespace().skip(1).collect::<Vec<_>>();
        let minutes: f64 = rest.first()?.trim_end_matches('m').parse().ok()?;
        let secs: f64 = rest.get(1)?.trim_end_matches('s').parse().ok()?;
        Some(minutes * 60.0 + secs)
    };
    let user = text
        .lines()
        .find(|l| l.starts_with("user"))
        .and_then(seconds)?;
    let sys = text
        .lines()
        .find(|l| l.starts_with("sys"))
        .and_then(seconds)?;
    Some(user + sys)
}

fn ticks_per_second() -> f64 {
    // getconf CLK_TCK; 100 on every Linux this runs on.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Which probes each pod gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probes {
    None,
    Both,
    ExecOnly,
    HttpOnly,
}

fn pod_manifest(i: usize, probes: Probes) -> serde_json::Value {
    let mut container = serde_json::json!({
        "name": "main",
        "image": "busybox",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
        "ports": [{"name": "http", "containerPort": 8080}],
    });
    if matches!(probes, Probes::Both | Probes::ExecOnly) {
        container["readinessProbe"] = serde_json::json!({
            "exec": {"command": ["true"]}, "periodSeconds": 1,
        });
    }
    if matches!(probes, Probes::Both | Probes::HttpOnly) {
        container["livenessProbe"] = serde_json::json!({
            "httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1,
        });
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("probe-{i:03}"), "labels": {"bench": "probes"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let probes = if flag("--no-probes") {
        Probes::None
    } else if flag("--exec-only") {
        Probes::ExecOnly
    } else if flag("--http-only") {
        Probes::HttpOnly
    } else {
        Probes::Both
    };
    let numbers: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let pods: usize = numbers
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100);
    let seconds: u64 = numbers.get(1).map(|a| a.parse()).transpose()?.unwrap_or(60);

    let cluster = Cluster::start_with_agent(import_test_images);
    // One kubectl call: the pods as a stream of JSON documents.
    let documents: Vec<String> = (0..pods)
        .map(|i| pod_manifest(i, probes).to_string())
        .collect();
    cluster.create_from(&documents.join("\n---\n"));
    wait_until(Duration::from_secs(600), "every pod ready", || {
        let ready = cluster.kubectl_ok([
            "get",
            "pods",
            "-l",
            "bench=probes",
            "-o",
            "jsonpath={.items[*].status.containerStatuses[0].ready}",
        ]);
        ready.split_whitespace().filter(|r| *r == "true").count() == pods
    });
    let pid = cluster.server_pid();
    // Let start-up work settle (the status writes after the last pod got ready); then the
    // measuring window. Both are durations measured, not waits for a condition.
    std::thread::sleep(Duration::from_secs(5));
    let launchers = children_named(pid, "skiff-launcher");
    let monitors = processes_named_under("skiff-monitor", cluster.data_dir());
    let before = sample(pid, &launchers, &monitors)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = sample(pid, &launchers, &monitors)?;
    let elapsed = started.elapsed().as_secs_f64();
    let hz = ticks_per_second();
    let percent = |ticks: u64| ticks as f64 / hz / elapsed * 100.0;
    let server = percent(after.server - before.server);
    let server_children = percent(after.server_children - before.server_children);
    let launcher = percent(after.launcher - before.launcher);
    let commands = percent(after.launcher_children - before.launcher_children);
    let monitor_cpu = percent(after.monitors - before.monitors);
    let total = server + server_children + launcher + commands + monitor_cpu;
    println!(
        "{pods} pods{}, {elapsed:.0} s, % of one core (utime+stime): skiff server {server:.1}%, \
         its reaped children {server_children:.1}%, launcher {launcher:.1}%, the commands it \
         started and reaped {commands:.1}%, {} monitors {monitor_cpu:.1}%; together {total:.1}%",
        match probes {
            Probes::Both => " with a 1 s exec and a 1 s httpGet probe each",
            Probes::ExecOnly => " with a 1 s exec probe each",
            Probes::HttpOnly => " with a 1 s httpGet probe each",
            Probes::None => " without probes",
        },
        monitors.len(),
    );
    if launchers.len() != 1 {
        println!("note: {} launcher processes found", launchers.len());
    }
    // The floor of an exec probe's command: busybox sh in a container forking and executing
    // /bin/true (what the probe's own process costs once it is in the container).
    const RUNS: u32 = 500;
    let script =
        format!("time sh -c 'i=0; while [ $i -lt {RUNS} ]; do /bin/true; i=$((i+1)); done' 2>&1");
    let output = cluster.kubectl(["exec", "probe-000", "--", "sh", "-c", &script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match busybox_time_cpu(&text) {
        Some(cpu) => println!(
            "floor: fork+exec of /bin/true by a shell inside a container: {:.3} ms of CPU each \
             ({RUNS} runs), {:.1}% of one core at {pods} per second",
            cpu / f64::from(RUNS) * 1000.0,
            cpu / f64::from(RUNS) * pods as f64 * 100.0
        ),
        None => println!("floor: not measured: {}", text.trim()),
    }
    let restarts = cluster.kubectl_ok([
        "get",
        "pods",
        "-l",
        "bench=probes",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].restartCount}",
    ]);
    let restarted = restarts.split_whitespace().filter(|r| *r != "0").count();
    if restarted > 0 {
        println!("warning: {restarted} pods were restarted by their liveness probe");
    }
    cluster.kubectl_ok(["delete", "pods", "-l", "bench=probes", "--wait=true"]);
    Ok(())
}
