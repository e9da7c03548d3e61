//! REST semantics over real HTTPS: metadata, optimistic concurrency, patches, the status and
//! binding subresources, graceful deletion, deletecollection, selectors, namespaces, tables
//! and durability across a restart.

mod common;

use common::{labelled_pod, names, pod, TestServer};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn rv(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {object}"))
        .parse()
        .expect("resourceVersion is a number")
}

fn encode(key: &str, value: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(key, value)
        .finish()
}

#[tokio::test]
async fn create_sets_metadata_and_round_trips_the_rest() {
    let s = TestServer::start().await;
    let mut body = pod("meta");
    body["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
    body["metadata"]["annotations"] = json!({"example.com/note": "hello"});
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    body["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
        "uid": "6f0c2a4e-8c1b-4d59-9a55-0d7f1b2c3d4e", "controller": true,
    }]);
    // Fields a client may not choose are replaced by the server's.
    body["metadata"]["uid"] = json!("client-chosen");
    body["metadata"]["resourceVersion"] = json!("12345");
    let created = s.create_pod("default", &body).await;
    let meta = &created["metadata"];
    let uid = meta["uid"].as_str().expect("uid");
    assert_eq!(uid.len(), 36, "a UUID: {uid}");
    assert_ne!(uid, "client-chosen");
    let ts = meta["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp");
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "RFC 3339 in seconds: {ts}"
    );
    let first = rv(&created);
    assert_ne!(first, 12345);
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["labels"], body["metadata"]["labels"]);
    assert_eq!(meta["annotations"], body["metadata"]["annotations"]);
    assert_eq!(meta["finalizers"], body["metadata"]["finalizers"]);
    assert_eq!(meta["ownerReferences"], body["metadata"]["ownerReferences"]);

    let got = s.get(&format!("{PODS}/meta")).await.expect(200);
    assert_eq!(got["metadata"], created["metadata"]);
    assert_eq!(got["spec"], created["spec"]);

    // resourceVersion grows with every write.
    let second = s.create_pod("default", &pod("meta-2")).await;
    assert!(rv(&second) > first);

    // generateName: the prefix and five characters from Kubernetes' alphabet.
    let mut generated = pod("");
    generated["metadata"] = json!({"generateName": "web-"});
    let created = s.create_pod("default", &generated).await;
    let name = created["metadata"]["name"].as_str().expect("name");
    let suffix = name.strip_prefix("web-").expect("prefix kept");
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    assert_eq!(created["metadata"]["generateName"], "web-");
    s.get(&format!("{PODS}/{name}")).await.expect(200);

    // The same name twice: AlreadyExists, naming the pod.
    let status = s
        .post(PODS, &pod("meta-2"))
        .await
        .expect_status(409, "AlreadyExists");
    assert_eq!(status["message"], "pods \"meta-2\" already exists");
    assert_eq!(status["details"]["name"], "meta-2");
    assert_eq!(status["details"]["kind"], "pods");
}

#[tokio::test]
async fn generation_follows_spec_changes_only() {
    let s = TestServer::start().await;
    let created = s.create_pod("default", &pod("gen")).await;
    assert_eq!(created["metadata"]["generation"], 1);

    let mut changed = created.clone();
    changed["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    let updated = s.put(&format!("{PODS}/gen"), &changed).await.expect(200);
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["spec"]["containers"][0]["image"], "busybox:1.37");
    assert!(rv(&updated) > rv(&created));

    let labelled = s
        .patch(
            &format!("{PODS}/gen"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"new": "label"}}}),
        )
        .await
        .expect(200);
    assert_eq!(labelled["metadata"]["generation"], 2);
    assert_eq!(labelled["metadata"]["labels"]["new"], "label");
    assert!(rv(&labelled) > rv(&updated));
}

#[tokio::test]
async fn updates_use_optimistic_concurrency() {
    let s = TestServer::start().await;
    let path = format!("{PODS}/occ");
    let created = s.create_pod("default", &pod("occ")).await;

    let mut first = created.clone();
    first["metadata"]["labels"] = json!({"round": "1"});
    let updated = s.put(&path, &first).await.expect(200);
    assert!(rv(&updated) > rv(&created));

    // A uid that is not the stored object's: Conflict (the object was replaced meanwhile).
    let mut other = updated.clone();
    other["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000000");
    let status = s.put(&path, &other).await.expect_status(409, "Conflict");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains(
            "Precondition failed: UID in precondition: 00000000-0000-4000-8000-000000000000"
        ),
        "{message}"
    );

    // The same stale resourceVersion again: Conflict, and nothing written.
    let mut stale = created.clone();
    stale["metadata"]["labels"] = json!({"round": "stale"});
    let status = s.put(&path, &stale).await.expect_status(409, "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on pods \"occ\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(status["details"]["name"], "occ");
    assert_eq!(status["details"]["kind"], "pods");
    let now = s.get(&path).await.expect(200);
    assert_eq!(rv(&now), rv(&updated));
    assert_eq!(now["metadata"]["labels"]["round"], "1");

    // Without a resourceVersion the update is unconditional.
    let mut blind = created.clone();
    blind["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    blind["metadata"]["labels"] = json!({"round": "blind"});
    let written = s.put(&path, &blind).await.expect(200);
    assert_eq!(written["metadata"]["labels"]["round"], "blind");

    // A resourceVersion that is not a number is a bad request, not a conflict.
    let mut garbage = written.clone();
    garbage["metadata"]["resourceVersion"] = json!("abc");
    garbage["metadata"]["labels"] = json!({"round": "garbage"});
    let status = s
        .put(&path, &garbage)
        .await
        .expect_status(400, "BadRequest");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("\"abc\""), "{message}");
    assert!(message.contains("resourceVersion"), "{message}");
    assert_eq!(rv(&s.get(&path).await.expect(200)), rv(&written));

    // The same check on a list's resourceVersion parameter.
    let status = s
        .get(&format!("{PODS}?resourceVersion=yesterday"))
        .await
        .expect_status(400, "BadRequest");
    assert!(status["message"]
        .as_str()
        .expect("message")
        .contains("yesterday"));

    // An update of a missing pod.
    let status = s
        .put(&format!("{PODS}/missing"), &pod("missing"))
        .await
        .expect_status(404, "NotFound");
    assert_eq!(status["message"], "pods \"missing\" not found");
}

#[tokio::test]
async fn patches_merge_json_and_strategic() {
    let s = TestServer::start().await;
    let path = format!("{PODS}/patched");
    let mut body = pod("patched");
    body["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
    body["spec"]["containers"] = json!([
        {"name": "a", "image": "busybox:1.36"},
        {"name": "b", "image": "nginx:1.25"},
    ]);
    s.create_pod("default", &body).await;

    // Merge patch: set one label, remove another.
    let merged = s
        .patch(
            &path,
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"app": "api", "tier": null}}}),
        )
        .await
        .expect(200);
    assert_eq!(merged["metadata"]["labels"], json!({"app": "api"}));

    // JSON patch.
    let patched = s
        .patch(
            &path,
            "application/json-patch+json",
            &json!([
                {"op": "test", "path": "/metadata/labels/app", "value": "api"},
                {"op": "add", "path": "/metadata/annotations", "value": {"note": "x"}},
                {"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:1.37"},
            ]),
        )
        .await
        .expect(200);
    assert_eq!(patched["metadata"]["annotations"]["note"], "x");
    assert_eq!(patched["spec"]["containers"][0]["image"], "busybox:1.37");

    // A failing test operation: refused, and nothing changes.
    let resp = s
        .patch(
            &path,
            "application/json-patch+json",
            &json!([
                {"op": "add", "path": "/metadata/labels/extra", "value": "y"},
                {"op": "test", "path": "/metadata/labels/app", "value": "web"},
            ]),
        )
        .await;
    assert!(
        (400..500).contains(&resp.status),
        "a failed test op is a client error: {}",
        resp.text()
    );
    let status = resp.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("/metadata/labels/app"), "{message}");
    let after = s.get(&path).await.expect(200);
    assert_eq!(rv(&after), rv(&patched), "nothing written");
    assert!(after["metadata"]["labels"].get("extra").is_none());

    // Strategic merge: a container is merged by name, the other left alone.
    let strategic = s
        .patch(
            &path,
            "application/strategic-merge-patch+json",
            &json!({"spec": {"containers": [{"name": "b", "image": "nginx:1.27"}]}}),
        )
        .await
        .expect(200);
    let containers = strategic["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["name"], "a");
    assert_eq!(containers[0]["image"], "busybox:1.37");
    assert_eq!(containers[1]["name"], "b");
    assert_eq!(containers[1]["image"], "nginx:1.27");
    assert_eq!(strategic["metadata"]["generation"], 3);

    // A patch of a missing pod.
    let status = s
        .patch(
            &format!("{PODS}/nobody"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await
        .expect_status(404, "NotFound");
    assert_eq!(status["message"], "pods \"nobody\" not found");
    assert_eq!(status["details"]["name"], "nobody");

    // A patch that is not valid JSON.
    let resp = s
        .request(
            "PATCH",
            &path,
            &[("content-type", "application/merge-patch+json")],
            "{not json",
        )
        .await;
    assert!((400..500).contains(&resp.status), "{}", resp.text());
    assert_eq!(resp.json()["kind"], "Status");

    // A patch content type the server does not know.
    s.request(
        "PATCH",
        &path,
        &[("content-type", "text/plain")],
        "labels please",
    )
    .await
    .expect_status(415, "UnsupportedMediaType");
    assert_eq!(rv(&s.get(&path).await.expect(200)), rv(&strategic));
}

#[tokio::test]
async fn status_subresource_is_separate_from_spec() {
    let s = TestServer::start().await;
    let path = format!("{PODS}/st");
    let created = s.create_pod("default", &pod("st")).await;
    assert_eq!(created["status"]["phase"], "Pending");

    // PUT /status: the status changes, the spec does not.
    let mut body = created.clone();
    body["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    body["status"]["phase"] = json!("Running");
    body["status"]["message"] = json!("up");
    let written = s.put(&format!("{path}/status"), &body).await.expect(200);
    assert_eq!(written["status"]["phase"], "Running");
    assert_eq!(written["spec"]["containers"][0]["image"], "busybox:1.36");
    assert_eq!(written["metadata"]["generation"], 1);

    // PATCH /status.
    let patched = s
        .patch(
            &format!("{path}/status"),
            "application/merge-patch+json",
            &json!({"status": {"message": "patched"}, "spec": {"activeDeadlineSeconds": 5}}),
        )
        .await
        .expect(200);
    assert_eq!(patched["status"]["message"], "patched");
    assert_eq!(patched["status"]["phase"], "Running");
    assert!(patched["spec"].get("activeDeadlineSeconds").is_none());

    // GET /status returns the pod.
    let got = s.get(&format!("{path}/status")).await.expect(200);
    assert_eq!(got["status"]["message"], "patched");

    // PUT on the main resource keeps the stored status.
    let mut main = patched.clone();
    main["status"]["phase"] = json!("Failed");
    main["metadata"]["labels"] = json!({"changed": "yes"});
    let written = s.put(&path, &main).await.expect(200);
    assert_eq!(written["status"]["phase"], "Running");
    assert_eq!(written["status"]["message"], "patched");
    assert_eq!(written["metadata"]["labels"]["changed"], "yes");

    // A subresource pods do not have.
    s.get(&format!("{path}/scale"))
        .await
        .expect_status(404, "NotFound");
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("bound")).await;
    let status = s.bind("default", "bound", "node-1").await.expect(201);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");

    let got = s.get(&format!("{PODS}/bound")).await.expect(200);
    assert_eq!(got["spec"]["nodeName"], "node-1");
    let conditions = got["status"]["conditions"].as_array().expect("conditions");
    let scheduled = conditions
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .expect("PodScheduled condition");
    assert_eq!(scheduled["status"], "True");

    let status = s
        .bind("default", "bound", "node-2")
        .await
        .expect_status(409, "Conflict");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("node-1"), "{message}");
    assert_eq!(status["details"]["name"], "bound");
    let again = s.get(&format!("{PODS}/bound")).await.expect(200);
    assert_eq!(again["spec"]["nodeName"], "node-1");
    assert_eq!(rv(&again), rv(&got));

    s.bind("default", "ghost", "node-1")
        .await
        .expect_status(404, "NotFound");

    // A binding without a target is invalid.
    s.create_pod("default", &pod("untargeted")).await;
    let status = s
        .post(
            &format!("{PODS}/untargeted/binding"),
            &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "untargeted"}}),
        )
        .await
        .expect_status(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "target.name");
}

#[tokio::test]
async fn deletion_is_graceful_for_bound_pods() {
    let s = TestServer::start().await;

    // Unbound: removed at once.
    s.create_pod("default", &pod("loose")).await;
    let deleted = s.delete(&format!("{PODS}/loose")).await.expect(200);
    assert_eq!(deleted["metadata"]["name"], "loose");
    s.get(&format!("{PODS}/loose"))
        .await
        .expect_status(404, "NotFound");
    s.delete(&format!("{PODS}/loose"))
        .await
        .expect_status(404, "NotFound");

    // Bound: marked for deletion and left for the node agent.
    s.create_pod("default", &pod("bound")).await;
    s.bind("default", "bound", "node-1").await.expect(201);
    // 200 as in Kubernetes, which keeps 202 for orphanDependents=false only.
    let marked = s.delete(&format!("{PODS}/bound")).await.expect(200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let still = s.get(&format!("{PODS}/bound")).await.expect(200);
    assert_eq!(still["metadata"]["deletionGracePeriodSeconds"], 30);
    // A bound pod being deleted cannot be bound again.
    assert_eq!(still["spec"]["nodeName"], "node-1");

    // gracePeriodSeconds=0 (kubectl delete --grace-period=0 --force) removes it.
    s.delete(&format!("{PODS}/bound?gracePeriodSeconds=0"))
        .await
        .expect(200);
    s.get(&format!("{PODS}/bound"))
        .await
        .expect_status(404, "NotFound");

    // The same through a DeleteOptions body.
    s.create_pod("default", &pod("bound-2")).await;
    s.bind("default", "bound-2", "node-1").await.expect(201);
    s.delete_with(
        &format!("{PODS}/bound-2"),
        &json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}),
    )
    .await
    .expect(200);
    s.get(&format!("{PODS}/bound-2"))
        .await
        .expect_status(404, "NotFound");
}

#[tokio::test]
async fn finalizers_hold_objects_until_removed() {
    let s = TestServer::start().await;
    let path = format!("{PODS}/held");
    let mut body = pod("held");
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    s.create_pod("default", &body).await;

    let marked = s.delete(&path).await.expect(200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let held = s.get(&path).await.expect(200);
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(held["metadata"]["finalizers"], json!(["example.com/hold"]));

    // While a finalizer holds it, the object can still be updated.
    let labelled = s
        .patch(
            &path,
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"still": "here"}}}),
        )
        .await
        .expect(200);
    assert_eq!(labelled["metadata"]["labels"]["still"], "here");
    s.get(&path).await.expect(200);

    // Removing the last finalizer lets the object go.
    s.patch(
        &path,
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    )
    .await
    .expect(200);
    s.get(&path).await.expect_status(404, "NotFound");
}

#[tokio::test]
async fn delete_preconditions_are_checked() {
    let s = TestServer::start().await;
    let path = format!("{PODS}/pre");
    let created = s.create_pod("default", &pod("pre")).await;
    let uid = created["metadata"]["uid"].as_str().expect("uid");

    let status = s
        .delete_with(&path, &json!({"preconditions": {"uid": "not-the-uid"}}))
        .await
        .expect_status(409, "Conflict");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("Precondition failed"), "{message}");
    assert!(
        message.contains("not-the-uid") && message.contains(uid),
        "{message}"
    );
    assert_eq!(status["details"]["name"], "pre");
    s.get(&path).await.expect(200);

    let status = s
        .delete_with(&path, &json!({"preconditions": {"resourceVersion": "1"}}))
        .await
        .expect_status(409, "Conflict");
    assert!(status["message"]
        .as_str()
        .expect("message")
        .contains("ResourceVersion"));
    s.get(&path).await.expect(200);

    s.delete_with(
        &path,
        &json!({"preconditions": {"uid": uid, "resourceVersion": created["metadata"]["resourceVersion"]}}),
    )
    .await
    .expect(200);
    s.get(&path).await.expect_status(404, "NotFound");
}

#[tokio::test]
async fn deletecollection_deletes_only_what_matches() {
    let s = TestServer::start().await;
    s.create_pod("default", &labelled_pod("web-a", json!({"app": "web"})))
        .await;
    s.create_pod("default", &labelled_pod("web-b", json!({"app": "web"})))
        .await;
    s.create_pod("default", &labelled_pod("db", json!({"app": "db"})))
        .await;
    // A matching pod in another namespace stays: the request is namespaced.
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    .await
    .expect(201);
    s.create_pod("other", &labelled_pod("web-c", json!({"app": "web"})))
        .await;

    let deleted = s
        .delete(&format!("{PODS}?labelSelector=app%3Dweb"))
        .await
        .expect(200);
    assert_eq!(deleted["kind"], "PodList");
    assert_eq!(deleted["apiVersion"], "v1");
    let mut gone = names(&deleted);
    gone.sort();
    assert_eq!(gone, ["web-a", "web-b"]);
    assert_eq!(s.list_names(PODS).await, ["db"]);
    assert_eq!(
        s.list_names("/api/v1/namespaces/other/pods").await,
        ["web-c"]
    );

    // An invalid selector deletes nothing.
    s.delete(&format!("{PODS}?labelSelector=app%20in%20(web"))
        .await
        .expect_status(400, "BadRequest");
    assert_eq!(s.list_names(PODS).await, ["db"]);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let s = TestServer::start().await;
    s.create_pod(
        "default",
        &labelled_pod("p1", json!({"app": "web", "tier": "front"})),
    )
    .await;
    s.create_pod(
        "default",
        &labelled_pod("p2", json!({"app": "web", "tier": "back"})),
    )
    .await;
    s.create_pod("default", &labelled_pod("p3", json!({"app": "db"})))
        .await;
    s.create_pod("default", &pod("p4")).await;
    s.bind("default", "p2", "node-1").await.expect(201);
    s.patch(
        &format!("{PODS}/p3/status"),
        "application/merge-patch+json",
        &json!({"status": {"phase": "Running"}}),
    )
    .await
    .expect(200);

    let cases: &[(&str, &[&str])] = &[
        ("labelSelector=app=web", &["p1", "p2"]),
        ("labelSelector=app==web", &["p1", "p2"]),
        ("labelSelector=app!=web", &["p3", "p4"]),
        ("labelSelector=app in (web,db)", &["p1", "p2", "p3"]),
        ("labelSelector=app notin (web)", &["p3", "p4"]),
        ("labelSelector=tier", &["p1", "p2"]),
        ("labelSelector=!tier", &["p3", "p4"]),
        ("labelSelector=app=web,tier!=back", &["p1"]),
        (
            "labelSelector=app in (web),tier notin (front),tier",
            &["p2"],
        ),
        ("labelSelector=", &["p1", "p2", "p3", "p4"]),
        ("fieldSelector=metadata.name=p3", &["p3"]),
        ("fieldSelector=metadata.name!=p3", &["p1", "p2", "p4"]),
        (
            "fieldSelector=metadata.namespace=default",
            &["p1", "p2", "p3", "p4"],
        ),
        ("fieldSelector=metadata.namespace=other", &[]),
        ("fieldSelector=spec.nodeName=node-1", &["p2"]),
        ("fieldSelector=spec.nodeName=", &["p1", "p3", "p4"]),
        ("fieldSelector=status.phase=Running", &["p3"]),
        (
            "fieldSelector=status.phase!=Running,spec.nodeName=",
            &["p1", "p4"],
        ),
    ];
    for (query, expected) in cases {
        let (key, value) = query.split_once('=').expect("key=value");
        let path = format!("{PODS}?{}", encode(key, value));
        assert_eq!(s.list_names(&path).await, *expected, "{query}");
    }

    // Both selectors at once.
    assert_eq!(
        s.list_names(&format!(
            "{PODS}?labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3D"
        ))
        .await,
        ["p1"]
    );
    // Across namespaces, the namespace field selects.
    assert_eq!(
        s.list_names("/api/v1/pods?fieldSelector=metadata.namespace%3Ddefault,metadata.name%3Dp4")
            .await,
        ["p4"]
    );

    // Invalid label selectors: 400 naming the problem.
    for (selector, needle) in [
        ("app in (web", "labelSelector"),
        ("app=web=x", "labelSelector"),
        ("-bad-key-=x", "invalid label key \"-bad-key-\""),
        ("app=bad value!", "labelSelector"),
        ("app in web", "'('"),
    ] {
        let path = format!("{PODS}?{}", encode("labelSelector", selector));
        let resp = s.get(&path).await;
        assert_eq!(resp.status, 400, "{selector}: {}", resp.text());
        let status = resp.expect_status(400, "BadRequest");
        let message = status["message"].as_str().expect("message");
        assert!(message.contains(needle), "{selector}: {message}");
    }
    // An unsupported field: 400 naming the field.
    let status = s
        .get(&format!("{PODS}?fieldSelector=spec.image%3Dnginx"))
        .await
        .expect_status(400, "BadRequest");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("spec.image"), "{message}");
    assert!(message.contains("not supported"), "{message}");
    // A field selector without an operator.
    let status = s
        .get(&format!("{PODS}?fieldSelector=metadata.name"))
        .await
        .expect_status(400, "BadRequest");
    assert!(status["message"]
        .as_str()
        .expect("message")
        .contains("fieldSelector"));
}

#[tokio::test]
async fn namespaces_exist_scope_and_terminate() {
    let s = TestServer::start().await;
    let listed = s.get("/api/v1/namespaces").await.expect(200);
    assert_eq!(listed["kind"], "NamespaceList");
    let all = names(&listed);
    for built_in in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(all.iter().any(|n| n == built_in), "{built_in} in {all:?}");
        let ns = s
            .get(&format!("/api/v1/namespaces/{built_in}"))
            .await
            .expect(200);
        assert_eq!(ns["status"]["phase"], "Active");
    }

    // A pod in a namespace that does not exist.
    let status = s
        .post("/api/v1/namespaces/nowhere/pods", &pod("lost"))
        .await
        .expect_status(404, "NotFound");
    assert_eq!(status["message"], "namespaces \"nowhere\" not found");
    assert_eq!(status["details"]["name"], "nowhere");
    assert_eq!(status["details"]["kind"], "namespaces");

    // A namespace held by a finalizer of ours stays Terminating while its pods go, so creating
    // in it can be observed.
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "doomed", "finalizers": ["example.com/hold"]}}),
    )
    .await
    .expect(201);
    let pods = "/api/v1/namespaces/doomed/pods";
    let first = s.create_pod("doomed", &pod("a")).await;
    s.create_pod("doomed", &pod("b")).await;
    let mut pod_watch = s
        .watch(&format!("{pods}?watch=true&resourceVersion={}", rv(&first)))
        .await;
    assert_eq!(pod_watch.status, 200);

    let ns = s.delete("/api/v1/namespaces/doomed").await.expect(200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());

    let status = s
        .post(pods, &pod("late"))
        .await
        .expect_status(403, "Forbidden");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("being terminated"), "{message}");
    assert_eq!(status["details"]["name"], "late");

    // The namespace controller deletes the pods.
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let (kind, name, _) = pod_watch.next_typed().await;
        if kind == "DELETED" {
            deleted.push(name);
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["a", "b"]);
    assert!(s.list_names(pods).await.is_empty());
    assert_eq!(
        s.get("/api/v1/namespaces/doomed").await.expect(200)["status"]["phase"],
        "Terminating"
    );

    // Our finalizer goes: so does the namespace.
    let patched = s
        .patch(
            "/api/v1/namespaces/doomed",
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await
        .expect(200);
    let mut ns_watch = s
        .watch(&format!(
            "/api/v1/namespaces?watch=true&fieldSelector=metadata.name%3Ddoomed&resourceVersion={}",
            rv(&patched) - 1
        ))
        .await;
    loop {
        let (kind, name, _) = ns_watch.next_typed().await;
        if kind == "DELETED" {
            assert_eq!(name, "doomed");
            break;
        }
    }
    s.get("/api/v1/namespaces/doomed")
        .await
        .expect_status(404, "NotFound");
}

#[tokio::test]
async fn tables_for_lists_and_single_objects() {
    let s = TestServer::start().await;
    s.create_pod("default", &labelled_pod("t1", json!({"app": "web"})))
        .await;
    s.create_pod("default", &pod("t2")).await;
    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

    let resp = s
        .request("GET", PODS, &[("accept", table_accept)], Vec::new())
        .await;
    let table = resp.expect(200);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(table["metadata"]["resourceVersion"].is_string());
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(columns, ["Name", "Ready", "Status", "Restarts", "Age"]);
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["cells"][0], "t1");
    assert_eq!(rows[0]["cells"][1], "0/1");
    assert_eq!(rows[0]["cells"][2], "Pending");
    // Restarts is a string column since Kubernetes 1.22 ("3 (5m ago)").
    assert_eq!(rows[0]["cells"][3], "0");
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(rows[0]["object"]["metadata"]["name"], "t1");
    assert_eq!(rows[0]["object"]["metadata"]["labels"]["app"], "web");
    assert!(rows[0]["object"].get("spec").is_none());

    // One object.
    let table = s
        .request(
            "GET",
            &format!("{PODS}/t2"),
            &[("accept", table_accept)],
            Vec::new(),
        )
        .await
        .expect(200);
    assert_eq!(table["kind"], "Table");
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["cells"][0], "t2");

    // includeObject=Object: the full pod in each row.
    let table = s
        .request(
            "GET",
            &format!("{PODS}?includeObject=Object"),
            &[("accept", table_accept)],
            Vec::new(),
        )
        .await
        .expect(200);
    let object = &table["rows"][1]["object"];
    assert_eq!(object["kind"], "Pod");
    assert_eq!(object["spec"]["containers"][0]["image"], "busybox:1.36");

    // Selectors apply to tables too.
    let table = s
        .request(
            "GET",
            &format!("{PODS}?labelSelector=app%3Dweb"),
            &[("accept", table_accept)],
            Vec::new(),
        )
        .await
        .expect(200);
    assert_eq!(table["rows"].as_array().expect("rows").len(), 1);

    // Without the Table media type: a plain list.
    let list = s
        .request("GET", PODS, &[("accept", "application/json")], Vec::new())
        .await
        .expect(200);
    assert_eq!(list["kind"], "PodList");
}

#[tokio::test]
async fn objects_survive_a_restart() {
    let s = TestServer::start().await;
    s.create_pod("default", &labelled_pod("kept", json!({"app": "web"})))
        .await;
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await
    .expect(201);
    let last = s.create_pod("team", &pod("kept-too")).await;
    let gone = s.create_pod("default", &pod("removed")).await;
    s.delete(&format!("{PODS}/removed")).await.expect(200);
    let before = s.get(&format!("{PODS}/kept")).await.expect(200);
    let listed = s.get("/api/v1/pods").await.expect(200);
    let revision_before = rv(&listed);
    assert!(revision_before > rv(&last) && rv(&gone) > rv(&last));

    let dir = s.stop().await;
    let s = TestServer::start_in(dir).await;

    let after = s.get(&format!("{PODS}/kept")).await.expect(200);
    assert_eq!(after, before);
    s.get("/api/v1/namespaces/team/pods/kept-too")
        .await
        .expect(200);
    s.get(&format!("{PODS}/removed"))
        .await
        .expect_status(404, "NotFound");
    assert_eq!(
        s.get("/api/v1/namespaces/team").await.expect(200)["status"]["phase"],
        "Active"
    );
    // The same admin token still works (the credentials were kept) and revisions only grow.
    let next = s.create_pod("default", &pod("after-restart")).await;
    assert!(
        rv(&next) > revision_before,
        "{} > {revision_before}",
        rv(&next)
    );
}

#[tokio::test]
async fn create_ignores_the_status_a_client_sends() {
    let s = TestServer::start().await;
    // `kubectl get po x -o yaml > x.yaml; kubectl create -f x.yaml` sends the old status back.
    let mut body = pod("exported");
    body["status"] = json!({"phase": "Running", "podIP": "10.0.0.9", "hostIP": "192.168.1.2"});
    let created = s.create_pod("default", &body).await;
    assert_eq!(
        created["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );

    let created = s
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "copied"},
                    "status": {"phase": "Terminating"}}),
        )
        .await
        .expect(201);
    assert_eq!(created["status"], json!({"phase": "Active"}));
    s.create_pod("copied", &pod("inside")).await;
}

#[tokio::test]
async fn built_in_namespaces_cannot_be_deleted() {
    let s = TestServer::start().await;
    for name in ["default", "kube-system", "kube-public"] {
        let status = s
            .delete(&format!("/api/v1/namespaces/{name}"))
            .await
            .expect_status(403, "Forbidden");
        assert_eq!(
            status["message"],
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
        );
        assert_eq!(status["details"]["name"], name);
        assert_eq!(status["details"]["kind"], "namespaces");
        let ns = s
            .get(&format!("/api/v1/namespaces/{name}"))
            .await
            .expect(200);
        assert_eq!(ns["status"]["phase"], "Active");
        assert!(ns["metadata"].get("deletionTimestamp").is_none());
    }
    // Namespaces have no deletecollection in Kubernetes: one request may not empty a cluster.
    s.delete("/api/v1/namespaces")
        .await
        .expect_status(405, "MethodNotAllowed");
    let all = s.list_names("/api/v1/namespaces").await;
    assert_eq!(
        all,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test]
async fn updates_follow_kubernetes_rules() {
    let s = TestServer::start().await;
    let created = s.create_pod("default", &pod("upd")).await;

    // The name in the body must be the one on the URL.
    let mut renamed = created.clone();
    renamed["metadata"]["name"] = json!("other");
    let status = s
        .put(&format!("{PODS}/upd"), &renamed)
        .await
        .expect_status(400, "BadRequest");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("other") && message.contains("upd"),
        "{message}"
    );

    // Pod spec fields other than images (and a few more) are immutable.
    let mut changed = created.clone();
    changed["spec"]["restartPolicy"] = json!("Never");
    let status = s
        .put(&format!("{PODS}/upd"), &changed)
        .await
        .expect_status(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec");
    assert_eq!(
        rv(&s.get(&format!("{PODS}/upd")).await.expect(200)),
        rv(&created)
    );

    // A PUT of a missing lease creates it (leases allow create on update), with 201.
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "holder"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40},
    });
    let path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/holder";
    let created = s.put(path, &lease).await.expect(201);
    assert_eq!(created["spec"]["holderIdentity"], "node-1");
    let mut renewed = created.clone();
    renewed["spec"]["holderIdentity"] = json!("node-2");
    let updated = s.put(path, &renewed).await.expect(200);
    assert_eq!(updated["spec"]["holderIdentity"], "node-2");
}

#[tokio::test]
async fn discovery_lists_the_verbs_served() {
    let s = TestServer::start().await;
    let list = s.get("/api/v1").await.expect(200);
    let verbs = |name: &str| -> Vec<String> {
        let resource = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in discovery"));
        serde_json::from_value(resource["verbs"].clone()).expect("verbs")
    };
    assert!(verbs("pods").contains(&"deletecollection".to_string()));
    assert!(!verbs("namespaces").contains(&"deletecollection".to_string()));
    assert_eq!(verbs("pods/binding"), ["create"]);
    let aggregated = s
        .request(
            "GET",
            "/api",
            &[(
                "accept",
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            )],
            Vec::new(),
        )
        .await
        .expect(200);
    let namespaces = aggregated["items"][0]["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "namespaces")
        .expect("namespaces")
        .clone();
    assert!(!namespaces["verbs"]
        .as_array()
        .expect("verbs")
        .contains(&json!("deletecollection")));
}
