//! Benchmark (not a test): `skiff get po` beside the real `kubectl get po`, on the same
//! `skiff server` holding 100 pods (no agent: they stay Pending, which is all `get` needs),
//! run alternately, p50 and p90 of 30 each; then `skiff exec POD -- true` beside
//! `kubectl exec POD -- true` on a server with its agent (one running busybox pod), alternately.
//!
//! `SKIFF_BIN=target/release/skiff cargo run --release -p skiff-e2e --example cli_bench
//! [PODS] [ROUNDS]` (scripts/bench.sh does). kubectl is the project's
//! (.skiff-tools/bin/kubectl, or $KUBECTL).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::{import_test_images, wait_until, Cluster};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs `command` once, checks it printed `lines` lines, and returns its wall time.
fn timed(mut command: Command, lines: usize) -> Result<Duration> {
    let started = Instant::now();
    let out = command.stdin(Stdio::null()).output()?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let printed = out.stdout.iter().filter(|&&b| b == b'\n').count();
    if printed != lines {
        return Err(format!("{command:?} printed {printed} lines, not {lines}").into());
    }
    Ok(elapsed)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(30);
    get_po(pods, rounds)?;
    exec_true(rounds)
}

/// Prints the p50 and p90 of both, and how many times faster skiff is at p50.
fn report(what: &str, mut real: Vec<Duration>, mut ours: Vec<Duration>) -> (Duration, Duration) {
    real.sort();
    ours.sort();
    let (real50, ours50) = (percentile(&real, 0.5), percentile(&ours, 0.5));
    println!(
        "  kubectl {what}: p50 {}  p90 {}",
        ms(real50),
        ms(percentile(&real, 0.9))
    );
    println!(
        "  skiff {what}:   p50 {}  p90 {}",
        ms(ours50),
        ms(percentile(&ours, 0.9))
    );
    (real50, ours50)
}

/// `exec POD -- true` through both, alternately, on one running pod.
fn exec_true(rounds: usize) -> Result<()> {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench-exec"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}"#,
    );
    wait_until(Duration::from_secs(60), "bench-exec Running", || {
        cluster.jsonpath(&["pod", "bench-exec"], "{.status.phase}") == "Running"
    });
    let command = |mut command: Command| {
        command.args(["exec", "bench-exec", "--", "true"]);
        command
    };
    for _ in 0..3 {
        timed(command(cluster.kubectl_command()), 0)?;
        timed(command(cluster.skiff_kubectl_command()), 0)?;
    }
    let (mut real, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        real.push(timed(command(cluster.kubectl_command()), 0)?);
        ours.push(timed(command(cluster.skiff_kubectl_command()), 0)?);
    }
    println!("exec POD -- true, {rounds} runs each, alternating:");
    let (real50, ours50) = report("exec -- true", real, ours);
    println!(
        "  skiff is {:.1}x faster at p50",
        real50.as_secs_f64() / ours50.as_secs_f64()
    );
    Ok(())
}

/// `get po` through both, alternately, on a server holding `pods` pods.
fn get_po(pods: usize, rounds: usize) -> Result<()> {
    let cluster = Cluster::start();
    let mut manifest = String::new();
    for i in 0..pods {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bench-{i}\n  labels:\n    app: bench\n\
             spec:\n  containers:\n  - name: main\n    image: busybox:1.36\n"
        ));
    }
    cluster.create_from(&manifest);
    let kubectl = || {
        let mut command = cluster.kubectl_command();
        command.args(["get", "po"]);
        command
    };
    let skiff = || {
        let mut command = cluster.skiff_kubectl_command();
        command.args(["get", "po"]);
        command
    };
    // Warm-ups: kubectl fills its discovery cache, both warm the page cache.
    for _ in 0..3 {
        timed(kubectl(), pods + 1)?;
        timed(skiff(), pods + 1)?;
    }
    let (mut real, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        real.push(timed(kubectl(), pods + 1)?);
        ours.push(timed(skiff(), pods + 1)?);
    }
    println!("get po, {pods} pods, {rounds} runs each, alternating:");
    let (real50, ours50) = report("get po", real, ours);
    println!(
        "  skiff is {:.1}x faster at p50 (target: at least 5x)",
        real50.as_secs_f64() / ours50.as_secs_f64()
    );
    Ok(())
}
