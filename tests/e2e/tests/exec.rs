//! `kubectl exec` against `skiff server` with its node agent: the API server passes the
//! WebSocket upgrade to the node's streaming server, which runs the command in the container
//! through the OCI runtime's exec.

use std::time::Duration;

use skiff_e2e::{import_test_images, stdout, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn kubectl_exec_runs_in_the_container_with_stdio_and_exit_codes() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "box"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "workingDir": "/tmp",
            "securityContext": {{"runAsUser": 1000, "runAsGroup": 3000}},
            "env": [{{"name": "GREETING", "value": "hi there"}}],
            "command": ["sh", "-c", "{SLEEP}"]}}]}}}}"#
    ));
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "pair"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "containers": [
            {{"name": "web", "image": "luksa/kubia", "imagePullPolicy": "Never"}},
            {{"name": "side", "image": "busybox", "imagePullPolicy": "Never",
              "command": ["sh", "-c", "{SLEEP}"]}}]}}}}"#
    ));
    for pod in ["box", "pair"] {
        wait_until(WAIT, &format!("{pod} Running"), || {
            cluster.jsonpath(&["pod", pod], "{.status.phase}") == "Running"
        });
    }

    // The container's hostname, environment and working directory.
    assert_eq!(
        cluster.kubectl_ok(["exec", "box", "--", "hostname"]),
        "box\n"
    );
    assert_eq!(
        cluster.kubectl_ok(["exec", "box", "--", "sh", "-c", "echo $GREETING; pwd"]),
        "hi there\n/tmp\n"
    );
    // The container's namespaces, cgroup, identity and capabilities: the same as its init's
    // (PID 1 of its PID namespace).
    let same = cluster.kubectl_ok([
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "for n in cgroup ipc mnt net pid uts; do \
           [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo ns $n differs; \
         done; \
         [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] || echo cgroup differs; \
         for f in Uid Gid Groups CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs; do \
           [ \"$(grep ^$f: /proc/self/status)\" = \"$(grep ^$f: /proc/1/status)\" ] || echo $f differs; \
         done; grep ^Uid: /proc/self/status",
    ]);
    assert_eq!(
        same.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "1000", "1000", "1000", "1000"],
        "{same}"
    );
    // stdout and stderr apart.
    let both = cluster.kubectl(["exec", "box", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert!(both.status.success(), "{both:?}");
    assert_eq!(stdout(&both), "out\n");
    assert_eq!(stderr(&both), "err\n");
    // Exit codes come through.
    let failed = cluster.kubectl(["exec", "box", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    assert!(
        stderr(&failed).contains("command terminated with exit code 3"),
        "{failed:?}"
    );
    // stdin, through to its end.
    let piped = cluster.kubectl_stdin(["exec", "-i", "box", "--", "cat"], "hello\nworld\n");
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(stdout(&piped), "hello\nworld\n");
    let counted = cluster.kubectl_stdin(
        ["exec", "-i", "box", "--", "wc", "-c"],
        &"x".repeat(100_000),
    );
    assert_eq!(stdout(&counted).trim(), "100000");
    // A command the image does not have: the runtime's message, and 127 as Kubernetes gives.
    let missing = cluster.kubectl(["exec", "box", "--", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(
        stderr(&missing).contains("executable file not found"),
        "{missing:?}"
    );

    // -c picks the container; the two share the network: localhost reaches the other one.
    let fetched = cluster.kubectl_ok([
        "exec",
        "pair",
        "-c",
        "side",
        "--",
        "wget",
        "-qO-",
        "http://localhost:8080/",
    ]);
    assert_eq!(fetched, "You've hit pair\n");
    let defaulted = cluster.kubectl(["exec", "pair", "--", "hostname"]);
    assert_eq!(stdout(&defaulted), "pair\n");
    assert!(
        stderr(&defaulted).contains("Defaulted container \"web\" out of: web, side"),
        "{defaulted:?}"
    );
    let wrong = cluster.kubectl(["exec", "pair", "-c", "nope", "--", "true"]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("container nope is not valid for pod pair"),
        "{wrong:?}"
    );
}

/// A busybox pod `name` that sleeps, Running once this returns.
fn sleeping_pod(cluster: &Cluster, name: &str) {
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "{SLEEP}"]}}]}}}}"#
    ));
    wait_until(WAIT, &format!("{name} Running"), || {
        cluster.jsonpath(&["pod", name], "{.status.phase}") == "Running"
    });
}

#[test]
fn kubectl_exec_it_is_a_real_terminal() {
    let cluster = Cluster::start_with_agent(import_test_images);
    sleeping_pod(&cluster, "term");
    let mut python = std::process::Command::new("python3");
    python
        .arg(skiff_e2e::fixture("tty_exec.py"))
        .arg(skiff_e2e::kubectl_bin())
        .arg(cluster.kubeconfig())
        .arg("term");
    let out = skiff_e2e::run(python, None);
    assert!(
        out.status.success() && stdout(&out).trim() == "OK",
        "the terminal session failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// The processes in the PID namespace of `pid` (the container's).
fn processes_beside(pid: u64) -> Vec<u32> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("the container runs");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            (std::fs::read_link(e.path().join("ns/pid")).ok()? == ns).then_some(p)
        })
        .collect()
}

#[test]
fn exec_sessions_leave_no_process_or_socket_behind() {
    let cluster = Cluster::start_with_agent(import_test_images);
    sleeping_pod(&cluster, "busy");
    let uid = cluster.jsonpath(&["pod", "busy"], "{.metadata.uid}");
    let status = cluster
        .data_dir()
        .join(format!("containers/{uid}_0_main/status.json"));
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(status).expect("status.json")).expect("JSON");
    let container_pid = status["pid"].as_u64().expect("pid");
    let server = cluster.server_pid();
    // A first exec warms up connections and caches.
    assert_eq!(
        cluster.kubectl_ok(["exec", "busy", "--", "echo", "warm"]),
        "warm\n"
    );
    let before = processes_beside(container_pid);
    let fds_before = skiff_e2e::open_fds(server);

    for i in 0..90 {
        let out = cluster.kubectl_ok(["exec", "busy", "--", "echo", &i.to_string()]);
        assert_eq!(out, format!("{i}\n"));
    }
    // Ten clients killed mid-stream, while their command runs.
    for _ in 0..10 {
        let mut session = cluster.kubectl_stream([
            "exec",
            "busy",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ]);
        session.expect_line(WAIT, "started", |l| l == "started");
        session.stop();
    }
    let deadline = std::time::Instant::now() + WAIT;
    while processes_beside(container_pid) != before {
        let now: Vec<String> = processes_beside(container_pid)
            .iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        assert!(
            std::time::Instant::now() < deadline,
            "processes left in the container: {now:?}, before {before:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until(WAIT, "the server's sockets closed", || {
        skiff_e2e::open_fds(server) <= fds_before
    });
    let execs: Vec<_> =
        std::fs::read_dir(cluster.data_dir().join(format!("containers/{uid}_0_main")))
            .expect("container dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("exec-"))
            .map(|e| e.path())
            .collect();
    assert!(execs.is_empty(), "exec files left: {execs:?}");
}

#[test]
fn the_python_clients_exec_stream_works() {
    let cluster = Cluster::start_with_agent(import_test_images);
    sleeping_pod(&cluster, "py");
    let mut python = skiff_e2e::python_fixture("python_exec.py");
    python.arg(cluster.kubeconfig()).arg("py");
    let out = skiff_e2e::run(python, None);
    assert!(
        out.status.success() && stdout(&out).trim() == "OK",
        "the Python client's exec failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}
