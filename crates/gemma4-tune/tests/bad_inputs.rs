//! The bad-input matrix of issue 6, through the real binary: every case exits 1 with one
//! `error:` line naming the file, line, key or tensor, and leaves nothing half-written (no
//! adapter, checkpoint, metrics or temporary file; an existing run directory is left untouched).
//! This file holds bad data and bad recipes; `bad_models.rs` holds model directories, weights
//! and adapters, `bad_checkpoints.rs` resuming and non-finite losses, `bad_writes.rs` write
//! failures (the shared helpers are in `common/bad.rs`).
//! Cases already covered elsewhere are not repeated here: malformed JSON, a missing field, an
//! unknown role, an empty split, unknown recipe keys (`train_cli.rs`); a missing model
//! directory and an unsupported config value for `logits` (`cli.rs`); fuse (`fuse_cli.rs`).
//! The table with messages is in docs/robustness.md.

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::bad::*;
use common::*;

/// (case, file written, its content, the recipe override, what the error must name)
type Case = (&'static str, &'static str, String, String, Vec<String>);

/// Each case writes its file into a data directory of five good lines per split (`cases` gets
/// that directory and the good lines), then trains with its override: each must fail cleanly.
fn assert_bad_data_fails(cases: impl FnOnce(&Path, &str) -> Vec<Case>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let good = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    for (i, (what, file, content, set, needles)) in cases(&data, &good).into_iter().enumerate() {
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
fn bad_data_fails_naming_the_file_and_line() {
    assert_bad_data_fails(|data, good| {
        let d = |f: &str| data.join(f).display().to_string();
        vec![
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
                vec![
                    format!("{}:6", d("t2.jsonl")),
                    "expected a JSON object, found an array".into(),
                ],
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
        ]
    });
}

#[test]
fn missing_empty_or_targetless_data_fails_naming_the_file() {
    assert_bad_data_fails(|data, _| {
        let d = |f: &str| data.join(f).display().to_string();
        let no_target = "{\"messages\": [{\"role\": \"user\", \"content\": \"Upper: ab\"}]}\n";
        vec![
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
        ]
    });
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

// ── Issue 16: values checked where they enter, naming the file and key ──

/// The tiny built-in model (materialised by `data`) copied to `root/name`, its config.json and
/// tokenizer.json edited; and a recipe training on it, writing into `root/name-run/run`.
fn tiny_copy(
    root: &Path,
    data: &Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Value, &mut serde_json::Value),
) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = tiny_model(root, data);
    let dst = root.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("model.safetensors"), dst.join("model.safetensors")).unwrap();
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(src.join(f)).unwrap()).unwrap()
    };
    let (mut config, mut tokenizer) = (read("config.json"), read("tokenizer.json"));
    edit(&mut config, &mut tokenizer);
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dst.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let r = recipe_on(&root.join(format!("{name}-run")), data, &dst);
    (dst, r)
}

#[test]
fn values_from_model_files_and_recipes_fail_where_they_enter_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let train = data.join("train.jsonl");
    let (eps, eps_recipe) = tiny_copy(tmp.path(), &data, "eps", |c, _| {
        c["rms_norm_eps"] = (-1e-6).into();
    });
    let (tok, tok_recipe) = tiny_copy(tmp.path(), &data, "tok", |_, t| {
        t["model"]["vocab"]["@"] = 100_000.into();
    });
    let good = std::fs::read_to_string(&train).unwrap();
    let at = "{\"messages\": [{\"role\": \"user\", \"content\": \"Upper: @\"}, {\"role\": \"assistant\", \"content\": \"@\"}]}\n";
    std::fs::write(&train, format!("{good}{at}")).unwrap();
    let quick = recipe(&tmp.path().join("quick"), &data);
    let cases: [(&str, &Path, &[&str], Vec<String>); 4] = [
        (
            "negative rms_norm_eps",
            &eps_recipe,
            &[],
            vec![eps.join("config.json").display().to_string(), "`rms_norm_eps`".into()],
        ),
        (
            "a token id past vocab_size",
            &tok_recipe,
            &[],
            vec![
                format!("{}:6", train.display()),
                "token id 100000".into(),
                tok.join("tokenizer.json").display().to_string(),
                "vocab_size".into(),
            ],
        ),
        (
            "layers_to_transform out of range",
            &quick,
            &["lora.layers_to_transform=[99]"],
            vec!["`layers_to_transform`".into(), "layer 99 does not exist".into()],
        ),
        (
            "a huge grad_accum",
            &quick,
            &["train.grad_accum=1000000000000"],
            vec!["recipe.toml".into(), "grad_accum".into(), "at most 65536".into()],
        ),
    ];
    for (what, r, sets, needles) in cases {
        let mut cmd = bin();
        cmd.arg("train").arg(r).args(["--backend", "cpu", "--set", "train.iters=2"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let out_dir = r.parent().unwrap().join("run");
        assert_fails_cleanly(what, &run(&mut cmd), &needles, &out_dir, &BTreeMap::new());
    }
}

#[test]
fn generate_refuses_bad_sampling_flags_and_warns_past_max_position_embeddings() {
    for (flag, value, needle) in [
        ("--temperature", "nan", "--temperature NaN: must be a finite number >= 0"),
        ("--temperature", "-1", "--temperature -1: must be a finite number >= 0"),
        ("--top-p", "2", "--top-p 2: must be in (0, 1]"),
    ] {
        let (out, _, stderr) = run(bin()
            .args(["generate", "--backend", "cpu", "--prompt", "hi", "--model"])
            .arg(fixture("dense"))
            .arg(format!("{flag}={value}")));
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{stderr}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let (model, _) = tiny_copy(tmp.path(), &data, "short", |c, _| {
        c["max_position_embeddings"] = 8.into();
    });
    let (out, _, stderr) = run(bin()
        .args(["generate", "--backend", "cpu", "--max-tokens", "2", "--prompt", "Upper: abc"])
        .arg("--model")
        .arg(&model));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("exceed the model's max_position_embeddings 8 (config.json)"),
        "{stderr}"
    );
}
