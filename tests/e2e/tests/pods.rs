//! Pods as the seed describes them, run for real by `skiff server`'s node agent: the containers
//! of a pod share its network, UTS and IPC namespaces but each has its own PID namespace unless
//! `shareProcessNamespace` is set; an emptyDir is shared; the downward API fills env; a container
//! over its memory limit is OOMKilled; and once every pod is deleted nothing of them is left.
//!
//! There is no `kubectl exec` yet, so the containers report what they see into a hostPath
//! directory the test reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_e2e::{import_test_images, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

/// The first container: records what it sees, serves `/www` on 8080 with busybox httpd, waits
/// for the second container to be up, then lists the processes it can see.
const WEB: &str = r#"set -e
mkdir -p /www && echo hello-from-web > /www/index.html
hostname > $OUT/web.hostname
for n in ipc net pid uts; do echo $n $(readlink /proc/self/ns/$n); done > $OUT/web.ns
env > $OUT/web.env
echo written-by-web > /shared/note
echo in-memory > /mem/note
grep ' /mem ' /proc/mounts > $OUT/web.mem
httpd -p 8080 -h /www
until [ -e /shared/side-up ]; do sleep 0.1; done
ps > $OUT/web.ps
sleep 3600 &
trap 'kill $!; exit 0' TERM
touch $OUT/web.done
wait"#;

/// The second: the same records, fetches `http://localhost:8080/` from the first, reads the
/// note the first left in the emptyDir, starts a `sleep 3601` the first may see, lists processes.
const SIDE: &str = r#"set -e
hostname > $OUT/side.hostname
for n in ipc net pid uts; do echo $n $(readlink /proc/self/ns/$n); done > $OUT/side.ns
until timeout 2 wget -q -O $OUT/side.fetched http://localhost:8080/; do sleep 0.1; done
cat /shared/note > $OUT/side.shared
cat /mem/note > $OUT/side.mem
sleep 3601 &
trap 'kill $!; exit 0' TERM
touch /shared/side-up
ps > $OUT/side.ps
touch $OUT/side.done
wait"#;

/// The two-container pod `name`, reporting into the host directory `out`.
fn two_container_pod(name: &str, out: &Path, share_process_namespace: bool) -> String {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "shareProcessNamespace": share_process_namespace,
            "terminationGracePeriodSeconds": 5,
            "volumes": [
                {"name": "out", "hostPath": {"path": out, "type": "Directory"}},
                {"name": "shared", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            ],
            "containers": [
                {
                    "name": "web",
                    "image": "busybox",
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", WEB],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "32Mi"},
                        "limits": {"memory": "64Mi"},
                    },
                    "env": [
                        {"name": "OUT", "value": "/out"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                        {"name": "MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                        {"name": "CPU_REQUEST", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                        {"name": "GREETING", "value": "hello $(POD_NAME) in $(POD_NAMESPACE)"},
                    ],
                    "volumeMounts": [
                        {"name": "out", "mountPath": "/out"},
                        {"name": "shared", "mountPath": "/shared"},
                        {"name": "mem", "mountPath": "/mem"},
                    ],
                },
                {
                    "name": "side",
                    "image": "busybox",
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", SIDE],
                    "env": [{"name": "OUT", "value": "/out"}],
                    "volumeMounts": [
                        {"name": "out", "mountPath": "/out"},
                        {"name": "shared", "mountPath": "/shared"},
                        {"name": "mem", "mountPath": "/mem"},
                    ],
                },
            ],
        },
    });
    // JSON is YAML.
    pod.to_string()
}

/// What a pod's containers reported, by file name.
struct Reports(PathBuf);

impl Reports {
    fn new(cluster: &Cluster, pod: &str) -> Reports {
        let dir = cluster.scratch_dir().join(format!("out-{pod}"));
        std::fs::create_dir_all(&dir).expect("create the report directory");
        Reports(dir)
    }

    fn read(&self, name: &str) -> String {
        let path = self.0.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn done(&self) -> bool {
        self.0.join("web.done").exists() && self.0.join("side.done").exists()
    }

    /// `web.ns` or `side.ns` as namespace type -> `/proc/self/ns` link.
    fn namespaces(&self, container: &str) -> BTreeMap<String, String> {
        self.read(&format!("{container}.ns"))
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.read("web.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// What `pick` makes of each process on the host (its pid and its /proc directory), where it
/// makes something.
fn each_process<T>(pick: impl Fn(u32, &Path) -> Option<T>) -> Vec<T> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            pick(pid, &e.path())
        })
        .collect()
}

/// Every process on the host whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    each_process(|pid, dir| {
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        cmdline.contains(needle).then_some((pid, cmdline))
    })
}

/// Every process on the host in namespace `link` (as `/proc/self/ns/<kind>` reads, e.g.
/// `net:[4026532301]`).
fn processes_in(link: &str) -> Vec<u32> {
    let kind = link.split(':').next().unwrap_or_default();
    each_process(|pid, dir| {
        let ns = std::fs::read_link(dir.join("ns").join(kind)).ok()?;
        (ns.to_str() == Some(link)).then_some(pid)
    })
}

/// Directories of cgroup `relative` that exist, in any hierarchy (v1 controllers or the v2 root).
fn cgroups_named(relative: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    std::fs::read_dir(root)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([root.to_path_buf()])
        .map(|h| h.join(relative))
        .filter(|p| p.exists())
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

#[test]
fn containers_share_the_pods_namespaces_and_nothing_is_left_after() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let apart = Reports::new(&cluster, "twins");
    let together = Reports::new(&cluster, "together");
    cluster.create_from(&two_container_pod("twins", &apart.0, false));
    cluster.create_from(&two_container_pod("together", &together.0, true));
    // A container over its memory limit: busybox dd allocates its 256 MiB block at once.
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "hog", "image": "busybox",
            "imagePullPolicy": "Never", "resources": {"limits": {"memory": "16Mi"}},
            "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]}]}}"#,
    );

    for (pod, reports) in [("twins", &apart), ("together", &together)] {
        wait_until(WAIT, &format!("{pod} Running"), || {
            cluster.jsonpath(&["pod", pod], "{.status.phase}") == "Running"
        });
        wait_until(WAIT, &format!("{pod}'s containers report"), || {
            reports.done()
        });
    }

    for (pod, reports) in [("twins", &apart), ("together", &together)] {
        // One hostname, the pod's name, in both containers.
        assert_eq!(reports.read("web.hostname"), format!("{pod}\n"));
        assert_eq!(reports.read("side.hostname"), format!("{pod}\n"));
        // localhost reaches the other container; the emptyDir holds what the other wrote.
        assert_eq!(reports.read("side.fetched"), "hello-from-web\n");
        assert_eq!(reports.read("side.shared"), "written-by-web\n");
        // The Memory-medium emptyDir is one tmpfs of its sizeLimit, seen by both.
        assert_eq!(reports.read("side.mem"), "in-memory\n");
        let mem = reports.read("web.mem");
        assert!(
            mem.starts_with("tmpfs /mem tmpfs rw,nosuid,nodev") && mem.contains("size=8192k"),
            "{mem}"
        );
        let (web, side) = (reports.namespaces("web"), reports.namespaces("side"));
        for kind in ["ipc", "net", "uts"] {
            assert!(web[kind].starts_with(&format!("{kind}:[")), "{web:?}");
            assert_eq!(web[kind], side[kind], "{pod}: one {kind} namespace");
        }
    }
    // Each pod has namespaces of its own, not the host's nor the other pod's.
    let (twins, together_ns) = (apart.namespaces("web"), together.namespaces("web"));
    for kind in ["ipc", "net", "uts", "pid"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("host namespace");
        assert_ne!(twins[kind], host.display().to_string(), "{kind}");
        assert_ne!(twins[kind], together_ns[kind], "{kind}");
    }

    // PID namespaces: apart unless shareProcessNamespace.
    assert_ne!(
        apart.namespaces("web")["pid"],
        apart.namespaces("side")["pid"]
    );
    let (web_ps, side_ps) = (apart.read("web.ps"), apart.read("side.ps"));
    assert!(
        !web_ps.contains("sleep 3601"),
        "web sees side's processes:\n{web_ps}"
    );
    assert!(
        !side_ps.contains("httpd"),
        "side sees web's processes:\n{side_ps}"
    );
    assert!(
        web_ps.contains("httpd"),
        "web sees its own httpd:\n{web_ps}"
    );
    assert_eq!(
        together.namespaces("web")["pid"],
        together.namespaces("side")["pid"]
    );
    let (web_ps, side_ps) = (together.read("web.ps"), together.read("side.ps"));
    assert!(
        web_ps.contains("sleep 3601"),
        "web sees side's sleep:\n{web_ps}"
    );
    assert!(
        side_ps.contains("httpd"),
        "side sees web's httpd:\n{side_ps}"
    );

    // The downward API, Kubernetes' way.
    let env = apart.env();
    let uid = cluster.jsonpath(&["pod", "twins"], "{.metadata.uid}");
    let node = cluster.node_name().expect("agent");
    let host_ip = cluster.jsonpath(&["pod", "twins"], "{.status.hostIP}");
    assert!(!host_ip.is_empty());
    let expected = [
        ("POD_NAME", "twins"),
        ("POD_NAMESPACE", "default"),
        ("POD_UID", uid.as_str()),
        ("NODE_NAME", node),
        ("HOST_IP", host_ip.as_str()),
        ("MEMORY_LIMIT", "67108864"),
        ("CPU_REQUEST", "100"),
        ("GREETING", "hello twins in default"),
        ("HOSTNAME", "twins"),
    ];
    for (name, value) in expected {
        assert_eq!(
            env.get(name).map(String::as_str),
            Some(value),
            "{name} in {env:?}"
        );
    }
    assert!(
        env.get("PATH").is_some_and(|p| p.contains("/bin")),
        "{env:?}"
    );

    // The memory hog: OOMKilled, exit code 137, and the pod Failed (restartPolicy Never).
    wait_until(WAIT, "hog Failed", || {
        cluster.jsonpath(&["pod", "hog"], "{.status.phase}") == "Failed"
    });
    let terminated = |field: &str| {
        cluster.jsonpath(
            &["pod", "hog"],
            &format!("{{.status.containerStatuses[0].state.terminated.{field}}}"),
        )
    };
    assert_eq!(terminated("reason"), "OOMKilled");
    assert_eq!(terminated("exitCode"), "137");
    assert_eq!(
        cluster.jsonpath(&["pod", "hog"], "{.status.qosClass}"),
        "Burstable"
    );

    // Delete them all: nothing of any pod is left.
    let uids: Vec<String> = ["twins", "together", "hog"]
        .iter()
        .map(|p| cluster.jsonpath(&["pod", p], "{.metadata.uid}"))
        .collect();
    let container_pids: Vec<u64> = ["twins", "together"]
        .iter()
        .flat_map(|pod| {
            let uid = cluster.jsonpath(&["pod", pod], "{.metadata.uid}");
            ["web", "side"].map(|c| cluster.container_pid(&format!("{uid}_0_{c}")))
        })
        .collect();
    // The pods' namespaces, each holding processes now (the shared PID namespace: the pause
    // process too).
    let namespaces: Vec<String> = [&apart, &together]
        .iter()
        .flat_map(|r| [r.namespaces("web"), r.namespaces("side")])
        .flat_map(|ns| ns.into_values())
        .collect();
    for ns in &namespaces {
        assert!(!processes_in(ns).is_empty(), "nothing runs in {ns}");
    }
    cluster.kubectl_ok(["delete", "pods", "--all"]);
    assert_eq!(cluster.kubectl_ok(["get", "pods", "-o", "name"]).trim(), "");
    let data = cluster.data_dir();
    for dir in ["containers", "sandboxes", "rootfs", "pods"] {
        let left: Vec<_> = std::fs::read_dir(data.join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{dir}: left behind {left:?} (uids of twins, together, hog: {uids:?})"
        );
    }
    let mounts = mounts_under(data);
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    for uid in &uids {
        let left = cgroups_named(&format!("skiff/pod{uid}"));
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
    for pid in container_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "container process {pid} still runs"
        );
    }
    for ns in &namespaces {
        let left = processes_in(ns);
        assert!(left.is_empty(), "processes left in {ns}: {left:?}");
    }
    // No monitor process of this cluster, nor anything the containers started.
    let data_text = data.display().to_string();
    for needle in [data_text.as_str(), "sleep 3601", "httpd -p 8080 -h /www"] {
        let mut left = processes_with(needle);
        // The server, and the agent's monitor launcher (whose command line its forked monitors
        // share: they are told apart by name), run on.
        left.retain(|(pid, cmdline)| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            !cmdline.contains(" server --data-dir ") && comm.trim() != "skiff-launcher"
        });
        assert!(left.is_empty(), "processes left behind: {left:?}");
    }
}

/// A busybox pod `name` with `container` merged into its one container's fields.
fn busybox_pod(name: &str, container: serde_json::Value) -> String {
    let mut c = serde_json::json!({
        "name": "main", "image": "busybox", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    });
    for (k, v) in container.as_object().expect("an object").clone() {
        c[k] = v;
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [c]},
    })
    .to_string()
}

#[test]
fn bad_input_surfaces_in_status_and_events_and_other_pods_run() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let missing_dir = cluster.scratch_dir().join("no-such-dir");
    // Nothing listens on port 1 of the loopback: the pull fails at once, and goes nowhere else.
    cluster.create_from(&busybox_pod(
        "noimage",
        serde_json::json!({"image": "127.0.0.1:1/nope:1", "imagePullPolicy": "IfNotPresent"}),
    ));
    cluster.create_from(&busybox_pod(
        "nocmd",
        serde_json::json!({"command": ["/no/such/binary"]}),
    ));
    cluster.create_from(&busybox_pod(
        "tinymem",
        serde_json::json!({"resources": {"limits": {"memory": "4Ki"}}}),
    ));
    let mut nodir: serde_json::Value = serde_json::from_str(&busybox_pod(
        "nodir",
        serde_json::json!({"volumeMounts": [{"name": "host", "mountPath": "/host"}]}),
    ))
    .expect("JSON");
    nodir["spec"]["volumes"] = serde_json::json!([
        {"name": "host", "hostPath": {"path": missing_dir, "type": "Directory"}}
    ]);
    cluster.create_from(&nodir.to_string());
    cluster.create_from(&busybox_pod("fine", serde_json::json!({})));

    wait_until(WAIT, "fine Running", || {
        cluster.jsonpath(&["pod", "fine"], "{.status.phase}") == "Running"
    });
    let waiting = |pod: &str, field: &str| {
        cluster.jsonpath(
            &["pod", pod],
            &format!("{{.status.containerStatuses[0].state.waiting.{field}}}"),
        )
    };
    wait_until(WAIT, "noimage in ImagePullBackOff", || {
        waiting("noimage", "reason") == "ImagePullBackOff"
    });
    let message_of = |pod: &str| {
        cluster.jsonpath(
            &["pod", pod],
            "{.status.containerStatuses[0].state.waiting.message}{.status.containerStatuses[0].lastState.terminated.message}",
        )
    };
    // A command not in the image: runc's own message, and the container backs off.
    wait_until(WAIT, "nocmd in CrashLoopBackOff", || {
        waiting("nocmd", "reason") == "CrashLoopBackOff"
    });
    assert_eq!(
        cluster.jsonpath(
            &["pod", "nocmd"],
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "StartError"
    );
    let message = message_of("nocmd");
    assert!(
        message
            .contains("exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory"),
        "{message}"
    );
    // A memory limit below what the runtime needs to start the container.
    wait_until(WAIT, "tinymem in CrashLoopBackOff", || {
        waiting("tinymem", "reason") == "CrashLoopBackOff"
    });
    let message = message_of("tinymem");
    assert!(
        message.contains("unable to set memory limit to 4096"),
        "{message}"
    );
    // A hostPath of type Directory that is not there: the container is never created.
    wait_until(WAIT, "nodir in CreateContainerError", || {
        waiting("nodir", "reason") == "CreateContainerError"
    });
    let message = waiting("nodir", "message");
    assert_eq!(
        message,
        format!(
            "hostPath type check failed: {} is not a directory",
            missing_dir.display()
        )
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "nodir"], "{.status.phase}"),
        "Pending"
    );
    // The image: kubelet's reasons, and the registry client's own words in the event.
    let events = cluster.events_about("noimage");
    assert!(
        events.contains("Failed to pull image \"127.0.0.1:1/nope:1\""),
        "{events}"
    );
    assert!(events.contains("Connection refused"), "{events}");
    assert!(events.contains("ErrImagePull"), "{events}");
    for pod in ["nocmd", "tinymem", "nodir"] {
        let events = cluster.events_about(pod);
        assert!(
            events.contains("Warning") && events.contains("Failed"),
            "{pod}: {events}"
        );
    }

    // Through all this the agent kept serving the good pod, and deletes every one of them.
    assert_eq!(
        cluster.jsonpath(&["pod", "fine"], "{.status.phase}"),
        "Running"
    );
    assert_eq!(
        cluster.jsonpath(
            &["pod", "fine"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    cluster.kubectl_ok(["delete", "pods", "--all"]);
    for dir in ["containers", "sandboxes", "rootfs", "pods"] {
        let left: Vec<_> = std::fs::read_dir(cluster.data_dir().join(dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir}: left behind {left:?}");
    }
}

#[test]
fn pod_max_pids_limits_the_processes_of_each_pod() {
    let cluster = Cluster::start_with_agent_args(&["--pod-max-pids", "16"], import_test_images);
    // 40 background sleeps: the shell cannot fork past the pod's 16 processes and gives up.
    let script = "for i in $(seq 40); do sleep 300 & done; echo all-started; kill $(jobs -p)";
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "forker"}},
            "spec": {{"restartPolicy": "Never", "containers": [{{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", {script:?}]}}]}}}}"#
    ));
    wait_until(WAIT, "forker Failed", || {
        cluster.jsonpath(&["pod", "forker"], "{.status.phase}") == "Failed"
    });
    let uid = cluster.jsonpath(&["pod", "forker"], "{.metadata.uid}");
    let limits: Vec<String> = cgroups_named(&format!("skiff/pod{uid}"))
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("pids.max")).ok())
        .collect();
    assert_eq!(limits, ["16\n"], "the pod cgroup's pids.max");
    let log = cluster
        .data_dir()
        .join(format!("pods/{uid}/logs/main/0.log"));
    let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(log.contains("can't fork"), "{log}");
    assert!(!log.contains("all-started"), "{log}");
}
