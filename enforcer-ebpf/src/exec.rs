//! Exec tracking, so that a process is known by its executable and command
//! line even if it exits right after a refused connect (/proc is gone by
//! the time userspace looks). sys_enter_execve captures argv from the
//! caller's memory; sched_process_exec reports the completed exec with it.
//! Neither hook judges a connection; on any failure they report less,
//! never block (the return value of a tracepoint program is ignored).
//! sched_process_exec also marks processes whose exec matches an agent
//! selector (`contain`).

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_user,
        generated::{
            bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
            bpf_probe_read_user_str,
        },
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use enforcer_common::{
    ARGS_BYTES, EXEC_F_ARGS, EXEC_F_TRUNCATED, ExecEvent, FILENAME_BYTES, MAX_ARGV,
    STAT_PROC_RINGBUF_FULL,
};

use crate::{
    contain,
    maps::{EXEC_ARGS, EXEC_SCRATCH, PROC_EVENTS},
    report::bump,
};

/// Offsets from /sys/kernel/tracing/events/syscalls/sys_enter_execve/format
/// and sys_enter_execveat/format.
const EXECVE_ARGV: usize = 24;
const EXECVEAT_ARGV: usize = 32;
/// Offsets from /sys/kernel/tracing/events/sched/sched_process_exec/format.
const EXEC_FILENAME_LOC: usize = 8;
const EXEC_OLD_PID: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn execve_args(ctx: TracePointContext) -> u32 {
    let _ = try_execve_args(&ctx, EXECVE_ARGV);
    0
}

/// execveat (fexecve among others): argv too, so that an agent started
/// through a file descriptor is matched by its script and command line.
#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn execveat_args(ctx: TracePointContext) -> u32 {
    let _ = try_execve_args(&ctx, EXECVEAT_ARGV);
    0
}

#[inline(always)]
fn try_execve_args(ctx: &TracePointContext, argv_at: usize) -> Result<(), i64> {
    // SAFETY: the offset comes from the tracepoint's format.
    let argv: *const *const u8 = unsafe { ctx.read_at(argv_at) }.map_err(|e| e as i64)?;
    let scratch = EXEC_SCRATCH.get_ptr_mut(0).ok_or(-1i64)?;
    // SAFETY: a per-CPU slot, exclusively ours while this program runs.
    let s = unsafe { &mut *scratch };
    s.len = 0;
    s.truncated = 0;
    let mut pos: usize = 0;
    for i in 0..MAX_ARGV {
        // SAFETY: reading the caller's argv array, fault-tolerant helper.
        let arg: *const u8 = match unsafe { bpf_probe_read_user(argv.wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if arg.is_null() {
            break;
        }
        if pos >= ARGS_BYTES - 1 {
            s.truncated = 1;
            break;
        }
        // Masking keeps the verifier's bounds: off < ARGS_BYTES, and a
        // constant-size read from there stays inside the doubled buffer.
        let off = pos & (ARGS_BYTES - 1);
        // SAFETY: dst + ARGS_BYTES <= the end of the scratch buffer.
        let n = unsafe {
            bpf_probe_read_user_str(
                s.args.as_mut_ptr().wrapping_add(off).cast::<c_void>(),
                ARGS_BYTES as u32,
                arg.cast::<c_void>(),
            )
        };
        if n <= 0 {
            break;
        }
        pos = off + n as usize;
        if i == MAX_ARGV - 1 {
            s.truncated = 1;
        }
    }
    if pos > ARGS_BYTES {
        s.truncated = 1;
    }
    s.len = pos.min(ARGS_BYTES) as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    // By reference: a copy of the value would not fit the BPF stack.
    let value: &enforcer_common::ExecArgs = s;
    EXEC_ARGS.insert(tid, value, 0).map_err(|e| e as i64)
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_process_exec(&ctx);
    0
}

fn try_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets from the tracepoint's format.
    let loc: u32 = unsafe { ctx.read_at(EXEC_FILENAME_LOC) }.map_err(|e| e as i64)?;
    let old_tid: i32 = unsafe { ctx.read_at(EXEC_OLD_PID) }.map_err(|e| e as i64)?;
    // Before anything can fail: the new program must not run a single
    // instruction uncontained.
    contain::on_exec(ctx, loc, old_tid as u32);
    let Some(mut entry) = PROC_EVENTS.reserve::<ExecEvent>(0) else {
        bump(STAT_PROC_RINGBUF_FULL);
        // Not left for a later exec of this thread to be matched against.
        let _ = EXEC_ARGS.remove(old_tid as u32);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `ev` points into the reserved ring buffer record, which is
    // ours until submit; every field written below lies inside it.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).old_tid = old_tid as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev)._reserved = 0;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*ev).filename[0] = 0;
        let off = (loc & 0xffff) as usize;
        bpf_probe_read_kernel_str(
            (*ev).filename.as_mut_ptr().cast::<c_void>(),
            FILENAME_BYTES as u32,
            (ctx.as_ptr() as *const u8)
                .wrapping_add(off)
                .cast::<c_void>(),
        );
        let key = old_tid as u32;
        match EXEC_ARGS.get_ptr(key) {
            Some(args) => {
                let len = (*args).len;
                let truncated = (*args).truncated;
                bpf_probe_read_kernel(
                    (*ev).args.as_mut_ptr().cast::<c_void>(),
                    ARGS_BYTES as u32,
                    (*args).args.as_ptr().cast::<c_void>(),
                );
                (*ev).args_len = len;
                (*ev).flags = EXEC_F_ARGS | if truncated != 0 { EXEC_F_TRUNCATED } else { 0 };
                let _ = EXEC_ARGS.remove(key);
            }
            None => {
                (*ev).args_len = 0;
                (*ev).flags = 0;
            }
        }
    }
    entry.submit(0);
    Ok(())
}
