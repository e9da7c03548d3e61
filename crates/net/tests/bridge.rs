//! The bridge network for real (needs root): two network namespaces wired to a bridge of this
//! test's own, reaching each other and the host; teardown and the collection at start leave
//! nothing behind; a network reopened (an agent restart) keeps the addresses in use.

mod common;
use common::Netns;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use skiff_net::bridge::veth_name;
use skiff_net::{BridgeConfig, BridgeNetwork, HostPort, PodNetwork, PodNetworkRequest, Protocol};

/// The test's bridge and table, removed on drop even when the test fails.
struct Names {
    bridge: String,
    table: String,
}

impl Drop for Names {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = skiff_net::nft::run(&format!(
            "add table ip {t}\ndelete table ip {t}\n",
            t = self.table
        ));
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ping(from: Option<&Netns>, to: &str) -> bool {
    let args = ["busybox", "ping", "-c", "1", "-W", "2", to];
    let output = match from {
        Some(ns) => ns.run(&args),
        None => Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run ping"),
    };
    output.status.success()
}

fn request<'a>(sandbox: &'a str, ns: &'a impl AsRef<Path>) -> PodNetworkRequest<'a> {
    PodNetworkRequest {
        sandbox_id: sandbox,
        netns: ns.as_ref(),
        pod_namespace: "default",
        pod_name: sandbox,
        pod_uid: sandbox,
        host_ports: Vec::new(),
    }
}

#[test]
fn pods_on_a_bridge_reach_each_other_and_leave_nothing_behind() {
    let id = std::process::id();
    let names = Names {
        bridge: format!("sknt{}", id % 10_000_000),
        table: format!("skiff_nt_{id}"),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let subnet = format!("10.251.{}.0/24", id % 250);
    let config = BridgeConfig {
        data_dir: dir.path().join("data"),
        bridge: names.bridge.clone(),
        nft_table: names.table.clone(),
        cluster_cidr: subnet.parse().expect("valid"),
    };
    let network = BridgeNetwork::new(config.clone()).expect("open the network");
    let first = Netns::new(dir.path(), "ns1");
    let second = Netns::new(dir.path(), "ns2");
    let (first, second) = (&first, &second);
    // Not configured yet: pods wait for the node's podCIDR.
    let early = network.set_up(&request("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", first));
    assert!(
        matches!(early, Err(skiff_net::Error::NoPodCidr)),
        "{early:?}"
    );

    network
        .configure(subnet.parse().expect("valid"))
        .expect("configure");
    let started = Instant::now();
    let a = network
        .set_up(&request("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", first))
        .expect("set up a");
    let first_time = started.elapsed();
    let mut b_request = request("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2", second);
    b_request.host_ports = vec![HostPort {
        protocol: Protocol::Tcp,
        host_port: 40000 + (id % 20000) as u16,
        container_port: 8080,
    }];
    let b = network.set_up(&b_request).expect("set up b");
    eprintln!("set-up took {first_time:?} (first pod)");
    let (a_ip, b_ip) = (a.ips[0].to_string(), b.ips[0].to_string());
    assert_ne!(a_ip, b_ip);
    assert!(
        ping(Some(first), &b_ip),
        "pod a cannot reach pod b at {b_ip}"
    );
    assert!(
        ping(Some(second), &a_ip),
        "pod b cannot reach pod a at {a_ip}"
    );
    assert!(ping(None, &a_ip), "the host cannot reach pod a at {a_ip}");
    let elements = network.table().host_port_elements().expect("list");
    assert!(elements.contains(&b_ip), "{elements}");

    // An agent restart: a new network on the same data dir keeps both addresses in use.
    let reopened = BridgeNetwork::new(config).expect("reopen");
    reopened
        .configure(subnet.parse().expect("valid"))
        .expect("configure again");
    assert!(
        ping(Some(first), &b_ip),
        "the reconfigured bridge broke pods"
    );
    let again = reopened
        .set_up(&request("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", first))
        .expect("set up a again");
    assert_eq!(again.ips, a.ips, "a sandbox keeps its address");
    let third = &Netns::new(dir.path(), "ns3");
    let c = reopened
        .set_up(&request("ccccccccccccccccccccccccccccccc3", third))
        .expect("set up c");
    assert!(!c.ips.contains(&a.ips[0]) && !c.ips.contains(&b.ips[0]));

    // A pod removed as the agent does: its namespace goes first, then the network releases
    // the rest; the kernel removes the veth pair with the namespace.
    let fourth = Netns::new(dir.path(), "ns4");
    reopened
        .set_up(&request("ddddddddddddddddddddddddddddddd4", &fourth))
        .expect("set up d");
    let d_veth = veth_name("ddddddddddddddddddddddddddddddd4");
    assert!(link_exists(&d_veth));
    drop(fourth);
    reopened
        .release("ddddddddddddddddddddddddddddddd4")
        .expect("release d");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while link_exists(&d_veth) {
        assert!(
            Instant::now() < deadline,
            "{d_veth} outlived its namespace: something holds the namespace"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The collection at start removes everything of sandboxes that are gone.
    reopened
        .collect_garbage(&HashSet::from([
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1".to_string()
        ]))
        .expect("collect");
    assert!(link_exists(&veth_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1")));
    assert!(!link_exists(&veth_name("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2")));
    assert!(!link_exists(&veth_name("ccccccccccccccccccccccccccccccc3")));
    let elements = reopened.table().host_port_elements().expect("list");
    assert!(
        !elements.contains(&b_ip),
        "hostPort left behind: {elements}"
    );
    reopened
        .tear_down("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1")
        .expect("tear down a");
    reopened
        .tear_down("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1")
        .expect("teardown is idempotent");
    assert!(!link_exists(&veth_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1")));
    let ipam = dir.path().join("data/net/ipam");
    let left: Vec<_> = std::fs::read_dir(&ipam)
        .expect("ipam dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "addresses left allocated: {left:?}");
    let records = std::fs::read_dir(dir.path().join("data/net/sandboxes"))
        .expect("records")
        .count();
    assert_eq!(records, 0);
    drop(names);
}

#[test]
fn pods_wait_with_the_reason_when_the_node_network_cannot_be_set_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let network = BridgeNetwork::new(BridgeConfig {
        data_dir: dir.path().to_path_buf(),
        // Longer than an interface name may be: the kernel refuses the bridge.
        bridge: "skiff-bridge-name-too-long".to_string(),
        nft_table: format!("skiff_nt_bad_{}", std::process::id()),
        cluster_cidr: "10.251.0.0/16".parse().expect("valid"),
    })
    .expect("open");
    let error = network
        .configure("10.251.0.0/24".parse().expect("valid"))
        .expect_err("no such bridge name");
    let netns = dir.path().join("no-namespace");
    let result = network.set_up(&request("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeee5", &netns));
    match result {
        Err(skiff_net::Error::NotConfigured(reason)) => {
            assert_eq!(reason, error.to_string())
        }
        other => panic!("expected NotConfigured, got {other:?}"),
    }
    assert!(!link_exists("skiff-bridge-name-too-long"));
}
