//! Nothing lost to a kill or a Ctrl-C: a shortened quickstart run (with LoRA dropout, so the
//! seeded dropout masks are exercised) is SIGKILLed at seeded-random moments — at least once in
//! the middle of a checkpoint save — and resumed each time until it finishes; its final adapter
//! must be byte-identical to an uninterrupted run's and its loss records (train and validation)
//! equal. Ctrl-C must save a checkpoint at the interrupted step and exit 130 (a second Ctrl-C:
//! exit 130 at once), and resuming must again give the uninterrupted adapter. CPU backend, where
//! training is bit-exact (docs/robustness.md). Each run is its own process, so the tests may run
//! in parallel (Burn's CPU RNG is process-global, but not shared between processes).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

/// 40 steps, a checkpoint every 5, validation every 10 on 2 batches, a report every step.
const SET: [&str; 14] = [
    "--set",
    "train.iters=40",
    "--set",
    "checkpoint.every=5",
    "--set",
    "eval.every=10",
    "--set",
    "eval.batches=2",
    "--set",
    "lora.lora_dropout=0.1",
    "--set",
    "train.report_every=1",
    "--backend",
    "cpu",
];
const ADAPTER: &str = "adapter/adapter_model.safetensors";

/// A copy of the quickstart recipe writing into `dir/run` (data from the repo).
fn recipe(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("recipes/quickstart.toml")).unwrap();
    let data = repo().join("datasets/quickstart");
    let text = text
        .replace("../datasets/quickstart", &data.display().to_string())
        .replace("\"../runs/quickstart\"", "\"run\"");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("recipe.toml"), text).unwrap();
    dir.join("recipe.toml")
}

/// Start `train` (with `--resume` if a checkpoint exists, else `--force`: a run killed before
/// its first checkpoint is started over, moved aside), output into `dir/log-N.{out,err}`.
fn spawn(dir: &Path, attempt: usize, extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemma4-tune"));
    cmd.arg("train").arg(dir.join("recipe.toml")).args(SET).args(extra);
    let again = if latest_checkpoint(&dir.join("run")).is_some() { "--resume" } else { "--force" };
    cmd.arg(again);
    let log =
        |ext: &str| Stdio::from(File::create(dir.join(format!("log-{attempt}.{ext}"))).unwrap());
    cmd.stdout(log("out")).stderr(log("err")).spawn().expect("start gemma4-tune")
}

fn log(dir: &Path, attempt: usize, ext: &str) -> String {
    std::fs::read_to_string(dir.join(format!("log-{attempt}.{ext}"))).unwrap_or_default()
}

fn latest_checkpoint(run: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("trainer_state.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Temporaries of saves in progress (gemma4-store's `.<name>.tmp-XXXXXX`): checkpoint
/// directories (`checkpoints/.<step>.tmp-XXXXXX`), adapter directories (`.best.tmp-XXXXXX`,
/// `.adapter.tmp-XXXXXX`).
fn temporaries(run: &Path) -> Vec<String> {
    let names = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let mut t: Vec<String> = names(&run.join("checkpoints"))
        .into_iter()
        .filter(|n| n.starts_with('.') && n.contains(".tmp-"))
        .collect();
    t.extend(
        names(run)
            .into_iter()
            .filter(|n| n.starts_with(".best.tmp-") || n.starts_with(".adapter.tmp-")),
    );
    t
}

/// The metrics records without their timing and memory fields (`elapsed_s`, `tokens_per_s`,
/// `eta_s`, `mem_bytes`, `mem_peak_bytes`).
fn loss_records(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("elapsed_s");
            for timing in ["tokens_per_s", "eta_s", "mem_bytes", "mem_peak_bytes"] {
                o.remove(timing);
            }
            v
        })
        .collect()
}

/// adapter_config.json minus `base_model_name_or_path` (the run's own base_model path).
fn adapter_config(run: &Path) -> Value {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    v.as_object_mut().unwrap().remove("base_model_name_or_path");
    v
}

/// The uninterrupted run: adapter bytes, adapter config, loss records.
type Reference = (Vec<u8>, Value, Vec<Value>);

/// The uninterrupted run, computed once (its directory lives as long as the test process).
fn reference() -> &'static Reference {
    static REF: OnceLock<(tempfile::TempDir, Reference)> = OnceLock::new();
    &REF.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        recipe(tmp.path());
        let status = spawn(tmp.path(), 0, &[]).wait().unwrap();
        assert!(status.success(), "{}", log(tmp.path(), 0, "err"));
        let run = tmp.path().join("run");
        let records = loss_records(&run);
        assert_eq!(records.iter().filter(|r| r.get("loss").is_some()).count(), 40);
        assert_eq!(
            records.iter().filter(|r| r.get("val_loss").is_some()).count(),
            5,
            "steps 0, 10, 20, 30, 40"
        );
        let out = (std::fs::read(run.join(ADAPTER)).unwrap(), adapter_config(&run), records);
        (tmp, out)
    })
    .1
}

fn assert_same_as_reference(run: &Path, what: &str) {
    let (adapter, config, records) = reference();
    assert!(
        std::fs::read(run.join(ADAPTER)).unwrap() == *adapter,
        "{what}: the adapter differs from the uninterrupted run's"
    );
    assert_eq!(adapter_config(run), *config, "{what}");
    assert_eq!(
        loss_records(run),
        *records,
        "{what}: metrics.jsonl differs from the uninterrupted run's"
    );
    let leftovers: Vec<_> = walk(run)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{what}: temporaries left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in std::fs::read_dir(dir).into_iter().flatten().map(|e| e.unwrap().path()) {
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// xorshift64*: the kill moments, reproducible from the seed printed on failure.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run() {
    reference();
    let seed: u64 =
        std::env::var("KILL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6e6d_6134);
    let mut rng = Rng(seed | 1);
    let tmp = tempfile::tempdir().unwrap();
    recipe(tmp.path());
    let run = tmp.path().join("run");
    // Two kills timed by a save in progress, then three after a random delay, then run to the end.
    let plan = ["save", "delay", "save", "delay", "delay"];
    let (mut history, mut mid_save) = (Vec::new(), 0);
    for attempt in 1..=plan.len() + 1 {
        let mode = plan.get(attempt - 1).copied().unwrap_or("finish");
        let resumed_from = latest_checkpoint(&run);
        let stale = temporaries(&run); // left by an earlier kill; the run removes them
        let saving = || temporaries(&run).iter().any(|t| !stale.contains(t));
        let mut child = spawn(tmp.path(), attempt, &[]);
        let start = Instant::now();
        let delay = Duration::from_millis(300 + rng.below(1500));
        let killed = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            let due = match mode {
                "save" => saving(),
                "delay" => start.elapsed() >= delay,
                _ => false,
            };
            if due {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break true;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let during_save = killed && saving();
        mid_save += during_save as usize;
        history.push(format!("attempt {attempt}: {mode} (delay {delay:?}), resumed from {resumed_from:?}, killed {killed}, mid-save {during_save}, then latest {:?}", latest_checkpoint(&run)));
        if !killed {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "seed {seed}: {history:#?}\n{}",
                log(tmp.path(), attempt, "err")
            );
            break;
        }
    }
    let history = format!("seed {seed}:\n{}", history.join("\n"));
    println!("{history}");
    assert!(history.lines().filter(|l| l.contains("killed true")).count() >= 3, "{history}");
    assert!(mid_save >= 1, "no kill landed during a save: {history}");
    assert_same_as_reference(&run, &history);
}

/// Send SIGINT to `child` (std has no signal API; `kill(1)` is POSIX).
fn interrupt(child: &Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Wait until `cond` holds (or the child exits): true if it held.
fn wait_for(child: &mut Child, cond: impl Fn() -> bool) -> bool {
    while child.try_wait().unwrap().is_none() {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn ctrl_c_saves_a_checkpoint_exits_130_and_resumes_to_the_same_adapter() {
    reference();
    let tmp = tempfile::tempdir().unwrap();
    recipe(tmp.path());
    let run = tmp.path().join("run");
    let mut child = spawn(tmp.path(), 1, &[]);
    let metrics = run.join("metrics.jsonl");
    let reached = wait_for(&mut child, || {
        std::fs::read_to_string(&metrics).is_ok_and(|t| t.contains("\"step\":7,"))
    });
    assert!(reached, "{}", log(tmp.path(), 1, "err"));
    interrupt(&child);
    let status = child.wait().unwrap();
    let (stdout, stderr) = (log(tmp.path(), 1, "out"), log(tmp.path(), 1, "err"));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupt: saving a checkpoint after this step"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("interrupted: checkpoint saved at step"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let step: usize = line.split_whitespace().nth(5).unwrap().parse().unwrap();
    assert!((7..40).contains(&step), "{line}");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join(format!("checkpoints/{step:07}/trainer_state.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["step"], step);
    assert_eq!(latest_checkpoint(&run), Some(run.join(format!("checkpoints/{step:07}"))));
    assert!(!run.join("adapter").exists(), "an interrupted run writes no final adapter");

    let status = spawn(tmp.path(), 2, &[]).wait().unwrap();
    assert!(status.success(), "{}", log(tmp.path(), 2, "err"));
    assert!(log(tmp.path(), 2, "out").contains(&format!("at step {step}")));
    assert_same_as_reference(&run, &format!("Ctrl-C at step {step}, then --resume"));
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    recipe(tmp.path());
    // The whole validation split at step 0 (before any step ends): both interrupts land in it.
    let mut child = spawn(tmp.path(), 1, &["--set", "eval.batches=0"]);
    // The resolved recipe is printed just before the handler is installed.
    let printed = wait_for(&mut child, || log(tmp.path(), 1, "out").contains("[checkpoint]"));
    assert!(printed, "{}", log(tmp.path(), 1, "err"));
    std::thread::sleep(Duration::from_millis(50));
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(50));
    interrupt(&child);
    let status = child.wait().unwrap();
    let stderr = log(tmp.path(), 1, "err");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted again: exiting now"), "{stderr}");
    assert!(
        latest_checkpoint(&tmp.path().join("run")).is_none(),
        "no step finished, no checkpoint"
    );
}
