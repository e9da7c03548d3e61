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
}

#[test]
fn kubectl_attach_it_to_a_shell_with_a_terminal() {
    let cluster = Cluster::start_with_agent(import_test_images);
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
    // The terminal's output is the container's log (stdout).
    let logs = cluster.kubectl_ok(["logs", "term"]);
    assert!(logs.contains("42"), "{logs:?}");
    assert!(logs.contains("kept-5"), "{logs:?}");
}

#[test]
fn kubectl_attach_streams_output_and_stdin_needs_a_container_with_stdin() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]}]}}"#,
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
