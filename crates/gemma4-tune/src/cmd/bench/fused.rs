//! `bench --check-kernels`, fused part: each of gemma4-kernels' fused kernels on the preset's
//! shapes against its plain-op reference on the same device, forward values and the input's
//! gradient, in each dtype the device has, and both timed (forward + backward). Off the GPU the
//! fused wrappers are the reference, so this checks the GPU path where a GPU is.
//!
//! Shapes: RMSNorm over the hidden width (`m` rows) and over each distinct head width (`m` ×
//! heads rows, as `q_norm` runs). Tolerances (relative L2 against the reference in the same
//! dtype; both accumulate in f32, so they differ by the output's rounding): f32 1e-5, f16 2e-3,
//! bf16 1e-2.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use burn::tensor::{DType, Device, Distribution, Tensor};
use gemma4_kernels::{fused, reference};
use gemma4_model::Gemma4TextConfig;
use serde_json::{Value, json};

use super::ceilings::time;

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 1e-2,
        DType::F16 => 2e-3,
        _ => 1e-5,
    }
}

/// The `[rows, width]` RMSNorm shapes of `cfg` at `m` token rows.
fn norm_shapes(cfg: &Gemma4TextConfig, m: usize) -> Vec<(usize, usize)> {
    let mut v = BTreeSet::from([(m, cfg.hidden_size)]);
    for l in &cfg.layers {
        v.insert((m * cfg.num_attention_heads, l.head_dim));
    }
    v.into_iter().collect()
}

/// The check over each dtype of `dtypes` the device has; the report, and whether every kernel
/// is in tolerance.
pub fn check_fused(
    cfg: &Gemma4TextConfig,
    m: usize,
    dtypes: &[DType],
    device: &Device,
) -> Result<(Value, bool)> {
    let mut all_ok = true;
    let mut out = serde_json::Map::new();
    out.insert("fused".into(), json!(fused::enabled(device)));
    for &dtype in dtypes {
        if !device.supports_dtype(dtype) {
            continue;
        }
        let mut row = serde_json::Map::new();
        for (rows, width) in norm_shapes(cfg, m) {
            let r = check_norm(rows, width, dtype, device)?;
            let ok =
                ["y", "dx"].iter().all(|k| r[k].as_f64().is_some_and(|v| v <= tolerance(dtype)));
            all_ok &= ok;
            let verdict = if ok { "ok" } else { "FAIL" };
            eprintln!("{dtype:?} rms_norm [{rows},{width}]: {r} {verdict}");
            row.insert(format!("rms_norm {rows}x{width}"), r);
        }
        out.insert(format!("{dtype:?}").to_lowercase(), Value::Object(row));
    }
    out.insert("passed".into(), json!(all_ok));
    Ok((Value::Object(out), all_ok))
}

/// Fused against reference RMSNorm (with a scale) on one shape: relative L2 of the output and
/// of the input's gradient, and the milliseconds of forward + backward of each.
fn check_norm(rows: usize, width: usize, dtype: DType, device: &Device) -> Result<Value> {
    let x = Tensor::<2>::random([rows, width], Distribution::Uniform(-1.0, 2.0), (device, dtype));
    let w = Tensor::<1>::random([width], Distribution::Uniform(0.5, 1.5), (device, DType::F32));
    let dy = Tensor::<2>::random([rows, width], Distribution::Normal(0.0, 1.0), (device, dtype));
    let run = |fused_path: bool| -> Result<(Tensor<2>, Tensor<2>)> {
        let x = x.clone().autodiff().require_grad();
        let w = w.clone().autodiff();
        let y = if fused_path {
            fused::rms_norm(x.clone(), Some(&w), 1e-6)
        } else {
            reference::rms_norm(x.clone(), Some(&w), 1e-6)
        };
        let grads =
            (y.clone().cast(DType::F32) * dy.clone().autodiff().cast(DType::F32)).sum().backward();
        let dx = x.grad(&grads).ok_or_else(|| anyhow!("no gradient for x"))?;
        Ok((y.inner(), dx))
    };
    let (y, dx) = run(true)?;
    let (y_ref, dx_ref) = run(false)?;
    let fused_s = time(device, 5, &|| drop(run(true)))?;
    let reference_s = time(device, 5, &|| drop(run(false)))?;
    Ok(json!({
        "y": rel_l2(&read(y)?, &read(y_ref)?),
        "dx": rel_l2(&read(dx)?, &read(dx_ref)?),
        "fused_ms": fused_s * 1e3,
        "reference_ms": reference_s * 1e3,
    }))
}

fn read(t: Tensor<2>) -> Result<Vec<f64>> {
    let v = t.cast(DType::F32).into_data().try_to_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))?;
    Ok(v.into_iter().map(f64::from).collect())
}

fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-30)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_fused_check_runs_on_the_cpu() {
        let cfg = super::super::run::load_config("tiny").expect("tiny preset");
        assert!(norm_shapes(&cfg, 8).contains(&(8, cfg.hidden_size)));
        let (report, ok) = check_fused(&cfg, 8, &[DType::F32], &Device::flex()).expect("check");
        assert!(ok, "{report}");
        assert_eq!(report["fused"], json!(false), "no fused kernels on the CPU");
    }
}
