//! Pods across nodes, in the multi-node harness (two agents, each in a network namespace of its
//! own acting as a separate host): each agent keeps a host-gateway route to the other node's
//! podCIDR; a pod on one node fetches from a pod on the other by pod IP, both ways; a deleted
//! Node's route goes; a restarted agent removes stale routes of ours and leaves others alone;
//! a node that is not on a directly connected subnet gets a warning and no route, and a route
//! follows a node's InternalIP when it changes.

use std::time::Duration;

use skiff_e2e::multinode::test_images;
use skiff_e2e::{wait_until, AgentHost, MultiNode};

const WAIT: Duration = Duration::from_secs(60);

/// A busybox httpd on 8080 bound to node `node`: `/` answers with the pod's name,
/// `/cgi-bin/peer` with the address the request came from.
fn web_pod(name: &str, node: &str) -> String {
    let serve = format!(
        "mkdir -p /www/cgi-bin && echo hello from {name} > /www/index.html && \
         printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
         > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && exec httpd -f -p 8080 -h /www"
    );
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{
            "name": "web", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", serve], "ports": [{"containerPort": 8080}]}]}
    })
    .to_string()
}

fn wait_running(harness: &MultiNode, pod: &str) {
    wait_until(WAIT, &format!("{pod} Running"), || {
        harness.cluster().jsonpath(&["pod", pod], "{.status.phase}") == "Running"
    });
}

/// What pod `from` gets from `http://ip:8080/path` (busybox wget, 5 s at most).
fn fetch_from(harness: &MultiNode, from: &str, ip: &str, path: &str) -> String {
    harness.cluster().kubectl_ok([
        "exec",
        from,
        "--",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{ip}:8080/{path}"),
    ])
}

/// The IPv4 address in busybox httpd's `REMOTE_ADDR` (`[::ffff:10.243.1.2]`).
fn peer(remote_addr: &str) -> &str {
    let text = remote_addr.trim();
    let text = text.strip_prefix('[').unwrap_or(text);
    let text = text.strip_suffix(']').unwrap_or(text);
    text.strip_prefix("::ffff:").unwrap_or(text)
}

/// Pods `web-a` on node `a` and `web-b` on node `b`, once Running: their pod IPs.
fn web_pods_on(harness: &MultiNode, a: &str, b: &str) -> (String, String) {
    harness.cluster().create_from(&web_pod("web-a", a));
    harness.cluster().create_from(&web_pod("web-b", b));
    wait_running(harness, "web-a");
    wait_running(harness, "web-b");
    let ip = |pod: &str| harness.cluster().jsonpath(&["pod", pod], "{.status.podIP}");
    (ip("web-a"), ip("web-b"))
}

/// `web-a` (at `ip_a`) and `web-b` (at `ip_b`) answer each other by pod IP, and `web-b` sees
/// `web-a`'s own address (not masqueraded).
fn assert_web_pods_reach_each_other(harness: &MultiNode, ip_a: &str, ip_b: &str) {
    assert_eq!(
        fetch_from(harness, "web-a", ip_b, "").trim(),
        "hello from web-b"
    );
    assert_eq!(
        fetch_from(harness, "web-b", ip_a, "").trim(),
        "hello from web-a"
    );
    assert_eq!(
        peer(&fetch_from(harness, "web-a", ip_b, "cgi-bin/peer")),
        ip_a
    );
}

/// Patches node `node`'s status so that its one address is InternalIP `address`.
fn set_internal_ip(harness: &MultiNode, node: &str, address: &str) {
    harness.cluster().kubectl_ok([
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status": {{"addresses": [{{"type": "InternalIP", "address": "{address}"}}]}}}}"#
        ),
    ]);
}

/// The line of `ip route` for `destination` in `agent`'s namespace, if there is one.
fn route_to(agent: &AgentHost, destination: &str) -> Option<String> {
    agent
        .ip(&["route", "show", "table", "main"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(destination))
        .map(str::to_string)
}

fn pod_cidr(harness: &MultiNode, agent: &AgentHost) -> String {
    harness
        .cluster()
        .jsonpath(&["node", &agent.node], "{.spec.podCIDR}")
}

#[test]
fn pods_on_two_nodes_reach_each_other_and_a_deleted_nodes_route_goes() {
    let (_images, prepare) = test_images();
    let mut harness = MultiNode::start(2, prepare);
    let (a, b) = (harness.agent(0), harness.agent(1));
    let (cidr_a, cidr_b) = (pod_cidr(&harness, a), pod_cidr(&harness, b));
    assert_ne!(cidr_a, cidr_b);

    // Each host routes the other's podCIDR via the other's address, marked as ours.
    wait_until(WAIT, "the routes between the nodes", || {
        route_to(a, &cidr_b).is_some() && route_to(b, &cidr_a).is_some()
    });
    let on_a = route_to(a, &cidr_b).unwrap_or_default();
    assert!(
        on_a.contains(&format!("via {} dev host0", b.address)) && on_a.contains("proto 115"),
        "{on_a}"
    );
    let on_b = route_to(b, &cidr_a).unwrap_or_default();
    assert!(on_b.contains(&format!("via {} ", a.address)), "{on_b}");

    let (node_a, node_b) = (a.node.clone(), b.node.clone());
    let (ip_a, ip_b) = web_pods_on(&harness, &node_a, &node_b);
    assert_eq!(
        harness
            .cluster()
            .jsonpath(&["pod", "web-b"], "{.status.hostIP}"),
        harness.agent(1).address
    );

    // A → B and B → A by pod IP, routed between the hosts and not masqueraded: each side sees
    // the other pod's own address.
    assert_web_pods_reach_each_other(&harness, &ip_a, &ip_b);
    assert_eq!(
        peer(&fetch_from(&harness, "web-b", &ip_a, "cgi-bin/peer")),
        ip_b
    );

    // Node B goes: its pods first (so nothing runs on a host without an agent), then its agent
    // and its Node. Its route goes from A.
    harness
        .cluster()
        .kubectl_ok(["delete", "pod", "web-a", "web-b"]);
    harness.stop_agent(1);
    harness.cluster().kubectl_ok(["delete", "node", &node_b]);
    let a = harness.agent(0);
    wait_until(WAIT, "B's route to be gone from A", || {
        route_to(a, &cidr_b).is_none()
    });
    // Only ours went: A's own bridge route and the hosts' subnet stay.
    let routes = a.ip(&["route"]);
    assert!(
        routes.contains(&format!("{cidr_a} dev {}", a.bridge)),
        "{routes}"
    );
    assert!(routes.contains("dev host0 proto kernel"), "{routes}");
}

#[test]
fn an_agent_removes_stale_routes_at_start_and_skips_nodes_it_cannot_reach_directly() {
    let mut harness = MultiNode::start(2, |_| {});
    let cidr_b = pod_cidr(&harness, harness.agent(1));
    wait_until(WAIT, "A's route to B", || {
        route_to(harness.agent(0), &cidr_b).is_some()
    });
    // While A's agent is away: a route of ours to a podCIDR no node has (a node deleted
    // meanwhile), and one in the cluster CIDR that is not ours (another protocol).
    harness.stop_agent(0);
    let slot_prefix = harness.cluster_cidr().trim_end_matches("0/24").to_string();
    let stale = format!("{slot_prefix}192/26");
    let foreign = format!("{slot_prefix}248/29");
    let a = harness.agent(0);
    let b_address = harness.agent(1).address.clone();
    a.ip(&["route", "add", &stale, "via", &b_address, "proto", "115"]);
    a.ip(&[
        "route", "add", &foreign, "via", &b_address, "proto", "static",
    ]);
    // B's route, removed meanwhile: it comes back.
    a.ip(&["route", "del", &cidr_b]);

    harness.start_agent(0);
    let a = harness.agent(0);
    wait_until(
        WAIT,
        "the stale route to be removed and B's restored",
        || route_to(a, &stale).is_none() && route_to(a, &cidr_b).is_some(),
    );
    assert!(
        route_to(a, &foreign).is_some(),
        "a route not ours was removed"
    );

    // A node whose InternalIP is on no subnet of A's: a warning, no route.
    let far = "far-away-node";
    harness.cluster().create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "{far}"}}}}"#
    ));
    set_internal_ip(&harness, far, "198.51.100.7");
    wait_until(WAIT, "the far node's podCIDR", || {
        !harness
            .cluster()
            .jsonpath(&["node", far], "{.spec.podCIDR}")
            .is_empty()
    });
    let far_cidr = harness
        .cluster()
        .jsonpath(&["node", far], "{.spec.podCIDR}");
    wait_until(WAIT, "A's warning about the far node", || {
        a.output().contains(&format!(
            "no route to the pods of node {far}: its InternalIP 198.51.100.7 is not on a \
             directly connected subnet"
        ))
    });
    assert_eq!(route_to(a, &far_cidr), None);
    assert!(route_to(a, &cidr_b).is_some());

    // Its InternalIP moves onto the hosts' subnet: it gets a route; moves again: the route
    // follows; the Node goes: so does the route.
    let hosts_prefix = harness.server_address().trim_end_matches('1').to_string();
    for last in ["50", "51"] {
        let address = format!("{hosts_prefix}{last}");
        set_internal_ip(&harness, far, &address);
        wait_until(
            WAIT,
            &format!("A's route to the far node via {address}"),
            || route_to(a, &far_cidr).is_some_and(|r| r.contains(&format!("via {address} "))),
        );
    }
    harness.cluster().kubectl_ok(["delete", "node", far]);
    wait_until(WAIT, "the far node's route to go", || {
        route_to(a, &far_cidr).is_none()
    });
    assert!(route_to(a, &cidr_b).is_some());
}

/// Removes host-local's state of the CNI networks named here (in the host's filesystem, which
/// the agents' namespaces share), also when the test fails.
struct LeaseDirs(Vec<String>);

impl Drop for LeaseDirs {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ =
                std::fs::remove_dir_all(std::path::Path::new("/var/lib/cni/networks").join(name));
        }
    }
}

/// CNI mode across nodes: each agent runs Debian's bridge and host-local plugins, the bridge
/// plugin taking the `ipRanges` capability, so pods get addresses from their Node's podCIDR (as
/// containerd passes it) and the agents keep the same host-gateway routes as with the built-in
/// network: pods on the two nodes reach each other by pod IP.
#[test]
fn cni_pods_on_two_nodes_reach_each_other_with_addresses_from_their_nodes_pod_cidrs() {
    let (_images, prepare) = test_images();
    let names: Vec<String> = (0..2)
        .map(|i| format!("skiff-e2e-mn{}-{i}", std::process::id()))
        .collect();
    let _leases = LeaseDirs(names.clone());
    let harness = MultiNode::start_with_args(2, prepare, |index, dir| {
        let conf_dir = dir.join("cni");
        std::fs::create_dir_all(&conf_dir).expect("create the CNI conf dir");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0", "name": names[index],
            "plugins": [
                {"type": "bridge", "bridge": format!("skcnimn{index}"), "isGateway": true,
                 "ipMasq": false, "capabilities": {"ipRanges": true},
                 "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "loopback"}
            ]
        });
        std::fs::write(conf_dir.join("10-pods.conflist"), conflist.to_string())
            .expect("write the conflist");
        vec![
            "--cni-conf-dir".to_string(),
            conf_dir.display().to_string(),
            "--cni-bin-dir".to_string(),
            "/usr/lib/cni".to_string(),
        ]
    });
    let (a, b) = (harness.agent(0), harness.agent(1));
    let (cidr_a, cidr_b) = (pod_cidr(&harness, a), pod_cidr(&harness, b));
    wait_until(WAIT, "the routes between the nodes", || {
        route_to(a, &cidr_b).is_some() && route_to(b, &cidr_a).is_some()
    });
    let (node_a, node_b) = (a.node.clone(), b.node.clone());
    let (ip_a, ip_b) = web_pods_on(&harness, &node_a, &node_b);
    // The addresses come from each node's podCIDR (a /26 of the harness's /24).
    let within = |ip: &str, cidr: &str| {
        let (net, bits) = cidr.split_once('/').expect("a CIDR");
        let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 pod IP");
        let net: std::net::Ipv4Addr = net.parse().expect("an IPv4 network");
        let mask = u32::MAX << (32 - bits.parse::<u32>().expect("a prefix length"));
        u32::from(ip) & mask == u32::from(net)
    };
    assert!(within(&ip_a, &cidr_a), "{ip_a} not in {cidr_a}");
    assert!(within(&ip_b, &cidr_b), "{ip_b} not in {cidr_b}");
    assert_web_pods_reach_each_other(&harness, &ip_a, &ip_b);
}
