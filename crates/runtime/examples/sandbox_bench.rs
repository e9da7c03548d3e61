//! Pod sandbox create + remove latency, without and with a shared PID namespace (as root):
//! `cargo build -p skiff && cargo run -p skiff-runtime --example sandbox_bench [N]`.
//! The pause process needs the skiff binary: `$SKIFF_BIN`, else `$CARGO_TARGET_DIR/debug/skiff`,
//! else `target/debug/skiff`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_runtime::sandbox::{Sandbox, SandboxSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200,
    };
    let skiff = match std::env::var_os("SKIFF_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("debug/skiff"),
    };
    let base = tempfile::Builder::new()
        .prefix("skiff-sandbox-bench-")
        .tempdir()?;
    let root = base.path().join("sandboxes");
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        for shared in [false, true] {
            let spec = SandboxSpec {
                uid: "bench".into(),
                namespace: "default".into(),
                name: "bench".into(),
                hostname: "bench".into(),
                share_process_namespace: shared,
                ..SandboxSpec::default()
            };
            let (mut create, mut remove) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let t = Instant::now();
                let sandbox = Sandbox::create(&root, &skiff, &spec)?;
                create.push(t.elapsed());
                let t = Instant::now();
                Sandbox::remove(&root, &sandbox.id)?;
                remove.push(t.elapsed());
            }
            let label = if shared {
                "with a shared PID namespace"
            } else {
                "net+uts+ipc+shm"
            };
            println!(
                "sandbox {label}, {n} runs: create p50 {} p99 {}, remove p50 {} p99 {}",
                ms(&mut create, 50),
                ms(&mut create, 99),
                ms(&mut remove, 50),
                ms(&mut remove, 99)
            );
        }
        Ok(())
    })();
    Sandbox::unmount_root(&root)?;
    result
}

fn ms(samples: &mut [Duration], percentile: usize) -> String {
    samples.sort();
    let i = (samples.len() * percentile / 100).min(samples.len() - 1);
    format!("{:.2} ms", samples[i].as_secs_f64() * 1e3)
}
