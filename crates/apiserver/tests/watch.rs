//! Watches over real HTTPS: ordering from a resourceVersion, initial events, selectors that stop
//! matching, the WatchList protocol with its bookmark, compacted history and timeouts.

mod common;

use std::time::Duration;

use common::{labelled_pod, pod, Next, TestServer, Watch, WAIT};
use serde_json::{json, Value};
use skiff_store::Store;

const PODS: &str = "/api/v1/namespaces/default/pods";

fn rv(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {object}"))
        .parse()
        .expect("resourceVersion is a number")
}

/// How long to listen for events that must not come. Absence cannot be awaited; this bounds
/// the check (an unexpected event normally arrives within milliseconds).
const QUIET: Duration = Duration::from_millis(300);

async fn open(s: &TestServer, path: &str) -> Watch {
    let w = s.watch(path).await;
    assert_eq!(w.status, 200, "watch {path} opened");
    w
}

#[tokio::test]
async fn watch_from_a_resource_version_sees_later_changes_in_order() {
    let s = TestServer::start().await;
    let older = s.create_pod("default", &pod("older")).await;
    let mut w = open(
        &s,
        &format!("{PODS}?watch=true&resourceVersion={}", rv(&older)),
    )
    .await;

    let created = s.create_pod("default", &pod("w")).await;
    s.patch(
        &format!("{PODS}/w"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"step": "two"}}}),
    )
    .await
    .expect(200);
    s.delete(&format!("{PODS}/w")).await.expect(200);

    let mut last = rv(&older);
    for (expected, check_label) in [("ADDED", false), ("MODIFIED", true), ("DELETED", true)] {
        let (kind, name, event) = w.next_typed().await;
        assert_eq!((kind.as_str(), name.as_str()), (expected, "w"), "{event}");
        let object = &event["object"];
        assert_eq!(object["kind"], "Pod");
        assert_eq!(object["metadata"]["uid"], created["metadata"]["uid"]);
        assert!(rv(object) > last, "resourceVersions grow: {event}");
        last = rv(object);
        if check_label {
            assert_eq!(object["metadata"]["labels"]["step"], "two");
        }
    }
    // Nothing about `older` (created at the watch's own resourceVersion) and nothing else.
    w.expect_quiet(QUIET).await;

    // The same through the /watch/ path prefix, from the start of this test's history.
    let mut w = open(
        &s,
        &format!(
            "/api/v1/watch/namespaces/default/pods?resourceVersion={}",
            rv(&older) - 1
        ),
    )
    .await;
    let seen: Vec<(String, String)> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            let (kind, name, _) = w.next_typed().await;
            v.push((kind, name));
        }
        v
    };
    let expected: Vec<(String, String)> = [
        ("ADDED", "older"),
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_existing_objects() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;
    s.create_pod("default", &pod("b")).await;
    // Another namespace's pod is not in a namespaced watch.
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    .await
    .expect(201);
    s.create_pod("other", &pod("elsewhere")).await;

    for query in ["watch=true", "watch=true&resourceVersion=0"] {
        let mut w = open(&s, &format!("{PODS}?{query}")).await;
        let mut initial = Vec::new();
        for _ in 0..2 {
            let (kind, name, _) = w.next_typed().await;
            assert_eq!(kind, "ADDED", "{query}");
            initial.push(name);
        }
        initial.sort();
        assert_eq!(initial, ["a", "b"], "{query}");
        w.expect_quiet(QUIET).await;
    }

    let mut w = open(&s, &format!("{PODS}?watch=true")).await;
    for _ in 0..2 {
        w.next().await;
    }
    s.create_pod("default", &pod("c")).await;
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "c"));

    // A watch across all namespaces sees them all.
    let mut w = open(&s, "/api/v1/pods?watch=true").await;
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(w.next_typed().await.1);
    }
    all.sort();
    assert_eq!(all, ["a", "b", "c", "elsewhere"]);
}

#[tokio::test]
async fn a_label_change_that_stops_matching_is_a_deletion() {
    let s = TestServer::start().await;
    let created = s
        .create_pod("default", &labelled_pod("sel", json!({"app": "web"})))
        .await;
    let other = s
        .create_pod("default", &labelled_pod("other", json!({"app": "db"})))
        .await;
    let mut w = open(
        &s,
        &format!(
            "{PODS}?watch=true&labelSelector=app%3Dweb&resourceVersion={}",
            rv(&created)
        ),
    )
    .await;
    let path = format!("{PODS}/sel");
    let relabel = |app: &'static str| {
        let path = path.clone();
        let s = &s;
        async move {
            s.patch(
                &path,
                "application/merge-patch+json",
                &json!({"metadata": {"labels": {"app": app}}}),
            )
            .await
            .expect(200)
        }
    };
    relabel("api").await;
    let (kind, name, event) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "sel"));
    // The object is the new state, the one that no longer matches.
    assert_eq!(event["object"]["metadata"]["labels"]["app"], "api");

    // Changes while it does not match are not seen; matching again is an addition.
    relabel("still-not").await;
    relabel("web").await;
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "sel"));
    // `other` never matched; a change to it is not seen either.
    s.patch(
        &format!(
            "{PODS}/{}",
            other["metadata"]["name"].as_str().expect("name")
        ),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"touched": "yes"}}}),
    )
    .await
    .expect(200);
    w.expect_quiet(QUIET).await;

    // A field selector on the name watches one pod.
    let mut w = open(
        &s,
        &format!("{PODS}?watch=true&fieldSelector=metadata.name%3Dother"),
    )
    .await;
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "other"));
    w.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn send_initial_events_ends_with_a_bookmark() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;
    let b = s.create_pod("default", &pod("b")).await;

    // What `kubectl delete` and client-go's WatchList send.
    let mut w = open(
        &s,
        &format!(
            "{PODS}?watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        ),
    )
    .await;
    let mut initial = Vec::new();
    for _ in 0..2 {
        let (kind, name, _) = w.next_typed().await;
        assert_eq!(kind, "ADDED");
        initial.push(name);
    }
    initial.sort();
    assert_eq!(initial, ["a", "b"]);
    let bookmark = w.next().await;
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    let object = &bookmark["object"];
    assert_eq!(object["kind"], "Pod");
    assert_eq!(object["apiVersion"], "v1");
    assert_eq!(
        object["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(object) >= rv(&b), "{bookmark}");

    // Then live changes.
    s.delete(&format!("{PODS}/a")).await.expect(200);
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "a"));

    // With a resourceVersion too (NotOlderThan it), still the current state first.
    let mut w = open(
        &s,
        &format!(
            "{PODS}?watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion={}",
            rv(&b)
        ),
    )
    .await;
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "b"));
    assert_eq!(w.next().await["type"], "BOOKMARK");
}

#[tokio::test]
async fn send_initial_events_is_never_silently_ignored() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;
    for query in [
        "watch=true&sendInitialEvents=true",
        "watch=true&sendInitialEvents=true&resourceVersionMatch=Exact&resourceVersion=1",
    ] {
        let resp = s.get(&format!("{PODS}?{query}")).await;
        assert!(
            (400..500).contains(&resp.status),
            "{query}: {} {}",
            resp.status,
            resp.text()
        );
        let status = resp.json();
        assert_eq!(status["kind"], "Status", "{query}");
        let message = status["message"].as_str().expect("message");
        assert!(
            message.contains("resourceVersionMatch"),
            "{query}: {message}"
        );
    }
}

#[tokio::test]
async fn a_watch_from_compacted_history_is_gone() {
    let s = TestServer::start().await;
    let early = s.create_pod("default", &pod("early")).await;
    for i in 0..3 {
        s.patch(
            &format!("{PODS}/early"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"n": i.to_string()}}}),
        )
        .await
        .expect(200);
    }
    let current = s.store.current_revision();
    s.store.compact(current).await.expect("compaction");
    assert_eq!(s.store.compacted_revision(), current);

    // The server answers 200 and then one ERROR event with a 410 Status, as Kubernetes' watch
    // cache does, and ends the stream.
    let mut w = s
        .watch(&format!("{PODS}?watch=true&resourceVersion={}", rv(&early)))
        .await;
    assert_eq!(w.status, 200);
    let event = w.next().await;
    assert_eq!(event["type"], "ERROR", "{event}");
    let status = &event["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("too old resource version") && message.contains(&rv(&early).to_string()),
        "{message}"
    );
    assert!(matches!(w.next_within(WAIT).await, Next::End));

    // A list at an exact compacted revision is 410 too.
    s.get(&format!(
        "{PODS}?resourceVersion={}&resourceVersionMatch=Exact",
        rv(&early)
    ))
    .await
    .expect_status(410, "Expired");

    // From the compacted revision itself, the watch works.
    let mut w = open(&s, &format!("{PODS}?watch=true&resourceVersion={current}")).await;
    s.delete(&format!("{PODS}/early")).await.expect(200);
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "early"));
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;
    let started = std::time::Instant::now();
    let mut w = open(&s, &format!("{PODS}?watch=true&timeoutSeconds=1")).await;
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "a"));
    match w.next_within(WAIT).await {
        Next::End => {}
        other => panic!("the watch should end after its timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(900));

    let status = s
        .get(&format!("{PODS}?watch=true&timeoutSeconds=soon"))
        .await
        .expect_status(400, "BadRequest");
    assert!(status["message"]
        .as_str()
        .expect("message")
        .contains("timeoutSeconds"));
}

#[tokio::test]
async fn table_watches_carry_table_rows() {
    let s = TestServer::start().await;
    s.create_pod("default", &pod("a")).await;
    // What `kubectl get po -w` asks for.
    let mut w = s
        .watch_with(
            &format!("{PODS}?watch=true"),
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
        )
        .await;
    assert_eq!(w.status, 200);
    let event = w.next().await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "Table");
    assert_eq!(event["object"]["rows"][0]["cells"][0], "a");
    assert_eq!(
        event["object"]["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
}

#[tokio::test]
async fn a_node_watch_sees_pods_bound_to_it() {
    let s = TestServer::start().await;
    let created = s.create_pod("default", &pod("p")).await;
    s.create_pod("default", &pod("elsewhere")).await;
    // What a node agent watches: the pods bound to its node, across namespaces.
    let mut w = open(
        &s,
        &format!(
            "/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dnode-1&resourceVersion={}",
            rv(&created)
        ),
    )
    .await;
    s.bind("default", "elsewhere", "node-2").await.expect(201);
    s.bind("default", "p", "node-1").await.expect(201);
    // Binding makes the pod match: for this watcher it is new.
    let (kind, name, event) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("ADDED", "p"), "{event}");
    assert_eq!(event["object"]["spec"]["nodeName"], "node-1");

    // The graceful deletion is a change; the removal is the deletion.
    s.delete(&format!("{PODS}/p")).await.expect(200);
    let (kind, _, event) = w.next_typed().await;
    assert_eq!(kind, "MODIFIED");
    assert!(event["object"]["metadata"]["deletionTimestamp"].is_string());
    s.delete(&format!("{PODS}/p?gracePeriodSeconds=0"))
        .await
        .expect(200);
    let (kind, name, _) = w.next_typed().await;
    assert_eq!((kind.as_str(), name.as_str()), ("DELETED", "p"));
    w.expect_quiet(QUIET).await;
}
