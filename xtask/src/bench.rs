//! `cargo xtask bench`: what credwatch adds to three loops that it watches.
//!
//! - `open`: an `openat` + `close` of a file that is not a credential.
//! - `connect`: a TCP connect to a listener on 127.0.0.1, then a close.
//! - `tls`: a full TLS handshake with a local `openssl s_server`.
//!
//! Each loop runs under several conditions: no monitor, programs that return at once on the
//! hooks credwatch uses (the floor), and credwatch itself. The conditions of a loop run
//! interleaved, several rounds each, so that drift in machine load spreads over all of them,
//! and each condition's result is its median over the rounds. A measurement is the time per
//! iteration of the fastest of its batches.

mod connect;
mod open;
mod tls;

use std::{
    cell::Cell,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{setup, util};

/// Batches one measurement is split into.
const BATCHES: u64 = 25;

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Rounds; each round measures every condition of a loop once.
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// openat + close pairs per measurement of the open loop.
    #[arg(long, default_value_t = 500_000)]
    iterations: u64,
    /// Connects per measurement of the connect loop.
    #[arg(long, default_value_t = 12_500)]
    connects: u64,
    /// TLS handshakes per measurement of the TLS loop.
    #[arg(long, default_value_t = 1000)]
    handshakes: u64,
    /// Loop to run; repeat the option for several. Without it every loop runs.
    #[arg(long = "loop", value_enum)]
    loops: Vec<Loop>,
    /// Do not rewrite docs/benchmarks.md. It is never rewritten when only some loops run.
    #[arg(long)]
    no_write: bool,
}

/// The loops the benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Loop {
    /// `openat` + `close` of an ordinary file.
    Open,
    /// TCP connect to 127.0.0.1 and close.
    Connect,
    /// Full TLS handshake with a local `openssl s_server`.
    Tls,
}

/// One way to run a loop: with no monitor or with one monitor process.
#[derive(Clone, Copy, Debug)]
struct Condition {
    /// Name in the tables of docs/benchmarks.md.
    label: &'static str,
    /// Name in the progress lines.
    short: &'static str,
    /// Arguments of the `credwatch` binary that starts the monitor; empty for no monitor.
    monitor: &'static [&'static str],
}

/// The condition every loop is compared with.
const NO_MONITOR: Condition = Condition {
    label: "no monitor",
    short: "none",
    monitor: &[],
};

/// The real daemon, with its default configuration.
const CREDWATCH: Condition = Condition {
    label: "credwatch",
    short: "credwatch",
    monitor: &["run", "--json-file", "/dev/null"],
};

/// Settings and resources the loops share: the credwatch binary, the scratch directory and
/// the number of rounds.
struct Bench {
    binary: PathBuf,
    scratch: Scratch,
    rounds: usize,
    /// Set when a measurement was kept although another credwatch process ran during it.
    disturbed: Cell<bool>,
    /// Set when a measurement was kept although the other CPUs were busy during it.
    busy: Cell<bool>,
    /// What remains of the time the benchmark may spend waiting for idle CPUs.
    idle_wait_left: Cell<Duration>,
}

/// Runs the benchmark.
pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        util::is_root(),
        "the benchmark loads eBPF programs and needs root"
    );
    anyhow::ensure!(
        args.rounds >= 3,
        "--rounds must be at least 3 to take a median"
    );
    let loops = if args.loops.is_empty() {
        vec![Loop::Open, Loop::Connect, Loop::Tls]
    } else {
        args.loops.clone()
    };
    setup::setup()?;
    util::build_release()?;
    let bench = Bench {
        binary: util::credwatch_binary()?,
        scratch: Scratch::create()?,
        rounds: args.rounds,
        disturbed: Cell::new(false),
        busy: Cell::new(false),
        idle_wait_left: Cell::new(MAX_IDLE_WAIT),
    };

    let mut sections = Vec::new();
    for selected in [Loop::Open, Loop::Connect, Loop::Tls] {
        if !loops.contains(&selected) {
            continue;
        }
        let section = match selected {
            Loop::Open => open::run(&bench, args.iterations)?,
            Loop::Connect => connect::run(&bench, args.connects)?,
            Loop::Tls => tls::run(&bench, args.handshakes)?,
        };
        sections.push(section);
    }

    let report = report(&sections, bench.disturbed.get(), bench.busy.get());
    println!("{report}");
    if args.no_write {
        return Ok(());
    }
    if loops.len() < 3 {
        util::step("only some loops ran, so docs/benchmarks.md is left as it is");
        return Ok(());
    }
    let path = util::workspace_root().join("docs/benchmarks.md");
    fs::write(&path, &report).with_context(|| format!("failed to write {}", path.display()))?;
    util::step(&format!("wrote {}", path.display()));
    Ok(())
}

/// Runs `measure` for every condition in every round, rotating the order so that no condition
/// always runs first, and returns each condition's measurements. `unit` is the divisor and
/// name of the unit for the progress lines, such as `(1000.0, "µs")`.
fn run_rounds(
    bench: &Bench,
    name: &str,
    conditions: &[Condition],
    unit: (f64, &str),
    mut measure: impl FnMut(&Condition) -> anyhow::Result<Measurement>,
) -> anyhow::Result<Vec<Samples>> {
    let mut samples = vec![Samples::default(); conditions.len()];
    for round in 1..=bench.rounds {
        for offset in 0..conditions.len() {
            let index = (round + offset) % conditions.len();
            let measurement = measure_undisturbed(bench, || measure(&conditions[index]))
                .with_context(|| format!("{name} loop, condition {}", conditions[index].label))?;
            samples[index].values.push(measurement.ns);
            if let Some(cpu) = measurement.monitor_cpu_ns {
                samples[index].monitor_cpu.push(cpu);
            }
        }
        let (divisor, unit_name) = unit;
        let mut line = format!("{name} round {round}/{}:", bench.rounds);
        for (index, condition) in conditions.iter().enumerate() {
            let last = samples[index].values.last().copied().unwrap_or_default();
            let separator = if index == 0 { "" } else { "," };
            let _ = write!(
                line,
                "{separator} {} {:.1} {unit_name}",
                condition.short,
                last / divisor
            );
        }
        util::step(&line);
    }
    Ok(samples)
}

/// Maximum wait for other credwatch processes to exit before a measurement.
const MAX_WAIT_FOR_OTHERS: Duration = Duration::from_secs(300);
/// Measurements of one condition at most, when other credwatch processes keep disturbing them.
const MAX_MEASUREMENT_ATTEMPTS: usize = 3;

/// Load of the CPUs other than CPU 0 above which a measurement is repeated. Work on them slows
/// the loop too, through shared caches, memory bandwidth and, on a virtual machine, vCPUs that
/// may be threads of one core. The monitors' own work stays well below it: credwatch used at
/// most about 8% of a CPU in the TLS loop on the machine in docs/benchmarks.md.
const MAX_OTHER_CPU_LOAD: f64 = 0.25;

thread_local! {
    /// Highest load of the CPUs other than CPU 0 during a `pinned` section since it was last
    /// cleared, from 0 to 1.
    static PINNED_LOAD: Cell<Option<f64>> = const { Cell::new(None) };
}

/// Time the whole benchmark may spend waiting for idle CPUs.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(300);

/// Interval at which other credwatch processes are looked for during a measurement.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `measure` while no other credwatch process runs, because the probes of another one
/// slow every condition, the no-monitor one too. It waits for them to exit first, watches for
/// new ones during the measurement, and measures again when one ran. When they do not go
/// away, it keeps the last measurement and marks the benchmark as disturbed.
fn measure_undisturbed(
    bench: &Bench,
    mut measure: impl FnMut() -> anyhow::Result<Measurement>,
) -> anyhow::Result<Measurement> {
    let mut attempt = 1;
    loop {
        let quiet_before = wait_for_other_monitors();
        wait_for_idle_cpus(bench);
        PINNED_LOAD.set(None);
        let (measurement, others) = watch_for_other_monitors(&mut measure);
        let measurement = measurement?;
        let load = PINNED_LOAD.get().unwrap_or(0.0);
        let busy = load > MAX_OTHER_CPU_LOAD;
        if quiet_before && others.is_empty() && !busy {
            return Ok(measurement);
        }
        if attempt == MAX_MEASUREMENT_ATTEMPTS {
            eprintln!(
                "warning: {attempt} measurements in a row were disturbed; keeping the last one"
            );
            if !others.is_empty() || !quiet_before {
                bench.disturbed.set(true);
            }
            if busy {
                bench.busy.set(true);
            }
            return Ok(measurement);
        }
        if busy {
            eprintln!(
                "warning: the other CPUs were {:.0}% busy during the measurement; measuring again",
                load * 100.0
            );
        } else {
            eprintln!(
                "warning: another credwatch process ran during the measurement (pids {others:?}); \
                 measuring again"
            );
        }
        attempt += 1;
    }
}

/// Runs `measure` while a thread looks for other credwatch processes every `WATCH_INTERVAL`,
/// and returns its result with the pids found.
fn watch_for_other_monitors<T>(
    measure: &mut impl FnMut() -> anyhow::Result<T>,
) -> (anyhow::Result<T>, Vec<u32>) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut found = Vec::new();
            loop {
                for pid in other_credwatch_processes() {
                    if !found.contains(&pid) {
                        found.push(pid);
                    }
                }
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return found;
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
        });
        let result = measure();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let found = watcher.join().unwrap_or_default();
        (result, found)
    })
}

/// Waits until the CPUs other than CPU 0 are less than `MAX_OTHER_CPU_LOAD` busy over half a
/// second, as long as the benchmark's budget for such waits lasts, so that a measurement
/// repeated for a busy machine does not run into the same load at once.
fn wait_for_idle_cpus(bench: &Bench) {
    let mut announced = false;
    while bench.idle_wait_left.get() > Duration::ZERO {
        let started = Instant::now();
        let Some(before) = other_cpus_ticks() else {
            return;
        };
        std::thread::sleep(Duration::from_millis(500));
        let Some(after) = other_cpus_ticks() else {
            return;
        };
        let busy = after.busy.saturating_sub(before.busy) as f64;
        let total = after.total.saturating_sub(before.total) as f64;
        let waited = started.elapsed();
        bench
            .idle_wait_left
            .set(bench.idle_wait_left.get().saturating_sub(waited));
        if total <= 0.0 || busy / total <= MAX_OTHER_CPU_LOAD {
            return;
        }
        if !announced {
            util::step(&format!(
                "waiting for other processes to leave the CPUs other than CPU 0 ({:.0}% busy)",
                busy / total * 100.0
            ));
            announced = true;
        }
    }
}

/// Waits until no other credwatch process runs, at most `MAX_WAIT_FOR_OTHERS`, and returns
/// whether none runs.
fn wait_for_other_monitors() -> bool {
    let started = Instant::now();
    let mut others = other_credwatch_processes();
    if others.is_empty() {
        return true;
    }
    util::step(&format!(
        "waiting for other credwatch processes to exit (pids {others:?}); their probes would \
         slow every condition"
    ));
    while !others.is_empty() {
        if started.elapsed() > MAX_WAIT_FOR_OTHERS {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
        others = other_credwatch_processes();
    }
    true
}

/// One measurement of a condition.
#[derive(Clone, Copy, Debug)]
struct Measurement {
    /// Nanoseconds per iteration of the loop.
    ns: f64,
    /// CPU time of the monitor process per iteration, in nanoseconds, where it was measured.
    monitor_cpu_ns: Option<f64>,
}

impl Measurement {
    fn time_only(ns: f64) -> Self {
        Self {
            ns,
            monitor_cpu_ns: None,
        }
    }
}

/// The measurements of one condition, in nanoseconds per iteration.
#[derive(Clone, Debug, Default)]
struct Samples {
    values: Vec<f64>,
    monitor_cpu: Vec<f64>,
}

impl Samples {
    fn median(&self) -> f64 {
        median(&self.values)
    }

    /// Median CPU time of the monitor process per iteration, if it was measured.
    fn monitor_cpu_median(&self) -> Option<f64> {
        (!self.monitor_cpu.is_empty()).then(|| median(&self.monitor_cpu))
    }

    /// Returns the first and third quartile of the time this condition added in each round, in
    /// percent of the `base` measurement of the same round. Both conditions have one
    /// measurement per round, in round order.
    fn added_percent_quartiles(&self, base: &Samples) -> (f64, f64) {
        let mut added: Vec<f64> = self
            .values
            .iter()
            .zip(&base.values)
            .map(|(value, base)| percent(value - base, *base))
            .collect();
        added.sort_by(f64::total_cmp);
        let quartile = |index: usize| added.get(index).copied().unwrap_or(f64::NAN);
        (quartile(added.len() / 4), quartile(added.len() * 3 / 4))
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Starts the condition's monitor, if it has one, runs `timed` with it, then stops it.
fn with_monitor(
    bench: &Bench,
    condition: &Condition,
    timed: impl FnOnce(Option<&Monitor>) -> anyhow::Result<Measurement>,
) -> anyhow::Result<Measurement> {
    let monitor = if condition.monitor.is_empty() {
        None
    } else {
        Some(Monitor::start(
            &bench.binary,
            condition.monitor,
            &bench.scratch,
        )?)
    };
    let measurement = timed(monitor.as_ref())?;
    if let Some(monitor) = monitor {
        monitor.stop()?;
    }
    Ok(measurement)
}

/// Returns the fastest of `BATCHES` runs of `batch`, which returns its own nanoseconds per
/// iteration. On a shared or virtual machine, interrupts and other tenants only ever slow a
/// batch down, so the fastest one is the most repeatable estimate of the loop's own cost.
fn fastest_batch(mut batch: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    let mut fastest = f64::INFINITY;
    for _ in 0..BATCHES {
        fastest = fastest.min(batch()?);
    }
    Ok(fastest)
}

/// Pins the calling thread to CPU 0, so scheduler moves do not add noise, and returns the
/// previous affinity. Child processes started while it is pinned inherit the pin.
fn pin_to_cpu_zero() -> anyhow::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it and CPU_ZERO/CPU_SET
    // initialise the new set before sched_setaffinity reads it.
    unsafe {
        let mut previous: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut previous) != 0 {
            bail!(
                "sched_getaffinity failed: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "could not pin the benchmark to CPU 0: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(previous)
    }
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid affinity mask returned by sched_getaffinity.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) };
}

/// Runs `body` with the calling thread pinned to CPU 0 at nice -20, and restores the affinity
/// and the nice value after it, also when it fails. Child processes started by `body` inherit
/// both.
fn pinned<T>(body: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let before = other_cpus_ticks();
    let all_cpus = pin_to_cpu_zero()?;
    let previous_nice = match raise_priority() {
        Ok(previous) => previous,
        Err(error) => {
            restore_affinity(&all_cpus);
            return Err(error);
        }
    };
    let result = body();
    set_nice(previous_nice);
    restore_affinity(&all_cpus);

    if let (Some(before), Some(after)) = (before, other_cpus_ticks()) {
        let busy = after.busy.saturating_sub(before.busy) as f64;
        let total = after.total.saturating_sub(before.total) as f64;
        if total > 0.0 {
            let load = busy / total;
            PINNED_LOAD.set(Some(
                PINNED_LOAD.get().map_or(load, |highest| highest.max(load)),
            ));
        }
    }
    result
}

/// Busy and total time of the CPUs other than CPU 0 since boot, in clock ticks.
#[derive(Clone, Copy, Debug)]
struct CpuTicks {
    busy: u64,
    total: u64,
}

/// Sums the `cpuN` lines of `/proc/stat` other than `cpu0`. Busy is user, nice, system, irq,
/// softirq and steal time. Total adds idle and iowait.
fn other_cpus_ticks() -> Option<CpuTicks> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let mut ticks = CpuTicks { busy: 0, total: 0 };
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let is_other_cpu = name
            .strip_prefix("cpu")
            .is_some_and(|number| !number.is_empty() && number != "0");
        if !is_other_cpu {
            continue;
        }
        let values: Vec<u64> = fields.filter_map(|field| field.parse().ok()).collect();
        let field = |index: usize| values.get(index).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        ticks.busy += busy;
        ticks.total += busy + field(3) + field(4);
    }
    Some(ticks)
}

/// Nice value of the loops. At -20 the scheduler gives other processes on CPU 0 about 1% of it
/// (weights 88761 against 1024 for nice 0), so on a shared machine they disturb the loop less.
/// Unlike a real-time policy, it never keeps kernel threads off the CPU.
const LOOP_NICE: libc::c_int = -20;

/// Sets the calling thread's nice value to `LOOP_NICE` and returns the previous one.
fn raise_priority() -> anyhow::Result<libc::c_int> {
    // SAFETY: __errno_location returns this thread's errno, which getpriority sets on failure;
    // it is cleared first because -1 is also a valid nice value. PRIO_PROCESS with id 0 is the
    // calling thread on Linux.
    let previous = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let error = std::io::Error::last_os_error();
    if previous == -1 && error.raw_os_error() != Some(0) {
        bail!("getpriority failed: {error}");
    }
    // SAFETY: setpriority takes no pointers.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, LOOP_NICE) } != 0 {
        bail!(
            "could not set the benchmark's nice value to {LOOP_NICE}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(previous)
}

fn set_nice(nice: libc::c_int) {
    // SAFETY: setpriority takes no pointers.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
}

/// A temporary directory for the loops' files, removed on drop.
struct Scratch {
    dir: PathBuf,
    ready: PathBuf,
}

impl Scratch {
    fn create() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("credwatch-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        Ok(Self {
            ready: dir.join("ready"),
            dir,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A monitor process started for one measurement.
struct Monitor {
    child: Child,
}

impl Monitor {
    /// Attempts to start a monitor at most.
    const ATTEMPTS: usize = 3;

    /// Starts the monitor and waits until it has written its ready file. A monitor that exits
    /// before that is started again, because another credwatch process on the host can make
    /// a start fail. Each one mounts tracefs when it is missing and unmounts it once its own
    /// tracepoints are attached, which can pull tracefs from under one that is starting.
    fn start(binary: &Path, args: &[&str], scratch: &Scratch) -> anyhow::Result<Self> {
        let command = format!("{} {}", binary.display(), args.join(" "));
        let mut attempt = 1;
        loop {
            match Self::start_once(binary, args, scratch)? {
                Ok(monitor) => return Ok(monitor),
                Err(status) if attempt < Self::ATTEMPTS => {
                    eprintln!(
                        "warning: {command} exited with {status} before it was ready; starting it again"
                    );
                    attempt += 1;
                }
                Err(status) => bail!(
                    "{command} exited with {status} before it was ready, {} times",
                    Self::ATTEMPTS
                ),
            }
        }
    }

    /// Starts the monitor once. Returns the exit status as the inner error when it exited
    /// before it was ready.
    fn start_once(
        binary: &Path,
        args: &[&str],
        scratch: &Scratch,
    ) -> anyhow::Result<Result<Self, std::process::ExitStatus>> {
        let _ = fs::remove_file(&scratch.ready);
        let mut command = Command::new(binary);
        command.args(args).arg("--ready-file").arg(&scratch.ready);
        if args.first() == Some(&"run") {
            // The inventory goes to the scratch directory, not to the host's state directory.
            command.arg("--state-dir").arg(scratch.dir.join("state"));
        }
        let child = command
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let mut monitor = Self { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !scratch.ready.exists() {
            if let Some(status) = monitor.child.try_wait()? {
                return Ok(Err(status));
            }
            if Instant::now() > deadline {
                bail!(
                    "{} {} was not ready after 30 s",
                    binary.display(),
                    args.join(" ")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Ok(monitor))
    }

    /// CPU time the monitor's threads have used so far, in nanoseconds, from the first field
    /// of `/proc/PID/task/TID/schedstat`.
    fn cpu_ns(&self) -> anyhow::Result<u64> {
        let tasks = PathBuf::from(format!("/proc/{}/task", self.child.id()));
        let mut total = 0;
        for entry in
            fs::read_dir(&tasks).with_context(|| format!("failed to list {}", tasks.display()))?
        {
            let path = entry?.path().join("schedstat");
            // A thread that ended between the listing and the read no longer counts.
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let on_cpu: u64 = text
                .split_whitespace()
                .next()
                .and_then(|field| field.parse().ok())
                .with_context(|| format!("unexpected {}: {text:?}", path.display()))?;
            total += on_cpu;
        }
        Ok(total)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill only sends a signal to the child this benchmark started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "monitor exited with {status}");
        Ok(())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the pids of running `credwatch` processes other than the benchmark's own
/// monitors, which are its children.
fn other_credwatch_processes() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own_pid = std::process::id();
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let exe = fs::read_link(entry.path().join("exe")).ok()?;
            let name = exe.file_name()?.to_string_lossy().into_owned();
            let is_credwatch = name == "credwatch" || name == "credwatch (deleted)";
            (is_credwatch && parent_pid(pid) != Some(own_pid)).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Returns a process's parent pid, from the field after the command name in
/// `/proc/PID/stat`.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces, so fields are counted from
    // its closing parenthesis: state, then the parent pid.
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Builds docs/benchmarks.md from the loops' sections.
fn report(sections: &[String], disturbed: bool, busy: bool) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# Benchmarks\n");
    let _ = writeln!(
        text,
        "Written by `cargo xtask bench`; rerun it to refresh this page. The benchmark waits \
         while another credwatch process runs and repeats a measurement during which one ran, \
         because that process's probes slow every condition. For the same reason it repeats a \
         measurement during which the CPUs other than CPU 0 were more than \
         {:.0}% busy.\n",
        MAX_OTHER_CPU_LOAD * 100.0
    );
    for section in sections {
        let _ = writeln!(text, "{}\n", section.trim_end());
    }
    if busy {
        let _ = writeln!(
            text,
            "Other processes kept the CPUs other than CPU 0 busy during some measurements, \
             which slows the loops unevenly, so these numbers are less precise than usual.\n"
        );
    }
    if disturbed {
        let _ = writeln!(
            text,
            "Other credwatch processes ran during some measurements. Their probes slowed every \
             condition, so the added costs above are too low.\n"
        );
    }
    let _ = writeln!(
        text,
        "Machine: {}, {} CPUs; kernel {}.",
        cpu_model(),
        cpu_count(),
        kernel_release()
    );
    text
}

/// Writes the table of a loop measured in microseconds: per condition the median time per
/// iteration, the time added to the no-monitor median in microseconds and in percent, and the
/// monitor process's CPU time per iteration. `iteration` names one iteration in the headers.
fn write_microsecond_table(
    text: &mut String,
    conditions: &[Condition],
    samples: &[Samples],
    iteration: &str,
    decimals: usize,
) {
    let base = samples[0].median();
    let _ = writeln!(
        text,
        "| condition | µs per {iteration} | added µs | added % | monitor CPU µs per {iteration} |"
    );
    let _ = writeln!(text, "| --- | ---: | ---: | ---: | ---: |");
    for (condition, samples) in conditions.iter().zip(samples) {
        let median = samples.median();
        let added = median - base;
        let cpu = samples.monitor_cpu_median().map_or_else(
            || "–".to_owned(),
            |ns| format!("{:.decimals$}", ns / 1000.0),
        );
        let _ = writeln!(
            text,
            "| {} | {:.decimals$} | {:.decimals$} | {:.1} | {cpu} |",
            condition.label,
            median / 1000.0,
            added / 1000.0,
            percent(added, base)
        );
    }
}

/// Writes how much each monitor added in the middle half of the rounds, each round's
/// measurement taken against the no-monitor one of the same round, which shows how far the
/// medians can be trusted.
fn write_round_quartiles(text: &mut String, conditions: &[Condition], samples: &[Samples]) {
    let base = &samples[0];
    let ranges: Vec<String> = conditions
        .iter()
        .zip(samples)
        .skip(1)
        .map(|(condition, measured)| {
            let (low, high) = measured.added_percent_quartiles(base);
            format!("{} {low:.1}% to {high:.1}%", condition.short)
        })
        .collect();
    let _ = writeln!(
        text,
        "Taken round by round against the no-monitor measurement of the same round, the middle \
         half of the rounds added: {}.\n",
        ranges.join(", ")
    );
}

/// Returns `added` in percent of `base`.
fn percent(added: f64, base: f64) -> f64 {
    added / base * 100.0
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
