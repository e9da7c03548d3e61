//! `kubectl logs` against `skiff server` with its node agent: the API server proxies pods/log to
//! the node's streaming server, which reads the CRI logs the container monitors write.

use std::time::Duration;

use skiff_e2e::{import_test_images, stdout, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

/// A busybox pod whose one container (`main`, or the names given) runs `script`.
fn pod(name: &str, policy: &str, containers: &[(&str, &str)]) -> String {
    let containers: Vec<_> = containers
        .iter()
        .map(|(c, script)| {
            serde_json::json!({
                "name": c, "image": "busybox", "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "state", "mountPath": "/state"}],
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": policy, "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "state", "emptyDir": {}}],
            "containers": containers,
        },
    })
    .to_string()
}

const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

#[test]
fn kubectl_logs_tail_timestamps_follow_previous_and_errors() {
    let mut cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod(
        "talker",
        "Always",
        &[("main", &format!("echo one; echo two; echo three; {SLEEP}"))],
    ));
    // stderr is logged too (in a pod of its own: two pipes keep no order between them).
    cluster.create_from(&pod(
        "grumbler",
        "Always",
        &[("main", &format!("echo oops >&2; {SLEEP}"))],
    ));
    cluster.create_from(&pod(
        "ticker",
        "Always",
        &[(
            "main",
            "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        )],
    ));
    // Attempt 0 says so and fails; attempt 1 says so and stays.
    cluster.create_from(&pod(
        "phoenix",
        "Always",
        &[(
            "main",
            &format!("n=$(cat /state/n 2>/dev/null || echo 0); echo attempt $n; echo $((n+1)) > /state/n; [ $n -ge 1 ] || exit 1; {SLEEP}"),
        )],
    ));
    cluster.create_from(&pod(
        "counter",
        "Never",
        &[("main", "for i in 1 2 3; do echo $i; sleep 0.3; done")],
    ));
    cluster.create_from(&pod(
        "pair",
        "Always",
        &[
            ("first", &format!("echo from first; {SLEEP}")),
            ("second", &format!("echo from second; {SLEEP}")),
        ],
    ));
    let mut missing: serde_json::Value =
        serde_json::from_str(&pod("noimage", "Always", &[("main", "true")])).expect("JSON");
    missing["spec"]["containers"][0]["image"] = "not-here:1".into();
    cluster.create_from(&missing.to_string());

    for name in ["talker", "ticker", "pair"] {
        wait_until(WAIT, &format!("{name} Running"), || {
            cluster.jsonpath(&["pod", name], "{.status.phase}") == "Running"
        });
    }
    wait_until(WAIT, "talker's three lines", || {
        cluster.kubectl(["logs", "talker"]).stdout.len() >= 14
    });
    let all = cluster.kubectl_ok(["logs", "talker"]);
    assert_eq!(all, "one\ntwo\nthree\n");
    wait_until(WAIT, "grumbler's stderr logged", || {
        stdout(&cluster.kubectl(["logs", "grumbler"])) == "oops\n"
    });
    assert_eq!(
        cluster.kubectl_ok(["logs", "talker", "--limit-bytes=6"]),
        "one\ntw"
    );
    assert_eq!(
        cluster.kubectl_ok(["logs", "talker", "--tail=2"]),
        "two\nthree\n"
    );
    let stamped = cluster.kubectl_ok(["logs", "talker", "--timestamps", "--tail=1"]);
    let (time, line) = stamped
        .split_once(' ')
        .expect("a timestamp, a space, the line");
    assert_eq!(line, "three\n");
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.starts_with("20"),
        "{stamped:?}"
    );
    assert_eq!(cluster.kubectl_ok(["logs", "talker", "--since=1h"]), all);

    // -f: new lines as they come.
    let mut follow = cluster.kubectl_stream(["logs", "-f", "ticker"]);
    let first = follow.expect_line(WAIT, "a tick", |l| l.starts_with("tick "));
    let n: u32 = first["tick ".len()..].parse().expect("a number");
    for next in n + 1..n + 4 {
        follow.expect_line(Duration::from_secs(10), &format!("tick {next}"), |l| {
            l == format!("tick {next}")
        });
    }
    drop(follow);

    // -f on a container that ends: kubectl exits 0 once the log is read to its end.
    wait_until(WAIT, "counter started", || {
        !cluster
            .jsonpath(
                &["pod", "counter"],
                "{.status.containerStatuses[0].containerID}",
            )
            .is_empty()
    });
    let followed = cluster.kubectl_ok(["logs", "-f", "counter"]);
    assert_eq!(followed, "1\n2\n3\n");

    // --previous: the last terminated instance.
    wait_until(WAIT, "phoenix restarted and running", || {
        cluster.jsonpath(
            &["pod", "phoenix"],
            "{.status.containerStatuses[0].restartCount}",
        ) == "1"
            && cluster.jsonpath(&["pod", "phoenix"], "{.status.phase}") == "Running"
    });
    wait_until(WAIT, "phoenix's second attempt logged", || {
        stdout(&cluster.kubectl(["logs", "phoenix"])) == "attempt 1\n"
    });
    assert_eq!(
        cluster.kubectl_ok(["logs", "phoenix", "--previous"]),
        "attempt 0\n"
    );
    let none = cluster.kubectl(["logs", "talker", "--previous"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("previous terminated container \"main\" in pod \"talker\" not found"),
        "{none:?}"
    );

    // Several containers: -c picks one; kubectl defaults to the first and says so.
    assert_eq!(
        cluster.kubectl_ok(["logs", "pair", "-c", "second"]),
        "from second\n"
    );
    let defaulted = cluster.kubectl(["logs", "pair"]);
    assert_eq!(stdout(&defaulted), "from first\n");
    assert!(
        String::from_utf8_lossy(&defaulted.stderr).contains("Defaulted container \"first\""),
        "{defaulted:?}"
    );
    let all_containers = cluster.kubectl_ok(["logs", "pair", "--all-containers"]);
    assert!(
        all_containers.contains("from first") && all_containers.contains("from second"),
        "{all_containers:?}"
    );

    // A container that never started: kubelet's reason, as kubectl shows a BadRequest.
    wait_until(WAIT, "noimage waiting", || {
        cluster.jsonpath(
            &["pod", "noimage"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ErrImageNeverPull"
    });
    let waiting = cluster.kubectl(["logs", "noimage"]);
    assert_eq!(waiting.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&waiting.stderr).trim(),
        "Error from server (BadRequest): container \"main\" in pod \"noimage\" is waiting to start: ErrImageNeverPull"
    );

    // Logs survive the server and its agent being killed: the same lines once it is back, and
    // a follow sees the lines written since.
    cluster.restart();
    wait_until(WAIT, "talker's log served again", || {
        stdout(&cluster.kubectl(["logs", "talker"])) == "one\ntwo\nthree\n"
    });
    let mut follow = cluster.kubectl_stream(["logs", "-f", "ticker", "--tail=1"]);
    let first = follow.expect_line(WAIT, "a tick", |l| l.starts_with("tick "));
    let n: u32 = first["tick ".len()..].parse().expect("a number");
    follow.expect_line(Duration::from_secs(10), "the next tick", |l| {
        l == format!("tick {}", n + 1)
    });
}
