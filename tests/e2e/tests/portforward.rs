//! `kubectl port-forward` and the Python client's `portforward()` against `skiff server` with
//! its node agent: the API server passes the upgrade to the node's streaming server, which
//! connects inside the pod's network namespace (SPDY/3.1 for kubectl, tunnelled in WebSocket
//! or after a plain upgrade; WebSocket channels for the Python client).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use skiff_e2e::{import_test_images, stdout, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

/// A kubia pod `name` (busybox httpd on 8080 answering "You've hit NAME"), Running once this
/// returns.
fn kubia_pod(cluster: &Cluster, name: &str) {
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "web",
            "image": "luksa/kubia", "imagePullPolicy": "Never",
            "ports": [{{"containerPort": 8080}}]}}]}}}}"#
    ));
    wait_until(WAIT, &format!("{name} Running"), || {
        cluster.jsonpath(&["pod", name], "{.status.phase}") == "Running"
    });
}

/// A running `kubectl port-forward`: its stdout lines, its stderr in a file; killed (by its
/// pid) when dropped.
struct PortForward {
    child: Child,
    lines: Receiver<String>,
    stderr: std::path::PathBuf,
}

impl PortForward {
    fn start(cluster: &Cluster, websockets: bool, args: &[&str]) -> PortForward {
        let stderr = cluster.scratch_dir().join(format!(
            "port-forward-{}.err",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let mut command: Command = cluster.kubectl_command();
        command
            .arg("port-forward")
            // Its upgrade request and the protocol it got, in its log.
            .arg("-v=6")
            .args(args)
            // kubectl 1.35 tunnels SPDY in WebSocket unless told not to: then it upgrades to
            // SPDY/3.1 directly.
            .env(
                "KUBECTL_PORT_FORWARD_WEBSOCKETS",
                if websockets { "true" } else { "false" },
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let mut child = command.spawn().expect("kubectl port-forward");
        let out = child.stdout.take().expect("stdout was piped above");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PortForward {
            child,
            lines,
            stderr,
        }
    }

    /// The local port from `Forwarding from 127.0.0.1:PORT -> REMOTE`.
    fn local_port(&mut self) -> u16 {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "kubectl printed no local port; stdout: {seen:?}; stderr: {}",
                    self.stderr_text()
                );
            };
            if let Some(port) = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|p| p.parse().ok())
            {
                return port;
            }
            seen.push(line);
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `wget` of http://127.0.0.1:PORT/ (no proxy, one try).
fn wget(port: u16) -> std::process::Output {
    let mut command = Command::new("wget");
    command
        .args(["--no-proxy", "-q", "-O-", "-T", "20", "-t", "1"])
        .arg(format!("http://127.0.0.1:{port}/"));
    skiff_e2e::run(command, None)
}

/// Threads of process `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn kubectl_port_forward_reaches_the_pod_and_leaves_nothing_behind() {
    let cluster = Cluster::start_with_agent(import_test_images);
    kubia_pod(&cluster, "kubia-pf");
    let server = cluster.server_pid();
    // A first exec warms up the server's connections and caches before counting.
    assert_eq!(
        cluster.kubectl_ok(["exec", "kubia-pf", "--", "hostname"]),
        "kubia-pf\n"
    );
    let fds_before = skiff_e2e::open_fds(server);

    for websockets in [true, false] {
        let mut forward = PortForward::start(&cluster, websockets, &["pod/kubia-pf", ":8080"]);
        let port = forward.local_port();
        // Two connections in a row through one session.
        for _ in 0..2 {
            let got = wget(port);
            assert!(
                got.status.success() && stdout(&got) == "You've hit kubia-pf\n",
                "wget through port-forward (websockets={websockets}): {got:?}\nkubectl: {}",
                forward.stderr_text()
            );
        }
        assert!(forward.running(), "{}", forward.stderr_text());
        // kubectl -v=6 shows which way it went.
        let log = forward.stderr_text();
        let upgraded = if websockets {
            log.contains("negotiated protocol: portforward.k8s.io")
        } else {
            log.contains(r#"verb="POST""#) && log.contains("101 Switching Protocols")
        };
        assert!(upgraded, "websockets={websockets}: {log}");
        forward.stop();
    }

    // A port nothing listens on: kubectl shows the node's error for the connection, then, as
    // kubectl 1.35 does after any forwarding error (client-go closes the session), ends with
    // "lost connection to pod".
    let mut forward = PortForward::start(&cluster, true, &["pod/kubia-pf", ":9999"]);
    let port = forward.local_port();
    let got = wget(port);
    assert!(!got.status.success(), "{got:?}");
    wait_until(WAIT, "kubectl's error about port 9999", || {
        forward
            .stderr_text()
            .contains("error forwarding port 9999 to pod kubia-pf")
    });
    let text = forward.stderr_text();
    assert!(
        text.contains("an error occurred forwarding")
            && text.contains("-> 9999")
            && text.contains("failed to connect to localhost:9999"),
        "{text}"
    );
    wait_until(WAIT, "kubectl ended", || !forward.running());
    assert!(
        forward.stderr_text().contains("lost connection to pod"),
        "{}",
        forward.stderr_text()
    );
    forward.stop();

    // kubectl killed mid-connection: a connection held open through it goes too.
    let mut forward = PortForward::start(&cluster, true, &["pod/kubia-pf", ":8080"]);
    let port = forward.local_port();
    let mut held = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::io::Write::write_all(&mut held, b"GET / HTTP/1.1\r\nHost: x\r\n").expect("write");
    wait_until(WAIT, "kubectl handled the connection", || {
        forward
            .lines
            .try_recv()
            .is_ok_and(|l| l.starts_with("Handling connection"))
    });
    forward.stop();
    drop(held);

    wait_until(WAIT, "the server's sockets closed", || {
        skiff_e2e::open_fds(server) <= fds_before
    });
    assert_eq!(
        threads_named(server, "pf-dial"),
        0,
        "a connecting thread was left"
    );
}

#[test]
fn the_python_clients_portforward_works() {
    let cluster = Cluster::start_with_agent(import_test_images);
    kubia_pod(&cluster, "kubia-py");
    let mut python = skiff_e2e::python_fixture("python_portforward.py");
    python.arg(cluster.kubeconfig()).arg("kubia-py");
    let out = skiff_e2e::run(python, None);
    assert!(
        out.status.success() && stdout(&out).trim() == "OK",
        "the Python client's port-forward failed: {}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}
