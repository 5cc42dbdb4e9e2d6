//! `bench --check-kernels`: gemma4-kernels' `matmul` (cuBLAS on CUDA) on every product shape of
//! the preset — projections, PLE, router, experts, LM head, the LoRA factors and both attention
//! products (batched, with the transposed-view operand the model passes) — in each dtype the
//! device has. Each product and both operands' gradients are checked against f64 on the host
//! at sampled entries and timed; off CUDA, Burn's own `matmul` is measured the same way. Exits
//! non-zero when ours is out of the dtype's tolerance: the test of the cuBLAS route, run where
//! a GPU is.
//!
//! Tolerances (relative L2 at the sampled entries, against exact f64 products of the same
//! inputs; accumulation in f32, the output rounded once): f32 1e-5, f16 2e-3, bf16 1e-2.

use anyhow::{Result, anyhow};
use burn::tensor::{DType, Device, Distribution, Tensor};
use gemma4_model::Gemma4TextConfig;
use serde_json::{Value, json};

use super::ceilings::time;

/// The dtypes the CLI checks (each where the device has it).
pub const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 1e-2,
        DType::F16 => 2e-3,
        _ => 1e-5,
    }
}

/// One product to check: `[batch, m, k]·[batch, k, n]`, the right operand stored transposed
/// (`[batch, n, k]`, passed as a view) when `b_t`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Product {
    pub name: String,
    pub batch: usize,
    pub k: usize,
    pub n: usize,
    pub b_t: bool,
}

/// Every distinct product of `cfg` with `m` rows of tokens (the attention products over `m`
/// positions of one sequence).
pub fn products(cfg: &Gemma4TextConfig, rank: usize, m: usize) -> Vec<Product> {
    let e = cfg.hidden_size;
    let h = cfg.num_attention_heads;
    let p = |name: &str, batch, k, n, b_t| Product { name: name.into(), batch, k, n, b_t };
    let mut v = vec![p("lm_head", 1, e, cfg.vocab_size.min(32768), false)];
    v.push(p("lora x·Aᵀ", 1, e, rank, true));
    for l in &cfg.layers {
        let (d, kv, im) = (l.head_dim, l.num_key_value_heads, l.intermediate_size);
        v.push(p("q_proj", 1, e, h * d, false));
        v.push(p("k_proj/v_proj", 1, e, kv * d, false));
        v.push(p("o_proj", 1, h * d, e, false));
        v.push(p("gate_proj/up_proj", 1, e, im, false));
        v.push(p("down_proj", 1, im, e, false));
        v.push(p("attention q·kᵀ", kv, d, m / (h / kv).max(1), true));
        v.push(p("attention p·v", kv, m / (h / kv).max(1), d, false));
    }
    let ple = cfg.hidden_size_per_layer_input;
    if ple > 0 {
        v.push(p("per_layer_model_projection", 1, e, ple * cfg.num_hidden_layers, false));
        v.push(p("per_layer_projection", 1, ple, e, false));
    }
    if cfg.num_experts > 0 {
        v.push(p("router", 1, e, cfg.num_experts, false));
        v.push(p("experts.gate_up", 1, e, 2 * cfg.moe_intermediate_size, false));
        v.push(p("experts.down", 1, cfg.moe_intermediate_size, e, false));
    }
    v.sort();
    v.dedup();
    v
}

/// The check over `m` rows in each of `dtypes` the device has; the report, and whether every
/// product is in tolerance.
pub fn check_kernels(
    cfg: &Gemma4TextConfig,
    m: usize,
    rank: usize,
    dtypes: &[DType],
    device: &Device,
) -> Result<(Value, bool)> {
    let mut all_ok = true;
    let mut out = serde_json::Map::new();
    out.insert("cublas".into(), json!(gemma4_kernels::uses_cublas(device)));
    for &dtype in dtypes {
        if !device.supports_dtype(dtype) {
            continue;
        }
        let mut row = serde_json::Map::new();
        for p in products(cfg, rank, m) {
            let r = check_one(&p, m, dtype, device)?;
            let ok = ["c", "da", "db"]
                .iter()
                .all(|key| r["ours"][key].as_f64().is_some_and(|v| v <= tolerance(dtype)));
            all_ok &= ok;
            let verdict = if ok { "ok" } else { "FAIL" };
            eprintln!(
                "{dtype:?} {} {}x[{m},{}]·[{},{}]: {r} {verdict}",
                p.name, p.batch, p.k, p.k, p.n
            );
            row.insert(format!("{} {}x{}x{}x{}", p.name, p.batch, m, p.k, p.n), r);
        }
        out.insert(format!("{dtype:?}").to_lowercase(), Value::Object(row));
    }
    let (lora, lora_ok) = check_lora(cfg, m, rank, dtypes, device)?;
    out.insert("lora".into(), lora);
    all_ok &= lora_ok;
    out.insert("passed".into(), json!(all_ok));
    Ok((Value::Object(out), all_ok))
}

/// A frozen projection with LoRA's change as `gemma4-lora` computes it — composed (`x·W`, then
/// `x·Aᵀ` in the compute dtype, then `s·(xa·Bᵀ)` added into the product by cuBLAS) and, where
/// the device takes it, as one op (`low_rank_linear`) — against the same sum of separate f32
/// products: the output and the gradients of `x`, `A` and `B`, relative L2 over all entries.
fn check_lora(
    cfg: &Gemma4TextConfig,
    m: usize,
    rank: usize,
    dtypes: &[DType],
    device: &Device,
) -> Result<(Value, bool)> {
    let (e, n, scale) = (cfg.hidden_size, cfg.hidden_size * 2, 2.0);
    let (mut report, mut all_ok) = (serde_json::Map::new(), true);
    for &dtype in dtypes.iter().filter(|d| device.supports_dtype(**d)) {
        let small = Distribution::Normal(0.0, 0.05);
        let x = Tensor::<3>::random([1, m, e], Distribution::Normal(0.0, 1.0), (device, dtype));
        let w = Tensor::<2>::random([e, n], small, (device, dtype));
        let dy = Tensor::<3>::random([1, m, n], Distribution::Normal(0.0, 1.0), device);
        let (a, b) = (
            Tensor::<2>::random([rank, e], small, device),
            Tensor::<2>::random([n, rank], small, device),
        );
        let bf16 = gemma4_kernels::bf16_lora_inputs(device, dtype);
        let compute = if bf16 { DType::BF16 } else { DType::F32 };
        let fused = (bf16 || dtype == DType::F32) && gemma4_kernels::fuses_low_rank(&x, &w);
        // 0: f32 reference, 1: composed, 2: one op.
        let run = |how: u8| -> Result<Vec<Tensor<3>>> {
            let x = x.clone().autodiff().require_grad();
            let (a, b) = (a.clone().autodiff().require_grad(), b.clone().autodiff().require_grad());
            let w = w.clone().autodiff();
            let y = match how {
                0 => {
                    // Separate f32 products (cuBLAS SGEMM on CUDA, checked against f64 above;
                    // Burn's matmul would autotune every shape first).
                    let mm =
                        |p: Tensor<3>, q: Tensor<2>| gemma4_kernels::matmul(p, q.unsqueeze::<3>());
                    let x = x.clone().cast(DType::F32);
                    let xa = mm(x.clone(), a.clone().transpose());
                    mm(x, w.cast(DType::F32)) + mm(xa, b.clone().transpose()).mul_scalar(scale)
                }
                1 => {
                    let base = gemma4_kernels::linear(x.clone(), w, None);
                    let x_in = if bf16 { x.clone() } else { x.clone().cast(compute) };
                    let xa =
                        gemma4_kernels::linear_to(x_in, a.clone().transpose(), compute, compute);
                    gemma4_kernels::linear_add_to(xa, b.clone().transpose(), base, compute, scale)
                }
                _ => gemma4_kernels::low_rank_linear(x.clone(), w, a.clone(), b.clone(), scale)
                    .ok_or_else(|| anyhow!("lora check: low_rank_linear declined"))?,
            };
            let grads = (y.clone().cast(DType::F32) * dy.clone().autodiff()).sum().backward();
            let grad = |g: Option<Tensor<3>>| g.ok_or_else(|| anyhow!("lora check: no gradient"));
            let (ga, gb) = (a.grad(&grads), b.grad(&grads));
            Ok(vec![
                y.inner(),
                grad(x.grad(&grads))?,
                grad(ga.map(|g| g.unsqueeze::<3>()))?,
                grad(gb.map(|g| g.unsqueeze::<3>()))?,
            ])
        };
        let reference = run(0)?;
        let tol = if dtype == DType::F32 { 1e-5 } else { tolerance(dtype) };
        let ways: &[(&str, u8)] =
            if fused { &[("composed", 1), ("one op", 2)] } else { &[("composed", 1)] };
        for &(way, how) in ways {
            let ours = run(how)?;
            let mut row = serde_json::Map::new();
            for (name, (o, r)) in ["y", "dx", "dA", "dB"].iter().zip(ours.iter().zip(&reference)) {
                let (o, r) = (o.clone().cast(DType::F32), r.clone().cast(DType::F32));
                let num = (o - r.clone()).powi_scalar(2).sum().into_scalar::<f32>() as f64;
                let den = r.powi_scalar(2).sum().into_scalar::<f32>() as f64;
                let rel = (num / den.max(1e-30)).sqrt();
                all_ok &= rel <= tol;
                row.insert((*name).into(), json!(rel));
            }
            let verdict = if all_ok { "ok" } else { "FAIL" };
            eprintln!(
                "{dtype:?} lora {way} (compute {compute:?}, r {rank}, [{m},{e}]→{n}): {row:?} {verdict}"
            );
            report.insert(format!("{dtype:?} {way}").to_lowercase(), Value::Object(row));
        }
    }
    Ok((Value::Object(report), all_ok))
}

fn check_one(p: &Product, m: usize, dtype: DType, device: &Device) -> Result<Value> {
    let (bt, k, n) = (p.batch, p.k, p.n);
    let dist = Distribution::Normal(0.0, 1.0);
    let a = Tensor::<3>::random([bt, m, k], dist, (device, dtype));
    let stored = if p.b_t { [bt, n, k] } else { [bt, k, n] };
    let b_stored = Tensor::<3>::random(stored, Distribution::Normal(0.0, 0.05), (device, dtype));
    let view = |t: Tensor<3>| if p.b_t { t.swap_dims(1, 2) } else { t };
    let dc = Tensor::<3>::random([bt, m, n], dist, (device, dtype));
    let host = Host { a: read(&a)?, b: read(&view(b_stored.clone()))?, dc: read(&dc)?, m, k, n };
    let run = |ours: bool| -> Result<Value> {
        let (a, b) =
            (a.clone().autodiff().require_grad(), b_stored.clone().autodiff().require_grad());
        let bv = view(b.clone());
        let c = if ours { gemma4_kernels::matmul(a.clone(), bv) } else { a.clone().matmul(bv) };
        let grads =
            (c.clone().cast(DType::F32) * dc.clone().autodiff().cast(DType::F32)).sum().backward();
        let da = a.grad(&grads).ok_or_else(|| anyhow!("no gradient for a"))?;
        let db = view(b.grad(&grads).ok_or_else(|| anyhow!("no gradient for b"))?);
        Ok(json!({
            "c": host.rel(Which::C, &read(&c.inner())?),
            "da": host.rel(Which::Da, &read(&da)?),
            "db": host.rel(Which::Db, &read(&db)?),
        }))
    };
    let bv = view(b_stored.clone());
    let tflops = |s: f64| 2.0 * (bt * m * k * n) as f64 / s / 1e12;
    let ours_s = time(device, 5, &|| drop(gemma4_kernels::matmul(a.clone(), bv.clone())))?;
    let mut r = json!({"ours": run(true)?, "ours_ms": ours_s * 1e3, "ours_tflops": tflops(ours_s)});
    // Where ours is cuBLAS, Burn's matmul is not run: on a fresh machine it autotunes every
    // shape, minutes each (`bench --ceilings` times it on the preset's main shapes).
    if !gemma4_kernels::uses_cublas(device) {
        let burn_s = time(device, 5, &|| drop(a.clone().matmul(bv.clone())))?;
        r["burn"] = run(false)?;
        r["burn_ms"] = json!(burn_s * 1e3);
        r["burn_tflops"] = json!(tflops(burn_s));
    }
    Ok(r)
}

fn read(t: &Tensor<3>) -> Result<Vec<f32>> {
    t.clone().cast(DType::F32).into_data().try_to_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"))
}

#[derive(Clone, Copy)]
enum Which {
    C,
    Da,
    Db,
}

/// The inputs on the host (first batch entry), logical layouts: `a [m, k]`, `b [k, n]`,
/// `dc [m, n]`.
struct Host {
    a: Vec<f32>,
    b: Vec<f32>,
    dc: Vec<f32>,
    m: usize,
    k: usize,
    n: usize,
}

impl Host {
    /// Relative L2 of `got` (first batch entry) against f64 at 256 sampled entries.
    fn rel(&self, which: Which, got: &[f32]) -> f64 {
        let (m, k, n) = (self.m, self.k, self.n);
        let (rows, cols) = match which {
            Which::C => (m, n),
            Which::Da => (m, k),
            Which::Db => (k, n),
        };
        let (mut num, mut den, mut seed) = (0f64, 0f64, 0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..256 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (i, j) = ((seed >> 33) as usize % rows, (seed >> 13) as usize % cols);
            let exact: f64 = match which {
                Which::C => {
                    (0..k).map(|p| self.a[i * k + p] as f64 * self.b[p * n + j] as f64).sum()
                }
                Which::Da => {
                    (0..n).map(|q| self.dc[i * n + q] as f64 * self.b[j * n + q] as f64).sum()
                }
                Which::Db => {
                    (0..m).map(|q| self.a[q * k + i] as f64 * self.dc[q * n + j] as f64).sum()
                }
            };
            num += (got[i * cols + j] as f64 - exact).powi(2);
            den += exact * exact;
        }
        (num / den.max(1e-30)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_check_passes_on_the_cpu_and_covers_attention() {
        let cfg = super::super::run::load_config("tiny").expect("tiny preset");
        let products = products(&cfg, 4, 16);
        assert!(products.iter().any(|p| p.name == "lm_head"));
        assert!(products.iter().any(|p| p.name == "attention q·kᵀ" && p.b_t));
        // f32 only: the tolerances assume f32 accumulation, which the CPU's half-precision
        // products need not use.
        let (report, ok) =
            check_kernels(&cfg, 16, 4, &[DType::F32], &Device::flex()).expect("check");
        assert!(ok, "{report}");
        assert_eq!(report["cublas"], json!(false));
    }
}
