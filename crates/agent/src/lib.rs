//! The node agent (Skiff's kubelet): registers its Node, renews its Lease, and runs the pods
//! bound to it through `skiff-runtime`.

pub mod client;
pub mod events;
pub mod fake;
pub mod lifecycle;
pub mod node;
pub mod node_routes;
pub mod node_runtime;
pub mod pod_network;
pub mod probe;
pub mod pull_secrets;
pub mod runtime;
pub mod status;
pub mod streaming;
pub mod worker;

mod heartbeat;
mod netns;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use client::{client_for_server, client_from_kubeconfig, join, Joined};
pub use skiff_api::sysctl::SysctlAllowlist;

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
    #[error("cannot open the node's runtime: {message}")]
    Runtime { message: String },
    #[error("cannot {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid --token: {0}")]
    Token(#[from] skiff_api::join_token::TokenError),
    #[error(
        "the CA certificate served by {server} does not match the join token (its sha256 is \
         {served}, the token expects {expected}): this is not the server the token was made \
         for, or someone is in between; check --server and --token"
    )]
    CaMismatch {
        server: String,
        served: String,
        expected: String,
    },
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{server} refused to give node {node} its credentials: {message}")]
    Join {
        server: String,
        node: String,
        message: String,
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
    /// The most processes one pod may run (kubelet's `--pod-max-pids`); None: unlimited.
    pub pod_pids_limit: Option<i64>,
    /// The OCI runtime that runs containers.
    pub container_runtime: skiff_runtime::container::RuntimeKind,
    /// The node's address (kubelet's `--node-ip`): its InternalIP and where the streaming
    /// server listens. None: the address of the default route, and the streaming server on all.
    pub node_ip: Option<std::net::IpAddr>,
    /// The streaming server's port (kubelet's 10250); 0: any free one.
    pub streaming_port: u16,
    /// The cluster CA (PEM): the streaming server accepts only the API server's client
    /// certificate signed by it. None: no streaming server (no logs, exec, port-forward).
    pub cluster_ca_pem: Option<String>,
    /// The built-in pod network; None: pods have only their loopback.
    pub pod_network: Option<PodNetworkConfig>,
    /// Remount the cgroup v2 hierarchy with `favordynmods` at start (ADR 010).
    pub favor_dynamic_cgroups: bool,
    /// Containers that name no seccomp profile get RuntimeDefault (kubelet's
    /// `seccompDefault`; ADR 013).
    pub seccomp_default: bool,
    /// The sysctls pods may set: kubelet's safe ones and `--allowed-unsafe-sysctls`; a pod
    /// with another is rejected (`SysctlForbidden`).
    pub sysctls: skiff_api::sysctl::SysctlAllowlist,
}

/// How the node's pods are networked.
#[derive(Clone, Debug)]
pub enum PodNetworkConfig {
    /// The built-in bridge network (ADR 008).
    Bridge {
        /// The bridge pods are attached to (default `skiff0`).
        bridge: String,
        /// The nftables table of the node (default `skiff`).
        nft_table: String,
        /// The cluster CIDR (the server's `--cluster-cidr`): traffic from it to outside it is
        /// masqueraded.
        cluster_cidr: skiff_net::Ipv4Cidr,
    },
    /// A chain of CNI plugins (ADR 011): the network is the first configuration in
    /// `conf_dir`, plugins are found in `bin_dirs`.
    Cni {
        conf_dir: PathBuf,
        bin_dirs: Vec<PathBuf>,
        /// The cluster CIDR: the host-gateway routes kept when the network's addresses come
        /// from the Node's podCIDR (its `ipRanges` capability) lie in it.
        cluster_cidr: skiff_net::Ipv4Cidr,
    },
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
            pod_pids_limit: None,
            container_runtime: skiff_runtime::container::RuntimeKind::Runc,
            node_ip: None,
            streaming_port: 10250,
            cluster_ca_pem: None,
            pod_network: None,
            favor_dynamic_cgroups: true,
            seccomp_default: true,
            sysctls: skiff_api::sysctl::SysctlAllowlist::default(),
        }
    }

    /// The facts of this machine, with the configured node address.
    pub fn facts(&self) -> node::NodeFacts {
        let mut facts = node::NodeFacts::gather(&self.data_dir);
        if let Some(ip) = self.node_ip {
            facts.internal_ip = ip;
        }
        facts
    }
}

/// The node agent: one per node.
pub struct Agent {
    client: kube::Client,
    config: AgentConfig,
    runtime: Option<Arc<dyn runtime::PodRuntime>>,
}

impl Agent {
    /// An agent that registers the node; pods run once [`Agent::with_runtime`] gives it a
    /// runtime.
    pub fn new(client: kube::Client, config: AgentConfig) -> Agent {
        Agent {
            client,
            config,
            runtime: None,
        }
    }

    /// Runs the pods bound to the node with `runtime`.
    pub fn with_runtime(mut self, runtime: Arc<dyn runtime::PodRuntime>) -> Agent {
        self.runtime = Some(runtime);
        self
    }

    /// Registers the node and keeps its status and Lease fresh until `shutdown` resolves. API
    /// errors are logged and retried: the API server may be starting or briefly away, and the
    /// node's pods keep running meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let streaming = self.start_streaming().await?;
        let endpoint = streaming.as_ref().map(|(e, _)| e.clone());
        let heartbeat = heartbeat::run(self.client.clone(), self.config.clone(), endpoint);
        let (configured_tx, mut configured) = tokio::sync::watch::channel(false);
        let network = match &self.runtime {
            Some(runtime) if runtime.uses_pod_cidr() => {
                Some(tokio::spawn(pod_network::configure_when_assigned(
                    self.client.clone(),
                    self.config.node_name.clone(),
                    runtime.clone(),
                    configured_tx,
                )))
            }
            _ => None,
        };
        // Routes to the other nodes' pods, when pods get addresses from the node's podCIDR: the
        // built-in network, or a CNI chain taking the `ipRanges` capability (any other chain
        // brings its own way across nodes).
        let routes = async {
            match (&self.runtime, &self.config.pod_network) {
                (
                    Some(runtime),
                    Some(
                        PodNetworkConfig::Bridge { cluster_cidr, .. }
                        | PodNetworkConfig::Cni { cluster_cidr, .. },
                    ),
                ) if runtime.uses_pod_cidr() => {
                    node_routes::keep_routes(
                        self.client.clone(),
                        self.config.node_name.clone(),
                        *cluster_cidr,
                    )
                    .await;
                }
                _ => std::future::pending().await,
            }
        };
        let pods = async {
            match &self.runtime {
                Some(runtime) => {
                    if network.is_some() {
                        // The server assigns the podCIDR right after the Node registers; pods
                        // started before it would wait for their next retry.
                        let _ = tokio::time::timeout(
                            pod_network::START_WAIT,
                            configured.wait_for(|done| *done),
                        )
                        .await;
                    }
                    let host_ip = self.config.facts().internal_ip.to_string();
                    let mut ctx = worker::WorkerContext::new(
                        self.client.clone(),
                        self.config.node_name.clone(),
                        host_ip,
                        runtime.clone(),
                    );
                    ctx.sysctls = self.config.sysctls.clone();
                    worker::run(Arc::new(ctx)).await;
                    tracing::error!(node = %self.config.node_name, "the watch of the node's pods ended");
                }
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            () = heartbeat => Ok(()),
            () = pods => Ok(()),
            () = routes => Ok(()),
            () = shutdown => {
                tracing::info!(node = %self.config.node_name, "node agent stopping");
                Ok(())
            }
        };
        if let Some((_, task)) = streaming {
            task.abort();
        }
        if let Some(task) = network {
            task.abort();
        }
        result
    }
}

impl Agent {
    /// Binds the streaming server (when the agent runs pods and knows the cluster CA) and
    /// serves it on a task; [`Agent::run`] aborts it when it returns.
    async fn start_streaming(
        &self,
    ) -> Result<Option<(heartbeat::Endpoint, tokio::task::JoinHandle<()>)>> {
        let (Some(runtime), Some(ca)) = (&self.runtime, &self.config.cluster_ca_pem) else {
            return Ok(None);
        };
        let ip = self
            .config
            .node_ip
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let facts = self.config.facts();
        let names = vec![
            facts.internal_ip.to_string(),
            self.config.node_name.clone(),
            facts.hostname.clone(),
        ];
        let server = streaming::StreamingServer::bind(
            std::net::SocketAddr::new(ip, self.config.streaming_port),
            &self.config.data_dir.join("agent-tls"),
            &names,
            ca,
        )
        .await
        .map_err(|e| Error::Runtime {
            message: e.to_string(),
        })?;
        let endpoint = heartbeat::Endpoint {
            port: server.port,
            cert_sha256: server.cert_sha256.clone(),
        };
        tracing::info!(node = %self.config.node_name, port = server.port, "streaming server listening");
        let ctx = Arc::new(streaming::StreamingContext {
            client: self.client.clone(),
            runtime: runtime.clone(),
            data_dir: self.config.data_dir.clone(),
            node_name: self.config.node_name.clone(),
        });
        Ok(Some((endpoint, tokio::spawn(server.serve(ctx)))))
    }
}

/// The runtime of this machine for an agent with `config`: containers run by runc under
/// monitors started from this very binary (`skiff internal monitor`).
pub fn node_runtime(config: &AgentConfig) -> Result<Arc<dyn runtime::PodRuntime>> {
    let facts = config.facts();
    let binary = std::env::current_exe().map_err(|source| Error::Runtime {
        message: format!("cannot find the skiff binary: {source}"),
    })?;
    let fields = node_runtime::NodeFields {
        node_name: config.node_name.clone(),
        host_ip: facts.internal_ip.to_string(),
        allocatable_millicpu: i64::try_from(facts.cpus).unwrap_or(1) * 1000,
        allocatable_memory: i64::try_from(facts.memory_kib).unwrap_or(0) * 1024,
        pod_pids_limit: config.pod_pids_limit,
        seccomp_default: config.seccomp_default,
    };
    skiff_runtime::container::check_runtime_supported(config.container_runtime).map_err(|e| {
        Error::Runtime {
            message: e.to_string(),
        }
    })?;
    if config.favor_dynamic_cgroups {
        favor_dynamic_cgroups();
    }
    let mut runtime =
        node_runtime::NodeRuntime::open(&config.data_dir, binary, config.container_runtime, fields)
            .map_err(|e| Error::Runtime { message: e.0 })?;
    if let Some(network) = &config.pod_network {
        let network: Arc<dyn skiff_net::PodNetwork> = match network {
            PodNetworkConfig::Bridge {
                bridge,
                nft_table,
                cluster_cidr,
            } => skiff_net::BridgeNetwork::new(skiff_net::BridgeConfig {
                data_dir: config.data_dir.clone(),
                bridge: bridge.clone(),
                nft_table: nft_table.clone(),
                cluster_cidr: *cluster_cidr,
            })
            .map(|n| Arc::new(n) as Arc<dyn skiff_net::PodNetwork>),
            PodNetworkConfig::Cni {
                conf_dir, bin_dirs, ..
            } => skiff_net::CniNetwork::new(skiff_net::CniConfig {
                data_dir: config.data_dir.clone(),
                conf_dir: conf_dir.clone(),
                bin_dirs: bin_dirs.clone(),
                plugin_timeout: skiff_net::cni::DEFAULT_PLUGIN_TIMEOUT,
            })
            .map(|n| Arc::new(n) as Arc<dyn skiff_net::PodNetwork>),
        }
        .map_err(|e| Error::Runtime {
            message: format!("cannot open the pod network: {e}"),
        })?;
        runtime = runtime.with_network(network);
    }
    Ok(Arc::new(runtime))
}

/// Makes cgroup moves cheap (ADR 010); says what it did, and never stops the agent: a kernel
/// older than 6.0 or a host that does not let the agent remount only makes starts slower.
fn favor_dynamic_cgroups() {
    use skiff_runtime::container::cgroup::{favor_dynamic_changes, Favor};
    match favor_dynamic_changes() {
        Ok(Favor::Already(_)) => {}
        Ok(Favor::Remounted(mount)) => tracing::info!(
            mount = %mount.display(),
            "cgroup v2 hierarchy remounted with favordynmods: containers start without waiting \
             for an RCU grace period (--cgroup-favordynmods=false leaves it alone)"
        ),
        Ok(Favor::NoV2Hierarchy) => tracing::info!(
            "no cgroup v2 hierarchy: each container start waits for an RCU grace period unless \
             the kernel runs with cgroup_favordynmods=true"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot turn on favordynmods: each container start waits for an RCU grace period"
        ),
    }
}

/// This machine's host name, lowercased as kubelet does for the default node name.
pub fn default_node_name() -> String {
    node::hostname().to_lowercase()
}
