//! Benchmark (not a test): what probes cost the node. PODS busybox pods, each with an exec
//! readiness probe and an httpGet liveness probe every second, run on a real `skiff server`
//! with its agent; once all are ready, the server process's CPU time (utime+stime from
//! /proc, and apart from it the reaped children's: the `skiff internal exec` of each exec
//! probe) is read over SECONDS and printed as % of one core. `--no-probes` runs the same pods
//! without probes, the baseline. Target: the probes under 5% of one core for 100 pods.
//!
//! Run as root on a quiet machine: `SKIFF_BIN=target/release/skiff cargo run --release -p
//! skiff-e2e --example probe_bench [PODS] [SECONDS] [--no-probes]` (scripts/bench.sh does).

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

fn pod_manifest(i: usize, probes: bool) -> serde_json::Value {
    let mut container = serde_json::json!({
        "name": "main",
        "image": "busybox",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
        "ports": [{"name": "http", "containerPort": 8080}],
    });
    if probes {
        container["readinessProbe"] = serde_json::json!({
            "exec": {"command": ["true"]}, "periodSeconds": 1,
        });
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
    let probes = !args.iter().any(|a| a == "--no-probes");
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
    let (own0, children0) = cpu_ticks(pid)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (own1, children1) = cpu_ticks(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    let hz = ticks_per_second();
    let percent = |ticks: u64| ticks as f64 / hz / elapsed * 100.0;
    let own = percent(own1 - own0);
    let children = percent(children1 - children0);
    println!(
        "{pods} pods{}, {elapsed:.0} s: skiff server {own:.1}% of one core (utime+stime), \
         reaped children {children:.1}%, together {:.1}%",
        if probes {
            " with a 1 s exec and a 1 s httpGet probe each"
        } else {
            " without probes"
        },
        own + children
    );
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
