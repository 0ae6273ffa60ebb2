//! The directory a relative open starts from, walked in the kernel at the time of the open.
//!
//! The walk follows `dentry->d_parent` up to the root of each mount and crosses to the parent
//! mount at a mount point, as the kernel's own `d_path` does, so the result is the path in the
//! process's view (inside a container, relative to the container's root mount). Field offsets
//! come from the daemon's BTF reading (`KernelOffsets`); every address is read with
//! `bpf_probe_read_kernel`, which fails instead of faulting on a stale pointer.
//!
//! NOTE: the walk reads the dentries without the locks the kernel takes (`rename_lock`, mount
//! locks), so a rename racing with the open can give a mixed path; the daemon then matches a
//! path that was never valid, which at worst drops or mislabels that one open.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    counters,
    directory::{
        DIRECTORY_FAILED, DIRECTORY_FROM_FD, DIRECTORY_MAX_COMPONENTS, DIRECTORY_MAX_STEPS,
        DIRECTORY_SLOT_LEN, DIRECTORY_TRUNCATED, DirectoryRecord,
    },
    offsets::KernelOffsets,
    open::AT_FDCWD,
    record::kind,
};

use crate::maps::{DIRECTORY_SCRATCH, EVENTS, KERNEL_OFFSETS, TAIL_CALLS, count};

/// Index of the directory walk in `TAIL_CALLS`.
pub const DIRECTORY_WALK: u32 = 0;

/// Steps one run of the walk takes before it tail-calls itself for the next ones. The
/// verifier checks this many steps, not the whole walk, which keeps it far below its limits.
const STEPS_PER_CALL: u32 = 3;

/// Per-CPU state of a walk in progress: the record being built and the current position.
#[repr(C)]
pub struct DirectoryScratch {
    pub record: DirectoryRecord,
    /// `struct mount *` of the current position.
    mount: u64,
    /// `struct dentry *` of the current position.
    dentry: u64,
    /// Slots filled so far.
    slot: u32,
    /// Steps taken so far; 0 means the walk has not started.
    steps: u32,
}

/// Hands a relative open over to the directory walk. Returns only when the tail call failed
/// (the walk is not loaded), in which case the daemon falls back to `/proc`.
#[inline(always)]
pub fn walk_directory(ctx: &TracePointContext, pid_tgid: u64, dfd: i32) {
    let Some(scratch) = DIRECTORY_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the pointer comes from a successful per-CPU array lookup; the tail-called
    // program runs next on this CPU and reads these fields.
    let scratch = unsafe { &mut *scratch };
    scratch.record.pid = (pid_tgid >> 32) as u32;
    scratch.record.tid = pid_tgid as u32;
    scratch.record.dfd = dfd;
    scratch.steps = 0;
    // SAFETY: the context is this program's own, and the map contains programs of the same type.
    unsafe { TAIL_CALLS.tail_call(ctx, DIRECTORY_WALK) };
}

/// The directory walk, entered only through `TAIL_CALLS`, never attached. Each run takes a
/// few steps and tail-calls itself; the run that reaches the root (or gives up) sends the
/// record.
#[tracepoint]
pub fn directory_walk(ctx: TracePointContext) -> u32 {
    let Some(scratch) = DIRECTORY_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: as in walk_directory; only this chain of program runs on this CPU uses it.
    let scratch = unsafe { &mut *scratch };
    let offsets = KERNEL_OFFSETS.load();
    if scratch.steps == 0 && !start(&offsets, scratch) {
        send(&mut scratch.record, DIRECTORY_FAILED);
        return 0;
    }
    for _ in 0..STEPS_PER_CALL {
        match walk_step(&offsets, scratch) {
            Progress::Continue => {}
            Progress::Root => {
                send(&mut scratch.record, 0);
                return 0;
            }
            Progress::Stop => {
                send(&mut scratch.record, DIRECTORY_TRUNCATED);
                return 0;
            }
        }
    }
    scratch.steps += STEPS_PER_CALL;
    if scratch.steps < DIRECTORY_MAX_STEPS as u32 {
        // SAFETY: the context is this program's own, and the map contains this program.
        unsafe { TAIL_CALLS.tail_call(&ctx, DIRECTORY_WALK) };
    }
    // Out of steps, or the kernel's tail-call limit was reached.
    send(&mut scratch.record, DIRECTORY_TRUNCATED);
    0
}

/// Finds the starting mount and dentry; false when they cannot be read.
#[inline(always)]
fn start(offsets: &KernelOffsets, scratch: &mut DirectoryScratch) -> bool {
    let dfd = scratch.record.dfd;
    scratch.record.kind = kind::DIRECTORY;
    scratch.record.components = 0;
    scratch.record.flags = if dfd == AT_FDCWD {
        0
    } else {
        DIRECTORY_FROM_FD
    };
    scratch.slot = 0;
    let Some((vfsmount, dentry)) = start_of(offsets, dfd) else {
        return false;
    };
    scratch.mount = vfsmount.wrapping_sub(u64::from(offsets.mount_mnt));
    scratch.dentry = dentry;
    true
}

/// Sends the record with `flags` added.
#[inline(always)]
fn send(record: &mut DirectoryRecord, flags: u32) {
    record.flags |= flags;
    match EVENTS.output::<DirectoryRecord>(&*record, 0) {
        Ok(()) => count(counters::RECORDS_EMITTED),
        Err(_) => count(counters::RINGBUF_FULL),
    }
}

/// Reads a pointer-sized kernel value at `base + offset`.
#[inline(always)]
fn read_ptr(base: u64, offset: u32) -> Option<u64> {
    // SAFETY: bpf_probe_read_kernel validates the address and returns an error instead of
    // faulting.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const u64) }.ok()
}

#[inline(always)]
fn read_u32(base: u64, offset: u32) -> Option<u32> {
    // SAFETY: as in read_ptr.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const u32) }.ok()
}

/// Returns the mount and dentry of the working directory, or of descriptor `dfd`.
#[inline(always)]
fn start_of(offsets: &KernelOffsets, dfd: i32) -> Option<(u64, u64)> {
    if !offsets.can_walk_directories() {
        return None;
    }
    // SAFETY: the helper takes no arguments; the result is only used as an address for
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let path = if dfd == AT_FDCWD {
        let fs = read_ptr(task, offsets.task_fs)?;
        fs + u64::from(offsets.fs_pwd)
    } else {
        let files = read_ptr(task, offsets.task_files)?;
        let table = read_ptr(files, offsets.files_fdt)?;
        let max_fds = read_u32(table, offsets.fdtable_max_fds)?;
        if dfd < 0 || dfd as u32 >= max_fds {
            return None;
        }
        let descriptors = read_ptr(table, offsets.fdtable_fd)?;
        let file = read_ptr(descriptors + 8 * dfd as u64, 0)?;
        if file == 0 {
            return None;
        }
        file + u64::from(offsets.file_path)
    };
    let mnt = read_ptr(path, offsets.path_mnt)?;
    let dentry = read_ptr(path, offsets.path_dentry)?;
    Some((mnt, dentry))
}

/// Outcome of one step.
enum Progress {
    Continue,
    /// Reached the root of the namespace: the record is complete.
    Root,
    /// A read failed or a name did not fit: the record is truncated.
    Stop,
}

/// Takes one step up: to the parent directory (storing the name left behind) or, at the root
/// of a mount, to its mount point in the parent mount.
#[inline(always)]
fn walk_step(offsets: &KernelOffsets, scratch: &mut DirectoryScratch) -> Progress {
    let mount = scratch.mount;
    let dentry = scratch.dentry;
    let Some(root) = read_ptr(mount + u64::from(offsets.mount_mnt), offsets.vfsmount_root) else {
        return Progress::Stop;
    };
    if dentry == root {
        // The root mount of a namespace is its own parent.
        let Some(parent) = read_ptr(mount, offsets.mount_parent) else {
            return Progress::Stop;
        };
        if parent == mount {
            return Progress::Root;
        }
        let Some(mountpoint) = read_ptr(mount, offsets.mount_mountpoint) else {
            return Progress::Stop;
        };
        scratch.mount = parent;
        scratch.dentry = mountpoint;
        return Progress::Continue;
    }
    let Some(parent) = read_ptr(dentry, offsets.dentry_parent) else {
        return Progress::Stop;
    };
    if parent == dentry {
        return Progress::Root;
    }
    let slot = scratch.slot as usize;
    if slot >= DIRECTORY_MAX_COMPONENTS || !copy_name(offsets, &mut scratch.record, slot, dentry) {
        return Progress::Stop;
    }
    scratch.slot += 1;
    scratch.record.components = scratch.slot;
    scratch.dentry = parent;
    Progress::Continue
}

/// Copies the name of `dentry` into `slot`; false when it does not fit or cannot be read.
#[inline(always)]
fn copy_name(
    offsets: &KernelOffsets,
    record: &mut DirectoryRecord,
    slot: usize,
    dentry: u64,
) -> bool {
    let (Some(name), Some(length)) = (
        read_ptr(dentry, offsets.dentry_name),
        read_u32(dentry, offsets.dentry_name_len),
    ) else {
        return false;
    };
    if length as usize >= DIRECTORY_SLOT_LEN {
        return false;
    }
    let index = slot & (DIRECTORY_MAX_COMPONENTS - 1);
    // LLVM drops a mask it can prove redundant, but the verifier needs to see it right before
    // the call; black_box hides the earlier check from LLVM.
    let size = core::hint::black_box(length) & (DIRECTORY_SLOT_LEN as u32 - 1);
    // SAFETY: the slot has DIRECTORY_SLOT_LEN bytes and `size` is below that; the helper
    // checks the kernel source address.
    let read = unsafe {
        generated::bpf_probe_read_kernel(
            record.names[index].as_mut_ptr().cast(),
            size,
            name as *const _,
        )
    };
    if read < 0 {
        return false;
    }
    record.lengths[index] = size as u8;
    true
}
