//! Throughput of the SQLite store: durable creates/s with many concurrent writers, gets/s, and
//! the time to list 10,000 keys of ~1 KiB (latest and at an old revision), plus reopen time.
//!
//! Run with `cargo run --release -p skiff-store --example store_bench [KEYS] [WRITERS]`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use skiff_store::{SqliteStore, Store};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(10_000);
    let writers: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = SqliteStore::open(&path).unwrap();
    let value = Bytes::from(vec![b'v'; 1024]);
    println!(
        "{keys} keys of {} bytes, {writers} concurrent writers, database in {}",
        value.len(),
        dir.path().display()
    );

    // One watcher on everything stays open during the create load, as an API server has.
    let start_rev = store.current_revision();
    let mut watch = store.watch("/registry/", start_rev).await.unwrap();
    let watcher = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < keys {
            match watch.next().await {
                Some(Ok(_)) => seen += 1,
                other => panic!("watch failed after {seen} events: {other:?}"),
            }
        }
    });

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            let next = next.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= keys {
                        return latencies;
                    }
                    let t = Instant::now();
                    store
                        .create(&format!("/registry/pods/default/pod-{i:06}"), value.clone())
                        .await
                        .unwrap();
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    watcher.await.unwrap();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "create: {:.0}/s ({keys} in {:.2?}; latency p50 {:.2?}, p99 {:.2?})",
        keys as f64 / elapsed.as_secs_f64(),
        elapsed,
        pct(0.50),
        pct(0.99),
    );
    let mid_rev = start_rev + keys as i64 / 2;

    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        for i in 0..keys {
            let kv = store
                .get(&format!("/registry/pods/default/pod-{i:06}"))
                .await
                .unwrap();
            assert!(kv.is_some());
        }
    }
    let elapsed = started.elapsed();
    println!(
        "get: {:.0}/s ({} gets in {:.2?})",
        (rounds * keys) as f64 / elapsed.as_secs_f64(),
        rounds * keys,
        elapsed
    );

    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let list = store.list("/registry/pods/", None).await.unwrap();
        best = best.min(started.elapsed());
        assert_eq!(list.items.len(), keys);
    }
    println!("list of {keys} keys (latest, from memory): {best:.2?} (best of 5)");

    let started = Instant::now();
    let list = store.list("/registry/pods/", Some(mid_rev)).await.unwrap();
    println!(
        "list at an old revision ({} keys, from SQLite): {:.2?}",
        list.items.len(),
        started.elapsed()
    );

    let started = Instant::now();
    let mut history = store.watch("/registry/pods/", start_rev).await.unwrap();
    for _ in 0..keys {
        history.next().await.unwrap().unwrap();
    }
    println!(
        "watch replay of {keys} events from SQLite: {:.2?}",
        started.elapsed()
    );
    drop(history);

    // Fan-out: WATCHERS watches on all pods, then UPDATES sequential updates; each update's
    // latency is from the call until one watcher has its event.
    const WATCHERS: usize = 1000;
    const UPDATES: usize = 1000;
    let from = store.current_revision();
    let mut done = Vec::new();
    for _ in 0..WATCHERS {
        let mut watch = store.watch("/registry/pods/", from).await.unwrap();
        done.push(tokio::spawn(async move {
            for _ in 0..UPDATES {
                watch.next().await.unwrap().unwrap();
            }
            Instant::now()
        }));
    }
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut probe = store.watch("/registry/pods/", from).await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(_)) = probe.next().await {
            if seen_tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let mut delivery = Vec::new();
    let started = Instant::now();
    for i in 0..UPDATES {
        let t = Instant::now();
        store
            .update(
                &format!("/registry/pods/default/pod-{i:06}"),
                value.clone(),
                None,
            )
            .await
            .unwrap();
        delivery.push(seen_rx.recv().await.unwrap() - t);
    }
    let mut last = started;
    for d in done {
        last = last.max(d.await.unwrap());
    }
    delivery.sort_unstable();
    println!(
        "{UPDATES} sequential updates with {WATCHERS} open watches: update-to-event p50 {:.2?}, p99 {:.2?}; all watches had every event {:.2?} after the first update",
        delivery[UPDATES / 2],
        delivery[UPDATES * 99 / 100],
        last - started,
    );
    println!("resident memory: {}", rss());

    let started = Instant::now();
    store.close();
    drop(store);
    let closed = started.elapsed();
    let started = Instant::now();
    let store = SqliteStore::open(&path).unwrap();
    println!(
        "close: {closed:.2?}; reopen with {keys} keys: {:.2?}",
        started.elapsed()
    );
    assert_eq!(
        store
            .list("/registry/pods/", None)
            .await
            .unwrap()
            .items
            .len(),
        keys
    );
}

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l[6..].trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
