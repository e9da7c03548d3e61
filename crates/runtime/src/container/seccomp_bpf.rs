//! A container's seccomp profile (OCI `linux.seccomp`) compiled to a classic BPF program and
//! installed, for `skiff internal exec` (`nsexec.rs`): an exec'd process is confined as the
//! container's own processes are, without runc or libseccomp (ADR 014).
//!
//! x86-64 only. The program checks the architecture first: a call from another ABI (i386's
//! `int 0x80`, or x32's numbers, which carry bit 30) fails with ENOSYS whatever the profile says,
//! as an exec'd process of a container has no business there. Then each rule in order: the
//! syscall number, then its argument conditions (EQ, NE, MASKED_EQ on 64 bits); the first rule
//! that matches gives the action, else the profile's default action. Names this kernel's
//! table does not know are skipped, as runc skips them.

use serde_json::Value;

use super::syscalls_x86_64::SYSCALLS;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

// struct seccomp_data: nr at 0, arch at 4, args at 16 (8 bytes each, low half first).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// One BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

fn stmt(code: u16, k: u32) -> Instruction {
    Instruction {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// The return value of an OCI action name, with its errno for ERRNO and TRACE.
fn action(name: &str, errno: Option<u64>) -> Result<u32, String> {
    let data = |default: u32| -> Result<u32, String> {
        let value = errno.map_or(Ok(default), |e| {
            u32::try_from(e)
                .ok()
                .filter(|e| *e <= 0xffff)
                .ok_or_else(|| format!("errnoRet {e} out of range"))
        })?;
        Ok(value)
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_ERRNO" => RET_ERRNO | data(EPERM)?,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => RET_TRAP,
        "SCMP_ACT_TRACE" => RET_TRACE | data(EPERM)?,
        "SCMP_ACT_LOG" => RET_LOG,
        other => return Err(format!("unsupported seccomp action {other:?}")),
    })
}

fn syscall_number(name: &str) -> Option<u32> {
    SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| SYSCALLS[i].1)
}

/// The instructions of one argument condition; each jumps `fail + <rest>` ahead when it does
/// not hold, so the caller passes how many instructions follow the condition in the rule.
fn condition(arg: &Value, after: usize) -> Result<Vec<Instruction>, String> {
    let index = arg["index"]
        .as_u64()
        .filter(|i| *i < 6)
        .ok_or_else(|| format!("seccomp argument index {} is not 0 to 5", arg["index"]))?;
    let value = arg["value"].as_u64().unwrap_or(0);
    let value_two = arg["valueTwo"].as_u64().unwrap_or(0);
    let op = arg["op"].as_str().unwrap_or_default();
    let low = OFFSET_ARGS + u32::try_from(index * 8).unwrap_or(0);
    let high = low + 4;
    let halves = |v: u64| ((v & 0xffff_ffff) as u32, (v >> 32) as u32);
    // Instruction counts below are fixed, so the skips can be computed up front.
    let skip = |n: usize| u8::try_from(n).map_err(|_| "seccomp rule too long".to_owned());
    Ok(match op {
        "SCMP_CMP_EQ" | "SCMP_CMP_MASKED_EQ" => {
            let (mask, want) = if op == "SCMP_CMP_EQ" {
                (u64::MAX, value)
            } else {
                (value, value_two)
            };
            let (mask_lo, mask_hi) = halves(mask);
            let (want_lo, want_hi) = halves(want & mask);
            // ld lo; and; jeq want_lo ? next : fail; ld hi; and; jeq want_hi ? next : fail
            vec![
                stmt(LD_W_ABS, low),
                stmt(ALU_AND_K, mask_lo),
                jump(JMP_JEQ_K, want_lo, 0, skip(3 + after)?),
                stmt(LD_W_ABS, high),
                stmt(ALU_AND_K, mask_hi),
                jump(JMP_JEQ_K, want_hi, 0, skip(after)?),
            ]
        }
        "SCMP_CMP_NE" => {
            let (want_lo, want_hi) = halves(value);
            // Holds unless both halves are equal: lo differs -> holds (jump over the high
            // check); hi equal too -> fail.
            vec![
                stmt(LD_W_ABS, low),
                jump(JMP_JEQ_K, want_lo, 0, 2),
                stmt(LD_W_ABS, high),
                jump(JMP_JEQ_K, want_hi, skip(after)?, 0),
            ]
        }
        other => {
            return Err(format!(
                "seccomp operator {other:?} is not supported by skiff's exec"
            ))
        }
    })
}

/// The BPF program of an OCI seccomp object.
pub fn compile(profile: &Value) -> Result<Vec<Instruction>, String> {
    let default = action(
        profile["defaultAction"]
            .as_str()
            .ok_or("seccomp profile without defaultAction")?,
        profile["defaultErrnoRet"].as_u64(),
    )?;
    let mut program = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, RET_ERRNO | ENOSYS),
        stmt(LD_W_ABS, OFFSET_NR),
        jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, RET_ERRNO | ENOSYS),
    ];
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        let ret = action(
            rule["action"].as_str().unwrap_or_default(),
            rule["errnoRet"].as_u64(),
        )?;
        let args: &[Value] = rule["args"].as_array().map_or(&[], Vec::as_slice);
        let names = rule["names"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(rule.get("name"))
            .filter_map(Value::as_str);
        for name in names {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            // The conditions, built back to front so each knows how much follows it.
            let mut body: Vec<Instruction> = vec![stmt(RET_K, ret)];
            for arg in args.iter().rev() {
                let mut cond = condition(arg, body.len())?;
                cond.extend(body);
                body = cond;
            }
            let skip = u8::try_from(body.len()).map_err(|_| "seccomp rule too long")?;
            program.push(stmt(LD_W_ABS, OFFSET_NR));
            program.push(jump(JMP_JEQ_K, nr, 0, skip));
            program.extend(body);
        }
    }
    program.push(stmt(RET_K, default));
    if program.len() > 4096 {
        return Err(format!(
            "seccomp profile compiles to {} instructions, over the kernel's 4096",
            program.len()
        ));
    }
    Ok(program)
}

/// Installs `program` on the calling thread (and what it executes). Needs no_new_privs or
/// CAP_SYS_ADMIN.
#[allow(unsafe_code)]
pub fn install(program: &[Instruction]) -> Result<(), String> {
    let len = u16::try_from(program.len()).map_err(|_| "seccomp program too long".to_owned())?;
    let prog = libc::sock_fprog {
        len,
        // Instruction is repr(C) with the layout of struct sock_filter.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, alive for the call; the kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(format!(
            "installing the seccomp filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Runs `check` in a forked child with `profile` installed; the child's exit code.
    fn in_child(profile: &Value, check: fn() -> i32) -> i32 {
        let program = compile(profile).expect("compiles");
        // SAFETY: the child only makes syscalls and exits, touching no lock another thread of
        // the test binary may hold.
        match unsafe { libc::fork() } {
            0 => {
                let code = rustix::thread::set_no_new_privs(true)
                    .map_err(|e| e.to_string())
                    .and_then(|()| install(&program))
                    .map_or(100, |()| check());
                // SAFETY: exits the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            pid => {
                let mut status = 0;
                // SAFETY: waits for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child died: {status}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    /// 0 when unshare(CLONE_NEWUSER) is refused with EPERM, 1 when it worked, 2 otherwise.
    fn unshare_user() -> i32 {
        // SAFETY: a plain syscall.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
        match (rc, std::io::Error::last_os_error().raw_os_error()) {
            (0, _) => 1,
            (_, Some(libc::EPERM)) => 0,
            _ => 2,
        }
    }

    /// 0 when getpid works.
    fn getpid_works() -> i32 {
        // SAFETY: a plain syscall.
        i32::from(unsafe { libc::getpid() } <= 0)
    }

    /// 0 when clone with CLONE_NEWNET fails with EPERM (a masked argument condition).
    fn clone_newnet() -> i32 {
        // SAFETY: raw clone with SIGCHLD and a namespace flag, no new stack: the child (if the
        // call were allowed) exits at once.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWNET | libc::SIGCHLD,
                0,
                0,
                0,
                0,
            )
        };
        if rc == 0 {
            // SAFETY: the child of the clone above.
            unsafe { libc::_exit(0) }
        }
        i32::from(
            !(rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)),
        )
    }

    #[test]
    fn the_runtime_default_profile_refuses_what_it_lists_and_allows_the_rest() {
        let profile = super::super::seccomp::runtime_default(&[]);
        assert_eq!(in_child(&profile, unshare_user), 0);
        assert_eq!(in_child(&profile, getpid_works), 0);
        assert_eq!(in_child(&profile, clone_newnet), 0);
        let allow_all = json!({"defaultAction": "SCMP_ACT_ALLOW"});
        assert_eq!(in_child(&allow_all, getpid_works), 0);
        // Without the profile the same calls work: the filter refused them above.
        assert_eq!(in_child(&allow_all, unshare_user), 1);
        assert_eq!(in_child(&allow_all, clone_newnet), 1);
    }

    #[test]
    fn bad_profiles_are_errors() {
        assert!(compile(&json!({})).is_err());
        assert!(compile(&json!({"defaultAction": "SCMP_ACT_MAYBE"})).is_err());
        let op = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}]}]});
        assert!(compile(&op).expect_err("GT").contains("SCMP_CMP_GT"));
        let unknown = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]});
        assert_eq!(compile(&unknown).expect("skipped").len(), 7);
    }
}
