//! Host-gateway routes for real (needs root), in a network namespace of this test's own: the
//! kernel's view of which gateways are directly connected; a sync adds, changes and removes
//! only routes of ours (protocol 115, inside the cluster CIDR) and is idempotent.

mod common;
use common::Netns;

use std::net::Ipv4Addr;

use skiff_net::routes::{HostRoutes, NodeRoute, Reach};
use skiff_net::Ipv4Cidr;

fn cidr(text: &str) -> Ipv4Cidr {
    text.parse().expect("valid")
}

fn route(node: &str, pod_cidr: &str, via: [u8; 4]) -> NodeRoute {
    NodeRoute {
        node: node.to_string(),
        pod_cidr: cidr(pod_cidr),
        via: Ipv4Addr::from(via),
    }
}

/// The line of `ip route` for `destination`.
fn line<'a>(routes: &'a str, destination: &str) -> Option<&'a str> {
    routes
        .lines()
        .find(|l| l.split_whitespace().next() == Some(destination))
}

#[test]
fn sync_keeps_exactly_the_wanted_routes_of_ours_and_nothing_else() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ns = Netns::new(dir.path(), "host");
    // The link to the other "hosts": a veth whose peer stays here too (up, so it has a
    // carrier).
    ns.ip(&[
        "link",
        "add",
        "hosts",
        "type",
        "veth",
        "peer",
        "name",
        "hosts-peer",
    ]);
    ns.ip(&["addr", "add", "192.168.77.1/24", "dev", "hosts"]);
    ns.ip(&["link", "set", "hosts-peer", "up"]);
    ns.ip(&["link", "set", "hosts", "up"]);
    // Left by an earlier run (ours, for a node that is gone), another daemon's route in the
    // cluster CIDR, and a protocol-115 route outside it: only the first is ours.
    ns.ip(&[
        "route",
        "add",
        "10.42.9.0/24",
        "via",
        "192.168.77.9",
        "proto",
        "115",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.42.8.0/24",
        "via",
        "192.168.77.8",
        "proto",
        "static",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "192.168.77.7",
        "proto",
        "115",
    ]);

    let reaches = ns.run_in(|| {
        Box::pin(async {
            let routes = HostRoutes::connect(cidr("10.42.0.0/16")).expect("netlink");
            let mut seen = Vec::new();
            for ip in [[192, 168, 77, 5], [192, 168, 77, 1], [8, 8, 8, 8]] {
                seen.push(routes.reach(Ipv4Addr::from(ip)).await.expect("lookup"));
            }
            seen
        })
    });
    assert_eq!(
        reaches,
        [Reach::Connected, Reach::Local, Reach::Unreachable],
        "a neighbour, our own address, no route"
    );
    ns.ip(&["route", "add", "default", "via", "192.168.77.254"]);

    let sync = |wanted: Vec<NodeRoute>| {
        ns.run_in(move || {
            Box::pin(async move {
                let routes = HostRoutes::connect(cidr("10.42.0.0/16")).expect("netlink");
                routes.sync(&wanted).await.expect("sync")
            })
        })
    };
    let b = route("b", "10.42.1.0/24", [192, 168, 77, 2]);
    let far = route("far", "10.42.2.0/24", [10, 0, 0, 5]);
    let report = sync(vec![b.clone(), far.clone()]);
    assert_eq!(report.added, vec![b.clone()]);
    assert_eq!(report.removed, vec![cidr("10.42.9.0/24")]);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].node, "far");
    assert!(
        report.skipped[0].reason.contains(
            "10.0.0.5 is not on a directly connected subnet (reached via 192.168.77.254)"
        ),
        "{}",
        report.skipped[0].reason
    );
    let routes = ns.ip(&["route"]);
    let to_b = line(&routes, "10.42.1.0/24").unwrap_or_default();
    assert!(
        to_b.contains("via 192.168.77.2 dev hosts proto 115"),
        "{routes}"
    );
    assert_eq!(line(&routes, "10.42.2.0/24"), None, "{routes}");
    assert_eq!(line(&routes, "10.42.9.0/24"), None, "{routes}");
    assert!(line(&routes, "10.42.8.0/24").is_some(), "{routes}");
    assert!(line(&routes, "10.99.0.0/24").is_some(), "{routes}");

    // Again: nothing to do.
    let report = sync(vec![b.clone(), far.clone()]);
    assert!(
        report.added.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );

    // The node's address changes: the route is replaced.
    let moved = route("b", "10.42.1.0/24", [192, 168, 77, 3]);
    let report = sync(vec![moved.clone()]);
    assert_eq!(report.added, vec![moved]);
    let routes = ns.ip(&["route"]);
    assert!(
        line(&routes, "10.42.1.0/24").is_some_and(|l| l.contains("via 192.168.77.3 ")),
        "{routes}"
    );

    // No other node left: our route goes, the others stay.
    let report = sync(Vec::new());
    assert_eq!(report.removed, vec![cidr("10.42.1.0/24")]);
    let routes = ns.ip(&["route"]);
    assert_eq!(line(&routes, "10.42.1.0/24"), None, "{routes}");
    assert!(line(&routes, "10.42.8.0/24").is_some(), "{routes}");
    assert!(line(&routes, "10.99.0.0/24").is_some(), "{routes}");
}
