//! Keeps the node's host-gateway routes (`skiff_net::routes`): watches all Nodes and, when the
//! routes they call for change (and every [`RESYNC`], which repairs routes someone else
//! removed), makes the routes to the other nodes' podCIDRs match them. Status updates that
//! change no route (every node's heartbeat) cost no netlink request. The first sync, after the initial list,
//! removes the routes of ours that a previous run left for nodes that are gone.

use std::collections::HashMap;
use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use skiff_net::routes::{routes_to_other_nodes, HostRoutes, NodeRoute, Skipped};
use skiff_net::Ipv4Cidr;

/// How often the routes are checked without a change of the Nodes.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How long to wait before opening the netlink socket again after it failed.
const RETRY: Duration = Duration::from_secs(2);

/// Runs until the task is dropped: the watch retries with back-off and netlink errors are
/// logged and retried at the next change or resync.
pub async fn keep_routes(client: kube::Client, node_name: String, cluster: Ipv4Cidr) {
    let routes = loop {
        match HostRoutes::connect(cluster) {
            Ok(routes) => break routes,
            Err(e) => {
                tracing::error!(node = %node_name, error = %e, "cannot open netlink for the routes to other nodes; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let nodes: Api<Node> = Api::all(client);
    let (store, writer) = reflector::store();
    let mut events = pin!(reflector(
        writer,
        watcher(nodes, watcher::Config::default()).default_backoff()
    ));
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until the initial list is complete, the store does not know every node: a sync then
    // would remove routes that are still wanted.
    let mut listed = false;
    let mut warned: HashMap<String, String> = HashMap::new();
    // What the last successful sync made; None: sync at the next event.
    let mut synced: Option<Vec<NodeRoute>> = None;
    loop {
        let resync_due = tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => {
                    listed = true;
                    false
                }
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(_)) => false,
                Some(Err(e)) => {
                    tracing::warn!(node = %node_name, error = %e, "watching nodes for the routes to their pods");
                    continue;
                }
                None => {
                    tracing::error!(node = %node_name, "the watch of nodes for routes ended");
                    return;
                }
            },
            _ = resync.tick() => true,
        };
        if !listed {
            continue;
        }
        let all: Vec<Node> = store.state().iter().map(|n| (**n).clone()).collect();
        let (wanted, mut skipped) = routes_to_other_nodes(&node_name, cluster, &all);
        if !resync_due && synced.as_ref() == Some(&wanted) {
            continue;
        }
        synced = None;
        match routes.sync(&wanted).await {
            Ok(report) => {
                for route in &report.added {
                    tracing::info!(node = %node_name, to_node = %route.node, pod_cidr = %route.pod_cidr, via = %route.via, "route to another node's pods set");
                }
                for destination in &report.removed {
                    tracing::info!(node = %node_name, pod_cidr = %destination, "route to pods of a node that is gone (or changed) removed");
                }
                skipped.extend(report.skipped);
                synced = Some(wanted);
            }
            Err(e) => {
                tracing::error!(node = %node_name, error = %e, "cannot bring the routes to other nodes' pods up to date; retrying at the next change");
            }
        }
        warn_once(&node_name, &mut warned, skipped);
    }
}

/// Warns about each skipped node once per reason, not at every sync.
fn warn_once(node_name: &str, warned: &mut HashMap<String, String>, skipped: Vec<Skipped>) {
    let mut now = HashMap::new();
    for skip in skipped {
        if warned.get(&skip.node) != Some(&skip.reason) {
            tracing::warn!(node = %node_name, other_node = %skip.node, reason = %skip.reason, "no route to the pods of node {}: {}", skip.node, skip.reason);
        }
        now.insert(skip.node, skip.reason);
    }
    *warned = now;
}
