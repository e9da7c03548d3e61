//! `skiff agent`: the node agent joined to a remote API server, and the agent `skiff server`
//! runs for its own machine.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The API server's URL, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "SKIFF_SERVER")]
    server: String,
    /// The join token the server printed (its `<data-dir>/node-token`,
    /// `K10<CA hash>::server:<secret>`): the agent checks the server's CA against it and obtains
    /// the node's own credentials with it. The admin token works too, with --ca-file.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: String,
    /// The CA certificate that signed the server's certificate (the server's
    /// `<data-dir>/tls/ca.crt`). Not needed with a K10 join token; without either, the system's
    /// roots are used.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate (for trials only).
    #[arg(long)]
    insecure_skip_tls_verify: bool,
    /// Where the node's images and pods live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// The Node's name (default: the host name, lowercased).
    #[arg(long)]
    node_name: Option<String>,
    /// How many pods this node runs at most (its `pods` capacity).
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    #[command(flatten)]
    node: NodeOptions,
    /// Log filter, as RUST_LOG.
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    log: String,
}

/// How the node runs its pods: `skiff agent` and the agent inside `skiff server` take these.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeOptions {
    /// The OCI runtime that runs containers. crun starts them faster but refuses hosts whose
    /// cgroups are in hybrid mode with controllers on the v2 hierarchy (then use runc).
    #[arg(long, value_enum, default_value_t = ContainerRuntime::Runc)]
    container_runtime: ContainerRuntime,
    /// The most processes (threads) one pod may run, set on the pod's cgroup (kubelet's
    /// --pod-max-pids); default: no limit.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    pod_max_pids: Option<i64>,
    /// The node's IP address (its InternalIP, and where its streaming server listens); default:
    /// the address of the default route, the streaming server on every address.
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// The port of the node's streaming server (logs, exec, port-forward); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    streaming_port: u16,
    /// The network pod addresses come from: the server gives each node a subnet of it
    /// (--node-cidr-mask-size); the agent masquerades traffic from it to outside it. Agents and
    /// the server must agree.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The bridge the node's pods are attached to (created if missing).
    #[arg(long, default_value = "skiff0")]
    bridge_name: String,
    /// The node's nftables table (family ip) for masquerade and hostPorts.
    #[arg(long, default_value = "skiff")]
    nft_table: String,
    /// Give pods no network but their loopback (no bridge, no nftables, no podCIDR needed).
    #[arg(long, conflicts_with = "cni_conf_dir")]
    disable_pod_network: bool,
    /// Network pods with CNI plugins instead of the built-in bridge: the first *.conflist,
    /// *.conf or *.json here in lexical order is the network (as kubelet and k3s take it). The
    /// plugins own addressing; no bridge, nftables table or podCIDR of the agent's own. Needs
    /// --cni-bin-dir.
    #[arg(long, requires = "cni_bin_dir")]
    cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins' executables are (a list like PATH, e.g. /opt/cni/bin or
    /// /usr/lib/cni). Needs --cni-conf-dir.
    #[arg(long, requires = "cni_conf_dir")]
    cni_bin_dir: Option<std::ffi::OsString>,
    /// Remount the cgroup v2 hierarchy with favordynmods (Linux 6.0) at start, so that moving
    /// each new container into its cgroup does not wait ~10 ms for an RCU grace period; forks
    /// and exits cost a little more. A kernel-wide setting, as kubelet's sysctls are.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cgroup_favordynmods: bool,
    /// Give containers that name no seccompProfile the RuntimeDefault profile (kubelet's
    /// seccompDefault); false leaves them Unconfined.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    seccomp_default: bool,
    /// Unsafe sysctls (or patterns ending in *, e.g. 'kernel.msg*,net.core.somaxconn') pods
    /// may set beside the safe ones (kubelet's --allowed-unsafe-sysctls); each must be
    /// namespaced (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*).
    #[arg(long, value_delimiter = ',')]
    allowed_unsafe_sysctls: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ContainerRuntime {
    Runc,
    Crun,
}

impl NodeOptions {
    /// The cluster CIDR, checked: a valid network holding at least one node subnet of
    /// `/node_prefix`.
    pub fn cluster_cidr(&self, node_prefix: u8) -> anyhow::Result<skiff_net::ClusterCidr> {
        skiff_net::ClusterCidr::parse(&self.cluster_cidr, node_prefix)
            .with_context(|| format!("invalid --cluster-cidr {:?}", self.cluster_cidr))
    }

    fn apply(&self, config: &mut skiff_agent::AgentConfig) -> anyhow::Result<()> {
        config.container_runtime = match self.container_runtime {
            ContainerRuntime::Runc => skiff_runtime::container::RuntimeKind::Runc,
            ContainerRuntime::Crun => skiff_runtime::container::RuntimeKind::Crun,
        };
        config.pod_pids_limit = self.pod_max_pids;
        config.node_ip = self.node_ip;
        config.streaming_port = self.streaming_port;
        config.favor_dynamic_cgroups = self.cgroup_favordynmods;
        config.seccomp_default = self.seccomp_default;
        let unsafe_sysctls: Vec<String> = self
            .allowed_unsafe_sysctls
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        config.sysctls = skiff_agent::SysctlAllowlist::new(&unsafe_sysctls)
            .map_err(|e| anyhow::anyhow!("invalid --allowed-unsafe-sysctls: {e}"))?;
        if let (Some(conf_dir), Some(bin_dir)) = (&self.cni_conf_dir, &self.cni_bin_dir) {
            anyhow::ensure!(
                conf_dir.is_dir(),
                "invalid --cni-conf-dir {}: not a directory",
                conf_dir.display()
            );
            let bin_dirs: Vec<PathBuf> = std::env::split_paths(bin_dir)
                .filter(|d| !d.as_os_str().is_empty())
                .collect();
            anyhow::ensure!(!bin_dirs.is_empty(), "--cni-bin-dir is empty");
            for dir in &bin_dirs {
                anyhow::ensure!(
                    dir.is_dir(),
                    "invalid --cni-bin-dir {}: not a directory",
                    dir.display()
                );
            }
            config.pod_network = Some(skiff_agent::PodNetworkConfig::Cni {
                conf_dir: conf_dir.clone(),
                bin_dirs,
                cluster_cidr: self.cluster_cidr(30)?.cluster,
            });
        } else if !self.disable_pod_network {
            // The agent does not know the server's --node-cidr-mask-size; /30 accepts any.
            let cluster = self.cluster_cidr(30)?;
            anyhow::ensure!(
                !self.bridge_name.is_empty() && self.bridge_name.len() <= 15,
                "invalid --bridge-name {:?}: an interface name has 1 to 15 characters",
                self.bridge_name
            );
            config.pod_network = Some(skiff_agent::PodNetworkConfig::Bridge {
                bridge: self.bridge_name.clone(),
                nft_table: self.nft_table.clone(),
                cluster_cidr: cluster.cluster,
            });
        }
        Ok(())
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).context("invalid --log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
        let name = args
            .node_name
            .unwrap_or_else(skiff_agent::default_node_name);
        // The node's flags are checked before the join: a bad one is reported at once.
        let mut config = skiff_agent::AgentConfig::new(name.clone(), &args.data_dir);
        config.max_pods = args.max_pods;
        args.node.apply(&mut config)?;
        let joined = skiff_agent::join(&skiff_agent::client::JoinOptions {
            server: &args.server,
            token: &args.token,
            ca_file: args.ca_file.as_deref(),
            insecure_skip_tls_verify: args.insecure_skip_tls_verify,
            node_name: &name,
            data_dir: &args.data_dir,
        })
        .await
        .context("cannot join the cluster")?;
        // The CA the join trusted (--ca-file, or fetched and checked against the token): it
        // also signed the API server's client certificate for the node's streaming server.
        config.cluster_ca_pem = joined.ca_pem;
        let client = joined.client;
        tracing::info!(node = %config.node_name, server = %args.server, "node agent starting");
        let runtime = skiff_agent::node_runtime(&config)?;
        skiff_agent::Agent::new(client, config)
            .with_runtime(runtime)
            .run(crate::shutdown_signal())
            .await?;
        Ok(())
    })
}

/// Starts this machine's agent beside the API server at `server_url`. It joins as any other
/// node does (k3s' way): with the server's join token and CA from `data_dir`, it obtains its own
/// node credentials, so it is held to the node authorizer's rules too. Joining retries until the
/// server answers, so this may be called before `serve`. The task ends with the process (the
/// pods it runs outlive it by design).
pub async fn start_in_server(
    server_url: &str,
    data_dir: &Path,
    node_name: Option<String>,
    options: &NodeOptions,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token_path = data_dir.join("node-token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read the join token {}", token_path.display()))?;
    let name = node_name.unwrap_or_else(skiff_agent::default_node_name);
    let mut config = skiff_agent::AgentConfig::new(name, data_dir);
    options.apply(&mut config)?;
    // The server's own CA, which signed its client certificate for the node's streaming server.
    let ca = data_dir.join("tls/ca.crt");
    config.cluster_ca_pem = Some(
        std::fs::read_to_string(&ca)
            .with_context(|| format!("cannot read the cluster CA {}", ca.display()))?,
    );
    let runtime = skiff_agent::node_runtime(&config).context("cannot start the node agent")?;
    let server_url = server_url.to_string();
    let ca_file = data_dir.join("tls").join("ca.crt");
    Ok(tokio::spawn(async move {
        let joined = skiff_agent::join(&skiff_agent::client::JoinOptions {
            server: &server_url,
            token: token.trim(),
            ca_file: Some(&ca_file),
            insecure_skip_tls_verify: false,
            node_name: &config.node_name,
            data_dir: &config.data_dir,
        })
        .await;
        let client = match joined {
            Ok(joined) => joined.client,
            Err(e) => {
                tracing::error!(node = %config.node_name, error = %e, "the node agent cannot join; this machine runs no pods");
                return;
            }
        };
        if let Err(e) = skiff_agent::Agent::new(client, config)
            .with_runtime(runtime)
            .run(std::future::pending())
            .await
        {
            tracing::error!(error = %e, "the node agent stopped");
        }
    }))
}
