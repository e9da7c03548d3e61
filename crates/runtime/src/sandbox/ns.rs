//! Creating a sandbox's namespaces: a short-lived OS thread of our own unshares the network, UTS
//! and IPC namespaces (and, for a shared PID namespace, the PID namespace of its children), sets
//! the hostname, brings `lo` up, bind-mounts its `/proc/thread-self/ns/*` onto the sandbox's
//! files and exits; the bind mounts keep the namespaces alive. For a hostNetwork pod it binds
//! the process's own (the node's) network and UTS namespaces instead of new ones.
//!
//! Why a thread rather than a forked child: Linux lets a single thread of a multi-threaded process
//! unshare these namespaces (none implies CLONE_VM, CLONE_SIGHAND or CLONE_THREAD), a fresh
//! `std::thread` is never reused by other code, and no code runs between fork and exec in a
//! process full of tokio threads and locks. It costs a thread spawn (tens of µs) instead of a
//! fork+exec (milliseconds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::mount::mount_bind;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use rustix::thread::UnshareFlags;

use super::{Result, SandboxError};

/// What the namespace thread sets up.
pub(super) struct NamespaceRequest<'a> {
    /// Existing empty files, the bind-mount targets.
    pub net: &'a Path,
    pub uts: &'a Path,
    pub ipc: &'a Path,
    pub hostname: &'a str,
    /// The node's network and UTS namespaces are bound instead of new ones (hostNetwork).
    pub host_network: bool,
    /// With a shared PID namespace: where to bind it, and how to start its PID 1.
    pub pid: Option<PauseRequest<'a>>,
}

pub(super) struct PauseRequest<'a> {
    pub ns_file: &'a Path,
    pub skiff_binary: &'a Path,
    pub sandbox_id: &'a str,
}

/// The pause process started for a shared PID namespace.
pub(super) struct StartedPause {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: with the pid, identifies the process even after pid reuse.
    pub start_time: u64,
}

/// Runs the set-up on a dedicated thread and waits for it. On error, whatever was bind-mounted
/// stays for the caller's cleanup (it unmounts every sandbox path); a pause process already
/// started is killed and reaped here.
pub(super) fn create(request: &NamespaceRequest<'_>) -> Result<Option<StartedPause>> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("skiff-sandbox-ns".into())
            .spawn_scoped(scope, || set_up_on_this_thread(request))
            .map_err(|source| SandboxError::Sys {
                operation: "starting the namespace thread",
                source,
            })?
            .join()
            .map_err(|_| SandboxError::Invalid("the namespace thread panicked".into()))?
    })
}

/// Runs on a thread that exits right after: everything it unshares dies with it, except what it
/// bind-mounted and the pause process it started.
#[allow(unsafe_code)]
fn set_up_on_this_thread(request: &NamespaceRequest<'_>) -> Result<Option<StartedPause>> {
    let mut flags = UnshareFlags::NEWIPC;
    if request.host_network {
        // The process's own (its main thread's, which never leaves them): the node's.
        bind(Path::new("/proc/self/ns/net"), request.net)?;
        bind(Path::new("/proc/self/ns/uts"), request.uts)?;
    } else {
        flags |= UnshareFlags::NEWNET | UnshareFlags::NEWUTS;
    }
    if request.pid.is_some() {
        flags |= UnshareFlags::NEWPID;
    }
    // SAFETY: unshare_unsafe is unsafe because of CLONE_FILES (threads could then see different
    // fd tables); we pass only namespace flags, which change this thread's namespaces alone, and
    // this thread exits when this function returns, taking those namespaces with it.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| SandboxError::Sys {
        operation: "unsharing the network, UTS and IPC namespaces",
        source: e.into(),
    })?;
    let own = |kind: &str| PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
    if !request.host_network {
        rustix::system::sethostname(request.hostname.as_bytes()).map_err(|e| {
            SandboxError::Sys {
                operation: "setting the pod's hostname",
                source: e.into(),
            }
        })?;
        loopback_up()?;
        bind(&own("net"), request.net)?;
        bind(&own("uts"), request.uts)?;
    }
    bind(&own("ipc"), request.ipc)?;
    let Some(pause) = &request.pid else {
        return Ok(None);
    };
    // Spawned from this thread, the child is PID 1 of the new PID namespace (pid_for_children
    // is per thread). It also inherits the pod's net, UTS and IPC namespaces, as Kubernetes'
    // pause container does. It calls setsid itself; stdio is /dev/null so that it holds no pipe
    // of ours and survives the agent.
    let mut child = Command::new(pause.skiff_binary)
        .args(["internal", "pause", pause.sandbox_id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(|e| {
            SandboxError::Pause(format!(
                "cannot start {} internal pause: {e}",
                pause.skiff_binary.display()
            ))
        })?;
    let pid = child.id();
    // As kubelet does for the pod's infra container (PodInfraOOMAdj): the OOM killer takes it
    // last, since its death kills every process of the pod. Best effort.
    if let Err(e) = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-998") {
        tracing::debug!(pid, error = %e, "cannot set the pause process's oom_score_adj");
    }
    let started =
        bind(&own("pid_for_children"), pause.ns_file).and_then(|()| super::process_start_time(pid));
    match started {
        Ok(start_time) => {
            // Not waited for here: `Sandbox::remove` kills and reaps it (or, after a restart of
            // the agent, init does).
            drop(child);
            Ok(Some(StartedPause { pid, start_time }))
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn bind(source: &Path, target: &Path) -> Result<()> {
    mount_bind(source, target).map_err(|e| SandboxError::Io {
        operation: "bind-mounting the namespace onto",
        path: target.to_path_buf(),
        source: e.into(),
    })
}

/// `ip link set lo up` in the calling thread's network namespace, by one rtnetlink request.
fn loopback_up() -> Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 0x1;
    // The loopback device is created first in every network namespace: index 1
    // (LOOPBACK_IFINDEX in the kernel).
    const LOOPBACK_IFINDEX: i32 = 1;
    let sys = |operation: &'static str| {
        move |e: rustix::io::Errno| SandboxError::Sys {
            operation,
            source: e.into(),
        }
    };
    // Protocol `None` is 0, NETLINK_ROUTE. Close-on-exec: a process the agent starts meanwhile
    // (the launcher, runc, a plugin) would otherwise keep the socket, and with it the pod's
    // network namespace and veth pair, for as long as it lives.
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(sys("opening a netlink socket"))?;
    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes), native endian.
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    message.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it
    message.push(0); // ifi_family: AF_UNSPEC
    message.push(0); // padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&LOOPBACK_IFINDEX.to_ne_bytes()); // ifi_index
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    rustix::net::send(&socket, &message, SendFlags::empty())
        .map_err(sys("sending the netlink request to bring lo up"))?;
    let mut reply = [0u8; 1024];
    let (len, _) = rustix::net::recv(&socket, &mut reply, RecvFlags::empty())
        .map_err(sys("reading the netlink answer to bringing lo up"))?;
    let reply = &reply[..len.min(reply.len())];
    let field = |at: usize, n: usize| reply.get(at..at + n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(errno)) => Err(SandboxError::Sys {
            operation: "bringing lo up",
            source: std::io::Error::from_raw_os_error(-errno),
        }),
        _ => Err(SandboxError::Invalid(format!(
            "unexpected netlink answer to bringing lo up ({len} bytes, type {kind:?})"
        ))),
    }
}
