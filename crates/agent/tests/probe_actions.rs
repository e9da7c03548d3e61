//! The network actions of probes against real servers on loopback, their sockets made through
//! the agent's namespace thread (entering the test's own network namespace: root, as CI):
//! httpGet over HTTP and HTTPS (a self-signed certificate, not verified), the status ranges,
//! headers, a server that never answers, tcpSocket to a closed port, grpc to a plain HTTP/1
//! server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, HTTPHeader};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_agent::probe::action::{grpc_check, http_get, tcp_check, Outcome, PodTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(1);

fn target() -> PodTarget {
    PodTarget {
        netns: Some("/proc/self/ns/net".into()),
        pod_ip: Some("127.0.0.1".into()),
    }
}

/// Serves each connection `reply` after reading its request head, which goes to the channel.
async fn http_server(
    reply: &'static str,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let mut stream: Box<dyn AsyncStream> = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => Box::new(s),
                        Err(_) => return,
                    },
                    None => Box::new(stream),
                };
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };
                let _ = tx.send(head);
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, rx)
}

/// A request's head (up to its blank line), or None when the client went away first.
async fn read_head<S: tokio::io::AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

fn get(port: i32, scheme: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some("/healthz".into()),
        port: IntOrString::Int(port),
        scheme: Some(scheme.into()),
        http_headers: Some(vec![HTTPHeader {
            name: "X-Probe".into(),
            value: "skiff".into(),
        }]),
        ..HTTPGetAction::default()
    }
}

fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["pod.invalid".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("a certificate");
    let chain = vec![cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn http_get_over_http_and_https_with_kubelets_verdicts() {
    let container = Container::default();
    let (ok, mut requests) = http_server("HTTP/1.1 204 No Content\r\n\r\n", None).await;
    let got = http_get(&get(ok.into(), "HTTP"), &container, &target(), TIMEOUT).await;
    assert_eq!(got, Ok(Outcome::Success));
    let head = requests.recv().await.expect("the request");
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("User-Agent: kube-probe/1.35\r\n"), "{head}");
    assert!(head.contains("X-Probe: skiff\r\n"), "{head}");
    assert!(
        head.contains(&format!("Host: 127.0.0.1:{ok}\r\n")),
        "{head}"
    );

    // A redirect to another host is not followed: its 3xx is a success with kubelet's warning
    // (the server closes after its answer, which has no length: the body is what came).
    let (redirect, _r) = http_server(
        "HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/x\r\n\r\nsee there",
        None,
    )
    .await;
    let got = http_get(
        &get(redirect.into(), "HTTP"),
        &container,
        &target(),
        TIMEOUT,
    )
    .await;
    assert_eq!(
        got,
        Ok(Outcome::Warning(
            "Probe terminated redirects, Response body: see there".into()
        )),
        "3xx to another host is a success with a warning"
    );

    let (broken, _b) = http_server("HTTP/1.1 500 Oops\r\n\r\n", None).await;
    let got = http_get(&get(broken.into(), "HTTP"), &container, &target(), TIMEOUT).await;
    assert_eq!(
        got,
        Ok(Outcome::Failure(
            "HTTP probe failed with statuscode: 500".into()
        ))
    );

    let (secure, mut requests) =
        http_server("HTTP/1.1 200 OK\r\n\r\n", Some(self_signed_acceptor())).await;
    let got = http_get(&get(secure.into(), "HTTPS"), &container, &target(), TIMEOUT).await;
    assert_eq!(got, Ok(Outcome::Success), "the certificate is not verified");
    assert!(requests.recv().await.is_some());
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_closed_port_is_refused() {
    // Accepts (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("address").port();
    let started = Instant::now();
    let got = http_get(
        &get(port.into(), "HTTP"),
        &Container::default(),
        &target(),
        TIMEOUT,
    )
    .await;
    let took = started.elapsed();
    match got {
        Ok(Outcome::Failure(m)) => assert!(m.contains("context deadline exceeded"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(took >= TIMEOUT && took < TIMEOUT * 3, "took {took:?}");
    let got = grpc_check(
        &GRPCAction {
            port: port.into(),
            service: None,
        },
        &target(),
        TIMEOUT,
    )
    .await;
    assert_eq!(
        got,
        Ok(Outcome::Failure(
            "timeout: health rpc did not complete within 1s".into()
        ))
    );
    drop(silent);

    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let got = tcp_check(None, port, &target(), TIMEOUT).await;
    assert_eq!(
        got,
        Ok(Outcome::Failure(format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        )))
    );

    // No namespace: the probe cannot run at all.
    let nowhere = PodTarget {
        netns: None,
        pod_ip: Some("127.0.0.1".into()),
    };
    let got = tcp_check(None, port, &nowhere, TIMEOUT).await;
    assert_eq!(
        got,
        Err("the pod has no network namespace on this node".into())
    );
}

/// Serves each connection by its request's path: `/healthz` redirects to `/moved`, `/moved`
/// answers `moved`, `/loop` redirects to itself.
async fn routed_server(moved: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_head(&mut stream).await else {
                    return;
                };

                let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                let reply = match path.as_str() {
                    "/healthz" => format!(
                        "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:{port}/moved\r\n\r\n"
                    ),
                    "/moved" => moved.to_string(),
                    "/loop" => "HTTP/1.1 302 Found\r\nLocation: loop\r\n\r\n".to_string(),
                    _ => "HTTP/1.1 404 Not Found\r\n\r\n".to_string(),
                };
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

/// Same-host redirects are followed, as kubelet's client follows them: the probe's verdict is
/// the last response's, and a loop ends after 10 redirects.
#[tokio::test]
async fn http_get_follows_redirects_on_the_same_host() {
    let container = Container::default();
    let fine = routed_server("HTTP/1.1 200 OK\r\n\r\n").await;
    let got = http_get(&get(fine.into(), "HTTP"), &container, &target(), TIMEOUT).await;
    assert_eq!(got, Ok(Outcome::Success));

    let failing = routed_server("HTTP/1.1 503 Unavailable\r\n\r\n").await;
    let got = http_get(&get(failing.into(), "HTTP"), &container, &target(), TIMEOUT).await;
    assert_eq!(
        got,
        Ok(Outcome::Failure(
            "HTTP probe failed with statuscode: 503".into()
        )),
        "the redirect's target decides"
    );

    let mut looping = get(fine.into(), "HTTP");
    looping.path = Some("/loop".into());
    let got = http_get(&looping, &container, &target(), TIMEOUT).await;
    assert_eq!(
        got,
        Ok(Outcome::Failure(format!(
            "Get \"http://127.0.0.1:{fine}/loop\": stopped after 10 redirects"
        )))
    );
}

/// A host name in the action is resolved on the node (here from /etc/hosts: nothing leaves the
/// machine) and written in the Host header as given.
#[tokio::test]
async fn host_names_are_resolved_by_the_node() {
    let container = Container::default();
    let (port, mut requests) = http_server("HTTP/1.1 200 OK\r\n\r\n", None).await;
    let mut action = get(port.into(), "HTTP");
    action.host = Some("localhost".into());
    let got = http_get(&action, &container, &target(), TIMEOUT).await;
    assert_eq!(got, Ok(Outcome::Success));
    let head = requests.recv().await.expect("the request");
    assert!(
        head.contains(&format!("Host: localhost:{port}\r\n")),
        "{head}"
    );
    let got = tcp_check(Some("localhost"), port, &target(), TIMEOUT).await;
    assert_eq!(got, Ok(Outcome::Success));
}
