//! What the network integration tests share: a network namespace held by a file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A network namespace held by a file (as a pod sandbox holds it); unmounted on drop.
pub struct Netns {
    pub path: PathBuf,
}

impl Netns {
    /// A new namespace held by `dir/name`.
    pub fn new(dir: &Path, name: &str) -> Netns {
        let path = dir.join(name);
        std::fs::write(&path, "").expect("create the namespace file");
        let status = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .arg("true")
            .status()
            .expect("run unshare");
        assert!(status.success(), "unshare --net failed");
        Netns { path }
    }

    /// Runs `args` inside; its output.
    #[allow(dead_code)]
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(args)
            .output()
            .expect("run nsenter")
    }

    /// `ip ARGS` inside; its stdout.
    #[allow(dead_code)]
    pub fn ip(&self, args: &[&str]) -> String {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .arg("ip")
            .args(args)
            .output()
            .expect("run nsenter ip");
        assert!(
            output.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `work` on a thread moved into the namespace, with a tokio runtime there.
    #[allow(dead_code)]
    pub fn run_in<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
    ) -> T {
        let path = self.path.clone();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the namespace file");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the test's namespace");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(work())
        })
        .join()
        .expect("the thread in the namespace")
    }

    /// Unmounts the file: the namespace goes once nothing else holds it.
    pub fn unmount(&self) {
        let _ = Command::new("umount")
            .arg(&self.path)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl AsRef<Path> for Netns {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.unmount();
    }
}
