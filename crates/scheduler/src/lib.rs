//! The scheduler: binds pending pods to ready nodes. Filter and score are pure functions over a
//! snapshot of nodes and pods; a loop watches the API server and binds through `pods/binding`.

pub mod filter;
pub mod resources;
pub mod schedule;
pub mod scheduling_loop;
pub mod score;

use std::path::{Path, PathBuf};

pub use schedule::{schedule, Cluster, FitError, Snapshot};
pub use scheduling_loop::{run, SCHEDULER_NAME};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot use the kubeconfig {path}: {source}")]
    UseKubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot build a Kubernetes client from {path}: {source}")]
    Client { path: PathBuf, source: kube::Error },
    #[error("cannot bind pod {pod} to node {node}: {source}")]
    Bind {
        pod: String,
        node: String,
        source: kube::Error,
    },
    #[error("cannot update the status of pod {pod}: {source}")]
    UpdateStatus { pod: String, source: kube::Error },
    #[error("cannot record an event for pod {pod}: {source}")]
    RecordEvent { pod: String, source: kube::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client for the API server named by a kubeconfig file (the server's admin kubeconfig when
/// the scheduler runs inside `skiff server`).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| Error::ReadKubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|source| Error::UseKubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    kube::Client::try_from(config).map_err(|source| Error::Client {
        path: path.to_path_buf(),
        source,
    })
}
