//! The bad-input matrix of issue 6, through the real binary: every case exits 1 with one
//! `error:` line naming the file, line, key or tensor, and leaves nothing half-written (no
//! adapter, checkpoint, metrics or temporary file; an existing run directory is left untouched).
//! Cases already covered elsewhere are not repeated here: malformed JSON, a missing field, an
//! unknown role, an empty split, unknown recipe keys (`train_cli.rs`); a missing model
//! directory and an unsupported config value for `logits` (`cli.rs`); fuse (`fuse_cli.rs`).
//! The table with messages is in docs/robustness.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::*;

/// A copy of the quickstart recipe reading `data_dir`, writing into `dir/run`.
fn recipe(dir: &Path, data_dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("recipes/quickstart.toml")).unwrap();
    let text = text
        .replace("../datasets/quickstart", &data_dir.display().to_string())
        .replace("\"../runs/quickstart\"", "\"run\"");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A data directory with five good quickstart lines in each split.
fn data_dir(root: &Path) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let good = std::fs::read_to_string(repo().join("datasets/quickstart/train.jsonl")).unwrap();
    let five: String = good.lines().take(5).map(|l| format!("{l}\n")).collect();
    for split in ["train", "valid", "test"] {
        std::fs::write(data.join(format!("{split}.jsonl")), &five).unwrap();
    }
    data
}

type Snapshot = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// Every entry under `dir`: files with their bytes, directories as `None` (empty if no `dir`).
fn snapshot(dir: &Path) -> Snapshot {
    let mut entries = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().map(|e| e.unwrap()) {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_owned();
            if p.is_dir() {
                stack.push(p);
                entries.insert(rel, None);
            } else {
                entries.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    entries
}

/// Exit code 1, exactly one `error:` message containing every needle, no panic; and `dir` holds what
/// it held before (`before`), plus at most the materialised built-in model (`base_model/`, complete).
fn assert_fails_cleanly(
    what: &str,
    (out, _, stderr): &(Output, String, String),
    needles: &[&str],
    dir: &Path,
    before: &Snapshot,
) {
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    // One error, printed last (a TOML parse error spans a few lines: the snippet with a caret).
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{what}: one error: {stderr}"
    );
    let error = &stderr[stderr.find("\nerror:").map_or(0, |i| i + 1)..];
    println!("{what} → {}", error.trim_end()); // `--nocapture` lists the messages (docs/robustness.md)
    for n in needles {
        assert!(error.contains(n), "{what}: `{n}` not in: {stderr}");
    }
    let mut after = snapshot(dir);
    after.retain(|p, _| !p.starts_with("base_model") || before.contains_key(p));
    let changed: Vec<_> = after
        .keys()
        .filter(|p| before.get(*p) != after.get(*p))
        .chain(before.keys().filter(|p| !after.contains_key(*p)))
        .collect();
    assert!(
        changed.is_empty(),
        "{what}: files written, changed or removed in {}: {changed:?}",
        dir.display()
    );
}

#[test]
fn bad_data_fails_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let good = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    let d = |f: &str| data.join(f).display().to_string();
    let no_target = "{\"messages\": [{\"role\": \"user\", \"content\": \"Upper: ab\"}]}\n";
    // (case, file written, its content, the recipe override, what the error must name)
    type Case = (&'static str, &'static str, String, String, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "messages not a list",
            "t1.jsonl",
            format!("{good}{{\"messages\": \"x\"}}\n"),
            format!("data.train={}", d("t1.jsonl")),
            vec![format!("{}:6", d("t1.jsonl")), "`messages`".into(), "found a string".into()],
        ),
        (
            "line is an array",
            "t2.jsonl",
            format!("{good}[1,2]\n"),
            format!("data.train={}", d("t2.jsonl")),
            vec![format!("{}:6", d("t2.jsonl")), "expected a JSON object, found an array".into()],
        ),
        (
            "text not a string",
            "t3.jsonl",
            format!("{good}\n{{\"text\": 5}}\n"),
            format!("data.train={}", d("t3.jsonl")),
            vec![format!("{}:7", d("t3.jsonl")), "`text`".into(), "found a number".into()],
        ),
        (
            "prompt not a string",
            "t4.jsonl",
            "{\"prompt\": [\"a\"], \"completion\": \"b\"}\n".into(),
            format!("data.train={}", d("t4.jsonl")),
            vec![format!("{}:1", d("t4.jsonl")), "`prompt`".into()],
        ),
        (
            "missing valid split",
            "unused.jsonl",
            String::new(),
            format!("data.valid={}", d("no-such-valid.jsonl")),
            vec![d("no-such-valid.jsonl"), "No such file".into()],
        ),
        (
            "zero-byte valid file",
            "zero.jsonl",
            String::new(),
            format!("data.valid={}", d("zero.jsonl")),
            vec![d("zero.jsonl"), "no records".into()],
        ),
        (
            "blank-lines-only train file",
            "blank.jsonl",
            "\n  \n\n".into(),
            format!("data.train={}", d("blank.jsonl")),
            vec![d("blank.jsonl"), "no records".into()],
        ),
        (
            "no train sample has targets",
            "nt.jsonl",
            no_target.repeat(3),
            format!("data.train={}", d("nt.jsonl")),
            vec![d("nt.jsonl"), "no sample has target tokens".into(), "mask_prompt".into()],
        ),
        (
            "no valid sample has targets",
            "nv.jsonl",
            no_target.repeat(2),
            format!("data.valid={}", d("nv.jsonl")),
            vec![d("nv.jsonl"), "no sample has target tokens".into()],
        ),
    ];
    for (i, (what, file, content, set, needles)) in cases.into_iter().enumerate() {
        std::fs::write(data.join(file), content).unwrap();
        let dir = tmp.path().join(format!("case{i}"));
        let r = recipe(&dir, &data);
        let mut cmd = bin();
        cmd.arg("train").arg(&r).args([
            "--backend",
            "cpu",
            "--set",
            "train.iters=2",
            "--set",
            &set,
        ]);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_fails_cleanly(what, &run(&mut cmd), &needles, &dir.join("run"), &BTreeMap::new());
    }
}

#[test]
fn long_and_targetless_samples_are_counted_not_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let good = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    // A long answer: cut at max_seq_len but still trained; a user-only chat: nothing to train.
    let long = format!(
        "{{\"messages\": [{{\"role\": \"user\", \"content\": \"Upper: ab\"}}, {{\"role\": \"assistant\", \"content\": \"{}\"}}]}}\n",
        "AB ".repeat(200)
    );
    let none = "{\"messages\": [{\"role\": \"user\", \"content\": \"Upper: ab\"}]}\n";
    std::fs::write(data.join("train.jsonl"), format!("{good}{long}{none}")).unwrap();
    let r = recipe(&tmp.path().join("x"), &data);
    let (out, stdout, stderr) = run(bin().arg("data").arg(&r).args(["--show", "7"]));
    assert!(out.status.success(), "{stderr}");
    let count = |label: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().nth(if label == "no target" { 2 } else { 1 }))
            .unwrap_or_else(|| panic!("{label}: {stdout}"))
            .to_owned()
    };
    assert_eq!(
        (count("samples"), count("truncated"), count("no target")),
        ("7".into(), "1".into(), "1".into()),
        "{stdout}"
    );
    assert!(stdout.contains("--- line 6 (128 tokens, truncated) ---"), "{stdout}");
    // Training on it works: the long sample is trained (truncated), the other left out.
    let (out, stdout, stderr) = run(bin().arg("train").arg(&r).args([
        "--backend",
        "cpu",
        "--set",
        "train.iters=1",
        "--set",
        "eval.batches=1",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("truncated          1") && stdout.contains("no target          1"),
        "{stdout}"
    );
}

#[test]
fn bad_recipe_values_fail_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let r = recipe(&tmp.path().join("r"), &data);
    let text = std::fs::read_to_string(&r).unwrap();
    let line_of = |prefix: &str| {
        format!("line {}", text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1)
    };
    let in_file = tmp.path().join("r/in_file.toml");
    std::fs::write(&in_file, text.replace("iters = 300", "iters = \"ten\"")).unwrap();
    let broken = tmp.path().join("r/broken.toml");
    std::fs::write(&broken, text.replace("r = 8 ", "r = 8 8")).unwrap();
    let cases: [(&str, &Path, &[&str], &[&str]); 8] = [
        (
            "iters a string (file)",
            &in_file,
            &[],
            &["in_file.toml", &line_of("iters = 300"), "iters = \"ten\"", "expected usize"],
        ),
        ("iters a string (--set)", &r, &["train.iters=\"ten\""], &["recipe.toml", "`train.iters`"]),
        ("iters a bare word (--set)", &r, &["train.iters=ten"], &["`train.iters`", "\"ten\""]),
        ("negative lr", &r, &["optim.lr=-1"], &["recipe.toml", "[optim] lr must be > 0"]),
        ("negative rank", &r, &["lora.r=-3"], &["`lora.r`", "-3"]),
        (
            "dropout out of range",
            &r,
            &["lora.lora_dropout=2"],
            &["recipe.toml", "lora_dropout", "[0, 1)"],
        ),
        ("not TOML", &broken, &[], &["broken.toml", &line_of("r = 8 ")]),
        (
            "override into a value",
            &r,
            &["train.iters.x=1"],
            &["--set train.iters.x=1", "`iters` is not a table"],
        ),
    ];
    for (what, recipe, sets, needles) in cases {
        let mut cmd = bin();
        cmd.arg("train").arg(recipe).args(["--backend", "cpu"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        assert_fails_cleanly(
            what,
            &run(&mut cmd),
            needles,
            &tmp.path().join("r/run"),
            &BTreeMap::new(),
        );
    }
    let (out, _, stderr) = run(bin().arg("train").arg(tmp.path().join("r/none.toml")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("none.toml") && stderr.contains("No such file"), "{stderr}");
}

// ── Model directories and safetensors files ──

/// A copy of the dense fixture (config + weights) whose `model.safetensors` is `weights`.
fn model_copy(root: &Path, name: &str, weights: Option<Vec<u8>>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("dense/config.json"), dir.join("config.json")).unwrap();
    let bytes =
        weights.unwrap_or_else(|| std::fs::read(fixture("dense/model.safetensors")).unwrap());
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    dir
}

/// The header (JSON) and the data section of a safetensors file.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), &bytes[8 + n..])
}

fn join_safetensors(header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    [(h.len() as u64).to_le_bytes().as_slice(), &h, data].concat()
}

/// The dense weights with `edit` applied to the header entry of `tensor`.
fn edit_header(tensor: &str, edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let bytes = std::fs::read(fixture("dense/model.safetensors")).unwrap();
    let (mut header, data) = split_safetensors(&bytes);
    edit(header.get_mut(tensor).unwrap());
    join_safetensors(&header, data)
}

/// The dense weights without `tensor` (a valid file).
fn without_tensor(tensor: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture("dense/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<_> = st.tensors().into_iter().filter(|(n, _)| n != tensor).collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn bad_model_directories_and_weights_fail_naming_the_file_or_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let q = "model.layers.1.self_attn.q_proj.weight";
    let down = "model.layers.0.mlp.down_proj.weight";
    let full = std::fs::read(fixture("dense/model.safetensors")).unwrap();
    let mut lying_length = full.clone();
    lying_length[..8].copy_from_slice(&(full.len() as u64 * 2).to_le_bytes());
    let no_config = model_copy(&models, "no_config", None);
    std::fs::remove_file(no_config.join("config.json")).unwrap();
    let st = |name: &str| format!("{}", models.join(name).join("model.safetensors").display());
    // (case, model dir, what the error must name)
    let cases: Vec<(&str, PathBuf, Vec<String>)> = vec![
        (
            "no config.json",
            no_config.clone(),
            vec![no_config.join("config.json").display().to_string(), "No such file".into()],
        ),
        (
            "missing tensor",
            model_copy(&models, "missing", Some(without_tensor(q))),
            vec![format!("tensor {q} is missing")],
        ),
        (
            "wrong shape",
            model_copy(
                &models,
                "shape",
                Some(edit_header(down, |v| v["shape"] = serde_json::json!([128, 64]))),
            ),
            vec![format!("tensor {down}: expected shape [64, 128], found [128, 64]")],
        ),
        (
            "wrong dtype",
            model_copy(&models, "dtype", Some(edit_header(down, |v| v["dtype"] = "I32".into()))),
            vec![format!("tensor {down}"), "I32".into()],
        ),
        (
            "truncated file",
            model_copy(&models, "truncated", Some(full[..full.len() / 2].to_vec())),
            vec![st("truncated"), "not a readable safetensors file".into()],
        ),
        (
            "header length beyond the file",
            model_copy(&models, "length", Some(lying_length)),
            vec![st("length"), "not a readable safetensors file".into()],
        ),
        (
            "data_offsets past the data",
            model_copy(
                &models,
                "offsets",
                Some(edit_header(q, |v| {
                    v["data_offsets"][1] = (v["data_offsets"][1].as_u64().unwrap() + 4).into()
                })),
            ),
            vec![st("offsets"), "not a readable safetensors file".into()],
        ),
        (
            "data_offsets overlapping",
            model_copy(
                &models,
                "overlap",
                Some(edit_header(q, |v| {
                    v["data_offsets"][0] = (v["data_offsets"][0].as_u64().unwrap() - 4).into()
                })),
            ),
            vec![st("overlap"), "not a readable safetensors file".into()],
        ),
        (
            "empty weights file",
            model_copy(&models, "empty", Some(Vec::new())),
            vec![st("empty"), "not a readable safetensors file".into()],
        ),
    ];
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for (what, model, needles) in cases {
        let result = run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(&model)
            .arg("--input")
            .arg(fixture("dense/golden.safetensors"))
            .arg("--out")
            .arg(out_dir.join("o.safetensors")));
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_fails_cleanly(what, &result, &needles, &out_dir, &BTreeMap::new());
    }
}

#[test]
fn training_on_a_model_without_tokenizer_or_a_missing_dir_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let model = model_copy(tmp.path(), "dense_copy", None); // a fixture: weights, no tokenizer.json
    for (what, path, needles) in [
        (
            "no tokenizer.json",
            model.clone(),
            vec![format!("no tokenizer.json in {}", model.display()), "hint".into()],
        ),
        (
            "no model directory",
            tmp.path().join("no-such-model"),
            vec![format!("{}", tmp.path().join("no-such-model").display())],
        ),
    ] {
        let dir = tmp.path().join(what.replace(' ', "_"));
        let r = recipe(&dir, &data);
        let text = std::fs::read_to_string(&r)
            .unwrap()
            .replace("builtin = \"tiny\"", &format!("path = \"{}\"", path.display()));
        std::fs::write(&r, text).unwrap();
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_fails_cleanly(
            what,
            &run(bin().arg("train").arg(&r).args(["--backend", "cpu"])),
            &needles,
            &dir.join("run"),
            &BTreeMap::new(),
        );
    }
}

#[test]
fn an_adapter_for_another_model_fails_naming_a_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let logits = |adapter: &Path| {
        run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(fixture("dense"))
            .arg("--input")
            .arg(fixture("dense/golden.safetensors"))
            .arg("--adapter")
            .arg(adapter)
            .arg("--out")
            .arg(tmp.path().join("o.safetensors")))
    };
    // e2b_like has other widths: the first factor that does not fit is named with both shapes.
    let result = logits(&fixture("e2b_like/peft"));
    assert_fails_cleanly(
        "e2b_like adapter on dense",
        &result,
        &["adapter_model.safetensors", "base_model.model.model.layers.", "expected shape"],
        tmp.path(),
        &BTreeMap::new(),
    );
    // The multimodal layout: keys that match no module, with the layout hint.
    let result = logits(&fixture("multimodal/peft"));
    assert_fails_cleanly(
        "multimodal adapter on dense",
        &result,
        &["match no module", "language_model", "hint"],
        tmp.path(),
        &BTreeMap::new(),
    );
}

#[test]
fn resume_from_another_recipes_checkpoint_fails_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let r = recipe(&tmp.path().join("a"), &data);
    let short = [
        "--backend",
        "cpu",
        "--set",
        "train.iters=2",
        "--set",
        "checkpoint.every=1",
        "--set",
        "eval.batches=1",
    ];
    let (out, _, stderr) = run(bin().arg("train").arg(&r).args(short));
    assert!(out.status.success(), "{stderr}");
    let run_dir = tmp.path().join("a/run");
    let before = snapshot(&run_dir);
    // Same output directory, another learning rate: refused, and the run directory is untouched
    // (its recipe.resolved.toml still describes the run that wrote it).
    let result =
        run(bin().arg("train").arg(&r).args(short).args(["--set", "optim.lr=1e-3", "--resume"]));
    assert_fails_cleanly(
        "other lr, --resume",
        &result,
        &["checkpoint", "0000002", "different recipe"],
        &run_dir,
        &before,
    );
    // Another seed, resuming from an explicit checkpoint into a fresh directory.
    let b = tmp.path().join("b");
    let r2 = recipe(&b, &data);
    let result = run(bin()
        .arg("train")
        .arg(&r2)
        .args(short)
        .args(["--set", "train.seed=1", "--resume"])
        .arg(run_dir.join("checkpoints/0000002")));
    assert_fails_cleanly(
        "other seed, --resume DIR",
        &result,
        &["0000002", "different recipe"],
        &b.join("run"),
        &BTreeMap::new(),
    );
    // Not a checkpoint at all.
    let result = run(bin().arg("train").arg(&r2).args(short).args(["--resume"]).arg(&data));
    assert_fails_cleanly(
        "--resume a data dir",
        &result,
        &["trainer_state.json"],
        &b.join("run"),
        &BTreeMap::new(),
    );
    let result = run(bin().arg("train").arg(&r2).args(short).args(["--resume"]));
    assert_fails_cleanly(
        "--resume with no checkpoint",
        &result,
        &["--resume: no checkpoint in", "checkpoints"],
        &b.join("run"),
        &BTreeMap::new(),
    );
}

// ── Write failures (tests run as root, so chmod would not block writes: other means are used) ──

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
fn write_failures_name_the_path_and_keep_the_previous_checkpoint() {
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
    let set = ["--backend", "cpu", "--set", "checkpoint.every=3"];
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=3"]));
    assert!(out.status.success(), "{stderr}");
    let ckpts = tmp.path().join("a/run/checkpoints");
    let before = snapshot(&ckpts);
    assert!(before.contains_key(Path::new("0000003/optimizer.safetensors")));

    // "Disk full" while saving the step-6 checkpoint: the error names the file, no partial
    // snapshot is left, the step-3 one is intact, and a later resume finishes.
    let mut train = bin();
    train.arg("train").arg(&r).args(set).args(["--set", "train.iters=6", "--resume"]);
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

    // `checkpoints` is a file: the save fails naming it; the run's other files stay as they were.
    let b = tmp.path().join("b");
    let r = recipe(&b, &data);
    std::fs::create_dir_all(b.join("run")).unwrap();
    std::fs::write(b.join("run/checkpoints"), "not a directory").unwrap();
    let result = run(bin().arg("train").arg(&r).args(set).args([
        "--set",
        "train.iters=3",
        "--set",
        "eval.batches=1",
    ]));
    assert_eq!(result.0.status.code(), Some(1), "{}", result.2);
    assert!(
        result.2.contains(&format!("{}: ", b.join("run/checkpoints/0000003").display()))
            && result.2.contains("Not a directory"),
        "{}",
        result.2
    );
    assert!(!b.join("run/adapter").exists());

    // The output directory is a file.
    let c = tmp.path().join("c");
    let r = recipe(&c, &data);
    std::fs::write(c.join("run"), "a file").unwrap();
    let result = run(bin().arg("train").arg(&r).args(set));
    assert_fails_cleanly(
        "out_dir is a file",
        &result,
        &[&c.join("run").display().to_string(), "File exists"],
        &c,
        &snapshot(&c),
    );
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

// ── Numeric faults ──

/// A copy of the tiny built-in model (materialised by `data`) whose per-layer embedding row of
/// `@` is NaN: exactly the samples containing `@` give a NaN loss.
fn poisoned_model(root: &Path, data: &Path) -> PathBuf {
    let r = recipe(&root.join("materialise"), data);
    let (out, _, stderr) = run(bin().arg("data").arg(&r));
    assert!(out.status.success(), "{stderr}");
    let (src, dst) = (root.join("materialise/run/base_model"), root.join("poisoned"));
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("tokenizer.json")).unwrap())
            .unwrap();
    let id = tokenizer["model"]["vocab"]["@"].as_u64().unwrap() as usize;
    let mut bytes = std::fs::read(dst.join("model.safetensors")).unwrap();
    let (header, _) = split_safetensors(&bytes);
    let t = &header["model.embed_tokens_per_layer.weight"];
    let width = t["shape"][1].as_u64().unwrap() as usize;
    let start = 8
        + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
        + t["data_offsets"][0].as_u64().unwrap() as usize
        + id * width * 4;
    for c in bytes[start..start + width * 4].chunks_exact_mut(4) {
        c.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(dst.join("model.safetensors"), bytes).unwrap();
    dst
}

fn all_finite(adapter: &Path) -> bool {
    let bytes = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().iter().all(|(_, v)| {
        v.data().chunks_exact(4).all(|c| f32::from_le_bytes(c.try_into().unwrap()).is_finite())
    })
}

#[test]
fn a_non_finite_loss_stops_naming_step_and_line_or_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let good = std::fs::read_to_string(repo().join("datasets/quickstart/train.jsonl")).unwrap();
    let twenty: String = good.lines().take(20).map(|l| format!("{l}\n")).collect();
    std::fs::write(data.join("train.jsonl"), &twenty).unwrap();
    let model = poisoned_model(tmp.path(), &data);
    let dir = tmp.path().join("a");
    let r = recipe(&dir, &data);
    std::fs::write(
        &r,
        std::fs::read_to_string(&r)
            .unwrap()
            .replace("builtin = \"tiny\"", &format!("path = \"{}\"", model.display())),
    )
    .unwrap();
    let set = [
        "--backend",
        "cpu",
        "--set",
        "train.batch_size=1",
        "--set",
        "checkpoint.every=2",
        "--set",
        "eval.every=0",
        "--set",
        "eval.batches=1",
    ];
    // Four good steps (checkpoints 2 and 4), then line 21 holds the poisoned token.
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=4"]));
    assert!(out.status.success(), "{stderr}");
    std::fs::write(data.join("train.jsonl"), format!("{twenty}{{\"messages\": [{{\"role\": \"user\", \"content\": \"Upper: @\"}}, {{\"role\": \"assistant\", \"content\": \"@\"}}]}}\n")).unwrap();
    let run_dir = dir.join("run");
    let adapter_before = snapshot(&run_dir.join("adapter"));

    // Default: the run stops at the poisoned step, naming it and the line; earlier checkpoints
    // and the adapter are intact and finite.
    let (out, _, stderr) =
        run(bin().arg("train").arg(&r).args(set).args(["--set", "train.iters=60", "--resume"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let train_path = data.join("train.jsonl").display().to_string();
    assert!(
        stderr.contains("non-finite loss")
            && stderr.contains(&format!("lines [21] of {train_path}"))
            && stderr.contains("skip_nonfinite"),
        "{stderr}"
    );
    let step: usize = stderr
        .split("step ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(step > 4, "{stderr}");
    let last = (step - 1) / 2 * 2;
    let ckpt = run_dir.join(format!("checkpoints/{last:07}"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], last);
    assert!(all_finite(&ckpt) && snapshot(&run_dir.join("adapter")) == adapter_before);

    // As the message says: skip_nonfinite (allowed on --resume) skips and counts such steps.
    let (out, stdout, stderr) = run(bin().arg("train").arg(&r).args(set).args([
        "--set",
        "train.iters=60",
        "--set",
        "train.skip_nonfinite=true",
        "--resume",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("step {step:>5} | skipped: non-finite loss NaN")), "{stdout}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("checkpoints/0000060/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["skipped_steps"].as_u64().unwrap() >= 1, "{state}");
    assert!(all_finite(&run_dir.join("adapter")) && all_finite(&run_dir.join("best")));
}
