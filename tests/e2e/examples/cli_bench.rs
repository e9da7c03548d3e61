//! Benchmark (not a test): `skiff get po` beside the real `kubectl get po`, on the same
//! `skiff server` holding 100 pods (no agent: they stay Pending, which is all `get` needs),
//! run alternately, p50 and p90 of 30 each.
//!
//! `SKIFF_BIN=target/release/skiff cargo run --release -p skiff-e2e --example cli_bench
//! [PODS] [ROUNDS]` (scripts/bench.sh does). kubectl is the project's
//! (.skiff-tools/bin/kubectl, or $KUBECTL).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::Cluster;

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
    real.sort();
    ours.sort();
    let (real50, ours50) = (percentile(&real, 0.5), percentile(&ours, 0.5));
    println!("get po, {pods} pods, {rounds} runs each, alternating:");
    println!(
        "  kubectl get po: p50 {}  p90 {}",
        ms(real50),
        ms(percentile(&real, 0.9))
    );
    println!(
        "  skiff get po:   p50 {}  p90 {}",
        ms(ours50),
        ms(percentile(&ours, 0.9))
    );
    println!(
        "  skiff is {:.1}x faster at p50 (target: at least 5x)",
        real50.as_secs_f64() / ours50.as_secs_f64()
    );
    Ok(())
}
