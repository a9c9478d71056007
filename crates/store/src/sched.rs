//! A short scheduler slice for the store's background threads (Linux 6.12+).
//!
//! The audit writer and the WAL checkpoint thread run in bursts (a group commit, a
//! checkpoint) that share the machine's cores with the request path. Under EEVDF a running
//! fair thread keeps the CPU for its whole slice (about 1.4 ms on two CPUs); a request task
//! woken inside it waits for the slice to end or for the next timer tick (4 ms at
//! `CONFIG_HZ=250`). Nice does not help: it changes a thread's share of the CPU, not its
//! slice. A custom slice (`sched_attr.sched_runtime` under `SCHED_OTHER`, no privilege needed)
//! does: a woken thread can preempt the burst after about `SLICE_NS`, and the thread's share
//! is unchanged. It is asked for only where no request waits on these threads (`batch`
//! durability, [`crate::WriterOptions::short_slice`]): a request waiting on a commit would
//! wait for the preempted writer too. docs/benchmarks.md ("Where the time goes") has the
//! measurement.
//!
//! Best effort: on older kernels, other policies or other systems it does nothing.

/// The slice asked for: 0.1 ms, the kernel's minimum.
pub const SLICE_NS: u64 = 100_000;

/// Ask for a `SLICE_NS` slice for the calling thread, keeping its policy and nice value.
/// Only `SCHED_OTHER` and `SCHED_BATCH` threads are changed; errors are ignored.
pub fn short_slice() {
    #[cfg(target_os = "linux")]
    linux::short_slice();
}

/// The slice (ns) of thread `tid` of this process (0: the calling thread), or `None` where it
/// cannot be read. Kernels before 6.12 report 0.
pub fn slice_of(tid: i32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        linux::get(tid).map(|a| a.sched_runtime)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// This process's threads named `name`: each one's id and slice (ns), where it can be read.
/// How the tests see what the threads asked for.
pub fn threads_named(name: &str) -> Vec<(i32, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .filter_map(|tid| Some((tid, slice_of(tid)?)))
        .collect()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    /// `struct sched_attr` up to `sched_period` (`SCHED_ATTR_SIZE_VER0`, 48 bytes).
    #[repr(C)]
    #[derive(Default)]
    pub(super) struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        pub(super) sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
    }

    const SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

    pub(super) fn get(tid: i32) -> Option<SchedAttr> {
        let mut attr = SchedAttr::default();
        // SAFETY: `attr` is a valid, writable `sched_attr` of `SIZE` bytes, and the kernel
        // writes at most `SIZE` bytes to it.
        let rc = unsafe {
            libc::syscall(libc::SYS_sched_getattr, tid, &mut attr as *mut SchedAttr, SIZE, 0)
        };
        (rc == 0).then_some(attr)
    }

    pub(super) fn short_slice() {
        let Some(mut attr) = get(0) else { return };
        if attr.sched_policy != libc::SCHED_OTHER as u32
            && attr.sched_policy != libc::SCHED_BATCH as u32
        {
            return;
        }
        attr.size = SIZE;
        // Policy and nice go back as read; only the slice changes.
        attr.sched_flags = 0;
        attr.sched_runtime = super::SLICE_NS;
        // SAFETY: `attr` is a valid, initialised `sched_attr` of `SIZE` bytes that the kernel
        // only reads.
        let _ = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    }
}
