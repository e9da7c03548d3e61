//! Secrets over real HTTPS: stringData merged into data and never stored, Kubernetes' checks of
//! keys and typed contents (422 naming the field), immutability, tables that never show values,
//! and secrets going with their namespace.

mod common;

use common::TestServer;
use serde_json::{json, Value};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn secret(name: &str, body: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}});
    if let (Some(s), Some(b)) = (s.as_object_mut(), body.as_object()) {
        s.extend(b.clone());
    }
    s
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["field"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn string_data_is_merged_into_data_and_never_stored() {
    let s = TestServer::start().await;
    let created = s
        .post(
            SECRETS,
            &secret(
                "app",
                json!({"data": {"user": "b2xk", "keep": "eA=="}, "stringData": {"user": "alice"}}),
            ),
        )
        .await
        .expect(201);
    assert_eq!(created["data"], json!({"user": "YWxpY2U=", "keep": "eA=="}));
    assert_eq!(created["type"], "Opaque");
    assert!(created.get("stringData").is_none(), "{created}");
    let got = s.get(&format!("{SECRETS}/app")).await.expect(200);
    assert_eq!(got["data"], created["data"]);
    assert!(got.get("stringData").is_none());

    // Updates merge stringData too; a patch reaches data like any field.
    let mut update = got.clone();
    update["stringData"] = json!({"extra": "1"});
    let updated = s.put(&format!("{SECRETS}/app"), &update).await.expect(200);
    assert_eq!(updated["data"]["extra"], "MQ==");
    assert!(updated.get("stringData").is_none());
    let patched = s
        .patch(
            &format!("{SECRETS}/app"),
            "application/merge-patch+json",
            &json!({"data": {"keep": null}}),
        )
        .await
        .expect(200);
    assert_eq!(
        patched["data"],
        json!({"user": "YWxpY2U=", "extra": "MQ=="})
    );

    // kubectl's table: NAME TYPE DATA AGE, no values.
    let table = s
        .request(
            "GET",
            SECRETS,
            &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
            Vec::new(),
        )
        .await
        .expect(200);
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Type", "Data", "Age"]);
    assert_eq!(
        table["rows"][0]["cells"]
            .as_array()
            .map(|c| c[..3].to_vec()),
        Some(vec![json!("app"), json!("Opaque"), json!(2)])
    );
    assert!(!table.to_string().contains("YWxpY2U="));

    // The field selector Kubernetes offers for secrets.
    assert_eq!(
        s.list_names(&format!("{SECRETS}?fieldSelector=type%3DOpaque"))
            .await,
        ["app"]
    );
    assert!(s
        .list_names(&format!(
            "{SECRETS}?fieldSelector=type%3Dkubernetes.io%2Ftls"
        ))
        .await
        .is_empty());

    s.delete(&format!("{SECRETS}/app")).await.expect(200);
    s.get(&format!("{SECRETS}/app"))
        .await
        .expect_status(404, "NotFound");
}

#[tokio::test]
async fn bad_secrets_are_refused_naming_the_field() {
    let s = TestServer::start().await;
    let status = s
        .post(
            SECRETS,
            &secret(
                "bad",
                json!({"stringData": {"no/slash": "x", "..dots": "y"}}),
            ),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(causes(&status), ["data[..dots]", "data[no/slash]"]);

    let status = s
        .post(
            SECRETS,
            &secret(
                "reg",
                json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {"config": "{}"}}),
            ),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(causes(&status), ["data[.dockerconfigjson]"]);
    let status = s
        .post(
            SECRETS,
            &secret(
                "reg",
                json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\": "}}),
            ),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(causes(&status), ["data[.dockerconfigjson]"]);
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("not valid JSON"), "{message}");

    let big = "x".repeat(600 * 1024);
    let status = s
        .post(
            SECRETS,
            &secret("big", json!({"stringData": {"a": big, "b": big}})),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(causes(&status), ["data"]);

    // Values must be base64 in JSON.
    let status = s
        .post(
            SECRETS,
            &secret("b64", json!({"data": {"a": "not base64!"}})),
        )
        .await
        .expect_status(400, "BadRequest");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("data"), "{message}");
}

#[tokio::test]
async fn type_and_immutable_data_cannot_change() {
    let s = TestServer::start().await;
    s.post(
        SECRETS,
        &secret(
            "fixed",
            json!({"immutable": true, "stringData": {"a": "1"}}),
        ),
    )
    .await
    .expect(201);
    let path = format!("{SECRETS}/fixed");
    let status = s
        .patch(
            &path,
            "application/merge-patch+json",
            &json!({"type": "example.com/custom", "stringData": {"a": "2"}}),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(causes(&status), ["type", "data"]);
    let status = s
        .patch(
            &path,
            "application/merge-patch+json",
            &json!({"immutable": false}),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(causes(&status), ["immutable"]);
    // Labels may still change.
    s.patch(
        &path,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn secrets_go_with_their_namespace_and_their_collection() {
    let s = TestServer::start().await;
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await
    .expect(201);
    let team = "/api/v1/namespaces/team/secrets";
    for name in ["a", "b"] {
        s.post(team, &secret(name, json!({}))).await.expect(201);
    }
    s.post(SECRETS, &secret("x", json!({}))).await.expect(201);
    s.post(SECRETS, &secret("y", json!({}))).await.expect(201);
    assert_eq!(s.list_names("/api/v1/secrets").await.len(), 4);

    let mut watch = s.watch(&format!("{team}?watch=true")).await;
    s.delete("/api/v1/namespaces/team").await.expect(200);
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let (kind, name, _) = watch.next_typed().await;
        if kind == "DELETED" {
            deleted.push(name);
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["a", "b"]);

    s.delete(SECRETS).await.expect(200);
    assert!(s.list_names(SECRETS).await.is_empty());
}
