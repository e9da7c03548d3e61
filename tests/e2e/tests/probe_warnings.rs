//! An httpGet probe answered by a redirect to another host: kubelet does not follow it, counts
//! the probe a success and records a `ProbeWarning` event with the redirect's body.

use std::time::Duration;

use skiff_e2e::{busybox_script_pod, import_test_images, wait_until, Cluster};

#[test]
fn a_redirect_to_another_host_is_a_success_with_a_probe_warning() {
    let cluster = Cluster::start_with_agent(import_test_images);
    // busybox nc serves each connection with the script: a 302 to a host that is never asked.
    let script = r#"printf '#!/bin/sh\nprintf "HTTP/1.1 302 Found\\r\\nLocation: http://elsewhere.invalid/\\r\\nContent-Length: 5\\r\\n\\r\\nmoved"\n' > /tmp/answer
chmod +x /tmp/answer
exec nc -ll -p 8080 -e /tmp/answer"#;
    cluster.create_from(&busybox_script_pod(
        "redirected",
        script,
        serde_json::json!({
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        }),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    ));
    wait_until(Duration::from_secs(60), "the pod ready", || {
        cluster.jsonpath(
            &["pod", "redirected"],
            "{.status.containerStatuses[0].ready}",
        ) == "true"
    });
    let warning =
        "ProbeWarning: Readiness probe warning: Probe terminated redirects, Response body: moved";
    wait_until(Duration::from_secs(30), "a ProbeWarning event", || {
        cluster
            .event_messages("redirected")
            .iter()
            .any(|line| line == warning)
    });
    cluster.kubectl_ok(["delete", "pod", "redirected", "--wait=true"]);
}
