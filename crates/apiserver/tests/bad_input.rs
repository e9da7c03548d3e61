//! Bad input over real HTTPS: each mistake gets a 4xx Status a user can act on, never a 500,
//! and nothing is written.

mod common;

use common::{pod, Resp, TestServer};
use serde_json::{json, Value};
use skiff_store::Store;

const PODS: &str = "/api/v1/namespaces/default/pods";

fn message(status: &Value) -> &str {
    status["message"].as_str().expect("a Status has a message")
}

async fn post_raw(
    s: &TestServer,
    path: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> Resp {
    s.request("POST", path, &[("content-type", content_type)], body)
        .await
}

/// The `kubectl create namespace NAME` protobuf body (see protobuf.rs): the magic, TypeMeta
/// (apiVersion, kind), the raw Namespace (metadata with a name), and empty encoding fields.
fn protobuf_namespace(kind: &str, name: &str) -> Vec<u8> {
    fn field(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![
            (n << 3) | 2,
            u8::try_from(bytes.len()).expect("short field"),
        ];
        out.extend_from_slice(bytes);
        out
    }
    let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
    let meta = field(1, name.as_bytes());
    let object = [field(1, &meta), field(2, b""), field(3, b"")].concat();
    [
        b"k8s\0".to_vec(),
        field(1, &type_meta),
        field(2, &object),
        field(3, b""),
        field(4, b""),
    ]
    .concat()
}

#[tokio::test]
async fn refused_bodies_write_nothing() {
    let s = TestServer::start().await;
    let before = s.store.current_revision();

    // Malformed JSON.
    let status = post_raw(
        &s,
        PODS,
        "application/json",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"#,
    )
    .await
    .expect_status(400, "BadRequest");
    assert!(message(&status).contains("not valid JSON"), "{status}");

    // Malformed YAML: the message gives the line.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\n  labels: {app: web\nspec:\n  containers: []\n";
    let status = post_raw(&s, PODS, "application/yaml", yaml)
        .await
        .expect_status(400, "BadRequest");
    let text = message(&status);
    assert!(text.contains("not valid YAML"), "{text}");
    assert!(text.contains("line "), "the line is named: {text}");

    // A body that is not an object.
    let status = post_raw(&s, PODS, "application/json", "[1, 2]")
        .await
        .expect_status(400, "BadRequest");
    assert!(message(&status).contains("object"), "{status}");

    // Wrong apiVersion and wrong kind.
    let mut wrong = pod("wrong");
    wrong["apiVersion"] = json!("apps/v1");
    let status = s.post(PODS, &wrong).await.expect_status(400, "BadRequest");
    assert!(
        message(&status).contains("apps/v1") && message(&status).contains("\"apiVersion: v1\""),
        "{status}"
    );
    let mut wrong = pod("wrong");
    wrong["kind"] = json!("Service");
    let status = s.post(PODS, &wrong).await.expect_status(400, "BadRequest");
    assert!(
        message(&status).contains("Service") && message(&status).contains("Pod"),
        "{status}"
    );

    // A field of the wrong type, with its path.
    let mut wrong = pod("typed");
    wrong["spec"]["containers"][0]["ports"] = json!([{"containerPort": "eighty"}]);
    let status = s.post(PODS, &wrong).await.expect_status(400, "BadRequest");
    assert!(
        message(&status).contains("spec.containers[0].ports[0].containerPort"),
        "{status}"
    );

    // A body over 3 MiB.
    let mut huge = pod("huge");
    huge["metadata"]["annotations"] = json!({"big": "x".repeat(3 * 1024 * 1024 + 1)});
    let resp = s.post(PODS, &huge).await;
    let status = resp.expect_status(413, "RequestEntityTooLarge");
    assert!(message(&status).contains("limit is 3145728"), "{status}");

    // A name over 253 characters.
    let long = "a".repeat(254);
    let status = s
        .post(PODS, &pod(&long))
        .await
        .expect_status(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    assert!(message(&status).contains("253"), "{status}");
    // A name that is not a DNS subdomain.
    let status = s
        .post(PODS, &pod("Not_A_Name"))
        .await
        .expect_status(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(status["details"]["kind"], "Pod");
    // No image: the path of the missing field.
    let mut wrong = pod("imageless");
    wrong["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    let status = s.post(PODS, &wrong).await.expect_status(422, "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );

    // An unknown field with fieldValidation=Strict: the path, and the field meant.
    let mut unknown = pod("strict");
    unknown["spec"]["containers"][0]["imagePullPolice"] = json!("Always");
    let status = s
        .post(&format!("{PODS}?fieldValidation=Strict"), &unknown)
        .await
        .expect_status(400, "BadRequest");
    let text = message(&status);
    assert!(
        text.contains("spec.containers[0].imagePullPolice"),
        "the full path: {text}"
    );
    assert!(text.contains("imagePullPolicy"), "the suggestion: {text}");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.containers[0].imagePullPolice"
    );
    // A duplicate field in YAML under Strict.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dup\n  name: dup2\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n";
    let status = post_raw(
        &s,
        &format!("{PODS}?fieldValidation=Strict"),
        "application/yaml",
        yaml,
    )
    .await
    .expect_status(400, "BadRequest");
    assert!(message(&status).contains("metadata.name"), "{status}");
    // An unknown fieldValidation value.
    s.post(&format!("{PODS}?fieldValidation=Loud"), &pod("loud"))
        .await
        .expect_status(400, "BadRequest");

    // The seed's sample descriptor: both mistakes named, with their lines.
    let seed = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: seed\n  label:\n    version: 1.0.0]\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n";
    let status = post_raw(
        &s,
        &format!("{PODS}?fieldValidation=Strict"),
        "application/yaml",
        seed,
    )
    .await
    .expect_status(400, "BadRequest");
    let text = message(&status);
    assert!(
        text.contains("metadata.label") && text.contains("labels"),
        "{text}"
    );
    assert!(text.contains("1.0.0]"), "{text}");
    assert!(text.contains("line 5"), "{text}");

    // The namespace in the body differs from the URL's.
    let mut elsewhere = pod("elsewhere");
    elsewhere["metadata"]["namespace"] = json!("kube-system");
    let status = s
        .post(PODS, &elsewhere)
        .await
        .expect_status(400, "BadRequest");
    assert!(
        message(&status).contains("kube-system") && message(&status).contains("default"),
        "{status}"
    );

    // A protobuf pod is not served.
    let status = post_raw(
        &s,
        PODS,
        "application/vnd.kubernetes.protobuf",
        protobuf_namespace("Pod", "pb"),
    )
    .await
    .expect_status(415, "UnsupportedMediaType");
    assert!(message(&status).contains("protobuf"), "{status}");
    // Nor is a body type the server does not know.
    post_raw(&s, PODS, "text/plain", "a pod please")
        .await
        .expect_status(415, "UnsupportedMediaType");
    // A protobuf body that is not a Namespace, or not protobuf at all, sent for namespaces.
    post_raw(
        &s,
        "/api/v1/namespaces",
        "application/vnd.kubernetes.protobuf",
        protobuf_namespace("Pod", "pb"),
    )
    .await
    .expect_status(400, "BadRequest");
    post_raw(
        &s,
        "/api/v1/namespaces",
        "application/vnd.kubernetes.protobuf",
        b"k8s\0\x0a\xff".to_vec(),
    )
    .await
    .expect_status(400, "BadRequest");

    // Bad query parameters.
    s.post(&format!("{PODS}?dryRun=Some"), &pod("dry"))
        .await
        .expect_status(400, "BadRequest");
    s.get(&format!("{PODS}?watch=maybe"))
        .await
        .expect_status(400, "BadRequest");

    // A DeleteOptions body that is not JSON, and a grace period that is not a number.
    s.create_pod("default", &pod("victim")).await;
    let after_create = s.store.current_revision();
    s.request(
        "DELETE",
        &format!("{PODS}/victim"),
        &[("content-type", "application/json")],
        "{oops",
    )
    .await
    .expect_status(400, "BadRequest");
    s.delete(&format!("{PODS}/victim?gracePeriodSeconds=soon"))
        .await
        .expect_status(400, "BadRequest");
    // A bad update of an existing pod.
    s.request(
        "PUT",
        &format!("{PODS}/victim"),
        &[("content-type", "application/json")],
        "{\"kind\":",
    )
    .await
    .expect_status(400, "BadRequest");
    assert_eq!(s.store.current_revision(), after_create, "nothing written");
    assert_eq!(after_create, before + 1);

    // dryRun=All validates and answers, but writes nothing.
    let dry = s
        .post(&format!("{PODS}?dryRun=All"), &pod("dry"))
        .await
        .expect(201);
    assert_eq!(dry["metadata"]["name"], "dry");
    assert_eq!(s.store.current_revision(), after_create);
    s.get(&format!("{PODS}/dry"))
        .await
        .expect_status(404, "NotFound");
}

#[tokio::test]
async fn field_validation_warn_and_ignore_accept_unknown_fields() {
    let s = TestServer::start().await;
    let mut unknown = pod("warned");
    unknown["spec"]["containers"][0]["imagePullPolice"] = json!("Always");
    unknown["spec"]["unknownThing"] = json!(true);

    let resp = s
        .post(&format!("{PODS}?fieldValidation=Warn"), &unknown)
        .await;
    let created = resp.expect(201);
    assert!(created["spec"].get("unknownThing").is_none());
    assert!(created["spec"]["containers"][0]
        .get("imagePullPolice")
        .is_none());
    let warnings: Vec<&str> = resp
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ASCII warning"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.starts_with("299 - \"")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.containers[0].imagePullPolice")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("spec.unknownThing")),
        "{warnings:?}"
    );

    // Warn is the default without the parameter.
    unknown["metadata"]["name"] = json!("defaulted");
    let resp = s.post(PODS, &unknown).await;
    resp.expect(201);
    assert_eq!(resp.headers.get_all("warning").iter().count(), 2);

    unknown["metadata"]["name"] = json!("ignored");
    let resp = s
        .post(&format!("{PODS}?fieldValidation=Ignore"), &unknown)
        .await;
    let created = resp.expect(201);
    assert!(created["spec"].get("unknownThing").is_none());
    assert!(resp.headers.get("warning").is_none());
}

#[tokio::test]
async fn negotiation_authentication_and_routing() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;

    // Protobuf only: not acceptable. Protobuf preferred with JSON allowed: JSON.
    let status = s
        .request(
            "GET",
            PODS,
            &[("accept", "application/vnd.kubernetes.protobuf")],
            Vec::new(),
        )
        .await
        .expect_status(406, "NotAcceptable");
    assert!(message(&status).contains("application/json"), "{status}");
    let list = s
        .request(
            "GET",
            PODS,
            &[(
                "accept",
                "application/vnd.kubernetes.protobuf, application/json",
            )],
            Vec::new(),
        )
        .await
        .expect(200);
    assert_eq!(list["kind"], "PodList");

    // No credentials (an empty value makes the client send no Authorization header), a wrong
    // token, and a scheme the server does not take.
    for auth in ["", "Bearer not-the-token", "Basic YWRtaW46YWRtaW4="] {
        let status = s
            .request("GET", PODS, &[("authorization", auth)], Vec::new())
            .await
            .expect_status(401, "Unauthorized");
        assert_eq!(status["message"], "Unauthorized", "{auth:?}");
    }
    // Unauthenticated writes are refused before anything is read.
    s.request(
        "POST",
        PODS,
        &[
            ("authorization", "Bearer nope"),
            ("content-type", "application/json"),
        ],
        pod("sneaky").to_string(),
    )
    .await
    .expect_status(401, "Unauthorized");
    s.get(&format!("{PODS}/sneaky"))
        .await
        .expect_status(404, "NotFound");
    // /version and health are open, as in Kubernetes.
    let version = s
        .request("GET", "/version", &[("authorization", "")], Vec::new())
        .await
        .expect(200);
    assert!(version["gitVersion"].is_string());

    // Paths the server does not serve.
    for path in [
        "/nothing/here",
        "/api/v2",
        "/api/v1/widgets",
        "/api/v1/namespaces/default/widgets",
        "/apis/nope.example.com/v1",
        "/api/v1/pods/a",
        "/api/v1/namespaces/default/pods/a/status/extra",
    ] {
        let status = s.get(path).await.expect_status(404, "NotFound");
        assert_eq!(
            status["message"], "the server could not find the requested resource",
            "{path}"
        );
    }

    // Methods a path does not take.
    for (method, path) in [
        ("PUT", PODS.to_string()),
        ("PATCH", PODS.to_string()),
        ("POST", format!("{PODS}/a")),
        ("POST", "/api".to_string()),
        ("DELETE", "/api/v1".to_string()),
        ("GET", format!("{PODS}/a/binding")),
    ] {
        let resp = s
            .request(method, &path, &[("content-type", "application/json")], "{}")
            .await;
        assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text());
        resp.expect_status(405, "MethodNotAllowed");
    }
}

#[tokio::test]
async fn protobuf_namespace_create_is_accepted() {
    let s = TestServer::start().await;
    let resp = post_raw(
        &s,
        "/api/v1/namespaces",
        "application/vnd.kubernetes.protobuf",
        protobuf_namespace("Namespace", "from-kubectl"),
    )
    .await;
    let created = resp.expect(201);
    assert_eq!(created["kind"], "Namespace");
    assert_eq!(created["metadata"]["name"], "from-kubectl");
    assert_eq!(created["status"]["phase"], "Active");
    s.get("/api/v1/namespaces/from-kubectl").await.expect(200);
    s.create_pod("from-kubectl", &pod("inside")).await;

    // The same name again: AlreadyExists.
    post_raw(
        &s,
        "/api/v1/namespaces",
        "application/vnd.kubernetes.protobuf",
        protobuf_namespace("Namespace", "from-kubectl"),
    )
    .await
    .expect_status(409, "AlreadyExists");
}

#[tokio::test]
async fn all_namespace_paths_are_read_only() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;
    let before = s.store.current_revision();
    s.post("/api/v1/pods", &pod("b"))
        .await
        .expect_status(405, "MethodNotAllowed");
    s.delete("/api/v1/pods")
        .await
        .expect_status(405, "MethodNotAllowed");
    s.delete("/api/v1/events")
        .await
        .expect_status(405, "MethodNotAllowed");
    assert_eq!(s.store.current_revision(), before, "nothing written");
    assert_eq!(s.list_names("/api/v1/pods").await, ["a"]);
    let list = s.get("/api/v1/pods?watch=false").await.expect(200);
    assert_eq!(list["kind"], "PodList");
}
