//! The scheduling loop against a real API server started in-process on a free port with a
//! temporary data dir. No agent exists here: the tests play the nodes, creating Node objects
//! with allocatable and a Ready condition.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use skiff_apiserver::{ApiServer, Config};
use skiff_store::SqliteStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);

/// An API server and a scheduler running against it; both stop on drop, and the data dir goes.
struct Harness {
    client: Client,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
    stop_server: Option<oneshot::Sender<()>>,
    stop_scheduler: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    scheduler: JoinHandle<()>,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db/state.db")).expect("store opens");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            bind_address: "127.0.0.1".into(),
            port: 0,
            tls_sans: vec![],
        };
        let server = ApiServer::bind(&config, store.clone())
            .await
            .expect("server binds");
        let kubeconfig = server.kubeconfig.clone();
        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig)
            .await
            .expect("client from the admin kubeconfig");
        let (stop_scheduler, stopped) = oneshot::channel::<()>();
        let scheduler = tokio::spawn(skiff_scheduler::run(client.clone(), async {
            let _ = stopped.await;
        }));
        Harness {
            client,
            store,
            _dir: dir,
            stop_server: Some(stop_server),
            stop_scheduler: Some(stop_scheduler),
            server,
            scheduler,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Registers a node as an agent would: the object, then its status.
    /// Registers a node as an agent would: the object, then its status. `size` is the
    /// allocatable (cpu, memory, pods).
    async fn node(
        &self,
        name: &str,
        labels: Value,
        taints: Value,
        size: (&str, &str, &str),
        ready: &str,
    ) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": node_status(ready, size),
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node created");
    }

    async fn ready_node(&self, name: &str, cpu: &str, memory: &str) {
        self.node(name, json!({}), json!([]), (cpu, memory, "110"), "True")
            .await;
    }

    async fn node_status(&self, name: &str, ready: &str, size: (&str, &str, &str)) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let status = json!({"status": node_status(ready, size)});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status written");
    }

    async fn pod(&self, name: &str, spec: Value) -> Pod {
        let mut full = json!({"containers": [{"name": "main", "image": "busybox"}]});
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                full.insert(k.clone(), v.clone());
            }
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": full,
        }))
        .expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod created")
    }

    /// Waits until the pod is bound and reports PodScheduled=True; returns its node.
    async fn bound(&self, name: &str) -> String {
        let pod = self
            .wait_pod(name, "bound", |p| {
                node_of(p).is_some() && scheduled(p).is_some_and(|c| c.0 == "True")
            })
            .await;
        node_of(&pod).expect("bound").to_string()
    }

    /// Waits until the pod reports PodScheduled=False/Unschedulable with this message (an
    /// earlier attempt may have seen less of the cluster and said something else).
    async fn unschedulable(&self, name: &str, message: &str) {
        let pod = self
            .wait_pod(name, &format!("unschedulable with {message:?}"), |p| {
                scheduled(p)
                    .is_some_and(|c| c.0 == "False" && c.1 == "Unschedulable" && c.2 == message)
            })
            .await;
        assert_eq!(node_of(&pod), None, "an unschedulable pod stays unbound");
    }

    async fn wait_pod(&self, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let pod = self.pods().get(name).await.expect("pod read");
            if done(&pod) {
                return pod;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pod {name} not {what} in time: {}",
                serde_json::to_string(&pod.status).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The events about a pod as (type, reason, message, count, source component).
    async fn events(&self, pod: &str) -> Vec<(String, String, String, i32, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
            .await
            .expect("events listed");
        list.items
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                    e.count.unwrap_or_default(),
                    e.source.and_then(|s| s.component).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until an event with this reason and message about the pod exists.
    async fn wait_event(&self, pod: &str, reason: &str, message: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = self.events(pod).await;
            if events.iter().any(|e| e.1 == reason && e.2 == message) {
                let e = events.iter().find(|e| e.1 == reason).expect("found");
                assert_eq!(
                    e.4, "default-scheduler",
                    "reported by the default scheduler"
                );
                let want_type = if reason == "Scheduled" {
                    "Normal"
                } else {
                    "Warning"
                };
                assert_eq!(e.0, want_type);
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {reason} event {message:?} for {pod}: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop_scheduler.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.scheduler)
            .await
            .expect("scheduler stops in time")
            .expect("scheduler task ends without panicking");
        if let Some(tx) = self.stop_server.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.server).await;
        self.store.close();
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A failed test never reached stop(): end both tasks so nothing outlives it.
        self.scheduler.abort();
        self.server.abort();
    }
}

/// A node's status as an agent reports it: capacity = allocatable, and the Ready condition.
fn node_status(ready: &str, size: (&str, &str, &str)) -> Value {
    let (cpu, memory, pods) = size;
    let resources =
        json!({"cpu": cpu, "memory": memory, "ephemeral-storage": "10Gi", "pods": pods});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "ready"}],
    })
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// PodScheduled's (status, reason, message).
fn scheduled(pod: &Pod) -> Option<(String, String, String)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn requests(cpu: &str, memory: &str) -> Value {
    json!({"containers": [{"name": "main", "image": "busybox",
        "resources": {"requests": {"cpu": cpu, "memory": memory}}}]})
}

#[tokio::test]
async fn pending_pods_are_bound_and_bound_pods_left_alone() {
    let h = Harness::start().await;
    h.ready_node("n1", "2", "4Gi").await;
    h.pod("elsewhere", json!({"nodeName": "some-other-node"}))
        .await;
    h.pod("web", json!({})).await;
    assert_eq!(h.bound("web").await, "n1");
    h.wait_event(
        "web",
        "Scheduled",
        "Successfully assigned default/web to n1",
    )
    .await;

    let other = h.pods().get("elsewhere").await.expect("pod");
    assert_eq!(node_of(&other), Some("some-other-node"));
    assert!(
        scheduled(&other).is_none_or(|c| c.0 == "True"),
        "the scheduler did not touch it: {:?}",
        scheduled(&other)
    );
    assert!(
        h.events("elsewhere").await.is_empty(),
        "no events about a pod not ours"
    );

    // A pod for another scheduler is not ours either.
    h.pod("custom", json!({"schedulerName": "my-scheduler"}))
        .await;
    h.pod("after-custom", json!({})).await;
    h.bound("after-custom").await;
    let custom = h.pods().get("custom").await.expect("pod");
    assert_eq!(node_of(&custom), None);
    assert!(h.events("custom").await.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_pod_too_big_waits_until_a_big_enough_node_appears() {
    let h = Harness::start().await;
    h.ready_node("small", "1", "1Gi").await;
    h.pod("big", requests("100m", "2Gi")).await;
    let message = "0/1 nodes are available: 1 Insufficient memory.";
    h.unschedulable("big", message).await;
    h.wait_event("big", "FailedScheduling", message).await;

    // A node change that does not help: tried again after the back-off, failing the same way,
    // which raises the count of the one event rather than adding another.
    h.node_status("small", "True", ("2", "1Gi", "110")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = h.events("big").await;
        let same: Vec<_> = events.iter().filter(|e| e.2 == message).collect();
        assert_eq!(same.len(), 1, "one aggregated event: {events:?}");
        if same[0].3 >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not retried: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another node too small changes the message, and so the pod's condition.
    h.ready_node("small2", "1", "1Gi").await;
    let message = "0/2 nodes are available: 2 Insufficient memory.";
    h.wait_pod("big", "reported on two nodes", |p| {
        scheduled(p).is_some_and(|c| c.2 == message)
    })
    .await;
    h.wait_event("big", "FailedScheduling", message).await;

    h.ready_node("large", "4", "8Gi").await;
    assert_eq!(h.bound("big").await, "large");
    h.wait_event(
        "big",
        "Scheduled",
        "Successfully assigned default/big to large",
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn node_selectors_and_taints_are_respected() {
    let h = Harness::start().await;
    let control_plane =
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    h.node(
        "cp",
        json!({"role": "cp"}),
        control_plane,
        ("4", "8Gi", "110"),
        "True",
    )
    .await;
    h.node("plain", json!({}), json!([]), ("4", "8Gi", "110"), "True")
        .await;
    h.node(
        "ssd",
        json!({"disk": "ssd"}),
        json!([]),
        ("4", "8Gi", "110"),
        "True",
    )
    .await;

    h.pod("wants-ssd", json!({"nodeSelector": {"disk": "ssd"}}))
        .await;
    assert_eq!(h.bound("wants-ssd").await, "ssd");
    for name in ["a", "b", "c", "d"] {
        h.pod(name, json!({})).await;
    }
    for name in ["a", "b", "c", "d"] {
        assert_ne!(h.bound(name).await, "cp", "{name} went to the tainted node");
    }

    h.pod("wants-cp", json!({"nodeSelector": {"role": "cp"}}))
        .await;
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector.";
    h.unschedulable("wants-cp", message).await;
    h.wait_event("wants-cp", "FailedScheduling", message).await;

    h.pod(
        "tolerates-cp",
        json!({"nodeSelector": {"role": "cp"}, "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}),
    )
    .await;
    assert_eq!(h.bound("tolerates-cp").await, "cp");
    h.stop().await;
}

#[tokio::test]
async fn host_port_conflicts_keep_a_pod_pending_until_the_port_is_free() {
    let h = Harness::start().await;
    h.ready_node("n1", "4", "8Gi").await;
    let port = json!({"containers": [{"name": "main", "image": "busybox",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    h.pod("first", port.clone()).await;
    assert_eq!(h.bound("first").await, "n1");
    h.pod("second", port).await;
    let message =
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.";
    h.unschedulable("second", message).await;
    h.wait_event("second", "FailedScheduling", message).await;

    // The port is freed when the first pod goes (force, as no agent confirms the deletion).
    h.pods()
        .delete(
            "first",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("deleted");
    assert_eq!(h.bound("second").await, "n1");
    h.stop().await;
}

#[tokio::test]
async fn two_pods_never_take_one_nodes_last_slot() {
    let h = Harness::start().await;
    h.node("one-slot", json!({}), json!([]), ("4", "8Gi", "1"), "True")
        .await;
    for name in ["x", "y"] {
        h.pod(name, json!({})).await;
    }
    // One of them is bound first; never both.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (bound, waiting) = loop {
        let x = h.pods().get("x").await.expect("x");
        let y = h.pods().get("y").await.expect("y");
        match (node_of(&x), node_of(&y)) {
            (Some(_), Some(_)) => panic!("both pods were bound to the one slot"),
            (Some(_), None) => break ("x", "y"),
            (None, Some(_)) => break ("y", "x"),
            (None, None) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "neither pod bound in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The other was judged with the first counted on the node, and stays unbound.
    let message = "0/1 nodes are available: 1 Too many pods.";
    h.unschedulable(waiting, message).await;
    h.wait_event(waiting, "FailedScheduling", message).await;
    assert_eq!(h.bound(bound).await, "one-slot");
    h.stop().await;
}

#[tokio::test]
async fn a_node_that_is_not_ready_takes_pods_once_ready() {
    let h = Harness::start().await;
    h.node("late", json!({}), json!([]), ("4", "8Gi", "110"), "False")
        .await;
    h.pod("early", json!({})).await;
    let message = "0/1 nodes are available: 1 node(s) had untolerated taint(s).";
    h.unschedulable("early", message).await;
    h.node_status("late", "True", ("4", "8Gi", "110")).await;
    assert_eq!(h.bound("early").await, "late");
    h.stop().await;
}

#[tokio::test]
async fn without_nodes_the_pod_says_so() {
    let h = Harness::start().await;
    h.pod("lonely", json!({})).await;
    h.unschedulable("lonely", "no nodes available to schedule pods")
        .await;
    h.ready_node("n1", "1", "1Gi").await;
    assert_eq!(h.bound("lonely").await, "n1");
    h.stop().await;
}
