//! The SQLite backend against the conformance suite, plus what only a disk-backed store has:
//! reopening, many concurrent writers, lagging watchers, closing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use skiff_store::{Error, EventType, SqliteOptions, SqliteStore, Store};
use tempfile::TempDir;

async fn fresh() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    (store, dir)
}

mod conformance {
    skiff_store::store_conformance_tests!(super::fresh);
}

#[tokio::test]
async fn creates_the_database_and_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/store.db");
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(
        store.current_revision(),
        1,
        "an empty store is at revision 1, as etcd"
    );
    assert_eq!(store.compacted_revision(), 0);
}

#[tokio::test]
async fn data_and_revision_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    let a = store.create("/a", Bytes::from_static(b"a1")).await.unwrap();
    let a2 = store
        .update("/a", Bytes::from_static(b"a2"), None)
        .await
        .unwrap();
    store.create("/b", Bytes::from_static(b"b1")).await.unwrap();
    let gone = store.delete("/b", None).await.unwrap();
    store.compact(a2.mod_revision).await.unwrap();
    let last = store.current_revision();
    assert_eq!(last, gone.mod_revision);
    store.close();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision(), last);
    assert_eq!(store.compacted_revision(), a2.mod_revision);
    assert_eq!(store.get("/a").await.unwrap(), Some(a2.clone()));
    assert_eq!(store.get("/b").await.unwrap(), None);
    let old = store.list("/", Some(a2.mod_revision)).await.unwrap();
    assert_eq!(
        old.items,
        vec![a2.clone()],
        "the state as of the compaction"
    );
    let before_delete = store.list("/", Some(gone.mod_revision - 1)).await.unwrap();
    assert_eq!(
        before_delete.items.len(),
        2,
        "history after the compaction survives too"
    );
    let err = store.list("/", Some(a.mod_revision)).await.unwrap_err();
    assert!(matches!(err, Error::Compacted { .. }), "{err:?}");
    let next = store.create("/c", Bytes::new()).await.unwrap();
    assert_eq!(next.mod_revision, last + 1);

    // Delete everything and compact it all away: the counter must still not go back.
    store.delete("/a", None).await.unwrap();
    store.delete("/c", None).await.unwrap();
    let top = store.current_revision();
    store.compact(top).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision(), top);
    assert!(store.list("", None).await.unwrap().items.is_empty());
    assert_eq!(
        store.create("/d", Bytes::new()).await.unwrap().mod_revision,
        top + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_creates_get_distinct_revisions() {
    let (store, _dir) = fresh().await;
    let before = store.current_revision();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create(&format!("/pods/{i}"), Bytes::from(vec![b'x'; 512]))
                    .await
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.unwrap().unwrap().mod_revision);
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 1000);
    assert_eq!(revisions, (before + 1..=before + 1000).collect::<Vec<_>>());
    assert_eq!(store.list("/pods/", None).await.unwrap().items.len(), 1000);
}

#[tokio::test]
async fn acknowledged_writes_are_on_disk_before_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    let kv = store.create("/k", Bytes::from_static(b"v")).await.unwrap();
    // A second store on the same file reads the log, not the first one's memory. (Only a test
    // may do this; a server opens a database once.)
    let reader = SqliteStore::open(&path).unwrap();
    assert_eq!(reader.get("/k").await.unwrap(), Some(kv));
    reader.close();
    store.close();
}

#[tokio::test]
async fn a_lagging_watcher_gets_watch_lagged_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        watch_buffer: 4,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&dir.path().join("store.db"), options).unwrap();
    let mut watch = store.watch("/", store.current_revision()).await.unwrap();
    for i in 0..10 {
        store.create(&format!("/k{i}"), Bytes::new()).await.unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Err(Error::WatchLagged))), "{first:?}");
    assert!(watch.next().await.is_none(), "a lagged watch ends");
}

#[tokio::test]
async fn a_long_history_is_delivered_in_pages() {
    let (store, _dir) = fresh().await;
    let start = store.current_revision();
    for i in 0..2500 {
        store
            .create(&format!("/h/{i:05}"), Bytes::new())
            .await
            .unwrap();
    }
    let mut watch = store.watch("/h/", start).await.unwrap();
    for i in 0..2500 {
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.kind, EventType::Put);
        assert_eq!(event.kv.mod_revision, start + 1 + i);
    }
    let live = store.create("/h/live", Bytes::new()).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.kv, live);
}

#[tokio::test]
async fn close_refuses_writes_and_ends_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    let mut watch = store.watch("/", store.current_revision()).await.unwrap();
    store.create("/a", Bytes::new()).await.unwrap();
    store.close();
    assert!(matches!(
        store.create("/b", Bytes::new()).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        store.watch("/", 0).await.map(|_| ()),
        Err(Error::Closed)
    ));
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(event.kv.key, "/a");
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(end.is_none(), "the watch ends after close");
    store.close();
}

#[tokio::test]
async fn negative_and_odd_revisions_are_errors_not_panics() {
    let (store, _dir) = fresh().await;
    store.create("/a", Bytes::new()).await.unwrap();
    assert!(matches!(
        store.list("/", Some(-5)).await,
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        store.watch("/", -1).await.map(|_| ()),
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        store.compact(-1).await,
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        store.list("/", Some(i64::MAX)).await,
        Err(Error::FutureRevision { .. })
    ));
    assert!(matches!(
        store.compact(i64::MAX).await,
        Err(Error::FutureRevision { .. })
    ));
    // A watch from the future waits for that revision.
    let mut watch = store
        .watch("/", store.current_revision() + 1)
        .await
        .unwrap();
    store.create("/b", Bytes::new()).await.unwrap();
    let c = store.create("/c", Bytes::new()).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.kv, c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_its_writes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    // Inject a storage failure for one key: the log insert of "/poison" aborts.
    let admin = rusqlite::Connection::open(&path).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON log WHEN NEW.key = CAST('/poison' AS BLOB) \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    drop(admin);

    let before = store.current_revision();
    let err = store.create("/poison", Bytes::new()).await.unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert_eq!(store.get("/poison").await.unwrap(), None);
    assert_eq!(
        store.current_revision(),
        before,
        "a failed commit takes no revision"
    );

    // Concurrent writes, some poisoned: whatever lands in a failing batch fails whole, and
    // what succeeded has contiguous revisions and is stored.
    let results = futures_util::future::join_all((0..60).map(|i| {
        let store = store.clone();
        async move {
            let key = if i % 10 == 5 {
                "/poison".to_string()
            } else {
                format!("/ok/{i}")
            };
            (key.clone(), store.create(&key, Bytes::new()).await)
        }
    }))
    .await;
    let mut revisions = Vec::new();
    for (key, result) in &results {
        match result {
            Ok(kv) => {
                assert_eq!(store.get(key).await.unwrap().as_ref(), Some(kv));
                revisions.push(kv.mod_revision);
            }
            Err(Error::Backend(_)) => {
                if key != "/poison" {
                    assert_eq!(
                        store.get(key).await.unwrap(),
                        None,
                        "{key} failed with its batch"
                    );
                }
            }
            Err(other) => panic!("{key}: {other:?}"),
        }
    }
    revisions.sort_unstable();
    let n = revisions.len() as i64;
    assert_eq!(revisions, (before + 1..=before + n).collect::<Vec<_>>());
    assert_eq!(store.current_revision(), before + n);
    assert_eq!(
        store.list("/ok/", None).await.unwrap().items.len() as i64,
        n
    );
    assert!(n < 60, "the poisoned writes failed");

    // The store still works, and the log agrees with memory after a reopen.
    let next = store.create("/after", Bytes::new()).await.unwrap();
    assert_eq!(next.mod_revision, before + n + 1);
    store.close();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision(), before + n + 1);
    assert_eq!(
        store.list("/ok/", None).await.unwrap().items.len() as i64,
        n
    );
}

fn log_rows(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_removes_obsolete_rows_in_slices_and_resumes_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    const KEYS: usize = 6000;
    for round in 0..2 {
        for chunk in 0..KEYS / 1000 {
            let writes = (chunk * 1000..(chunk + 1) * 1000).map(|i| {
                let store = store.clone();
                async move {
                    let key = format!("/k/{i:05}");
                    if round == 0 {
                        store.create(&key, Bytes::from_static(b"v1")).await
                    } else {
                        store.update(&key, Bytes::from_static(b"v2"), None).await
                    }
                }
            });
            for result in futures_util::future::join_all(writes).await {
                result.unwrap();
            }
        }
    }
    store.delete("/k/00000", None).await.unwrap();
    assert_eq!(log_rows(&path), 2 * KEYS as i64 + 1);
    // Compact half way through the updates: the created rows of the keys updated by then go.
    let half = (KEYS / 2) as i64;
    let first = 1 + KEYS as i64 + half;
    store.compact(first).await.unwrap();
    assert_eq!(log_rows(&path), 2 * KEYS as i64 + 1 - half);
    assert_eq!(
        store.list("/k/", Some(first)).await.unwrap().items.len(),
        KEYS
    );

    // Start a compaction of everything and close at once: what is left is done at reopen.
    let top = store.current_revision();
    let compaction = tokio::spawn({
        let store = store.clone();
        async move { store.compact(top).await }
    });
    // The compacted revision moves at once; the rows go a slice at a time after that.
    while store.compacted_revision() != top {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    store.close();
    let _ = compaction.await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.compacted_revision(), top);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log_rows(&path) != KEYS as i64 - 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the compaction did not finish: {} rows",
            log_rows(&path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = store.list("/k/", Some(top)).await.unwrap();
    assert_eq!(list.items.len(), KEYS - 1);
    assert!(list
        .items
        .iter()
        .all(|kv| kv.value == Bytes::from_static(b"v2")));
}
