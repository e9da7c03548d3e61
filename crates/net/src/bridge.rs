//! The built-in pod network of a node: a bridge holding the podCIDR's gateway address, one veth
//! pair per pod (the host end on the bridge, named from the sandbox id; the pod end `eth0`
//! inside the sandbox's namespace), an address from the podCIDR kept on disk, a default route
//! via the gateway, and the node's nftables table (masquerade, hostPorts).
//!
//! Under `<data-dir>/net/`: `ipam/` (the addresses in use) and `sandboxes/<id>.json` (what was
//! made for each sandbox, so teardown and the collection at start know what to remove).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use crate::cidr::Ipv4Cidr;
use crate::ipam::AddressBook;
use crate::netlink::{self, Netlink};
use crate::nft::NftTable;
use crate::{io_error, Error, HostPort, PodNetwork, PodNetworkRequest, PodNetworkStatus, Result};

/// Where and how the node's bridge network lives.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// The agent's data dir (`net/` beneath it).
    pub data_dir: PathBuf,
    /// The bridge's name (default `skiff0`).
    pub bridge: String,
    /// Our nftables table in the `ip` family (default `skiff`).
    pub nft_table: String,
    /// Traffic from here to outside it is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
}

/// What the network was configured with once the node's podCIDR was known.
#[derive(Clone, Copy, Debug)]
struct Configured {
    pod_cidr: Ipv4Cidr,
    gateway: Ipv4Addr,
    bridge_index: u32,
}

/// What was made for one sandbox (its record).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SandboxNetwork {
    address: Ipv4Addr,
    veth: String,
    #[serde(default)]
    host_ports: Vec<HostPort>,
}

/// The host end of a sandbox's veth pair: `sk` and the first 13 characters of its id (ids are
/// random hex; interface names hold at most 15 characters).
pub fn veth_name(sandbox_id: &str) -> String {
    let short: String = sandbox_id.chars().take(13).collect();
    format!("sk{short}")
}

/// The node's bridge network.
pub struct BridgeNetwork {
    config: BridgeConfig,
    addresses: AddressBook,
    records: PathBuf,
    table: NftTable,
    configured: RwLock<Option<Configured>>,
    /// Why the last [`BridgeNetwork::configure`] failed, for the pods that wait meanwhile.
    configure_error: Mutex<Option<String>>,
    /// Made on first use; requests of all pods go through it one at a time.
    netlink: Mutex<Option<Netlink>>,
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| io_error("writing", Path::new(path), e))
}

impl BridgeNetwork {
    /// The network for `config`; nothing on the host changes until [`BridgeNetwork::configure`].
    pub fn new(config: BridgeConfig) -> Result<BridgeNetwork> {
        let net = config.data_dir.join("net");
        let addresses = AddressBook::open(&net.join("ipam"))?;
        let records = net.join("sandboxes");
        std::fs::create_dir_all(&records).map_err(|e| io_error("creating", &records, e))?;
        let table = NftTable {
            name: config.nft_table.clone(),
            bridge: config.bridge.clone(),
            cluster_cidr: config.cluster_cidr,
        };
        Ok(BridgeNetwork {
            config,
            addresses,
            records,
            table,
            configured: RwLock::new(None),
            configure_error: Mutex::new(None),
            netlink: Mutex::new(None),
        })
    }

    /// The nftables table of this network.
    pub fn table(&self) -> &NftTable {
        &self.table
    }

    /// The node's podCIDR once configured.
    pub fn pod_cidr(&self) -> Option<Ipv4Cidr> {
        self.current().map(|c| c.pod_cidr)
    }

    /// Runs `work` with the network's netlink runtime (made on first use, on the caller's
    /// thread: callers are in the host's network namespace).
    fn with_netlink<T>(&self, work: impl FnOnce(&Netlink) -> Result<T>) -> Result<T> {
        let mut netlink = self
            .netlink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if netlink.is_none() {
            *netlink = Some(Netlink::new()?);
        }
        match netlink.as_ref() {
            Some(nl) => work(nl),
            None => Err(Error::Missing("no netlink runtime".to_string())),
        }
    }

    fn current(&self) -> Option<Configured> {
        *self
            .configured
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the node up for pods of `pod_cidr`: the bridge with the gateway address, IP
    /// forwarding, loopback routing on the bridge (hostPorts reached at 127.0.0.1) and the
    /// nftables table. Idempotent; run again after an agent restart it keeps everything.
    pub fn configure(&self, pod_cidr: Ipv4Cidr) -> Result<()> {
        let result = self.try_configure(pod_cidr);
        *self
            .configure_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    fn try_configure(&self, pod_cidr: Ipv4Cidr) -> Result<()> {
        let gateway = pod_cidr
            .gateway()
            .ok_or_else(|| Error::Missing(format!("podCIDR {pod_cidr} has no gateway address")))?;
        let bridge = self.config.bridge.clone();
        let bridge_index = self.with_netlink(|nl| {
            nl.run(netlink::ensure_bridge(
                nl.host(),
                &bridge,
                gateway,
                pod_cidr.prefix(),
            ))
        })?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
            "1",
        )?;
        self.table.ensure()?;
        *self
            .configured
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Configured {
            pod_cidr,
            gateway,
            bridge_index,
        });
        tracing::info!(bridge = %bridge, pod_cidr = %pod_cidr, table = %self.table.name, "pod network configured");
        Ok(())
    }

    fn record_path(&self, sandbox_id: &str) -> PathBuf {
        self.records.join(format!("{sandbox_id}.json"))
    }

    fn read_record(&self, sandbox_id: &str) -> Result<Option<SandboxNetwork>> {
        crate::read_record(self.record_path(sandbox_id))
    }

    fn write_record(&self, sandbox_id: &str, record: &SandboxNetwork) -> Result<()> {
        let path = self.record_path(sandbox_id);
        let bytes = crate::record_bytes(&path, record)?;
        std::fs::write(&path, bytes).map_err(|e| io_error("writing", &path, e))
    }

    /// The sandbox ids that have a record.
    fn recorded(&self) -> Result<Vec<String>> {
        let entries =
            std::fs::read_dir(&self.records).map_err(|e| io_error("listing", &self.records, e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect())
    }

    fn wire(
        &self,
        configured: Configured,
        request: &PodNetworkRequest<'_>,
        address: Ipv4Addr,
    ) -> Result<()> {
        let netns = std::fs::File::open(request.netns)
            .map_err(|e| io_error("opening", request.netns, e))?;
        let veth = veth_name(request.sandbox_id);
        self.with_netlink(|nl| {
            nl.run(netlink::add_veth(
                nl.host(),
                &veth,
                configured.bridge_index,
                netns.as_raw_fd(),
            ))?;
            let pod = nl.connect_in(netns.as_fd())?;
            nl.run_in_pod(pod, |pod| async move {
                netlink::configure_pod(
                    &pod,
                    address,
                    configured.pod_cidr.prefix(),
                    configured.gateway,
                )
                .await
            })
        })
    }

    /// Removes what was made for `sandbox_id`: its veth (when `delete_veth`), hostPorts,
    /// address and record; keeps going after errors.
    fn remove(&self, sandbox_id: &str, delete_veth: bool) -> Result<()> {
        let mut errors = Vec::new();
        let record = match self.read_record(sandbox_id) {
            Ok(record) => record,
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        // Deleting the host end deletes the pair (also gone already if the namespace was).
        if delete_veth {
            let veth = veth_name(sandbox_id);
            if let Err(e) = self.with_netlink(|nl| nl.run(netlink::delete_link(nl.host(), &veth))) {
                errors.push(e.to_string());
            }
        }
        let mut addresses = Vec::new();
        if let Some(record) = &record {
            if let Err(e) = self
                .table
                .remove_host_ports(record.address, &record.host_ports)
            {
                errors.push(e.to_string());
            }
            addresses.push(record.address);
        } else {
            // A set-up that stopped between allocation and record: find what it holds.
            match self.addresses.held_by(sandbox_id) {
                Ok(held) => addresses.extend(held),
                Err(e) => errors.push(e.to_string()),
            }
        }
        for address in addresses {
            if let Err(e) = self.addresses.release(address, sandbox_id) {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            let path = self.record_path(sandbox_id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(io_error("removing", &path, e).to_string()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(errors))
        }
    }
}

impl PodNetwork for BridgeNetwork {
    fn set_up(&self, request: &PodNetworkRequest<'_>) -> Result<PodNetworkStatus> {
        let started = Instant::now();
        let Some(configured) = self.current() else {
            let failed = self
                .configure_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            return Err(failed.map_or(Error::NoPodCidr, Error::NotConfigured));
        };
        if let Some(record) = self.read_record(request.sandbox_id)? {
            return Ok(PodNetworkStatus {
                ips: vec![IpAddr::V4(record.address)],
            });
        }
        let address = self
            .addresses
            .allocate(&configured.pod_cidr, request.sandbox_id)?;
        let record = SandboxNetwork {
            address,
            veth: veth_name(request.sandbox_id),
            host_ports: request.host_ports.clone(),
        };
        let result = self
            .write_record(request.sandbox_id, &record)
            .and_then(|()| self.wire(configured, request, address))
            .and_then(|()| self.table.add_host_ports(address, &request.host_ports));
        if let Err(error) = result {
            if let Err(cleanup) = self.tear_down(request.sandbox_id) {
                tracing::warn!(
                    pod_namespace = %request.pod_namespace, pod_name = %request.pod_name,
                    pod_uid = %request.pod_uid, sandbox = %request.sandbox_id, error = %cleanup,
                    "cleaning up after a failed network set-up"
                );
            }
            return Err(error);
        }
        tracing::debug!(
            pod_namespace = %request.pod_namespace, pod_name = %request.pod_name,
            pod_uid = %request.pod_uid, sandbox = %request.sandbox_id, address = %address,
            "pod network set up in {:.2} ms", started.elapsed().as_secs_f64() * 1e3
        );
        Ok(PodNetworkStatus {
            ips: vec![IpAddr::V4(address)],
        })
    }

    fn tear_down(&self, sandbox_id: &str) -> Result<()> {
        self.remove(sandbox_id, true)
    }

    fn release(&self, sandbox_id: &str) -> Result<()> {
        self.remove(sandbox_id, false)
    }

    fn needs_pod_cidr(&self) -> bool {
        true
    }

    fn configure(&self, pod_cidr: Ipv4Cidr) -> Result<()> {
        BridgeNetwork::configure(self, pod_cidr)
    }

    fn collect_garbage(&self, live: &HashSet<String>) -> Result<()> {
        let mut errors = Vec::new();
        match self.recorded() {
            Ok(ids) => {
                for id in ids.into_iter().filter(|id| !live.contains(id)) {
                    tracing::info!(sandbox = %id, "removing the network of a sandbox that is gone");
                    if let Err(e) = self.tear_down(&id) {
                        errors.push(format!("sandbox {id}: {e}"));
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        if let Err(e) = self.addresses.release_all_but(live) {
            errors.push(e.to_string());
        }
        // Veths on our bridge that no live sandbox owns (a set-up cut short by a crash).
        let wanted: HashSet<String> = live.iter().map(|id| veth_name(id)).collect();
        let bridge = self.config.bridge.clone();
        let removed = self.with_netlink(|nl| {
            let handle = nl.host();
            nl.run(async {
                let Some(index) = netlink::link_index(handle, &bridge).await? else {
                    return Ok(Vec::new());
                };
                let mut removed = Vec::new();
                for name in netlink::links_on(handle, index).await? {
                    if name.starts_with("sk") && !wanted.contains(&name) {
                        netlink::delete_link(handle, &name).await?;
                        removed.push(name);
                    }
                }
                Ok(removed)
            })
        });
        match removed {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(veths = ?removed, "removed veths of sandboxes that are gone");
            }
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_in_an_interface_name() {
        let name = veth_name("0123456789abcdef0123456789abcdef");
        assert_eq!(name, "sk0123456789abc");
        assert!(name.len() <= 15);
    }
}
