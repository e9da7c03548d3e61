//! Probes and lifecycle hooks as a user meets them, with the real kubectl and busybox: readiness
//! flipping READY both ways (exec, httpGet on a named port, tcpSocket), a liveness probe
//! restarting a hung container, a startup probe holding the others back (a sidecar's too), a
//! probe on a port name that does not exist, exec probes whose command is missing or fails
//! (their events), postStart, and preStop before SIGTERM within the grace period.

use std::time::{Duration, Instant};

use skiff_e2e::{import_test_images, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

/// `command: [sleep, "3600"]`: a container that only waits (for its probes, its hooks).
const SLEEP: &str = r#"[sleep, "3600"]"#;

/// A pod `name` (grace period 1 s) of one busybox container `main` running `command` (a YAML
/// list), with `fields` (YAML lines at the container's indentation, after a newline: its probes)
/// added to it.
fn probed_pod(name: &str, command: &str, fields: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: {command}{fields}"#
    )
}

/// How many times an event about pod `pod` starting with `prefix` (`reason: message`) was
/// recorded: identical events are one Event object with a count, as kubelet's.
fn event_count(cluster: &Cluster, pod: &str, prefix: &str) -> u32 {
    let out = cluster.kubectl_ok([
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={range .items[*]}{.count} {.reason}: {.message}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, event)| event.starts_with(prefix))
        .map(|(count, _)| count.parse::<u32>().unwrap_or(1))
        .sum()
}

/// The READY column of `kubectl get po <pod>`.
fn ready_column(cluster: &Cluster, pod: &str) -> String {
    cluster.pod_ready_and_status(pod).0
}

fn field(cluster: &Cluster, pod: &str, path: &str) -> String {
    cluster.jsonpath(&["pod", pod], path)
}

fn condition(cluster: &Cluster, pod: &str, kind: &str) -> String {
    field(
        cluster,
        pod,
        &format!("{{.status.conditions[?(@.type==\"{kind}\")].status}}"),
    )
}

#[test]
fn readiness_probes_flip_ready_both_ways_and_a_missing_port_name_is_reported() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&probed_pod(
        "toggled",
        SLEEP,
        r#"
    readinessProbe:
      exec: {command: [test, -f, /tmp/ready]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    ));
    cluster.create_from(&probed_pod(
        "web",
        r#"[sh, -c, "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]"#,
        r#"
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /index.html, port: http, httpHeaders: [{name: X-Probe, value: skiff}]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    ));
    // exec probes whose command is not in the image, and one that fails with output.
    cluster.create_from(&probed_pod(
        "no-command",
        SLEEP,
        r#"
    readinessProbe:
      exec: {command: [no-such-command]}
      periodSeconds: 1
    livenessProbe:
      exec: {command: [sh, -c, "echo sick; exit 1"]}
      periodSeconds: 1
      failureThreshold: 1000
"#,
    ));
    cluster.create_from(&probed_pod(
        "misnamed",
        SLEEP,
        r#"
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: metrics}
      periodSeconds: 1
"#,
    ));
    cluster.create_from(&probed_pod(
        "tcp",
        SLEEP,
        r#"
    readinessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 1
"#,
    ));

    // Running, but not ready until the probe passes.
    wait_until(WAIT, "toggled Running", || {
        field(&cluster, "toggled", "{.status.phase}") == "Running"
    });
    wait_until(WAIT, "a failed readiness probe of toggled", || {
        cluster
            .event_messages("toggled")
            .iter()
            .any(|e| e.starts_with("Unhealthy: Readiness probe failed"))
    });
    assert_eq!(ready_column(&cluster, "toggled"), "0/1");
    assert_eq!(condition(&cluster, "toggled", "Ready"), "False");
    assert_eq!(
        field(
            &cluster,
            "toggled",
            "{.status.containerStatuses[0].started}"
        ),
        "true"
    );
    cluster.kubectl_ok(["exec", "toggled", "--", "touch", "/tmp/ready"]);
    wait_until(WAIT, "toggled READY 1/1", || {
        ready_column(&cluster, "toggled") == "1/1"
    });
    assert_eq!(condition(&cluster, "toggled", "Ready"), "True");
    assert_eq!(condition(&cluster, "toggled", "ContainersReady"), "True");
    cluster.kubectl_ok(["exec", "toggled", "--", "rm", "/tmp/ready"]);
    wait_until(WAIT, "toggled READY 0/1 again", || {
        ready_column(&cluster, "toggled") == "0/1"
    });
    assert_eq!(condition(&cluster, "toggled", "Ready"), "False");
    assert_eq!(
        field(
            &cluster,
            "toggled",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0",
        "readiness never restarts"
    );

    // httpGet on the port named http: ready while the page is there, not on a 404.
    wait_until(WAIT, "web READY 1/1", || {
        ready_column(&cluster, "web") == "1/1"
    });
    cluster.kubectl_ok(["exec", "web", "--", "rm", "/www/index.html"]);
    wait_until(WAIT, "web READY 0/1 on a 404", || {
        ready_column(&cluster, "web") == "0/1"
    });
    assert!(
        cluster
            .event_messages("web")
            .iter()
            .any(|e| e
                == "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404"),
        "{:?}",
        cluster.event_messages("web")
    );

    // tcpSocket: refused until something listens on the port.
    wait_until(WAIT, "a refused tcpSocket probe", || {
        let ip = field(&cluster, "tcp", "{.status.podIP}");
        !ip.is_empty()
            && cluster.event_messages("tcp").iter().any(|e| {
                e == &format!(
                    "Unhealthy: Readiness probe failed: dial tcp {ip}:9999: connect: connection refused"
                )
            })
    });
    assert_eq!(ready_column(&cluster, "tcp"), "0/1");
    // busybox httpd goes to the background and keeps listening after the exec ends.
    cluster.kubectl_ok(["exec", "tcp", "--", "httpd", "-p", "9999", "-h", "/tmp"]);
    wait_until(WAIT, "tcp READY 1/1", || {
        ready_column(&cluster, "tcp") == "1/1"
    });

    // A port name the container does not have: never ready, and the event names it.
    wait_until(WAIT, "the event about the missing port name", || {
        cluster.event_messages("misnamed").iter().any(|e| {
            e == "Unhealthy: Readiness probe errored and resulted in unknown state: port \"metrics\" not found"
        })
    });
    assert_eq!(field(&cluster, "misnamed", "{.status.phase}"), "Running");
    assert_eq!(ready_column(&cluster, "misnamed"), "0/1");

    // A command that is not there: runc's words; one that fails: its output.
    wait_until(WAIT, "the events of the failing exec probes", || {
        let seen = cluster.event_messages("no-command");
        seen.iter().any(|e| {
            e == "Unhealthy: Readiness probe failed: exec failed: unable to start container process: exec: \"no-such-command\": executable file not found in $PATH"
        }) && seen
            .iter()
            .any(|e| e == "Unhealthy: Liveness probe failed: sick")
    });
    assert_eq!(ready_column(&cluster, "no-command"), "0/1");

    for pod in ["toggled", "web", "misnamed", "tcp", "no-command"] {
        cluster.kubectl_ok(["delete", "pod", pod]);
    }
}

#[test]
fn a_liveness_probe_restarts_a_hung_container_and_startup_gates_the_others() {
    let cluster = Cluster::start_with_agent(import_test_images);
    // The probe hangs (past its 1 s timeout) once /tmp/hung exists.
    cluster.create_from(&probed_pod(
        "hangs",
        SLEEP,
        r#"
    livenessProbe:
      exec: {command: [sh, -c, "test ! -f /tmp/hung || sleep 30"]}
      periodSeconds: 1
      timeoutSeconds: 1
      failureThreshold: 2
"#,
    ));
    // Liveness and readiness would both fail before /tmp/started exists: the startup probe
    // must keep them from running until it passes.
    cluster.create_from(&probed_pod(
        "slow",
        SLEEP,
        r#"
    startupProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 600
    livenessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
"#,
    ));
    // A sidecar whose startup probe has not passed holds the app container back.
    cluster.create_from(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: busybox
    imagePullPolicy: Never
    restartPolicy: Always
    command: [sleep, "3600"]
    startupProbe:
      exec: {command: [test, -f, /tmp/up]}
      periodSeconds: 1
      failureThreshold: 600
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: [sleep, "3600"]
"#,
    );

    let restarts = |pod: &str| field(&cluster, pod, "{.status.containerStatuses[0].restartCount}");
    wait_until(WAIT, "hangs ready", || {
        ready_column(&cluster, "hangs") == "1/1"
    });
    cluster.kubectl_ok(["exec", "hangs", "--", "touch", "/tmp/hung"]);
    wait_until(WAIT, "hangs restarted", || restarts("hangs") == "1");
    let seen = cluster.event_messages("hangs");
    assert!(
        seen.iter()
            .any(|e| e.starts_with("Unhealthy: Liveness probe failed: command timed out")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e == "Killing: Container main failed liveness probe, will be restarted"),
        "{seen:?}"
    );
    // The new instance has no /tmp/hung: it runs and passes its probe.
    wait_until(WAIT, "hangs running again", || {
        ready_column(&cluster, "hangs") == "1/1"
    });
    assert!(!field(
        &cluster,
        "hangs",
        "{.status.containerStatuses[0].lastState.terminated.finishedAt}"
    )
    .is_empty());

    // Three failed startup probes: seconds went by in which liveness (threshold 1) would
    // have killed the container had it run.
    wait_until(WAIT, "three failed startup probes of slow", || {
        event_count(&cluster, "slow", "Unhealthy: Startup probe failed") >= 3
    });
    // Event objects counted up, not one per failure (a failure with other output, e.g. a
    // timeout on a loaded machine, is an object of its own, as in kubelet).
    let objects = cluster
        .event_messages("slow")
        .iter()
        .filter(|e| e.starts_with("Unhealthy: Startup probe failed"))
        .count();
    let failures = event_count(&cluster, "slow", "Unhealthy: Startup probe failed");
    assert!(
        objects < failures as usize,
        "{objects} event objects for {failures} failures"
    );
    assert_eq!(
        field(&cluster, "slow", "{.status.containerStatuses[0].started}"),
        "false"
    );
    assert_eq!(ready_column(&cluster, "slow"), "0/1");
    assert_eq!(restarts("slow"), "0");
    let seen = cluster.event_messages("slow");
    assert!(
        !seen
            .iter()
            .any(|e| e.contains("Liveness probe") || e.contains("Readiness probe")),
        "{seen:?}"
    );
    cluster.kubectl_ok(["exec", "slow", "--", "touch", "/tmp/started"]);
    wait_until(WAIT, "slow started and ready", || {
        ready_column(&cluster, "slow") == "1/1"
    });
    assert_eq!(
        field(&cluster, "slow", "{.status.containerStatuses[0].started}"),
        "true"
    );
    assert_eq!(restarts("slow"), "0");

    wait_until(WAIT, "a failed startup probe of the sidecar", || {
        event_count(&cluster, "sidecar", "Unhealthy: Startup probe failed") >= 2
    });
    assert_eq!(
        field(
            &cluster,
            "sidecar",
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );
    assert_eq!(
        field(
            &cluster,
            "sidecar",
            "{.status.initContainerStatuses[0].started}"
        ),
        "false"
    );
    cluster.kubectl_ok(["exec", "sidecar", "-c", "side", "--", "touch", "/tmp/up"]);
    wait_until(WAIT, "the app container running", || {
        ready_column(&cluster, "sidecar") == "2/2"
    });

    for pod in ["hangs", "slow", "sidecar"] {
        cluster.kubectl_ok(["delete", "pod", pod]);
    }
}

#[test]
fn post_start_runs_first_and_pre_stop_runs_before_sigterm_within_the_grace_period() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let shared = cluster.scratch_subdir("hooks");
    cluster.create_from(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{{name: out, hostPath: {{path: {shared}, type: Directory}}}}]
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: [sh, -c, "trap 'echo term >> /out/trace; exit 0' TERM; echo main >> /out/trace; sleep 3600 & wait"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "echo post-start >> /out/trace"]}}
      preStop:
        exec: {{command: [sh, -c, "echo pre-stop >> /out/trace; sleep 1"]}}
"#
    ));
    // Its preStop hook outlasts the grace period: the hook is cut short and the container
    // still gets the minimum 2 s after it.
    cluster.create_from(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slow-stop}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: [sleep, "3600"]
    lifecycle:
      preStop:
        sleep: {seconds: 60}
"#,
    );
    // A failing postStart hook kills the container, which is restarted.
    cluster.create_from(&probed_pod(
        "bad-hook",
        SLEEP,
        r#"
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo nope; exit 3"]}
"#,
    ));

    let trace = std::path::Path::new(&shared).join("trace");
    wait_until(WAIT, "hooked Running", || {
        field(&cluster, "hooked", "{.status.phase}") == "Running"
    });
    // Running is reported only once postStart completed.
    let lines = std::fs::read_to_string(&trace).expect("the trace");
    assert!(lines.contains("post-start\n"), "{lines}");

    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "hooked"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "delete took {took:?}"
    );
    let lines = std::fs::read_to_string(&trace).expect("the trace");
    let order: Vec<&str> = lines
        .lines()
        .filter(|l| matches!(*l, "pre-stop" | "term"))
        .collect();
    assert_eq!(order, ["pre-stop", "term"], "{lines}");

    wait_until(WAIT, "slow-stop Running", || {
        field(&cluster, "slow-stop", "{.status.phase}") == "Running"
    });
    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "slow-stop"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(12),
        "a 60 s preStop within a 2 s grace period (then 2 s more) took {took:?}"
    );

    wait_until(WAIT, "bad-hook restarted", || {
        field(
            &cluster,
            "bad-hook",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .unwrap_or(0)
            >= 1
    });
    let seen = cluster.event_messages("bad-hook");
    assert!(
        seen.iter().any(
            |e| e.starts_with("FailedPostStartHook: Exec lifecycle hook")
                && e.contains("exited with 3")
                && e.contains("nope")
        ),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| e == "Killing: FailedPostStartHook"),
        "{seen:?}"
    );
    cluster.kubectl_ok(["delete", "pod", "bad-hook"]);
}
