//! The agent against a real API server: the Node registers Ready with kubelet's fields, its
//! Lease renews, and `kubectl get nodes`' Table shows it.

mod common;

use std::time::Duration;

use common::{wait_for, TestServer};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use skiff_agent::{Agent, AgentConfig};

fn fast_config(server: &TestServer, name: &str) -> AgentConfig {
    let mut config = AgentConfig::new(name, server.dir.path());
    config.max_pods = 42;
    config.status_interval = Duration::from_millis(300);
    config.lease_interval = Duration::from_millis(300);
    config
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn node_registers_ready_and_lease_renews() {
    let server = TestServer::start().await;
    let name = format!("node-{}", std::process::id());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = Agent::new(server.client.clone(), fast_config(&server, &name));
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));

    let nodes: Api<Node> = Api::all(server.client.clone());
    let node = wait_for("the node to be Ready", || async {
        nodes.get_opt(&name).await.ok().flatten().filter(ready)
    })
    .await;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kubernetes.io/hostname"), Some(&name));
    assert_eq!(
        labels.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    let status = node.status.clone().expect("status");
    let capacity = status.capacity.clone().expect("capacity");
    assert_eq!(capacity["pods"].0, "42");
    assert!(capacity["memory"].0.ends_with("Ki"));
    assert!(capacity["cpu"].0.parse::<u32>().expect("cpu count") >= 1);
    assert!(capacity.contains_key("ephemeral-storage"));
    assert_eq!(status.allocatable, Some(capacity));
    let addresses = status.addresses.clone().expect("addresses");
    let types: Vec<&str> = addresses.iter().map(|a| a.type_.as_str()).collect();
    assert_eq!(types, ["InternalIP", "Hostname"]);
    assert!(addresses[0].address.parse::<std::net::Ipv4Addr>().is_ok());
    let info = status.node_info.clone().expect("nodeInfo");
    assert_eq!(info.kubelet_version, "v1.35.0-skiff");
    assert_eq!(info.container_runtime_version, "skiff://0.1.0");
    assert_eq!(info.operating_system, "linux");
    assert!(!info.kernel_version.is_empty());
    let conditions = status.conditions.clone().expect("conditions");
    for (kind, state, reason) in [
        ("Ready", "True", "KubeletReady"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ] {
        let c = conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("no {kind} condition"));
        assert_eq!(c.status, state, "{kind}");
        assert_eq!(c.reason.as_deref(), Some(reason), "{kind}");
        assert!(c.last_heartbeat_time.is_some(), "{kind}");
    }

    // The Lease exists, is held by the node, and renews.
    let leases: Api<Lease> = Api::namespaced(server.client.clone(), "kube-node-lease");
    let first = wait_for("the lease", || async {
        leases.get_opt(&name).await.ok().flatten()
    })
    .await;
    let spec = first.spec.clone().expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let renewed_at = spec.renew_time.expect("renewTime").0;
    let owner = &first.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(owner.kind, "Node");
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    wait_for("the lease to renew", || async {
        leases
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.renew_time)
            .filter(|t| t.0 > renewed_at)
    })
    .await;

    // The heartbeat moves too.
    let beat = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.clone())
    };
    let first_beat = beat(&node).expect("heartbeat");
    wait_for("the node heartbeat to move", || async {
        nodes
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|n| beat(&n))
            .filter(|t| t.0 > first_beat.0)
    })
    .await;

    // `kubectl get nodes` asks for a Table.
    let request = hyper::Request::get("/api/v1/nodes")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .expect("request");
    let table: serde_json::Value = server.client.request(request).await.expect("table");
    assert_eq!(table["kind"], "Table");
    let row = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == name.as_str())
        .unwrap_or_else(|| panic!("no row for {name}: {table}"));
    assert_eq!(row["cells"][1], "Ready", "{table}");
    assert_eq!(row["cells"][4], "v1.35.0-skiff", "{table}");

    let _ = stop.send(());
    tokio::time::timeout(common::WAIT, task)
        .await
        .expect("agent stops in time")
        .expect("agent task")
        .expect("agent ends cleanly");
}

#[tokio::test]
async fn agent_with_url_and_token_reregisters_an_existing_node() {
    let server = TestServer::start().await;
    let name = format!("node-b-{}", std::process::id());
    let client = skiff_agent::client_for_server(
        &server.url,
        &server.token(),
        Some(&server.dir.path().join("tls/ca.crt")),
        false,
    )
    .await
    .expect("client from URL and token");
    let nodes: Api<Node> = Api::all(client.clone());
    // A node left from an earlier run, not Ready and with a stale label.
    let stale: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/os": "plan9", "keep": "me"}},
    }))
    .expect("node");
    nodes
        .create(&Default::default(), &stale)
        .await
        .expect("stale node");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        Agent::new(client.clone(), fast_config(&server, &name)).run(async {
            let _ = stopped.await;
        }),
    );
    let node = wait_for("the node to be Ready", || async {
        nodes.get_opt(&name).await.ok().flatten().filter(ready)
    })
    .await;
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    assert_eq!(labels.get("keep").map(String::as_str), Some("me"));

    // A wrong token is refused, not retried forever silently.
    let bad = skiff_agent::client_for_server(&server.url, "wrong-token", None, true)
        .await
        .expect("client");
    let err = Api::<Node>::all(bad).get(&name).await.expect_err("refused");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "{err}"
    );

    let _ = stop.send(());
    tokio::time::timeout(common::WAIT, task)
        .await
        .expect("agent stops in time")
        .expect("agent task")
        .expect("agent ends cleanly");
}
