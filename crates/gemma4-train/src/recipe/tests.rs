//! Recipe loading: unknown keys, `--set` overrides, path resolution, `[lora]` as PEFT's config,
//! and every bound refused naming its `[table] key`.

use super::*;
use gemma4_model::WeightDtype;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("r.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const MINIMAL: &str = "[model]\nbuiltin = \"tiny\"\n[data]\ntrain = \"d/train.jsonl\"\n";

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), &format!("{MINIMAL}[optim]\nlearning_rate = 1e-4\n"));
    let e = Recipe::load(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("learning_rate"), "{e}");
    let p = write(dir.path(), MINIMAL);
    let e = Recipe::load(&p, &["train.iterz=5".into()]).unwrap_err().to_string();
    assert!(e.contains("iterz"), "{e}");
}

#[test]
fn overrides_go_through_the_same_parser_and_paths_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), MINIMAL);
    let r = Recipe::load(
        &p,
        &["optim.lr=3e-4".into(), "schedule.kind=linear".into(), "train.iters=7".into()],
    )
    .unwrap();
    assert_eq!((r.optim.lr, r.schedule.kind, r.train.iters), (3e-4, ScheduleKind::Linear, 7));
    assert_eq!(r.data.train, dir.path().join("d/train.jsonl"));
    let e = Recipe::load(&p, &["optim.lr=\"fast\"".into()]).unwrap_err().to_string();
    assert!(e.contains("lr"), "{e}");
    let back: Recipe = toml::from_str(&r.to_toml()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn lora_is_peft_config_with_the_recipe_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let r = Recipe::load(&write(dir.path(), MINIMAL), &[]).unwrap();
    assert_eq!(r.lora, LoraConfig::default());
    assert_eq!((r.lora.r, r.lora.lora_alpha, r.lora.lora_dropout), (8, 16.0, 0.0));
    let p = write(dir.path(), &format!("{MINIMAL}[lora]\nr = 4\nlayers_to_transform = [0, 2]\n"));
    let r = Recipe::load(&p, &[]).unwrap();
    assert_eq!((r.lora.r, r.lora.lora_alpha), (4, 16.0));
    assert_eq!(r.lora_config("base").base_model_name_or_path.as_deref(), Some("base"));
    let back: Recipe = toml::from_str(&r.to_toml()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn lora_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), MINIMAL);
    let cases = [
        ("lora.lora_rank=4", "unknown field `lora_rank`"),
        ("lora.r=0", "[lora] `r`: must be > 0"),
        ("lora.r=-3", "`lora.r`"),
        ("lora.lora_alpha=nan", "[lora] `lora_alpha`: must be finite"),
        ("lora.lora_dropout=1.5", "[lora] `lora_dropout`: must be in [0, 1)"),
        ("lora.use_dora=true", "[lora] `use_dora`: DoRA is not supported"),
        ("lora.target_modules=3", "`lora.target_modules`"),
    ];
    for (set, needle) in cases {
        let e = Recipe::load(&p, &[set.into()]).unwrap_err().to_string();
        assert!(e.contains(needle) && e.starts_with("recipe "), "{set}: {e}");
    }
    // In the file itself: toml's line and snippet too.
    let p = write(dir.path(), &format!("{MINIMAL}[lora]\nalpha = 32\n"));
    let e = Recipe::load(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("unknown field `alpha`") && e.contains("lora_alpha"), "{e}");
}

#[test]
fn enums_and_bounds_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), MINIMAL);
    let cases = [
        ("model.dtype=f64", "`model.dtype`"),
        ("model.builtin=big", "`model.builtin`"),
        ("schedule.kind=exponential", "`schedule.kind`"),
        ("data.max_seq_len=1", "`data.max_seq_len`: 1 is too small"),
        ("train.grad_accum=0", "[train] grad_accum must be > 0"),
        (
            "train.grad_accum=1000000000000000",
            "[train] grad_accum = 1000000000000000: must be at most 65536",
        ),
        ("train.batch_size=70000", "[train] batch_size = 70000: must be at most"),
        ("optim.beta2=1", "[optim] beta2 = 1: must be in [0, 1)"),
    ];
    for (set, needle) in cases {
        let e = Recipe::load(&p, &[set.into()]).unwrap_err().to_string();
        assert!(e.contains(needle), "{set}: {e}");
    }
    let r = Recipe::load(&p, &["model.dtype=bf16".into(), "data.max_seq_len=2".into()]).unwrap();
    assert_eq!(
        (r.model.dtype.fixed(), r.model.builtin),
        (Some(WeightDtype::Bf16), Some(BuiltinModel::Tiny))
    );
}
