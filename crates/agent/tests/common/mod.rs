//! An API server over real HTTPS on a SQLite store in a temporary directory, and a kube client
//! for it built from the admin kubeconfig it writes, as the agent inside `skiff server` does.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::sync::Arc;
use std::time::Duration;

use skiff_apiserver::{ApiServer, Config};
use skiff_store::SqliteStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub client: kube::Client,
    pub url: String,
    store: Arc<SqliteStore>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db/state.db")).expect("store opens");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            bind_address: "127.0.0.1".into(),
            port: 0,
            tls_sans: vec![],
        };
        let server = ApiServer::bind(&config, store.clone())
            .await
            .expect("server binds");
        let url = server.url.clone();
        let client = skiff_agent::client_from_kubeconfig(&server.kubeconfig)
            .await
            .expect("client from the admin kubeconfig");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            dir,
            client,
            url,
            store,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("token"))
            .expect("token written at bind")
            .trim()
            .to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.store.close();
    }
}

/// Polls `check` until it gives a value or `WAIT` runs out.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
