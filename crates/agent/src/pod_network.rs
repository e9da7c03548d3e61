//! Hands the Node's podCIDR (assigned by the server's node IPAM controller) to the runtime's pod
//! network once it appears, so sandboxes get addresses from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::runtime::PodRuntime;

/// How long the pod workers wait for the podCIDR before they start anyway (pods then retry
/// their sandbox with a `FailedCreatePodSandBox` event that says what is missing).
pub const START_WAIT: Duration = Duration::from_secs(5);
/// After this long without a podCIDR the agent says so in its log.
const WARN_AFTER: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

/// Polls the Node until it carries a podCIDR, configures the runtime's network with it, and
/// reports `true` on `configured`. Retries a failed configuration.
pub async fn configure_when_assigned(
    client: kube::Client,
    node_name: String,
    runtime: Arc<dyn PodRuntime>,
    configured: tokio::sync::watch::Sender<bool>,
) {
    let nodes: Api<Node> = Api::all(client);
    let started = Instant::now();
    let mut warned = false;
    loop {
        let pod_cidr = match nodes.get_opt(&node_name).await {
            Ok(node) => node.and_then(|n| n.spec).and_then(|s| s.pod_cidr),
            Err(e) => {
                tracing::debug!(node = %node_name, error = %e, "reading the node for its podCIDR");
                None
            }
        };
        if let Some(pod_cidr) = pod_cidr {
            let rt = runtime.clone();
            let cidr = pod_cidr.clone();
            match tokio::task::spawn_blocking(move || rt.configure_pod_network(&cidr)).await {
                Ok(Ok(())) => {
                    tracing::info!(node = %node_name, pod_cidr = %pod_cidr, "pod network ready");
                    let _ = configured.send(true);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(node = %node_name, pod_cidr = %pod_cidr, error = %e, "cannot set up the pod network; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    tracing::error!(node = %node_name, error = %e, "the pod network set-up failed")
                }
            }
        } else if !warned && started.elapsed() > WARN_AFTER {
            warned = true;
            tracing::warn!(node = %node_name, "the node has no podCIDR yet: its pods wait (is the server's --cluster-cidr full?)");
        }
        tokio::time::sleep(POLL).await;
    }
}
