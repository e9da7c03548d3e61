//! A real registry for tests and benchmarks: Debian's `docker-registry` (distribution 2.8)
//! started on 127.0.0.1 on a free port with its storage in a temporary directory, fed with
//! `skopeo copy`, and killed (by the pid it was started with) when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const SKOPEO_BIN: &str = "skopeo";

/// A running registry. Its storage and log live in `dir`.
pub struct Registry {
    /// `127.0.0.1:<port>`: the registry part of image references.
    pub addr: String,
    dir: tempfile::TempDir,
    child: Child,
}

/// How the registry authenticates.
pub enum Auth {
    None,
    /// HTTP basic authentication against an htpasswd file with this user and bcrypt hash.
    Htpasswd {
        user: String,
        bcrypt: String,
    },
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::start_with(Auth::None)
    }

    pub fn start_with(auth: Auth) -> Registry {
        // The port is found free and then given to the registry; another process may take it
        // in between, so a registry that does not come up is tried again on a new port.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Registry::try_start(&auth) {
                Ok(registry) => return registry,
                Err(error) => last_error = error,
            }
        }
        panic!("the registry did not start: {last_error}");
    }

    fn try_start(auth: &Auth) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-registry-")
            .tempdir()
            .expect("temporary directory for the registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("registry storage directory");
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, bcrypt } => {
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{bcrypt}\n")).expect("htpasswd file");
                format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  \
                 secret: skiff-test-secret\n{auth_yaml}",
                storage.display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {REGISTRY_BIN} (Debian package docker-registry): {e}")
            });
        // From here on, dropping `registry` kills the process.
        let mut registry = Registry { addr, dir, child };
        registry.wait_ready(Duration::from_secs(20))?;
        Ok(registry)
    }

    /// Waits until `GET /v2/` answers (200, or 401 when authentication is on).
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if let Ok((code, _)) = self.get("/v2/") {
                if code == 200 || code == 401 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not answering after {timeout:?}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file in which the registry keeps a blob's bytes (`sha256:<hex>`).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far (application log and access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many `GET <path>` requests the access log shows.
    pub fn gets(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} HTTP/");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Waits until every request made before this call is in the access log: the registry logs a
    /// request when it has answered it, so a request made now and seen in the log comes after
    /// them.
    pub fn settle_log(&self) {
        static N: AtomicU64 = AtomicU64::new(0);
        let marker = format!("/v2/settle-{}/tags/list", N.fetch_add(1, Ordering::Relaxed));
        let _ = self.get(&marker);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(&marker) {
            assert!(
                Instant::now() < deadline,
                "the registry never logged {marker}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A plain `GET` on the registry: status code and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad response: {response:?}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// Pushes the image or index tagged `tag` in the OCI layout `layout` to `<addr>/<dest>`
    /// (`name:tag`), exactly as built: every platform of an index, digests and compression kept.
    pub fn push_oci(&self, layout: &Path, tag: &str, dest: &str, creds: Option<&str>) {
        self.skopeo_copy(&format!("oci:{}:{tag}", layout.display()), dest, creds);
    }

    /// Pushes a `dir:` layout (skopeo's directory transport: `manifest.json` and blobs by hex),
    /// which, unlike an OCI layout, may hold Docker schema 2 manifests.
    pub fn push_dir(&self, dir: &Path, dest: &str) {
        self.skopeo_copy(&format!("dir:{}", dir.display()), dest, None);
    }

    /// Pushes a `docker save` archive's image to `<addr>/<dest>`; skopeo compresses its
    /// layers with gzip on the way, as `docker push` does.
    pub fn push_docker_archive(&self, archive: &Path, dest: &str) {
        self.skopeo_run(
            &format!("docker-archive:{}", archive.display()),
            dest,
            None,
            &[],
        );
    }

    fn skopeo_copy(&self, source: &str, dest: &str, creds: Option<&str>) {
        self.skopeo_run(source, dest, creds, &["--all", "--preserve-digests"]);
    }

    fn skopeo_run(&self, source: &str, dest: &str, creds: Option<&str>, extra: &[&str]) {
        let mut cmd = Command::new(SKOPEO_BIN);
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ]);
        cmd.args(extra);
        if let Some(creds) = creds {
            cmd.arg("--dest-creds").arg(creds);
        }
        cmd.arg(source)
            .arg(format!("docker://{}/{dest}", self.addr));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run skopeo (Debian package skopeo): {e}"));
        assert!(
            out.status.success(),
            "skopeo copy {source} to {dest} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Only the process this harness started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
