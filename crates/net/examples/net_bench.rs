//! Benchmark of the bridge network (as root): network set-up and teardown time per pod for N
//! network namespaces on a bridge of its own, and TCP throughput (iperf3) pod to pod on that
//! bridge, pod to pod across two nodes, and the host's loopback. Everything it creates is
//! removed at the end, also when it fails.
//!
//! Across nodes: two network namespaces act as hosts, joined by a bridge of the bench in the
//! host's namespace (a veth each); each runs a [`BridgeNetwork`] with one pod and the route to
//! the other's pod subnet, set by the agent's own code ([`HostRoutes::sync`]).
//!
//! `cargo run --release -p skiff-net --example net_bench -- [PODS]` (default 100, at most 250).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_net::routes::{HostRoutes, NodeRoute};
use skiff_net::{BridgeConfig, BridgeNetwork, Ipv4Cidr, PodNetwork, PodNetworkRequest};

/// The bench's bridge, table and namespace files; removed on drop.
struct Leftovers {
    bridge: String,
    table: String,
    namespaces: Vec<PathBuf>,
    servers: Vec<Child>,
    /// Links in the host's namespace (the two-node part's bridge and veths).
    links: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        for link in &self.links {
            let _ = Command::new("ip")
                .args(["link", "del", link])
                .stderr(Stdio::null())
                .status();
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
        links: Vec::new(),
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
    let across = across_nodes(dir.path(), id, port + 1)?;
    println!(
        "TCP throughput (iperf3, 3 s): pod to pod across two nodes (host-gateway route over a \
         veth-bridge-veth link) {across:.1} Gbit/s"
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

/// One node of the two-node part: its host namespace, address and pod subnet.
struct BenchNode {
    host_ns: PathBuf,
    pod_ns: PathBuf,
    address: std::net::Ipv4Addr,
    pod_subnet: Ipv4Cidr,
}

/// In a thread moved into `node.host_ns` (as the agent runs on its host): the node's bridge
/// network with one pod, and the route to `other`'s pod subnet via `other`'s address, set by
/// [`HostRoutes::sync`]. Returns the pod's address.
fn set_up_node(
    data_dir: PathBuf,
    bridge: String,
    cluster: Ipv4Cidr,
    node: &BenchNode,
    other: &BenchNode,
) -> Result<String, String> {
    let (host_ns, pod_ns) = (node.host_ns.clone(), node.pod_ns.clone());
    let (subnet, route) = (
        node.pod_subnet,
        NodeRoute {
            node: "other".to_string(),
            pod_cidr: other.pod_subnet,
            via: other.address,
        },
    );
    std::thread::spawn(move || -> Result<String, String> {
        let ns =
            std::fs::File::open(&host_ns).map_err(|e| format!("{}: {e}", host_ns.display()))?;
        // This thread stays in the node's namespace until it ends; nft and the sysctls of the
        // network's configure act there too (they follow the calling thread's namespace).
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("setns {}: {e}", host_ns.display()))?;
        let network = BridgeNetwork::new(BridgeConfig {
            data_dir,
            bridge,
            nft_table: "skiff_bench".to_string(),
            cluster_cidr: cluster,
        })
        .map_err(|e| e.to_string())?;
        network.configure(subnet).map_err(|e| e.to_string())?;
        let id = format!("{:032x}", 1);
        let status = network
            .set_up(&PodNetworkRequest {
                sandbox_id: &id,
                netns: &pod_ns,
                pod_namespace: "bench",
                pod_name: "across",
                pod_uid: &id,
                host_ports: Vec::new(),
            })
            .map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let report = runtime.block_on(async {
            let routes = HostRoutes::connect(cluster).map_err(|e| e.to_string())?;
            routes.sync(&[route]).await.map_err(|e| e.to_string())
        })?;
        if report.added.len() != 1 {
            return Err(format!(
                "the route to the other node was not set: {report:?}"
            ));
        }
        Ok(status.ips[0].to_string())
    })
    .join()
    .map_err(|_| "the node's set-up thread panicked".to_string())?
}

/// Runs `ip ARGS` (in namespace file `netns` if given).
fn ip(netns: Option<&Path>, args: &[&str]) -> Result<(), String> {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let status = command
        .args(args)
        .status()
        .map_err(|e| format!("ip: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip {} failed", args.join(" ")))
    }
}

/// Pod-to-pod TCP throughput across two nodes, Gbit/s.
fn across_nodes(dir: &Path, id: u32, port: u16) -> Result<f64, String> {
    let tag = id % 100_000;
    // The two hosts, their pods and the link between them; removed on drop.
    let mut two = Leftovers {
        bridge: format!("skbh{tag}"),
        // Each node's table is in its own namespace and goes with it.
        table: format!("skiff_bench_hosts_{id}"),
        namespaces: Vec::new(),
        servers: Vec::new(),
        links: Vec::new(),
    };
    let octet = id % 250;
    let cluster: Ipv4Cidr = format!("10.251.{octet}.0/24")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut nodes = Vec::new();
    for n in 0..2u8 {
        let (host_ns, pod_ns) = (
            dir.join(format!("host{n}")),
            dir.join(format!("host{n}-pod")),
        );
        new_namespace(&host_ns)?;
        two.namespaces.push(host_ns.clone());
        new_namespace(&pod_ns)?;
        two.namespaces.push(pod_ns.clone());
        nodes.push(BenchNode {
            host_ns,
            pod_ns,
            address: std::net::Ipv4Addr::new(10, 250, octet as u8, 10 + n),
            pod_subnet: cluster
                .subnet(25, u64::from(n))
                .ok_or("no /25 in the cluster CIDR")?,
        });
    }
    ip(None, &["link", "add", &two.bridge, "type", "bridge"])?;
    ip(None, &["link", "set", &two.bridge, "up"])?;
    two.links.push(two.bridge.clone());
    for (n, node) in nodes.iter().enumerate() {
        let veth = format!("skbh{tag}v{n}");
        ip(
            None,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "host0",
            ],
        )?;
        two.links.push(veth.clone());
        ip(
            None,
            &[
                "link",
                "set",
                "host0",
                "netns",
                &node.host_ns.display().to_string(),
            ],
        )?;
        ip(None, &["link", "set", &veth, "master", &two.bridge, "up"])?;
        ip(
            Some(&node.host_ns),
            &[
                "addr",
                "add",
                &format!("{}/24", node.address),
                "dev",
                "host0",
            ],
        )?;
        ip(Some(&node.host_ns), &["link", "set", "host0", "up"])?;
        ip(Some(&node.host_ns), &["link", "set", "lo", "up"])?;
    }
    let mut addresses = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let other = &nodes[1 - n];
        let address = set_up_node(
            dir.join(format!("host{n}-data")),
            "skiff0".to_string(),
            cluster,
            node,
            other,
        )?;
        addresses.push(address);
    }
    let server = iperf(Some(&nodes[1].pod_ns), &["-s", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3: {e}"))?;
    two.servers.push(server);
    let gbits = throughput(Some(&nodes[0].pod_ns), &addresses[1], port)?;
    drop(two);
    Ok(gbits)
}
