//! Entering a pod's network namespace from an agent thread (sockets made there belong to the
//! pod's network: probes, port-forward).

use std::os::fd::AsFd;
use std::path::Path;

/// Moves the calling thread into the network namespace whose file is `netns` (a sandbox's
/// `ns/net`); the error says which namespace and why.
pub(crate) fn enter(netns: &Path) -> Result<(), String> {
    let file = std::fs::File::open(netns)
        .map_err(|e| format!("cannot open network namespace {}: {e}", netns.display()))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|e| format!("cannot enter network namespace {}: {e}", netns.display()))
}
