//! The one Skiff binary: `skiff server` runs the control plane, `skiff image` manages the node's
//! images; more verbs come with the node agent and the CLI.

mod agent;
mod image;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "Kubernetes-compatible pods in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server, store, controllers) on this machine.
    Server(ServerArgs),
    /// Manage the node's images: import, pull, ls, inspect, rm, prune.
    Image(image::ImageArgs),
    /// Run the node agent on this machine, joined to the API server at --server.
    Agent(agent::AgentArgs),
    /// kubectl, built in (`skiff kubectl get po`; also `skiff get po`, or this binary
    /// invoked through a `kubectl` symlink).
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Helper processes the node agent starts; not for users.
    #[command(hide = true, subcommand)]
    Internal(Internal),
}

#[derive(Subcommand)]
enum Internal {
    /// PID 1 of a pod's shared PID namespace.
    Pause {
        /// The sandbox it holds: lets the agent check a pid is really its pause process.
        sandbox_id: String,
    },
    /// The monitor of one container, in the foreground (for debugging by hand); with
    /// `--launcher`, the process that forks the agent's monitors.
    Monitor {
        /// The container's directory (bundle, monitor.json, status.json); with `--launcher`,
        /// the directory of all containers.
        dir: PathBuf,
        /// Serve the agent's requests to fork monitors (on stdin).
        #[arg(long)]
        launcher: bool,
    },
    /// A command in a running container, as the OCI runtime's exec runs it (started by the
    /// node agent for `kubectl exec`).
    Exec {
        /// The exec's OCI process (args, env, user, capabilities, ...).
        #[arg(long)]
        process: PathBuf,
        /// Where the command's host pid is written.
        #[arg(long)]
        pid_file: PathBuf,
        /// The container's directory.
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the database, certificates, token and kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address the HTTPS API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: String,
    /// Port of the HTTPS API (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Extra host names or IP addresses for the serving certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Do not run a node agent inside the server (a control-plane-only machine).
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler inside the server (pods then wait for another one to bind them).
    #[arg(long)]
    disable_scheduler: bool,
    /// The name of this machine's Node (default: the host name, lowercased).
    #[arg(long)]
    node_name: Option<String>,
    #[command(flatten)]
    node: agent::NodeOptions,
    /// The prefix length of each node's share of --cluster-cidr (its spec.podCIDR).
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Do not give Nodes a podCIDR (another controller does).
    #[arg(long)]
    disable_node_ipam: bool,
    /// Log filter, as RUST_LOG (e.g. `info`, `skiff_apiserver=debug`).
    #[arg(long, default_value = "info", env = "SKIFF_LOG")]
    log: String,
}

fn main() -> std::process::ExitCode {
    // kubectl by name: as a `kubectl` symlink, `skiff kubectl ...`, or `skiff get ...`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args.first().map(PathBuf::from);
    if invoked_as.and_then(|p| p.file_name().map(|n| n == "kubectl")) == Some(true) {
        return skiff_cli::run(args.split_off(1));
    }
    if args.get(1).is_some_and(|a| a == "kubectl") {
        return skiff_cli::run(args.split_off(2));
    }
    if skiff_cli::is_kubectl_command(&args[1.min(args.len())..]) {
        return skiff_cli::run(args.split_off(1));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server(args),
        Command::Image(args) => image::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Kubectl { args } => return skiff_cli::run(args),
        Command::Internal(Internal::Pause { .. }) => return skiff_runtime::sandbox::pause::main(),
        Command::Internal(Internal::Monitor { launcher: true, .. }) => {
            return skiff_runtime::container::launcher::serve()
        }
        Command::Internal(Internal::Monitor { dir, .. }) => {
            return skiff_runtime::container::monitor::main(&dir)
        }
        Command::Internal(Internal::Exec {
            process,
            pid_file,
            dir,
        }) => return skiff_runtime::container::nsexec::main(&dir, &process, &pid_file),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that went away (`skiff image ls | head -1`) is not an error to report.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without a backtrace; a cause whose text the message
/// already holds (errors that print their source) is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            Some(e.kind())
        } else {
            cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
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
    let started = std::time::Instant::now();
    // Refused before anything starts: a cluster CIDR that cannot hold a node's subnet.
    let cluster_cidr = args.node.cluster_cidr(args.node_cidr_mask_size)?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
        let _lock = lock_data_dir(&args.data_dir)?;
        let db = args.data_dir.join("db").join("state.db");
        let store = skiff_store::SqliteStore::open(&db)
            .with_context(|| format!("cannot open the store at {}", db.display()))?;
        let store: Arc<dyn skiff_store::Store> = store;
        let config = skiff_apiserver::Config {
            data_dir: args.data_dir.clone(),
            bind_address: args.bind_address.clone(),
            port: args.https_listen_port,
            tls_sans: args.tls_san.clone(),
        };
        let server = skiff_apiserver::ApiServer::bind(&config, store)
            .await
            .context("cannot start the API server")?;
        let _agent = if args.disable_agent {
            None
        } else {
            Some(agent::start_in_server(
                    &server.url,
                    &args.data_dir,
                    args.node_name.clone(),
                    &args.node,
                )
                .await?)
        };
        let _scheduler = if args.disable_scheduler {
            None
        } else {
            let client = skiff_scheduler::client_from_kubeconfig(&server.kubeconfig)
                .await
                .context("cannot start the scheduler")?;
            Some(tokio::spawn(skiff_scheduler::run(client, std::future::pending())))
        };
        let _node_ipam = if args.disable_node_ipam {
            None
        } else {
            let client = skiff_scheduler::client_from_kubeconfig(&server.kubeconfig)
                .await
                .context("cannot start the node IPAM controller")?;
            Some(tokio::spawn(skiff_net::node_ipam::run(client, cluster_cidr)))
        };
        tracing::info!(url = %server.url, "ready in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        // Tests and scripts wait for these two lines.
        println!("Skiff API server listening on {}", server.url);
        println!("Admin kubeconfig: {}", server.kubeconfig.display());
        // Once, at start: what another machine needs to join (also in <data-dir>/node-token).
        println!(
            "Join another machine with: skiff agent --server {} --token {}",
            server.url, server.join_token
        );
        if server.address.ip().is_loopback() {
            println!("(this server listens on {} only: to join other machines, start it with --bind-address 0.0.0.0 --tls-san <this machine's address> and use that address in --server)", server.address.ip());
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        server
            .serve(shutdown_signal())
            .await
            .context("the API server failed")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// One server per data dir: a second one would share the database and the certificates. The
/// lock is released when the process ends, however it ends.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another skiff server is already using {}; stop it first, or start this one with a different --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
