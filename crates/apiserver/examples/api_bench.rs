//! API benchmark: durable creates, gets, a 10,000-pod list and watch delivery latency, over
//! HTTPS against an in-process API server on a SQLite store in a temporary directory.
//!
//! `cargo run --release -p skiff-apiserver --example api_bench [-- PODS CONNECTIONS]`
//! Client and server share the machine, as they would on one node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Client = SendRequest<Full<Bytes>>;

struct Target {
    addr: std::net::SocketAddr,
    token: String,
    tls: tokio_rustls::TlsConnector,
}

async fn connect(t: &Target) -> Client {
    let tcp = TcpStream::connect(t.addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = t.tls.connect(name, tcp).await.expect("tls");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn call(
    c: &mut Client,
    t: &Target,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", t.token))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    c.ready().await.expect("ready");
    let resp = c.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

fn pod(i: usize) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"bench-{i}","labels":{{"app":"bench","n":"{}"}}}},"spec":{{"containers":[{{"name":"main","image":"busybox:1.36","command":["sleep","3600"],"ports":[{{"containerPort":8080}}]}}]}}}}"#,
        i % 10
    )
    .into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = skiff_store::SqliteStore::open(&dir.path().join("db/state.db")).expect("store");
    let config = skiff_apiserver::Config {
        data_dir: dir.path().to_path_buf(),
        bind_address: "127.0.0.1".into(),
        port: 0,
        tls_sans: vec![],
    };
    let server = skiff_apiserver::ApiServer::bind(&config, store)
        .await
        .expect("bind");
    let addr = server.address;
    tokio::spawn(server.serve(std::future::pending()));

    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("ca");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let token = std::fs::read_to_string(dir.path().join("token"))
        .expect("token")
        .trim()
        .to_string();
    let target = Arc::new(Target {
        addr,
        token,
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
    });

    // Creates: `conns` connections, each creating its share of pods one after another.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&t).await;
            let mut i = c;
            while i < pods {
                let (status, body) = call(
                    &mut client,
                    &t,
                    "POST",
                    "/api/v1/namespaces/default/pods",
                    "application/json",
                    pod(i),
                )
                .await;
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                i += conns;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let create_secs = started.elapsed().as_secs_f64();
    println!(
        "creates: {pods} pods in {create_secs:.2} s = {:.0} creates/s ({conns} connections)",
        pods as f64 / create_secs
    );

    // Gets.
    let gets = pods * 2;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&t).await;
            let mut i = c;
            while i < gets {
                let (status, _) = call(
                    &mut client,
                    &t,
                    "GET",
                    &format!("/api/v1/namespaces/default/pods/bench-{}", i % pods),
                    "",
                    vec![],
                )
                .await;
                assert_eq!(status, 200);
                i += conns;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let get_secs = started.elapsed().as_secs_f64();
    println!(
        "gets: {gets} in {get_secs:.2} s = {:.0} gets/s",
        gets as f64 / get_secs
    );

    // Lists of every pod (JSON, as `kubectl get po -o json` asks).
    let mut client = connect(&target).await;
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let (status, body) = call(
            &mut client,
            &target,
            "GET",
            "/api/v1/namespaces/default/pods",
            "",
            vec![],
        )
        .await;
        times.push(started.elapsed());
        assert_eq!(status, 200);
        assert!(body.len() > pods * 100);
    }
    times.sort();
    println!(
        "list of {pods} pods: median {:.1} ms, max {:.1} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );

    // Watch delivery: time from sending a patch to its MODIFIED event arriving on a watch.
    let (_, list) = call(
        &mut client,
        &target,
        "GET",
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dbench-0",
        "",
        vec![],
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&list).expect("json");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut watcher = connect(&target).await;
    let req = Request::builder()
        .uri(format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dbench-0"))
        .header("host", "localhost")
        .header("authorization", format!("Bearer {}", target.token))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = watcher.send_request(req).await.expect("watch");
    let mut body = resp.into_body();
    let mut latencies = Vec::new();
    for n in 0..200 {
        let patch = format!(r#"{{"metadata":{{"labels":{{"round":"r{n}"}}}}}}"#).into_bytes();
        let started = Instant::now();
        let (status, _) = call(
            &mut client,
            &target,
            "PATCH",
            "/api/v1/namespaces/default/pods/bench-0",
            "application/merge-patch+json",
            patch,
        )
        .await;
        assert_eq!(status, 200);
        let mut seen = String::new();
        while !seen.contains(&format!("\"r{n}\"")) {
            let frame = body.frame().await.expect("stream open").expect("frame");
            if let Ok(data) = frame.into_data() {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "watch delivery (patch sent -> event received): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );

    // Fan-out: 1,000 open watches (each on its own connection), one change, time until every
    // watcher has it. The memory figure is the whole process (client connections included).
    let watchers = 1000;
    let rss_before = rss_kib();
    let (_, list) = call(
        &mut client,
        &target,
        "GET",
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dbench-1",
        "",
        vec![],
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&list).expect("json");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut bodies = Vec::new();
    for _ in 0..watchers {
        let mut w = connect(&target).await;
        let req = Request::builder()
            .uri(format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dbench-1"))
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", target.token))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = w.send_request(req).await.expect("watch");
        bodies.push((w, resp.into_body()));
    }
    let rss_open = rss_kib();
    let started = Instant::now();
    let (status, _) = call(
        &mut client,
        &target,
        "PATCH",
        "/api/v1/namespaces/default/pods/bench-1",
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"fanout":"yes"}}}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let mut waits = Vec::new();
    for (w, mut body) in bodies {
        waits.push(tokio::spawn(async move {
            let _keep = w;
            let mut seen = String::new();
            while !seen.contains("fanout") {
                let frame = body.frame().await.expect("open").expect("frame");
                if let Ok(data) = frame.into_data() {
                    seen.push_str(&String::from_utf8_lossy(&data));
                }
            }
        }));
    }
    for w in waits {
        w.await.expect("watcher");
    }
    println!(
        "fan-out: {watchers} open watches all received one change in {:.1} ms; process RSS {} MiB -> {} MiB with them open (client included)",
        started.elapsed().as_secs_f64() * 1e3,
        rss_before / 1024,
        rss_open / 1024
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
