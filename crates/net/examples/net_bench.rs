//! Benchmark of the bridge network (as root): network set-up and teardown time per pod for N
//! network namespaces on a bridge of its own, and TCP throughput pod to pod on that bridge
//! (iperf3) beside the host's loopback. Everything it creates is removed at the end, also when
//! it fails.
//!
//! `cargo run --release -p skiff-net --example net_bench -- [PODS]` (default 100, at most 250).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_net::{BridgeConfig, BridgeNetwork, PodNetwork, PodNetworkRequest};

/// The bench's bridge, table and namespace files; removed on drop.
struct Leftovers {
    bridge: String,
    table: String,
    namespaces: Vec<PathBuf>,
    servers: Vec<Child>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("umount")
                .arg(ns)
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = skiff_net::nft::run(&format!(
            "add table ip {t}\ndelete table ip {t}\n",
            t = self.table
        ));
    }
}

fn new_namespace(path: &Path) -> Result<(), String> {
    std::fs::write(path, "").map_err(|e| format!("{}: {e}", path.display()))?;
    let status = Command::new("unshare")
        .arg(format!("--net={}", path.display()))
        .arg("true")
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("unshare --net={} failed", path.display()))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// An iperf3 command, in namespace `netns` if given.
fn iperf(netns: Option<&Path>, args: &[&str]) -> Command {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("iperf3");
            c
        }
        None => Command::new("iperf3"),
    };
    command.args(args);
    command
}

/// Gbit/s from a client in `client_ns` to a server (already listening) at `address:port`,
/// 3 seconds; retried while the server is not listening yet.
fn throughput(client_ns: Option<&Path>, address: &str, port: u16) -> Result<f64, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = iperf(
            client_ns,
            &["-c", address, "-p", &port.to_string(), "-t", "3", "-J"],
        )
        .output()
        .map_err(|e| format!("iperf3 (apt-get install iperf3): {e}"))?;
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        if let Some(bits) = report["end"]["sum_received"]["bits_per_second"].as_f64() {
            return Ok(bits / 1e9);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "iperf3 to {address}:{port} failed: {}",
                report["error"]
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> Result<(), String> {
    let pods: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().map_err(|e| format!("PODS: {e}")))
        .transpose()?
        .unwrap_or(100)
        .clamp(2, 250);
    let id = std::process::id();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut leftovers = Leftovers {
        bridge: format!("skbench{}", id % 100_000),
        table: format!("skiff_bench_{id}"),
        namespaces: Vec::new(),
        servers: Vec::new(),
    };
    let subnet = format!("10.252.{}.0/24", id % 250);
    let network = BridgeNetwork::new(BridgeConfig {
        data_dir: dir.path().join("data"),
        bridge: leftovers.bridge.clone(),
        nft_table: leftovers.table.clone(),
        cluster_cidr: subnet.parse().map_err(|e| format!("{e}"))?,
    })
    .map_err(|e| e.to_string())?;
    for i in 0..pods {
        let path = dir.path().join(format!("ns{i}"));
        new_namespace(&path)?;
        leftovers.namespaces.push(path);
    }
    let started = Instant::now();
    network
        .configure(subnet.parse().map_err(|e| format!("{e}"))?)
        .map_err(|e| e.to_string())?;
    println!(
        "node set-up (bridge, sysctls, nftables table): {}",
        ms(started.elapsed())
    );

    // Veth names take the first 13 characters: this process's id and the pod's number.
    let ids: Vec<String> = (0..pods)
        .map(|i| format!("{:06x}{i:07x}{:019x}", id % 0xff_ffff, 0))
        .collect();
    let mut set_up = Vec::new();
    let mut addresses = Vec::new();
    for (i, ns) in leftovers.namespaces.iter().enumerate() {
        let request = PodNetworkRequest {
            sandbox_id: &ids[i],
            netns: ns,
            pod_namespace: "bench",
            pod_name: &ids[i],
            pod_uid: &ids[i],
            host_ports: Vec::new(),
        };
        let started = Instant::now();
        let status = network.set_up(&request).map_err(|e| e.to_string())?;
        set_up.push(started.elapsed());
        addresses.push(status.ips[0].to_string());
    }
    set_up.sort();
    println!(
        "pod network set-up ({pods} pods): p50 {} p99 {} max {}",
        ms(percentile(&set_up, 0.5)),
        ms(percentile(&set_up, 0.99)),
        ms(percentile(&set_up, 1.0))
    );

    // Throughput: pod 0 serves, pod 1 sends; the host's loopback beside it.
    let port = 20000 + (id % 20000) as u16;
    let server = iperf(
        Some(&leftovers.namespaces[0]),
        &["-s", "-p", &port.to_string()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map_err(|e| format!("iperf3: {e}"))?;
    leftovers.servers.push(server);
    let pod_to_pod = throughput(Some(&leftovers.namespaces[1]), &addresses[0], port)?;
    let host_to_pod = throughput(None, &addresses[0], port)?;
    let server = iperf(None, &["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3: {e}"))?;
    leftovers.servers.push(server);
    let loopback = throughput(None, "127.0.0.1", port)?;
    println!(
        "TCP throughput (iperf3, 3 s): pod to pod {pod_to_pod:.1} Gbit/s, host to pod \
         {host_to_pod:.1} Gbit/s, host loopback {loopback:.1} Gbit/s"
    );

    // The server in pod 0 holds its namespace: stop it before the removals.
    for server in &mut leftovers.servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    leftovers.servers.clear();

    // Half as the agent removes a pod (its namespace goes, then the rest is released), half
    // with the veth deleted by us (a failed set-up, the collection at start).
    let (mut release, mut tear_down) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            let started = Instant::now();
            let ns = &leftovers.namespaces[i];
            let unmounted = Command::new("umount").arg(ns).status();
            if !unmounted.is_ok_and(|s| s.success()) {
                return Err(format!("umount {}", ns.display()));
            }
            network.release(id).map_err(|e| e.to_string())?;
            release.push(started.elapsed());
        } else {
            let started = Instant::now();
            network.tear_down(id).map_err(|e| e.to_string())?;
            tear_down.push(started.elapsed());
        }
    }
    // Nothing may be left: no veth on the bridge (the kernel removes those of unmounted
    // namespaces shortly), no address, no record.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let veths = Command::new("ip")
            .args(["-o", "link", "show", "master", &leftovers.bridge])
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        let left = String::from_utf8_lossy(&veths.stdout).lines().count();
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{left} veths left on {}", leftovers.bridge));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for sub in ["net/ipam", "net/sandboxes"] {
        let path = dir.path().join("data").join(sub);
        let left = std::fs::read_dir(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .count();
        if left != 0 {
            return Err(format!("{left} files left in {}", path.display()));
        }
    }
    println!("after {pods} set-ups and removals: no veth, address or record left");
    release.sort();
    tear_down.sort();
    println!(
        "pod network removal: namespace unmounted (umount(8) included) + release p50 {} p99 {}; \
         tear_down deleting the veth p50 {} p99 {}",
        ms(percentile(&release, 0.5)),
        ms(percentile(&release, 0.99)),
        ms(percentile(&tear_down, 0.5)),
        ms(percentile(&tear_down, 0.99))
    );
    Ok(())
}
