//! Pod sandboxes for real (as root): namespaces held by files, hostname, loopback, /dev/shm, the
//! managed /etc files, the shared PID namespace's pause process, and a teardown that leaves
//! nothing behind, even after a crash or a failed create.
#![allow(clippy::unwrap_used)] // a test fails loudly on a missing value

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_runtime::sandbox::{DnsSpec, HostAlias, Sandbox, SandboxSpec};

/// A fresh data dir with the sandbox root in it; on drop removes every sandbox left there and
/// the root's private mount.
struct TestRoot {
    base: tempfile::TempDir,
    root: PathBuf,
}

impl TestRoot {
    fn new() -> TestRoot {
        let base = tempfile::Builder::new()
            .prefix("skiff-sandbox-test-")
            .tempdir()
            .unwrap();
        let root = base.path().join("sandboxes");
        TestRoot { base, root }
    }

    fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        for id in Sandbox::list(self.path()).unwrap_or_default() {
            if let Err(e) = Sandbox::remove(self.path(), &id) {
                eprintln!("cleanup: {e}");
            }
        }
        if self.path().exists() {
            if let Err(e) = Sandbox::unmount_root(self.path()) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// The `skiff` binary, as the e2e tests find it: `$SKIFF_BIN`, else `$CARGO_TARGET_DIR/debug/skiff`,
/// else `<workspace>/target/debug/skiff`. `cargo build -p skiff` first (scripts/test.sh does).
fn skiff_bin() -> PathBuf {
    let path = match std::env::var_os("SKIFF_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            target.join("debug").join("skiff")
        }
    };
    assert!(
        path.is_file(),
        "{} not found: run `cargo build -p skiff` first (scripts/test.sh does), or point $SKIFF_BIN at it",
        path.display()
    );
    path
}

fn spec(name: &str, resolv: &Path) -> SandboxSpec {
    SandboxSpec {
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        hostname: name.into(),
        host_aliases: vec![HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: vec!["foo.remote".into(), "bar.remote".into()],
        }],
        dns: DnsSpec {
            host_resolv_conf: resolv.to_path_buf(),
            ..DnsSpec::default()
        },
        ..SandboxSpec::default()
    }
}

fn host_resolv(root: &TestRoot) -> PathBuf {
    // Outside the sandbox root: a file of "the node".
    let path = root.base.path().join("resolv.conf");
    std::fs::write(
        &path,
        "nameserver 192.0.2.53\nsearch example.test\noptions ndots:2\n",
    )
    .unwrap();
    path
}

fn ns_id(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(dir))
        })
        .map(str::to_string)
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_nothing_left(root: &Path, sandbox: &Sandbox) {
    assert!(
        !sandbox.dir.exists(),
        "{} still exists",
        sandbox.dir.display()
    );
    assert_eq!(mounts_under(&sandbox.dir), Vec::<String>::new());
    assert_eq!(Sandbox::open(root, &sandbox.id).unwrap(), None);
    assert!(!Sandbox::list(root).unwrap().contains(&sandbox.id));
    if let Some(pid) = sandbox.pause_pid {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pause process {pid} still exists"
        );
    }
}

#[test]
fn namespaces_hostname_loopback_shm_and_files() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let name = format!("pod-{}", std::process::id());
    let mut sandbox = Sandbox::create(
        root.path(),
        Path::new("/nonexistent"),
        &spec(&name, &resolv),
    )
    .unwrap();
    assert_eq!(sandbox.pid_ns, None);
    assert_eq!(sandbox.pause_pid, None);

    // Three namespaces, each different from ours and from each other.
    for (kind, file) in [
        ("net", &sandbox.net_ns),
        ("uts", &sandbox.uts_ns),
        ("ipc", &sandbox.ipc_ns),
    ] {
        let ours = ns_id(Path::new(&format!("/proc/self/ns/{kind}")));
        assert_ne!(ns_id(file), ours, "{kind} namespace is the host's");
    }
    assert_ne!(ns_id(&sandbox.net_ns), ns_id(&sandbox.uts_ns));

    // Hostname inside the UTS namespace, loopback up inside the network namespace.
    let hostname = run(Command::new("nsenter")
        .arg(format!("--uts={}", sandbox.uts_ns.display()))
        .arg("hostname"));
    assert_eq!(hostname.trim(), name);
    let lo = run(Command::new("nsenter")
        .arg(format!("--net={}", sandbox.net_ns.display()))
        .args(["ip", "-o", "link", "show", "lo"]));
    assert!(lo.contains("<LOOPBACK,UP,LOWER_UP>"), "{lo}");
    let links = run(Command::new("nsenter")
        .arg(format!("--net={}", sandbox.net_ns.display()))
        .args(["ip", "-o", "link", "show"]));
    assert_eq!(
        links.lines().count(),
        1,
        "a fresh namespace has only lo: {links}"
    );

    // /dev/shm: a 64 MiB tmpfs.
    let shm = mounts_under(&sandbox.shm);
    assert_eq!(shm.len(), 1, "{shm:?}");
    assert!(shm[0].contains(" - tmpfs "), "{}", shm[0]);
    assert!(shm[0].contains("size=65536k"), "{}", shm[0]);
    assert!(shm[0].contains("nosuid,nodev,noexec"), "{}", shm[0]);

    // The managed files.
    assert_eq!(
        std::fs::read_to_string(&sandbox.hostname_file).unwrap(),
        format!("{name}\n")
    );
    let hosts = std::fs::read_to_string(&sandbox.hosts).unwrap();
    assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
    assert!(hosts.ends_with("# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n"));
    assert!(
        !hosts.contains(&format!("\t{name}\n")),
        "no pod line before an IP: {hosts}"
    );
    // ClusterFirst without a cluster DNS: the node's configuration, and kubelet's warning.
    assert_eq!(
        std::fs::read_to_string(&sandbox.resolv_conf).unwrap(),
        "search example.test\nnameserver 192.0.2.53\noptions ndots:2\n"
    );
    assert_eq!(sandbox.warnings.len(), 1, "{:?}", sandbox.warnings);

    // The pod IP line, written in place (same inode: bind mounts of the file see it).
    let inode = std::fs::metadata(&sandbox.hosts).unwrap().ino();
    sandbox
        .set_pod_ips(&["10.42.0.7".parse().unwrap()])
        .unwrap();
    let hosts = std::fs::read_to_string(&sandbox.hosts).unwrap();
    assert!(
        hosts.contains(&format!(
            "fe00::2\tip6-allrouters\n10.42.0.7\t{name}\n\n# Entries"
        )),
        "{hosts}"
    );
    assert_eq!(std::fs::metadata(&sandbox.hosts).unwrap().ino(), inode);
    assert_eq!(
        Sandbox::open(root.path(), &sandbox.id)
            .unwrap()
            .unwrap()
            .pod_ips,
        sandbox.pod_ips
    );

    Sandbox::remove(root.path(), &sandbox.id).unwrap();
    assert_nothing_left(root.path(), &sandbox);
    // The last sandbox out took the root's tmpfs with it.
    assert_eq!(mounts_under(root.path()), Vec::<String>::new());
    // Idempotent.
    Sandbox::remove(root.path(), &sandbox.id).unwrap();
}

#[test]
fn shared_pid_namespace_has_a_pause_process_that_reaps() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let mut spec = spec("shared", &resolv);
    spec.share_process_namespace = true;
    let sandbox = Sandbox::create(root.path(), &skiff_bin(), &spec).unwrap();
    let pause = sandbox.pause_pid.unwrap();
    let pid_ns = sandbox.pid_ns.clone().unwrap();

    // PID 1 in its own namespace, the one the file holds.
    let status = std::fs::read_to_string(format!("/proc/{pause}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    assert_eq!(
        ns_id(&pid_ns),
        ns_id(Path::new(&format!("/proc/{pause}/ns/pid")))
    );
    assert_ne!(ns_id(&pid_ns), ns_id(Path::new("/proc/self/ns/pid")));
    // Kubelet's oom_score_adj for the pod's infra process, where we may lower it
    // (CAP_SYS_RESOURCE, bit 24; some machines, this one included, withhold it even from root).
    let caps = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    if u64::from_str_radix(effective.trim(), 16).unwrap() & (1 << 24) != 0 {
        let adj = std::fs::read_to_string(format!("/proc/{pause}/oom_score_adj")).unwrap();
        assert_eq!(adj.trim(), "-998");
    }
    // In the pod's network namespace too, like Kubernetes' pause container.
    assert_eq!(
        ns_id(&sandbox.net_ns),
        ns_id(Path::new(&format!("/proc/{pause}/ns/net")))
    );

    // An orphan in the namespace is reparented to the pause process, which reaps it once it dies
    // (a zombie would keep its /proc entry).
    run(Command::new("nsenter")
        .arg(format!("--pid={}", pid_ns.display()))
        .args([
            "--",
            "sh",
            "-c",
            "sleep 60 </dev/null >/dev/null 2>&1 & exit 0",
        ]));
    let children = format!("/proc/{pause}/task/{pause}/children");
    let mut orphan = 0;
    wait_until("the orphan is the pause process's child", || {
        let text = std::fs::read_to_string(&children).unwrap();
        orphan = text
            .split_whitespace()
            .next()
            .map_or(0, |p| p.parse().unwrap());
        orphan != 0
    });
    let comm = std::fs::read_to_string(format!("/proc/{orphan}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    run(Command::new("kill").args(["-KILL", &orphan.to_string()]));
    wait_until("the pause process reaped the orphan", || {
        !Path::new(&format!("/proc/{orphan}")).exists()
    });

    Sandbox::remove(root.path(), &sandbox.id).unwrap();
    assert_nothing_left(root.path(), &sandbox);
}

#[test]
fn pause_process_exits_on_sigterm() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let mut spec = spec("term", &resolv);
    spec.share_process_namespace = true;
    let sandbox = Sandbox::create(root.path(), &skiff_bin(), &spec).unwrap();
    let pause = sandbox.pause_pid.unwrap();
    // It makes itself a session leader (away from ours) once its signals are set up.
    wait_until("the pause process leads its own session", || {
        let stat = std::fs::read_to_string(format!("/proc/{pause}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[3] == pause.to_string()
    });

    let pid = rustix::process::Pid::from_raw(pause as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // This process started it: it is our child, and exits 0.
    let (_, status) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .unwrap()
        .unwrap();
    assert_eq!(status.exit_status(), Some(0));
    // Removing a sandbox whose pause process is gone still works.
    Sandbox::remove(root.path(), &sandbox.id).unwrap();
    assert_nothing_left(root.path(), &sandbox);
}

#[test]
fn open_list_and_remove_after_a_crash() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let mut spec = spec("crash", &resolv);
    spec.share_process_namespace = true;
    let sandbox = Sandbox::create(root.path(), &skiff_bin(), &spec).unwrap();
    let plain = Sandbox::create(
        root.path(),
        Path::new("/nonexistent"),
        &self::spec("plain", &resolv),
    )
    .unwrap();
    // "The agent crashed": all it knows after a restart is the root.
    let (id, plain_id) = (sandbox.id.clone(), plain.id.clone());
    let (sandbox, plain) = (sandbox, plain);
    let mut expected = vec![id.clone(), plain_id.clone()];
    expected.sort();
    assert_eq!(Sandbox::list(root.path()).unwrap(), expected);
    let opened = Sandbox::open(root.path(), &id).unwrap().unwrap();
    assert_eq!(opened, sandbox);
    assert_eq!(opened.spec.uid, "uid-crash");
    assert_eq!(
        Sandbox::open(root.path(), "0123456789abcdef").unwrap(),
        None
    );
    assert!(Sandbox::open(root.path(), "../x").is_err());

    // A create interrupted before its record was complete: the record is gone, only the layout
    // remains (mounts, namespaces, pause process).
    std::fs::remove_file(plain.dir.join("sandbox.json")).unwrap();
    std::fs::remove_file(sandbox.dir.join("sandbox.json")).unwrap();
    assert_eq!(Sandbox::open(root.path(), &id).unwrap(), None);
    assert!(opened.verify().is_ok());
    // A third one with a corrupt record.
    let corrupt = Sandbox::create(
        root.path(),
        Path::new("/nonexistent"),
        &self::spec("bad", &resolv),
    )
    .unwrap();
    std::fs::write(corrupt.dir.join("sandbox.json"), "{not json").unwrap();
    assert!(Sandbox::open(root.path(), &corrupt.id).is_err());
    for id in Sandbox::list(root.path()).unwrap() {
        Sandbox::remove(root.path(), &id).unwrap();
    }
    assert_nothing_left(root.path(), &sandbox);
    assert_nothing_left(root.path(), &plain);
    assert!(!corrupt.dir.exists());
    assert_eq!(mounts_under(&corrupt.dir), Vec::<String>::new());
}

#[test]
fn a_failed_create_leaves_nothing() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let mut spec = spec("fails", &resolv);
    spec.share_process_namespace = true;
    // No pause binary: fails after the namespaces and shm are mounted.
    let error = Sandbox::create(root.path(), Path::new("/nonexistent/skiff"), &spec).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/skiff"), "{error}");
    assert_eq!(Sandbox::list(root.path()).unwrap(), Vec::<String>::new());
    // Not even the root's tmpfs: no sandbox is left.
    let mounts = mounts_under(root.path());
    assert_eq!(mounts, Vec::<String>::new());

    spec.hostname = String::new();
    assert!(Sandbox::create(root.path(), &skiff_bin(), &spec).is_err());
    assert_eq!(Sandbox::list(root.path()).unwrap(), Vec::<String>::new());
}

#[test]
fn root_is_a_private_mount() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let sandbox = Sandbox::create(
        root.path(),
        Path::new("/nonexistent"),
        &spec("private", &resolv),
    )
    .unwrap();
    let canonical = std::fs::canonicalize(root.path()).unwrap();
    let line = mounts_under(&canonical)
        .into_iter()
        .find(|l| l.split(' ').nth(4) == Some(canonical.to_str().unwrap()))
        .unwrap();
    // Optional fields (between the mount options and " - ") carry shared:/master: tags.
    let optional = line.split(" - ").next().unwrap();
    assert!(
        !optional.contains("shared:") && !optional.contains("master:"),
        "{line}"
    );
    // A tmpfs: sandboxes do not outlive a reboot, and nothing waits on a disk.
    assert!(line.contains(" - tmpfs "), "{line}");
    Sandbox::remove(root.path(), &sandbox.id).unwrap();
    assert_nothing_left(root.path(), &sandbox);
}

#[test]
fn verify_finds_a_broken_sandbox_and_gc_removes_what_is_not_kept() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let mut shared = spec("gc-shared", &resolv);
    shared.share_process_namespace = true;
    let broken = Sandbox::create(root.path(), &skiff_bin(), &shared).unwrap();
    let kept = Sandbox::create(
        root.path(),
        Path::new("/nonexistent"),
        &spec("gc-kept", &resolv),
    )
    .unwrap();
    let gone = Sandbox::create(
        root.path(),
        Path::new("/nonexistent"),
        &spec("gc-gone", &resolv),
    )
    .unwrap();
    broken.verify().unwrap();
    kept.verify().unwrap();

    // The pause process dies (killed by someone): the sandbox is broken, and says why.
    let pid = rustix::process::Pid::from_raw(broken.pause_pid.unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap();
    let error = broken.verify().unwrap_err().to_string();
    assert!(error.contains("pause process"), "{error}");
    // A namespace file unmounted behind our back.
    rustix::mount::unmount(&gone.uts_ns, rustix::mount::UnmountFlags::DETACH).unwrap();
    let error = gone.verify().unwrap_err().to_string();
    assert!(
        error.contains("UTS namespace file is not mounted"),
        "{error}"
    );

    // At the agent's start: only the pod that still exists keeps its sandbox.
    let mut removed =
        Sandbox::garbage_collect(root.path(), |s| s.spec.uid == "uid-gc-kept").unwrap();
    removed.sort();
    let mut expected = vec![broken.id.clone(), gone.id.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(Sandbox::list(root.path()).unwrap(), vec![kept.id.clone()]);
    // The root's tmpfs stays while a sandbox is on it.
    let canonical = std::fs::canonicalize(root.path()).unwrap();
    assert!(mounts_under(&canonical)
        .iter()
        .any(|l| l.split(' ').nth(4) == canonical.to_str()));
    assert_nothing_left(root.path(), &broken);
    assert_nothing_left(root.path(), &gone);
    kept.verify().unwrap();
}

#[test]
fn a_host_network_sandbox_holds_the_nodes_network_and_uts_namespaces_and_leaves_them() {
    let root = TestRoot::new();
    let resolv = host_resolv(&root);
    let name = format!("hostnet-{}", std::process::id());
    let mut spec = spec(&name, &resolv);
    spec.host_network = true;
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    spec.hostname = node_hostname.trim().to_string();
    let mut sandbox = Sandbox::create(root.path(), Path::new("/nonexistent"), &spec).unwrap();
    let own = |kind: &str| ns_id(Path::new(&format!("/proc/self/ns/{kind}")));
    assert_eq!(ns_id(&sandbox.net_ns), own("net"));
    assert_eq!(ns_id(&sandbox.uts_ns), own("uts"));
    assert_ne!(
        ns_id(&sandbox.ipc_ns),
        own("ipc"),
        "its IPC namespace is its own"
    );
    sandbox.verify().unwrap();
    // kubelet's hosts file for the host network: the node's, then the aliases; the pod's IP
    // (the node's) adds no line.
    sandbox
        .set_pod_ips(&["192.0.2.10".parse().unwrap()])
        .unwrap();
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(
        std::fs::read_to_string(&sandbox.hosts).unwrap(),
        format!(
            "# Kubernetes-managed hosts file (host network).\n{node_hosts}\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(&sandbox.hostname_file).unwrap(),
        format!("{}\n", node_hostname.trim())
    );
    let host_links = run(Command::new("ip").args(["-o", "link", "show"]));
    Sandbox::remove(root.path(), &sandbox.id).unwrap();
    assert_nothing_left(root.path(), &sandbox);
    // The node's namespaces and links are untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        node_hostname
    );
    let links = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|n| *n == "lo" || !n.starts_with("sk") && !n.starts_with("veth"))
            .map(str::to_string)
            .collect()
    };
    let after = run(Command::new("ip").args(["-o", "link", "show"]));
    for link in links(&host_links) {
        assert!(links(&after).contains(&link), "{link} is gone");
    }
}
