//! Pods and checks shared by the pod network tests (built-in bridge and CNI mode): a web pod
//! (kubia on 8080, optionally on a hostPort), a two-container busybox client pod, and what the
//! host or a container sees.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);
const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// kubia answering on 8080 (on `host_port` of the node too, if given).
pub fn web_pod(name: &str, host_port: Option<u32>) -> String {
    let ports = match host_port {
        Some(port) => format!(r#", "ports": [{{"containerPort": 8080, "hostPort": {port}}}]"#),
        None => String::new(),
    };
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"terminationGracePeriodSeconds": 0, "containers": [{{"name": "web",
            "image": "luksa/kubia", "imagePullPolicy": "Never"{ports}}}]}}}}"#
    )
}

/// Two busybox containers that sleep.
pub fn client_pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"terminationGracePeriodSeconds": 0, "containers": [
            {{"name": "a", "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", "{SLEEP}"]}},
            {{"name": "b", "image": "busybox", "imagePullPolicy": "Never", "command": ["sh", "-c", "{SLEEP}"]}}]}}}}"#
    )
}

/// Waits until each of `pods` is Running.
pub fn wait_running(cluster: &Cluster, pods: &[&str]) {
    for pod in pods {
        wait_until(WAIT, &format!("{pod} Running"), || {
            cluster.jsonpath(&["pod", pod], "{.status.phase}") == "Running"
        });
    }
}

pub fn pod_ip(cluster: &Cluster, pod: &str) -> String {
    cluster.jsonpath(&["pod", pod], "{.status.podIP}")
}

/// What `curl` gets from `url` on the host (empty if nothing answers within 5 s).
pub fn fetch(url: &str) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "5", url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The address of eth0 as container `container` of `pod` sees it.
pub fn address_inside(cluster: &Cluster, pod: &str, container: &str) -> String {
    let text = cluster.kubectl_ok([
        "exec", pod, "-c", container, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0",
    ]);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// The names of the files in `dir`.
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
