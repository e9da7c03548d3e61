//! The node agent (Skiff's kubelet): registers its Node, renews its Lease, and runs the pods
//! bound to it through `skiff-runtime`.

pub mod client;
pub mod node;

mod heartbeat;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use client::{client_for_server, client_from_kubeconfig};

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build a client for {server}: {source}")]
    Client { server: String, source: kube::Error },
    #[error("cannot {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an agent runs: which node it is and how often it reports.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node's name (kubelet's `--hostname-override`).
    pub node_name: String,
    /// Where the agent's state lives (images, pods); its file system is the node's
    /// ephemeral-storage.
    pub data_dir: PathBuf,
    /// The `pods` capacity of the node.
    pub max_pods: u32,
    /// How often the Node's status is posted (kubelet's nodeStatusUpdateFrequency).
    pub status_interval: Duration,
    /// How often the Lease is renewed (kubelet renews every 10 s of a 40 s lease).
    pub lease_interval: Duration,
    /// The Lease's duration.
    pub lease_duration_seconds: i32,
}

impl AgentConfig {
    /// Kubelet's defaults for a node called `node_name`.
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            max_pods: 110,
            status_interval: Duration::from_secs(10),
            lease_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
        }
    }
}

/// The node agent: one per node.
pub struct Agent {
    client: kube::Client,
    config: AgentConfig,
}

impl Agent {
    pub fn new(client: kube::Client, config: AgentConfig) -> Agent {
        Agent { client, config }
    }

    /// Registers the node and keeps its status and Lease fresh until `shutdown` resolves. API
    /// errors are logged and retried: the API server may be starting or briefly away, and the
    /// node's pods keep running meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let heartbeat = heartbeat::run(self.client.clone(), self.config.clone());
        tokio::select! {
            () = heartbeat => Ok(()),
            () = shutdown => {
                tracing::info!(node = %self.config.node_name, "node agent stopping");
                Ok(())
            }
        }
    }
}

/// This machine's host name, lowercased as kubelet does for the default node name.
pub fn default_node_name() -> String {
    node::hostname().to_lowercase()
}
