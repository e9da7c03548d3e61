//! Scheduler latency and throughput against an in-process API server: pod created → binding
//! seen in a watch, one pod at a time (p50/p99) and for a burst of pods created at once.
//!
//! `cargo run --release -p skiff-scheduler --example scheduler_bench -- [PODS] [NODES]`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio::sync::mpsc;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let node_count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = skiff_store::SqliteStore::open(&dir.path().join("db/state.db")).expect("store");
    let config = skiff_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        bind_address: "127.0.0.1".into(),
        port: 0,
        tls_sans: vec![],
    };
    let server = skiff_apiserver::ApiServer::bind(&config, store.clone())
        .await
        .expect("server binds");
    let kubeconfig = server.kubeconfig.clone();
    tokio::spawn(server.serve(std::future::pending()));
    let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig)
        .await
        .expect("client");
    tokio::spawn(skiff_scheduler::run(client.clone(), std::future::pending()));

    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..node_count {
        let resources =
            json!({"cpu": "64", "memory": "256Gi", "ephemeral-storage": "1Ti", "pods": "1000"});
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("node-{i:03}")},
            "status": {"capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node created");
    }

    // A watch reports when each pod is first seen bound.
    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    tokio::spawn(async move {
        let stream = watcher(pod_api, watcher::Config::default());
        tokio::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some()
                {
                    let _ = bound_tx.send((pod.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let new_pod = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "busybox",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
        }))
        .expect("pod")
    };
    // Warm-up: the watches are established and the nodes seen.
    pods_api
        .create(&PostParams::default(), &new_pod("warm-up"))
        .await
        .expect("create");
    while let Some((name, _)) = bound_rx.recv().await {
        if name == "warm-up" {
            break;
        }
    }

    let mut latencies = Vec::with_capacity(pods);
    for i in 0..pods {
        let name = format!("one-{i}");
        let sent = Instant::now();
        pods_api
            .create(&PostParams::default(), &new_pod(&name))
            .await
            .expect("create");
        loop {
            let (seen, at) = bound_rx.recv().await.expect("watch runs");
            if seen == name {
                latencies.push(at - sent);
                break;
            }
        }
    }
    latencies.sort();
    println!(
        "one at a time, {pods} pods on {node_count} nodes: created → bound p50 {}, p99 {}, max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("pods"))
    );

    let start = Instant::now();
    let mut sent = HashMap::new();
    for i in 0..pods {
        let name = format!("burst-{i}");
        sent.insert(name.clone(), Instant::now());
        pods_api
            .create(&PostParams::default(), &new_pod(&name))
            .await
            .expect("create");
    }
    let mut latencies = Vec::with_capacity(pods);
    while latencies.len() < pods {
        let (seen, at) = bound_rx.recv().await.expect("watch runs");
        if let Some(created) = sent.remove(&seen) {
            latencies.push(at - created);
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    println!(
        "burst of {pods} pods: all bound in {} ({:.0} pods/s), created → bound p50 {}, p99 {}",
        ms(elapsed),
        pods as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    store.close();
}
