//! Fuzzing (proptest) recipes: `Recipe::load` on arbitrary TOML text — the quickstart recipe
//! with random edits, and TOML-like junk — and arbitrary `--set` overrides. Nothing panics; an
//! error names the recipe file; a recipe that loads is valid, serialises, and its
//! `adapter_config.json` validates.
//!
//! 256 cases per target by default; longer: `PROPTEST_CASES=20000 cargo test -p gemma4-train fuzz`.

use std::path::PathBuf;

use gemma4_train::Recipe;
use proptest::prelude::*;

fn quickstart() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../recipes/quickstart.toml");
    std::fs::read_to_string(path).unwrap()
}

const KEYS: &[&str] = &[
    "model.builtin",
    "model.path",
    "model.dtype",
    "lora.r",
    "lora.lora_alpha",
    "lora.lora_dropout",
    "lora.target_modules",
    "lora.target_parameters",
    "lora.layers_to_transform",
    "lora.use_rslora",
    "data.train",
    "data.valid",
    "data.max_seq_len",
    "data.mask_prompt",
    "data.packing",
    "data.text_key",
    "optim.lr",
    "optim.beta1",
    "optim.beta2",
    "optim.eps",
    "optim.max_grad_norm",
    "optim.weight_decay",
    "schedule.kind",
    "schedule.warmup_steps",
    "schedule.min_lr_ratio",
    "train.iters",
    "train.batch_size",
    "train.grad_accum",
    "train.seed",
    "train.out_dir",
    "train.skip_nonfinite",
    "eval.every",
    "eval.batches",
    "eval.early_stopping_patience",
    "checkpoint.every",
    "checkpoint.keep_last",
    "model",
    "lora",
    "x.y",
    "train.iters.z",
    "a.b.c.d",
];

/// TOML values (and things that are not quite).
fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (-3i64..3).prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        proptest::sample::select(
            &[
                "nan",
                "-nan",
                "inf",
                "-inf",
                "1e999",
                "0",
                "-0.0",
                "1_000",
                "0x10",
                "true",
                "false",
                "\"tiny\"",
                "\"f16\"",
                "\"cosine\"",
                "\"\"",
                "[]",
                "[1, 2]",
                "[\"q_proj\", 3]",
                "\"q_proj|k_proj\"",
                "\"(\"",
                "{}",
                "{ a = 1 }",
                "1979-05-27T07:32:00Z",
                "'''x'''",
                "\"\\u0000\"",
                "\"ten\"",
                "ten",
                "=",
                "[[x]]",
                "\"",
            ][..]
        )
        .prop_map(String::from),
        "[ -~]{0,12}",
    ]
}

/// A random edit of a recipe's text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SetValue(usize, String),
    InsertLine(usize, String),
    Truncate(usize),
    InsertChar(usize, char),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), arb_value()).prop_map(|(i, v)| Edit::SetValue(i, v)),
        (
            any::<usize>(),
            (proptest::sample::select(KEYS), arb_value())
                .prop_map(|(k, v)| format!("{} = {v}", k.rsplit('.').next().unwrap_or(k)))
        )
            .prop_map(|(i, l)| Edit::InsertLine(i, l)),
        (
            any::<usize>(),
            proptest::sample::select(
                &["[model]", "[lora]", "[extra]", "[train.sub]", "[[train]]", "["][..]
            )
            .prop_map(String::from)
        )
            .prop_map(|(i, l)| Edit::InsertLine(i, l)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                lines.insert(i % n, lines[i % n].clone())
            }
            Edit::SetValue(i, v) if !lines.is_empty() => {
                let line = &mut lines[i % n];
                if let Some((k, _)) = line.split_once('=') {
                    *line = format!("{k}= {v}");
                }
            }
            Edit::InsertLine(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            Edit::Truncate(i) => {
                let joined = lines.join("\n");
                let cut = joined
                    .char_indices()
                    .nth(i % (joined.chars().count() + 1))
                    .map_or(joined.len(), |(b, _)| b);
                lines = joined[..cut].lines().map(String::from).collect();
            }
            Edit::InsertChar(i, c) if !lines.is_empty() => {
                let line = &mut lines[i % n];
                let at = line
                    .char_indices()
                    .nth(i % (line.chars().count() + 1))
                    .map_or(line.len(), |(b, _)| b);
                line.insert(at, *c);
            }
            _ => {}
        }
    }
    lines.join("\n")
}

fn arb_override() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (proptest::sample::select(KEYS), arb_value()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => "[ -~]{0,20}",
        1 => (arb_value(), arb_value()).prop_map(|(k, v)| format!("{k}={v}")),
    ]
}

/// Load `text` with `overrides`: no panic; errors name the file; a loaded recipe is usable.
fn check(text: &str, overrides: &[String]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.toml");
    std::fs::write(&path, text).unwrap();
    match Recipe::load(&path, overrides) {
        Err(e) => {
            prop_assert!(e.to_string().starts_with(&format!("recipe {}", path.display())), "{e}")
        }
        Ok(r) => {
            prop_assert!(
                r.train.iters > 0
                    && r.train.batch_size > 0
                    && r.lora.r > 0
                    && r.data.max_seq_len > 0
            );
            let o = &r.optim;
            let floats = [
                o.lr,
                o.weight_decay,
                o.eps,
                o.max_grad_norm,
                r.schedule.min_lr_ratio,
                r.lora.lora_alpha,
            ];
            prop_assert!(
                floats.iter().all(|f| f.is_finite()) && o.lr > 0.0,
                "non-finite or bad float loaded: {floats:?}"
            );
            prop_assert!(r.data.train.is_absolute() && r.train.out_dir.is_absolute());
            prop_assert!(r.lora_config("base").validate().is_ok());
            let toml = r.to_toml();
            prop_assert!(!toml.is_empty());
            prop_assert!(toml::from_str::<Recipe>(&toml).is_ok(), "{toml}");
            let _ = gemma4_train::train::fingerprint(&r);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_recipe_edits_never_panic(edits in proptest::collection::vec(arb_edit(), 0..6), overrides in proptest::collection::vec(arb_override(), 0..3)) {
        check(&apply(&quickstart(), &edits), &overrides)?;
    }

    #[test]
    fn fuzz_recipe_overrides_never_panic(overrides in proptest::collection::vec(arb_override(), 1..6)) {
        check(&quickstart(), &overrides)?;
    }

    #[test]
    fn fuzz_recipe_junk_text_never_panics(text in proptest::collection::vec(prop_oneof![
        proptest::sample::select(&["[", "]", "[model]", "[data]", "\n", " = ", "=", "\"", "'", "#", ".", "train", "builtin",
            "\"tiny\"", "{", "}", ",", "[[", "]]", "\\", "\"\"\"", "\r\n", "\u{feff}"][..]).prop_map(String::from),
        arb_value(),
        any::<char>().prop_map(String::from),
    ], 0..30)) {
        check(&text.concat(), &[])?;
    }
}

/// Regression shape: a loaded recipe's `--set` of every known key with junk never panics.
#[test]
fn every_known_key_with_every_special_value_is_handled() {
    for key in KEYS {
        for value in ["nan", "inf", "-1", "0", "\"\"", "[]", "{}", "1979-05-27", "\"(\""] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("r.toml");
            std::fs::write(&path, quickstart()).unwrap();
            let _ = Recipe::load(&path, &[format!("{key}={value}")]);
        }
    }
}

/// Found by `fuzz_recipe_overrides_never_panic` (`optim.eps=nan` loaded, and `lr = inf` passed
/// `lr > 0`): non-finite floats are valid TOML and would surface only as a non-finite loss
/// blamed on the data. Now each is refused naming the key.
#[test]
fn r_fuzz_non_finite_floats_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, quickstart()).unwrap();
    for key in [
        "optim.lr",
        "optim.eps",
        "optim.weight_decay",
        "optim.max_grad_norm",
        "schedule.min_lr_ratio",
        "lora.lora_alpha",
    ] {
        for value in ["nan", "inf", "-inf"] {
            let e = Recipe::load(&path, &[format!("{key}={value}")]).unwrap_err().to_string();
            let name = key.rsplit('.').next().unwrap();
            assert!(e.contains(name), "{key}={value}: {e}");
        }
    }
}
