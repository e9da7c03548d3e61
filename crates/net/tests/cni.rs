//! CNI mode for real (needs root and Debian's reference plugins in /usr/lib/cni): a network
//! namespace wired by bridge + host-local + loopback, CHECK passing and then failing once the
//! pod's address is gone, DEL leaving nothing; the collection DELs a sandbox whose namespace
//! went; a plugin that hangs is killed at the timeout.

mod common;
use common::Netns;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_net::{CniConfig, CniNetwork, PodNetwork, PodNetworkRequest};

const CNI_BIN: &str = "/usr/lib/cni";

/// The test's bridge and host-local state, removed on drop even when the test fails.
struct Names {
    network: String,
    bridge: String,
}

impl Drop for Names {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&self.network));
        // Only if empty: other networks' state stays.
        let _ = std::fs::remove_dir("/var/lib/cni/networks");
        let _ = std::fs::remove_dir("/var/lib/cni");
    }
}

impl Names {
    fn leases(&self) -> Vec<String> {
        std::fs::read_dir(Path::new("/var/lib/cni/networks").join(&self.network))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default()
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

fn request<'a>(sandbox: &'a str, ns: &'a Netns) -> PodNetworkRequest<'a> {
    PodNetworkRequest {
        sandbox_id: sandbox,
        netns: &ns.path,
        pod_namespace: "default",
        pod_name: sandbox,
        pod_uid: sandbox,
        host_ports: Vec::new(),
    }
}

/// The network of test `tag` (tests of one process run at once: names and subnets differ).
fn setup(tag: u32, conf: &str) -> (tempfile::TempDir, Names, CniNetwork) {
    let id = std::process::id();
    let names = Names {
        network: format!("skiff-nt-cni-{id}-{tag}"),
        bridge: format!("skcnt{}{tag}", id % 1_000_000),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let conf_dir = dir.path().join("conf");
    std::fs::create_dir_all(&conf_dir).expect("conf dir");
    let subnet = format!("10.252.{}.0/24", (id * 3 + tag) % 250);
    let conf = conf
        .replace("NETWORK", &names.network)
        .replace("BRIDGE", &names.bridge)
        .replace("SUBNET", &subnet);
    std::fs::write(conf_dir.join("10-test.conflist"), conf).expect("write the conflist");
    let network = CniNetwork::new(CniConfig {
        data_dir: dir.path().join("data"),
        conf_dir,
        bin_dirs: vec![PathBuf::from(CNI_BIN), dir.path().join("bin")],
        plugin_timeout: Duration::from_secs(2),
    })
    .expect("open the network");
    (dir, names, network)
}

const CONFLIST: &str = r#"{"cniVersion": "1.0.0", "name": "NETWORK", "plugins": [
    {"type": "bridge", "bridge": "BRIDGE", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "SUBNET"}]]}},
    {"type": "loopback"}
]}"#;

#[test]
fn add_check_del_with_the_reference_plugins_leave_nothing_behind() {
    let (dir, names, network) = setup(1, CONFLIST);
    let ns = Netns::new(dir.path(), "ns1");
    let status = network.set_up(&request("cnitest1", &ns)).expect("CNI ADD");
    assert_eq!(status.ips.len(), 1, "{status:?}");
    let ip = status.ips[0].to_string();
    assert!(ip.starts_with("10.252."), "{ip}");
    assert_eq!(names.leases(), vec![ip.clone()]);
    let shown = ns.run(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!("inet {ip}/24")),
        "{shown:?}"
    );

    network.check("cnitest1").expect("CHECK of a healthy pod");
    // The pod's address goes: the bridge plugin's CHECK says so.
    let flushed = ns.run(&["ip", "addr", "flush", "dev", "eth0"]);
    assert!(flushed.status.success(), "{flushed:?}");
    let error = network
        .check("cnitest1")
        .expect_err("CHECK of a broken pod")
        .to_string();
    assert!(
        error.contains("CNI plugin bridge failed on CHECK"),
        "{error}"
    );

    network.tear_down("cnitest1").expect("CNI DEL");
    assert!(names.leases().is_empty(), "{:?}", names.leases());
    let links = ns.run(&["ip", "-o", "link"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("eth0"),
        "{links:?}"
    );
    assert!(std::fs::read_dir(network.cache_dir())
        .expect("cache dir")
        .next()
        .is_none());
    assert!(link_exists(&names.bridge));
}

#[test]
fn the_collection_deletes_sandboxes_whose_namespace_went() {
    let (dir, names, network) = setup(2, CONFLIST);
    let ns = Netns::new(dir.path(), "ns1");
    network.set_up(&request("cnitest2", &ns)).expect("CNI ADD");
    assert_eq!(names.leases().len(), 1);
    // The namespace goes (a sandbox removed while the agent was down), the file stays.
    ns.unmount();
    network
        .collect_garbage(&HashSet::new())
        .expect("collection");
    assert!(names.leases().is_empty(), "{:?}", names.leases());
    assert!(std::fs::read_dir(network.cache_dir())
        .expect("cache dir")
        .next()
        .is_none());
}

#[test]
fn a_plugin_that_hangs_is_killed_at_the_timeout() {
    let (dir, _names, network) = setup(
        3,
        r#"{"cniVersion": "1.0.0", "name": "NETWORK", "plugins": [{"type": "hang"}]}"#,
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let plugin = bin.join("hang");
    std::fs::write(&plugin, "#!/bin/sh\nexec sleep 600\n").expect("write the plugin");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&plugin)
        .status()
        .expect("chmod");
    assert!(status.success());
    let ns = Netns::new(dir.path(), "ns1");
    let started = Instant::now();
    let error = network
        .set_up(&request("cnitest3", &ns))
        .expect_err("times out")
        .to_string();
    // ADD and the DEL after it, 2 s each.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.contains("CNI plugin hang failed on ADD: did not finish within 2 s"),
        "{error}"
    );
}
