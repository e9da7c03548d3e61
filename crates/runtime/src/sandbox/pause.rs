//! `skiff internal pause`: PID 1 of a pod's shared PID namespace. It holds the namespace (a PID
//! namespace whose PID 1 is gone cannot be joined), reaps the zombies reparented to it and exits
//! on SIGTERM or SIGINT, like Kubernetes' pause. It allocates nothing after start and waits in
//! one blocking system call.

use std::process::ExitCode;

use rustix::process::WaitOptions;

/// Runs the pause process; returns only when asked to stop.
#[allow(unsafe_code)]
pub fn main() -> ExitCode {
    // Block the signals we act on and take them synchronously with sigwaitinfo: no handlers, so
    // no async-signal-safety concerns. Blocked signals are queued even for a namespace's PID 1,
    // which the kernel otherwise protects from signals it has no handler for.
    // SAFETY: sigset_t is plain data that sigemptyset initialises before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; the signal numbers are valid.
    let blocked = unsafe {
        libc::sigemptyset(&mut set) == 0
            && [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT]
                .iter()
                .all(|&signal| libc::sigaddset(&mut set, signal) == 0)
            && libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0
    };
    if !blocked {
        eprintln!("pause: cannot block signals");
        return ExitCode::FAILURE;
    }
    // Out of the agent's session and process group: a terminal's hang-up or Ctrl-C meant for the
    // agent does not reach the pod. After the signal mask, so that a session of its own also
    // tells the world it is ready for SIGTERM. Fails only if already a session leader: fine.
    let _ = rustix::process::setsid();
    // A child that died before the mask was set sent a SIGCHLD that was discarded (its default
    // action is to ignore it): reap it now, or it stays a zombie until the next one.
    reap_all();
    loop {
        // SAFETY: `set` is initialised above; a null siginfo pointer is allowed.
        let signal = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match signal {
            libc::SIGTERM | libc::SIGINT => return ExitCode::SUCCESS,
            libc::SIGCHLD => reap_all(),
            // EINTR (e.g. after SIGSTOP/SIGCONT): wait again.
            _ => {}
        }
    }
}

/// Reaps every child that has exited: several exits may have merged into one SIGCHLD.
fn reap_all() {
    while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
}
