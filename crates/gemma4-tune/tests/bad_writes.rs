//! Write failures, through the real binary: each exits 1 with one `error:` line naming the path,
//! and the previous checkpoint (and everything else already written) stays as it was. The tests
//! run as root, so chmod would not block writes: other means are used (docs/robustness.md §6;
//! `bad_inputs.rs` says which bad input is covered where).

use std::path::Path;
use std::process::Command;

mod common;
use common::bad::*;
use common::*;

/// Train on the CPU with a checkpoint every 3 steps.
const SET: [&str; 4] = ["--backend", "cpu", "--set", "checkpoint.every=3"];

/// `cmd` under a file-size limit of `blocks` (`ulimit -f`; 512- or 1024-byte blocks depending on
/// the shell), SIGXFSZ ignored: a write past the limit fails with EFBIG, like a full disk.
fn with_file_size_limit(blocks: u32, cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    sh
}

#[test]
fn a_full_disk_names_the_file_and_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let r = recipe(&tmp.path().join("a"), &data);
    // No valid split: the first large file step 6 writes is its checkpoint's adapter (~220 kB).
    std::fs::write(
        &r,
        std::fs::read_to_string(&r)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("valid"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(SET).args(["--set", "train.iters=3"]));
    assert!(out.status.success(), "{stderr}");
    let ckpts = tmp.path().join("a/run/checkpoints");
    let before = snapshot(&ckpts);
    assert!(before.contains_key(Path::new("0000003/optimizer.safetensors")));

    // "Disk full" while saving the step-6 checkpoint: the error names the file, no partial
    // snapshot is left, the step-3 one is intact, and a later resume finishes.
    let mut train = bin();
    train.arg("train").arg(&r).args(SET).args(["--set", "train.iters=6", "--resume"]);
    let result = run(&mut with_file_size_limit(200, &train));
    assert_fails_cleanly(
        "file size limit",
        &result,
        &[
            &format!("{}/.0000006.tmp-", ckpts.display()),
            "adapter_model.safetensors",
            "File too large",
        ],
        &ckpts,
        &before,
    );
    let (out, stdout, stderr) = run(&mut train);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("at step 3") && ckpts.join("0000006/trainer_state.json").is_file(),
        "{stdout}"
    );
}

#[test]
fn a_stray_checkpoints_file_is_an_earlier_run_and_is_left_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    // `checkpoints` is a file. Before issue 16 the run started and its first save failed naming
    // it; now a run directory holding anything of another run is refused before any write (the
    // failed save naming its path is `a_full_disk_names_the_file_…`).
    let b = tmp.path().join("b");
    let r = recipe(&b, &data);
    std::fs::create_dir_all(b.join("run")).unwrap();
    std::fs::write(b.join("run/checkpoints"), "not a directory").unwrap();
    let before = snapshot(&b.join("run"));
    let result = run(bin().arg("train").arg(&r).args(SET).args([
        "--set",
        "train.iters=3",
        "--set",
        "eval.batches=1",
    ]));
    assert_fails_cleanly(
        "a checkpoints file",
        &result,
        &[
            &format!("{}: holds an earlier run (checkpoints)", b.join("run").display()),
            "it has no checkpoint to resume from",
            "`--force`",
        ],
        &b.join("run"),
        &before,
    );
}

#[test]
fn an_out_dir_that_is_a_file_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    // The output directory is a file.
    let c = tmp.path().join("c");
    let r = recipe(&c, &data);
    std::fs::write(c.join("run"), "a file").unwrap();
    let result = run(bin().arg("train").arg(&r).args(SET));
    assert_fails_cleanly(
        "out_dir is a file",
        &result,
        &[&c.join("run").display().to_string(), "File exists"],
        &c,
        &snapshot(&c),
    );
}

#[test]
fn logits_out_into_a_missing_directory_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    // `logits --out` into a directory that does not exist.
    let result = run(bin()
        .args(["logits", "--backend", "cpu", "--model"])
        .arg(fixture("dense"))
        .arg("--input")
        .arg(fixture("dense/golden.safetensors"))
        .arg("--out")
        .arg(tmp.path().join("no/such/dir/o.safetensors")));
    assert_fails_cleanly(
        "--out in a missing directory",
        &result,
        &["no/such/dir/o.safetensors: ", "No such file"],
        tmp.path(),
        &snapshot(tmp.path()),
    );
}

#[test]
fn logits_out_over_an_input_is_refused_and_the_inputs_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors", "golden.safetensors"] {
        std::fs::copy(fixture("dense").join(f), model.join(f)).unwrap();
    }
    let link = tmp.path().join("out-link.safetensors");
    std::os::unix::fs::symlink(model.join("model.safetensors"), &link).unwrap();
    // Over the weights, over the input, and through a symlink to the weights.
    for (what, out) in [
        ("--out over the model's weights", model.join("model.safetensors")),
        ("--out over --input", model.join("golden.safetensors")),
        ("--out through a symlink to the weights", link.clone()),
    ] {
        let before = snapshot(tmp.path());
        let result = run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(&model)
            .arg("--input")
            .arg(model.join("golden.safetensors"))
            .arg("--out")
            .arg(&out));
        assert_fails_cleanly(
            what,
            &result,
            &["refusing to write over an input", "model"],
            tmp.path(),
            &before,
        );
    }
}

#[test]
fn fuse_force_over_the_directory_a_symlinked_model_points_into_is_refused() {
    // The Hugging Face cache layout: `snapshot/` holds symlinks into `blobs/`.
    let tmp = tempfile::tempdir().unwrap();
    let (blobs, links) = (tmp.path().join("blobs"), tmp.path().join("snapshot"));
    std::fs::create_dir(&blobs).unwrap();
    std::fs::create_dir(&links).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("dense").join(f), blobs.join(format!("blob-{f}"))).unwrap();
        std::os::unix::fs::symlink(blobs.join(format!("blob-{f}")), links.join(f)).unwrap();
    }
    let before = snapshot(tmp.path());
    let result = run(bin()
        .args(["fuse", "--model"])
        .arg(&links)
        .arg("--adapter")
        .arg(fixture("dense/peft"))
        .arg("--out")
        .arg(&blobs)
        .arg("--force"));
    assert_fails_cleanly(
        "fuse --force over the blobs of a symlinked model",
        &result,
        &["refusing to write over an input", "snapshot/model.safetensors"],
        tmp.path(),
        &before,
    );
}

#[test]
fn a_second_run_into_an_earlier_runs_out_dir_is_refused_or_moves_it_aside_whole() {
    // Issue 16, case 3: another learning rate into the same out_dir used to mix the two runs.
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let r = recipe(&tmp.path().join("a"), &data);
    let three = ["--set", "train.iters=3", "--set", "eval.batches=1"];
    let (out, _, stderr) = run(bin().arg("train").arg(&r).args(SET).args(three));
    assert!(out.status.success(), "{stderr}");
    let run_dir = tmp.path().join("a/run");
    let before = snapshot(&run_dir);
    let other_lr = ["--set", "optim.lr=1e-3"];
    // Without --resume: refused, saying how to resume or where else to write; nothing changes.
    let result = run(bin().arg("train").arg(&r).args(SET).args(three).args(other_lr));
    assert_fails_cleanly(
        "a fresh run into an earlier run's out_dir",
        &result,
        &[
            &format!("{}: holds an earlier run", run_dir.display()),
            "`--resume`",
            "checkpoints/0000003",
            "train.out_dir",
            "`--force`",
            "run.old-1",
        ],
        &run_dir,
        &before,
    );
    // Resuming another run directory's checkpoint into it: refused too.
    let other = tmp.path().join("b/run");
    std::fs::create_dir_all(other.join("checkpoints")).unwrap();
    let copied = other.join("checkpoints/0000003");
    std::fs::create_dir(&copied).unwrap();
    for e in std::fs::read_dir(run_dir.join("checkpoints/0000003")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copied.join(e.file_name())).unwrap();
    }
    let result = run(bin().arg("train").arg(&r).args(SET).args(three).arg("--resume").arg(&copied));
    assert_fails_cleanly(
        "--resume of another directory's checkpoint",
        &result,
        &["holds an earlier run", "checkpoint of another run directory"],
        &run_dir,
        &before,
    );
    // --force: the earlier run is moved aside whole (byte-identical), then the new run starts.
    let (out, stdout, stderr) =
        run(bin().arg("train").arg(&r).args(SET).args(three).args(other_lr).arg("--force"));
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let aside = tmp.path().join("a/run.old-1");
    assert!(
        stdout.contains(&format!(
            "--force: moved the earlier run in {} aside to {}",
            run_dir.display(),
            aside.display()
        )),
        "{stdout}"
    );
    assert_eq!(snapshot(&aside), before, "the earlier run, moved aside, is unchanged");
    let recipe_now = std::fs::read_to_string(run_dir.join("recipe.resolved.toml")).unwrap();
    assert!(recipe_now.contains("lr = 0.001"), "{recipe_now}");
    let records = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    // The new run's log alone: one step-0 record, none of the earlier run's (another lr).
    assert_eq!(records.matches("{\"step\":0,").count(), 1, "{records}");
    assert_ne!(records, std::fs::read_to_string(aside.join("metrics.jsonl")).unwrap());
    // And the new run resumes (its own checkpoint, its own recipe).
    let (out, stdout, stderr) = run(bin()
        .arg("train")
        .arg(&r)
        .args(SET)
        .args(["--set", "train.iters=6", "--set", "eval.batches=1"])
        .args(other_lr)
        .arg("--resume"));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("at step 3"), "{stdout}");
}
