//! A container's seccomp profile (OCI `linux.seccomp`) compiled to a classic BPF program and
//! installed, for exec'd processes (`entry.rs`): an exec'd process is confined as the
//! container's own processes are, without runc or libseccomp (ADR 014).
//!
//! x86-64 only. The program checks the architecture first: a call from another ABI (i386's
//! `int 0x80`, or x32's numbers, which carry bit 30) fails with ENOSYS whatever the profile says,
//! as an exec'd process of a container has no business there. Then the profile's meaning: the
//! first rule naming the syscall whose argument conditions (EQ, NE, MASKED_EQ on 64 bits) hold
//! gives the action, else the profile's default action. Names this kernel's table does not
//! know are skipped, as runc skips them.
//!
//! The program is a search tree over syscall numbers, not a chain of the rules: the kernel
//! runs each new filter once per syscall number to fill its action cache (at every exec and
//! exec probe), so what it costs is the sum of the paths. Numbers that always get the same
//! action are merged into ranges, a balanced search reaches a range in about log2(ranges)
//! `jge`s, and only a number with conditional rules has a chain below it.

use std::collections::BTreeMap;

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
const JMP_JA: u16 = 0x05;
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

/// The return value of a profile's `defaultAction` (with its `defaultErrnoRet`).
fn default_action(profile: &Value) -> Result<u32, String> {
    action(
        profile["defaultAction"]
            .as_str()
            .ok_or("seccomp profile without defaultAction")?,
        profile["defaultErrnoRet"].as_u64(),
    )
}

fn syscall_number(name: &str) -> Option<u32> {
    SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| SYSCALLS[i].1)
}

/// One argument condition, on the 64-bit argument `index`. EQ is MASKED_EQ with a full mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    /// `args[index] & mask == want` (`want` already masked).
    MaskedEq { index: u32, mask: u64, want: u64 },
    /// `args[index] != value`.
    Ne { index: u32, value: u64 },
}

impl Condition {
    fn parse(arg: &Value) -> Result<Self, String> {
        let index = arg["index"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| *i < 6)
            .ok_or_else(|| format!("seccomp argument index {} is not 0 to 5", arg["index"]))?;
        let value = arg["value"].as_u64().unwrap_or(0);
        let value_two = arg["valueTwo"].as_u64().unwrap_or(0);
        Ok(match arg["op"].as_str().unwrap_or_default() {
            "SCMP_CMP_EQ" => Self::MaskedEq {
                index,
                mask: u64::MAX,
                want: value,
            },
            "SCMP_CMP_MASKED_EQ" => Self::MaskedEq {
                index,
                mask: value,
                want: value_two & value,
            },
            "SCMP_CMP_NE" => Self::Ne { index, value },
            other => {
                return Err(format!(
                    "seccomp operator {other:?} is not supported by skiff's exec"
                ))
            }
        })
    }

    /// True for every argument (a zero mask): such a condition need not be checked at all.
    fn always_holds(&self) -> bool {
        matches!(self, Self::MaskedEq { mask: 0, .. })
    }
}

/// One rule as it applies to one syscall number: all its conditions hold, then `ret`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    conditions: Vec<Condition>,
    ret: u32,
}

/// What the filter does for one syscall number once the architecture is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    /// The same return whatever the arguments: reached with loads of `nr` and jumps only,
    /// so the kernel's action cache can decide it without running the filter.
    Always(u32),
    /// The rules in order, the first whose conditions hold giving its return, else `otherwise`.
    Rules { rules: Vec<Rule>, otherwise: u32 },
}

impl Decision {
    /// The decision of a number's rules (in the profile's order) under `default`: rules after
    /// the first unconditional one are never reached, and trailing rules returning what
    /// follows them change nothing.
    fn of(rules: &[Rule], default: u32) -> Self {
        let mut chain = Vec::new();
        let mut otherwise = default;
        for rule in rules {
            if rule.conditions.is_empty() {
                otherwise = rule.ret;
                break;
            }
            chain.push(rule.clone());
        }
        while chain.last().is_some_and(|r| r.ret == otherwise) {
            chain.pop();
        }
        if chain.is_empty() {
            Self::Always(otherwise)
        } else {
            Self::Rules {
                rules: chain,
                otherwise,
            }
        }
    }
}

/// Where a jump goes: an instruction already laid out (its place counted from the program's
/// end), or a `ret` of this value wherever one is in reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    At(usize),
    Ret(u32),
}

/// How far (in instructions skipped) a target may be when a conditional jump is planned: a
/// jump may need up to two instructions (a `ret` or a `ja` for each side) placed between it
/// and its targets, and still skip at most 255.
const REACH: usize = 253;

/// Lays a program out from its end back to its start. Every jump goes forward, so each
/// target is already placed when a jump to it is made, and its distance is known: a target
/// out of a conditional jump's 8-bit reach gets a `ja` (32-bit) trampoline next to the jump.
#[derive(Default)]
struct Backward {
    /// The instructions, last first.
    reversed: Vec<Instruction>,
    /// The nearest `ret` of each value laid out so far.
    rets: std::collections::HashMap<u32, usize>,
}

impl Backward {
    /// Places `instruction` before all placed so far; its label.
    fn push(&mut self, instruction: Instruction) -> usize {
        self.reversed.push(instruction);
        self.reversed.len()
    }

    /// How many instructions a jump placed now skips to reach `label`.
    fn distance(&self, label: usize) -> usize {
        self.reversed.len() - label
    }

    /// The `k` of a `ja` placed now to `label`.
    fn ja_skip(&self, label: usize) -> u32 {
        // A profile's rules are a JSON document in memory: its program, of a few
        // instructions per condition, cannot approach 2^32 (and the kernel's 4096 is checked
        // once it is laid out).
        u32::try_from(self.distance(label)).expect("a program shorter than 2^32")
    }

    fn ret(&mut self, value: u32) -> usize {
        let label = self.push(stmt(RET_K, value));
        self.rets.insert(value, label);
        label
    }

    /// A label for `target` within `REACH` of a jump placed now, placing a `ret` or a `ja`
    /// when the target is farther.
    fn reach(&mut self, target: Target) -> usize {
        match target {
            Target::At(label) if self.distance(label) <= REACH => label,
            Target::At(label) => {
                let skip = self.ja_skip(label);
                self.push(stmt(JMP_JA, skip))
            }
            Target::Ret(value) => match self.rets.get(&value) {
                Some(&label) if self.distance(label) <= REACH => label,
                _ => self.ret(value),
            },
        }
    }

    /// `if A <op> k goto yes else goto no`.
    fn jump(&mut self, code: u16, k: u32, yes: Target, no: Target) -> Target {
        if yes == no {
            return yes;
        }
        let yes = self.reach(yes);
        let no = self.reach(no);
        let skip = |label| {
            u8::try_from(self.distance(label))
                .expect("reach() left each label within REACH, two instructions ago at most")
        };
        let instruction = jump(code, k, skip(yes), skip(no));
        Target::At(self.push(instruction))
    }

    /// Makes `target` the next instruction to run after what is placed next.
    fn fall_to(&mut self, target: Target) {
        match target {
            Target::At(label) if label == self.reversed.len() => {}
            Target::At(label) => {
                let skip = self.ja_skip(label);
                self.push(stmt(JMP_JA, skip));
            }
            Target::Ret(value) => {
                self.ret(value);
            }
        }
    }

    /// One condition: `pass` when it holds, else `fail`; its first instruction.
    fn condition(&mut self, condition: &Condition, pass: Target, fail: Target) -> Target {
        if pass == fail {
            return pass;
        }
        let (Condition::MaskedEq { index, .. } | Condition::Ne { index, .. }) = condition;
        let low = OFFSET_ARGS + 8 * index;
        let high = low + 4;
        let halves = |v: u64| [(high, (v >> 32) as u32), (low, (v & 0xffff_ffff) as u32)];
        match *condition {
            Condition::MaskedEq { mask, want, .. } => {
                // Low half then high half, each: ld; and (unless the mask is full); jeq.
                // Laid out back to front, so the high half first; a half with a zero mask
                // always holds and is left out.
                let mut pass = pass;
                for ((offset, mask), (_, want)) in halves(mask).into_iter().zip(halves(want)) {
                    if mask == 0 {
                        continue;
                    }
                    self.jump(JMP_JEQ_K, want, pass, fail);
                    if mask != u32::MAX {
                        self.push(stmt(ALU_AND_K, mask));
                    }
                    pass = Target::At(self.push(stmt(LD_W_ABS, offset)));
                }
                pass
            }
            Condition::Ne { value, .. } => {
                // Holds unless both halves are equal: the low half differs -> holds; else the
                // high half decides.
                let [(high, want_high), (low, want_low)] = halves(value);
                self.jump(JMP_JEQ_K, want_high, fail, pass);
                let check_high = Target::At(self.push(stmt(LD_W_ABS, high)));
                self.jump(JMP_JEQ_K, want_low, check_high, pass);
                Target::At(self.push(stmt(LD_W_ABS, low)))
            }
        }
    }

    /// A syscall number's decision; where it starts.
    fn decision(&mut self, decision: &Decision) -> Target {
        match decision {
            Decision::Always(ret) => Target::Ret(*ret),
            Decision::Rules { rules, otherwise } => {
                let mut next = Target::Ret(*otherwise);
                for rule in rules.iter().rev() {
                    let mut pass = Target::Ret(rule.ret);
                    for condition in rule.conditions.iter().rev() {
                        pass = self.condition(condition, pass, next);
                    }
                    next = pass;
                }
                next
            }
        }
    }

    /// A balanced binary search over `ranges` (each from its start to the next one's), with
    /// the syscall number in A; where it starts.
    fn search(&mut self, ranges: &[(u32, Decision)]) -> Target {
        match ranges {
            [] => Target::Ret(RET_ERRNO | ENOSYS),
            [(_, decision)] => self.decision(decision),
            _ => {
                let (below, above) = ranges.split_at(ranges.len() / 2);
                let high = self.search(above);
                let low = self.search(below);
                self.jump(JMP_JGE_K, above[0].0, high, low)
            }
        }
    }
}

/// Every syscall number below the x32 bit in ranges of the same decision, in order: each
/// named number's decision, unnamed numbers the default, adjacent numbers that always return
/// the same merged.
fn ranges(by_number: &BTreeMap<u32, Vec<Rule>>, default: u32) -> Vec<(u32, Decision)> {
    let mut all = Vec::new();
    let mut next = 0;
    for (&nr, rules) in by_number {
        if nr > next {
            all.push((next, Decision::Always(default)));
        }
        all.push((nr, Decision::of(rules, default)));
        next = nr + 1;
    }
    if next < X32_SYSCALL_BIT {
        all.push((next, Decision::Always(default)));
    }
    let mut merged: Vec<(u32, Decision)> = Vec::with_capacity(all.len());
    for (start, decision) in all {
        match (merged.last(), &decision) {
            (Some((_, Decision::Always(before))), Decision::Always(now)) if before == now => {}
            _ => merged.push((start, decision)),
        }
    }
    merged
}

/// The BPF program of an OCI seccomp object: the head (architecture, x32), then a search over
/// the ranges of syscall numbers (module comment). A path to a number whose action does not
/// depend on its arguments loads only `nr` and uses only `jge`, `ja` and `ret`, which the
/// kernel's action cache can emulate.
pub fn compile(profile: &Value) -> Result<Vec<Instruction>, String> {
    let default = default_action(profile)?;
    let mut by_number: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        let ret = action(
            rule["action"].as_str().unwrap_or_default(),
            rule["errnoRet"].as_u64(),
        )?;
        let numbers: Vec<u32> = rule["names"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(rule.get("name"))
            .filter_map(Value::as_str)
            // Names this kernel's table does not know are skipped, as runc skips them.
            .filter_map(syscall_number)
            .collect();
        if numbers.is_empty() {
            continue;
        }
        let mut conditions = Vec::new();
        for arg in rule["args"].as_array().into_iter().flatten() {
            let condition = Condition::parse(arg)?;
            if !condition.always_holds() {
                conditions.push(condition);
            }
        }
        for nr in numbers {
            by_number.entry(nr).or_default().push(Rule {
                conditions: conditions.clone(),
                ret,
            });
        }
    }
    let mut program = Backward::default();
    let tree = program.search(&ranges(&by_number, default));
    program.fall_to(tree);
    // The head, kept as the linear chain had it: a foreign architecture or an x32 number (or
    // any number from the x32 bit up) fails with ENOSYS, through loads of arch and nr only.
    for instruction in [
        stmt(RET_K, RET_ERRNO | ENOSYS),
        jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(LD_W_ABS, OFFSET_NR),
        stmt(RET_K, RET_ERRNO | ENOSYS),
        jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(LD_W_ABS, OFFSET_ARCH),
    ] {
        program.push(instruction);
    }
    let mut program = program.reversed;
    program.reverse();
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
pub fn install(program: &[Instruction]) -> std::io::Result<()> {
    // (No allocation here, even on failure: the exec's child calls it, sharing its parent's
    // memory; see entry.rs.)
    let len = u16::try_from(program.len())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
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
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The compiler this module had before the search tree, kept as the reference the tree
    /// must decide as: the head, then for each rule and each of its names `ld nr; jeq NR;
    /// <conditions>; ret ACTION` in order, then the default.
    fn linear(profile: &Value) -> Result<Vec<Instruction>, String> {
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
                    vec![
                        stmt(LD_W_ABS, low),
                        jump(JMP_JEQ_K, want_lo, 0, 2),
                        stmt(LD_W_ABS, high),
                        jump(JMP_JEQ_K, want_hi, skip(after)?, 0),
                    ]
                }
                other => return Err(format!("seccomp operator {other:?}")),
            })
        }
        let default = default_action(profile)?;
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
        Ok(program)
    }

    /// What a filter sees of a syscall (`struct seccomp_data`, less the instruction pointer).
    #[derive(Clone, Copy, Debug)]
    struct Call {
        nr: u32,
        arch: u32,
        args: [u64; 6],
    }

    /// How one run of a program went.
    #[derive(Debug, PartialEq, Eq)]
    struct Run {
        ret: u32,
        /// Instructions run.
        steps: usize,
        /// Whether the path used only what the kernel's action cache emulates (loads of nr
        /// and arch, `and`, jumps with K, `ja`, `ret` K), so the kernel can cache its result.
        cacheable: bool,
        /// Instructions the kernel's cache emulates on this path: all, or up to the first
        /// load of an argument, where it gives up.
        emulated: usize,
    }

    const JMP_JGT_K: u16 = 0x25;
    const JMP_JSET_K: u16 = 0x45;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

    /// A classic BPF interpreter for the instructions this module emits; panics on anything
    /// else, on a load outside `seccomp_data` and on a jump out of the program, as the kernel
    /// would refuse such a program.
    fn run(program: &[Instruction], call: &Call) -> Run {
        let mut a: u32 = 0;
        let mut pc = 0;
        let mut steps = 0;
        let mut cacheable = true;
        let mut emulated = 0;
        loop {
            let i = program
                .get(pc)
                .unwrap_or_else(|| panic!("ran off the program at {pc}"));
            steps += 1;
            let mut next = pc + 1;
            let branch = |taken: bool| pc + 1 + usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => {
                    a = match i.k {
                        OFFSET_NR => call.nr,
                        OFFSET_ARCH => call.arch,
                        k if (OFFSET_ARGS..OFFSET_ARGS + 48).contains(&k) && k % 4 == 0 => {
                            if cacheable {
                                emulated = steps;
                            }
                            cacheable = false;
                            let arg = call.args[((k - OFFSET_ARGS) / 8) as usize];
                            if k % 8 == 0 {
                                arg as u32
                            } else {
                                (arg >> 32) as u32
                            }
                        }
                        k => panic!("load at {k}"),
                    }
                }
                ALU_AND_K => a &= i.k,
                JMP_JEQ_K => next = branch(a == i.k),
                JMP_JGE_K => next = branch(a >= i.k),
                JMP_JGT_K => next = branch(a > i.k),
                JMP_JSET_K => next = branch(a & i.k != 0),
                JMP_JA => next = pc + 1 + i.k as usize,
                RET_K => {
                    return Run {
                        ret: i.k,
                        steps,
                        cacheable,
                        emulated: if cacheable { steps } else { emulated },
                    }
                }
                code => panic!("instruction {code:#x} at {pc}"),
            }
            pc = next;
        }
    }

    /// The kernel's checks of a classic program that matter here: a length it takes, every
    /// jump inside it, a `ret` last.
    fn assert_loadable(program: &[Instruction]) {
        assert!(
            !program.is_empty() && program.len() <= 4096,
            "{}",
            program.len()
        );
        for (pc, i) in program.iter().enumerate() {
            let past = |skip: usize| assert!(pc + 1 + skip < program.len(), "jump at {pc}");
            match i.code {
                JMP_JA => past(i.k as usize),
                JMP_JEQ_K | JMP_JGE_K | JMP_JGT_K | JMP_JSET_K => {
                    past(usize::from(i.jt));
                    past(usize::from(i.jf));
                }
                _ => {}
            }
        }
        assert_eq!(program.last().map(|i| i.code), Some(RET_K));
    }

    /// Argument vectors on both sides of every condition in `profile`: for each condition
    /// alone, values that hold and values that do not (each half of a 64-bit argument
    /// differing in turn); and for each rule, all its conditions holding, then each failing.
    fn argument_vectors(profile: &Value) -> Vec<[u64; 6]> {
        let mut vectors = vec![[0; 6], [u64::MAX; 6]];
        for rule in profile["syscalls"].as_array().into_iter().flatten() {
            let mut holding = [0u64; 6];
            let mut failing = Vec::new();
            for arg in rule["args"].as_array().into_iter().flatten() {
                let index = arg["index"].as_u64().expect("index") as usize;
                let value = arg["value"].as_u64().unwrap_or(0);
                let value_two = arg["valueTwo"].as_u64().unwrap_or(0);
                let lowest = |m: u64| m & m.wrapping_neg();
                let (holds, fails): (Vec<u64>, Vec<u64>) = match arg["op"].as_str() {
                    Some("SCMP_CMP_EQ") => {
                        (vec![value], vec![value ^ 1, value ^ (1 << 32), !value])
                    }
                    Some("SCMP_CMP_NE") => {
                        (vec![value ^ 1, value ^ (1 << 32), !value], vec![value])
                    }
                    Some("SCMP_CMP_MASKED_EQ") => {
                        let want = value_two & value;
                        let mut fails = vec![want ^ lowest(value & 0xffff_ffff)];
                        fails.push(want ^ lowest(value & !0xffff_ffff));
                        (vec![want, want | !value], fails)
                    }
                    other => panic!("op {other:?}"),
                };
                for v in holds.iter().chain(&fails) {
                    let mut alone = [0; 6];
                    alone[index] = *v;
                    vectors.push(alone);
                }
                holding[index] = holds[0];
                failing.push((index, fails[0]));
            }
            vectors.push(holding);
            for (index, fail) in failing {
                let mut one_fails = holding;
                one_fails[index] = fail;
                vectors.push(one_fails);
            }
        }
        vectors.sort_unstable();
        vectors.dedup();
        vectors
    }

    /// Asserts that `compile` decides as the linear chain for every syscall number 0 to 600
    /// (with and without the x32 bit), the numbers around the x32 bit, foreign
    /// architectures, and arguments on both sides of each condition. Returns the figures of
    /// the tree and of the linear chain.
    fn assert_same_decisions(profile: &Value) -> (Figures, Figures) {
        let tree = compile(profile).expect("compiles");
        let reference = linear(profile).expect("the linear chain compiles");
        assert_loadable(&tree);
        let conditional: Vec<u32> = profile["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["args"].as_array().is_some_and(|a| !a.is_empty()))
            .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().and_then(syscall_number))
            .collect();
        let vectors = argument_vectors(profile);
        let mut numbers: Vec<u32> = (0..=600).collect();
        numbers.extend((0..=600).map(|n| n | X32_SYSCALL_BIT));
        numbers.extend([X32_SYSCALL_BIT - 1, 0x7fff_ffff, 0x8000_0000, u32::MAX]);
        let (mut new_figures, mut old_figures) = (Figures::of(&tree), Figures::of(&reference));
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, 0] {
            for &nr in &numbers {
                let args: &[[u64; 6]] = if conditional.contains(&nr) {
                    &vectors
                } else {
                    &vectors[..1]
                };
                for args in args {
                    let call = Call {
                        nr,
                        arch,
                        args: *args,
                    };
                    let (new, old) = (run(&tree, &call), run(&reference, &call));
                    assert_eq!(new.ret, old.ret, "{call:x?}");
                    if !conditional.contains(&nr) {
                        assert!(new.cacheable, "{call:x?} reads arguments");
                    }
                    new_figures.add(&new, &call);
                    old_figures.add(&old, &call);
                }
            }
        }
        (new_figures, old_figures)
    }

    /// A program's size and paths.
    #[derive(Debug)]
    struct Figures {
        instructions: usize,
        /// The longest path of any input.
        longest: usize,
        /// The longest path that reads no argument (the kernel's cache can emulate it).
        longest_constant: usize,
        /// What the kernel's cache emulates when the filter is installed: the instructions
        /// run for x86-64 numbers 0 to the highest in the syscall table (argument loads
        /// ending a path).
        emulated: usize,
    }

    impl Figures {
        fn of(program: &[Instruction]) -> Self {
            Self {
                instructions: program.len(),
                longest: 0,
                longest_constant: 0,
                emulated: 0,
            }
        }

        fn add(&mut self, run: &Run, call: &Call) {
            self.longest = self.longest.max(run.steps);
            if run.cacheable {
                self.longest_constant = self.longest_constant.max(run.steps);
            }
            let highest = SYSCALLS.iter().map(|(_, nr)| *nr).max().unwrap_or(0);
            if call.arch == AUDIT_ARCH_X86_64 && call.nr <= highest && call.args == [0; 6] {
                self.emulated += run.emulated;
            }
        }
    }

    fn masked(flag: u64) -> Value {
        json!({"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"})
    }

    #[test]
    fn the_tree_decides_as_the_linear_chain_for_the_runtime_default_profiles() {
        for capabilities in [
            &[][..],
            &["CAP_SYS_ADMIN".to_owned()][..],
            &["CAP_SYS_TIME".to_owned(), "CAP_SYS_NICE".to_owned()][..],
        ] {
            let profile = super::super::seccomp::runtime_default(capabilities);
            let (new, old) = assert_same_decisions(&profile);
            eprintln!("RuntimeDefault {capabilities:?}: tree {new:?}, linear chain {old:?}");
            assert!(new.instructions < old.instructions, "{new:?} {old:?}");
            // The head's 5, then a search over fewer than 128 ranges to a `ret`.
            assert!(new.longest_constant <= 5 + 7 + 1, "{new:?}");
            assert!(new.emulated < old.emulated / 5, "{new:?} {old:?}");
        }
    }

    #[test]
    fn the_tree_decides_as_the_linear_chain_for_hand_made_profiles() {
        let allow = "SCMP_ACT_ALLOW";
        let profiles = [
            // Default allow, a deny-list with adjacent numbers (read 0, write 1, open 2,
            // close 3), one at the table's end, and an unknown name.
            json!({"defaultAction": allow, "syscalls": [
                {"names": ["write", "read", "close", "no_such_call", "kexec_file_load"],
                 "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["open"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
            // Default errno with an allow-list: most numbers fail.
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
                {"names": ["read", "write", "open", "close", "mmap", "brk", "exit_group",
                           "execve", "getpid", "futex", "clone", "wait4"],
                 "action": allow},
                {"name": "rt_sigreturn", "action": allow}]}),
            // One syscall in several conditional rules, EQ, NE and MASKED_EQ, first match
            // wins; a rule with two conditions; then an unconditional rule ending its chain.
            json!({"defaultAction": allow, "syscalls": [
                {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 1, "value": 0x5401_u64, "op": "SCMP_CMP_EQ"}]},
                {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
                 "args": [{"index": 0, "value": 0x1_0000_0003_u64, "op": "SCMP_CMP_NE"},
                          {"index": 2, "value": 0xff00_0000_00ff_u64, "valueTwo": 0x1200_0000_0034_u64,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["ioctl", "fcntl"], "action": "SCMP_ACT_TRAP",
                 "args": [{"index": 5, "value": 7, "op": "SCMP_CMP_NE"}]},
                {"names": ["ioctl"], "action": "SCMP_ACT_LOG"},
                {"names": ["ioctl"], "action": "SCMP_ACT_KILL"}]}),
            // A syscall named in two unconditional rules with different actions (the first
            // wins), and in a conditional rule returning the default (changes nothing).
            json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["getpid", "gettid"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpid"], "action": allow},
                {"names": ["getpid", "getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5}]}),
            // Masks that leave a half out, and a zero mask (always holds).
            json!({"defaultAction": allow, "syscalls": [
                {"names": ["mmap"], "action": "SCMP_ACT_ERRNO",
                 "args": [masked(0x4)]},
                {"names": ["mmap"], "action": "SCMP_ACT_KILL",
                 "args": [masked(0x8_0000_0000)]},
                {"names": ["mprotect"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 3, "value": 0, "valueTwo": 9, "op": "SCMP_CMP_MASKED_EQ"}]}]}),
            // No rules at all, and an empty rule list.
            json!({"defaultAction": allow}),
            json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": []}),
        ];
        for profile in &profiles {
            assert_same_decisions(profile);
        }
    }

    #[test]
    fn jumps_farther_than_255_go_through_trampolines() {
        // Every known syscall in a conditional rule (so ~370 chains below the search) and
        // one syscall with 40 conditional rules (a chain far longer than 255).
        let names: Vec<&str> = SYSCALLS.iter().map(|(name, _)| *name).collect();
        let mut rules = vec![json!({"names": names, "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": MAGIC, "op": "SCMP_CMP_EQ"}]})];
        for flag in 0..40 {
            rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                "errnoRet": flag + 1, "args": [masked(1 << flag), masked(1 << (flag + 20))]}));
        }
        let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
        assert_same_decisions(&profile);
        let program = compile(&profile).expect("compiles");
        assert!(program.iter().any(|i| i.code == JMP_JA));
        // The kernel takes the program, and decides through it.
        assert_eq!(in_child(&profile, magic_second_argument_refused), 0);
    }

    /// An argument value no libc passes by chance: its halves differ.
    const MAGIC: u64 = 0x5eed_0000_0000_0003;

    /// 0 when harmless syscalls spread over the table fail with EPERM when their second
    /// argument is MAGIC, and work when only its low half matches.
    fn magic_second_argument_refused() -> i32 {
        let calls = [
            libc::SYS_sched_yield,
            libc::SYS_getpid,
            libc::SYS_getuid,
            libc::SYS_getppid,
            libc::SYS_getpgrp,
            libc::SYS_gettid,
        ];
        for nr in calls {
            // SAFETY: these calls take no arguments and ignore what is passed.
            let refused = unsafe { libc::syscall(nr, 0, MAGIC) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            // SAFETY: as above.
            let low_half = unsafe { libc::syscall(nr, 0, MAGIC & 0xffff_ffff) };
            if refused != -1 || errno != Some(libc::EPERM) || low_half < 0 {
                return 1;
            }
        }
        0
    }

    #[test]
    fn a_profile_over_the_kernels_4096_instructions_is_refused() {
        let rules: Vec<Value> = (0..400_u64)
            .map(|n| {
                json!({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": n, "op": "SCMP_CMP_NE"},
                         {"index": 2, "value": n, "op": "SCMP_CMP_NE"},
                         {"index": 3, "value": n, "op": "SCMP_CMP_NE"}]})
            })
            .collect();
        let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
        let error = compile(&profile).expect_err("too long");
        assert!(error.contains("over the kernel's 4096"), "{error}");
    }

    /// Runs `check` in a forked child with `profile` installed; the child's exit code.
    fn in_child(profile: &Value, check: fn() -> i32) -> i32 {
        let program = compile(profile).expect("compiles");
        // SAFETY: the child only makes syscalls and exits, touching no lock another thread of
        // the test binary may hold.
        match unsafe { libc::fork() } {
            0 => {
                let code = rustix::thread::set_no_new_privs(true)
                    .map_err(|e| e.to_string())
                    .and_then(|()| install(&program).map_err(|e| e.to_string()))
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
        for index in [json!(6), json!(1_u64 << 32), json!(-1), json!("0")] {
            let bad = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": index, "value": 1, "op": "SCMP_CMP_EQ"}]}]});
            assert!(compile(&bad).expect_err("index").contains("is not 0 to 5"));
        }
        let unknown = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]});
        assert_eq!(compile(&unknown).expect("skipped").len(), 7);
    }
}
