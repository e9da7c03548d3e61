//! The node agent as a user meets it: `skiff server` registers its own machine as a Ready node
//! and runs the pods bound to it; `skiff agent` joins another node with a URL and the join token.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::{fixture, import_test_images, parse_table, skiff_bin, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn server_registers_its_node_and_serves_its_pods() {
    let cluster = Cluster::start_with_agent(|_| {});
    let node = cluster.node_name().expect("agent").to_string();
    wait_until(WAIT, "the node to be Ready", || {
        cluster.jsonpath(
            &["node", &node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    // ADR 010: the agent made cgroup moves cheap (the cgroup2 mount has favordynmods).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    if let Some(line) = mountinfo.lines().find(|l| l.contains(" - cgroup2 ")) {
        assert!(
            line.ends_with(",favordynmods") || line.contains(",favordynmods,"),
            "{line}"
        );
    }
    let table = parse_table(&cluster.kubectl_ok(["get", "nodes", "-o", "wide"]));
    let row = table
        .iter()
        .find(|r| r[0] == node)
        .unwrap_or_else(|| panic!("no row for {node}: {table:?}"));
    assert_eq!(row[1], "Ready", "{table:?}");
    assert_eq!(row[4], "v1.35.0-skiff", "{table:?}");
    assert!(row.iter().any(|c| c.starts_with("skiff://")), "{table:?}");
    let holder = cluster.jsonpath(
        &["lease", "-n", "kube-node-lease", &node],
        "{.spec.holderIdentity}",
    );
    assert_eq!(holder, node);

    // The seed's pod, its image not on the node and imagePullPolicy Never: scheduled here,
    // then waiting with kubelet's reason and message.
    let manifest = fixture("kubia-manual.yaml");
    cluster.kubectl_ok(["create", "-f", manifest.to_str().expect("utf-8 path")]);
    wait_until(WAIT, "ErrImageNeverPull", || {
        cluster.jsonpath(
            &["pod", "kubia-manual"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ErrImageNeverPull"
    });
    assert_eq!(
        cluster.jsonpath(&["pod", "kubia-manual"], "{.spec.nodeName}"),
        node
    );
    let message = cluster.jsonpath(
        &["pod", "kubia-manual"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert_eq!(
        message,
        "Container image \"luksa/kubia\" is not present with pull policy of Never"
    );
    let pods = parse_table(&cluster.kubectl_ok(["get", "pods"]));
    assert_eq!(pods[1][2], "ErrImageNeverPull", "{pods:?}");
    let events = cluster.events_about("kubia-manual");
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

/// The join token the server wrote (and printed).
fn join_token(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.data_dir().join("node-token"))
        .expect("the server writes <data-dir>/node-token")
        .trim()
        .to_string()
}

/// `skiff agent` for `cluster` with `token` and no CA file, as node `node` on `data`.
fn agent_command(cluster: &Cluster, token: &str, data: &std::path::Path, node: &str) -> Command {
    let mut command = Command::new(skiff_bin());
    command
        .arg("agent")
        .args(["--server", cluster.url(), "--token", token])
        .arg("--data-dir")
        .arg(data)
        .args(["--node-name", node])
        // Not kubelet's 10250: other clusters' agents may run at the same time.
        .args(["--node-ip", "127.0.0.1", "--streaming-port", "0"])
        // Never the default bridge and table of the machine; the cluster's subnet is its
        // server's agent's.
        .arg("--disable-pod-network")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Runs an agent that must give up, and returns what it said.
fn refused_agent(command: Command) -> String {
    let out = skiff_e2e::run(command, None);
    assert!(!out.status.success(), "the agent should refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn skiff_agent_joins_with_url_and_join_token() {
    let cluster = Cluster::start();
    let token = join_token(&cluster);
    assert!(token.starts_with("K10"), "{token}");
    let command_line = format!("skiff agent --server {} --token {token}", cluster.url());
    wait_until(WAIT, "the server to print how to join", || {
        cluster.server_output().contains(&command_line)
    });
    let node = format!("joined-{}", std::process::id());
    let data = cluster.scratch_dir().join("agent-data");
    let log = std::fs::File::create(cluster.scratch_dir().join("agent.log")).expect("log");
    // No --ca-file: the agent fetches the CA and checks it against the token's hash.
    let mut command = agent_command(&cluster, &token, &data, &node);
    command.args(["--max-pods", "7"]).stderr(log);
    let _agent = AgentProcess(command.spawn().expect("skiff agent starts"));
    wait_until(WAIT, "the joined node to be Ready", || {
        cluster.jsonpath(
            &["node", &node],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    assert_eq!(
        cluster.jsonpath(&["node", &node], "{.status.capacity.pods}"),
        "7"
    );
    assert_eq!(
        cluster.jsonpath(&["node", &node], "{.status.nodeInfo.kubeletVersion}"),
        "v1.35.0-skiff"
    );
    // It talks as the node with its own credentials, kept in its data dir.
    let password = std::fs::read_to_string(data.join("node-password")).expect("node-password");
    assert_eq!(password.trim().len(), 64);
    assert_eq!(
        std::fs::read(data.join("server-ca.crt")).expect("server-ca.crt"),
        std::fs::read(cluster.ca_file()).expect("ca.crt")
    );
    let node_token = format!("node:{node}:{}", password.trim());
    let kubeconfig = skiff_e2e::write_file(
        cluster.scratch_dir(),
        "node.kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: node\n  user:\n    token: {node_token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: node}}\ncurrent-context: c\n",
            cluster.url(),
            cluster.ca_file().display()
        ),
    );
    let whoami = cluster
        .kubectl_command_with(&kubeconfig)
        .args(["label", "node", &node, "x=y"])
        .output()
        .expect("kubectl");
    assert!(
        whoami.status.success(),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    let foreign = cluster
        .kubectl_command_with(&kubeconfig)
        .args(["create", "namespace", "not-for-nodes"])
        .output()
        .expect("kubectl");
    assert!(!foreign.status.success());
    let stderr = String::from_utf8_lossy(&foreign.stderr);
    assert!(
        stderr.contains(&format!(
            "User \"system:node:{node}\" cannot create resource \"namespaces\""
        )),
        "{stderr}"
    );

    // Another machine claiming the same name is refused, saying how to free it.
    let said = refused_agent(agent_command(
        &cluster,
        &token,
        &cluster.scratch_dir().join("impostor-data"),
        &node,
    ));
    assert!(
        said.contains(&format!("node \"{node}\" is already registered"))
            && said.contains(&format!("kubectl delete node {node}")),
        "{said}"
    );
}

#[test]
fn skiff_agent_refuses_a_wrong_token() {
    let cluster = Cluster::start();
    let token = join_token(&cluster);
    let (hash, _) = token.split_once("::").expect("K10<hash>::server:<secret>");
    // The right CA hash with a wrong secret: the server refuses it, the agent says why.
    let said = refused_agent(agent_command(
        &cluster,
        &format!("{hash}::server:not-the-secret"),
        &cluster.scratch_dir().join("bad-data"),
        "bad-node",
    ));
    assert!(
        said.contains("the token was refused (401 Unauthorized)"),
        "{said}"
    );
    // The right secret with another CA's hash: the agent refuses the server.
    let other = format!(
        "K10{}::{}",
        "0".repeat(64),
        token.split_once("::").expect("::").1
    );
    let said = refused_agent(agent_command(
        &cluster,
        &other,
        &cluster.scratch_dir().join("bad-data-2"),
        "bad-node",
    ));
    assert!(said.contains("does not match the join token"), "{said}");
    let said = refused_agent(agent_command(
        &cluster,
        "K10nonsense::server:x",
        &cluster.scratch_dir().join("bad-data-3"),
        "bad-node",
    ));
    assert!(said.contains("invalid --token"), "{said}");
    let missing = cluster.kubectl(["get", "node", "bad-node"]);
    assert!(!missing.status.success());
}

#[test]
fn seed_pod_runs_and_is_deleted() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let manifest = fixture("kubia-manual.yaml");
    cluster.kubectl_ok(["create", "-f", manifest.to_str().expect("utf-8 path")]);
    wait_until(Duration::from_secs(60), "kubia-manual Running", || {
        cluster.jsonpath(&["pod", "kubia-manual"], "{.status.phase}") == "Running"
    });
    let status = |path: &str| cluster.jsonpath(&["pod", "kubia-manual"], path);
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

    let uid = status("{.metadata.uid}");
    assert!(!uid.is_empty());
    // busybox httpd runs as the container's PID 1 without a SIGTERM handler, so the kernel
    // drops SIGTERM (as with Kubernetes): the agent kills it when the grace period ends.
    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "kubia-manual", "--grace-period=3"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "delete took {took:?}"
    );
    let left = cluster.kubectl_ok(["get", "pods", "-o", "name"]);
    assert_eq!(left.trim(), "");
    for dir in ["containers", "sandboxes"] {
        let count = std::fs::read_dir(cluster.data_dir().join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(count, 0, "{dir} left behind");
    }
    // Nor the pod's cgroup, in any hierarchy (v1 controllers or the v2 root).
    let pod_cgroup = format!("skiff/pod{uid}");
    let root = std::path::Path::new("/sys/fs/cgroup");
    let left: Vec<_> = std::fs::read_dir(root)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([root.to_path_buf()])
        .map(|h| h.join(&pod_cgroup))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn containers_survive_a_server_kill_and_are_readopted() {
    let mut cluster = Cluster::start_with_agent(import_test_images);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: survivor}
spec:
  containers:
  - {name: web, image: luksa/kubia, imagePullPolicy: Never}
  - {name: side, image: busybox, imagePullPolicy: Never, command: [sleep, "3600"]}
  - {name: crash, image: busybox, imagePullPolicy: Never, command: [sh, -c, "exit 3"]}
"#;
    let created = cluster.kubectl_stdin(["create", "-f", "-"], pod);
    skiff_e2e::assert_success(&created, "kubectl create -f -");
    let restarts = |c: &Cluster, name: &str| -> u32 {
        let path = format!("{{.status.containerStatuses[?(@.name==\"{name}\")].restartCount}}");
        c.jsonpath(&["pod", "survivor"], &path).parse().unwrap_or(0)
    };
    let running = |c: &Cluster, name: &str| {
        let path = format!("{{.status.containerStatuses[?(@.name==\"{name}\")].state.running}}");
        !c.jsonpath(&["pod", "survivor"], &path).is_empty()
    };
    wait_until(
        Duration::from_secs(60),
        "web and side running, crash restarted",
        || {
            running(&cluster, "web")
                && running(&cluster, "side")
                && restarts(&cluster, "crash") >= 1
        },
    );
    let uid = cluster.jsonpath(&["pod", "survivor"], "{.metadata.uid}");
    let ids = [format!("{uid}_0_web"), format!("{uid}_0_side")];
    let pids: Vec<u64> = ids.iter().map(|id| cluster.container_pid(id)).collect();
    let crashes = restarts(&cluster, "crash");

    cluster.restart();
    // The agent is back and has gone over the pod once it restarted the crashing container
    // again (its back-off did not survive the kill); the others are untouched.
    wait_until(
        Duration::from_secs(60),
        "crash restarted after the kill",
        || restarts(&cluster, "crash") > crashes,
    );
    for (id, pid) in ids.iter().zip(&pids) {
        assert_eq!(cluster.container_pid(id), *pid, "{id} is the same process");
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{id} still runs"
        );
    }
    for name in ["web", "side"] {
        assert_eq!(restarts(&cluster, name), 0, "{name} was not restarted");
        assert!(running(&cluster, name), "{name} runs");
        let path = format!("{{.status.containerStatuses[?(@.name==\"{name}\")].containerID}}");
        assert_eq!(
            cluster.jsonpath(&["pod", "survivor"], &path),
            format!("skiff://{uid}_0_{name}")
        );
    }

    // The adopted containers are stopped and removed like any others.
    cluster.kubectl_ok(["delete", "pod", "survivor", "--grace-period=2"]);
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is gone"
        );
    }
    for dir in ["containers", "sandboxes", "rootfs"] {
        let count = std::fs::read_dir(cluster.data_dir().join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(count, 0, "{dir} left behind");
    }
}

fn busybox_pod(name: &str, policy: &str, grace: u32, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  \
         terminationGracePeriodSeconds: {grace}\n  containers:\n  - name: main\n    image: busybox\n    \
         imagePullPolicy: Never\n    command: [sh, -c, {script:?}]\n"
    )
}

#[test]
fn restart_policies_and_graceful_termination_for_real() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&busybox_pod(
        "done",
        "Never",
        30,
        "echo all good > /dev/termination-log",
    ));
    cluster.create_from(&busybox_pod("broken", "Never", 30, "exit 7"));
    cluster.create_from(&busybox_pod("retry", "OnFailure", 30, "exit 0"));
    cluster.create_from(&busybox_pod("deaf", "Always", 3, "exec sleep 3600"));
    cluster.create_from(&busybox_pod(
        "polite",
        "Always",
        30,
        "trap 'exit 0' TERM; sleep 3600 & wait",
    ));
    cluster.create_from(&busybox_pod("forced", "Always", 30, "exec sleep 3600"));
    let phase = |name: &str| cluster.jsonpath(&["pod", name], "{.status.phase}");
    wait_until(Duration::from_secs(60), "done Succeeded", || {
        phase("done") == "Succeeded"
    });
    wait_until(Duration::from_secs(60), "broken Failed", || {
        phase("broken") == "Failed"
    });
    wait_until(Duration::from_secs(60), "retry Succeeded", || {
        phase("retry") == "Succeeded"
    });
    let term = |name: &str, field: &str| {
        cluster.jsonpath(
            &["pod", name],
            &format!("{{.status.containerStatuses[0].state.terminated.{field}}}"),
        )
    };
    assert_eq!(term("done", "reason"), "Completed");
    assert_eq!(term("done", "message"), "all good\n");
    assert_eq!(term("broken", "reason"), "Error");
    assert_eq!(term("broken", "exitCode"), "7");
    assert_eq!(
        cluster.jsonpath(
            &["pod", "broken"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    for name in ["deaf", "polite", "forced"] {
        wait_until(Duration::from_secs(60), &format!("{name} Running"), || {
            phase(name) == "Running"
        });
    }
    // One that exits on SIGTERM goes at once; one whose PID 1 ignores it at its grace period.
    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "polite"]);
    let polite = started.elapsed();
    assert!(polite < Duration::from_secs(3), "polite took {polite:?}");
    let started = Instant::now();
    cluster.kubectl_ok(["delete", "pod", "deaf"]);
    let deaf = started.elapsed();
    assert!(
        deaf >= Duration::from_secs(3) && deaf < Duration::from_secs(8),
        "deaf took {deaf:?} with a 3 s grace period"
    );
    // --grace-period=0 --force: the object goes at once, the agent kills and cleans up after.
    let uid = cluster.jsonpath(&["pod", "forced"], "{.metadata.uid}");
    cluster.kubectl_ok(["delete", "pod", "forced", "--grace-period=0", "--force"]);
    let containers = cluster.data_dir().join("containers");
    wait_until(WAIT, "the forced pod's containers removed", || {
        std::fs::read_dir(&containers)
            .map(|d| {
                !d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(uid.as_str()))
            })
            .unwrap_or(true)
    });
}

/// Starts `skiff agent` for `cluster` on `data` as node `node`, logging to `log`.
fn join(
    cluster: &Cluster,
    data: &std::path::Path,
    node: &str,
    log: &std::path::Path,
) -> AgentProcess {
    let log = std::fs::File::create(log).expect("log");
    let child = agent_command(cluster, &join_token(cluster), data, node)
        .stderr(log)
        .spawn()
        .expect("skiff agent starts");
    AgentProcess(child)
}

#[test]
fn a_pod_deleted_while_its_agent_is_away_goes_when_it_returns() {
    let cluster = Cluster::start();
    let node = format!("away-{}", std::process::id());
    let data = cluster.scratch_dir().join("agent-data");
    import_test_images(&data);
    let log = cluster.scratch_dir().join("agent.log");
    let agent = join(&cluster, &data, &node, &log);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: lonely}}\nspec:\n  nodeName: {node}\n  \
         terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox\n    \
         imagePullPolicy: Never\n    command: [sleep, \"3600\"]\n"
    );
    cluster.create_from(&pod);
    wait_until(Duration::from_secs(60), "lonely Running", || {
        cluster.jsonpath(&["pod", "lonely"], "{.status.phase}") == "Running"
    });
    let uid = cluster.jsonpath(&["pod", "lonely"], "{.metadata.uid}");
    let pid = {
        let path = data
            .join("containers")
            .join(format!("{uid}_0_main"))
            .join("status.json");
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("status.json"))
                .expect("json");
        status["pid"].as_u64().expect("pid")
    };
    drop(agent); // SIGKILL: the container keeps running.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    cluster.kubectl_ok(["delete", "pod", "lonely", "--wait=false"]);
    // Nobody confirms the deletion: the pod stays, Terminating.
    let deleting = cluster.jsonpath(&["pod", "lonely"], "{.metadata.deletionTimestamp}");
    assert!(!deleting.is_empty());

    let _agent = join(&cluster, &data, &node, &log);
    wait_until(WAIT, "lonely gone once its agent is back", || {
        !cluster.kubectl(["get", "pod", "lonely"]).status.success()
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container was stopped"
    );
    for dir in ["containers", "sandboxes", "rootfs"] {
        let count = std::fs::read_dir(data.join(dir))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(count, 0, "{dir} left behind");
    }
}

#[test]
fn a_crashing_container_backs_off_with_growing_delays() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&busybox_pod("crashy", "Always", 1, "exit 1"));
    let status = |path: &str| cluster.jsonpath(&["pod", "crashy"], path);
    let restarts = || -> u32 {
        status("{.status.containerStatuses[0].restartCount}")
            .parse()
            .unwrap_or(0)
    };
    // When each restart is first seen (polled by kubectl, so within a fraction of a second).
    let mut delays = Vec::new();
    for n in 1..=3 {
        wait_until(Duration::from_secs(60), &format!("restart {n}"), || {
            restarts() >= n
        });
        delays.push(Instant::now());
        if n == 1 {
            wait_until(WAIT, "CrashLoopBackOff", || {
                cluster.pod_ready_and_status("crashy").1 == "CrashLoopBackOff"
            });
        }
    }
    // Restart 1 is immediate, 2 after 10 s, 3 after 20 s (each crash takes a moment too).
    let gap_2 = delays[1] - delays[0];
    let gap_3 = delays[2] - delays[1];
    assert!(
        gap_2 >= Duration::from_secs(9) && gap_2 < Duration::from_secs(14),
        "{gap_2:?}"
    );
    assert!(
        gap_3 >= Duration::from_secs(19) && gap_3 < Duration::from_secs(25),
        "{gap_3:?}"
    );
    let last = status("{.status.containerStatuses[0].lastState.terminated.exitCode}");
    assert_eq!(last, "1");
}

/// The sandbox ids (directories) under the node's sandboxes root.
fn sandboxes(cluster: &Cluster) -> Vec<String> {
    std::fs::read_dir(cluster.data_dir().join("sandboxes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// As kubelet does, a finished pod's sandbox is stopped: its namespaces and its veth go and its
/// address is free, while its logs and status (its IP included) stay until it is deleted;
/// deleting it then removes its files.
#[test]
fn a_finished_pods_sandbox_is_stopped_and_its_logs_stay() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&busybox_pod("stays", "Always", 1, "exec sleep 3600"));
    cluster.create_from(&busybox_pod("done", "Never", 30, "echo finished"));
    let phase = |name: &str| cluster.jsonpath(&["pod", name], "{.status.phase}");
    wait_until(
        Duration::from_secs(60),
        "done Succeeded, stays Running",
        || phase("done") == "Succeeded" && phase("stays") == "Running",
    );
    let network = cluster.network().expect("the test's own pod network");
    wait_until(WAIT, "only the running pod's sandbox and veth left", || {
        sandboxes(&cluster).len() == 1 && network.veths().len() == 1
    });
    assert_eq!(cluster.kubectl_ok(["logs", "done"]), "finished\n");
    assert!(
        !cluster
            .jsonpath(&["pod", "done"], "{.status.podIP}")
            .is_empty(),
        "a finished pod keeps its IP in its status"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "done"],
            "{.status.conditions[?(@.type==\"PodReadyToStartContainers\")].status}"
        ),
        "False"
    );
    assert_eq!(phase("done"), "Succeeded", "stopping changed nothing else");
    let pod_dir = cluster
        .data_dir()
        .join("pods")
        .join(cluster.jsonpath(&["pod", "done"], "{.metadata.uid}"));
    assert!(pod_dir.exists(), "the finished pod's files stay");
    cluster.kubectl_ok(["delete", "pod", "done"]);
    wait_until(WAIT, "the deleted pod's files removed", || {
        !pod_dir.exists()
    });
    assert_eq!(sandboxes(&cluster).len(), 1, "the running pod is untouched");
}
