//! Benchmark (not a test): `kubectl exec POD -- true` round trips and `kubectl exec -i POD -- cat`
//! throughput against a real `skiff server` with its node agent, beside `podman exec` of a
//! busybox container when podman is installed.
//!
//! Run as root: `SKIFF_BIN=target/release/skiff cargo run --release -p skiff-e2e --example
//! exec_bench [ROUNDS] [MIB]` (scripts/bench.sh does). kubectl is the project's
//! (.skiff-tools/bin/kubectl, or $KUBECTL).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::{import_test_images, kubectl_bin, wait_until, Cluster};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Wall times of `rounds` runs of `command()`, which must succeed; sorted.
fn time_runs(rounds: usize, mut command: impl FnMut() -> Command) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let out = command().stdin(Stdio::null()).output()?;
        times.push(started.elapsed());
        if !out.status.success() {
            return Err(format!(
                "{:?} failed: {}",
                command(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
    }
    times.sort();
    Ok(times)
}

/// Pipes `mib` MiB through `command` (a `cat` in a container) and returns MB/s (10^6 bytes).
fn throughput(mut command: Command, mib: usize) -> Result<f64> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let started = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let block = vec![b'x'; 1 << 20];
        for _ in 0..mib {
            stdin.write_all(&block)?;
        }
        Ok(())
    });
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        received += n;
    }
    let elapsed = started.elapsed();
    writer.join().map_err(|_| "the writer panicked")??;
    child.wait()?;
    if received != mib << 20 {
        return Err(format!("got {received} bytes back, not {}", mib << 20).into());
    }
    Ok((mib << 20) as f64 / elapsed.as_secs_f64() / 1e6)
}

struct Figures {
    exec: Vec<Duration>,
    mbps: f64,
}

fn skiff(rounds: usize, mib: usize, baseline_p50: Duration) -> Result<Figures> {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}"#,
    );
    wait_until(Duration::from_secs(60), "the pod Running", || {
        cluster.jsonpath(&["pod", "bench"], "{.status.phase}") == "Running"
    });
    let exec = |args: &[&str]| {
        let mut c = cluster.kubectl_command();
        c.args(["exec", "bench"]).args(args);
        c
    };
    time_runs(5, || exec(&["--", "true"]))?;
    let times = time_runs(rounds, || exec(&["--", "true"]))?;
    println!(
        "skiff: kubectl exec -- true p50 {} p99 {} ({} beyond kubectl's start-up)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(percentile(&times, 0.5).saturating_sub(baseline_p50))
    );
    let mbps = throughput(exec(&["-i", "--", "cat"]), mib)?;
    println!("skiff: kubectl exec -i -- cat, {mib} MiB: {mbps:.0} MB/s");
    cluster.kubectl_ok(["delete", "pod", "bench"]);
    Ok(Figures { exec: times, mbps })
}

/// `podman exec` of a busybox container in podman's own temporary storage (runc, cgroupfs, no
/// network); everything it made is removed before returning.
fn podman(rounds: usize, mib: usize) -> Result<Figures> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-exec-bench-podman-")
        .tempdir()?;
    std::fs::write(
        dir.path().join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
         [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
    )?;
    let images = dir.path().join("images");
    let mut build = Command::new(skiff_e2e::workspace_root().join("scripts/build-test-images.sh"));
    build.arg(&images).stdout(Stdio::null());
    if !build.status()?.success() {
        return Err("scripts/build-test-images.sh failed".into());
    }
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", dir.path().join("containers.conf"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--runroot")
            .arg(dir.path().join("runroot"))
            .arg("--tmpdir")
            .arg(dir.path().join("tmp"))
            .args(args);
        c
    };
    let run = |args: &[&str]| -> Result<()> {
        let out = podman(args).stdin(Stdio::null()).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("podman {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into())
        }
    };
    // podman's cgroupfs manager makes these parents and leaves them: removed after if new.
    let cgroup_parents: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("libpod_parent"))
                .collect()
        })
        .unwrap_or_else(|_| Vec::new())
        .into_iter()
        .filter(|p: &std::path::PathBuf| !p.exists())
        .collect();
    let tarball = images.join("busybox.tar");
    let result = (|| -> Result<Figures> {
        run(&["load", "-q", "-i", &tarball.display().to_string()])?;
        run(&[
            "run",
            "-d",
            "--name",
            "skiff-exec-bench",
            "--network",
            "none",
            "localhost/busybox:latest",
            "sleep",
            "3600",
        ])?;
        time_runs(5, || podman(&["exec", "skiff-exec-bench", "true"]))?;
        let times = time_runs(rounds, || podman(&["exec", "skiff-exec-bench", "true"]))?;
        println!(
            "podman: podman exec true p50 {} p99 {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
        let mbps = throughput(podman(&["exec", "-i", "skiff-exec-bench", "cat"]), mib)?;
        println!("podman: podman exec -i cat, {mib} MiB: {mbps:.0} MB/s");
        Ok(Figures { exec: times, mbps })
    })();
    // Whatever happened: the container, its mounts and podman's storage go.
    let _ = run(&["rm", "-f", "-t", "0", "skiff-exec-bench"]);
    let _ = run(&["system", "reset", "-f"]);
    for parent in cgroup_parents {
        // Empty by now; rmdir refuses otherwise, which is right.
        let _ = std::fs::remove_dir(parent);
    }
    result
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let baseline = time_runs(rounds, || {
        let mut c = Command::new(kubectl_bin());
        c.args(["version", "--client", "-o", "json"]);
        c
    })?;
    let baseline_p50 = percentile(&baseline, 0.5);
    println!(
        "kubectl's own start-up (version --client): p50 {}",
        ms(baseline_p50)
    );
    let ours = skiff(rounds, mib, baseline_p50)?;
    let theirs = if Command::new("podman").arg("--version").output().is_ok() {
        Some(podman(rounds, mib)?)
    } else {
        println!("podman is not installed: no comparison");
        None
    };
    println!("\n| figure | skiff (kubectl exec) | podman exec |\n|---|---|---|");
    let cell = |f: Option<&Figures>, pick: &dyn Fn(&Figures) -> String| {
        f.map_or_else(|| "-".to_string(), pick)
    };
    for (name, pick) in [
        (
            "exec `true`, p50",
            &(|f: &Figures| ms(percentile(&f.exec, 0.5))) as &dyn Fn(&Figures) -> String,
        ),
        ("exec `true`, p99", &|f: &Figures| {
            ms(percentile(&f.exec, 0.99))
        }),
        ("`cat` throughput", &|f: &Figures| {
            format!("{:.0} MB/s", f.mbps)
        }),
    ] {
        println!(
            "| {name} | {} | {} |",
            cell(Some(&ours), pick),
            cell(theirs.as_ref(), pick)
        );
    }
    println!(
        "| exec `true` p50 beyond kubectl's start-up ({}) | {} | - |",
        ms(baseline_p50),
        ms(percentile(&ours.exec, 0.5).saturating_sub(baseline_p50))
    );
    Ok(())
}
