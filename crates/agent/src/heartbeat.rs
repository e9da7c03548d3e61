//! Node registration and the two heartbeats kubelet sends: the Node's status every
//! `status_interval` and the Lease in kube-node-lease every `lease_interval`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

use crate::node::{node_object, node_status, NodeFacts};
use crate::{AgentConfig, Error, Result};

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// Where the node's streaming server answers, as the Node publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub port: u16,
    /// SHA-256 of its certificate (hex), which the API server pins.
    pub cert_sha256: String,
}

/// Registers, then heartbeats forever; failures are logged and retried with a short pause.
pub async fn run(client: kube::Client, config: AgentConfig, endpoint: Option<Endpoint>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let name = config.node_name.as_str();
    let mut retry = Duration::from_millis(200);
    let mut node = loop {
        let facts = config.facts();
        match register(&nodes, &config, &facts, endpoint.as_ref()).await {
            Ok(node) => break node,
            Err(e) => {
                tracing::warn!(node = name, error = %e, "cannot register the node; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    };
    tracing::info!(node = name, "node registered");
    let mut status_tick = tokio::time::interval(config.status_interval);
    let mut lease_tick = tokio::time::interval(config.lease_interval);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both ticks fire at once first: the lease exists as soon as the node does.
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = status_tick.tick() => {
                let facts = config.facts();
                match post_status(&nodes, &config, &facts, endpoint.as_ref(), &node).await {
                    Ok(updated) => node = updated,
                    Err(e) => tracing::warn!(node = name, error = %e, "cannot post the node status"),
                }
            }
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&leases, &config, &node).await {
                    tracing::warn!(node = name, error = %e, "cannot renew the node lease");
                }
            }
        }
    }
}

/// Creates the Node, or adopts the existing one (a restart, or a node that was here before)
/// and refreshes its labels; then posts its status.
pub async fn register(
    nodes: &Api<Node>,
    config: &AgentConfig,
    facts: &NodeFacts,
    endpoint: Option<&Endpoint>,
) -> Result<Node> {
    let name = &config.node_name;
    let mut wanted = node_object(name, facts);
    if let Some(endpoint) = endpoint {
        wanted.metadata.annotations = Some(std::collections::BTreeMap::from([(
            crate::streaming::SERVING_CERT_ANNOTATION.to_string(),
            endpoint.cert_sha256.clone(),
        )]));
    }
    let node = match nodes.create(&PostParams::default(), &wanted).await {
        Ok(node) => node,
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let patch = serde_json::json!({"metadata": {
                "labels": wanted.metadata.labels,
                "annotations": wanted.metadata.annotations,
            }});
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_error(format!("update the labels of node {name}")))?
        }
        Err(e) => return Err(api_error(format!("create node {name}"))(e)),
    };
    post_status(nodes, config, facts, endpoint, &node).await
}

/// Posts the node's status (a merge patch of nodes/status: the agent owns every field it sets).
pub async fn post_status(
    nodes: &Api<Node>,
    config: &AgentConfig,
    facts: &NodeFacts,
    endpoint: Option<&Endpoint>,
    current: &Node,
) -> Result<Node> {
    let mut status = node_status(
        facts,
        config.max_pods,
        Timestamp::now(),
        current.status.as_ref(),
    );
    if let Some(endpoint) = endpoint {
        status.daemon_endpoints = Some(k8s_openapi::api::core::v1::NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(endpoint.port),
            }),
        });
    }
    let patch = serde_json::json!({"status": status});
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_error(format!(
            "patch the status of node {}",
            config.node_name
        )))
}

/// Creates or renews `kube-node-lease/<node>`, owned by the Node so it goes with it.
pub async fn renew_lease(leases: &Api<Lease>, config: &AgentConfig, node: &Node) -> Result<Lease> {
    let name = &config.node_name;
    let now = MicroTime(Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(config.lease_duration_seconds),
        renew_time: Some(now),
        ..LeaseSpec::default()
    };
    let existing = leases
        .get_opt(name)
        .await
        .map_err(api_error(format!("read lease {LEASE_NAMESPACE}/{name}")))?;
    match existing {
        Some(mut lease) => {
            let mut new_spec = spec;
            new_spec.acquire_time = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
            lease.spec = Some(new_spec);
            leases
                .replace(name, &PostParams::default(), &lease)
                .await
                .map_err(api_error(format!("renew lease {LEASE_NAMESPACE}/{name}")))
        }
        None => {
            let owner = node.metadata.uid.clone().map(|uid| OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid,
                ..OwnerReference::default()
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    acquire_time: spec.renew_time.clone(),
                    ..spec
                }),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map_err(api_error(format!("create lease {LEASE_NAMESPACE}/{name}")))
        }
    }
}
