//! The open loop: what credwatch adds to an `openat` + `close` of a file that is not a
//! credential.
//!
//! Four conditions: no monitor; the floor programs (return at once) on the same tracepoints;
//! the floor with a path read in the openat program; credwatch itself. The target is that
//! credwatch adds at most 1.25 times what the floor programs add.

use std::{ffi::CString, fmt::Write as _, fs};

use anyhow::{Context as _, bail};

use super::{BATCHES, Bench, CREDWATCH, Condition, NO_MONITOR, pinned, run_rounds, with_monitor};

/// Ratio of credwatch's added cost to the floor's that the benchmark is held to.
const TARGET_RATIO: f64 = 1.25;

const CONDITIONS: [Condition; 4] = [
    NO_MONITOR,
    Condition {
        label: "empty programs (floor)",
        short: "floor",
        monitor: &["floor"],
    },
    Condition {
        label: "empty programs + path read",
        short: "path read",
        monitor: &["floor", "--read-path"],
    },
    CREDWATCH,
];

/// Runs the open loop and returns its section of docs/benchmarks.md.
pub(super) fn run(bench: &Bench, iterations: u64) -> anyhow::Result<String> {
    let file = bench.scratch.dir.join("ordinary-data.txt");
    fs::write(&file, b"not a credential\n")
        .with_context(|| format!("failed to write {}", file.display()))?;
    let file = CString::new(file.into_os_string().into_encoded_bytes())?;

    let samples = run_rounds(bench, "open", &CONDITIONS, (1.0, "ns"), |condition| {
        with_monitor(bench, condition, |_| {
            measure(&file, iterations).map(super::Measurement::time_only)
        })
    })?;
    let medians: Vec<f64> = samples.iter().map(super::Samples::median).collect();

    let floor_added = medians[1] - medians[0];
    let credwatch_added = medians[3] - medians[0];
    let ratio = if floor_added > 0.0 {
        credwatch_added / floor_added
    } else {
        f64::INFINITY
    };
    if ratio > TARGET_RATIO {
        eprintln!(
            "warning: credwatch adds {ratio:.2}x what the empty programs add to openat; the target is at most {TARGET_RATIO}x"
        );
    }
    Ok(section(
        bench.rounds,
        iterations,
        &medians,
        floor_added,
        credwatch_added,
        ratio,
    ))
}

/// Nanoseconds per openat + close, measured on CPU 0. Only the loop runs pinned, so the
/// monitor keeps every CPU.
fn measure(path: &CString, iterations: u64) -> anyhow::Result<f64> {
    pinned(|| {
        // Warm up caches and the dentry for the file.
        open_close_loop(path, iterations / 10)?;
        let per_batch = (iterations / BATCHES).max(1);
        super::fastest_batch(|| {
            let started = std::time::Instant::now();
            open_close_loop(path, per_batch)?;
            Ok(started.elapsed().as_nanos() as f64 / per_batch as f64)
        })
    })
}

fn open_close_loop(path: &CString, iterations: u64) -> anyhow::Result<()> {
    for _ in 0..iterations {
        // SAFETY: `path` is a valid NUL-terminated string; the descriptor is closed at once.
        let fd = unsafe {
            libc::openat(
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            bail!(
                "openat of the benchmark file failed: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: `fd` was just opened by this loop and is closed exactly once.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn section(
    rounds: usize,
    iterations: u64,
    medians: &[f64],
    floor_added: f64,
    credwatch_added: f64,
    ratio: f64,
) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "## Cost of an `openat` + `close` of a file that is not a credential\n"
    );
    let _ = writeln!(
        text,
        "The loop opens and closes one ordinary file {iterations} times per measurement on CPU 0 \
         at nice -20, in {BATCHES} batches. A measurement is the time per iteration of its fastest batch, because \
         interrupts and other tenants of a virtual machine only ever slow a batch down. The \
         conditions run interleaved for {rounds} rounds; the table shows the median of each. The added \
         cost of a monitor is its median minus the no-monitor median. The empty programs are \
         attached to the same tracepoints as credwatch and return at once: the floor that any \
         tracepoint-based monitor pays. The path-read condition adds one \
         `bpf_probe_read_user_str` of the path to the empty openat program: the floor of any \
         monitor that matches paths. Target: credwatch adds at most {TARGET_RATIO}x what the \
         empty programs add.\n"
    );
    let _ = writeln!(text, "| condition | ns per openat + close | added ns |");
    let _ = writeln!(text, "| --- | ---: | ---: |");
    for (index, condition) in CONDITIONS.iter().enumerate() {
        let added = medians[index] - medians[0];
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.0} |",
            condition.label, medians[index], added
        );
    }
    let verdict = if ratio <= TARGET_RATIO {
        "meets"
    } else {
        "misses"
    };
    let _ = writeln!(
        text,
        "\ncredwatch adds {credwatch_added:.0} ns against the floor's {floor_added:.0} ns: a ratio of \
         **{ratio:.2}**, which {verdict} the target of {TARGET_RATIO}.\n"
    );
    let read_added = medians[2] - medians[0];
    let read_ratio = if floor_added > 0.0 {
        read_added / floor_added
    } else {
        f64::INFINITY
    };
    let _ = writeln!(
        text,
        "The empty programs with a path read add {read_added:.0} ns, a ratio of {read_ratio:.2} to the \
         floor, so \
         credwatch's matching (the filters, the trie lookups and the bookkeeping) costs \
         {:.0} ns beyond the read.\n",
        credwatch_added - read_added
    );
    if read_ratio > TARGET_RATIO {
        let _ = writeln!(
            text,
            "On this machine the path read alone is above the target, so no monitor that reads \
             the path in these tracepoints can meet it here. The kernel's cost of one user-memory \
             read depends on the CPU and its mitigations (SMAP, retpolines, return thunks), so \
             rerun the benchmark on the hardware you deploy to.\n"
        );
    }
    text
}
