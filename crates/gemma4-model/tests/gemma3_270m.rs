//! The real Gemma 3 270M (Q4_K_M GGUF, dequantised at load) against transformers 5.24 loading
//! the same GGUF, on real prompts tokenised with the real tokenizer
//! (`tests/reference/gemma3_270m_goldens.py`). Logits within 1e-3 relative L2 (at 4 096+ fixed
//! vocabulary ids, every position), loss within 1e-3 relative, same top-1 token everywhere.
//!
//! The model is not in the repository: `tests/reference/fetch_gemma3_270m.sh` puts it in
//! `models/gemma3-270m/` (or set `GEMMA3_270M_DIR`). Without it the test passes with a message.

mod common;

use std::path::PathBuf;

use burn::tensor::DType;
use common::*;
use gemma4_model::{Gemma4TextModel, NoAdapter, TokenBatch, causal_lm_loss};

const TOL: f64 = 1e-3;

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GEMMA3_270M_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fixtures_dir().join("../../models/gemma3-270m"));
    if dir.join("gemma-3-270m-q4_k_m.gguf").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} has no gemma-3-270m-q4_k_m.gguf (run tests/reference/fetch_gemma3_270m.sh)",
            dir.display()
        );
        None
    }
}

#[test]
fn real_gemma3_270m_gguf_matches_transformers() {
    let Some(dir) = model_dir() else { return };
    let (model, report, warnings) = Gemma4TextModel::from_dir(&dir, &device(), DType::F32).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(report.used, 1 + 1 + 18 * 13, "embed, final norm, 13 tensors per layer");
    assert_eq!(
        (model.config.hidden_size, model.config.num_hidden_layers, model.config.vocab_size),
        (640, 18, 262_144)
    );
    let golden = load_golden("gemma3_270m");
    let subset: Vec<usize> = golden["vocab_subset"].values.iter().map(|&v| v as usize).collect();
    let v = model.config.vocab_size;
    for p in 0.. {
        let Some(ids) = golden.get(&format!("p{p}.input_ids")) else { break };
        let batch =
            TokenBatch::new(ids.values.iter().map(|&x| x as u32).collect(), 1, ids.shape[1]);
        let logits = model.logits(model.forward_hidden(&batch, &NoAdapter, false).unwrap().hidden);
        let loss = to_vec(causal_lm_loss(logits.clone(), &batch).unwrap())[0];
        let full = to_vec(logits);
        let t = batch.seq;
        let ours: Vec<f64> = (0..t)
            .flat_map(|r| subset.iter().map(move |&c| (r, c)))
            .map(|(r, c)| full[r * v + c])
            .collect();
        let err = rel_l2(&ours, &golden[&format!("p{p}.logits_subset")].values, |_| true);
        let want_loss = golden[&format!("p{p}.loss")].values[0];
        eprintln!(
            "prompt {p}: {t} tokens, logits relative L2 {err:.2e}, loss {loss:.5} vs {want_loss:.5}"
        );
        assert!(err < TOL, "prompt {p}: logits relative L2 {err:.3e}");
        assert!(
            ((loss - want_loss) / want_loss).abs() < TOL,
            "prompt {p}: loss {loss} vs {want_loss}"
        );
        let top = &golden[&format!("p{p}.top_ids")].values;
        for r in 0..t {
            let row = &full[r * v..(r + 1) * v];
            let argmax = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert_eq!(argmax as f64, top[r * 10], "prompt {p} position {r}: top-1 token");
        }
    }
}
