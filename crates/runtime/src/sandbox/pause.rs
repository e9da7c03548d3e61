//! `skiff internal pause`: PID 1 of a pod's shared PID namespace. It holds the namespace, reaps
//! the zombies reparented to it and exits on SIGTERM or SIGINT, like Kubernetes' pause.

/// Runs the pause process; returns only when asked to stop.
pub fn main() -> std::process::ExitCode {
    todo!()
}
