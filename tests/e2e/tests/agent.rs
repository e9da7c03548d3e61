//! The node agent as a user meets it: `skiff server` registers its own machine as a Ready node
//! and runs the pods bound to it; `skiff agent` joins another node with a URL, token and CA.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::{fixture, parse_table, skiff_bin, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(30);

/// The jsonpath value of one object.
fn get(cluster: &Cluster, what: &[&str], path: &str) -> String {
    let mut args: Vec<&str> = vec!["get"];
    args.extend_from_slice(what);
    let jsonpath = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &jsonpath]);
    let out = cluster.kubectl(args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn server_registers_its_node_and_serves_its_pods() {
    let cluster = Cluster::start_with_agent(|_| {});
    let node = cluster.node_name().expect("agent").to_string();
    wait_until(WAIT, "the node to be Ready", || {
        get(
            &cluster,
            &["node", &node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    let table = parse_table(&cluster.kubectl_ok(["get", "nodes", "-o", "wide"]));
    let row = table
        .iter()
        .find(|r| r[0] == node)
        .unwrap_or_else(|| panic!("no row for {node}: {table:?}"));
    assert_eq!(row[1], "Ready", "{table:?}");
    assert_eq!(row[4], "v1.35.0-skiff", "{table:?}");
    assert!(row.iter().any(|c| c.starts_with("skiff://")), "{table:?}");
    let holder = get(
        &cluster,
        &["lease", "-n", "kube-node-lease", &node],
        "{.spec.holderIdentity}",
    );
    assert_eq!(holder, node);

    // The seed's pod, its image not on the node and imagePullPolicy Never: scheduled here,
    // then waiting with kubelet's reason and message.
    let manifest = fixture("kubia-manual.yaml");
    cluster.kubectl_ok(["create", "-f", manifest.to_str().expect("utf-8 path")]);
    wait_until(WAIT, "ErrImageNeverPull", || {
        get(
            &cluster,
            &["pod", "kubia-manual"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ErrImageNeverPull"
    });
    assert_eq!(
        get(&cluster, &["pod", "kubia-manual"], "{.spec.nodeName}"),
        node
    );
    let message = get(
        &cluster,
        &["pod", "kubia-manual"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert_eq!(
        message,
        "Container image \"luksa/kubia\" is not present with pull policy of Never"
    );
    let pods = parse_table(&cluster.kubectl_ok(["get", "pods"]));
    assert_eq!(pods[1][2], "ErrImageNeverPull", "{pods:?}");
    let events = cluster.kubectl_ok([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=kubia-manual",
    ]);
    assert!(events.contains("ErrImageNeverPull"), "{events}");

    // A graceful delete: the agent confirms it once the sandbox is gone; kubectl waits for it.
    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "kubia-manual"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "delete took {:?}",
        started.elapsed()
    );
    let left = cluster.kubectl_ok(["get", "pods", "-o", "name"]);
    assert_eq!(left.trim(), "");
    let sandboxes = std::fs::read_dir(cluster.data_dir().join("sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sandboxes, 0, "the pod's sandbox is removed");
}

/// Kills the agent it started (by its pid) when dropped.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn skiff_agent_joins_with_url_token_and_ca() {
    let cluster = Cluster::start();
    let node = format!("joined-{}", std::process::id());
    let data = cluster.scratch_dir().join("agent-data");
    let log = std::fs::File::create(cluster.scratch_dir().join("agent.log")).expect("log");
    let child = Command::new(skiff_bin())
        .arg("agent")
        .args(["--server", cluster.url(), "--token", &cluster.token()])
        .arg("--ca-file")
        .arg(cluster.ca_file())
        .arg("--data-dir")
        .arg(&data)
        .args(["--node-name", &node, "--max-pods", "7"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skiff agent starts");
    let _agent = AgentProcess(child);
    wait_until(WAIT, "the joined node to be Ready", || {
        get(
            &cluster,
            &["node", &node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    assert_eq!(
        get(&cluster, &["node", &node], "{.status.capacity.pods}"),
        "7"
    );
    assert_eq!(
        get(
            &cluster,
            &["node", &node],
            "{.status.nodeInfo.kubeletVersion}"
        ),
        "v1.35.0-skiff"
    );

    // A wrong token: the agent says why it cannot register, and no node appears.
    let bad_log_path = cluster.scratch_dir().join("bad-agent.log");
    let bad_log = std::fs::File::create(&bad_log_path).expect("log");
    let bad = Command::new(skiff_bin())
        .arg("agent")
        .args([
            "--server",
            cluster.url(),
            "--token",
            "not-the-token",
            "--insecure-skip-tls-verify",
        ])
        .arg("--data-dir")
        .arg(cluster.scratch_dir().join("bad-data"))
        .args(["--node-name", "bad-node"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(bad_log)
        .spawn()
        .expect("skiff agent starts");
    let _bad = AgentProcess(bad);
    wait_until(WAIT, "the refused agent to say why", || {
        std::fs::read_to_string(&bad_log_path)
            .is_ok_and(|t| t.contains("cannot register the node") && t.contains("401"))
    });
    let missing = cluster.kubectl(["get", "node", "bad-node"]);
    assert!(!missing.status.success());
}

/// Builds the project's test images and imports luksa/kubia into `data_dir`, as `up.sh` does.
fn import_kubia(data_dir: &std::path::Path) {
    let out = data_dir.with_file_name("images-out");
    let mut build = Command::new(skiff_e2e::workspace_root().join("scripts/build-test-images.sh"));
    build.arg(&out);
    skiff_e2e::assert_success(&skiff_e2e::run(build, None), "scripts/build-test-images.sh");
    let mut import = Command::new(skiff_bin());
    import
        .args(["image", "import", "--data-dir"])
        .arg(data_dir)
        .arg(out.join("kubia.tar"));
    skiff_e2e::assert_success(
        &skiff_e2e::run(import, None),
        "skiff image import kubia.tar",
    );
}

#[test]
#[ignore = "needs the container manager (skiff_runtime::container bodies), not landed yet"]
fn seed_pod_runs_and_is_deleted() {
    let cluster = Cluster::start_with_agent(import_kubia);
    let manifest = fixture("kubia-manual.yaml");
    cluster.kubectl_ok(["create", "-f", manifest.to_str().expect("utf-8 path")]);
    wait_until(Duration::from_secs(60), "kubia-manual Running", || {
        get(&cluster, &["pod", "kubia-manual"], "{.status.phase}") == "Running"
    });
    let status = |path: &str| get(&cluster, &["pod", "kubia-manual"], path);
    assert_eq!(status("{.status.containerStatuses[0].ready}"), "true");
    assert!(status("{.status.containerStatuses[0].containerID}").starts_with("skiff://"));
    assert!(!status("{.status.containerStatuses[0].imageID}").is_empty());
    assert_eq!(
        status("{.status.conditions[?(@.type==\"Ready\")].status}"),
        "True"
    );
    let pods = parse_table(&cluster.kubectl_ok(["get", "pods"]));
    assert_eq!(pods[1][1], "1/1", "{pods:?}");
    assert_eq!(pods[1][2], "Running", "{pods:?}");

    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "kubia-manual"]);
    // busybox httpd exits on SIGTERM: well within the 30 s grace period.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "delete took {:?}",
        started.elapsed()
    );
    let left = cluster.kubectl_ok(["get", "pods", "-o", "name"]);
    assert_eq!(left.trim(), "");
    for dir in ["containers", "sandboxes"] {
        let count = std::fs::read_dir(cluster.data_dir().join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(count, 0, "{dir} left behind");
    }
}
