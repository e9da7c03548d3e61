//! `kubectl attach` and `kubectl run -it --rm` against `skiff server` with its node agent: the
//! API server passes the WebSocket upgrade to the node's streaming server, which attaches to
//! the container's own stdio through its monitor (or, for a container without stdin or tty,
//! follows its log).

use std::time::Duration;

use skiff_e2e::{import_test_images, stderr, stdout, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

/// Runs tests/fixtures/tty_attach.py in `mode` against `name`; asserts it printed OK.
fn tty_attach(cluster: &Cluster, mode: &str, name: &str) {
    let mut python = std::process::Command::new("python3");
    python
        .arg(skiff_e2e::fixture("tty_attach.py"))
        .arg(skiff_e2e::kubectl_bin())
        .arg(cluster.kubeconfig())
        .arg(mode)
        .arg(name);
    let out = skiff_e2e::run(python, None);
    assert!(
        out.status.success() && stdout(&out).trim() == "OK",
        "the terminal session ({mode} {name}) failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

fn running(cluster: &Cluster, name: &str) {
    wait_until(WAIT, &format!("{name} Running"), || {
        cluster.jsonpath(&["pod", name], "{.status.phase}") == "Running"
    });
}

#[test]
fn kubectl_run_it_rm_attaches_and_deletes_the_pod() {
    let cluster = Cluster::start_with_agent(import_test_images);
    tty_attach(&cluster, "run", "shell");
    // kubectl deleted it (--rm) before it exited.
    let gone = cluster.kubectl(["get", "pod", "shell"]);
    assert!(!gone.status.success(), "{gone:?}");
    assert!(stderr(&gone).contains("not found"), "{gone:?}");

    // Without a terminal, as in a pipeline: stdin reaches the container through to its end
    // (stdinOnce closes it), the output comes back, and the pod is deleted.
    let piped = cluster.kubectl_stdin(
        [
            "run",
            "-i",
            "--rm",
            "pipe",
            "--image=busybox",
            "--image-pull-policy=Never",
            "--restart=Never",
            "--",
            "wc",
            "-c",
        ],
        "hello\n",
    );
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(
        stdout(&piped).lines().next().map(str::trim),
        Some("6"),
        "{piped:?}"
    );
    let gone = cluster.kubectl(["get", "pod", "pipe"]);
    assert!(stderr(&gone).contains("not found"), "{gone:?}");
}

#[test]
fn kubectl_attach_it_to_a_shell_with_a_terminal() {
    let mut cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "term"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "command": ["sh"],
            "stdin": true, "tty": true}]}}"#,
    );
    running(&cluster, "term");
    tty_attach(&cluster, "attach", "term");
    // Detaching left the container running, the same instance.
    assert_eq!(
        cluster.jsonpath(&["pod", "term"], "{.status.phase}"),
        "Running"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "term"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    // exec into a container with a terminal: a process of its own, without one unless asked.
    assert_eq!(
        cluster.kubectl_ok([
            "exec",
            "term",
            "--",
            "sh",
            "-c",
            "echo hi; [ -t 0 ] || echo no-tty"
        ]),
        "hi\nno-tty\n"
    );
    // The terminal's output is the container's log (stdout).
    let logs = cluster.kubectl_ok(["logs", "term"]);
    assert!(logs.contains("42"), "{logs:?}");
    assert!(logs.contains("kept-5"), "{logs:?}");

    // The monitor holds the terminal, not the agent: after the server and its agent are
    // killed and started again, the same shell is attached to.
    cluster.restart();
    wait_until(WAIT, "the node serving again", || {
        cluster.kubectl(["logs", "term"]).status.success()
    });
    tty_attach(&cluster, "again", "term");
    assert_eq!(
        cluster.jsonpath(
            &["pod", "term"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

#[test]
fn kubectl_attach_streams_output_and_stdin_needs_a_container_with_stdin() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c",
            "i=0; while true; do echo tick $i; echo oops $i >&2; i=$((i+1)); sleep 0.2; done"]}]}}"#,
    );
    // stdin and stdinOnce without a terminal: `cat` echoes what comes, and ends when the
    // session's stdin does.
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once"},
            "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "cat; echo cat ended"],
            "stdin": true, "stdinOnce": true}]}}"#,
    );
    running(&cluster, "ticker");
    running(&cluster, "once");

    // Output as the container writes it, from now on.
    let mut attached = cluster.kubectl_stream(["attach", "ticker"]);
    let first = attached.expect_line(WAIT, "a tick", |l| l.starts_with("tick "));
    let n: u64 = first[5..].trim().parse().expect("tick number");
    attached.expect_line(WAIT, "the next tick", |l| l == format!("tick {}", n + 1));
    attached.stop();
    // stderr comes on its own channel (kubectl writes it to its stderr).
    assert!(
        !attached.seen().iter().any(|l| l.starts_with("oops")),
        "stderr on stdout: {:?}",
        attached.seen()
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "ticker"], "{.status.phase}"),
        "Running"
    );

    // -i to a container without stdin: refused, with the reason.
    let refused = cluster.kubectl(["attach", "-i", "ticker"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr(&refused).contains("container main in pod ticker was not created with stdin: true"),
        "{refused:?}"
    );

    let piped = cluster.kubectl_stdin(["attach", "-i", "once"], "hello\nworld\n");
    assert!(piped.status.success(), "{piped:?}");
    assert!(stdout(&piped).contains("hello\nworld\n"), "{piped:?}");
    wait_until(WAIT, "once Succeeded", || {
        cluster.jsonpath(&["pod", "once"], "{.status.phase}") == "Succeeded"
    });
    let logs = cluster.kubectl_ok(["logs", "once"]);
    assert_eq!(logs, "hello\nworld\ncat ended\n");
}

#[test]
fn attach_sessions_leave_no_socket_behind() {
    let cluster = Cluster::start_with_agent(import_test_images);
    // stdin without a terminal: attached through the monitor's socket.
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticks"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "stdin": true, "command": ["sh",
            "-c", "while true; do echo tick; sleep 0.1; done"]}]}}"#,
    );
    running(&cluster, "ticks");
    let uid = cluster.jsonpath(&["pod", "ticks"], "{.metadata.uid}");
    let status = cluster
        .data_dir()
        .join(format!("containers/{uid}_0_main/status.json"));
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(status).expect("status.json")).expect("JSON");
    let monitor = u32::try_from(status["monitorPid"].as_u64().expect("monitorPid")).expect("pid");
    let node = cluster.node_name().expect("an agent").to_owned();
    let port = cluster.jsonpath(
        &["node", &node],
        "{.status.daemonEndpoints.kubeletEndpoint.Port}",
    );
    let monitor_before = skiff_e2e::open_fds(monitor);
    // Ten clients at once, killed mid-stream.
    let mut sessions: Vec<_> = (0..10)
        .map(|_| cluster.kubectl_stream(["attach", "ticks"]))
        .collect();
    for session in &mut sessions {
        session.expect_line(WAIT, "a tick", |l| l == "tick");
    }
    assert!(skiff_e2e::open_fds(monitor) >= monitor_before + 10);
    assert!(!streaming_connections(&port).is_empty());
    for mut session in sessions {
        session.stop();
    }
    wait_until(WAIT, "the monitor's client sockets closed", || {
        skiff_e2e::open_fds(monitor) <= monitor_before
    });
    // The API server's connections to the node's streaming server (and the node's ends).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = streaming_connections(&port);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connections to the streaming server left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cluster.jsonpath(&["pod", "ticks"], "{.status.phase}"),
        "Running"
    );
}

/// The established TCP connections from or to local port `port` (`ss`).
fn streaming_connections(port: &str) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", "established"])
        .arg(format!("( sport = :{port} or dport = :{port} )"))
        .output()
        .expect("ss runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}
