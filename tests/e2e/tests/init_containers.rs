//! Init containers as a user meets them, with the real kubectl and busybox: they run one at a
//! time in order, a failing one is retried (at once, then after a back-off, STATUS
//! `Init:CrashLoopBackOff`) before anything after it starts, a native sidecar starts in its place
//! in the order and keeps running beside the app container, and an init container that never
//! ends holds the pod at `Init:0/1`.

use std::time::Duration;

use skiff_e2e::{import_test_images, wait_until, Cluster};

/// Longer than kubelet's first back-off (10 s) with room for a loaded machine.
const WAIT: Duration = Duration::from_secs(90);

#[test]
fn init_containers_run_in_order_a_failing_one_is_retried_and_a_sidecar_stays() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let shared = cluster.scratch_subdir("order");
    // `flaky` fails on its first two runs and succeeds on its third (the first restart comes
    // at once, the second after kubelet's 10 s back-off); every container appends its name to
    // /out/order when it starts.
    cluster.create_from(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: out, hostPath: {{path: {shared}, type: Directory}}}}]
  initContainers:
  - name: first
    image: busybox
    imagePullPolicy: Never
    command: [sh, -c, "echo first >> /out/order"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  - name: flaky
    image: busybox
    imagePullPolicy: Never
    command: [sh, -c, "echo flaky >> /out/order; [ $(grep -c flaky /out/order) -ge 3 ]"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  - name: sidecar
    image: busybox
    imagePullPolicy: Never
    restartPolicy: Always
    command: [sh, -c, "echo sidecar >> /out/order; exec sleep 3600"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: [sh, -c, "echo app >> /out/order; exec sleep 3600"]
    volumeMounts: [{{name: out, mountPath: /out}}]
"#
    ));
    let order = || std::fs::read_to_string(format!("{shared}/order")).unwrap_or_default();

    // The failed run shows as kubectl shows it, and holds everything after it back.
    let mut seen = Vec::new();
    wait_until(WAIT, "Init:CrashLoopBackOff while flaky backs off", || {
        let (_, status) = cluster.pod_ready_and_status("ordered");
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        status == "Init:CrashLoopBackOff"
    });
    assert_eq!(
        order(),
        "first\nflaky\nflaky\n",
        "nothing after flaky ran yet"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "ordered"],
            "{.status.initContainerStatuses[1].lastState.terminated.exitCode}"
        ),
        "1"
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "ordered"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "ordered"],
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );

    // After the back-off flaky runs again and succeeds; the sidecar starts, then the app.
    wait_until(WAIT, "ordered Running with its sidecar", || {
        let (ready, status) = cluster.pod_ready_and_status("ordered");
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        ready == "2/2" && status == "Running"
    });
    assert_eq!(order(), "first\nflaky\nflaky\nflaky\nsidecar\napp\n");
    assert!(
        seen.iter()
            .all(|s| s.starts_with("Init:") || s == "Pending" || s == "Running"),
        "STATUS went through {seen:?}"
    );
    let statuses = cluster.jsonpath(
        &["pod", "ordered"],
        "{range .status.initContainerStatuses[*]}{.name}={.restartCount},{.started}{\"\\n\"}{end}",
    );
    assert_eq!(
        statuses, "first=0,false\nflaky=2,false\nsidecar=0,true\n",
        "the sidecar is still running beside the app"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "ordered"],
            "{.status.conditions[?(@.type==\"Initialized\")].status}"
        ),
        "True"
    );
    // The sidecar is a running container of the pod: kubectl exec reaches it.
    assert_eq!(
        cluster.kubectl_ok([
            "exec",
            "ordered",
            "-c",
            "sidecar",
            "--",
            "cat",
            "/out/order"
        ]),
        order()
    );
    cluster.kubectl_ok(["delete", "po", "ordered"]);
}

#[test]
fn an_init_container_that_never_ends_holds_the_pod_at_init() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stuck}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: forever
    image: busybox
    imagePullPolicy: Never
    command: [sleep, "3600"]
  containers:
  - name: app
    image: busybox
    imagePullPolicy: Never
    command: [sleep, "3600"]
"#,
    );
    wait_until(WAIT, "forever running", || {
        !cluster
            .jsonpath(
                &["pod", "stuck"],
                "{.status.initContainerStatuses[0].state.running.startedAt}",
            )
            .is_empty()
    });
    assert_eq!(
        cluster.pod_ready_and_status("stuck"),
        ("0/1".to_owned(), "Init:0/1".to_owned())
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "stuck"], "{.status.phase}"),
        "Pending"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "stuck"],
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );
    // kubectl exec reaches the running init container; the app container does not exist yet.
    assert_eq!(
        cluster
            .kubectl_ok(["exec", "stuck", "-c", "forever", "--", "echo", "in"])
            .trim(),
        "in"
    );
    // Deleting it ends it within its grace period.
    cluster.kubectl_ok(["delete", "po", "stuck", "--timeout=30s"]);
}
