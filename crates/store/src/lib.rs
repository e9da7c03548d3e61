//! Revisioned key-value storage with etcd v3 semantics (revision = resourceVersion), behind the
//! [`Store`] trait; the SQLite backend is the embedded default.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub mod conformance;
mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore};

/// A store revision. Every successful write increments the global revision by one, exactly as etcd.
pub type Revision = i64;

/// A boxed future, so that `Store` can be used as `Arc<dyn Store>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of watch events, in revision order.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Arc<Event>>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A compare-and-swap failed: the key is at `current`, not at the expected revision.
    #[error("key {key:?} is at revision {current}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision is older than the oldest one kept.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// A revision newer than the store's current one.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A watcher fell too far behind the writers and was dropped; re-list and watch again.
    #[error("watcher fell behind and was closed")]
    WatchLagged,
    #[error("the store is closed")]
    Closed,
    #[error("storage failure: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change. For `Put`, `kv` is the new value and `prev` the old one (None on create). For
/// `Delete`, `kv.value` is the last value before deletion, `kv.mod_revision` is the revision of the
/// deletion, and `prev` is the deleted key-value as it was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

/// The items under a prefix at one revision.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Sorted by key.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
}

/// A revisioned key-value store whose semantics match etcd v3.
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>>;

    /// Every key starting with `prefix`, sorted, at `revision` (None: the latest). Compacted or
    /// FutureRevision when that revision cannot be served.
    fn list(&self, prefix: &str, revision: Option<Revision>) -> BoxFuture<'_, Result<ListResult>>;

    /// Creates `key`; AlreadyExists if it exists. Durable when the future resolves.
    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue>>;

    /// Replaces `key`; NotFound if it does not exist; Conflict if `expected` is given and the
    /// key's mod_revision differs. Durable when the future resolves.
    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> BoxFuture<'_, Result<KeyValue>>;

    /// Deletes `key` and returns it as it was (with `mod_revision` = the deletion's revision);
    /// NotFound / Conflict as for `update`.
    fn delete(&self, key: &str, expected: Option<Revision>) -> BoxFuture<'_, Result<KeyValue>>;

    /// Every change under `prefix` with a revision greater than `after`, then live changes, in
    /// order, until the stream is dropped. Compacted if `after` < the compacted revision.
    fn watch(&self, prefix: &str, after: Revision) -> BoxFuture<'_, Result<WatchStream>>;

    /// The latest revision.
    fn current_revision(&self) -> Revision;

    /// The oldest revision still served by `list` and `watch`.
    fn compacted_revision(&self) -> Revision;

    /// Drops history older than `revision` (the latest value of every live key is kept).
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;
}
