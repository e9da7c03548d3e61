//! CNI mode with Debian's reference plugins (bridge, host-local, loopback, portmap from
//! /usr/lib/cni): the same connectivity as the built-in network (pods reach each other and the
//! host reaches them by pod IP, two containers of a pod share its IP, a hostPort answers on the
//! node's address through portmap), nothing left when pods go (veth, host-local lease, portmap
//! rules, cache), DEL from the cache after an agent restart and a change of the conf dir, and
//! clear errors for a broken configuration or plugin.
//!
//! Each test has its own bridge, network name and subnet (`skcni<slot>`, `skiff-e2e-cni-<slot>`,
//! `10.243.<slot>.0/24`, from a slot of the harness's lock scheme); the guard removes them, the
//! host-local state dir and the network's iptables rules even when the test fails.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_e2e::pod_network::{
    address_inside, client_pod, entries, fetch, pod_ip, wait_running, web_pod,
};
use skiff_e2e::{import_test_images, wait_until, Cluster, TestNetwork};

const WAIT: Duration = Duration::from_secs(60);
const CNI_BIN: &str = "/usr/lib/cni";

/// A CNI network of this test's own: its conf dir and names.
struct CniNet {
    slot: TestNetwork,
    /// Held shared while the test runs: the last test to finish removes portmap's chains that
    /// every portmap network shares (see [`remove_shared_portmap_state`]).
    shared: Option<std::fs::File>,
    conf_dir: tempfile::TempDir,
    name: String,
    bridge: String,
    subnet: String,
}

impl CniNet {
    fn new() -> CniNet {
        let slot = TestNetwork::claim();
        let shared = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(SHARED_LOCK)
            .expect("open the CNI tests' lock");
        shared.lock_shared().expect("lock the CNI tests' lock");
        let net = CniNet {
            shared: Some(shared),
            name: format!("skiff-e2e-cni-{}", slot.slot),
            bridge: format!("skcni{}", slot.slot),
            subnet: format!("10.243.{}.0/24", slot.slot),
            conf_dir: tempfile::tempdir().expect("temp dir"),
            slot,
        };
        // Left by a test process that was killed: the slot is ours now.
        net.remove();
        std::fs::write(net.conf_dir.path().join("10-pods.conflist"), net.conflist())
            .expect("write the conflist");
        net
    }

    fn conflist(&self) -> String {
        format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{name}",
  "plugins": [
    {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false,
      "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]],
               "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
    {{"type": "loopback"}},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}"#,
            name = self.name,
            bridge = self.bridge,
            subnet = self.subnet
        )
    }

    /// The `skiff server` flags of CNI mode.
    fn args(&self) -> Vec<String> {
        vec![
            "--cni-conf-dir".to_string(),
            self.conf_dir.path().display().to_string(),
            "--cni-bin-dir".to_string(),
            CNI_BIN.to_string(),
        ]
    }

    /// host-local's state dir of the network.
    fn leases_dir(&self) -> PathBuf {
        Path::new("/var/lib/cni/networks").join(&self.name)
    }

    /// Addresses host-local holds (its files but its lock and last-reserved marker).
    fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.leases_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The host ends of veths on the network's bridge.
    fn veths(&self) -> Vec<String> {
        skiff_e2e::bridge_ports(&self.bridge)
    }

    /// The nat table's rules that portmap made for this network (their comments name it).
    fn portmap_rules(&self) -> Vec<String> {
        let output = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S"])
            .output()
            .expect("run iptables");
        let quoted = format!("\\\"{}\\\"", self.name);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.contains(&quoted))
            .map(str::to_string)
            .collect()
    }

    /// Removes the bridge, host-local's state and portmap's rules and chains of this network.
    fn remove(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(self.leases_dir());
        for rule in self.portmap_rules() {
            // `-A CHAIN ...` as iptables prints it, quoted for a shell.
            let Some(rest) = rule.strip_prefix("-A ") else {
                continue;
            };
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -w -t nat -D {rest}"))
                .stderr(Stdio::null())
                .status();
            let target = rest.split(" -j ").nth(1).unwrap_or_default().trim();
            if target.starts_with("CNI-DN-") {
                for flag in ["-F", "-X"] {
                    let _ = Command::new("iptables")
                        .args(["-w", "-t", "nat", flag, target])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

impl Drop for CniNet {
    fn drop(&mut self) {
        self.remove();
        drop(self.shared.take());
        // No other CNI test runs (none holds the lock shared): the shared state can go.
        if let Ok(lock) = std::fs::File::open(SHARED_LOCK) {
            if lock.try_lock().is_ok() {
                remove_shared_portmap_state();
            }
        }
    }
}

/// Held shared by every running CNI test (the harness's slot locks live beside it).
const SHARED_LOCK: &str = "/tmp/skiff-e2e-net/cni.lock";

/// Removes what portmap makes once for every network on the host (its top chains and the
/// jumps to them) and host-local's empty state dirs, if no mapping of anyone's is left.
fn remove_shared_portmap_state() {
    let iptables = |args: &[&str]| {
        Command::new("iptables")
            .args(["-w", "-t", "nat"])
            .args(args)
            .stderr(Stdio::null())
            .output()
    };
    let in_use = iptables(&["-S", "CNI-HOSTPORT-DNAT"]).is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("-A "))
    });
    if !in_use {
        for chain in ["PREROUTING", "OUTPUT"] {
            let _ = iptables(&[
                "-D",
                chain,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-j",
                "CNI-HOSTPORT-DNAT",
            ]);
        }
        let _ = iptables(&[
            "-D",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "CNI portfwd requiring masquerade",
            "-j",
            "CNI-HOSTPORT-MASQ",
        ]);
        for chain in [
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-MASQ",
            "CNI-HOSTPORT-SETMARK",
        ] {
            let _ = iptables(&["-F", chain]);
            let _ = iptables(&["-X", chain]);
        }
    }
    // Only if empty: another network's leases stay.
    let _ = std::fs::remove_dir("/var/lib/cni/networks");
    let _ = std::fs::remove_dir("/var/lib/cni");
}

/// A cluster in CNI mode. On drop: its pods deleted (the agent's DEL), then, with the server
/// gone, a DEL of whatever is still cached (a test that failed half-way), then the cluster,
/// then the network's bridge, state and rules.
struct CniCluster {
    cluster: Cluster,
    net: CniNet,
}

impl CniCluster {
    fn start(more_args: &[&str]) -> CniCluster {
        let net = CniNet::new();
        let mut args = net.args();
        args.extend(more_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cluster = Cluster::start_with_agent_args(&args, import_test_images);
        CniCluster { cluster, net }
    }

    fn cache_dir(&self) -> PathBuf {
        self.cluster.data_dir().join("net/cni")
    }
}

impl Drop for CniCluster {
    fn drop(&mut self) {
        // The agent's own DEL first, as a user's deletion does; bounded, as the harness' own.
        let _ = self.cluster.kubectl([
            "delete",
            "pods",
            "--all",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        let sandboxes = self.cluster.data_dir().join("sandboxes");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline && !entries(&sandboxes).is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.cluster.crash();
        // What the agent could not delete: the plugins' DEL from the cache.
        let network = skiff_net::CniNetwork::new(skiff_net::CniConfig {
            data_dir: self.cluster.data_dir().to_path_buf(),
            conf_dir: self.net.conf_dir.path().to_path_buf(),
            bin_dirs: vec![PathBuf::from(CNI_BIN)],
            plugin_timeout: Duration::from_secs(30),
        });
        if let Ok(network) = network {
            use skiff_net::PodNetwork as _;
            let _ = network.collect_garbage(&HashSet::new());
        }
    }
}

/// Asserts nothing of any pod's networking is left: no veth on the bridge, no host-local lease,
/// no portmap rule, no cache entry.
fn assert_nothing_left(c: &CniCluster) {
    wait_until(WAIT, "the pods' networking to be gone", || {
        c.net.veths().is_empty() && c.net.leases().is_empty() && entries(&c.cache_dir()).is_empty()
    });
    let rules = c.net.portmap_rules();
    assert!(rules.is_empty(), "portmap rules left behind: {rules:#?}");
}

#[test]
fn cni_pods_reach_each_other_by_pod_ip_and_hostports_answer_on_the_node() {
    let c = CniCluster::start(&[]);
    let cluster = &c.cluster;
    // Unique among the clusters running now, as the network slot is.
    let host_port = 32000 + c.net.slot.slot;
    cluster.create_from(&web_pod("web", Some(host_port)));
    cluster.create_from(&client_pod("client"));
    wait_running(cluster, &["web", "client"]);

    // The plugins' addresses, from host-local's subnet, in status.
    let web_ip = pod_ip(cluster, "web");
    let client_ip = pod_ip(cluster, "client");
    let prefix = c.net.subnet.trim_end_matches("0/24");
    assert!(
        web_ip.starts_with(prefix),
        "{web_ip} not in {}",
        c.net.subnet
    );
    assert!(client_ip.starts_with(prefix), "{client_ip}");
    assert_ne!(web_ip, client_ip);
    assert_eq!(
        cluster.jsonpath(&["pod", "web"], "{.status.podIPs[0].ip}"),
        web_ip
    );
    let mut leases = c.net.leases();
    leases.sort();
    let mut expected = vec![web_ip.clone(), client_ip.clone()];
    expected.sort();
    assert_eq!(leases, expected, "host-local's leases");
    assert_eq!(c.net.veths().len(), 2, "{:?}", c.net.veths());
    // The agent made no bridge of its own in CNI mode.
    let own = &cluster.network().expect("a slot").bridge;
    let shown = Command::new("ip")
        .args(["link", "show", own])
        .stderr(Stdio::null())
        .output()
        .expect("run ip");
    assert!(!shown.status.success(), "the built-in bridge {own} exists");

    // Pod to pod, from both containers of the client, which share its address.
    for container in ["a", "b"] {
        let page = cluster.kubectl_ok([
            "exec",
            "client",
            "-c",
            container,
            "--",
            "timeout",
            "5",
            "wget",
            "-qO-",
            &format!("http://{web_ip}:8080"),
        ]);
        assert!(page.contains("You've hit web"), "{container}: {page}");
        assert_eq!(address_inside(cluster, "client", container), client_ip);
    }
    // The host reaches a pod by its IP, and the hostPort (portmap) on the node's address.
    assert!(fetch(&format!("http://{web_ip}:8080/")).contains("You've hit web"));
    let host_ip = cluster.jsonpath(&["pod", "web"], "{.status.hostIP}");
    assert_eq!(host_ip, "127.0.0.1", "the node's --node-ip");
    assert!(
        !c.net.portmap_rules().is_empty(),
        "portmap made no rule for the hostPort"
    );
    assert!(
        fetch(&format!("http://{host_ip}:{host_port}/")).contains("You've hit web"),
        "nothing answers on the hostPort {host_ip}:{host_port}"
    );

    cluster.kubectl_ok(["delete", "pod", "web", "client"]);
    assert_nothing_left(&c);
    assert_eq!(
        fetch(&format!("http://{host_ip}:{host_port}/")),
        "",
        "the hostPort still answers"
    );
}

#[test]
fn cni_del_after_an_agent_restart_and_a_conf_change_uses_the_cache() {
    let mut c = CniCluster::start(&[]);
    let host_port = 33000 + c.net.slot.slot;
    c.cluster.create_from(&web_pod("before", Some(host_port)));
    wait_running(&c.cluster, &["before"]);
    let before = pod_ip(&c.cluster, "before");
    assert_eq!(entries(&c.cache_dir()).len(), 1, "one cache entry");

    // The conf dir now names another network; the pod's DEL must still use what its ADD ran.
    std::fs::write(
        c.net.conf_dir.path().join("10-pods.conflist"),
        c.net.conflist().replace(&c.net.name, "renamed"),
    )
    .expect("rewrite the conflist");
    c.cluster.restart();
    assert!(fetch(&format!("http://{before}:8080/")).contains("You've hit before"));
    c.cluster.kubectl_ok(["delete", "pod", "before"]);
    assert_nothing_left(&c);
}

#[test]
fn a_broken_cni_configuration_or_plugin_leaves_the_pod_waiting_with_the_reason() {
    let c = CniCluster::start(&[]);
    let conflist = c.net.conf_dir.path().join("10-pods.conflist");
    // A plugin that is not in the bin dir: the event names it; nothing stays allocated.
    std::fs::write(
        &conflist,
        c.net
            .conflist()
            .replace(r#""type": "portmap""#, r#""type": "nosuch-plugin""#),
    )
    .expect("write");
    c.cluster.create_from(&web_pod("waiting", None));
    wait_until(WAIT, "the FailedCreatePodSandBox event", || {
        let events = c.cluster.events_about("waiting");
        events.contains("FailedCreatePodSandBox") && events.contains("nosuch-plugin")
    });
    // The agent retries the sandbox every few seconds, so an ADD may be half-way at any
    // moment; a failed one that leaked its address would leave one more lease each time.
    wait_until(WAIT, "no lease left by the failed ADDs", || {
        c.net.leases().is_empty()
    });
    // A plugin's own error (host-local refuses a subnet that is not one): code and message.
    std::fs::write(
        &conflist,
        c.net.conflist().replace(&c.net.subnet, "10.243.0.0/99"),
    )
    .expect("write");
    wait_until(WAIT, "the plugin's error in an event", || {
        let events = c.cluster.events_about("waiting");
        events.contains("CNI plugin bridge failed on ADD with code")
    });
    // Fixed, the pod starts.
    std::fs::write(&conflist, c.net.conflist()).expect("write");
    wait_running(&c.cluster, &["waiting"]);
    c.cluster.kubectl_ok(["delete", "pod", "waiting"]);
    assert_nothing_left(&c);
}

#[test]
fn cni_flags_go_together_and_name_existing_dirs() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, reason) in [
        (vec!["--cni-conf-dir", "/tmp"], "--cni-bin-dir"),
        (vec!["--cni-bin-dir", CNI_BIN], "--cni-conf-dir"),
        (
            vec![
                "--cni-conf-dir",
                "/nonexistent-cni-conf",
                "--cni-bin-dir",
                CNI_BIN,
            ],
            "invalid --cni-conf-dir /nonexistent-cni-conf: not a directory",
        ),
    ] {
        let output = Command::new(skiff_e2e::skiff_bin())
            .args(["server", "--https-listen-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run skiff server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
