//! Hostile files beside the weights, through the real binary (issue 16's classes, see
//! docs/robustness.md §1.1): a `tokenizer.json` that is cut, not JSON, not UTF-8 or of the
//! wrong shape; a chat template that does not compile, loops without end, raises or is of the
//! wrong type; and `logits --input` tensors of the wrong rank, dtype, size or values. Each ends
//! with exit 1 and one `error:` naming the file, nothing written, the inputs byte-identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::bad::*;
use common::*;

/// The tiny built-in model (materialised by `data` once) copied to `root/name`, with `files`
/// written over or beside its own; and a recipe training on it into `root/name-run/run`.
fn tiny_with(root: &Path, data: &Path, name: &str, files: &[(&str, &[u8])]) -> (PathBuf, PathBuf) {
    let src = tiny_model(root, data);
    let dst = root.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    for (f, bytes) in files {
        std::fs::write(dst.join(f), bytes).unwrap();
    }
    let r = recipe_on(&root.join(format!("{name}-run")), data, &dst);
    (dst, r)
}

/// `train` on each case's model fails cleanly: its run directory stays empty and the model
/// directory byte-identical.
fn assert_train_fails(cases: Vec<(&str, (PathBuf, PathBuf), Vec<String>)>) {
    for (what, (model, r), needles) in cases {
        let model_before = snapshot(&model);
        let result = run(bin().arg("train").arg(&r).args(["--backend", "cpu"]).args([
            "--set",
            "train.iters=1",
            "--set",
            "eval.batches=1",
        ]));
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let out_dir = r.parent().unwrap().join("run");
        assert_fails_cleanly(what, &result, &needles, &out_dir, &BTreeMap::new());
        assert_eq!(snapshot(&model), model_before, "{what}: the model directory changed");
    }
}

#[test]
fn hostile_tokenizer_files_fail_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let (good_dir, _) = tiny_with(tmp.path(), &data, "good", &[]);
    let good = std::fs::read(good_dir.join("tokenizer.json")).unwrap();
    let cut = good[..good.len() / 2].to_vec();
    // Fuzz findings (panics inside `tokenizers`): a raw control character in the decoder, a
    // template naming a special token that `special_tokens` lacks, an empty `Replace` pattern.
    let text = String::from_utf8(good.clone()).unwrap();
    let control = text.replacen("\"ByteFallback\"", "\"Byte\u{1}Fallback\"", 1).into_bytes();
    let mut t: serde_json::Value = serde_json::from_str(&text).unwrap();
    t["post_processor"]["single"][0] =
        serde_json::json!({"SpecialToken": {"id": "<x>", "type_id": 0}});
    let unknown = t.to_string().into_bytes();
    t = serde_json::from_str(&text).unwrap();
    t["normalizer"] =
        serde_json::json!({"type": "Replace", "pattern": {"Regex": ""}, "content": "x"});
    let empty_pattern = t.to_string().into_bytes();
    let model_tok = |name: &str| tmp.path().join(name).join("tokenizer.json").display().to_string();
    let mut cases = Vec::new();
    for (name, bytes) in [
        ("cut", cut.as_slice()),
        ("empty", b"".as_slice()),
        ("not-utf8", b"{\"model\": \"\xff\xfe\"}".as_slice()),
        ("wrong-model", br#"{"version": "1.0", "model": {"type": "Nope", "vocab": 5}}"#),
        ("an-array", b"[1, 2, 3]"),
        ("control-char", control.as_slice()),
        ("unknown-special", unknown.as_slice()),
        ("empty-pattern", empty_pattern.as_slice()),
    ] {
        let model = tiny_with(tmp.path(), &data, name, &[("tokenizer.json", bytes)]);
        cases.push((name, model, vec![model_tok(name)]));
    }
    assert_train_fails(cases);
}

#[test]
fn hostile_chat_templates_fail_naming_the_template() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let jinja =
        |name: &str| tmp.path().join(name).join("chat_template.jinja").display().to_string();
    let config =
        |name: &str| tmp.path().join(name).join("tokenizer_config.json").display().to_string();
    let runaway =
        "{% for a in range(10000) %}{% for b in range(10000) %}{{ a }}{% endfor %}{% endfor %}";
    let mut cases = Vec::new();
    for (name, file, text, needle) in [
        ("syntax", "chat_template.jinja", b"{% for m in %}".as_slice(), jinja("syntax")),
        ("runaway", "chat_template.jinja", runaway.as_bytes(), jinja("runaway")),
        ("raises", "chat_template.jinja", b"{{ raise_exception('no chat') }}", jinja("raises")),
        ("unclosed", "chat_template.jinja", b"\0{{ messages", jinja("unclosed")),
        ("not-utf8", "chat_template.jinja", b"{{ '\xff' }}", jinja("not-utf8")),
        ("a-number", "tokenizer_config.json", br#"{"chat_template": 5}"#, config("a-number")),
        (
            "no-default",
            "tokenizer_config.json",
            br#"{"chat_template": [{"name": "x"}]}"#,
            config("no-default"),
        ),
    ] {
        let model = tiny_with(tmp.path(), &data, name, &[(file, text)]);
        cases.push((name, model, vec![needle]));
    }
    assert_train_fails(cases);
}

/// A tensor of an input file: name, dtype, shape, little-endian bytes.
type Input = (&'static str, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// A safetensors file of `tensors`.
fn input_file(path: &Path, tensors: &[Input]) {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn hostile_logits_inputs_fail_naming_the_input() {
    use safetensors::Dtype::{F32, I64};
    let tmp = tempfile::tempdir().unwrap();
    let ins = tmp.path().join("in");
    std::fs::create_dir(&ins).unwrap();
    let cases: Vec<(&str, Vec<Input>, &str)> = vec![
        (
            "one token a row",
            vec![("input_ids", I64, vec![2, 1], i64s(&[1, 2]))],
            "at least 2 tokens",
        ),
        (
            "negative id",
            vec![("input_ids", I64, vec![1, 3], i64s(&[1, -5, 2]))],
            "token id -5 in `input_ids` is negative",
        ),
        ("huge id", vec![("input_ids", I64, vec![1, 2], i64s(&[1, 1 << 40]))], "token id"),
        (
            "id past vocab",
            vec![("input_ids", I64, vec![1, 2], i64s(&[1, 100_000]))],
            "vocab_size 256",
        ),
        ("1-D", vec![("input_ids", I64, vec![4], i64s(&[1, 2, 3, 4]))], "2-D"),
        ("3-D", vec![("input_ids", I64, vec![1, 1, 2], i64s(&[1, 2]))], "2-D"),
        ("f32 ids", vec![("input_ids", F32, vec![1, 2], vec![0; 8])], "input_ids"),
        (
            "mask of another shape",
            vec![
                ("input_ids", I64, vec![1, 2], i64s(&[1, 2])),
                ("attention_mask", I64, vec![1, 3], i64s(&[1, 1, 1])),
            ],
            "attention_mask",
        ),
        ("no input_ids", vec![("ids", I64, vec![1, 2], i64s(&[1, 2]))], "no tensor `input_ids`"),
    ];
    for (i, (what, tensors, needle)) in cases.into_iter().enumerate() {
        let input = ins.join(format!("{i}.safetensors"));
        input_file(&input, &tensors);
        let before = snapshot(tmp.path());
        let result = run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(fixture("dense"))
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(tmp.path().join("o.safetensors")));
        let path = input.display().to_string();
        assert_fails_cleanly(what, &result, &[&path, needle], tmp.path(), &before);
    }
}

#[test]
fn hostile_adapter_configs_fail_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("dense/peft/adapter_config.json")).unwrap(),
    )
    .unwrap();
    let edited = |key: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[key] = v;
        c.to_string().into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{\"r\": ".to_vec(), "adapter_config.json"),
        ("negative r", edited("r", (-4).into()), "`r` = -4"),
        ("r = 0", edited("r", 0.into()), "`r`"),
        ("huge r", edited("r", (1u64 << 40).into()), "past the limit 65536"),
        ("alpha a string", edited("lora_alpha", "x".into()), "`lora_alpha`"),
        ("DoRA", edited("use_dora", true.into()), "use_dora"),
        ("targets a number", edited("target_modules", 5.into()), "`target_modules`"),
    ];
    for (i, (what, config, needle)) in cases.into_iter().enumerate() {
        let peft = tmp.path().join(format!("peft{i}"));
        std::fs::create_dir(&peft).unwrap();
        std::fs::copy(
            fixture("dense/peft/adapter_model.safetensors"),
            peft.join("adapter_model.safetensors"),
        )
        .unwrap();
        std::fs::write(peft.join("adapter_config.json"), config).unwrap();
        let before = snapshot(tmp.path());
        let result = run(bin()
            .args(["logits", "--backend", "cpu", "--model"])
            .arg(fixture("dense"))
            .arg("--input")
            .arg(fixture("dense/golden.safetensors"))
            .arg("--adapter")
            .arg(&peft)
            .arg("--out")
            .arg(tmp.path().join("o.safetensors")));
        assert_fails_cleanly(what, &result, &[needle], tmp.path(), &before);
    }
}
