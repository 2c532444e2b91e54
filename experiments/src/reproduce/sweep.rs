//! Executing a plan: one directory per run, finished runs skipped, interrupted runs resumed,
//! dependencies (the float model) run once under a lock and waited for by other workers, and
//! an append-only event log (`sweep.jsonl`) of what each worker did.
//!
//! A run directory `runs/<id>/` holds `run.json` (the [`RunSpec`]), whatever the job writes
//! (`metrics.jsonl`, `checkpoints/`, model files) and, last, `result.json`: a run is finished
//! exactly when `result.json` exists. `.lock` names the live process working on it.
//!
//! The event log is a record, not the source of truth: a process killed after a run's
//! `result.json` lands but before its `done` line is appended leaves a finished run with no
//! `done` event; the next attempt logs `skip` for it and does not recompute it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::plan::RunSpec;
use super::shard::Shard;
use crate::checkpoint::{read_json, write_json};

/// Where a sweep keeps its files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The sweep root (`<out>/<dataset>-<model>-<budget>`).
    pub root: PathBuf,
}

impl Layout {
    /// Directory of run `id`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(id)
    }

    /// The event log shared by every worker.
    pub fn events(&self) -> PathBuf {
        self.root.join("sweep.jsonl")
    }

    /// Whether run `run` is finished here; errors when its directory holds another config.
    pub fn state(&self, run: &RunSpec) -> Result<RunState> {
        let dir = self.run_dir(&run.id);
        let spec_path = dir.join("run.json");
        if !spec_path.exists() {
            return Ok(RunState::Missing);
        }
        let saved: RunSpec = read_json(&spec_path)?;
        if saved != *run {
            bail!(
                "{} holds run `{}` with a different configuration than this plan (changed budget or \
                 code?); delete that directory or use another --out",
                dir.display(),
                run.id
            );
        }
        Ok(if dir.join("result.json").exists() {
            RunState::Done
        } else {
            RunState::Partial
        })
    }
}

/// Progress of one run on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing started.
    Missing,
    /// Started, interrupted or failed: the next attempt resumes it.
    Partial,
    /// `result.json` written.
    Done,
}

/// Computes one run into its directory. The real implementation trains and quantizes
/// ([`super::exec::BurnExecutor`]); tests substitute cheap ones.
pub trait Executor {
    /// Runs `run` in `dir` (which exists and holds `run.json`), continuing from whatever an
    /// earlier attempt left there, and writes `result.json` last.
    fn execute(&self, run: &RunSpec, dir: &Path, layout: &Layout) -> Result<()>;
}

/// What one worker did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SweepReport {
    /// Runs started from nothing and finished.
    pub executed: Vec<String>,
    /// Runs continued from an earlier attempt and finished.
    pub resumed: Vec<String>,
    /// Runs already finished.
    pub skipped: Vec<String>,
    /// Runs being computed by another live worker.
    pub busy: Vec<String>,
    /// Runs that failed, with the error.
    pub failed: Vec<(String, String)>,
}

/// Executes the runs of one shard of a plan.
pub struct Sweep<'a> {
    layout: Layout,
    plan: &'a [RunSpec],
    executor: &'a dyn Executor,
    shard: Shard,
    /// How often to look at a dependency another worker is computing.
    pub poll: Duration,
    /// Give up waiting for such a dependency after this long.
    pub wait_limit: Duration,
    token: u64,
    finished: BTreeSet<String>,
    failed: BTreeMap<String, String>,
}

impl<'a> Sweep<'a> {
    /// A worker for `shard` of `plan` under `layout`.
    pub fn new(
        layout: Layout,
        plan: &'a [RunSpec],
        executor: &'a dyn Executor,
        shard: Shard,
    ) -> Self {
        Self {
            layout,
            plan,
            executor,
            shard,
            poll: Duration::from_secs(3),
            wait_limit: Duration::from_secs(48 * 3600),
            token: new_token(),
            finished: BTreeSet::new(),
            failed: BTreeMap::new(),
        }
    }

    /// Runs every run this shard owns (and the dependencies they need), continuing past
    /// failures so one diverged run does not stop a night's sweep.
    pub fn run(&mut self) -> Result<SweepReport> {
        fs::create_dir_all(self.layout.root.join("runs"))
            .with_context(|| format!("creating {}", self.layout.root.display()))?;
        let mine = self.shard.assign(self.plan);
        let started = Instant::now();
        let mut report = SweepReport::default();
        self.event("sweep_start", "", serde_json::json!({"runs": mine.len()}))?;
        for (k, run) in mine.iter().enumerate() {
            info!(
                "[{}/{}] {} (shard {}, {:.0}s elapsed)",
                k + 1,
                mine.len(),
                run.id,
                self.shard,
                started.elapsed().as_secs_f64()
            );
            if let Err(e) = self.ensure(run, false, &mut report) {
                warn!("run {} failed: {e:#}", run.id);
            }
        }
        self.event(
            "sweep_end",
            "",
            serde_json::json!({
                "executed": report.executed.len(), "resumed": report.resumed.len(),
                "skipped": report.skipped.len(), "busy": report.busy.len(),
                "failed": report.failed.len(), "seconds": started.elapsed().as_secs_f64(),
            }),
        )?;
        Ok(report)
    }

    fn find(&self, id: &str) -> Result<&'a RunSpec> {
        self.plan
            .iter()
            .find(|r| r.id == id)
            .with_context(|| format!("run `{id}` is not in the plan"))
    }

    /// Makes sure `run` is finished: skips it when done, else computes it under its lock. With
    /// `wait`, a run locked by another live worker is waited for (dependencies); without, it
    /// is left to that worker.
    fn ensure(&mut self, run: &'a RunSpec, wait: bool, report: &mut SweepReport) -> Result<()> {
        if self.finished.contains(&run.id) {
            return Ok(());
        }
        if let Some(err) = self.failed.get(&run.id) {
            bail!("{} failed earlier in this sweep: {err}", run.id);
        }
        for dep in run.deps() {
            let dep = self.find(dep)?;
            if let Err(e) = self.ensure(dep, true, report) {
                let msg = format!("dependency {} failed: {e:#}", dep.id);
                self.fail(run, &msg, report)?;
                bail!(msg);
            }
        }
        let dir = self.layout.run_dir(&run.id);
        let waited = Instant::now();
        let mut announced = false;
        loop {
            if self.layout.state(run)? == RunState::Done {
                self.finished.insert(run.id.clone());
                report.skipped.push(run.id.clone());
                self.event("skip", &run.id, serde_json::json!({}))?;
                return Ok(());
            }
            match RunLock::acquire(&dir, self.token)? {
                Ok(lock) => {
                    let result = self.execute_locked(run, &dir, report);
                    lock.release();
                    return result;
                }
                Err(holder) if wait => {
                    if waited.elapsed() > self.wait_limit {
                        bail!(
                            "gave up waiting for {} (locked by {holder}); if that worker is dead, \
                             delete {}",
                            run.id,
                            dir.join(LOCK).display()
                        );
                    }
                    if !announced {
                        info!("waiting for {} (being computed by {holder})", run.id);
                        announced = true;
                    }
                    std::thread::sleep(self.poll);
                }
                Err(holder) => {
                    info!("{} is being computed by {holder}; leaving it", run.id);
                    report.busy.push(run.id.clone());
                    self.event(
                        "busy",
                        &run.id,
                        serde_json::json!({"holder": holder.to_string()}),
                    )?;
                    return Ok(());
                }
            }
        }
    }

    fn execute_locked(
        &mut self,
        run: &'a RunSpec,
        dir: &Path,
        report: &mut SweepReport,
    ) -> Result<()> {
        // Another worker may have finished it between our check and the lock.
        let state = self.layout.state(run)?;
        if state == RunState::Done {
            self.finished.insert(run.id.clone());
            report.skipped.push(run.id.clone());
            return self.event("skip", &run.id, serde_json::json!({}));
        }
        let resume = state == RunState::Partial;
        if !resume {
            write_json(&dir.join("run.json"), run)?;
        }
        self.event(
            if resume { "resume" } else { "start" },
            &run.id,
            serde_json::json!({}),
        )?;
        let started = Instant::now();
        let outcome = self
            .executor
            .execute(run, dir, &self.layout)
            .and_then(|()| {
                if dir.join("result.json").exists() {
                    Ok(())
                } else {
                    bail!("run {} ended without writing result.json", run.id)
                }
            });
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => {
                self.finished.insert(run.id.clone());
                if resume {
                    report.resumed.push(run.id.clone());
                } else {
                    report.executed.push(run.id.clone());
                }
                info!("{} done in {seconds:.1}s", run.id);
                self.event("done", &run.id, serde_json::json!({"seconds": seconds}))
            }
            Err(e) => {
                let msg = format!("{e:#}");
                self.fail(run, &msg, report)?;
                Err(e)
            }
        }
    }

    fn fail(&mut self, run: &RunSpec, msg: &str, report: &mut SweepReport) -> Result<()> {
        self.failed.insert(run.id.clone(), msg.to_string());
        report.failed.push((run.id.clone(), msg.to_string()));
        self.event("fail", &run.id, serde_json::json!({"error": msg}))
    }

    fn event(&self, event: &str, run: &str, extra: serde_json::Value) -> Result<()> {
        let mut line = serde_json::json!({
            "t": unix_seconds(),
            "event": event,
            "run": run,
            "host": hostname(),
            "pid": std::process::id(),
            "shard": self.shard.to_string(),
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
            obj.extend(more);
        }
        append_line(&self.layout.events(), &line)
    }
}

/// Appends one JSON line in a single write (`O_APPEND`), so lines from concurrent workers on
/// one file system do not interleave.
pub fn append_line(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(format!("{value}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's host name (for locks and logs).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

const LOCK: &str = ".lock";

/// Who holds a run's lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Host name.
    pub host: String,
    /// Process id there.
    pub pid: u32,
    /// That process's start time (Linux clock ticks since boot), so a recycled pid is not
    /// mistaken for the holder.
    pub start: Option<u64>,
    /// Distinguishes workers inside one process.
    pub token: u64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

/// Tokens of the workers alive in this process.
static LIVE_TOKENS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

fn new_token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut live) = LIVE_TOKENS.lock() {
        live.insert(n);
    }
    n
}

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE_TOKENS.lock() {
            live.remove(&self.token);
        }
    }
}

/// Start time of process `pid` (field 22 of `/proc/<pid>/stat`); `None` when it does not
/// exist or this is not Linux.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl LockHolder {
    fn me(token: u64) -> Self {
        let pid = std::process::id();
        Self {
            host: hostname(),
            pid,
            start: process_start(pid),
            token,
        }
    }

    /// Whether the holder is certainly gone: same host, and its process has exited (or is a
    /// different process with a recycled pid), or it is this process and its worker is gone.
    /// Holders on other hosts are assumed alive.
    fn is_dead(&self) -> bool {
        if self.host != hostname() || !Path::new("/proc/self/stat").exists() {
            return false;
        }
        if self.pid == std::process::id() {
            return LIVE_TOKENS
                .lock()
                .map(|live| !live.contains(&self.token))
                .unwrap_or(false);
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.start.is_some_and(|s| s != start),
        }
    }
}

/// An exclusive claim on a run directory (`.lock`, created with `O_EXCL`).
struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `dir`, breaking it when its holder is dead; `Err(holder)` when a live
    /// worker holds it.
    fn acquire(dir: &Path, token: u64) -> Result<std::result::Result<Self, LockHolder>> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK);
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let me = serde_json::to_string(&LockHolder::me(token))?;
                    file.write_all(me.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Ok(Self { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| serde_json::from_str::<LockHolder>(&t).ok());
                    match holder {
                        Some(h) if !h.is_dead() => return Ok(Err(h)),
                        Some(h) => {
                            info!("breaking the stale lock of {} ({h})", dir.display());
                            let _ = fs::remove_file(&path);
                        }
                        // Being written right now, or garbage: look again shortly.
                        None => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        // Unreadable three times: a crash mid-write left garbage; take it over.
        let _ = fs::remove_file(&path);
        Self::acquire_once(&path, token)
    }

    fn acquire_once(path: &Path, token: u64) -> Result<std::result::Result<Self, LockHolder>> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(serde_json::to_string(&LockHolder::me(token))?.as_bytes())?;
        Ok(Ok(Self {
            path: path.to_path_buf(),
        }))
    }

    fn release(self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::plan::{Budget, SweepConfig, Target};
    use std::cell::RefCell;

    /// A cheap executor: each run is `steps` steps, each step a line in `metrics.jsonl`;
    /// `crash_at` makes it fail after writing that many steps of one run (a kill midway).
    struct FakeExecutor {
        steps: usize,
        crash_at: Option<(String, usize)>,
        calls: RefCell<Vec<(String, usize)>>,
    }

    impl Executor for FakeExecutor {
        fn execute(&self, run: &RunSpec, dir: &Path, layout: &Layout) -> Result<()> {
            for dep in run.deps() {
                assert!(
                    layout.run_dir(dep).join("result.json").exists(),
                    "{} started before its dependency {dep}",
                    run.id
                );
            }
            let metrics = dir.join("metrics.jsonl");
            let done = fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
            self.calls.borrow_mut().push((run.id.clone(), done));
            for step in done..self.steps {
                if let Some((id, at)) = &self.crash_at
                    && *id == run.id
                    && step == *at
                {
                    bail!("killed");
                }
                append_line(&metrics, &serde_json::json!({ "step": step }))?;
            }
            write_json(&dir.join("result.json"), &serde_json::json!({"ok": true}))
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("s4q-sweep-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn plan() -> Vec<RunSpec> {
        SweepConfig {
            model: "s4d-16h".into(),
            dataset: datasets::DatasetName::Embedded,
            seeds: 2,
            budget: Budget::tiny(),
        }
        .plan(&[Target::Table3])
        .unwrap()
    }

    /// A sweep killed in the middle of a run, re-run, finishes every run without redoing the
    /// finished ones, and continues the interrupted one from where it stopped.
    #[test]
    fn killed_sweep_resumes_without_redoing_finished_runs() {
        let root = tmp("resume");
        let plan = plan();
        let layout = Layout { root: root.clone() };
        let victim = plan[5].id.clone();
        let crashing = FakeExecutor {
            steps: 4,
            crash_at: Some((victim.clone(), 2)),
            calls: RefCell::new(Vec::new()),
        };
        let first = Sweep::new(layout.clone(), &plan, &crashing, Shard::ALL)
            .run()
            .unwrap();
        assert_eq!(first.failed.len(), 1);
        assert_eq!(first.failed[0].0, victim);
        assert_eq!(first.executed.len(), plan.len() - 1);
        assert_eq!(layout.state(&plan[5]).unwrap(), RunState::Partial);

        let fine = FakeExecutor {
            steps: 4,
            crash_at: None,
            calls: RefCell::new(Vec::new()),
        };
        let second = Sweep::new(layout.clone(), &plan, &fine, Shard::ALL)
            .run()
            .unwrap();
        // Only the interrupted run ran again, from step 2.
        assert_eq!(*fine.calls.borrow(), vec![(victim.clone(), 2)]);
        assert_eq!(second.resumed, vec![victim.clone()]);
        assert_eq!(second.skipped.len(), plan.len() - 1);
        for r in &plan {
            assert_eq!(layout.state(r).unwrap(), RunState::Done);
            let lines = fs::read_to_string(layout.run_dir(&r.id).join("metrics.jsonl")).unwrap();
            assert_eq!(lines.lines().count(), 4, "{} redid steps", r.id);
            assert!(!layout.run_dir(&r.id).join(LOCK).exists());
        }
        // A third pass does nothing.
        let idle = Sweep::new(layout.clone(), &plan, &fine, Shard::ALL)
            .run()
            .unwrap();
        assert_eq!(idle.skipped.len(), plan.len());
        assert_eq!(fine.calls.borrow().len(), 1);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn failed_dependency_fails_dependents_once() {
        let root = tmp("dep");
        let plan = plan();
        let layout = Layout { root: root.clone() };
        let exec = FakeExecutor {
            steps: 1,
            crash_at: Some(("float-s0".into(), 0)),
            calls: RefCell::new(Vec::new()),
        };
        let report = Sweep::new(layout, &plan, &exec, Shard::ALL).run().unwrap();
        let float_calls = exec
            .calls
            .borrow()
            .iter()
            .filter(|(id, _)| id == "float-s0")
            .count();
        assert_eq!(
            float_calls, 1,
            "a failed float run is not retried per dependent"
        );
        // float-s0 and its 5 dependents fail; seed 1 is unaffected.
        assert_eq!(report.failed.len(), 6);
        assert_eq!(report.executed.len(), 6);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn changed_config_is_refused() {
        let root = tmp("changed");
        let plan = plan();
        let layout = Layout { root: root.clone() };
        let exec = FakeExecutor {
            steps: 1,
            crash_at: None,
            calls: RefCell::new(Vec::new()),
        };
        Sweep::new(layout.clone(), &plan, &exec, Shard::ALL)
            .run()
            .unwrap();
        let mut other = plan[0].clone();
        other.seed = 7;
        let err = layout.state(&other).unwrap_err();
        assert!(err.to_string().contains("different configuration"), "{err}");
        let _ = fs::remove_dir_all(&root);
    }

    /// Two workers (shards) in parallel: the float runs are computed once, under the lock, and
    /// the other shard waits for them instead of computing them again.
    #[test]
    fn parallel_shards_share_dependencies() {
        let root = tmp("shards");
        let plan = plan();
        let layout = Layout { root: root.clone() };
        let reports: Vec<SweepReport> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let (layout, plan) = (layout.clone(), &plan);
                    s.spawn(move || {
                        let exec = FakeExecutor {
                            steps: 3,
                            crash_at: None,
                            calls: RefCell::new(Vec::new()),
                        };
                        let mut sweep = Sweep::new(layout, plan, &exec, Shard::new(i, 3).unwrap());
                        sweep.poll = Duration::from_millis(5);
                        sweep.run().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let executed: Vec<&String> = reports.iter().flat_map(|r| &r.executed).collect();
        let unique: BTreeSet<&String> = executed.iter().copied().collect();
        assert_eq!(executed.len(), unique.len(), "a run was computed twice");
        assert_eq!(unique.len(), plan.len());
        for r in &plan {
            let lines = fs::read_to_string(layout.run_dir(&r.id).join("metrics.jsonl")).unwrap();
            assert_eq!(lines.lines().count(), 3);
        }
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn stale_lock_of_a_dead_process_is_broken() {
        let root = tmp("stale");
        let dir = root.join("runs").join("x");
        fs::create_dir_all(&dir).unwrap();
        // A lock left by a process that no longer exists on this host.
        let dead = LockHolder {
            host: hostname(),
            pid: u32::MAX - 1,
            start: Some(1),
            token: 0,
        };
        fs::write(dir.join(LOCK), serde_json::to_string(&dead).unwrap()).unwrap();
        let token = new_token();
        let lock = RunLock::acquire(&dir, token).unwrap();
        assert!(lock.is_ok());
        // Held by a live worker (this one): a second claim is refused.
        let again = RunLock::acquire(&dir, new_token()).unwrap();
        assert!(again.is_err());
        // A lock from another host is never broken.
        let remote = LockHolder {
            host: "elsewhere".into(),
            ..dead
        };
        assert!(!remote.is_dead());
        let _ = fs::remove_dir_all(&root);
    }
}
