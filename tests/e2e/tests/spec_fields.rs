//! The pod spec fields that change what a pod sees or how long it lives on its node, run for
//! real by `skiff server`'s node agent and driven by the real kubectl: activeDeadlineSeconds,
//! sysctls (safe, unsafe, forbidden), hostNetwork, and the files and process settings kubelet
//! derives from the spec (hostAliases, dnsPolicy/dnsConfig, hostname/subdomain,
//! terminationMessagePolicy, workingDir, tty).
//!
//! Containers report what they see on their stdout, read back with `kubectl logs`.

use std::time::Duration;

use skiff_e2e::{import_test_images, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(90);

/// A pod `name` of one busybox container running `script` (see
/// [`skiff_e2e::busybox_script_pod`]).
fn pod(name: &str, script: &str, container: serde_json::Value, spec: serde_json::Value) -> String {
    skiff_e2e::busybox_script_pod(name, script, container, spec)
}

fn none() -> serde_json::Value {
    serde_json::json!({})
}

/// The reasons of the events about pod `name`.
fn event_reasons(cluster: &Cluster, name: &str) -> Vec<String> {
    cluster
        .kubectl_ok([
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn host_sysctl(name: &str) -> String {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn active_deadline_fails_the_pod_and_stops_its_containers() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod(
        "deadline",
        "echo started; exec sleep 3600",
        none(),
        serde_json::json!({"activeDeadlineSeconds": 2, "terminationGracePeriodSeconds": 1}),
    ));
    cluster.wait_pod_phase("deadline", "Failed", WAIT);
    let status = |path: &str| cluster.jsonpath(&["pod", "deadline"], path);
    assert_eq!(status("{.status.reason}"), "DeadlineExceeded");
    assert_eq!(
        status("{.status.message}"),
        "Pod was active on the node longer than the specified deadline"
    );
    // The container was stopped (SIGTERM ignored by a PID 1 sleep, then SIGKILL).
    wait_until(WAIT, "the container is terminated", || {
        !status("{.status.containerStatuses[0].state.terminated.exitCode}").is_empty()
    });
    assert_eq!(
        status("{.status.containerStatuses[0].state.terminated.exitCode}"),
        "137"
    );
    assert!(
        event_reasons(&cluster, "deadline").contains(&"DeadlineExceeded".to_string()),
        "{:?}",
        event_reasons(&cluster, "deadline")
    );
    // kubectl shows the container's reason over the pod's, as for any failed pod.
    let shown = cluster.kubectl_ok(["get", "pod", "deadline", "--no-headers"]);
    assert!(shown.contains("Error"), "{shown}");
    // It stays failed: the container is not started again.
    assert_eq!(status("{.status.containerStatuses[0].restartCount}"), "0");

    // Validation: positive, and on a pod only ever lowered.
    let zero = cluster.kubectl_stdin(
        ["create", "-f", "-"],
        &pod(
            "zero",
            "true",
            none(),
            serde_json::json!({"activeDeadlineSeconds": 0}),
        ),
    );
    assert!(!zero.status.success());
    assert!(
        skiff_e2e::stderr(&zero)
            .contains("spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
        "{}",
        skiff_e2e::stderr(&zero)
    );
    cluster.create_from(&pod(
        "long",
        "exec sleep 3600",
        none(),
        serde_json::json!({"activeDeadlineSeconds": 3600, "terminationGracePeriodSeconds": 1}),
    ));
    let patch = |value: i64| {
        cluster.kubectl([
            "patch",
            "pod",
            "long",
            "-p",
            &format!("{{\"spec\":{{\"activeDeadlineSeconds\":{value}}}}}"),
        ])
    };
    let raised = patch(7200);
    assert!(!raised.status.success());
    assert!(
        skiff_e2e::stderr(&raised).contains("must be less than or equal to previous value"),
        "{}",
        skiff_e2e::stderr(&raised)
    );
    // Lowered on the running pod: the new deadline holds.
    cluster.wait_pod_phase("long", "Running", WAIT);
    skiff_e2e::assert_success(&patch(1), "lowering activeDeadlineSeconds");
    cluster.wait_pod_phase("long", "Failed", WAIT);
    assert_eq!(
        cluster.jsonpath(&["pod", "long"], "{.status.reason}"),
        "DeadlineExceeded"
    );
}

#[test]
fn sysctls_apply_in_the_pods_namespaces_and_unsafe_ones_need_the_node_flag() {
    let mut cluster = Cluster::start_with_agent_args(
        &["--allowed-unsafe-sysctls", "kernel.msgmax"],
        import_test_images,
    );
    let port_range = host_sysctl("net.ipv4.ip_local_port_range");
    let rmid = host_sysctl("kernel.shm_rmid_forced");
    let msgmax = host_sysctl("kernel.msgmax");
    let want_range = if port_range == "20000 30000" {
        "20001 30001"
    } else {
        "20000 30000"
    };
    let want_rmid = if rmid == "1" { "0" } else { "1" };
    let want_msgmax = if msgmax == "16384" { "16385" } else { "16384" };
    let script = r#"echo "range=$(cat /proc/sys/net/ipv4/ip_local_port_range | tr -s '\t ' '  ')"
echo "rmid=$(cat /proc/sys/kernel/shm_rmid_forced)"
echo "msgmax=$(cat /proc/sys/kernel/msgmax)"
echo done"#;
    cluster.create_from(&pod(
        "safe",
        script,
        none(),
        serde_json::json!({"securityContext": {"sysctls": [
            {"name": "net.ipv4.ip_local_port_range", "value": want_range},
            {"name": "kernel/shm_rmid_forced", "value": want_rmid},
            {"name": "kernel.msgmax", "value": want_msgmax},
        ]}}),
    ));
    cluster.create_from(&pod(
        "unsafe",
        "echo never",
        none(),
        serde_json::json!({"securityContext": {"sysctls": [
            {"name": "kernel.shm_rmid_forced", "value": "1"},
            {"name": "net.core.somaxconn", "value": "1024"},
        ]}}),
    ));

    let seen = cluster.pod_report("safe", WAIT);
    assert_eq!(seen["range"], want_range, "{seen:?}");
    assert_eq!(seen["rmid"], want_rmid, "{seen:?}");
    assert_eq!(
        seen["msgmax"], want_msgmax,
        "allowed by the node flag: {seen:?}"
    );
    // The host's own values did not move.
    assert_eq!(host_sysctl("net.ipv4.ip_local_port_range"), port_range);
    assert_eq!(host_sysctl("kernel.shm_rmid_forced"), rmid);
    assert_eq!(host_sysctl("kernel.msgmax"), msgmax);

    cluster.wait_pod_phase("unsafe", "Failed", WAIT);
    assert_eq!(
        cluster.jsonpath(&["pod", "unsafe"], "{.status.reason}"),
        "SysctlForbidden"
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "unsafe"], "{.status.message}"),
        r#"Pod was rejected: forbidden sysctl: "net.core.somaxconn" not allowlisted"#
    );
    assert!(event_reasons(&cluster, "unsafe").contains(&"SysctlForbidden".to_string()));
    assert_eq!(
        cluster.jsonpath(&["pod", "unsafe"], "{.status.conditions[*].type}"),
        "",
        "kubelet writes no condition for a pod it rejects"
    );
    let shown = cluster.kubectl_ok(["get", "pod", "unsafe", "--no-headers"]);
    assert!(shown.contains("SysctlForbidden"), "{shown}");

    // After an agent restart the rejected pod stays as it was: nothing is made for it.
    cluster.restart();
    cluster.create_from(&pod(
        "after",
        "exec sleep 3600",
        none(),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    ));
    cluster.wait_pod_phase("after", "Running", WAIT);
    let after_uid = cluster.jsonpath(&["pod", "after"], "{.metadata.uid}");
    let unsafe_uid = cluster.jsonpath(&["pod", "unsafe"], "{.metadata.uid}");
    let sandboxes = std::fs::read_dir(cluster.data_dir().join("sandboxes"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("sandbox.json")).ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert!(sandboxes.iter().any(|s| s.contains(&after_uid)));
    assert!(
        !sandboxes.iter().any(|s| s.contains(&unsafe_uid)),
        "a sandbox for the rejected pod"
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "unsafe"], "{.status.phase} {.status.reason}"),
        "Failed SysctlForbidden"
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "unsafe"], "{.status.containerStatuses}"),
        ""
    );

    // The API server's checks: names, duplicates, and no net.* beside hostNetwork.
    let refused = cluster.kubectl_stdin(
        ["create", "-f", "-"],
        &pod(
            "bad",
            "true",
            none(),
            serde_json::json!({"hostNetwork": true, "securityContext": {"sysctls": [
                {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                {"name": "net.ipv4.tcp_syncookies", "value": "0"},
                {"name": "Kernel.X", "value": "1"},
            ]}}),
        ),
    );
    assert!(!refused.status.success());
    let stderr = skiff_e2e::stderr(&refused);
    for want in [
        r#"spec.securityContext.sysctls[0].name: Invalid value: "net.ipv4.tcp_syncookies": may not be specified when 'hostNetwork' is true"#,
        r#"spec.securityContext.sysctls[1].name: Duplicate value: "net.ipv4.tcp_syncookies""#,
        r#"spec.securityContext.sysctls[2].name: Invalid value: "Kernel.X": must have at most 253 characters"#,
    ] {
        assert!(stderr.contains(want), "{want} not in {stderr}");
    }
}

/// A free TCP port on the node (held by nobody once returned).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn host_network_pods_use_the_nodes_network_and_leave_it_alone() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let network = cluster.network().expect("the cluster's pod network");
    let port = free_port();
    let serve = format!(
        "mkdir -p /www && echo hostnet > /www/index.html && exec httpd -f -p {port} -h /www"
    );
    cluster.create_from(&pod(
        "hostnet",
        &serve,
        serde_json::json!({
            "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
        }),
        serde_json::json!({
            "hostNetwork": true,
            "hostAliases": [{"ip": "10.9.8.7", "hostnames": ["alias.one", "alias.two"]}],
            "terminationGracePeriodSeconds": 1,
        }),
    ));
    // The same resolver configuration a pod gets with dnsPolicy Default.
    cluster.create_from(&pod(
        "default-dns",
        "exec sleep 3600",
        none(),
        serde_json::json!({"dnsPolicy": "Default", "terminationGracePeriodSeconds": 1}),
    ));
    wait_until(
        WAIT,
        "hostnet Ready (its probe reaches the node's network)",
        || {
            cluster.jsonpath(
                &["pod", "hostnet"],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            ) == "True"
        },
    );
    cluster.wait_pod_phase("default-dns", "Running", WAIT);

    // Its address is the node's.
    let host_ip = cluster.jsonpath(&["pod", "hostnet"], "{.status.hostIP}");
    assert!(!host_ip.is_empty());
    assert_eq!(
        cluster.jsonpath(&["pod", "hostnet"], "{.status.podIP}"),
        host_ip
    );
    assert_eq!(
        cluster.jsonpath(&["pod", "hostnet"], "{.status.podIPs[*].ip}"),
        host_ip
    );
    // Its network namespace is this test's own (the node's), and so is its UTS namespace.
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "hostnet", "--"];
        all.extend_from_slice(args);
        cluster.kubectl_ok(all)
    };
    let own = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .expect("own namespace")
            .display()
            .to_string()
    };
    assert_eq!(exec(&["readlink", "/proc/self/ns/net"]).trim(), own("net"));
    assert_eq!(exec(&["readlink", "/proc/self/ns/uts"]).trim(), own("uts"));
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(exec(&["hostname"]).trim(), node_hostname.trim());
    assert_eq!(exec(&["cat", "/etc/hostname"]).trim(), node_hostname.trim());
    // What it serves answers on the node's loopback.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.0\r\n\r\n").expect("request");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut stream, &mut reply).expect("reply");
    assert!(reply.ends_with("hostnet\n"), "{reply}");
    // kubelet's hosts file for the host network: the node's, then the aliases.
    let node_hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts");
    assert_eq!(
        exec(&["cat", "/etc/hosts"]),
        format!(
            "# Kubernetes-managed hosts file (host network).\n{node_hosts}\n# Entries added by HostAliases.\n10.9.8.7\talias.one\talias.two\n"
        )
    );
    // ClusterFirst falls back to Default on the host network, without the missing-DNS warning.
    assert_eq!(
        exec(&["cat", "/etc/resolv.conf"]),
        cluster.kubectl_ok(["exec", "default-dns", "--", "cat", "/etc/resolv.conf"])
    );
    let warned = cluster.kubectl_ok([
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hostnet,reason=MissingClusterDNS",
        "-o",
        "name",
    ]);
    assert!(warned.trim().is_empty(), "{warned}");
    // No veth of its own on the cluster's bridge: only default-dns has one.
    assert_eq!(network.veths().len(), 1, "{:?}", network.veths());

    // Deleting it leaves the node's network as it was: its links, the bridge, the table.
    let links = || {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| !n.starts_with("sk") || *n == network.bridge)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = links();
    cluster.kubectl_ok(["delete", "pod", "hostnet", "--wait=true"]);
    let after = links();
    assert!(
        before.is_subset(&after),
        "links gone: {:?}",
        before.difference(&after)
    );
    assert!(after.contains(&network.bridge));
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip", &network.table])
        .output()
        .expect("nft");
    assert!(table.status.success(), "the node's table is gone");
    assert_eq!(network.veths().len(), 1, "{:?}", network.veths());
    // The lo of this (the node's) namespace is still up.
    let lo = std::fs::read_to_string("/sys/class/net/lo/operstate").expect("lo");
    assert_ne!(lo.trim(), "down");

    // net.* sysctls are refused beside hostNetwork by the API server.
    let refused = cluster.kubectl_stdin(
        ["create", "-f", "-"],
        &pod(
            "hostnet-sysctl",
            "true",
            none(),
            serde_json::json!({"hostNetwork": true, "securityContext": {"sysctls": [
                {"name": "net.ipv4.ip_local_port_range", "value": "20000 30000"},
            ]}}),
        ),
    );
    assert!(!refused.status.success());
    assert!(
        skiff_e2e::stderr(&refused).contains("may not be specified when 'hostNetwork' is true"),
        "{}",
        skiff_e2e::stderr(&refused)
    );
}

#[test]
fn hosts_resolv_conf_and_hostname_are_kubelets() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod(
        "named",
        "exec sleep 3600",
        none(),
        serde_json::json!({
            "hostname": "web-0",
            "subdomain": "web",
            "hostAliases": [
                {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                {"ip": "10.1.2.3", "hostnames": ["foo.remote"]},
            ],
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["1.2.3.4"],
                "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
            "terminationGracePeriodSeconds": 1,
        }),
    ));
    cluster.create_from(&pod(
        "default-dns",
        "exec sleep 3600",
        none(),
        serde_json::json!({
            "dnsPolicy": "Default",
            "dnsConfig": {"nameservers": ["9.9.9.9"], "searches": ["extra.example"]},
            "terminationGracePeriodSeconds": 1,
        }),
    ));
    cluster.wait_pod_phase("named", "Running", WAIT);
    cluster.wait_pod_phase("default-dns", "Running", WAIT);
    let exec = |name: &str, args: &[&str]| {
        let mut all = vec!["exec", name, "--"];
        all.extend_from_slice(args);
        cluster.kubectl_ok(all)
    };
    let ip = cluster.jsonpath(&["pod", "named"], "{.status.podIP}");
    assert!(!ip.is_empty());
    assert_eq!(
        exec("named", &["cat", "/etc/hosts"]),
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\tweb-0.web.default.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
        )
    );
    assert_eq!(
        exec("named", &["cat", "/etc/resolv.conf"]),
        "search ns1.svc.cluster-domain.example my.dns.search.suffix\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
    );
    assert_eq!(exec("named", &["hostname"]), "web-0\n");
    assert_eq!(exec("named", &["cat", "/etc/hostname"]), "web-0\n");

    // Default: the node's resolver configuration, with dnsConfig appended.
    let resolv = exec("default-dns", &["cat", "/etc/resolv.conf"]);
    let nameservers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(nameservers.last(), Some(&"9.9.9.9"), "{resolv}");
    let search = resolv
        .lines()
        .find_map(|l| l.strip_prefix("search "))
        .unwrap_or_else(|| panic!("no search line in {resolv}"));
    assert!(search.ends_with("extra.example"), "{resolv}");
    assert_eq!(exec("default-dns", &["hostname"]), "default-dns\n");
}

#[test]
fn termination_messages_working_dir_and_tty_as_kubelet() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let fallback = serde_json::json!({"terminationMessagePolicy": "FallbackToLogsOnError"});
    cluster.create_from(&pod(
        "fallback",
        "for i in $(seq 1 100); do echo line $i; done; exit 3",
        fallback.clone(),
        none(),
    ));
    cluster.create_from(&pod(
        "fallback-bytes",
        "for i in $(seq 1 50); do printf '%099d\\n' $i; done; exit 1",
        fallback.clone(),
        none(),
    ));
    cluster.create_from(&pod(
        "written",
        "echo logged; printf 'custom message' > /tmp/my-message; exit 1",
        serde_json::json!({
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "terminationMessagePath": "/tmp/my-message",
        }),
        none(),
    ));
    cluster.create_from(&pod(
        "succeeded",
        "echo logged; exit 0",
        fallback.clone(),
        none(),
    ));
    cluster.create_from(&pod("file-policy", "echo logged; exit 1", none(), none()));
    cluster.create_from(&pod(
        "workdir",
        "echo pwd=$(pwd); echo done",
        serde_json::json!({"workingDir": "/does/not/exist"}),
        none(),
    ));
    cluster.create_from(&pod(
        "tty",
        "if test -t 0; then echo stdin=tty; else echo stdin=none; fi; if test -t 1; then echo stdout=tty; else echo stdout=none; fi; echo done",
        serde_json::json!({"stdin": true, "stdinOnce": true, "tty": true}),
        none(),
    ));
    cluster.create_from(&pod(
        "notty",
        "if test -t 0; then echo stdin=tty; else echo stdin=none; fi; echo done",
        none(),
        none(),
    ));

    let message = |name: &str| {
        cluster.jsonpath(
            &["pod", name],
            "{.status.containerStatuses[0].state.terminated.message}",
        )
    };
    for name in ["fallback", "fallback-bytes", "written", "file-policy"] {
        cluster.wait_pod_phase(name, "Failed", WAIT);
    }
    // The last 80 lines of the log, each with its newline.
    let want: String = (21..=100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(message("fallback"), want);
    // At most 2048 bytes: the end of the log.
    let all: String = (1..=50).map(|i| format!("{i:099}\n")).collect();
    assert_eq!(message("fallback-bytes"), all[all.len() - 2048..]);
    // What the container wrote, at its own terminationMessagePath, wins over the log.
    assert_eq!(message("written"), "custom message");
    // The default policy (File) does not look at the log.
    assert_eq!(message("file-policy"), "");
    cluster.wait_pod_phase("succeeded", "Succeeded", WAIT);
    assert_eq!(message("succeeded"), "", "no fallback on success");

    let workdir = cluster.pod_report("workdir", WAIT);
    assert_eq!(workdir["pwd"], "/does/not/exist", "{workdir:?}");
    let tty = cluster.pod_report("tty", WAIT);
    assert_eq!(tty["stdin"], "tty", "{tty:?}");
    assert_eq!(tty["stdout"], "tty", "{tty:?}");
    let notty = cluster.pod_report("notty", WAIT);
    assert_eq!(notty["stdin"], "none", "{notty:?}");
}

#[test]
fn allowed_unsafe_sysctls_must_be_namespaced_or_the_node_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (flag, reason) in [
        (
            "kernel.msg*,vm.swappiness",
            r#"invalid --allowed-unsafe-sysctls: the sysctl "vm.swappiness" is not known to be namespaced"#,
        ),
        (
            "kernel.*",
            r#"the sysctls "kernel.*" are not known to be namespaced"#,
        ),
        ("Net.Core", "must have at most 253 characters"),
    ] {
        for verb in [
            vec![
                "server",
                "--https-listen-port",
                "0",
                "--streaming-port",
                "0",
            ],
            vec!["agent", "--server", "https://127.0.0.1:1", "--token", "x"],
        ] {
            let output = std::process::Command::new(skiff_e2e::skiff_bin())
                .args(&verb)
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--allowed-unsafe-sysctls", flag])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run skiff");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{verb:?} {flag} was accepted");
            assert!(stderr.contains(reason), "{verb:?} {flag}: {stderr}");
        }
    }
}

/// A FallbackToLogsOnError message of a container that ended before an agent restart is still
/// reported after it: the restarted agent reads it from the log again.
#[test]
fn fallback_messages_survive_an_agent_restart() {
    let mut cluster = Cluster::start_with_agent(import_test_images);
    // The pod keeps running on `main`; `failing` ended for good (restartPolicy Never).
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "half"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [
          {"name": "main", "image": "busybox", "imagePullPolicy": "Never",
           "command": ["sleep", "3600"]},
          {"name": "failing", "image": "busybox", "imagePullPolicy": "Never",
           "terminationMessagePolicy": "FallbackToLogsOnError",
           "command": ["sh", "-c", "echo oops; exit 2"]}]}}"#,
    );
    let message = |cluster: &Cluster| {
        cluster.jsonpath(
            &["pod", "half"],
            "{.status.containerStatuses[?(@.name==\"failing\")].state.terminated.message}",
        )
    };
    wait_until(WAIT, "the failing container's message", || {
        message(&cluster) == "oops\n"
    });
    cluster.restart();
    // Once a pod made after the restart runs, the restarted agent has synced `half` too.
    cluster.create_from(&pod("after", "exec sleep 3600", none(), none()));
    cluster.wait_pod_phase("after", "Running", WAIT);
    assert_eq!(message(&cluster), "oops\n");
    assert_eq!(
        cluster.jsonpath(&["pod", "half"], "{.status.phase}"),
        "Running"
    );
}
