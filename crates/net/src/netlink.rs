//! The netlink requests of the bridge network (rtnetlink), each a handful of messages, and
//! [`Netlink`], the runtime and connections they run on (one in the host's namespace, one per
//! pod opened inside the pod's namespace).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, BorrowedFd, RawFd};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::{Error, Result};

/// The name of the pod's end of its veth pair.
pub const POD_INTERFACE: &str = "eth0";

/// Sets link `index` (`name`, for the error) up.
async fn link_up(handle: &Handle, index: u32, name: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(failed(format!("bring {name} up")))
}

fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |source| Error::Netlink { what, source }
}

/// Whether the kernel answered with `errno`.
fn is_errno(error: &rtnetlink::Error, errno: rustix::io::Errno) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno.raw_os_error())
}

/// A netlink connection inside a pod's namespace, not running yet ([`Netlink::run_in_pod`]).
pub struct PodConnection {
    connection: rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>,
    handle: Handle,
}

/// A single-threaded runtime (driven by whichever thread calls [`Netlink::run`]) with a
/// connection in the host's network namespace, kept for the life of the network: building a
/// runtime and a socket per pod cost milliseconds.
pub struct Netlink {
    runtime: tokio::runtime::Runtime,
    host: Handle,
}

fn socket_error(source: std::io::Error) -> Error {
    Error::Thread {
        what: "open a netlink socket",
        source,
    }
}

impl Netlink {
    /// The runtime and a connection in the calling thread's network namespace (the host's).
    pub fn new() -> Result<Netlink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|source| Error::Thread {
                what: "start a netlink runtime",
                source,
            })?;
        let (connection, host, _) = {
            let _entered = runtime.enter();
            rtnetlink::new_connection().map_err(socket_error)?
        };
        runtime.spawn(connection);
        Ok(Netlink { runtime, host })
    }

    /// The connection in the host's namespace.
    pub fn host(&self) -> &Handle {
        &self.host
    }

    /// A connection in the network namespace `netns`. A socket belongs to the namespace its
    /// creator was in: the calling thread moves there, creates it, and moves back at once (a
    /// thread of its own per pod costs milliseconds under load). A thread that could not move
    /// back would go on serving the agent inside a pod's namespace: the process aborts then
    /// instead (setns to a namespace file we hold open does not fail in practice).
    pub fn connect_in(&self, netns: BorrowedFd<'_>) -> Result<PodConnection> {
        let own =
            std::fs::File::open("/proc/thread-self/ns/net").map_err(|source| Error::Thread {
                what: "open this thread's network namespace",
                source,
            })?;
        rustix::thread::move_into_link_name_space(
            netns,
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| Error::Thread {
            what: "enter the pod's network namespace",
            source: e.into(),
        })?;
        let connected = {
            let _entered = self.runtime.enter();
            rtnetlink::new_connection().map_err(socket_error)
        };
        if let Err(e) = rustix::thread::move_into_link_name_space(
            own.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        ) {
            tracing::error!(error = %e, "cannot return to the host's network namespace; aborting");
            std::process::abort();
        }
        let (connection, handle, _) = connected?;
        Ok(PodConnection { connection, handle })
    }

    /// Runs `work` with `pod`'s connection, and closes it: its socket holds the pod's
    /// namespace alive (and with it the veth pair) for as long as it is open.
    pub fn run_in_pod<T, F>(&self, pod: PodConnection, work: impl FnOnce(Handle) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let PodConnection { connection, handle } = pod;
        self.runtime.block_on(async move {
            tokio::select! {
                result = work(handle) => result,
                () = connection => Err(Error::Missing(
                    "the netlink connection in the pod's namespace closed".to_string(),
                )),
            }
        })
    }

    pub fn run<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// The index of link `name`; None if there is none.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if is_errno(&e, rustix::io::Errno::NODEV) => Ok(None),
        Err(e) => Err(failed(format!("look up link {name}"))(e)),
    }
}

/// The bridge `name`, created and up, with `gateway/prefix`; its index.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32> {
    if link_index(handle, name).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(name).up().build())
            .execute()
            .await
        {
            Ok(()) => {}
            // Another agent of the same configuration raced us to it.
            Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(failed(format!("create bridge {name}"))(e)),
        }
    }
    let index = link_index(handle, name).await?.ok_or_else(|| {
        Error::Missing(format!("bridge {name} vanished right after it was created"))
    })?;
    link_up(handle, index, &format!("bridge {name}")).await?;
    match handle
        .address()
        .add(index, IpAddr::V4(gateway), prefix)
        .execute()
        .await
    {
        Ok(()) => {}
        Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => {}
        Err(e) => {
            return Err(failed(format!("add {gateway}/{prefix} to bridge {name}"))(
                e,
            ))
        }
    }
    Ok(index)
}

/// A veth pair: `host` on the bridge, its peer created right inside the namespace `netns` as
/// [`POD_INTERFACE`]; the host end up. One message: no rename, no move afterwards.
pub async fn add_veth(handle: &Handle, host: &str, bridge: u32, netns: RawFd) -> Result<()> {
    // Not up yet: a veth cannot open before its peer is registered (ENOTCONN).
    let peer = LinkUnspec::new_with_name(POD_INTERFACE)
        .setns_by_fd(netns)
        .build();
    let message = LinkVeth::new(host, POD_INTERFACE)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .up()
        .build();
    handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(failed(format!("create veth {host}")))
}

/// Inside the pod's namespace: [`POD_INTERFACE`] up, its address and the default route.
pub async fn configure_pod(
    handle: &Handle,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    let index = link_index(handle, POD_INTERFACE).await?.ok_or_else(|| {
        Error::Missing(format!("{POD_INTERFACE} is missing in the pod's namespace"))
    })?;
    link_up(handle, index, POD_INTERFACE).await?;
    handle
        .address()
        .add(index, IpAddr::V4(address), prefix)
        .execute()
        .await
        .map_err(failed(format!("add {address}/{prefix} to {POD_INTERFACE}")))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(failed(format!("add the default route via {gateway}")))
}

/// Deletes link `name`; false if there was none.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<bool> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, rustix::io::Errno::NODEV) => Ok(false),
        Err(e) => Err(failed(format!("delete link {name}"))(e)),
    }
}

/// The names of the links attached to bridge `bridge`.
pub async fn links_on(handle: &Handle, bridge: u32) -> Result<Vec<String>> {
    let mut links = handle.link().get().execute();
    let mut names = Vec::new();
    while let Some(link) = links.try_next().await.map_err(failed("list links"))? {
        let on_bridge = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == bridge));
        if on_bridge {
            if let Some(name) = name_of(&link) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}
