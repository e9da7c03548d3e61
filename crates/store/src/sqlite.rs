//! The SQLite backend of [`Store`]: an append-only revision log on disk, the current state in
//! memory, one writer thread that group-commits concurrent writes, and one broadcast fan-out that
//! feeds every watch.
//!
//! Why this shape: SQLite allows one writer at a time and each durable commit costs an fsync, so
//! a single thread takes every write waiting, applies them in one transaction (each its own
//! revision) and pays one fsync for all of them. Reads of the latest state never touch SQLite;
//! only lists at an older revision and watch history do, on a small pool of read connections.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, oneshot, Semaphore};

use crate::{
    BoxFuture, Error, Event, EventType, KeyValue, ListResult, Result, Revision, Store, WatchStream,
};

/// The revision of an empty store. etcd starts at 1 too, so the first write gets revision 2.
const INITIAL_REVISION: Revision = 1;

/// Rows read per history query; a watch from far back pages through the log instead of loading
/// all of it at once.
const HISTORY_PAGE: usize = 1000;

/// Log rows one compaction transaction examines, so that writes wait at most for one slice.
const COMPACTION_SLICE: i64 = 5000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    create_rev INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Tunables of a [`SqliteStore`]; [`SqliteOptions::default`] suits a server.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Events a watcher may fall behind before it gets [`Error::WatchLagged`] (at most 2^20).
    pub watch_buffer: usize,
    /// Most read connections (and blocking threads) serving history at once.
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            watch_buffer: 8192,
            readers: 4,
        }
    }
}

/// A [`Store`] kept in one SQLite database file (WAL mode, `synchronous=FULL`).
///
/// Dropping it (or [`SqliteStore::close`]) finishes the writes already submitted, stops the
/// writer thread and ends every watch stream.
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What the store, its writer thread and its watch streams share.
struct Shared {
    path: PathBuf,
    state: RwLock<State>,
    /// Mirrors `State::revision` so `current_revision` takes no lock.
    current: AtomicI64,
    compacted: AtomicI64,
    /// Taken at close so that watch streams end once the writer's clone is gone too.
    events: RwLock<Option<broadcast::Sender<Arc<Event>>>>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    max_readers: usize,
}

/// The latest value of every live key, and the revision it is at; changed only by the writer,
/// and both together, so a reader sees a consistent pair.
struct State {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
}

enum Request {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// One row of the log table.
struct Row {
    rev: Revision,
    key: String,
    create_rev: Revision,
    deleted: bool,
    value: Bytes,
}

fn backend(e: impl Display) -> Error {
    Error::Backend(e.to_string())
}

/// The smallest byte string greater than every string starting with `prefix`; None when there
/// is none (empty prefix, or only 0xFF bytes, which UTF-8 never contains).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Appends the SQL condition selecting keys under `prefix` (parameters ?2 and ?3).
fn key_range_sql(upper: &Option<Vec<u8>>) -> &'static str {
    if upper.is_some() {
        "key >= ?2 AND key < ?3"
    } else {
        "key >= ?2"
    }
}

fn key_from_blob(blob: Vec<u8>) -> Result<String> {
    String::from_utf8(blob).map_err(|e| backend(format!("stored key is not UTF-8: {e}")))
}

fn read_meta(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(backend)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(backend(format!(
            "cannot switch the database to WAL mode (it is in {mode} mode)"
        )));
    }
    // FULL: in WAL mode every commit fsyncs the log, so an acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    Ok(())
}

impl SqliteStore {
    /// Opens the database at `path` with default options, creating it (and its parent folders)
    /// if missing.
    pub fn open(path: &Path) -> Result<Arc<SqliteStore>> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path`, creating it (and its parent folders) if missing.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Arc<SqliteStore>> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| backend(format!("cannot create {}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
        configure(&conn)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;

        let (kvs, max_log_rev) = load_state(&conn)?;
        let meta_rev = read_meta(&conn, "revision").map_err(backend)?.unwrap_or(0);
        let compacted = read_meta(&conn, "compacted").map_err(backend)?.unwrap_or(0);
        // The log may have lost its newest rows to compaction (deleted keys), so the counter also
        // comes from meta; it only ever grows.
        let revision = meta_rev
            .max(max_log_rev)
            .max(compacted)
            .max(INITIAL_REVISION);

        let (events, _) = broadcast::channel(options.watch_buffer.clamp(1, 1 << 20));
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            state: RwLock::new(State { kvs, revision }),
            current: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events: RwLock::new(Some(events.clone())),
            readers: Mutex::new(Vec::new()),
            reader_permits: Semaphore::new(options.readers.max(1)),
            max_readers: options.readers.max(1),
        });
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            conn,
            shared: shared.clone(),
            events,
            requests: rx,
            max_batch: options.max_batch.max(1),
            compaction: None,
        };
        // A compaction cut short by a crash or close carries on in the background.
        let cursor = read_meta(&writer.conn, "compact_cursor")
            .map_err(backend)?
            .unwrap_or(0);
        if cursor < compacted {
            writer.compaction = Some(CompactionJob {
                target: compacted,
                cursor,
                replies: Vec::new(),
            });
        }
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| backend(format!("cannot start the writer thread: {e}")))?;
        tracing::debug!(path = %path.display(), revision, compacted, "opened SQLite store");
        Ok(Arc::new(SqliteStore {
            shared,
            requests: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Finishes the writes already submitted, stops the writer thread and ends every watch
    /// stream. Later writes fail with [`Error::Closed`]. Calling it again does nothing.
    pub fn close(&self) {
        drop(lock(&self.requests).take());
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the store's writer thread panicked");
            }
        }
        drop(
            self.shared
                .events
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        lock(&self.shared.readers).clear();
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (reply, response) = oneshot::channel();
        {
            let requests = lock(&self.requests);
            let sender = requests.as_ref().ok_or(Error::Closed)?;
            sender.send(make(reply)).map_err(|_| Error::Closed)?;
        }
        response.await.map_err(|_| Error::Closed)?
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        self.submit(|reply| Request::Write { op, reply }).await
    }

    async fn list_at(&self, prefix: &str, revision: Option<Revision>) -> Result<ListResult> {
        let requested = revision.unwrap_or(0);
        {
            let state = self.shared.read_state();
            if requested == 0 || requested == state.revision {
                return Ok(ListResult {
                    items: list_memory(&state.kvs, prefix),
                    revision: state.revision,
                });
            }
            if requested > state.revision {
                return Err(Error::FutureRevision {
                    requested,
                    current: state.revision,
                });
            }
        }
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if requested < compacted {
            return Err(Error::Compacted {
                requested,
                compacted,
            });
        }
        let prefix = prefix.to_owned();
        let items = self
            .shared
            .clone()
            .with_reader(move |conn| list_log(conn, &prefix, requested))
            .await?;
        Ok(ListResult {
            items,
            revision: requested,
        })
    }

    async fn watch_from(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        // Subscribe before reading history: every event committed after this point reaches the
        // receiver, and every one committed before it is in the log the history read sees.
        let rx = {
            let events = self.shared.events.read().unwrap_or_else(|e| e.into_inner());
            events.as_ref().ok_or(Error::Closed)?.subscribe()
        };
        let current = self.shared.current.load(Ordering::Acquire);
        let watch = Watch {
            shared: self.shared.clone(),
            rx,
            prefix: prefix.to_owned(),
            last: after,
            pending: VecDeque::new(),
            // Nothing newer than `after` is committed yet: skip the history query.
            history_done: after >= current,
            finished: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(watch, Watch::next)))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a blocking SQLite read on a pooled read connection.
    async fn with_reader<T: Send + 'static>(
        self: Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .reader_permits
            .acquire()
            .await
            .map_err(|_| Error::Closed)?;
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = lock(&shared.readers).pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&shared.path)?,
            };
            let out = f(&mut conn);
            let mut pool = lock(&shared.readers);
            if pool.len() < shared.max_readers {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| backend(format!("history read failed: {e}")))?
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| backend(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(backend)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(backend)?;
    Ok(conn)
}

/// The latest live row of every key, and the highest revision in the log.
fn load_state(conn: &Connection) -> Result<(BTreeMap<String, KeyValue>, Revision)> {
    let mut kvs = BTreeMap::new();
    // SQLite takes the bare columns from the row holding MAX(rev) of each group.
    let mut stmt = conn
        .prepare("SELECT key, MAX(rev), create_rev, deleted, value FROM log GROUP BY key")
        .map_err(backend)?;
    let mut rows = stmt.query([]).map_err(backend)?;
    while let Some(row) = rows.next().map_err(backend)? {
        let deleted: bool = row.get(3).map_err(backend)?;
        if deleted {
            continue;
        }
        let key = key_from_blob(row.get(0).map_err(backend)?)?;
        let value: Vec<u8> = row.get(4).map_err(backend)?;
        let kv = KeyValue {
            key: key.clone(),
            value: Bytes::from(value),
            create_revision: row.get(2).map_err(backend)?,
            mod_revision: row.get(1).map_err(backend)?,
        };
        kvs.insert(key, kv);
    }
    let max_rev: Option<i64> = conn
        .query_row("SELECT MAX(rev) FROM log", [], |r| r.get(0))
        .map_err(backend)?;
    Ok((kvs, max_rev.unwrap_or(0)))
}

fn list_memory(kvs: &BTreeMap<String, KeyValue>, prefix: &str) -> Vec<KeyValue> {
    kvs.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .take_while(|(k, _)| k.starts_with(prefix))
    .map(|(_, kv)| kv.clone())
    .collect()
}

/// Every key under `prefix` as it was at `revision`, read from the log.
fn list_log(conn: &mut Connection, prefix: &str, revision: Revision) -> Result<Vec<KeyValue>> {
    let tx = conn.transaction().map_err(backend)?;
    // Checked inside the read transaction: a compaction racing with us is either wholly visible
    // (and refused here) or not at all.
    let compacted = read_meta(&tx, "compacted").map_err(backend)?.unwrap_or(0);
    if revision < compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    let upper = prefix_end(prefix.as_bytes());
    let sql = format!(
        "SELECT key, MAX(rev), create_rev, deleted, value FROM log WHERE rev <= ?1 AND {} GROUP BY key ORDER BY key",
        key_range_sql(&upper)
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(backend)?;
    let mut rows = match &upper {
        Some(upper) => stmt.query(params![revision, prefix.as_bytes(), upper]),
        None => stmt.query(params![revision, prefix.as_bytes()]),
    }
    .map_err(backend)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let deleted: bool = row.get(3).map_err(backend)?;
        if deleted {
            continue;
        }
        let value: Vec<u8> = row.get(4).map_err(backend)?;
        items.push(KeyValue {
            key: key_from_blob(row.get(0).map_err(backend)?)?,
            value: Bytes::from(value),
            create_revision: row.get(2).map_err(backend)?,
            mod_revision: row.get(1).map_err(backend)?,
        });
    }
    Ok(items)
}

/// Up to [`HISTORY_PAGE`] events under `prefix` with revision > `after`, in order; the flag says
/// whether the log holds no more.
fn history_page(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<Arc<Event>>, bool)> {
    let tx = conn.transaction().map_err(backend)?;
    let compacted = read_meta(&tx, "compacted").map_err(backend)?.unwrap_or(0);
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let upper = prefix_end(prefix.as_bytes());
    let sql = format!(
        "SELECT rev, key, create_rev, deleted, value FROM log WHERE rev > ?1 AND {} ORDER BY rev LIMIT {HISTORY_PAGE}",
        key_range_sql(&upper)
    );
    let mut rows_out = Vec::new();
    {
        let mut stmt = tx.prepare_cached(&sql).map_err(backend)?;
        let mut rows = match &upper {
            Some(upper) => stmt.query(params![after, prefix.as_bytes(), upper]),
            None => stmt.query(params![after, prefix.as_bytes()]),
        }
        .map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let value: Vec<u8> = row.get(4).map_err(backend)?;
            rows_out.push(Row {
                rev: row.get(0).map_err(backend)?,
                key: key_from_blob(row.get(1).map_err(backend)?)?,
                create_rev: row.get(2).map_err(backend)?,
                deleted: row.get(3).map_err(backend)?,
                value: Bytes::from(value),
            });
        }
    }
    let done = rows_out.len() < HISTORY_PAGE;
    let mut prev_stmt = tx
        .prepare_cached(
            "SELECT rev, create_rev, deleted, value FROM log WHERE key = ?1 AND rev < ?2 ORDER BY rev DESC LIMIT 1",
        )
        .map_err(backend)?;
    let mut events = Vec::with_capacity(rows_out.len());
    for row in rows_out {
        let prev = prev_stmt
            .query_row(params![row.key.as_bytes(), row.rev], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .optional()
            .map_err(backend)?
            .filter(|(_, _, deleted, _)| !deleted)
            .map(|(rev, create_rev, _, value)| KeyValue {
                key: row.key.clone(),
                value: Bytes::from(value),
                create_revision: create_rev,
                mod_revision: rev,
            });
        let kind = if row.deleted {
            EventType::Delete
        } else {
            EventType::Put
        };
        let kv = KeyValue {
            key: row.key,
            value: row.value,
            create_revision: row.create_rev,
            mod_revision: row.rev,
        };
        events.push(Arc::new(Event { kind, kv, prev }));
    }
    Ok((events, done))
}

/// The state of one watch stream: history first (paged from the log), then live events.
struct Watch {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    /// The revision of the last event delivered (or `after`): nothing at or below it is sent.
    last: Revision,
    pending: VecDeque<Arc<Event>>,
    history_done: bool,
    finished: bool,
}

impl Watch {
    async fn next(mut self) -> Option<(Result<Arc<Event>>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.kv.mod_revision;
                return Some((Ok(event), self));
            }
            if !self.history_done {
                let prefix = self.prefix.clone();
                let after = self.last;
                match self
                    .shared
                    .clone()
                    .with_reader(move |conn| history_page(conn, &prefix, after))
                    .await
                {
                    Ok((events, done)) => {
                        self.pending.extend(events);
                        self.history_done = done;
                        continue;
                    }
                    Err(e) => {
                        self.finished = true;
                        return Some((Err(e), self));
                    }
                }
            }
            match self.rx.recv().await {
                Ok(event) => {
                    if event.kv.mod_revision <= self.last || !event.kv.key.starts_with(&self.prefix)
                    {
                        continue;
                    }
                    self.last = event.kv.mod_revision;
                    return Some((Ok(event), self));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.finished = true;
                    return Some((Err(Error::WatchLagged), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The one thread that writes to the database.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Event>>,
    requests: mpsc::Receiver<Request>,
    max_batch: usize,
    /// The compaction under way, done a slice at a time between write batches.
    compaction: Option<CompactionJob>,
}

/// A compaction in progress: the rows up to `cursor` are done, those up to `target` remain.
/// The cursor is kept in meta, so a compaction cut short by a crash or close resumes at the next
/// open. A new target starts over from 0: rows kept for the old target may be obsolete now.
struct CompactionJob {
    target: Revision,
    cursor: Revision,
    replies: Vec<oneshot::Sender<Result<()>>>,
}

/// The outcome of one write of a batch, before the batch is committed.
struct Pending {
    reply: oneshot::Sender<Result<KeyValue>>,
    result: Result<KeyValue>,
}

impl Writer {
    fn run(mut self) {
        loop {
            // While a compaction is under way, take what is waiting without blocking and do
            // the next slice; otherwise sleep until a request comes. recv and try_recv report
            // the senders gone only once the queue is empty, so writes submitted before close
            // all finish.
            let first = if self.compaction.is_some() {
                match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::TryRecvError::Empty) => None,
                    // Closed: stop now; the compaction resumes at the next open.
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match self.requests.recv() {
                    Ok(request) => Some(request),
                    Err(_) => break,
                }
            };
            if let Some(first) = first {
                self.take_batch(first);
            }
            if self.compaction.is_some() {
                self.compact_step();
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Handles `first` and every request waiting behind it, up to the batch bound.
    fn take_batch(&mut self, first: Request) {
        let mut writes = Vec::new();
        let mut compactions = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next {
            match request {
                Request::Write { op, reply } => writes.push((op, reply)),
                Request::Compact { revision, reply } => compactions.push((revision, reply)),
            }
            next = if writes.len() + compactions.len() < self.max_batch {
                self.requests.try_recv().ok()
            } else {
                None
            };
        }
        if !writes.is_empty() {
            self.apply_writes(writes);
        }
        for (revision, reply) in compactions {
            if let Err(e) = self.start_compaction(revision, reply) {
                tracing::warn!(revision, error = %e, "compaction refused");
            }
        }
    }

    /// Applies a batch in one transaction: each write its own revision, each checked against
    /// the state including the earlier writes of the batch.
    fn apply_writes(&mut self, writes: Vec<(WriteOp, oneshot::Sender<Result<KeyValue>>)>) {
        let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut rows = Vec::new();
        let mut events = Vec::new();
        let mut pending = Vec::with_capacity(writes.len());
        let mut next;
        {
            let state = self.shared.read_state();
            next = state.revision;
            for (op, reply) in writes {
                let current = match overlay.get(op.key()) {
                    Some(kv) => kv.clone(),
                    None => state.kvs.get(op.key()).cloned(),
                };
                let outcome = match op {
                    WriteOp::Create { key, value } => match current {
                        Some(_) => Err(Error::AlreadyExists(key)),
                        None => {
                            let kv = KeyValue {
                                key,
                                value,
                                create_revision: next + 1,
                                mod_revision: next + 1,
                            };
                            Ok(Event {
                                kind: EventType::Put,
                                kv,
                                prev: None,
                            })
                        }
                    },
                    WriteOp::Update {
                        key,
                        value,
                        expected,
                    } => match check(key, current, expected) {
                        Ok((key, old)) => {
                            let kv = KeyValue {
                                key,
                                value,
                                create_revision: old.create_revision,
                                mod_revision: next + 1,
                            };
                            Ok(Event {
                                kind: EventType::Put,
                                kv,
                                prev: Some(old),
                            })
                        }
                        Err(e) => Err(e),
                    },
                    WriteOp::Delete { key, expected } => match check(key, current, expected) {
                        // The deletion's kv keeps the last value: watchers need the final state.
                        Ok((_, old)) => {
                            let kv = KeyValue {
                                mod_revision: next + 1,
                                ..old.clone()
                            };
                            Ok(Event {
                                kind: EventType::Delete,
                                kv,
                                prev: Some(old),
                            })
                        }
                        Err(e) => Err(e),
                    },
                };
                let result = outcome.map(|event| {
                    next += 1;
                    let kv = event.kv.clone();
                    let deleted = event.kind == EventType::Delete;
                    rows.push(Row {
                        rev: next,
                        key: kv.key.clone(),
                        create_rev: kv.create_revision,
                        deleted,
                        value: kv.value.clone(),
                    });
                    overlay.insert(
                        kv.key.clone(),
                        if deleted { None } else { Some(kv.clone()) },
                    );
                    events.push(Arc::new(event));
                    kv
                });
                pending.push(Pending { reply, result });
            }
        }

        if !rows.is_empty() {
            if let Err(e) = self.commit(&rows, next) {
                tracing::error!(error = %e, writes = pending.len(), "store commit failed");
                let message = format!("commit failed: {e}");
                for p in pending {
                    let _ = p.reply.send(Err(Error::Backend(message.clone())));
                }
                return;
            }
            {
                let mut state = self.shared.write_state();
                for (key, kv) in overlay {
                    match kv {
                        Some(kv) => state.kvs.insert(key, kv),
                        None => state.kvs.remove(&key),
                    };
                }
                state.revision = next;
                self.shared.current.store(next, Ordering::Release);
            }
            for event in events {
                // An error only means nobody is watching.
                let _ = self.events.send(event);
            }
        }
        for p in pending {
            let _ = p.reply.send(p.result);
        }
    }

    fn commit(&mut self, rows: &[Row], revision: Revision) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO log (rev, key, create_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for row in rows {
                insert.execute(params![
                    row.rev,
                    row.key.as_bytes(),
                    row.create_rev,
                    row.deleted,
                    &row.value[..]
                ])?;
            }
            set_meta(&tx, "revision", revision)?;
        }
        tx.commit()
    }

    /// Makes `revision` the compacted revision at once (older reads are refused from now on)
    /// and schedules the removal of the rows no later read needs. `reply` is answered when the
    /// removal is done, or now with the error.
    fn start_compaction(
        &mut self,
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    ) -> Result<(), String> {
        let outcome = self.mark_compacted(revision);
        if let Err(e) = outcome {
            let message = e.to_string();
            let _ = reply.send(Err(e));
            return Err(message);
        }
        match &mut self.compaction {
            Some(job) => {
                job.target = revision;
                job.cursor = 0;
                job.replies.push(reply);
            }
            None => {
                self.compaction = Some(CompactionJob {
                    target: revision,
                    cursor: 0,
                    replies: vec![reply],
                })
            }
        }
        Ok(())
    }

    fn mark_compacted(&mut self, revision: Revision) -> Result<()> {
        let current = self.shared.current.load(Ordering::Acquire);
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        // As etcd: compacting at or below the compacted revision is refused.
        if revision <= compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        let mark = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            set_meta(&tx, "compacted", revision)?;
            set_meta(&tx, "compact_cursor", 0)?;
            tx.commit()
        };
        mark(&mut self.conn).map_err(|e| backend(format!("compaction failed: {e}")))?;
        self.shared.compacted.store(revision, Ordering::Release);
        Ok(())
    }

    /// Removes, in one short transaction, the unneeded rows of the next slice of revisions: for
    /// each key, the rows at or below the target except the newest one, and that one too when it
    /// is a deletion. Slices go up in revision order, so whenever a deletion's row is gone, the
    /// older rows of its key are gone too, and reads at or after the target stay right throughout.
    fn compact_step(&mut self) {
        let Some(job) = self.compaction.as_mut() else {
            return;
        };
        let (target, cursor) = (job.target, job.cursor);
        let step = |conn: &mut Connection| -> rusqlite::Result<(Revision, usize)> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The slice ends at the COMPACTION_SLICE-th row after the cursor, or at the target.
            let high: Option<Revision> = tx
                .query_row(
                    "SELECT rev FROM log WHERE rev > ?1 AND rev <= ?2 ORDER BY rev LIMIT 1 OFFSET ?3",
                    params![cursor, target, COMPACTION_SLICE - 1],
                    |r| r.get(0),
                )
                .optional()?;
            let high = high.unwrap_or(target);
            let removed = tx.execute(
                "DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND (deleted = 1 OR rev < \
                 (SELECT MAX(l2.rev) FROM log AS l2 WHERE l2.key = log.key AND l2.rev <= ?3))",
                params![cursor, high, target],
            )?;
            set_meta(&tx, "compact_cursor", high)?;
            tx.commit()?;
            Ok((high, removed))
        };
        match step(&mut self.conn) {
            Ok((high, removed)) => {
                tracing::trace!(target, through = high, removed, "compaction slice");
                job.cursor = high;
                if high >= target {
                    tracing::debug!(revision = target, "compaction done");
                    for reply in std::mem::take(&mut job.replies) {
                        let _ = reply.send(Ok(()));
                    }
                    self.compaction = None;
                }
            }
            Err(e) => {
                // The rows left behind are harmless: the next compaction removes them.
                tracing::error!(error = %e, "compaction failed");
                for reply in std::mem::take(&mut job.replies) {
                    let _ = reply.send(Err(backend(format!("compaction failed: {e}"))));
                }
                self.compaction = None;
            }
        }
    }
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// The key's current value when it exists and, if `expected` is given, is at that revision:
/// the checks shared by update and delete.
fn check(
    key: String,
    current: Option<KeyValue>,
    expected: Option<Revision>,
) -> Result<(String, KeyValue)> {
    match current {
        None => Err(Error::NotFound(key)),
        Some(old) => match expected {
            Some(expected) if expected != old.mod_revision => Err(Error::Conflict {
                key,
                expected,
                current: old.mod_revision,
            }),
            _ => Ok((key, old)),
        },
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>> {
        let kv = self.shared.read_state().kvs.get(key).cloned();
        Box::pin(std::future::ready(Ok(kv)))
    }

    fn list(&self, prefix: &str, revision: Option<Revision>) -> BoxFuture<'_, Result<ListResult>> {
        let prefix = prefix.to_owned();
        Box::pin(async move { self.list_at(&prefix, revision).await })
    }

    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue>> {
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
        };
        Box::pin(self.write(op))
    }

    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> BoxFuture<'_, Result<KeyValue>> {
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        };
        Box::pin(self.write(op))
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> BoxFuture<'_, Result<KeyValue>> {
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected,
        };
        Box::pin(self.write(op))
    }

    fn watch(&self, prefix: &str, after: Revision) -> BoxFuture<'_, Result<WatchStream>> {
        let prefix = prefix.to_owned();
        Box::pin(async move { self.watch_from(&prefix, after).await })
    }

    fn current_revision(&self) -> Revision {
        self.shared.current.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.submit(move |reply| Request::Compact { revision, reply }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/pods/"), Some(b"/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn list_memory_stops_at_the_end_of_the_prefix() {
        let mut kvs = BTreeMap::new();
        for key in ["/a", "/a/1", "/a/2", "/a0", "/b/1"] {
            let kv = KeyValue {
                key: key.into(),
                value: Bytes::new(),
                create_revision: 2,
                mod_revision: 2,
            };
            kvs.insert(key.to_string(), kv);
        }
        let keys: Vec<_> = list_memory(&kvs, "/a/")
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, ["/a/1", "/a/2"]);
        assert_eq!(list_memory(&kvs, "").len(), 5);
    }
}
