//! Joining nodes over real HTTPS: the CA served at /cacerts matches the join token's hash, the
//! join token only obtains node credentials, a node name is claimed once, and a node may write
//! only its own objects.

mod common;

use common::{Resp, TestServer};
use serde_json::{json, Value};
use skiff_api::join_token::{node_bearer_token, JoinToken};

const PASSWORD_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const PASSWORD_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn join_token(server: &TestServer) -> JoinToken {
    let text = std::fs::read_to_string(server.dir.path().join("node-token")).expect("node-token");
    JoinToken::parse(&text).expect("a K10 token")
}

async fn as_user(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Resp {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if method == "PATCH" {
        headers.push(("content-type", "application/merge-patch+json"));
    } else if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    server.request(method, path, &headers, body).await
}

async fn bootstrap(server: &TestServer, token: &str, node: &str, password: &str) -> Resp {
    as_user(
        server,
        token,
        "POST",
        "/skiff/v1/node-credentials",
        Some(&json!({"nodeName": node, "password": password})),
    )
    .await
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

#[tokio::test]
async fn the_served_ca_matches_the_join_token() {
    let server = TestServer::start().await;
    // No credentials needed for the CA.
    let resp = server
        .request("GET", "/cacerts", &[("authorization", "")], Vec::new())
        .await;
    assert_eq!(resp.status, 200);
    let served = resp.body.to_vec();
    let ca_file = std::fs::read(server.dir.path().join("tls/ca.crt")).expect("ca.crt");
    assert_eq!(served, ca_file);
    assert!(join_token(&server).matches_ca(&served));
    assert!(!join_token(&server).matches_ca(b"-----BEGIN CERTIFICATE-----\nx\n"));
    // Stable across restarts.
    let before = join_token(&server).to_string();
    let dir = server.stop().await;
    let server = TestServer::start_in(dir).await;
    assert_eq!(join_token(&server).to_string(), before);
}

#[tokio::test]
async fn the_join_token_only_obtains_node_credentials() {
    let server = TestServer::start().await;
    let join = join_token(&server);
    for token in [join.credential.clone(), join.to_string()] {
        let status = as_user(&server, &token, "GET", "/api/v1/pods", None)
            .await
            .expect_status(403, "Forbidden");
        assert_eq!(
            status["message"],
            "pods is forbidden: User \"system:bootstrap:skiff-join\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
        );
        as_user(&server, &token, "GET", "/api", None)
            .await
            .expect_status(403, "Forbidden");
    }
    as_user(&server, "nope", "GET", "/api/v1/pods", None)
        .await
        .expect_status(401, "Unauthorized");
    bootstrap(&server, "nope", "n1", PASSWORD_A)
        .await
        .expect_status(401, "Unauthorized");
    let answer = bootstrap(&server, &join.credential, "n1", PASSWORD_A)
        .await
        .expect(200);
    assert_eq!(answer["user"], "system:node:n1");
    // The node's own token now works, for what a node may do.
    let token = node_bearer_token("n1", PASSWORD_A);
    as_user(&server, &token, "GET", "/api/v1/pods", None)
        .await
        .expect(200);
    as_user(&server, &token, "GET", "/api", None)
        .await
        .expect(200);
    // A node cannot bootstrap others.
    bootstrap(&server, &token, "n2", PASSWORD_B)
        .await
        .expect_status(403, "Forbidden");
}

#[tokio::test]
async fn a_claimed_name_is_refused_until_its_node_is_deleted() {
    let server = TestServer::start().await;
    let join = join_token(&server).credential;
    bootstrap(&server, &join, "n1", PASSWORD_A)
        .await
        .expect(200);
    // The same node restarting: the same password is accepted again.
    bootstrap(&server, &join, "n1", PASSWORD_A)
        .await
        .expect(200);
    let status = bootstrap(&server, &join, "n1", PASSWORD_B)
        .await
        .expect_status(409, "Conflict");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("node \"n1\" is already registered"),
        "{message}"
    );
    assert!(message.contains("kubectl delete node n1"), "{message}");
    // The admin's token may bootstrap too (older agents passed it), under the same rule.
    bootstrap(&server, &server.token, "n1", PASSWORD_B)
        .await
        .expect_status(409, "Conflict");

    // The node registers with its credentials; deleting it frees the name.
    let token_a = node_bearer_token("n1", PASSWORD_A);
    as_user(
        &server,
        &token_a,
        "POST",
        "/api/v1/nodes",
        Some(&node("n1")),
    )
    .await
    .expect(201);
    server.delete("/api/v1/nodes/n1").await.expect(200);
    as_user(&server, &token_a, "GET", "/api/v1/nodes", None)
        .await
        .expect_status(401, "Unauthorized");
    bootstrap(&server, &join, "n1", PASSWORD_B)
        .await
        .expect(200);
    let token_b = node_bearer_token("n1", PASSWORD_B);
    as_user(&server, &token_b, "GET", "/api/v1/nodes", None)
        .await
        .expect(200);

    // The record is a Secret: deleting it frees the name too, at once.
    server
        .delete("/api/v1/namespaces/kube-system/secrets/n1.node-password.skiff")
        .await
        .expect(200);
    as_user(&server, &token_b, "GET", "/api/v1/nodes", None)
        .await
        .expect_status(401, "Unauthorized");
    bootstrap(&server, &join, "n1", PASSWORD_A)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_node_writes_only_its_own_objects() {
    let server = TestServer::start().await;
    let join = join_token(&server).credential;
    bootstrap(&server, &join, "a", PASSWORD_A).await.expect(200);
    bootstrap(&server, &join, "b", PASSWORD_B).await.expect(200);
    let a = node_bearer_token("a", PASSWORD_A);
    let b = node_bearer_token("b", PASSWORD_B);
    as_user(&server, &a, "POST", "/api/v1/nodes", Some(&node("a")))
        .await
        .expect(201);
    // Creating another node's object is refused, as is writing it once it exists.
    as_user(&server, &a, "POST", "/api/v1/nodes", Some(&node("b")))
        .await
        .expect_status(403, "Forbidden");
    as_user(&server, &b, "POST", "/api/v1/nodes", Some(&node("b")))
        .await
        .expect(201);
    let patch = json!({"metadata": {"labels": {"x": "y"}}});
    let status = as_user(&server, &a, "PATCH", "/api/v1/nodes/b", Some(&patch))
        .await
        .expect_status(403, "Forbidden");
    assert_eq!(
        status["message"],
        "nodes \"b\" is forbidden: User \"system:node:a\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope: node \"a\" cannot modify node \"b\""
    );
    assert_eq!(status["details"]["name"], "b");
    assert_eq!(status["details"]["kind"], "nodes");
    as_user(&server, &a, "PATCH", "/api/v1/nodes/b/status", Some(&patch))
        .await
        .expect_status(403, "Forbidden");
    as_user(&server, &a, "PATCH", "/api/v1/nodes/a", Some(&patch))
        .await
        .expect(200);
    as_user(&server, &a, "DELETE", "/api/v1/nodes/a", None)
        .await
        .expect_status(403, "Forbidden");

    // Leases: its own, in kube-node-lease.
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name, "namespace": "kube-node-lease"},
               "spec": {"holderIdentity": name}})
    };
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    as_user(&server, &a, "POST", leases, Some(&lease("a")))
        .await
        .expect(201);
    as_user(&server, &a, "POST", leases, Some(&lease("b")))
        .await
        .expect_status(403, "Forbidden");

    // Pods: status and deletion of the pods bound to it only; never creation.
    let pod = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };
    as_user(
        &server,
        &a,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&pod("p")),
    )
    .await
    .expect_status(403, "Forbidden");
    for name in ["on-a", "on-b"] {
        server.create_pod("default", &pod(name)).await;
    }
    server.bind("default", "on-a", "a").await.expect(201);
    server.bind("default", "on-b", "b").await.expect(201);
    let status_patch = json!({"status": {"phase": "Running"}});
    as_user(
        &server,
        &a,
        "PATCH",
        "/api/v1/namespaces/default/pods/on-a/status",
        Some(&status_patch),
    )
    .await
    .expect(200);
    let status = as_user(
        &server,
        &a,
        "PATCH",
        "/api/v1/namespaces/default/pods/on-b/status",
        Some(&status_patch),
    )
    .await
    .expect_status(403, "Forbidden");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("pod \"on-b\" is not bound to node \"a\"")),
        "{status}"
    );
    as_user(
        &server,
        &a,
        "DELETE",
        "/api/v1/namespaces/default/pods/on-b",
        None,
    )
    .await
    .expect_status(403, "Forbidden");
    as_user(
        &server,
        &a,
        "DELETE",
        "/api/v1/namespaces/default/pods/on-a",
        None,
    )
    .await
    .expect(200);
    // A pod already gone answers 404, as the agent expects when it confirms a deletion twice.
    as_user(
        &server,
        &a,
        "DELETE",
        "/api/v1/namespaces/default/pods/never-was",
        None,
    )
    .await
    .expect_status(404, "NotFound");
    // Events: yes; bindings: no.
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "on-a", "namespace": "default"},
        "reason": "Started", "message": "m", "type": "Normal"});
    as_user(
        &server,
        &a,
        "POST",
        "/api/v1/namespaces/default/events",
        Some(&event),
    )
    .await
    .expect(201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "on-b"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "a"}});
    as_user(
        &server,
        &a,
        "POST",
        "/api/v1/namespaces/default/pods/on-b/binding",
        Some(&binding),
    )
    .await
    .expect_status(403, "Forbidden");
    // The admin stays all-powerful.
    server.delete("/api/v1/nodes/b").await.expect(200);
}

#[tokio::test]
async fn a_node_reads_only_the_secrets_of_its_pods() {
    let server = TestServer::start().await;
    let join = join_token(&server).credential;
    bootstrap(&server, &join, "a", PASSWORD_A).await.expect(200);
    let a = node_bearer_token("a", PASSWORD_A);
    let secrets = "/api/v1/namespaces/default/secrets";
    for name in ["pull", "other", "elsewhere"] {
        server
            .post(
                secrets,
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                        "stringData": {"k": "v"}}),
            )
            .await
            .expect(201);
    }
    let pod = |name: &str, secret: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"imagePullSecrets": [{"name": secret}],
                        "containers": [{"name": "c", "image": "busybox"}]}})
    };
    server.create_pod("default", &pod("on-a", "pull")).await;
    server
        .create_pod("default", &pod("on-b", "elsewhere"))
        .await;
    server.bind("default", "on-a", "a").await.expect(201);
    server.bind("default", "on-b", "b").await.expect(201);

    let got = as_user(&server, &a, "GET", &format!("{secrets}/pull"), None)
        .await
        .expect(200);
    assert_eq!(got["data"]["k"], "dg==");
    for name in ["other", "elsewhere", "missing"] {
        let status = as_user(&server, &a, "GET", &format!("{secrets}/{name}"), None)
            .await
            .expect_status(403, "Forbidden");
        assert_eq!(
            status["message"],
            format!("secrets \"{name}\" is forbidden: User \"system:node:a\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'a' and this object")
        );
    }
    as_user(&server, &a, "GET", secrets, None)
        .await
        .expect_status(403, "Forbidden");
    // The node's own credential record is a Secret the admin sees (never the node).
    let record = server
        .get("/api/v1/namespaces/kube-system/secrets/a.node-password.skiff")
        .await
        .expect(200);
    assert_eq!(record["type"], "skiff.io/node-password");
    assert_eq!(record["immutable"], true);
    as_user(
        &server,
        &a,
        "GET",
        "/api/v1/namespaces/kube-system/secrets/a.node-password.skiff",
        None,
    )
    .await
    .expect_status(403, "Forbidden");
    as_user(&server, &a, "GET", "/api/v1/secrets?watch=true", None)
        .await
        .expect_status(403, "Forbidden");
}
