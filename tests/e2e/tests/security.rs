//! The security context, run for real by `skiff server`'s node agent with runc: a default pod
//! cannot mount, sees masked and read-only /proc paths, lacks CAP_SYS_ADMIN, sees none of the
//! host's processes and runs under the RuntimeDefault seccomp profile (which refuses a user
//! namespace an Unconfined pod may make); `allowPrivilegeEscalation: false` sets no_new_privs;
//! runAsUser, readOnlyRootFilesystem and fsGroup hold; `privileged: true` lifts exactly the
//! confinement; hostPID and hostIPC give the host's namespaces; and bad security settings leave the container Waiting with Kubernetes' reason
//! and a message a user can act on.
//!
//! Each container reports what it sees on its stdout, read back with `kubectl logs`.

use std::path::Path;
use std::time::Duration;

use skiff_e2e::{import_test_images, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(90);

/// Prints `key=value` lines of what the container can and cannot do, then `done`.
/// (`$$$$` is the shell's `$$`: Kubernetes turns `$$` in a command into `$`.)
const REPORT: &str = r#"report() { echo "$1=$2"; }
if mount -t tmpfs x /tmp 2>/dev/null; then report mount ok; else report mount denied; fi
report kcore $(head -c 16 /proc/kcore 2>/dev/null | wc -c)
report timer_list $(head -c 16 /proc/timer_list 2>/dev/null | wc -c)
report procsys $(awk '$2=="/proc/sys" {split($4, o, ","); print o[1]}' /proc/mounts)
report sys $(awk '$2=="/sys" {split($4, o, ","); print o[1]}' /proc/mounts)
report capeff $(awk '/^CapEff/ {print $2}' /proc/self/status)
report nonewprivs $(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)
report seccomp $(awk '/^Seccomp:/ {print $2}' /proc/self/status)
report processes $(ls /proc | grep -c '^[0-9]')
report shellpid $$$$
if unshare -U true 2>/dev/null; then report userns ok; else report userns denied; fi
if mkdir /tmp/made 2>/dev/null; then report mkdir ok; else report mkdir denied; fi
report uid $(id -u)
report groups "$(id -G)"
if touch /written 2>/dev/null; then report rootfs rw; else report rootfs ro; fi
report devices $(ls /dev | wc -l)
report pidns $(readlink /proc/self/ns/pid)
report ipcns $(readlink /proc/self/ns/ipc)
if [ -d /data ]; then
  touch /data/file
  report data "$(stat -c '%g %a' /data)"
  report datafile "$(stat -c '%g' /data/file)"
fi
echo done"#;

/// A pod `name` of one busybox container running [`REPORT`] once, with `container` and `pod`
/// merged into its container's and its spec's fields.
fn report_pod(name: &str, container: serde_json::Value, pod: serde_json::Value) -> String {
    skiff_e2e::busybox_script_pod(name, REPORT, container, pod)
}

/// Whether the hex capability mask `mask` (as /proc/self/status prints it) holds `bit`.
fn has_capability(mask: &str, bit: u32) -> bool {
    let mask = u64::from_str_radix(mask, 16).unwrap_or_else(|_| panic!("capability mask {mask}"));
    mask & (1 << bit) != 0
}

const CAP_SYS_ADMIN: u32 = 21;

/// A profile that allows everything but mkdir and mkdirat (EPERM), as a Localhost profile.
fn write_localhost_profile(data_dir: &Path) {
    let dir = data_dir.join("seccomp");
    std::fs::create_dir_all(&dir).expect("seccomp dir");
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    });
    std::fs::write(dir.join("no-mkdir.json"), profile.to_string()).expect("profile");
}

#[test]
fn default_pods_are_confined_and_privileged_lifts_exactly_that() {
    let cluster = Cluster::start_with_agent(|dir| {
        import_test_images(dir);
        write_localhost_profile(dir);
    });
    let none = serde_json::json!({});
    cluster.create_from(&report_pod("default", none.clone(), none.clone()));
    cluster.create_from(&report_pod(
        "unconfined",
        none.clone(),
        serde_json::json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
    ));
    cluster.create_from(&report_pod(
        "privileged",
        serde_json::json!({"securityContext": {"privileged": true}}),
        none.clone(),
    ));
    cluster.create_from(&report_pod(
        "restricted",
        serde_json::json!({
            "securityContext": {
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "runAsUser": 1000, "runAsGroup": 1000, "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }),
        serde_json::json!({
            "securityContext": {"fsGroup": 2000, "supplementalGroups": [3000]},
            "volumes": [{"name": "data", "emptyDir": {}}],
        }),
    ));
    cluster.create_from(&report_pod(
        "host",
        none.clone(),
        serde_json::json!({"hostPID": true, "hostIPC": true}),
    ));
    cluster.create_from(&report_pod(
        "localhost",
        serde_json::json!({"securityContext": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": "no-mkdir.json"}}}),
        none.clone(),
    ));

    let default = cluster.pod_report("default", WAIT);
    assert_eq!(default["mount"], "denied", "{default:?}");
    assert_eq!(default["kcore"], "0", "/proc/kcore masked (or absent)");
    assert_eq!(default["timer_list"], "0", "/proc/timer_list masked");
    assert_eq!(default["procsys"], "ro", "/proc/sys read-only");
    assert_eq!(default["sys"], "ro", "/sys read-only");
    assert!(
        !has_capability(&default["capeff"], CAP_SYS_ADMIN),
        "{default:?}"
    );
    assert_eq!(default["nonewprivs"], "0");
    assert_eq!(default["seccomp"], "2", "a seccomp filter by default");
    let processes: u32 = default["processes"].parse().expect("a count");
    assert!(
        processes <= 4,
        "the container sees {processes} processes: the host's are visible"
    );
    assert_eq!(default["userns"], "denied", "RuntimeDefault blocks unshare");
    assert_eq!(default["mkdir"], "ok");
    assert_eq!(default["uid"], "0");
    assert_eq!(default["rootfs"], "rw");

    // The same container without a filter may make a user namespace: the profile, not a
    // missing capability, refused it above.
    let unconfined = cluster.pod_report("unconfined", WAIT);
    assert_eq!(unconfined["seccomp"], "0", "{unconfined:?}");
    assert_eq!(unconfined["userns"], "ok", "{unconfined:?}");
    assert_eq!(unconfined["mount"], "denied", "still no CAP_SYS_ADMIN");

    let privileged = cluster.pod_report("privileged", WAIT);
    assert_eq!(privileged["mount"], "ok", "{privileged:?}");
    assert_eq!(privileged["timer_list"], "16", "nothing masked");
    assert_eq!(privileged["procsys"], "", "no read-only /proc/sys");
    assert_eq!(privileged["sys"], "rw");
    assert!(has_capability(&privileged["capeff"], CAP_SYS_ADMIN));
    assert_eq!(privileged["seccomp"], "0");
    assert_eq!(privileged["userns"], "ok");
    let devices: u32 = privileged["devices"].parse().expect("a count");
    let default_devices: u32 = default["devices"].parse().expect("a count");
    assert!(
        devices > default_devices,
        "the host's devices: {devices} vs {default_devices}"
    );
    // What privileged does not lift: the pod's own PID namespace and uid. (The process
    // count alone races with the pipeline that counts, so the shell's own pid says it.)
    assert_eq!(default["shellpid"], "1", "{default:?}");
    assert_eq!(privileged["shellpid"], "1", "{privileged:?}");
    let processes: u32 = privileged["processes"].parse().expect("a count");
    assert!(processes <= 4, "privileged sees {processes} processes");
    assert_eq!(privileged["uid"], "0");

    let restricted = cluster.pod_report("restricted", WAIT);
    assert_eq!(restricted["nonewprivs"], "1", "{restricted:?}");
    assert_eq!(restricted["uid"], "1000");
    let groups: Vec<&str> = restricted["groups"].split_whitespace().collect();
    for gid in ["1000", "2000", "3000"] {
        assert!(groups.contains(&gid), "{gid} not in {groups:?}");
    }
    assert_eq!(restricted["rootfs"], "ro");
    assert_eq!(restricted["capeff"], "0000000000000000");
    assert_eq!(
        restricted["data"], "2000 2777",
        "fsGroup owns the emptyDir, setgid"
    );
    assert_eq!(restricted["datafile"], "2000", "new files take the fsGroup");

    // hostPID and hostIPC: the host's namespaces (this test's own), and its processes.
    let own = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .expect("own namespace")
            .display()
            .to_string()
    };
    let host = cluster.pod_report("host", WAIT);
    assert_eq!(host["pidns"], own("pid"), "{host:?}");
    assert_eq!(host["ipcns"], own("ipc"));
    let processes: u32 = host["processes"].parse().expect("a count");
    assert!(processes > 4, "only {processes} processes with hostPID");
    assert_ne!(default["pidns"], own("pid"));
    assert_ne!(default["ipcns"], own("ipc"));

    let localhost = cluster.pod_report("localhost", WAIT);
    assert_eq!(localhost["mkdir"], "denied", "{localhost:?}");
    assert_eq!(localhost["userns"], "ok", "only its own profile applies");
}

#[test]
fn bad_security_settings_leave_the_container_waiting_with_kubernetes_reasons() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let none = serde_json::json!({});
    cluster.create_from(&report_pod(
        "nonroot",
        none.clone(),
        serde_json::json!({"securityContext": {"runAsNonRoot": true}}),
    ));
    cluster.create_from(&report_pod(
        "badcap",
        serde_json::json!({"securityContext": {"capabilities": {"add": ["NOT_A_CAP"]}}}),
        none.clone(),
    ));
    cluster.create_from(&report_pod(
        "noprofile",
        serde_json::json!({"securityContext": {
            "seccompProfile": {"type": "Localhost", "localhostProfile": "missing.json"}}}),
        none.clone(),
    ));
    // runAsNonRoot with a uid that is not root runs.
    cluster.create_from(&report_pod(
        "nonroot-ok",
        serde_json::json!({"securityContext": {"runAsUser": 1234}}),
        serde_json::json!({"securityContext": {"runAsNonRoot": true}}),
    ));
    let waiting = |pod: &str, field: &str| {
        cluster.jsonpath(
            &["pod", pod],
            &format!("{{.status.containerStatuses[0].state.waiting.{field}}}"),
        )
    };
    let uid = |pod: &str| cluster.jsonpath(&["pod", pod], "{.metadata.uid}");

    wait_until(WAIT, "nonroot in CreateContainerConfigError", || {
        waiting("nonroot", "reason") == "CreateContainerConfigError"
    });
    assert_eq!(
        waiting("nonroot", "message"),
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot_default({})\", container: main)",
            uid("nonroot")
        )
    );
    wait_until(WAIT, "badcap in CreateContainerError", || {
        waiting("badcap", "reason") == "CreateContainerError"
    });
    let message = waiting("badcap", "message");
    assert!(
        message.contains("unknown capability \"CAP_NOT_A_CAP\""),
        "{message}"
    );
    wait_until(WAIT, "noprofile in CreateContainerError", || {
        waiting("noprofile", "reason") == "CreateContainerError"
    });
    let message = waiting("noprofile", "message");
    assert!(
        message.contains("cannot load seccomp profile") && message.contains("missing.json"),
        "{message}"
    );
    for pod in ["nonroot", "badcap", "noprofile"] {
        assert_eq!(
            cluster.jsonpath(&["pod", pod], "{.status.phase}"),
            "Pending"
        );
    }
    let events = cluster.event_messages("nonroot").join("\n");
    assert!(
        events.contains("Failed: Error: container has runAsNonRoot and image will run as root"),
        "{events}"
    );
    let ok = cluster.pod_report("nonroot-ok", WAIT);
    assert_eq!(ok["uid"], "1234");

    // The API refuses what Kubernetes' validation refuses.
    let refused = cluster.kubectl_stdin(
        ["create", "-f", "-"],
        &report_pod(
            "escalates",
            serde_json::json!({"securityContext": {
                "privileged": true, "allowPrivilegeEscalation": false}}),
            none,
        ),
    );
    assert!(!refused.status.success());
    let stderr = skiff_e2e::stderr(&refused);
    assert!(
        stderr.contains("cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
        "{stderr}"
    );
}

#[test]
fn seccomp_default_false_leaves_pods_without_a_profile_unconfined() {
    let cluster = Cluster::start_with_agent_args(&["--seccomp-default=false"], import_test_images);
    let none = serde_json::json!({});
    cluster.create_from(&report_pod("plain", none.clone(), none.clone()));
    cluster.create_from(&report_pod(
        "asked",
        none.clone(),
        serde_json::json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}),
    ));
    let plain = cluster.pod_report("plain", WAIT);
    assert_eq!(plain["seccomp"], "0", "{plain:?}");
    assert_eq!(plain["userns"], "ok");
    let asked = cluster.pod_report("asked", WAIT);
    assert_eq!(asked["seccomp"], "2", "{asked:?}");
    assert_eq!(asked["userns"], "denied");
}

#[test]
fn kubectl_exec_runs_under_the_containers_seccomp_profile() {
    let cluster = Cluster::start_with_agent(|dir| {
        import_test_images(dir);
        write_localhost_profile(dir);
    });
    let sleeper =
        serde_json::json!({"command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]});
    let with_profile = |profile: serde_json::Value| {
        let mut c = sleeper.clone();
        c["securityContext"] = serde_json::json!({"seccompProfile": profile});
        c
    };
    let none = serde_json::json!({});
    cluster.create_from(&report_pod("default", sleeper.clone(), none.clone()));
    cluster.create_from(&report_pod(
        "unconfined",
        with_profile(serde_json::json!({"type": "Unconfined"})),
        none.clone(),
    ));
    cluster.create_from(&report_pod(
        "localhost",
        with_profile(serde_json::json!({"type": "Localhost", "localhostProfile": "no-mkdir.json"})),
        none.clone(),
    ));
    // hostPID and hostIPC: the exec joins only the namespaces that are not the node's (an exec
    // readiness probe, started by the launcher, and kubectl exec).
    let mut host = sleeper.clone();
    host["readinessProbe"] = serde_json::json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
    cluster.create_from(&report_pod(
        "host",
        host,
        serde_json::json!({"hostPID": true, "hostIPC": true}),
    ));
    for pod in ["default", "unconfined", "localhost"] {
        wait_until(WAIT, &format!("{pod} Running"), || {
            cluster.jsonpath(&["pod", pod], "{.status.phase}") == "Running"
        });
    }
    wait_until(WAIT, "host Ready (its exec probe runs)", || {
        cluster.jsonpath(
            &["pod", "host"],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    let exec = |pod: &str, script: &str| {
        let out = cluster.kubectl(["exec", pod, "--", "sh", "-c", script]);
        skiff_e2e::stdout(&out).trim().to_owned()
    };
    let userns = "if unshare -U true 2>/dev/null; then echo ok; else echo denied; fi";
    assert_eq!(exec("default", userns), "denied");
    assert_eq!(exec("unconfined", userns), "ok");
    let mkdir = "if mkdir /tmp/made 2>/dev/null; then echo ok; else echo denied; fi";
    assert_eq!(exec("localhost", mkdir), "denied");
    assert_eq!(exec("default", mkdir), "ok");
    assert_eq!(
        exec("default", "awk '/^Seccomp:/ {print $2}' /proc/self/status"),
        "2"
    );
    let own = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .expect("own namespace")
            .display()
            .to_string()
    };
    let namespaces = "for n in pid ipc uts net mnt; do readlink /proc/self/ns/$n; done";
    let in_host = exec("host", namespaces);
    let in_host: Vec<&str> = in_host.lines().collect();
    assert_eq!(in_host.len(), 5, "{in_host:?}");
    assert_eq!(in_host[0], own("pid"), "{in_host:?}");
    assert_eq!(in_host[1], own("ipc"), "{in_host:?}");
    for (seen, kind) in in_host[2..].iter().zip(["uts", "net", "mnt"]) {
        assert_ne!(*seen, own(kind), "{kind} in a hostPID/hostIPC pod");
    }
    let in_default = exec("default", namespaces);
    for (seen, kind) in in_default.lines().zip(["pid", "ipc", "uts", "net", "mnt"]) {
        assert_ne!(seen, own(kind), "{kind} in a default pod");
    }
    assert_eq!(
        exec("host", "awk '/^Seccomp:/ {print $2}' /proc/self/status"),
        "2"
    );
}
