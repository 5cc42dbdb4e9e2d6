//! `bench --ceilings`: what the device gives the two kinds of kernel a training step is made of,
//! measured through the same Burn calls the model makes.
//!
//! ```text
//! matmul   : [m, k]·[k, n] at n³ (8192³ from the CLI) and at the preset's up/down projections and LM-head chunk;
//!            Burn's matmul; on CUDA also the model's frozen-weight route (cuBLAS); on any GPU the
//!            project's tensor-core matmul (opt-in for the model), `w` also as a transposed view
//! attention: one layer of each type (full, sliding), the model's own attention code
//!            (scores, additive mask, f32 softmax, ·V; sliding layers in window blocks),
//!            forward, and forward + backward (the gradients of q, k and v)
//! ```
//! Matmul TFLOP/s count `2·m·k·n`. Attention TFLOP/s are model FLOPs, as in
//! [`flops`](super::flops): `4·h·d·ctx` per query forward (`ctx` the mean number of keys a query
//! sees), three times that forward + backward; the masked-out scores the kernels also compute
//! are not counted.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{DType, Device, Distribution, Tensor};
use gemma4_model::{Gemma4TextConfig, LayerSpec, LayerType};
use gemma4_model::{
    MaskSpec, RowMasks, blocks_queries, build_mask, mask_bias, scaled_dot_product, windowed,
};
use serde_json::{Value, json};

use super::flops::mean_context;
use super::run::sync;

/// Ceilings per dtype the device supports (f32, f16) for `batch × seq` tokens of `cfg`, with a
/// `square³` matmul for reference (the CLI: 8192).
pub fn ceilings(
    cfg: &Gemma4TextConfig,
    batch: usize,
    seq: usize,
    square: usize,
    device: &Device,
) -> Result<Value> {
    if batch == 0 || seq == 0 || square == 0 {
        bail!(
            "bench --ceilings: batch, seq and the square size must be ≥ 1 (got {batch}, {seq}, {square})"
        );
    }
    let tokens = batch * seq;
    let (e, m) = (
        cfg.hidden_size,
        cfg.layers.iter().map(|l| l.intermediate_size).max().unwrap_or(cfg.intermediate_size),
    );
    let mut out = serde_json::Map::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        if !device.supports_dtype(dtype) {
            continue;
        }
        let mut row = serde_json::Map::new();
        for (name, (a, b, c)) in [
            (format!("{square}^3"), (square, square, square)),
            ("up_proj".into(), (tokens, e, m)),
            ("down_proj".into(), (tokens, m, e)),
            ("lm_head".into(), (tokens.min(1024), e, cfg.vocab_size)),
        ] {
            let x = Tensor::<2>::random([a, b], Distribution::Normal(0.0, 1.0), (device, dtype));
            let w = Tensor::<2>::random([b, c], Distribution::Normal(0.0, 0.02), (device, dtype));
            let s = time(device, 10, &|| drop(x.clone().matmul(w.clone())))?;
            let valid = corner_is_right(&x, &w, &|x, w| x.matmul(w))?;
            let tflops = |s: f64| 2.0 * (a * b * c) as f64 / s / 1e12;
            let mut r =
                json!({"shape": [a, b, c], "ms": s * 1e3, "tflops": tflops(s), "valid": valid});
            if gemma4_kernels::uses_cublas(device) {
                // The frozen-weight route the model takes on this device (cuBLAS).
                let s = time(device, 10, &|| drop(gemma4_kernels::matmul(x.clone(), w.clone())))?;
                r["cublas_ms"] = json!(s * 1e3);
                r["cublas_tflops"] = json!(tflops(s));
            }
            if gemma4_kernels::fused::enabled(device) {
                tile_rows(&mut r, &x, &w, device, &tflops)?;
            }
            // Each row as it is measured: a run cut short still reports what it got.
            eprintln!("ceilings {dtype:?} {name}: {r}");
            row.insert(name, r);
        }
        for layer_type in [LayerType::Full, LayerType::Sliding] {
            if let Some(spec) = cfg.layers.iter().find(|l| l.layer_type == layer_type) {
                let name = format!(
                    "attention_{}",
                    if layer_type == LayerType::Full { "full" } else { "sliding" }
                );
                let plain = attention(cfg, spec, batch, seq, dtype, device, false)?;
                eprintln!("ceilings {dtype:?} {name}: {plain}");
                row.insert(name.clone(), plain);
                if gemma4_kernels::fused::flash_enabled(device) {
                    let flash = attention(cfg, spec, batch, seq, dtype, device, true)?;
                    eprintln!("ceilings {dtype:?} {name}_flash: {flash}");
                    row.insert(format!("{name}_flash"), flash);
                }
            }
        }
        out.insert(format!("{dtype:?}").to_lowercase(), Value::Object(row));
    }
    Ok(Value::Object(out))
}

/// One layer's attention core, timed forward and forward + backward: the plain ops, or the
/// flash kernel (`flash`, with `GEMMA4_TUNE_FLASH=1`: the mask from its rule, no scores kept).
fn attention(
    cfg: &Gemma4TextConfig,
    spec: &LayerSpec,
    batch: usize,
    seq: usize,
    dtype: DType,
    device: &Device,
    flash: bool,
) -> Result<Value> {
    let (h, kv, d) = (cfg.num_attention_heads, spec.num_key_value_heads, spec.head_dim);
    let window = (spec.layer_type == LayerType::Sliding).then(|| cfg.effective_sliding_window());
    let bias = mask_bias(build_mask(
        &MaskSpec {
            offset: 0,
            queries: seq,
            key_start: 0,
            keys: seq,
            window,
            causal: !cfg.bidirectional,
        },
        RowMasks::default(),
        device,
    ));
    let rand = |heads| {
        Tensor::<4>::random([batch, heads, seq, d], Distribution::Normal(0.0, 1.0), (device, dtype))
    };
    let (q, k, v) = (rand(h), rand(kv), rand(kv));
    // The dispatch of `Attention::attend`: window blocks once the sequence spans them.
    let rule = gemma4_kernels::reference::AttentionRule {
        offset: 0,
        key_start: 0,
        causal: !cfg.bidirectional,
        window,
        scale: 1.0,
    };
    let attend = |q: Tensor<4>, k: Tensor<4>, v: Tensor<4>| match window {
        _ if flash => gemma4_kernels::fused::flash_attention(q, k, v, &rule, Default::default()),
        Some(w) if blocks_queries(w, seq) => windowed(q, k, v, &bias, 1.0, w),
        _ => scaled_dot_product(q, k, v, bias.clone(), 1.0),
    };
    let forward = time(device, 5, &|| drop(attend(q.clone(), k.clone(), v.clone())))?;
    let backward = time(device, 5, &|| {
        let grad = |t: &Tensor<4>| t.clone().autodiff().require_grad();
        let (q, k, v) = (grad(&q), grad(&k), grad(&v));
        let grads = attend(q.clone(), k.clone(), v.clone()).cast(DType::F32).sum().backward();
        drop((q.grad(&grads), k.grad(&grads), v.grad(&grads)));
    })?;
    let flops = 4.0 * (batch * h * d * seq) as f64 * mean_context(seq, window);
    Ok(json!({
        "shape": {"batch": batch, "heads": h, "kv_heads": kv, "seq": seq, "head_dim": d, "window": window},
        "forward_ms": forward * 1e3,
        "forward_tflops": flops / forward / 1e12,
        "forward_backward_ms": backward * 1e3,
        "forward_backward_tflops": 3.0 * flops / backward / 1e12,
    }))
}

/// The project's tensor-core matmul (`gemma4_kernels::fused::matmul`) on the same operands,
/// and with a `w` stored transposed and read as a view (the backward's `dy·Wᵀ`): times, TFLOP/s, whether
/// the kernel ran (else Burn's matmul stood in) and the corner check.
fn tile_rows(
    r: &mut Value,
    x: &Tensor<2>,
    w: &Tensor<2>,
    device: &Device,
    tflops: &dyn Fn(f64) -> f64,
) -> Result<()> {
    use gemma4_kernels::fused::{matmul, tile_matmul_launches};
    let [b, c] = w.dims();
    let wt = Tensor::<2>::random([c, b], Distribution::Normal(0.0, 0.02), (device, w.dtype()));
    let wt = wt.transpose();
    for (key, w) in [("tile", w), ("tile_wt", &wt)] {
        let before = tile_matmul_launches();
        let s = time(device, 10, &|| drop(matmul(x.clone(), w.clone())))?;
        r[format!("{key}_ms")] = json!(s * 1e3);
        r[format!("{key}_tflops")] = json!(tflops(s));
        r[format!("{key}_ran")] = json!(tile_matmul_launches() > before);
        r[format!("{key}_valid")] = json!(corner_is_right(x, w, &matmul)?);
    }
    Ok(())
}

/// Does `x·w` hold the right value in its last row and column (the end of the output buffer,
/// reached through the end of both inputs)? A timing is only a ceiling if the kernel ran: on
/// Vulkan a matmul with a 2.7 GB operand came back in 0.04 ms, not computed (docs/performance.md).
fn corner_is_right(
    x: &Tensor<2>,
    w: &Tensor<2>,
    product: &dyn Fn(Tensor<2>, Tensor<2>) -> Tensor<2>,
) -> Result<bool> {
    let ([a, b], [_, c]) = (x.dims(), w.dims());
    let read = |t: Tensor<2>| {
        t.cast(DType::F32)
            .try_into_data()
            .map_err(|e| anyhow::anyhow!("ceilings: the product failed on the device: {e}"))?
            .try_to_vec_as::<f32>()
            .map_err(|e| anyhow::anyhow!("ceilings: read-back: {e:?}"))
    };
    let got = read(product(x.clone(), w.clone()).slice([a - 1..a, c - 1..c]))?;
    let (row, col) =
        (read(x.clone().slice([a - 1..a, 0..b]))?, read(w.clone().slice([0..b, c - 1..c]))?);
    let want: f64 = row.iter().zip(&col).map(|(p, q)| *p as f64 * *q as f64).sum();
    let size: f64 = row.iter().zip(&col).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum();
    // f16 inputs are exact in f32; the product accumulates in f32 and rounds to the output dtype.
    Ok(got.first().is_some_and(|g| ((*g as f64) - want).abs() <= 1e-2 * size + 1e-6))
}

/// Mean seconds of `f` over `reps` runs, after one untimed run (compilation, autotuning).
pub fn time(device: &Device, reps: usize, f: &dyn Fn()) -> Result<f64> {
    f();
    sync(device)?;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    sync(device)?;
    Ok(t.elapsed().as_secs_f64() / reps.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_ceilings_cover_matmuls_and_both_attention_types() {
        let cfg = super::super::run::load_config("tiny").expect("tiny preset");
        // seq 40 > 2 × the window (16): the sliding layer runs in window blocks, as in the model.
        let r = ceilings(&cfg, 1, 40, 64, &Device::flex()).expect("ceilings");
        let f32 = &r["f32"];
        for key in ["64^3", "up_proj", "down_proj", "lm_head"] {
            let tflops = f32[key]["tflops"].as_f64().expect(key);
            assert!(tflops.is_finite() && tflops > 0.0, "{key}: {tflops}");
            assert_eq!(f32[key]["valid"], true, "{key}: the product's corner is x·w's");
        }
        for key in ["attention_full", "attention_sliding"] {
            let a = &f32[key];
            assert_eq!(a["shape"]["seq"], 40, "{key}");
            for t in ["forward_tflops", "forward_backward_tflops"] {
                let v = a[t].as_f64().expect(t);
                assert!(v.is_finite() && v > 0.0, "{key}.{t}: {v}");
            }
        }
        assert!(ceilings(&cfg, 0, 40, 64, &Device::flex()).is_err(), "an empty batch is refused");
        // The two layer types keep their own head dims and windows.
        let full =
            cfg.layers.iter().find(|l| l.layer_type == LayerType::Full).expect("a full layer");
        assert_eq!(f32["attention_full"]["shape"]["head_dim"], full.head_dim);
        assert_eq!(f32["attention_sliding"]["shape"]["window"], cfg.effective_sliding_window());
    }
}
