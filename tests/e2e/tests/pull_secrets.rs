//! `imagePullSecrets` end to end: a real registry (Debian's `docker-registry`) with htpasswd
//! authentication on 127.0.0.1 holds the project's busybox test image (pushed with skopeo);
//! `skiff server`'s agent pulls it only with the secret the real kubectl made
//! (`kubectl create secret docker-registry`), fails with an authentication message without it
//! or with a wrong password, warns about a secret that does not exist, and lets any pod use the
//! image once it is on the node (kubelet's default).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::{assert_success, parse_table, run, stdout, wait_until, workspace_root, Cluster};

const WAIT: Duration = Duration::from_secs(60);
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const USER: &str = "tester";
/// bcrypt (cost 4) of `skiff-test-password`, the same test user as the runtime's pull tests.
const PASSWORD: &str = "skiff-test-password";
const BCRYPT: &str = "$2b$04$cGBjeRgpPeHrnnuw5f3Mb.09N3ofMwqHXudQqEX1Hmk151XGWpZfe";

/// A registry with basic authentication, killed by its pid when dropped.
struct Registry {
    addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let mut last = String::new();
        // The free port may be taken between finding it and the registry binding it: retry.
        for _ in 0..5 {
            match Registry::try_start() {
                Ok(registry) => return registry,
                Err(e) => last = e,
            }
        }
        panic!("the registry did not start: {last}");
    }

    fn try_start() -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-e2e-registry-")
            .tempdir()
            .expect("temporary directory");
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{BCRYPT}\n")).expect("htpasswd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  \
                 addr: {addr}\n  secret: skiff-e2e\nauth:\n  htpasswd:\n    realm: skiff-e2e\n    \
                 path: {}\n",
                dir.path().join("storage").display(),
                htpasswd.display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {REGISTRY_BIN} (package docker-registry): {e}"))?;
        let mut registry = Registry {
            addr,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!("the registry exited with {status}"));
            }
            if registry.answers_401() {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                return Err("the registry does not answer".into());
            }
            // Polling interval: the registry is asked again.
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether `GET /v2/` answers 401: up, and asking for credentials.
    fn answers_401(&mut self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "GET /v2/ HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut response = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut response).is_ok()
            && response.split_whitespace().nth(1) == Some("401")
    }

    /// Pushes a `docker save` archive to `<addr>/<dest>` with the test user's credentials.
    fn push(&self, archive: &Path, dest: &str) {
        let mut copy = Command::new("skopeo");
        copy.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg("--dest-creds")
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{}/{dest}", self.addr));
        assert_success(&run(copy, None), "skopeo copy to the test registry");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Only the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, image: &str, pull_secrets: &[&str], policy: &str) -> String {
    let secrets: Vec<serde_json::Value> = pull_secrets
        .iter()
        .map(|s| serde_json::json!({"name": s}))
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "imagePullSecrets": secrets,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": policy,
                            "command": ["sleep", "3600"]}]
        }
    })
    .to_string()
}

/// Waits until the pod's container waits in ErrImagePull or ImagePullBackOff (the first lasts
/// only until the agent looks again) and a `Failed` event says why the pull failed; returns that
/// event's message. On a timeout the test fails with what `kubectl describe` shows of the pod.
fn wait_pull_failure(cluster: &Cluster, name: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let reason = cluster.jsonpath(
            &["pod", name],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        let messages = cluster.jsonpath(
            &[
                "events",
                "--field-selector",
                &format!("involvedObject.name={name},reason=Failed"),
            ],
            "{range .items[*]}{.message}{\"\\n\"}{end}",
        );
        let pulled = messages
            .lines()
            .find(|m| m.starts_with("Failed to pull image"));
        if let (true, Some(message)) = (
            matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff"),
            pulled,
        ) {
            return message.to_string();
        }
        if Instant::now() > deadline {
            let described = stdout(&cluster.kubectl(["describe", "pod", name]));
            panic!("{name}'s pull never failed; last reason {reason:?}:\n{described}");
        }
        // Polling interval: the pod is read again.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_running(cluster: &Cluster, name: &str) {
    wait_until(WAIT, &format!("{name} is Running"), || {
        cluster.jsonpath(&["pod", name], "{.status.phase}") == "Running"
    });
}

#[test]
fn pods_pull_from_a_private_registry_with_their_pull_secrets() {
    let images = tempfile::Builder::new()
        .prefix("skiff-e2e-pull-secrets-")
        .tempdir()
        .expect("temporary directory");
    let mut build = Command::new(workspace_root().join("scripts/build-test-images.sh"));
    build.arg(images.path());
    assert_success(&run(build, None), "scripts/build-test-images.sh");
    let registry = Registry::start();
    registry.push(&images.path().join("busybox.tar"), "private/busybox:1");
    let image = format!("{}/private/busybox:1", registry.addr);
    let cluster = Cluster::start_with_agent(|_| {});
    let resources = cluster.kubectl_ok(["api-resources", "--namespaced=true", "-o", "name"]);
    assert!(resources.lines().any(|l| l == "secrets"), "{resources}");

    // No secret: the registry refuses, and the pod says why.
    cluster.create_from(&pod("anonymous", &image, &[], "IfNotPresent"));
    let message = wait_pull_failure(&cluster, "anonymous");
    assert!(message.contains("requires authentication"), "{message}");

    // A wrong password: refused as such.
    cluster.kubectl_ok([
        "create",
        "secret",
        "docker-registry",
        "wrong",
        &format!("--docker-server={}", registry.addr),
        &format!("--docker-username={USER}"),
        "--docker-password=not-the-password",
    ]);
    cluster.create_from(&pod("wrong-password", &image, &["wrong"], "IfNotPresent"));
    let message = wait_pull_failure(&cluster, "wrong-password");
    assert!(
        message.contains("refused the credentials of \"tester\""),
        "{message}"
    );

    // The right secret, made by the real kubectl: pulled and running.
    cluster.kubectl_ok([
        "create",
        "secret",
        "docker-registry",
        "registry-login",
        &format!("--docker-server={}", registry.addr),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ]);
    let table = parse_table(&cluster.kubectl_ok(["get", "secrets"]));
    assert_eq!(table[0], ["NAME", "TYPE", "DATA", "AGE"]);
    let row = table
        .iter()
        .find(|r| r[0] == "registry-login")
        .expect("the secret is listed");
    assert_eq!(row[1..3], ["kubernetes.io/dockerconfigjson", "1"]);
    cluster.create_from(&pod(
        "with-secret",
        &image,
        &["registry-login"],
        "IfNotPresent",
    ));
    wait_running(&cluster, "with-secret");

    // A secret that does not exist: kubelet's warning, and the pull goes on without it (and
    // fails here, as the registry wants credentials).
    cluster.create_from(&pod(
        "missing-secret",
        &image,
        &["no-such-secret"],
        "Always",
    ));
    wait_until(WAIT, "the FailedToRetrieveImagePullSecret event", || {
        let events = cluster.jsonpath(
            &[
                "events",
                "--field-selector",
                "involvedObject.name=missing-secret,reason=FailedToRetrieveImagePullSecret",
            ],
            "{.items[*].type}|{.items[*].message}",
        );
        events
            == "Warning|Unable to retrieve some image pull secrets (no-such-secret); attempting to pull the image may not succeed."
    });
    let message = wait_pull_failure(&cluster, "missing-secret");
    assert!(message.contains("requires authentication"), "{message}");

    // The image is on the node now: any pod may use it (IfNotPresent), as kubelet allows by
    // default.
    cluster.create_from(&pod("cached", &image, &[], "IfNotPresent"));
    wait_running(&cluster, "cached");

    let deleted = cluster.kubectl(["delete", "secret", "registry-login", "wrong"]);
    assert_success(&deleted, "kubectl delete secret");
    assert!(stdout(&deleted).contains("secret \"registry-login\" deleted"));
    let left = cluster.kubectl_ok(["get", "secrets", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}
