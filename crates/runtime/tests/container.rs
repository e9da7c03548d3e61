//! Containers for real (root, runc): a busybox container's exit code, reason and CRI log; a
//! long-running container that outlives its manager and is re-adopted (same pid); stop of a
//! process that ignores SIGTERM at its grace period; a memory limit that ends in OOMKilled 137,
//! one too low to start (StartError); joining a sandbox's namespaces and a shared PID namespace;
//! and nothing left behind (cgroup, runtime state, process, directory). Prints the latency of
//! create+start+exit+delete.

mod test_images;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use skiff_runtime::container::attach;
use skiff_runtime::container::cgroup::CgroupLayout;
use skiff_runtime::container::exec::{ExecEnd, ExecReport};
use skiff_runtime::container::manager::LogOptions;
use skiff_runtime::container::{
    build_spec, CliRuntime, ContainerManager, ContainerSpecInput, ContainerState, ContainerStatus,
    FieldValues, NamespacePaths, PodFiles, RuntimeKind, SeccompOptions,
};
use skiff_runtime::image::import::import_archive;
use skiff_runtime::image::rootfs::RootFs;
use skiff_runtime::image::store::{ImageRecord, ImageStore};

/// A data dir with busybox imported, a manager, and everything the test started, removed on
/// drop (containers through the manager, root filesystems, the test's cgroup parent).
struct Fixture {
    dir: tempfile::TempDir,
    _images: test_images::TestImages,
    store: ImageStore,
    busybox: ImageRecord,
    manager: ContainerManager,
    cgroup_parent: String,
    containers: Vec<(String, Option<RootFs>)>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let images = test_images::build();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("store");
        import_archive(&store, &images.busybox, None).expect("import busybox");
        let busybox = store.resolve("busybox").expect("resolve").expect("busybox");
        let manager = open_manager(dir.path());
        Fixture {
            cgroup_parent: format!("/skiff-test-{name}-{}", std::process::id()),
            dir,
            _images: images,
            store,
            busybox,
            manager,
            containers: Vec::new(),
        }
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    /// Starts a busybox container running `script` under `sh -c`, with `resources` (JSON).
    fn start(&mut self, id: &str, script: &str, resources: serde_json::Value) -> ContainerStatus {
        self.start_container(
            id,
            serde_json::json!({
                "name": "c",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "resources": resources,
            }),
        )
    }

    /// Starts the busybox container `container` (a pod's container, JSON).
    fn start_container(&mut self, id: &str, container: serde_json::Value) -> ContainerStatus {
        let rootfs = RootFs::create(
            &self.store,
            &self.busybox,
            &self.dir.path().join("rootfs").join(id),
        )
        .expect("rootfs");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "test", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": [container]}
        }))
        .expect("pod");
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let spec = build_spec(&ContainerSpecInput {
            pod: &pod,
            container,
            image_config: &self.busybox.config,
            rootfs: &rootfs.merged,
            namespaces: NamespacePaths::default(),
            pod_files: PodFiles::default(),
            mounts: vec![],
            termination_log: Some(self.manager.termination_log_path(id)),
            fields: FieldValues {
                node_name: "node".into(),
                node_allocatable_millicpu: 2000,
                node_allocatable_memory: 1 << 30,
                ..FieldValues::default()
            },
            cgroup_parent: self.cgroup_parent.clone(),
            container_id: id.to_owned(),
            seccomp: SeccompOptions::default(),
        })
        .expect("spec");
        self.containers.push((id.to_owned(), Some(rootfs)));
        self.manager
            .start(id, &spec, &self.log_path(id))
            .expect("start")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for (id, rootfs) in &mut self.containers {
            if let Err(e) = self.manager.remove(id) {
                eprintln!("cleanup {id}: {e}");
            }
            if let Some(rootfs) = rootfs.take() {
                if let Err(e) = rootfs.remove() {
                    eprintln!("cleanup rootfs {id}: {e}");
                }
            }
        }
        if let Ok(layout) = CgroupLayout::detect() {
            if let Err(e) = layout.remove(&self.cgroup_parent) {
                eprintln!("cleanup cgroup: {e}");
            }
        }
    }
}

fn open_manager(data_dir: &Path) -> ContainerManager {
    ContainerManager::open(
        &data_dir.join("containers"),
        CliRuntime::new(RuntimeKind::Runc, data_dir.join("runc")),
        vec![PathBuf::from(env!("CARGO_BIN_EXE_skiff-monitor"))],
        LogOptions::default(),
    )
    .expect("manager")
}

/// Whether `pid` is a live process (a zombie waiting for its reaper counts as gone).
fn process_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').expect("stat") + 2..].chars().next();
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Waits (up to 10 s) until `pid` is gone.
fn process_gone_soon(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Waits (up to 10 s) until the container's log has a line ending in `text`.
fn wait_for_log(fixture: &Fixture, id: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(fixture.log_path(id)).unwrap_or_default();
        if log.lines().any(|l| l.ends_with(text)) {
            return;
        }
        assert!(Instant::now() < deadline, "no {text:?} in the log: {log}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts nothing of container `id` is left: runtime state, cgroup dirs, container dir.
fn assert_gone(fixture: &Fixture, id: &str) {
    let layout = CgroupLayout::detect().expect("layout");
    for dir in layout.dirs(&format!("{}/{id}", fixture.cgroup_parent)) {
        assert!(!dir.exists(), "cgroup {} left", dir.display());
    }
    assert!(
        !fixture.dir.path().join("runc").join(id).exists(),
        "runc state left"
    );
    assert!(
        !fixture.manager.container_dir(id).exists(),
        "container dir left"
    );
    assert_eq!(fixture.manager.status(id).expect("status"), None);
}

fn exited(status: &ContainerStatus) -> (i32, String, Option<String>) {
    match &status.state {
        ContainerState::Exited {
            exit_code,
            reason,
            message,
            ..
        } => (*exit_code, reason.clone(), message.clone()),
        other => panic!("not exited: {other:?}"),
    }
}

#[test]
fn exit_code_reason_log_and_termination_message() {
    let mut fixture = Fixture::new("exit");
    let started = Instant::now();
    fixture.start(
        "exit",
        "echo hello; echo oops >&2; printf 'no newline'; echo bye > /dev/termination-log; exit 3",
        serde_json::json!({}),
    );
    let status = fixture
        .manager
        .wait_exited("exit", Duration::from_secs(20))
        .expect("exited");
    let elapsed = started.elapsed();
    assert_eq!(
        exited(&status),
        (3, "Error".to_owned(), Some("bye\n".to_owned()))
    );
    let log = std::fs::read_to_string(fixture.log_path("exit")).expect("log");
    let entries: Vec<(&str, &str, &str)> = log
        .lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ');
            let _time = p.next();
            (
                p.next().expect("stream"),
                p.next().expect("tag"),
                p.next().unwrap_or_default(),
            )
        })
        .collect();
    assert!(entries.contains(&("stdout", "F", "hello")), "{log}");
    assert!(entries.contains(&("stderr", "F", "oops")), "{log}");
    assert!(entries.contains(&("stdout", "F", "no newline")), "{log}");

    // The monitor itself removed the runtime's state and the cgroup before it went.
    assert!(process_gone_soon(status.monitor_pid), "the monitor ends");
    let layout = CgroupLayout::detect().expect("layout");
    for dir in layout.dirs(&format!("{}/exit", fixture.cgroup_parent)) {
        assert!(
            !dir.exists(),
            "cgroup {} left by the monitor",
            dir.display()
        );
    }
    assert!(
        !fixture.dir.path().join("runc").join("exit").exists(),
        "runc state left by the monitor"
    );
    let monitor_log =
        std::fs::read_to_string(fixture.manager.container_dir("exit").join("monitor.log"))
            .unwrap_or_default();
    assert!(
        !monitor_log.contains("asking the runtime"),
        "the monitor cleaned up without the runtime: {monitor_log}"
    );

    let remove = Instant::now();
    fixture.manager.remove("exit").expect("remove");
    eprintln!(
        "create+start+exit: {:?} (with rootfs and spec), remove: {:?}",
        elapsed,
        remove.elapsed()
    );
    assert_gone(&fixture, "exit");
    // Idempotent.
    fixture.manager.remove("exit").expect("second remove");
}

#[test]
fn a_container_outlives_its_manager_and_is_readopted() {
    let mut fixture = Fixture::new("adopt");
    // PID 1 of a namespace gets only the signals it handles: the shell traps TERM.
    let status = fixture.start(
        "adopt",
        "trap 'exit 143' TERM; echo up; sleep 1000 & wait",
        serde_json::json!({}),
    );
    let ContainerState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    assert!(process_exists(pid));
    assert!(process_exists(status.monitor_pid));
    // Until the trap is set, TERM would be ignored (PID 1 without a handler).
    wait_for_log(&fixture, "adopt", " F up");
    // The monitor is in its own session, not a child of the test.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", status.monitor_pid))
        .expect("monitor stat");
    let after_name = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    assert_eq!(
        fields[3],
        status.monitor_pid.to_string(),
        "session leader: {stat}"
    );
    assert_ne!(
        fields[1],
        std::process::id().to_string(),
        "not the test's child"
    );

    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", status.monitor_pid))
        .expect("monitor status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    eprintln!("monitor resident set: {rss_kb} kB");
    assert!(rss_kb < 16 * 1024, "monitor uses {rss_kb} kB");

    // A new manager over the same data dir sees the same running container.
    fixture.manager = open_manager(fixture.dir.path());
    assert_eq!(
        fixture.manager.list().expect("list"),
        vec!["adopt".to_owned()]
    );
    let again = fixture
        .manager
        .status("adopt")
        .expect("status")
        .expect("found");
    assert_eq!(again, status);

    let stop = Instant::now();
    let stopped = fixture
        .manager
        .stop("adopt", 15, Duration::from_secs(10))
        .expect("stop");
    assert!(
        stop.elapsed() < Duration::from_secs(5),
        "sleep exits on SIGTERM"
    );
    assert_eq!(exited(&stopped).0, 143);
    assert!(!process_exists(pid));
    fixture.manager.remove("adopt").expect("remove");
    assert_gone(&fixture, "adopt");
    assert!(process_gone_soon(status.monitor_pid), "the monitor exits");
}

/// Fields of /proc/PID/stat after the command name (state is [0], parent pid [1]).
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .map(str::to_owned)
        .collect()
}

#[test]
fn monitors_are_forked_by_one_launcher_that_is_replaced_when_it_dies() {
    let mut fixture = Fixture::new("launcher");
    // A descriptor the starter leaks (no close-on-exec, as one open in another thread at the
    // spawn would be) is not kept by the launcher, nor by the monitors it forks.
    let leaked = std::fs::File::open("/dev/null").expect("/dev/null");
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).expect("inheritable");
    let first = fixture.start("one", "sleep 1000", serde_json::json!({}));
    drop(leaked);
    let second = fixture.start("two", "sleep 1000", serde_json::json!({}));
    // One launcher, the test's child, forked both monitors; they are not its children (it
    // forks them through a process that exits at once, so it reaps only its commands).
    let launcher = fixture.manager.launcher_pid().expect("a launcher");
    assert_eq!(stat_fields(launcher)[1], std::process::id().to_string());
    for monitor in [first.monitor_pid, second.monitor_pid] {
        assert_ne!(stat_fields(monitor)[1], launcher.to_string());
        // The monitor's session is its own.
        assert_eq!(stat_fields(monitor)[3], monitor.to_string());
    }
    let comm = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .expect("comm")
            .trim()
            .to_owned()
    };
    assert_eq!(comm(launcher), "skiff-launcher");
    assert_eq!(comm(first.monitor_pid), "skiff-monitor");
    // Its stdio, and its own PID namespace (to come back to after an exec) as 3.
    let fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{launcher}/fd"))
        .expect("the launcher's descriptors")
        .filter_map(|e| {
            let e = e.ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_str()?.to_owned(),
                link.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    assert!(
        fds.iter()
            .all(|(fd, link)| ["0", "1", "2"].contains(&fd.as_str())
                || (fd == "3" && link.starts_with("pid:["))),
        "the launcher holds its stdio and PID namespace only: {fds:?}"
    );

    // A launcher that died is replaced on the next start; the running monitors live on.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(launcher as i32).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill the launcher");
    assert!(process_gone_soon(launcher), "the launcher dies");
    let third = fixture.start("three", "sleep 1000", serde_json::json!({}));
    assert!(
        matches!(third.state, ContainerState::Running { .. }),
        "{third:?}"
    );
    let replacement = fixture.manager.launcher_pid().expect("a launcher");
    assert_ne!(replacement, launcher);
    assert!(
        !Path::new(&format!("/proc/{launcher}")).exists(),
        "the dead launcher was collected, not left a zombie"
    );
    assert!(process_exists(first.monitor_pid));

    // Dropping the manager ends its launcher; the containers keep running.
    fixture.manager = open_manager(fixture.dir.path());
    assert!(
        process_gone_soon(replacement),
        "the launcher ends with its manager"
    );
    assert!(process_exists(third.monitor_pid));
}

/// Runs `args` in container `id` through the launcher; returns what the control socket said
/// and the command's output (stdout and stderr into one pipe).
fn spawn_exec(fixture: &Fixture, id: &str, args: &[&str]) -> (ExecReport, String) {
    use std::io::Read;
    use std::os::fd::AsFd;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (output, output_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let mut control = fixture
        .manager
        .spawn_exec(
            id,
            &args,
            false,
            [null.as_fd(), output_write.as_fd(), output_write.as_fd()],
        )
        .expect("spawn_exec");
    drop((null, output_write));
    let mut text = String::new();
    std::fs::File::from(output)
        .read_to_string(&mut text)
        .expect("output");
    let mut report = String::new();
    control.read_to_string(&mut report).expect("control");
    (ExecReport::parse(&report), text)
}

/// The child processes of process `launcher` (the monitors' intermediate exits at once).
fn children_of(launcher: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                .is_some_and(|ppid| ppid == launcher)
        })
        .collect()
}

#[test]
fn the_launcher_runs_commands_in_a_container_and_reaps_them() {
    let mut fixture = Fixture::new("spawn-exec");
    let status = fixture.start(
        "app",
        "echo init > /tmp/who; sleep 1000",
        serde_json::json!({}),
    );
    let ContainerState::Running { pid: init, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    // The command joins the container: its root, its PID namespace (pid 1 is the init), its
    // cgroup, its process settings; its output and exit code come back.
    let (report, text) = spawn_exec(
        &fixture,
        "app",
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; \
             [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] && echo same-cgroups; \
             s='^(Seccomp|NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb|Uid|Gid|Groups):'; \
             [ \"$(grep -E \"$s\" /proc/self/status)\" = \"$(grep -E \"$s\" /proc/1/status)\" ] \
               && [ $(cat /proc/self/oom_score_adj) = $(cat /proc/1/oom_score_adj) ] && echo same-settings; \
             echo fds:; ls /proc/$$/fd; echo :fds; \
             echo oops >&2; exit 3",
        ],
    );
    assert_eq!(report.end, ExecEnd::Exited(3), "{text}");
    // The launcher lent the command the container's OOM score (1000, BestEffort) and took its
    // own back.
    let launcher = fixture.manager.launcher_pid().expect("a launcher");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{launcher}/oom_score_adj"))
            .expect("the launcher's score")
            .trim(),
        std::fs::read_to_string("/proc/self/oom_score_adj")
            .expect("the test's score")
            .trim()
    );
    let pid = report.pid.expect("a pid line");
    assert_ne!(pid, init as i32);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "sleep 1000 ", "{text}");
    assert_eq!(lines[1], "same-cgroups", "{text}");
    assert_eq!(lines[2], "same-settings", "{text}");
    // Nothing of the launcher's is open in the command (it holds each container's cgroup
    // files and init's pidfd, and whatever it inherited), as runc leaves nothing open.
    assert_eq!(lines[3..8], ["fds:", "0", "1", "2", ":fds"], "{text}");
    assert_eq!(lines[8], "oops", "{text}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the command was reaped"
    );

    // Start failures: runc's words and Kubernetes' codes.
    let (report, _) = spawn_exec(&fixture, "app", &["no-such-command"]);
    assert_eq!(
        report.end,
        ExecEnd::NotStarted {
            code: 127,
            message: "exec failed: unable to start container process: exec: \"no-such-command\": executable file not found in $PATH".into()
        }
    );
    let (report, _) = spawn_exec(&fixture, "app", &["/etc"]);
    assert!(
        matches!(report.end, ExecEnd::NotStarted { code: 126, .. }),
        "{report:?}"
    );
    let (report, _) = spawn_exec(&fixture, "app", &["/etc/passwd"]);
    assert_eq!(
        report.end,
        ExecEnd::NotStarted {
            code: 126,
            message: "exec failed: unable to start container process: exec: \"/etc/passwd\": permission denied".into()
        }
    );
    let (report, _) = spawn_exec(&fixture, "app", &["/no/such/file"]);
    assert!(
        matches!(&report.end, ExecEnd::NotStarted { code: 127, message } if message.ends_with("no such file or directory")),
        "{report:?}"
    );
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let error = fixture
        .manager
        .spawn_exec(
            "absent",
            &["true".into()],
            false,
            [std::os::fd::AsFd::as_fd(&null); 3],
        )
        .expect_err("no such container");
    assert!(error.to_string().contains("absent"), "{error}");

    // Closing the control socket early kills the command's whole process group, and the
    // launcher reaps it: nothing is left.
    let (output, output_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let control = {
        use std::os::fd::AsFd;
        fixture
            .manager
            .spawn_exec(
                "app",
                &["sh".into(), "-c".into(), "sleep 977 & sleep 978".into()],
                false,
                [null.as_fd(), output_write.as_fd(), output_write.as_fd()],
            )
            .expect("spawn_exec")
    };
    drop((null, output_write));
    let sleeping = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    c.starts_with("sleep\0") && (c.contains("977") || c.contains("978"))
                })
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping() < 2 {
        assert!(Instant::now() < deadline, "the two sleeps never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(control);
    let launcher = fixture.manager.launcher_pid().expect("a launcher");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping() > 0 || !children_of(launcher).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still there: {} sleeps, launcher children {:?}",
            sleeping(),
            children_of(launcher)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(output);
}

#[test]
fn stop_kills_a_process_that_ignores_sigterm_at_its_grace_period() {
    let mut fixture = Fixture::new("grace");
    let status = fixture.start(
        "grace",
        "trap '' TERM; echo ready; while true; do sleep 1; done",
        serde_json::json!({}),
    );
    let ContainerState::Running { pid, .. } = status.state else {
        panic!("not running: {status:?}");
    };
    wait_for_log(&fixture, "grace", " F ready");
    let grace = Duration::from_millis(1500);
    let started = Instant::now();
    let stopped = fixture.manager.stop("grace", 15, grace).expect("stop");
    let took = started.elapsed();
    eprintln!("stop with grace {grace:?} took {took:?}");
    assert!(took >= grace, "killed before the grace period: {took:?}");
    assert!(took < grace + Duration::from_secs(2), "took {took:?}");
    assert_eq!(exited(&stopped).0, 137);
    assert!(!process_exists(pid));
    fixture.manager.remove("grace").expect("remove");
    assert_gone(&fixture, "grace");
}

#[test]
fn a_memory_limit_ends_in_oomkilled() {
    let mut fixture = Fixture::new("oom");
    fixture.start(
        "oom",
        "head -c 100m /dev/zero | tail > /dev/null",
        serde_json::json!({"limits": {"memory": "20Mi"}}),
    );
    let status = fixture
        .manager
        .wait_exited("oom", Duration::from_secs(30))
        .expect("exited");
    let (code, reason, _) = exited(&status);
    assert_eq!(reason, "OOMKilled");
    // `tail` (the biggest process) is killed; the shell exits with the pipeline's status.
    assert_eq!(code, 137);
    fixture.manager.remove("oom").expect("remove");
    assert_gone(&fixture, "oom");
}

#[test]
fn a_command_missing_from_the_image_fails_to_start_with_the_runtime_message() {
    let mut fixture = Fixture::new("missing");
    let rootfs = RootFs::create(
        &fixture.store,
        &fixture.busybox,
        &fixture.dir.path().join("rootfs/missing"),
    )
    .expect("rootfs");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "test", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["/no/such/thing"]}]}
    }))
    .expect("pod");
    let spec = build_spec(&ContainerSpecInput {
        pod: &pod,
        container: &pod.spec.as_ref().expect("spec").containers[0],
        image_config: &fixture.busybox.config,
        rootfs: &rootfs.merged,
        namespaces: NamespacePaths::default(),
        pod_files: PodFiles::default(),
        mounts: vec![],
        termination_log: None,
        fields: FieldValues::default(),
        cgroup_parent: fixture.cgroup_parent.clone(),
        container_id: "missing".into(),
        seccomp: SeccompOptions::default(),
    })
    .expect("spec");
    fixture.containers.push(("missing".into(), Some(rootfs)));
    let error = fixture
        .manager
        .start("missing", &spec, &fixture.log_path("missing"))
        .expect_err("cannot start");
    let text = error.to_string();
    assert!(text.contains("/no/such/thing"), "{text}");
    let status = fixture
        .manager
        .status("missing")
        .expect("status")
        .expect("recorded");
    let (code, reason, message) = exited(&status);
    assert_eq!((code, reason.as_str()), (128, "StartError"));
    assert!(message.expect("message").contains("/no/such/thing"));
    fixture.manager.remove("missing").expect("remove");
    assert_gone(&fixture, "missing");
}

/// Bind-mounted namespace files made with unshare(1), as a pod sandbox holds them; unmounted
/// and removed on drop.
struct NamespaceFiles {
    dir: tempfile::TempDir,
}

impl NamespaceFiles {
    fn new(hostname: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_owned();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .expect("run");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let p = path.to_str().expect("utf-8");
        let files = NamespaceFiles { dir };
        run(&["mount", "--bind", p, p]);
        run(&["mount", "--make-private", p]);
        for ns in ["net", "uts", "ipc"] {
            std::fs::write(path.join(ns), b"").expect("ns file");
        }
        run(&[
            "unshare",
            &format!("--net={p}/net"),
            &format!("--uts={p}/uts"),
            &format!("--ipc={p}/ipc"),
            "hostname",
            hostname,
        ]);
        files
    }

    fn path(&self, ns: &str) -> PathBuf {
        self.dir.path().join(ns)
    }

    /// The nsfs inode, as `readlink /proc/self/ns/<ns>` shows it inside.
    fn inode(&self, ns: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path(ns)).expect("ns file").ino()
    }
}

impl Drop for NamespaceFiles {
    fn drop(&mut self) {
        for ns in ["net", "uts", "ipc"] {
            let _ = rustix::mount::unmount(self.path(ns), rustix::mount::UnmountFlags::DETACH);
        }
        let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn a_container_joins_the_sandbox_namespaces_and_has_its_own_pid_namespace() {
    let mut fixture = Fixture::new("join");
    let hostname = format!("pod-{}", std::process::id());
    let ns = NamespaceFiles::new(&hostname);
    let rootfs = RootFs::create(
        &fixture.store,
        &fixture.busybox,
        &fixture.dir.path().join("rootfs/join"),
    )
    .expect("rootfs");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "join", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c",
            "hostname; for ns in net uts ipc; do readlink /proc/self/ns/$ns; done; echo pid=$$$$; echo $MY_NAME"]}]}
    }))
    .expect("pod");
    let mut container = pod.spec.as_ref().expect("spec").containers[0].clone();
    container.env = Some(vec![serde_json::from_value(serde_json::json!(
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ))
    .expect("env")]);
    let spec = build_spec(&ContainerSpecInput {
        pod: &pod,
        container: &container,
        image_config: &fixture.busybox.config,
        rootfs: &rootfs.merged,
        namespaces: NamespacePaths {
            net: Some(ns.path("net")),
            uts: Some(ns.path("uts")),
            ipc: Some(ns.path("ipc")),
            pid: None,
        },
        pod_files: PodFiles::default(),
        mounts: vec![],
        termination_log: None,
        fields: FieldValues::default(),
        cgroup_parent: fixture.cgroup_parent.clone(),
        container_id: "join".into(),
        seccomp: SeccompOptions::default(),
    })
    .expect("spec");
    fixture.containers.push(("join".into(), Some(rootfs)));
    fixture
        .manager
        .start("join", &spec, &fixture.log_path("join"))
        .expect("start");
    let status = fixture
        .manager
        .wait_exited("join", Duration::from_secs(20))
        .expect("exit");
    assert_eq!(exited(&status).0, 0);
    let log = std::fs::read_to_string(fixture.log_path("join")).expect("log");
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default())
        .collect();
    assert_eq!(
        lines,
        vec![
            hostname.clone(),
            format!("net:[{}]", ns.inode("net")),
            format!("uts:[{}]", ns.inode("uts")),
            format!("ipc:[{}]", ns.inode("ipc")),
            "pid=1".to_owned(),
            "join".to_owned(),
        ]
    );
    fixture.manager.remove("join").expect("remove");
    assert_gone(&fixture, "join");
}

/// Not a test of behaviour: the latency of start (create+start), wait for the exit, and remove
/// of `/bin/true` in a sandbox's namespaces, median of 10, printed.
#[test]
fn latency_of_a_short_container() {
    let mut fixture = Fixture::new("latency");
    let ns = NamespaceFiles::new("latency");
    let mut starts = Vec::new();
    let mut totals = Vec::new();
    for i in 0..10 {
        let id = format!("lat{i}");
        let rootfs = RootFs::create(
            &fixture.store,
            &fixture.busybox,
            &fixture.dir.path().join("rootfs").join(&id),
        )
        .expect("rootfs");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lat", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}
        }))
        .expect("pod");
        let spec = build_spec(&ContainerSpecInput {
            pod: &pod,
            container: &pod.spec.as_ref().expect("spec").containers[0],
            image_config: &fixture.busybox.config,
            rootfs: &rootfs.merged,
            namespaces: NamespacePaths {
                net: Some(ns.path("net")),
                uts: Some(ns.path("uts")),
                ipc: Some(ns.path("ipc")),
                pid: None,
            },
            pod_files: PodFiles::default(),
            mounts: vec![],
            termination_log: None,
            fields: FieldValues::default(),
            cgroup_parent: fixture.cgroup_parent.clone(),
            container_id: id.clone(),
            seccomp: SeccompOptions::default(),
        })
        .expect("spec");
        fixture.containers.push((id.clone(), Some(rootfs)));
        let t0 = Instant::now();
        fixture
            .manager
            .start(&id, &spec, &fixture.log_path(&id))
            .expect("start");
        starts.push(t0.elapsed());
        let status = fixture
            .manager
            .wait_exited(&id, Duration::from_secs(20))
            .expect("exit");
        assert_eq!(exited(&status).0, 0);
        fixture.manager.remove(&id).expect("remove");
        totals.push(t0.elapsed());
    }
    starts.sort();
    totals.sort();
    eprintln!(
        "container latency (median of 10): start {:?}, start+exit+remove {:?}",
        starts[5], totals[5]
    );
}

/// A memory limit below what the runtime needs to start the process: the start fails with the
/// runtime's own message, recorded as StartError, and nothing is left.
#[test]
fn a_memory_limit_too_low_to_start_is_a_start_error() {
    let mut fixture = Fixture::new("tiny");
    let rootfs = RootFs::create(
        &fixture.store,
        &fixture.busybox,
        &fixture.dir.path().join("rootfs/tiny"),
    )
    .expect("rootfs");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tiny", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"],
            "resources": {"limits": {"memory": "100Ki"}}}]}
    }))
    .expect("pod");
    let spec = build_spec(&ContainerSpecInput {
        pod: &pod,
        container: &pod.spec.as_ref().expect("spec").containers[0],
        image_config: &fixture.busybox.config,
        rootfs: &rootfs.merged,
        namespaces: NamespacePaths::default(),
        pod_files: PodFiles::default(),
        mounts: vec![],
        termination_log: None,
        fields: FieldValues::default(),
        cgroup_parent: fixture.cgroup_parent.clone(),
        container_id: "tiny".into(),
        seccomp: SeccompOptions::default(),
    })
    .expect("spec");
    fixture.containers.push(("tiny".into(), Some(rootfs)));
    let error = fixture
        .manager
        .start("tiny", &spec, &fixture.log_path("tiny"))
        .expect_err("cannot start");
    eprintln!("start error: {error}");
    let status = fixture
        .manager
        .status("tiny")
        .expect("status")
        .expect("recorded");
    let (code, reason, message) = exited(&status);
    assert_eq!((code, reason.as_str()), (128, "StartError"));
    assert!(!message.expect("message").is_empty());
    fixture.manager.remove("tiny").expect("remove");
    assert_gone(&fixture, "tiny");
}

/// Kills and reaps the holder of a PID namespace on drop.
struct PidHolder(std::process::Child);

impl Drop for PidHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// With the pod's PID namespace given (shareProcessNamespace), the container joins it: it sees
/// the namespace's PID 1 (here `sleep`, standing in for the pause process) and is not PID 1.
#[test]
fn a_container_joins_a_shared_pid_namespace() {
    let mut fixture = Fixture::new("sharedpid");
    // unshare's child is PID 1 of the new namespace (killed with unshare: --kill-child).
    let holder = PidHolder(
        std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sleep", "1000"])
            .spawn()
            .expect("unshare"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeper = loop {
        let children = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            holder.0.id(),
            holder.0.id()
        ))
        .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            let pid: u32 = pid.parse().expect("pid");
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no sleep in the new PID namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let rootfs = RootFs::create(
        &fixture.store,
        &fixture.busybox,
        &fixture.dir.path().join("rootfs/sharedpid"),
    )
    .expect("rootfs");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sharedpid", "namespace": "default"},
        "spec": {"shareProcessNamespace": true, "containers": [{"name": "c", "image": "busybox",
            "command": ["sh", "-c", "echo self=$$$$; cat /proc/1/comm"]}]}
    }))
    .expect("pod");
    let spec = build_spec(&ContainerSpecInput {
        pod: &pod,
        container: &pod.spec.as_ref().expect("spec").containers[0],
        image_config: &fixture.busybox.config,
        rootfs: &rootfs.merged,
        namespaces: NamespacePaths {
            pid: Some(PathBuf::from(format!("/proc/{sleeper}/ns/pid"))),
            ..NamespacePaths::default()
        },
        pod_files: PodFiles::default(),
        mounts: vec![],
        termination_log: None,
        fields: FieldValues::default(),
        cgroup_parent: fixture.cgroup_parent.clone(),
        container_id: "sharedpid".into(),
        seccomp: SeccompOptions::default(),
    })
    .expect("spec");
    fixture.containers.push(("sharedpid".into(), Some(rootfs)));
    fixture
        .manager
        .start("sharedpid", &spec, &fixture.log_path("sharedpid"))
        .expect("start");
    let status = fixture
        .manager
        .wait_exited("sharedpid", Duration::from_secs(20))
        .expect("exit");
    assert_eq!(exited(&status).0, 0);
    let log = std::fs::read_to_string(fixture.log_path("sharedpid")).expect("log");
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_ne!(lines[0], "self=1", "not PID 1 in a shared namespace");
    assert_eq!(lines[1], "sleep");
    fixture.manager.remove("sharedpid").expect("remove");
    assert_gone(&fixture, "sharedpid");
    drop(holder);
}

/// An attach session over the monitor's socket: frames out, output frames collected.
struct Session {
    stream: std::os::unix::net::UnixStream,
    frames: attach::FrameReader,
    output: Vec<u8>,
}

impl Session {
    fn open(fixture: &Fixture, id: &str, stdin: bool) -> Session {
        let mut stream =
            attach::connect(&fixture.manager.container_dir(id)).expect("connect to attach.sock");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        use std::io::Write;
        stream
            .write_all(&attach::encode(attach::HELLO, &[u8::from(stdin)]))
            .expect("hello");
        Session {
            stream,
            frames: attach::FrameReader::default(),
            output: Vec::new(),
        }
    }

    fn send(&mut self, frame: &[u8]) {
        use std::io::Write;
        self.stream.write_all(frame).expect("send");
    }

    /// Reads output until it contains `text` (10 s at most); returns whether the connection
    /// is still open.
    fn expect(&mut self, text: &str) {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        loop {
            if String::from_utf8_lossy(&self.output).contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the attached output: {:?}",
                String::from_utf8_lossy(&self.output)
            );
            match self.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "the monitor closed the session before {text:?}: {:?}",
                    String::from_utf8_lossy(&self.output)
                ),
                Ok(n) => {
                    self.frames.push(&buf[..n]);
                    while let Some((kind, payload)) = self.frames.next_frame() {
                        assert!(kind == attach::STDOUT || kind == attach::STDERR);
                        self.output.extend_from_slice(&payload);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the session: {e}"),
            }
        }
    }
}

/// A shell with a terminal and stdin: commands through the attach socket work, a resize
/// changes `stty size`, output also goes to the CRI log (stdout), a session that leaves does
/// not end the container, and a second one works too.
#[test]
fn attach_to_a_terminal_container() {
    let mut fixture = Fixture::new("attach-tty");
    let id = "tty";
    let status = fixture.start_container(
        id,
        serde_json::json!({"name": "c", "image": "busybox", "command": ["sh"],
            "stdin": true, "tty": true}),
    );
    assert!(matches!(status.state, ContainerState::Running { .. }));
    let mut session = Session::open(&fixture, id, true);
    session.send(&attach::resize_frame(33, 111));
    session.send(&attach::encode(
        attach::STDIN,
        b"echo $((6*7)); stty size\n",
    ));
    session.expect("42\r\n33 111\r\n");
    drop(session);

    let mut again = Session::open(&fixture, id, true);
    again.send(&attach::encode(attach::STDIN, b"echo again-$((1+1))\n"));
    again.expect("again-2");
    wait_for_log(&fixture, id, "stdout F again-2");
    again.send(&attach::encode(attach::STDIN, b"exit 3\n"));
    let status = fixture
        .manager
        .wait_exited(id, Duration::from_secs(10))
        .expect("exit");
    assert_eq!(exited(&status).0, 3);
}

/// stdin without a terminal, stdinOnce: what the session writes reaches the container, and
/// its stdin closes when the session's stdin does (`cat` ends); a session that does not
/// attach stdin only reads.
#[test]
fn attach_stdin_once_closes_the_containers_stdin() {
    let mut fixture = Fixture::new("attach-once");
    let id = "once";
    fixture.start_container(
        id,
        serde_json::json!({"name": "c", "image": "busybox",
            "command": ["sh", "-c", "echo ready; cat; echo cat-ended >&2"],
            "stdin": true, "stdinOnce": true}),
    );
    let mut reader = Session::open(&fixture, id, false);
    let mut writer = Session::open(&fixture, id, true);
    // The reader's input is ignored; the writer's arrives.
    reader.send(&attach::encode(attach::STDIN, b"ignored\n"));
    writer.send(&attach::encode(attach::STDIN, b"hello\n"));
    writer.expect("hello\n");
    reader.expect("hello\n");
    assert!(!String::from_utf8_lossy(&reader.output).contains("ignored"));
    writer.send(&attach::encode(attach::STDIN_CLOSE, &[]));
    reader.expect("cat-ended");
    let status = fixture
        .manager
        .wait_exited(id, Duration::from_secs(10))
        .expect("exit");
    assert_eq!(exited(&status).0, 0);
    wait_for_log(&fixture, id, "stdout F hello");
    wait_for_log(&fixture, id, "stderr F cat-ended");
}

/// A plain container gets no attach socket.
#[test]
fn a_container_without_stdin_or_tty_has_no_attach_socket() {
    let mut fixture = Fixture::new("attach-none");
    fixture.start("plain", "sleep 30", serde_json::json!({}));
    assert!(attach::connect(&fixture.manager.container_dir("plain")).is_err());
    assert!(!fixture
        .manager
        .container_dir("plain")
        .join(attach::SOCKET_FILE)
        .exists());
}

/// A client that never reads is dropped once its queue is full: the container's output and its
/// log go on, the container ends, and the client sees its connection end.
#[test]
fn a_stalled_attach_client_never_blocks_the_container() {
    use std::io::Read;
    let mut fixture = Fixture::new("attach-stall");
    let id = "stall";
    fixture.start_container(
        id,
        serde_json::json!({"name": "c", "image": "busybox", "stdin": true,
            "command": ["sh", "-c", "read go; head -c 8000000 /dev/zero | tr '\\0' x; echo; echo done"]}),
    );
    let mut stalled = Session::open(&fixture, id, true);
    stalled.send(&attach::encode(attach::STDIN, b"go\n"));
    let status = fixture
        .manager
        .wait_exited(id, Duration::from_secs(30))
        .expect("the container ends though a client does not read");
    assert_eq!(exited(&status).0, 0);
    wait_for_log(&fixture, id, "stdout F done");
    // What was queued before the drop, then the end.
    stalled
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut received = Vec::new();
    stalled
        .stream
        .read_to_end(&mut received)
        .expect("the connection ends");
    assert!(
        received.len() < 8_000_000,
        "the stalled client got everything ({} bytes)",
        received.len()
    );
}
