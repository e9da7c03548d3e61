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
