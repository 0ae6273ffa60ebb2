//! Process lifecycle: `sched:sched_process_exec` and `sched:sched_process_exit`.
//!
//! Kernel interface: the scheduler tracepoints (Linux 3.4+ for `sched_process_exec`). The exec
//! program runs after the new image is in place, so `current` already has the new `mm` with
//! the argument strings, and the tracepoint carries the file name the kernel executed. Both
//! are read here because a short-lived process (`cat`) is often gone before the daemon could
//! read `/proc/PID`. Struct field offsets come from the daemon (see `KernelOffsets`).

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel, generated,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    counters,
    offsets::{KernelOffsets, UNKNOWN},
    process::{
        EXEC_ARGS_LEN, EXEC_ARGS_MISSING, EXEC_ARGS_TRUNCATED, EXEC_FILENAME_LEN,
        EXEC_TASK_MISSING, ExecRecord, ExitRecord,
    },
    record::kind,
};

use crate::maps::{DAEMON_TGID, EVENTS, EXEC_SCRATCH, KERNEL_OFFSETS, count};

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exec(ctx: &TracePointContext) -> Result<(), ()> {
    let offsets = KERNEL_OFFSETS.load();
    let record = EXEC_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: the pointer comes from a successful per-CPU array lookup and only this program
    // run on this CPU uses it.
    let record = unsafe { &mut *record };

    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    record.kind = kind::EXEC;
    record.pid = (pid_tgid >> 32) as u32;
    record.uid = uid_gid as u32;
    record.gid = (uid_gid >> 32) as u32;
    record.flags = 0;
    // SAFETY: these helpers take no pointers and are allowed in tracepoint programs.
    record.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: as above.
    record.cgroup_id = unsafe { bpf_get_current_cgroup_id() };

    record.filename_len = read_filename(ctx, &offsets, &mut record.filename);
    read_task(&offsets, record);
    read_args(&offsets, record);

    match EVENTS.output::<ExecRecord>(&*record, 0) {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
    Ok(())
}

/// Copies the `__data_loc char[] filename` field and returns its length without the NUL.
#[inline(always)]
fn read_filename(
    ctx: &TracePointContext,
    offsets: &KernelOffsets,
    buffer: &mut [u8; EXEC_FILENAME_LEN],
) -> u32 {
    if offsets.exec_filename_loc == UNKNOWN {
        return 0;
    }
    // SAFETY: the offset comes from the tracepoint's format file, so it lies inside the record.
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(offsets.exec_filename_loc as usize) }) else {
        return 0;
    };
    // A __data_loc field holds the data's offset from the record start in its low 16 bits.
    let data_offset = (loc & 0xffff) as usize;
    // SAFETY: `data_offset` points inside the same tracepoint record, and the helper writes at
    // most EXEC_FILENAME_LEN bytes into the buffer.
    let read = unsafe {
        generated::bpf_probe_read_kernel_str(
            buffer.as_mut_ptr().cast(),
            EXEC_FILENAME_LEN as u32,
            ctx.as_ptr().cast::<u8>().add(data_offset).cast(),
        )
    };
    if read <= 0 || read > EXEC_FILENAME_LEN as i64 {
        return 0;
    }
    (read - 1) as u32
}

/// Reads the parent's process id and the start time from the current `task_struct`.
#[inline(always)]
fn read_task(offsets: &KernelOffsets, record: &mut ExecRecord) {
    record.ppid = 0;
    record.start_boot_ns = 0;
    let known = offsets.task_real_parent != UNKNOWN
        && offsets.task_tgid != UNKNOWN
        && offsets.task_start_boottime != UNKNOWN;
    if !known {
        record.flags |= EXEC_TASK_MISSING;
        return;
    }
    // SAFETY: the helper takes no arguments; the result is only used as an address for
    // bpf_probe_read_kernel, which checks it.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: bpf_probe_read_kernel validates the address and returns an error instead of
    // faulting; the offsets come from the running kernel's BTF.
    let parent = unsafe {
        bpf_probe_read_kernel(
            task.add(offsets.task_real_parent as usize)
                .cast::<*const u8>(),
        )
    };
    // SAFETY: as above.
    let start = unsafe {
        bpf_probe_read_kernel(task.add(offsets.task_start_boottime as usize).cast::<u64>())
    };
    let ppid = match parent {
        // SAFETY: as above.
        Ok(parent) => unsafe {
            bpf_probe_read_kernel(parent.add(offsets.task_tgid as usize).cast::<i32>())
        },
        Err(error) => Err(error),
    };
    match (ppid, start) {
        (Ok(ppid), Ok(start)) => {
            record.ppid = ppid as u32;
            record.start_boot_ns = start;
        }
        _ => {
            record.flags |= EXEC_TASK_MISSING;
            count(counters::EXEC_READ_FAILED);
        }
    }
}

/// Copies the argument strings between `mm->arg_start` and `mm->arg_end`.
#[inline(always)]
fn read_args(offsets: &KernelOffsets, record: &mut ExecRecord) {
    record.args_len = 0;
    let known = offsets.task_mm != UNKNOWN
        && offsets.mm_arg_start != UNKNOWN
        && offsets.mm_arg_end != UNKNOWN;
    if !known {
        record.flags |= EXEC_ARGS_MISSING;
        return;
    }
    // SAFETY: see read_task; every address goes through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: as above.
    let Ok(mm) =
        (unsafe { bpf_probe_read_kernel(task.add(offsets.task_mm as usize).cast::<*const u8>()) })
    else {
        record.flags |= EXEC_ARGS_MISSING;
        return;
    };
    // SAFETY: as above.
    let start =
        unsafe { bpf_probe_read_kernel(mm.add(offsets.mm_arg_start as usize).cast::<u64>()) };
    // SAFETY: as above.
    let end = unsafe { bpf_probe_read_kernel(mm.add(offsets.mm_arg_end as usize).cast::<u64>()) };
    let (Ok(start), Ok(end)) = (start, end) else {
        record.flags |= EXEC_ARGS_MISSING;
        count(counters::EXEC_READ_FAILED);
        return;
    };
    if end <= start {
        record.flags |= EXEC_ARGS_MISSING;
        return;
    }
    let mut len = end - start;
    if len > (EXEC_ARGS_LEN - 1) as u64 {
        len = (EXEC_ARGS_LEN - 1) as u64;
        record.flags |= EXEC_ARGS_TRUNCATED;
    }
    // Masking keeps the size provably inside the buffer for the verifier.
    let len = (len as u32) & (EXEC_ARGS_LEN as u32 - 1);
    // SAFETY: the helper writes `len` < EXEC_ARGS_LEN bytes into the buffer and returns an
    // error for an unreadable user address. `current` is the task whose mm was read.
    let read = unsafe {
        generated::bpf_probe_read_user(record.args.as_mut_ptr().cast(), len, start as *const _)
    };
    if read < 0 {
        record.flags |= EXEC_ARGS_MISSING;
        count(counters::EXEC_READ_FAILED);
        return;
    }
    record.args_len = len;
}

#[inline(always)]
fn try_exit(_ctx: &TracePointContext) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Threads other than the leader exit without ending the process.
    if tgid != pid_tgid as u32 || tgid == DAEMON_TGID.load() {
        return Ok(());
    }
    let record = ExitRecord {
        kind: kind::EXIT,
        pid: tgid,
        // SAFETY: the helper takes no pointers.
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    match EVENTS.output::<ExitRecord>(&record, 0) {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
    Ok(())
}
