//! `gemma4-tune fuse` end to end: the real binary on the fixtures, checking the files written,
//! that the fused checkpoint gives PEFT's adapter logits through `logits`, and the exit codes.

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

fn fuse_cmd(name: &str, out: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("fuse")
        .arg("--model")
        .arg(fixture(name))
        .arg("--adapter")
        .arg(fixture(name).join("peft"))
        .arg("--out")
        .arg(out);
    cmd
}

fn read_f32(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn fused_multimodal_checkpoint_gives_peft_adapter_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fused");
    let (status, stdout, stderr) =
        run(fuse_cmd("multimodal", &out).args(["--max-shard-size", "150KB"]));
    assert!(status.status.success(), "{stderr}");
    assert!(stdout.contains("tensors merged") && stdout.contains("shard(s)"), "{stdout}");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(
        files.contains(&"config.json".to_string())
            && files.contains(&"model.safetensors.index.json".to_string()),
        "{files:?}"
    );
    let shards = files.iter().filter(|f| f.starts_with("model-0000")).count();
    assert!(shards > 1 && files.iter().all(|f| !f.starts_with("consolidated")), "{files:?}");
    // The fused model, run without any adapter, gives the logits PEFT computed with it.
    let golden = fixture("multimodal").join("peft/golden.safetensors");
    let logits_out = tmp.path().join("logits.safetensors");
    let (status, _, stderr) = run(bin()
        .args(["logits", "--backend", "cpu", "--model"])
        .arg(&out)
        .arg("--input")
        .arg(&golden)
        .arg("--out")
        .arg(&logits_out));
    assert!(status.status.success(), "{stderr}");
    let (ours, want) = (read_f32(&logits_out, "logits"), read_f32(&golden, "lora_logits"));
    let num: f64 = ours.iter().zip(&want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    assert!(
        (num / den).sqrt() < 1e-4,
        "relative L2 to PEFT's lora_logits {:.3e}",
        (num / den).sqrt()
    );
}

#[test]
fn bad_adapter_or_existing_output_fail_with_exit_1_and_leave_out_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fused");
    let missing = tmp.path().join("no-such-adapter");
    let (status, _, stderr) = run(bin()
        .arg("fuse")
        .arg("--model")
        .arg(fixture("dense"))
        .arg("--adapter")
        .arg(&missing)
        .arg("--out")
        .arg(&out));
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-adapter"), "{stderr}");
    // An adapter made for another layout: the loader's error, naming a key.
    let (status, _, stderr) = run(bin()
        .arg("fuse")
        .arg("--model")
        .arg(fixture("multimodal"))
        .arg("--adapter")
        .arg(fixture("dense").join("peft"))
        .arg("--out")
        .arg(&out));
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("match no module") && stderr.contains("base_model.model.model.layers."),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing is left next to --out");

    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (status, _, stderr) = run(&mut fuse_cmd("dense", &out));
    assert_eq!(status.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--force") && out.join("notes.txt").is_file(), "{stderr}");
    let (status, _, stderr) = run(fuse_cmd("dense", &out).args(["--force", "--dtype", "bf16"]));
    assert!(status.status.success(), "{stderr}");
    assert!(!out.join("notes.txt").exists() && out.join("model.safetensors").is_file());
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"dtype\": \"bfloat16\""), "{config}");
}

#[test]
fn bad_arguments_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fused");
    for extra in [["--dtype", "f64"], ["--max-shard-size", "5XB"]] {
        let (status, _, stderr) = run(fuse_cmd("dense", &out).args(extra));
        assert_eq!(status.status.code(), Some(2), "{extra:?}: {stderr}");
    }
    assert!(!out.exists());
}
