//! How a command's process enters a running container (exec probes, hooks, `kubectl exec`),
//! prepared once per container instance ([`Entry`]) and done by a child that shares the
//! caller's memory and allocates nothing (ADR 018).
//!
//! The child is cloned with `CLONE_VM | CLONE_VFORK` on a stack of its own, as posix_spawn
//! does: no address space is copied for it, no copy-on-write fault follows, and its exec tears
//! down nothing of the caller's. The caller is suspended until the child has executed the
//! command or exited. Everything the child needs is made before the clone: the cgroup files
//! and the container init's pidfd are held open by the [`Entry`], the identity and limits are
//! numbers, the command line and environment C strings, and the candidates of the PATH search
//! full paths; a failure is worded into a buffer on the child's stack. The child joins, in
//! runc's order: the cgroup, the namespaces (one `setns` on the init's pidfd), the terminal,
//! rlimits, the OOM score, the seccomp filter and the identity (filter before the identity
//! without no_new_privs, after it with), the working directory; then executes the command.

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use serde_json::Value;

use super::cgroup::CgroupLayout;
use super::seccomp_bpf::Instruction;

/// Exit code of a failure before the command ran (runc's).
pub(crate) const FAILED: i32 = 255;

/// The namespaces an exec joins besides the PID namespace, in the order of setns on files.
pub(crate) const NAMESPACES: [(&str, c_int); 5] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
];

/// What every exec's process in one container instance does before its command.
pub(crate) struct Entry {
    pub id: String,
    /// The container's init, checked to be in the container's cgroup when opened: the
    /// namespaces are joined through it, and never another process's should its pid be reused.
    pub init: OwnedFd,
    pub init_pid: u32,
    /// Whether the init's PID namespace is the caller's own (hostPID): nothing to join then.
    pub pid_is_own: bool,
    /// The other namespaces to join, as CLONE_NEW* flags: those the container does not share
    /// with the caller, and always the mount namespace (joining it also sets the root and the
    /// working directory to the container's).
    pub namespaces: c_int,
    /// The container's `tasks` (v1) or `cgroup.procs` (v2) file in each hierarchy where it has
    /// a directory, opened for writing, whether it is a v1 one, and its directory (for errors).
    cgroup_joins: Vec<(OwnedFd, bool, String)>,
    /// The container's v2 directory, to clone the process into.
    pub v2_dir: Option<OwnedFd>,
    filter: Option<Vec<Instruction>>,
    no_new_privs: bool,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit, &'static str)>,
    /// The OOM score adjustment, as the text written to `/proc/self/oom_score_adj`.
    oom_score_adj: Option<Vec<u8>>,
    /// Capability numbers to drop from the bounding set.
    bounding_drops: Vec<libc::c_ulong>,
    groups: Vec<rustix::process::Gid>,
    uid: u32,
    gid: u32,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: Vec<libc::c_ulong>,
    cwd: CString,
    env: Vec<CString>,
    /// The directories of the environment's PATH (runc's default when it has none).
    path: Vec<Vec<u8>>,
}

impl Entry {
    /// The entry into container `id` (init `pid`, cgroup `cgroup_path` on the host's `layout`)
    /// of `process` (an OCI process, with the seccomp profile under [`super::exec::SECCOMP_KEY`]).
    pub(crate) fn new(
        id: &str,
        pid: u32,
        cgroup_path: Option<&str>,
        layout: Option<&CgroupLayout>,
        process: &Value,
    ) -> Result<Entry, String> {
        let init = super::manager::open_init(id, pid)
            .map(held)
            .ok_or_else(|| format!("container {id} is not running"))?;
        let pid_is_own = is_own_namespace(pid, "pid");
        let mut namespaces = libc::CLONE_NEWNS;
        for (name, flag) in &NAMESPACES[..4] {
            if !is_own_namespace(pid, name) {
                namespaces |= flag;
            }
        }
        let (cgroup_joins, v2_dir) = match (cgroup_path, layout) {
            (Some(path), Some(layout)) => {
                let mut joins = Vec::new();
                for (dir, v1) in layout.dirs_by_version(path) {
                    // A hierarchy where the runtime made no directory for the container has
                    // nothing to join. On v1 the single-threaded child moves its only thread
                    // through `tasks` ("0": itself), which needs no write lock and so no RCU
                    // grace period, where `cgroup.procs` would wait for one.
                    let file = dir.join(if v1 { "tasks" } else { "cgroup.procs" });
                    match std::fs::OpenOptions::new().write(true).open(&file) {
                        Ok(opened) => {
                            joins.push((held(opened.into()), v1, dir.display().to_string()))
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("opening {}: {e}", file.display())),
                    }
                }
                let v2_dir = layout
                    .v2_dir(path)
                    .and_then(|dir| std::fs::File::open(dir).ok())
                    .map(|dir| held(dir.into()));
                (joins, v2_dir)
            }
            (Some(_), None) => return Err("the host's cgroup layout is unknown".to_owned()),
            (None, _) => (Vec::new(), None),
        };
        // The container's seccomp filter (ADR 014).
        let filter = match process.get(super::exec::SECCOMP_KEY) {
            Some(profile) if !profile.is_null() => Some(super::seccomp_bpf::compile(profile)?),
            _ => None,
        };
        let mut rlimits = Vec::new();
        for limit in process["rlimits"].as_array().into_iter().flatten() {
            let name = limit["type"].as_str().unwrap_or_default();
            let (resource, name) =
                rlimit_resource(name).ok_or_else(|| format!("unknown rlimit {name}"))?;
            let value = libc::rlimit {
                rlim_cur: limit["soft"].as_u64().unwrap_or(libc::RLIM_INFINITY),
                rlim_max: limit["hard"].as_u64().unwrap_or(libc::RLIM_INFINITY),
            };
            rlimits.push((resource, value, name));
        }
        let capabilities = &process["capabilities"];
        let bounding = capability_set(&capabilities["bounding"])?;
        let last = last_capability();
        let bits = |set: u64| -> Vec<libc::c_ulong> {
            (0..=last)
                .filter(|bit| *bit < 64 && set & (1 << bit) != 0)
                .map(libc::c_ulong::from)
                .collect()
        };
        let user = &process["user"];
        let id_of = |key: &str| {
            user[key]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let cwd = process["cwd"].as_str().unwrap_or("/");
        let env: Vec<CString> = strings(&process["env"])
            .into_iter()
            .filter_map(|pair| CString::new(pair).ok())
            .collect();
        let path = env
            .iter()
            .find_map(|pair| pair.to_bytes().strip_prefix(b"PATH="))
            .unwrap_or(b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .split(|b| *b == b':')
            .map(<[u8]>::to_vec)
            .collect();
        Ok(Entry {
            id: id.to_owned(),
            init,
            init_pid: pid,
            pid_is_own,
            namespaces,
            cgroup_joins,
            v2_dir,
            filter,
            no_new_privs: process["noNewPrivileges"].as_bool() == Some(true),
            rlimits,
            oom_score_adj: process["oomScoreAdj"]
                .as_i64()
                .map(|score| score.to_string().into_bytes()),
            bounding_drops: bits(!bounding),
            groups: user["additionalGids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok()))
                .map(rustix::process::Gid::from_raw)
                .collect(),
            uid: id_of("uid"),
            gid: id_of("gid"),
            effective: capability_set(&capabilities["effective"])?,
            permitted: capability_set(&capabilities["permitted"])?,
            inheritable: capability_set(&capabilities["inheritable"])?,
            ambient: bits(capability_set(&capabilities["ambient"])?),
            cwd: CString::new(cwd).map_err(|_| format!("cwd {cwd:?} holds a NUL byte"))?,
            env,
            path,
        })
    }

    /// Whether the container's init has exited (its pidfd is readable then).
    pub(crate) fn init_exited(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.init,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0))
    }
}

/// The lowest descriptor number of those entries hold: half the soft limit (read at the first
/// entry; the launcher raises it first), far above the few the launcher uses for itself and
/// its requests. A child leaves every descriptor from there on behind at once (`close_range`
/// with `CLOSE_RANGE_UNSHARE`), so the entries of other containers cost an exec nothing.
fn held_base() -> RawFd {
    static BASE: std::sync::OnceLock<RawFd> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024);
        RawFd::try_from(soft / 2)
            .unwrap_or(RawFd::MAX / 2)
            .clamp(64, 1 << 20)
    })
}

/// `fd` moved to the numbers from [`held_base`] (as it is when that fails), close-on-exec.
#[allow(unsafe_code)]
fn held(fd: OwnedFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned by us from here.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, held_base()) };
    match moved {
        -1 => fd,
        // SAFETY: as above; the original is closed when `fd` drops.
        moved => unsafe { OwnedFd::from_raw_fd(moved) },
    }
}

/// Whether `/proc/PID/ns/NAME` is the caller's own namespace; false when either cannot be
/// read (the namespace is joined then). The caller's own are read once: they never change
/// (only its children's PID namespace does, which `/proc/self/ns/pid` does not show).
pub(crate) fn is_own_namespace(pid: u32, name: &str) -> bool {
    const NAMES: [&str; 5] = ["ipc", "uts", "net", "cgroup", "pid"];
    static OWN: std::sync::OnceLock<[Option<(u64, u64)>; 5]> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        NAMES.map(|name| {
            rustix::fs::stat(format!("/proc/self/ns/{name}").as_str())
                .ok()
                .map(|s| (s.st_dev, s.st_ino))
        })
    });
    let Some(Some(own)) = NAMES.iter().position(|n| *n == name).map(|i| own[i]) else {
        return false;
    };
    rustix::fs::stat(format!("/proc/{pid}/ns/{name}").as_str())
        .is_ok_and(|theirs| (theirs.st_dev, theirs.st_ino) == own)
}

/// Where a child that cannot start its command says why: the launcher's control socket
/// (`failed CODE exec failed: MESSAGE`) or `skiff internal exec`'s stderr
/// (`exec failed: MESSAGE`).
#[derive(Clone, Copy)]
pub(crate) enum Report<'a> {
    Control(BorrowedFd<'a>),
    Stderr,
}

/// One exec: the command and its descriptors, with what the child needs of them made before
/// the clone.
pub(crate) struct Exec<'a> {
    entry: &'a Entry,
    /// The command line, NUL-terminated strings and a null-terminated array of pointers to them.
    program: &'a str,
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// The files to try in order: the program itself when it names a path, else the program
    /// in each directory of PATH.
    candidates: Vec<CString>,
    terminal: bool,
    stdio: [RawFd; 3],
    report: Report<'a>,
    /// The namespaces to join, as (descriptor, CLONE_NEW* flags) in order.
    joins: Vec<(RawFd, c_int)>,
    /// Set before each clone attempt: whether the child is born in the container's v2 cgroup.
    born_in_v2: bool,
    /// Whether the child inherits the container's OOM score from the caller (see [`OwnScore`]).
    score_inherited: bool,
    /// Signals with a handler in the caller (the child resets them, as the handlers are in
    /// memory it shares).
    handled: &'static [c_int],
}

impl<'a> Exec<'a> {
    /// The exec of `args` (`args[0]` the program) in `entry`, with `stdio` and, with
    /// `terminal`, stdin as the controlling terminal; joining `joins`.
    pub(crate) fn new(
        entry: &'a Entry,
        args: &'a [String],
        terminal: bool,
        stdio: [BorrowedFd<'a>; 3],
        report: Report<'a>,
        joins: Vec<(RawFd, c_int)>,
    ) -> Result<Exec<'a>, String> {
        let program = args.first().ok_or("no command")?;
        let report_fd = match report {
            Report::Control(fd) => fd.as_raw_fd(),
            Report::Stderr => 2,
        };
        if stdio
            .iter()
            .map(|fd| fd.as_raw_fd())
            .chain([report_fd])
            .any(|fd| fd >= held_base())
        {
            return Err("too many open descriptors in the launcher".to_owned());
        }
        let c_args = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "the command holds a NUL byte".to_owned())?;
        let pointers = |strings: &[CString]| -> Vec<*const c_char> {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        let candidates = if program.contains('/') {
            vec![c_args[0].clone()]
        } else {
            entry
                .path
                .iter()
                .map(|dir| {
                    let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                    let mut file = dir.to_vec();
                    file.push(b'/');
                    file.extend_from_slice(program.as_bytes());
                    CString::new(file).unwrap_or_default()
                })
                .collect()
        };
        Ok(Exec {
            entry,
            program,
            argv: pointers(&c_args),
            envp: pointers(&entry.env),
            _args: c_args,
            candidates,
            terminal,
            stdio: stdio.map(|fd| fd.as_raw_fd()),
            report,
            joins,
            born_in_v2: false,
            score_inherited: false,
            handled: handled_signals(),
        })
    }
}

/// The signals with a handler in this process (Rust's runtime has SIGSEGV and SIGBUS), read
/// once: a child sharing this memory must not run them.
#[allow(unsafe_code)]
fn handled_signals() -> &'static [c_int] {
    static HANDLED: std::sync::OnceLock<Vec<c_int>> = std::sync::OnceLock::new();
    HANDLED.get_or_init(|| {
        (1..libc::SIGRTMIN())
            .filter(|signal| {
                // SAFETY: sigaction with a null new action only reads the current one into a
                // zeroed struct that lives across the call.
                let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
                let read = unsafe { libc::sigaction(*signal, std::ptr::null(), &mut current) };
                read == 0
                    && current.sa_sigaction != libc::SIG_DFL
                    && current.sa_sigaction != libc::SIG_IGN
            })
            .collect()
    })
}

/// A command's process started by [`spawn`]: its host pid, and a pidfd through which it is
/// signalled and its exit collected.
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Clones the child of `exec` (into the container's v2 cgroup when it has one and the kernel
/// can), which enters the container and executes the command; returns once it has (or has
/// failed, said through the exec's report, and exited). The caller's signals are blocked
/// meanwhile. The caller must not ignore SIGCHLD and must reap the child.
#[allow(unsafe_code)]
pub(crate) fn spawn(exec: &mut Exec<'_>) -> Result<Spawned, String> {
    const CLONE_FILES: u64 = 0x400;
    const CLONE_PIDFD: u64 = 0x1000;
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let stack = child_stack()?;
    let mut attempts = Vec::with_capacity(2);
    if let Some(dir) = &exec.entry.v2_dir {
        attempts.push(dir.as_raw_fd());
    }
    attempts.push(-1);
    // SAFETY: sigset_t values are plain data, filled by the calls that take them.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: both sets live across the calls.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let (inherited, own_score) = entry_score(exec.entry);
    exec.score_inherited = inherited;
    let mut last = String::new();
    let mut result = None;
    for cgroup in attempts {
        exec.born_in_v2 = cgroup >= 0;
        let mut pidfd: c_int = -1;
        // The child shares the descriptor table until it has used the entry's, then leaves
        // them behind (see `run`).
        let mut flags = CLONE_PIDFD | CLONE_FILES;
        if cgroup >= 0 {
            flags |= CLONE_INTO_CGROUP;
        }
        let args = CloneArgs {
            flags,
            pidfd: &mut pidfd as *mut c_int as u64,
            // (An exec resets the exit signal to SIGCHLD anyway.)
            exit_signal: libc::SIGCHLD as u64,
            cgroup: u64::try_from(cgroup).unwrap_or(0),
            ..CloneArgs::default()
        };
        // SAFETY: `args`, `pidfd`, `exec` and the stack live across the call; the child runs
        // `child` only, which reads `exec` and allocates nothing, then executes or exits.
        let pid = unsafe { clone_child(&args, stack, exec) };
        if pid > 0 && pidfd >= 0 {
            // SAFETY: CLONE_PIDFD made the kernel write a new descriptor, owned by us now.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            result = Some(Spawned {
                pid: pid as i32,
                pidfd,
            });
            break;
        }
        last = format!("clone3: {}", std::io::Error::from_raw_os_error(-pid as i32));
    }
    if let Some(own) = own_score {
        own.restore();
    }
    // SAFETY: `old` was filled above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result.ok_or(last)
}

/// The calling process's own OOM score adjustment, through its `/proc/self/oom_score_adj`
/// held open, and its value when first read. A child cloned while the process carries the
/// container's score inherits it, where opening `/proc/self/oom_score_adj` in the child (a
/// lookup in /proc per exec) cost as much as the rest of its entry. The callers (the
/// launcher, `skiff internal exec`) are single-threaded: the score is the process's.
struct OwnScore {
    file: std::fs::File,
    original: Vec<u8>,
}

impl OwnScore {
    fn get() -> Option<&'static OwnScore> {
        static OWN: std::sync::OnceLock<Option<OwnScore>> = std::sync::OnceLock::new();
        OWN.get_or_init(|| {
            use std::io::Read;
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/proc/self/oom_score_adj")
                .ok()?;
            let mut original = Vec::new();
            file.read_to_end(&mut original).ok()?;
            let original = original.trim_ascii().to_vec();
            Some(OwnScore { file, original })
        })
        .as_ref()
    }

    fn set(&self, score: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.file.write_at(score, 0).is_ok_and(|n| n == score.len())
    }

    /// Back to the original score (never below the minimum the process may set, as it was
    /// its own); a process that cannot must not fork anything more with the container's.
    fn restore(&self) {
        if !self.set(&self.original) {
            eprintln!("exec: cannot restore the OOM score adjustment; exiting");
            std::process::exit(1);
        }
    }
}

/// Gives the calling process the entry's OOM score for its next child, when the entry has one
/// that differs from the process's own and the process may take it (a score below the
/// process's minimum needs CAP_SYS_RESOURCE: the child then writes it itself, and fails as
/// it would have). Returns whether the child inherits the entry's score, and the process's
/// score to restore after the clone.
fn entry_score(entry: &Entry) -> (bool, Option<&'static OwnScore>) {
    let (Some(score), Some(own)) = (entry.oom_score_adj.as_deref(), OwnScore::get()) else {
        return (false, None);
    };
    if score == own.original.as_slice() {
        return (true, None);
    }
    match own.set(score) {
        true => (true, Some(own)),
        false => (false, None),
    }
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Size of the child's stack: the child's frames are small and fixed (no recursion, no
/// formatting beyond a line).
const STACK_SIZE: usize = 256 * 1024;

/// This thread's stack for the children it clones (one at a time: the thread is suspended
/// while its child runs), mapped once with a guard page below it; its lowest address.
#[allow(unsafe_code)]
fn child_stack() -> Result<usize, String> {
    thread_local! {
        static STACK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    STACK.with(|stack| {
        if stack.get() != 0 {
            return Ok(stack.get());
        }
        // SAFETY: sysconf with a constant name.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // SAFETY: a new anonymous private mapping; nothing else refers to that memory. The
        // mapping is kept for the thread's life (a few hundred KiB, once per thread).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_SIZE + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "mapping a stack for the exec's process: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the lowest page of the mapping made above becomes its guard.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(format!(
                "guarding the exec's stack: {}",
                std::io::Error::last_os_error()
            ));
        }
        let low = base as usize + page;
        stack.set(low);
        Ok(low)
    })
}

/// clone3 with CLONE_VM and CLONE_VFORK added to `args`, the child on `stack`
/// (`STACK_SIZE` bytes from that address) running [`child`] on `exec`. Returns the child's pid,
/// or minus the errno.
///
/// # Safety
/// `stack` must be a mapping of `STACK_SIZE` writable bytes no other thread uses; `args` and
/// `exec` must be valid for the call.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
unsafe fn clone_child(args: &CloneArgs, stack: usize, exec: &mut Exec<'_>) -> i64 {
    const CLONE_VM: u64 = 0x100;
    const CLONE_VFORK: u64 = 0x4000;
    let args = CloneArgs {
        flags: args.flags | CLONE_VM | CLONE_VFORK,
        stack: stack as u64,
        stack_size: STACK_SIZE as u64,
        ..*args
    };
    let ret: i64;
    // The child starts after `syscall` with rax 0 and the stack pointer at the top of its
    // stack (16-byte aligned, as a call needs): it calls `child_main(exec)`, which never
    // returns (exit is there in case). The parent jumps over that with the pid or -errno.
    // SAFETY: per this function's contract; rcx and r11 are clobbered by `syscall`, r12 and
    // r13 are preserved by it and carry the child's function and argument.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") exec as *mut Exec<'_> as *mut c_void,
            in("r13") child_main as extern "C" fn(*mut c_void) -> c_int,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Elsewhere: clone3 as a fork (the child has a copy of the memory), the child running
/// [`child`] on `exec`.
///
/// # Safety
/// The calling process must be single-threaded: the child runs code of this process.
#[cfg(not(target_arch = "x86_64"))]
#[allow(unsafe_code)]
unsafe fn clone_child(args: &CloneArgs, _stack: usize, exec: &mut Exec<'_>) -> i64 {
    // SAFETY: with no stack given, clone3 duplicates the calling process as fork does.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match pid {
        0 => {
            child_main(exec as *mut Exec<'_> as *mut c_void);
            // SAFETY: child_main does not return; in case, end the child.
            unsafe { libc::_exit(FAILED) }
        }
        -1 => -i64::from(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ),
        pid => pid,
    }
}

/// The child's entry: enters the container and executes the command; on failure, says why
/// and exits with runc's code (127 not found, 126 cannot run, 255 otherwise).
#[allow(unsafe_code)]
extern "C" fn child_main(exec: *mut c_void) -> c_int {
    // SAFETY: the parent passed a valid `Exec` and is suspended until this process executes or
    // exits, so it stays valid and unchanged.
    let exec = unsafe { &*(exec as *const Exec<'_>) };
    let mut line = Line::new();
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(exec, &mut line)))
        .unwrap_or(FAILED);
    let (fd, prefix) = match exec.report {
        Report::Control(fd) => (fd.as_raw_fd(), "failed "),
        Report::Stderr => (2, ""),
    };
    let mut out = Line::new();
    if prefix.is_empty() {
        out.push("exec failed: ");
    } else {
        out.push(prefix);
        out.number(i64::from(code));
        out.push(" exec failed: ");
    }
    out.push_bytes(line.bytes());
    out.push_bytes(b"\n");
    // SAFETY: writes from a buffer on this stack; _exit ends the process at once, running
    // nothing of the caller's (no atexit handlers, no buffers flushed twice).
    unsafe {
        libc::write(fd, out.buf.as_ptr().cast(), out.len);
        libc::_exit(code)
    }
}

/// The last OS error's number.
fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Every step of the entry, then the exec; returns only on failure, with `line` saying why.
#[allow(unsafe_code)]
fn run(exec: &Exec<'_>, line: &mut Line) -> i32 {
    let entry = exec.entry;
    macro_rules! check {
        ($ok:expr, $($part:expr),+) => {
            if !$ok {
                let e = errno();
                $(line.push($part);)+
                line.push(": ");
                line.errno(e);
                return FAILED;
            }
        };
    }
    // SAFETY (the calls below): plain system calls with integer arguments, or pointers to
    // memory of `exec` and `entry` (valid: the parent waits) or on this stack.
    unsafe {
        for signal in exec.handled.iter().copied().chain([libc::SIGPIPE]) {
            libc::signal(signal, libc::SIG_DFL);
        }
        // With a terminal, the session is made after the namespaces, with the terminal.
        if !exec.terminal {
            check!(libc::setsid() >= 0, "setsid");
        }
        // The descriptor table is the caller's until the entry's descriptors are used: no
        // descriptor may be opened, moved or closed before then.
        for (fd, v1, dir) in &entry.cgroup_joins {
            if !v1 && exec.born_in_v2 {
                continue;
            }
            let written = libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1);
            check!(written == 1, "joining the cgroup ", dir);
        }
        // After the cgroup: the container's cgroup namespace is rooted at it.
        for (fd, flags) in &exec.joins {
            check!(
                libc::setns(*fd, *flags) == 0,
                "joining the container's namespaces"
            );
        }
        // A table of its own, without the descriptors held from `held_base` on (Linux 5.9;
        // before, a copy of the whole table, its close-on-exec ones closed by the exec).
        const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;
        let left = libc::syscall(
            libc::SYS_close_range,
            held_base() as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_UNSHARE,
        ) == 0;
        check!(
            left || libc::unshare(libc::CLONE_FILES) == 0,
            "unsharing the descriptor table"
        );
        for (target, fd) in exec.stdio.iter().enumerate() {
            let target = target as c_int;
            if *fd != target {
                check!(libc::dup2(*fd, target) >= 0, "setting up stdio");
            }
        }
        // Nothing else reaches the command, whatever this process inherited (as runc): the
        // exec closes every other descriptor (Linux 5.11; before, only close-on-exec ones).
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
        if exec.terminal {
            check!(libc::setsid() >= 0, "setsid");
            check!(
                libc::ioctl(0, libc::TIOCSCTTY, 0) == 0,
                "making the terminal the controlling one"
            );
        }
        for (resource, value, name) in &entry.rlimits {
            check!(libc::setrlimit(*resource, value) == 0, "setting ", name);
        }
        if let Some(score) = entry
            .oom_score_adj
            .as_ref()
            .filter(|_| !exec.score_inherited)
        {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            check!(fd >= 0, "setting the OOM score");
            let written = libc::write(fd, score.as_ptr().cast(), score.len());
            libc::close(fd);
            check!(written >= 0, "setting the OOM score");
        }
        // The container's seccomp filter (ADR 014), as runc orders it: without no_new_privs
        // it needs CAP_SYS_ADMIN, so before the identity drops it; with it, after.
        let filter = entry.filter.as_deref();
        if let Some(filter) = filter.filter(|_| !entry.no_new_privs) {
            check!(
                super::seccomp_bpf::install(filter).is_ok(),
                "installing the seccomp filter"
            );
        }
        for bit in &entry.bounding_drops {
            check!(
                libc::prctl(libc::PR_CAPBSET_DROP, *bit, 0, 0, 0) == 0,
                "dropping a capability from the bounding set"
            );
        }
        // Groups, gid and uid (keeping capabilities across the change of uid), then the
        // effective, permitted, inheritable and ambient sets, as runc does. rustix makes each
        // a system call of this thread only.
        check!(
            rustix::thread::set_keep_capabilities(true).is_ok(),
            "keepcaps"
        );
        check!(
            rustix::thread::set_thread_groups(&entry.groups).is_ok(),
            "setgroups"
        );
        check!(
            rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(entry.gid)).is_ok(),
            "setgid"
        );
        check!(
            rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(entry.uid)).is_ok(),
            "setuid"
        );
        check!(
            rustix::thread::set_keep_capabilities(false).is_ok(),
            "keepcaps"
        );
        let sets = rustix::thread::CapabilitySets {
            effective: rustix::thread::CapabilitySet::from_bits_retain(entry.effective),
            permitted: rustix::thread::CapabilitySet::from_bits_retain(entry.permitted),
            inheritable: rustix::thread::CapabilitySet::from_bits_retain(entry.inheritable),
        };
        check!(
            rustix::thread::set_capabilities(None, sets).is_ok(),
            "capset"
        );
        for bit in &entry.ambient {
            let raised = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                *bit,
                0,
                0,
            );
            check!(raised == 0, "raising an ambient capability");
        }
        if entry.no_new_privs {
            check!(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0,
                "no_new_privs"
            );
            if let Some(filter) = filter {
                check!(
                    super::seccomp_bpf::install(filter).is_ok(),
                    "installing the seccomp filter"
                );
            }
        }
        if libc::chdir(entry.cwd.as_ptr()) != 0 {
            let e = errno();
            line.push("chdir to cwd (\"");
            line.push_bytes(entry.cwd.to_bytes());
            line.push("\") set in config.json failed: ");
            line.errno(e);
            return FAILED;
        }
        // The command starts with no signal blocked.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // The PATH search of runc's exec (Go's LookPath): the first candidate that is a file
        // with an execute bit, found by stat rather than by executing each (a failed execve
        // costs a new memory map); a path names its file, which must be one too.
        let mut failure = libc::ENOENT;
        for file in &exec.candidates {
            let mut meta: libc::stat = std::mem::zeroed();
            if libc::stat(file.as_ptr(), &mut meta) != 0 {
                if exec.program.contains('/') {
                    failure = errno();
                }
                continue;
            }
            if meta.st_mode & libc::S_IFMT == libc::S_IFDIR || meta.st_mode & 0o111 == 0 {
                if exec.program.contains('/') {
                    failure = libc::EACCES;
                }
                continue;
            }
            libc::execve(file.as_ptr(), exec.argv.as_ptr(), exec.envp.as_ptr());
            failure = errno();
            break;
        }
        let program = exec.program;
        line.push("unable to start container process: exec: \"");
        line.push(program);
        match failure {
            libc::ENOENT if !program.contains('/') => {
                line.push("\": executable file not found in $PATH");
                127
            }
            libc::ENOENT => {
                line.push("\": no such file or directory");
                127
            }
            libc::EACCES => {
                line.push("\": permission denied");
                126
            }
            other => {
                line.push("\": ");
                line.errno(other);
                126
            }
        }
    }
}

/// A line of text on the stack: what a child that may not allocate says (cut at its size).
struct Line {
    buf: [u8; 1024],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 1024],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push(&mut self, text: &str) {
        // Newlines would end the report's line early.
        for part in text.split('\n') {
            if part.as_ptr() != text.as_ptr() {
                self.push_bytes(b" ");
            }
            self.push_bytes(part.as_bytes());
        }
    }

    fn number(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.push_bytes(b"-");
        }
        self.push_bytes(&digits[at..]);
    }

    /// The error's text as `std::io::Error` words it: `TEXT (os error N)`.
    #[allow(unsafe_code)]
    fn errno(&mut self, e: i32) {
        let mut text = [0u8; 128];
        // SAFETY: strerror_r writes at most the buffer's length, NUL-terminated.
        let ok = unsafe { libc::strerror_r(e, text.as_mut_ptr().cast(), text.len()) } == 0;
        let end = text.iter().position(|b| *b == 0).unwrap_or(0);
        if ok && end > 0 {
            self.push_bytes(&text[..end]);
        } else {
            self.push("error");
        }
        self.push(" (os error ");
        self.number(i64::from(e));
        self.push(")");
    }
}

/// The strings of a JSON array (none when it is not one).
pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn rlimit_resource(name: &str) -> Option<(libc::__rlimit_resource_t, &'static str)> {
    Some(match name {
        "RLIMIT_AS" => (libc::RLIMIT_AS, "RLIMIT_AS"),
        "RLIMIT_CORE" => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        "RLIMIT_CPU" => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        "RLIMIT_DATA" => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        "RLIMIT_FSIZE" => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        "RLIMIT_LOCKS" => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        "RLIMIT_MEMLOCK" => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        "RLIMIT_MSGQUEUE" => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        "RLIMIT_NICE" => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        "RLIMIT_NOFILE" => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        "RLIMIT_NPROC" => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        "RLIMIT_RSS" => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        "RLIMIT_RTPRIO" => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        "RLIMIT_RTTIME" => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
        "RLIMIT_SIGPENDING" => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        "RLIMIT_STACK" => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        _ => return None,
    })
}

/// The capability set named by `names` (`CAP_CHOWN`, ...); an unknown name is an error.
fn capability_set(names: &Value) -> Result<u64, String> {
    let mut set = 0u64;
    for name in strings(names) {
        let bit = super::spec::capability_number(&name)
            .ok_or_else(|| format!("unknown capability {name:?}"))?;
        set |= 1 << bit;
    }
    Ok(set)
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_hold_text_numbers_and_errors_without_newlines() {
        let mut line = Line::new();
        line.push("a\nb ");
        line.number(-127);
        line.push(" ");
        line.number(0);
        line.push(" ");
        line.errno(libc::ENOENT);
        assert_eq!(
            std::str::from_utf8(line.bytes()).expect("UTF-8"),
            format!(
                "a b -127 0 {}",
                std::io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
        let mut long = Line::new();
        for _ in 0..200 {
            long.push("0123456789");
        }
        assert_eq!(long.bytes().len(), 1024);
    }
}
