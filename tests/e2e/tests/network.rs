//! Pod networking on one node with the real kubectl: every pod gets an address of its node's
//! podCIDR on the cluster's own bridge; pods reach each other and the host reaches them by pod
//! IP; a hostPort answers on the node's address; nothing is left when pods go; a restarted
//! agent keeps the addresses in use; an exhausted podCIDR leaves the pod waiting with a clear
//! event; a bad --cluster-cidr is refused at start.

use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_e2e::pod_network::{
    address_inside, client_pod, entries, fetch, pod_ip, wait_running, web_pod,
};
use skiff_e2e::{import_test_images, parse_table, skiff_bin, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);
const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// Asserts nothing of any pod's networking is left on the node.
fn assert_nothing_left(cluster: &Cluster) {
    let network = cluster.network().expect("the cluster has a pod network");
    let net = cluster.data_dir().join("net");
    let left = || {
        (
            network.veths(),
            entries(&net.join("ipam")),
            entries(&net.join("sandboxes")),
        )
    };
    let gone = |(veths, ipam, sandboxes): &(Vec<String>, Vec<String>, Vec<String>)| {
        veths.is_empty() && ipam.is_empty() && sandboxes.is_empty()
    };
    let started = std::time::Instant::now();
    let mut last = left();
    while !gone(&last) {
        assert!(
            started.elapsed() < WAIT,
            "the pods' networking still there after {WAIT:?}: (veths, ipam, sandboxes) {last:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        last = left();
    }
    let map = Command::new("nft")
        .args(["list", "map", "ip", &network.table, "hostports"])
        .output()
        .expect("run nft");
    let map = String::from_utf8_lossy(&map.stdout);
    assert!(!map.contains("elements"), "hostPorts left behind:\n{map}");
}

#[test]
fn pods_reach_each_other_by_pod_ip_and_hostports_answer_on_the_node() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let network = cluster.network().expect("a pod network");
    // Unique among the clusters running now, as the network slot is.
    let host_port = 31000 + network.slot;
    let node = cluster.node_name().expect("agent").to_string();
    wait_until(WAIT, "the node's podCIDR", || {
        cluster.jsonpath(&["node", &node], "{.spec.podCIDR}") == network.cluster_cidr
    });
    assert_eq!(
        cluster.jsonpath(&["node", &node], "{.spec.podCIDRs[0]}"),
        network.cluster_cidr
    );
    cluster.create_from(&web_pod("web", Some(host_port)));
    cluster.create_from(&client_pod("client"));
    wait_running(&cluster, &["web", "client"]);

    // Status: podIP, podIPs and hostIP; `get -o wide` shows the IP.
    let web_ip = pod_ip(&cluster, "web");
    let client_ip = pod_ip(&cluster, "client");
    let prefix = network.cluster_cidr.trim_end_matches("0/24");
    assert!(
        web_ip.starts_with(prefix),
        "{web_ip} not in {}",
        network.cluster_cidr
    );
    assert!(client_ip.starts_with(prefix), "{client_ip}");
    assert_ne!(web_ip, client_ip);
    assert_eq!(
        cluster.jsonpath(&["pod", "web"], "{.status.podIPs[0].ip}"),
        web_ip
    );
    let host_ip = cluster.jsonpath(&["pod", "web"], "{.status.hostIP}");
    assert_eq!(host_ip, "127.0.0.1", "the node's --node-ip");
    let wide = parse_table(&cluster.kubectl_ok(["get", "po", "web", "-o", "wide"]));
    assert!(wide[0].contains(&"IP".to_string()), "{wide:?}");
    assert!(wide[1].contains(&web_ip), "{wide:?}");

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
        assert_eq!(address_inside(&cluster, "client", container), client_ip);
    }
    // The host reaches a pod by its IP, and the hostPort on the node's address.
    assert!(fetch(&format!("http://{web_ip}:8080/")).contains("You've hit web"));
    assert!(
        fetch(&format!("http://{host_ip}:{host_port}/")).contains("You've hit web"),
        "nothing answers on the hostPort {host_ip}:{host_port}"
    );

    cluster.kubectl_ok(["delete", "pod", "web", "client"]);
    assert_nothing_left(&cluster);
    assert_eq!(
        fetch(&format!("http://{host_ip}:{host_port}/")),
        "",
        "the hostPort still answers"
    );
}

#[test]
fn a_restarted_agent_keeps_pod_ips_and_never_hands_one_out_twice() {
    let mut cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&web_pod("before", None));
    wait_running(&cluster, &["before"]);
    let before = pod_ip(&cluster, "before");

    cluster.restart();
    cluster.create_from(&web_pod("after", None));
    wait_running(&cluster, &["after"]);
    let after = pod_ip(&cluster, "after");
    assert_ne!(before, after, "an address in use was handed out again");
    assert_eq!(pod_ip(&cluster, "before"), before);
    // The pod that outlived the agent is still reachable at its address.
    assert!(fetch(&format!("http://{before}:8080/")).contains("You've hit before"));
    assert!(fetch(&format!("http://{after}:8080/")).contains("You've hit after"));

    cluster.kubectl_ok(["delete", "pod", "before", "after"]);
    assert_nothing_left(&cluster);
}

#[test]
fn create_delete_cycles_leak_nothing() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let mut seen = std::collections::HashSet::new();
    // 30 pods in three rounds of ten, created and deleted together.
    for round in 0..3 {
        let names: Vec<String> = (0..10).map(|i| format!("cycle-{round}-{i}")).collect();
        let manifests: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{n}"}},
                    "spec": {{"terminationGracePeriodSeconds": 0, "containers": [{{"name": "main",
                    "image": "busybox", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "{SLEEP}"]}}]}}}}"#
                )
            })
            .collect();
        // One kubectl run: YAML documents (JSON is YAML) one after another.
        cluster.create_from(&manifests.join("\n---\n"));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        wait_running(&cluster, &refs);
        let ips: Vec<String> = refs.iter().map(|n| pod_ip(&cluster, n)).collect();
        let distinct: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(
            distinct.len(),
            ips.len(),
            "two pods share an address: {ips:?}"
        );
        seen.extend(ips);
        let mut delete = vec!["delete", "pod"];
        delete.extend(refs.iter().copied());
        cluster.kubectl_ok(delete);
        assert_nothing_left(&cluster);
    }
    assert_eq!(
        seen.len(),
        30,
        "round-robin: freed addresses are not reused at once"
    );
}

#[test]
fn an_exhausted_pod_cidr_leaves_the_pod_waiting_with_an_event() {
    // A /30 per node holds one pod address (.2): the gateway is .1, .3 the broadcast.
    let cluster =
        Cluster::start_with_agent_args(&["--node-cidr-mask-size", "30"], import_test_images);
    cluster.create_from(&web_pod("first", None));
    wait_running(&cluster, &["first"]);
    cluster.create_from(&web_pod("second", None));
    wait_until(
        WAIT,
        "the second pod's FailedCreatePodSandBox event",
        || {
            let events = cluster.events_about("second");
            events.contains("FailedCreatePodSandBox") && events.contains("no free address left")
        },
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "second"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "first"], "{.status.phase}"),
        "Running",
        "the pod that has an address keeps running"
    );
    // Once the first pod goes, its address serves the waiting one.
    cluster.kubectl_ok(["delete", "pod", "first"]);
    wait_running(&cluster, &["second"]);
    cluster.kubectl_ok(["delete", "pod", "second"]);
    assert_nothing_left(&cluster);
}

#[test]
fn a_node_without_a_pod_cidr_leaves_its_pods_waiting_with_the_reason() {
    // No controller hands out podCIDRs: the node never gets one.
    let cluster = Cluster::start_with_agent_args(&["--disable-node-ipam"], import_test_images);
    cluster.create_from(&web_pod("waiting", None));
    wait_until(WAIT, "the pod's FailedCreatePodSandBox event", || {
        let events = cluster.events_about("waiting");
        events.contains("FailedCreatePodSandBox") && events.contains("the node has no podCIDR yet")
    });
    assert_eq!(
        cluster.jsonpath(&["pod", "waiting"], "{.status.phase}"),
        "Pending"
    );
    // Given one by hand (as another IPAM would), the node configures its network and the pod
    // starts.
    let node = cluster.node_name().expect("agent").to_string();
    let cidr = cluster.network().expect("network").cluster_cidr.clone();
    cluster.kubectl_ok([
        "patch",
        "node",
        &node,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec": {{"podCIDR": "{cidr}", "podCIDRs": ["{cidr}"]}}}}"#),
    ]);
    wait_running(&cluster, &["waiting"]);
    assert!(!pod_ip(&cluster, "waiting").is_empty());
    cluster.kubectl_ok(["delete", "pod", "waiting"]);
    assert_nothing_left(&cluster);
}

#[test]
fn a_bad_cluster_cidr_is_refused_at_start_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (cidr, reason) in [
        ("10.42.0.0/25", "too small for a /24 per node"),
        ("10.42.0.1/16", "host bits set"),
        ("10.42.0.0", "not in CIDR notation"),
    ] {
        let output = Command::new(skiff_bin())
            .args(["server", "--disable-agent", "--https-listen-port", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--cluster-cidr", cidr])
            .stdin(Stdio::null())
            .output()
            .expect("run skiff server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{cidr} was accepted");
        assert!(stderr.contains(reason), "{cidr}: {stderr}");
    }
}
