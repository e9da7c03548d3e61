//! The behaviour every [`Store`] backend must show (etcd v3 semantics), as scenarios that any
//! backend's tests run.
//!
//! Each scenario is an async fn taking the store and panicking on the first broken rule. They
//! assume nobody else writes to the store while they run (they check that revisions grow by
//! exactly one), and keys live under a prefix unique to the run, so one store may serve several
//! scenarios in turn. [`store_conformance_tests!`](crate::store_conformance_tests) generates one
//! test per scenario, each on a fresh store.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::{Error, Event, EventType, KeyValue, Revision, Store, WatchStream};

/// How long a scenario waits for an event that must come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a scenario waits to be sure an event does not come.
const QUIET: Duration = Duration::from_millis(200);

/// Generates one `#[tokio::test]` per scenario of [`crate::conformance`]. `$make` names an
/// async fn returning `(Arc<dyn Store>, G)`: a fresh store, and a guard (a temporary folder, a
/// server) kept alive until the test ends. The calling crate needs `tokio` with `macros` and
/// `rt-multi-thread`; invoke it inside its own `mod` so the test names do not clash.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@each $make;
            create_and_get,
            update_compare_and_swap,
            delete_compare_and_swap,
            revisions_grow_by_one,
            list_latest,
            list_at_old_revision,
            future_revision,
            watch_from_old_revision,
            watch_live,
            watch_prefix_filtering,
            delete_event_carries_last_value,
            compaction,
            compaction_of_everything,
            watch_while_writing,
            concurrent_writers
        );
    };
    (@each $make:path; $($name:ident),*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

/// A key prefix no earlier run used, ending in `/`.
fn prefix(store: &dyn Store, scenario: &str) -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!(
        "/conformance/{scenario}/{}-{run}/",
        store.current_revision()
    )
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: val(value),
        create_revision,
        mod_revision,
    }
}

fn ok<T>(result: crate::Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

fn fails<T: Debug>(result: crate::Result<T>, what: &str) -> Error {
    match result {
        Ok(v) => panic!("{what}: succeeded with {v:?}, expected an error"),
        Err(e) => e,
    }
}

/// The next event of `stream`; panics on an error, the end of the stream or a timeout.
async fn next_event(stream: &mut WatchStream, what: &str) -> Arc<Event> {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("{what}: watch failed: {e}"),
        Ok(None) => panic!("{what}: watch ended"),
        Err(_) => panic!("{what}: no event within {EVENT_TIMEOUT:?}"),
    }
}

async fn assert_quiet(stream: &mut WatchStream, what: &str) {
    if let Ok(item) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("{what}: expected no event, got {item:?}");
    }
}

fn put(kv: KeyValue, prev: Option<KeyValue>) -> Event {
    Event {
        kind: EventType::Put,
        kv,
        prev,
    }
}

fn deletion(kv: KeyValue, prev: KeyValue) -> Event {
    Event {
        kind: EventType::Delete,
        kv,
        prev: Some(prev),
    }
}

async fn expect_events(stream: &mut WatchStream, expected: &[Event], what: &str) {
    for (i, want) in expected.iter().enumerate() {
        let got = next_event(stream, &format!("{what}, event {i}")).await;
        assert_eq!(*got, *want, "{what}: event {i}");
    }
}

async fn list_keys(store: &dyn Store, prefix: &str, revision: Option<Revision>) -> Vec<KeyValue> {
    ok(
        store.list(prefix, revision).await,
        &format!("list {prefix} at {revision:?}"),
    )
    .items
}

/// Create returns the new key-value at the next revision, get returns it, a second create fails.
pub async fn create_and_get(store: Arc<dyn Store>) {
    let p = prefix(&*store, "create");
    let key = format!("{p}a");
    let before = store.current_revision();
    let created = ok(store.create(&key, val("one")).await, "create");
    assert_eq!(created, kv(&key, "one", before + 1, before + 1));
    assert_eq!(store.current_revision(), before + 1);
    assert_eq!(ok(store.get(&key).await, "get"), Some(created.clone()));

    let err = fails(store.create(&key, val("two")).await, "second create");
    assert!(
        matches!(&err, Error::AlreadyExists(k) if *k == key),
        "second create: {err:?}"
    );
    assert_eq!(
        store.current_revision(),
        before + 1,
        "a failed create takes no revision"
    );
    assert_eq!(
        ok(store.get(&key).await, "get after failed create"),
        Some(created)
    );

    assert_eq!(
        ok(store.get(&format!("{p}missing")).await, "get missing"),
        None
    );
    let empty_key = format!("{p}empty");
    let empty = ok(
        store.create(&empty_key, Bytes::new()).await,
        "create empty value",
    );
    assert_eq!(empty.mod_revision, before + 2);
    assert_eq!(
        ok(store.get(&empty_key).await, "get empty value"),
        Some(kv(&empty_key, "", before + 2, before + 2))
    );
}

/// Update replaces the value at a new revision, keeps create_revision, and checks `expected`.
pub async fn update_compare_and_swap(store: Arc<dyn Store>) {
    let p = prefix(&*store, "update");
    let key = format!("{p}a");
    let v1 = ok(store.create(&key, val("v1")).await, "create");
    let v2 = ok(
        store.update(&key, val("v2"), None).await,
        "unconditional update",
    );
    assert_eq!(v2, kv(&key, "v2", v1.create_revision, v1.mod_revision + 1));

    let err = fails(
        store
            .update(&key, val("stale"), Some(v1.mod_revision))
            .await,
        "stale update",
    );
    match err {
        Error::Conflict {
            key: k,
            expected,
            current,
        } => {
            assert_eq!(
                (k.as_str(), expected, current),
                (key.as_str(), v1.mod_revision, v2.mod_revision)
            );
        }
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        store.current_revision(),
        v2.mod_revision,
        "a failed update takes no revision"
    );
    assert_eq!(
        ok(store.get(&key).await, "get after conflict"),
        Some(v2.clone())
    );

    let v3 = ok(
        store.update(&key, val("v3"), Some(v2.mod_revision)).await,
        "update at the right revision",
    );
    assert_eq!(v3, kv(&key, "v3", v1.create_revision, v2.mod_revision + 1));
    assert_eq!(ok(store.get(&key).await, "get"), Some(v3));

    let missing = format!("{p}missing");
    for expected in [None, Some(v1.mod_revision)] {
        let err = fails(
            store.update(&missing, val("x"), expected).await,
            "update of a missing key",
        );
        assert!(
            matches!(&err, Error::NotFound(k) if *k == missing),
            "update missing: {err:?}"
        );
    }
    assert_eq!(ok(store.get(&missing).await, "get missing"), None);
}

/// Delete checks `expected`, returns the last value at the deletion's revision, and a new create
/// of the same key starts a new life (new create_revision).
pub async fn delete_compare_and_swap(store: Arc<dyn Store>) {
    let p = prefix(&*store, "delete");
    let key = format!("{p}a");
    let v1 = ok(store.create(&key, val("v1")).await, "create");
    let v2 = ok(store.update(&key, val("v2"), None).await, "update");

    let err = fails(
        store.delete(&key, Some(v1.mod_revision)).await,
        "stale delete",
    );
    assert!(
        matches!(&err, Error::Conflict { expected, current, .. } if *expected == v1.mod_revision && *current == v2.mod_revision),
        "stale delete: {err:?}"
    );
    assert_eq!(
        ok(store.get(&key).await, "get after conflict"),
        Some(v2.clone())
    );

    let gone = ok(store.delete(&key, Some(v2.mod_revision)).await, "delete");
    assert_eq!(
        gone,
        kv(&key, "v2", v1.create_revision, v2.mod_revision + 1)
    );
    assert_eq!(
        store.current_revision(),
        gone.mod_revision,
        "a delete is a revision of its own"
    );
    assert_eq!(ok(store.get(&key).await, "get after delete"), None);

    let err = fails(store.delete(&key, None).await, "second delete");
    assert!(
        matches!(&err, Error::NotFound(k) if *k == key),
        "second delete: {err:?}"
    );
    let err = fails(
        store.update(&key, val("x"), None).await,
        "update after delete",
    );
    assert!(
        matches!(err, Error::NotFound(_)),
        "update after delete: {err:?}"
    );

    let again = ok(store.create(&key, val("v3")).await, "create after delete");
    assert_eq!(
        again,
        kv(&key, "v3", gone.mod_revision + 1, gone.mod_revision + 1)
    );

    let plain = ok(store.delete(&key, None).await, "unconditional delete");
    assert_eq!(plain.mod_revision, again.mod_revision + 1);
    assert_eq!(plain.value, val("v3"));
}

/// Every successful write takes exactly the next revision; a failed one takes none.
pub async fn revisions_grow_by_one(store: Arc<dyn Store>) {
    let p = prefix(&*store, "revisions");
    let mut expected = store.current_revision();
    for i in 0..5 {
        let key = format!("{p}{i}");
        expected += 1;
        assert_eq!(
            ok(store.create(&key, val("c")).await, "create").mod_revision,
            expected
        );
        assert_eq!(store.current_revision(), expected);
        let _ = fails(store.create(&key, val("c")).await, "duplicate create");
        let _ = fails(
            store.update(&key, val("u"), Some(expected - 1)).await,
            "stale update",
        );
        assert_eq!(
            store.current_revision(),
            expected,
            "failed writes take no revision"
        );
        expected += 1;
        assert_eq!(
            ok(store.update(&key, val("u"), None).await, "update").mod_revision,
            expected
        );
        if i % 2 == 0 {
            expected += 1;
            assert_eq!(
                ok(store.delete(&key, None).await, "delete").mod_revision,
                expected
            );
        }
        assert_eq!(store.current_revision(), expected);
    }
    let _ = fails(
        store.delete(&format!("{p}missing"), None).await,
        "delete missing",
    );
    assert_eq!(store.current_revision(), expected);
}

/// A latest list is sorted, holds exactly the keys under the prefix, and names the current
/// revision.
pub async fn list_latest(store: Arc<dyn Store>) {
    let base = prefix(&*store, "list");
    let p = format!("{base}items/");
    let mut made = Vec::new();
    for key in ["b", "a", "c/d", "c", "a/x"] {
        made.push(ok(
            store.create(&format!("{p}{key}"), val(key)).await,
            "create",
        ));
    }
    // Keys sharing the prefix's text but not its folder must not show up.
    ok(
        store.create(&format!("{base}items0"), val("x")).await,
        "create sibling",
    );
    ok(
        store.create(&format!("{base}item"), val("x")).await,
        "create sibling",
    );
    made.sort_by(|a, b| a.key.cmp(&b.key));

    let list = ok(store.list(&p, None).await, "list");
    assert_eq!(list.items, made);
    assert_eq!(list.revision, store.current_revision());
    let zero = ok(store.list(&p, Some(0)).await, "list at revision 0");
    assert_eq!(zero.items, made, "revision 0 means the latest");
    assert_eq!(zero.revision, list.revision);

    let nested: Vec<_> = list_keys(&*store, &format!("{p}c/"), None)
        .await
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(nested, [format!("{p}c/d")]);
    let none = ok(store.list(&format!("{p}zzz/"), None).await, "empty list");
    assert!(none.items.is_empty());
    assert_eq!(none.revision, store.current_revision());

    let everything = list_keys(&*store, "", None).await;
    assert!(everything.len() >= made.len() + 2);
    assert!(
        everything.windows(2).all(|w| w[0].key < w[1].key),
        "a list is sorted by key"
    );
}

/// A list at an older revision shows the state as of that revision.
pub async fn list_at_old_revision(store: Arc<dyn Store>) {
    let p = prefix(&*store, "list-old");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let r0 = store.current_revision();
    ok(store.create(&a, val("a1")).await, "create a");
    ok(store.create(&b, val("b1")).await, "create b");
    ok(store.update(&a, val("a2"), None).await, "update a");
    ok(store.delete(&b, None).await, "delete b");
    ok(store.create(&c, val("c1")).await, "create c");
    let (r1, r2, r3, r4, r5) = (r0 + 1, r0 + 2, r0 + 3, r0 + 4, r0 + 5);
    assert_eq!(store.current_revision(), r5);

    let cases = [
        (r0, vec![]),
        (r1, vec![kv(&a, "a1", r1, r1)]),
        (r2, vec![kv(&a, "a1", r1, r1), kv(&b, "b1", r2, r2)]),
        (r3, vec![kv(&a, "a2", r1, r3), kv(&b, "b1", r2, r2)]),
        (r4, vec![kv(&a, "a2", r1, r3)]),
        (r5, vec![kv(&a, "a2", r1, r3), kv(&c, "c1", r5, r5)]),
    ];
    for (revision, want) in &cases {
        let revision = *revision;
        let list = ok(
            store.list(&p, Some(revision)).await,
            &format!("list at {revision}"),
        );
        assert_eq!(list.items, *want, "list at {revision}");
        assert_eq!(
            list.revision, revision,
            "list at {revision} names its revision"
        );
    }
    assert_eq!(list_keys(&*store, &p, None).await, cases[5].1);
    // Old lists must not leak keys of other prefixes.
    assert_eq!(
        list_keys(&*store, &format!("{p}a"), Some(r2)).await,
        vec![kv(&a, "a1", r1, r1)]
    );
}

/// A revision newer than the current one is refused with FutureRevision.
pub async fn future_revision(store: Arc<dyn Store>) {
    let p = prefix(&*store, "future");
    ok(store.create(&format!("{p}a"), val("a")).await, "create");
    let current = store.current_revision();
    for requested in [current + 1, current + 1000] {
        let err = fails(store.list(&p, Some(requested)).await, "list in the future");
        assert!(
            matches!(err, Error::FutureRevision { requested: r, current: c } if r == requested && c == current),
            "list at {requested}: {err:?}"
        );
    }
    let err = fails(store.compact(current + 1).await, "compact in the future");
    assert!(
        matches!(err, Error::FutureRevision { .. }),
        "compact in the future: {err:?}"
    );
    assert_eq!(store.current_revision(), current);
    assert_eq!(
        ok(store.list(&p, Some(current)).await, "list at current")
            .items
            .len(),
        1
    );
}

/// A watch from an old revision delivers every later change in order, then live changes.
pub async fn watch_from_old_revision(store: Arc<dyn Store>) {
    let p = prefix(&*store, "watch-old");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let r0 = store.current_revision();
    let a1 = ok(store.create(&a, val("a1")).await, "create a");
    let a2 = ok(store.update(&a, val("a2"), None).await, "update a");
    let b1 = ok(store.create(&b, val("b1")).await, "create b");
    let a_gone = ok(store.delete(&a, None).await, "delete a");

    let mut watch = ok(store.watch(&p, r0).await, "watch from r0");
    let history = [
        put(a1.clone(), None),
        put(a2.clone(), Some(a1)),
        put(b1.clone(), None),
        deletion(a_gone.clone(), a2),
    ];
    expect_events(&mut watch, &history, "history from r0").await;

    let c1 = ok(store.create(&c, val("c1")).await, "create c");
    expect_events(&mut watch, &[put(c1.clone(), None)], "live after history").await;
    assert_quiet(&mut watch, "after the live event").await;

    // From the middle of the history: only what came after.
    let mut middle = ok(
        store.watch(&p, b1.mod_revision - 1).await,
        "watch from the middle",
    );
    expect_events(&mut middle, &history[2..], "history from the middle").await;
    expect_events(
        &mut middle,
        &[put(c1, None)],
        "history from the middle, newest",
    )
    .await;
    assert_quiet(&mut middle, "after the history").await;
}

/// A watch from the current revision sees nothing old, then every new change; several
/// watchers each see all of them.
pub async fn watch_live(store: Arc<dyn Store>) {
    let p = prefix(&*store, "watch-live");
    let key = format!("{p}a");
    ok(
        store.create(&format!("{p}old"), val("old")).await,
        "create before the watch",
    );
    let now = store.current_revision();
    let mut first = ok(store.watch(&p, now).await, "first watch");
    let mut second = ok(store.watch(&p, now).await, "second watch");
    assert_quiet(&mut first, "nothing new yet").await;

    let v1 = ok(store.create(&key, val("v1")).await, "create");
    let v2 = ok(
        store.update(&key, val("v2"), Some(v1.mod_revision)).await,
        "update",
    );
    let gone = ok(store.delete(&key, Some(v2.mod_revision)).await, "delete");
    let expected = [
        put(v1.clone(), None),
        put(v2.clone(), Some(v1)),
        deletion(gone, v2),
    ];
    expect_events(&mut first, &expected, "first watcher").await;
    expect_events(&mut second, &expected, "second watcher").await;
    assert_quiet(&mut second, "after the delete").await;

    // Dropping one watcher leaves the other working.
    drop(first);
    let v3 = ok(store.create(&key, val("v3")).await, "create again");
    expect_events(
        &mut second,
        &[put(v3, None)],
        "after the other watcher left",
    )
    .await;
}

/// A watch sees only the keys under its prefix, from history and live.
pub async fn watch_prefix_filtering(store: Arc<dyn Store>) {
    let p = prefix(&*store, "watch-prefix");
    let inside = format!("{p}in/");
    let r0 = store.current_revision();
    let mut narrow = ok(store.watch(&inside, r0).await, "narrow watch");
    let mut wide = ok(store.watch(&p, r0).await, "wide watch");

    let mut all = Vec::new();
    for key in ["out/x", "in/y", "in0", "in", "in/z/deep", "inx/y"] {
        all.push(ok(
            store.create(&format!("{p}{key}"), val(key)).await,
            "create",
        ));
    }
    let ends = ok(
        store.create(&format!("{inside}end"), val("end")).await,
        "create end",
    );
    all.push(ends.clone());
    let wanted: Vec<Event> = all
        .iter()
        .filter(|kv| kv.key.starts_with(&inside))
        .map(|kv| put(kv.clone(), None))
        .collect();
    assert_eq!(wanted.len(), 3);
    expect_events(&mut narrow, &wanted, "narrow watch, live").await;
    assert_quiet(&mut narrow, "narrow watch after its keys").await;
    let everything: Vec<Event> = all.iter().map(|kv| put(kv.clone(), None)).collect();
    expect_events(&mut wide, &everything, "wide watch").await;

    let mut from_history = ok(store.watch(&inside, r0).await, "narrow watch from history");
    expect_events(&mut from_history, &wanted, "narrow watch, history").await;
    assert_quiet(&mut from_history, "narrow history after its keys").await;
}

/// A delete event carries the key's last value, live and from history.
pub async fn delete_event_carries_last_value(store: Arc<dyn Store>) {
    let p = prefix(&*store, "delete-event");
    let key = format!("{p}a");
    let r0 = store.current_revision();
    let mut live = ok(store.watch(&p, r0).await, "watch");
    let first = ok(store.create(&key, val("first")).await, "create");
    let last = ok(store.update(&key, val("last"), None).await, "update");
    let gone = ok(store.delete(&key, None).await, "delete");
    assert_eq!(
        gone,
        kv(&key, "last", first.create_revision, last.mod_revision + 1)
    );

    let check = |event: &Event, how: &str| {
        assert_eq!(event.kind, EventType::Delete, "{how}");
        assert_eq!(
            event.kv, gone,
            "{how}: the deletion's kv is the last value at the delete's revision"
        );
        assert_eq!(
            event.prev.as_ref(),
            Some(&last),
            "{how}: prev is the deleted key-value as stored"
        );
    };
    let _ = next_event(&mut live, "live create").await;
    let _ = next_event(&mut live, "live update").await;
    check(&*next_event(&mut live, "live delete").await, "live");

    let mut history = ok(
        store.watch(&p, last.mod_revision).await,
        "watch from history",
    );
    check(
        &*next_event(&mut history, "history delete").await,
        "history",
    );
}

/// Compaction keeps the latest value of every key as of the compaction revision; older
/// revisions are refused with Compacted.
pub async fn compaction(store: Arc<dyn Store>) {
    let p = prefix(&*store, "compaction");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let r0 = store.current_revision();
    ok(store.create(&a, val("a1")).await, "create a");
    ok(store.create(&b, val("b1")).await, "create b");
    ok(store.update(&a, val("a2"), None).await, "update a");
    ok(store.delete(&b, None).await, "delete b");
    let c1 = ok(store.create(&c, val("c1")).await, "create c");
    let c2 = ok(store.update(&c, val("c2"), None).await, "update c");
    let (r1, r3, r4, r5, r6) = (r0 + 1, r0 + 3, r0 + 4, r0 + 5, r0 + 6);
    assert_eq!(c2.mod_revision, r6);

    ok(store.compact(r4).await, "compact");
    assert_eq!(store.compacted_revision(), r4);
    assert_eq!(store.current_revision(), r6, "compaction is not a write");

    let err = fails(store.list(&p, Some(r3)).await, "list below the compaction");
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == r3 && compacted == r4),
        "list at {r3}: {err:?}"
    );
    assert_eq!(
        list_keys(&*store, &p, Some(r4)).await,
        vec![kv(&a, "a2", r1, r3)]
    );
    assert_eq!(
        list_keys(&*store, &p, Some(r5)).await,
        vec![kv(&a, "a2", r1, r3), c1.clone()]
    );
    assert_eq!(
        list_keys(&*store, &p, None).await,
        vec![kv(&a, "a2", r1, r3), c2.clone()]
    );
    assert_eq!(ok(store.get(&a).await, "get a"), Some(kv(&a, "a2", r1, r3)));

    let err = fails(
        store.watch(&p, r3).await.map(|_| ()),
        "watch below the compaction",
    );
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == r3 && compacted == r4),
        "{err:?}"
    );
    let mut watch = ok(store.watch(&p, r4).await, "watch from the compaction");
    expect_events(
        &mut watch,
        &[put(c1.clone(), None), put(c2.clone(), Some(c1))],
        "after the compaction",
    )
    .await;

    for again in [r4, r1] {
        let err = fails(store.compact(again).await, "compact again");
        assert!(
            matches!(err, Error::Compacted { compacted, .. } if compacted == r4),
            "compact {again}: {err:?}"
        );
    }

    // Writes go on from the same counter, and the live watch still works.
    let a3 = ok(
        store.update(&a, val("a3"), Some(r3)).await,
        "update after compaction",
    );
    assert_eq!(a3, kv(&a, "a3", r1, r6 + 1));
    expect_events(
        &mut watch,
        &[put(a3, Some(kv(&a, "a2", r1, r3)))],
        "live after the compaction",
    )
    .await;
}

/// Compacting at the current revision, after deleting everything, keeps the revision counter
/// and serves lists and watches from there.
pub async fn compaction_of_everything(store: Arc<dyn Store>) {
    let p = prefix(&*store, "compact-all");
    let key = format!("{p}a");
    ok(store.create(&key, val("v1")).await, "create");
    let gone = ok(store.delete(&key, None).await, "delete");
    ok(
        store.compact(gone.mod_revision).await,
        "compact at the delete",
    );
    assert_eq!(store.current_revision(), gone.mod_revision);
    assert_eq!(store.compacted_revision(), gone.mod_revision);
    let list = ok(
        store.list(&p, Some(gone.mod_revision)).await,
        "list at the compaction",
    );
    assert!(
        list.items.is_empty(),
        "a deleted key does not come back: {:?}",
        list.items
    );

    let mut watch = ok(
        store.watch(&p, gone.mod_revision).await,
        "watch from the compaction",
    );
    let again = ok(
        store.create(&key, val("v2")).await,
        "create after compaction",
    );
    assert_eq!(
        again,
        kv(&key, "v2", gone.mod_revision + 1, gone.mod_revision + 1)
    );
    expect_events(&mut watch, &[put(again, None)], "create after compaction").await;
}

/// Many concurrent writers each get a distinct revision, the revisions have no gaps, a watcher
/// sees every write in revision order, and concurrent compare-and-swaps let exactly one win.
pub async fn concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: i64 = 200;
    let p = prefix(&*store, "concurrent");
    let before = store.current_revision();
    let mut watch = ok(store.watch(&p, before).await, "watch");

    let creates = (0..WRITERS).map(|i| {
        let store = store.clone();
        let key = format!("{p}{i:04}");
        async move { store.create(&key, val(&key)).await }
    });
    let results = futures_util::future::join_all(creates).await;
    let mut revisions: Vec<Revision> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let created = ok(r, &format!("concurrent create {i}"));
            assert_eq!(created.key, format!("{p}{i:04}"));
            assert_eq!(created.create_revision, created.mod_revision);
            created.mod_revision
        })
        .collect();
    revisions.sort_unstable();
    let expected: Vec<Revision> = (before + 1..=before + WRITERS).collect();
    assert_eq!(revisions, expected, "every write its own revision, no gaps");
    assert_eq!(store.current_revision(), before + WRITERS);

    let mut last = before;
    for i in 0..WRITERS {
        let event = next_event(&mut watch, &format!("event {i}")).await;
        assert_eq!(event.kv.mod_revision, last + 1, "events in revision order");
        last = event.kv.mod_revision;
    }
    assert_eq!(list_keys(&*store, &p, None).await.len(), WRITERS as usize);

    // Compare-and-swap races: all expect the same revision, exactly one may win.
    let key = format!("{p}0000");
    let base = ok(store.get(&key).await, "get").map(|kv| kv.mod_revision);
    let updates = (0..20).map(|i| {
        let store = store.clone();
        let key = key.clone();
        async move { store.update(&key, val(&format!("racer {i}")), base).await }
    });
    let outcomes = futures_util::future::join_all(updates).await;
    let winners = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        winners, 1,
        "exactly one compare-and-swap wins: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(Error::Conflict { .. }))),
        "the losers get Conflict: {outcomes:?}"
    );
    assert_eq!(store.current_revision(), before + WRITERS + 1);
}

/// Watches started at different moments while writes go on each see an unbroken run of
/// revisions from their starting point: nothing is lost or repeated where history hands over
/// to live events.
pub async fn watch_while_writing(store: Arc<dyn Store>) {
    const WRITES: usize = 300;
    const WATCHERS: usize = 8;
    let p = prefix(&*store, "watch-while-writing");
    // Revisions up to here are not under `p` (a fresh store starts at revision 1 with no
    // event): a watch may start no earlier, or its first event is rightly past `after + 1`.
    let start = store.current_revision();
    let end = format!("{p}end");
    // The last write waits until every watch has started, so that each has something to see.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let store = store.clone();
        let p = p.clone();
        let end = end.clone();
        tokio::spawn(async move {
            for chunk in 0..WRITES / 10 {
                // Ten at a time, so that writes also arrive in batches.
                let creates = (0..10).map(|i| {
                    let key = format!("{p}{chunk:03}-{i}");
                    let store = store.clone();
                    async move { store.create(&key, val("x")).await }
                });
                for result in futures_util::future::join_all(creates).await {
                    ok(result, "create while watching");
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            let _ = started_rx.await;
            ok(store.create(&end, val("end")).await, "create end")
        })
    };
    let mut watchers = Vec::new();
    for w in 0..WATCHERS {
        // Start some watches a little in the past, some exactly at the current revision.
        let after = (store.current_revision() - (w as Revision % 3))
            .max(store.compacted_revision())
            .max(start);
        let stream = ok(store.watch(&p, after).await, "watch while writing");
        let end = end.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut last = after;
            loop {
                let event =
                    next_event(&mut stream, &format!("watcher {w} from {after}, at {last}")).await;
                assert_eq!(
                    event.kv.mod_revision,
                    last + 1,
                    "watcher {w} from {after}: no gap, no repeat"
                );
                last = event.kv.mod_revision;
                if event.kv.key == end {
                    return last;
                }
            }
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = started_tx.send(());
    let end_kv = match writer.await {
        Ok(kv) => kv,
        Err(e) => panic!("writer failed: {e}"),
    };
    for (w, watcher) in watchers.into_iter().enumerate() {
        match watcher.await {
            Ok(last) => assert_eq!(last, end_kv.mod_revision, "watcher {w} saw up to the end"),
            Err(e) => panic!("watcher {w} failed: {e}"),
        }
    }
}
