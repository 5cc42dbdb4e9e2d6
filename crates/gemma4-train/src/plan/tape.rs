//! What one decoder layer leaves on the autodiff tape, in bytes, op by op as the model code runs
//! it (`layer.rs`, `attention.rs`, `mlp.rs`, the adapter in gemma4-lora), and the largest
//! transient of its backward pass.
//!
//! Rules (Burn 0.22 autodiff, gemma4-kernels):
//! - a product with a frozen weight keeps nothing on a GPU (the cuBLAS op keeps only what a
//!   tracked operand's gradient needs: the weight, already resident); Burn's plain `matmul` (the
//!   CPU) keeps its input;
//! - a LoRA-targeted projection keeps its input cast to f32 (`x·Aᵀ` needs it for A's gradient;
//!   under f32 weights the cast is the input itself, shared by q/k/v) and the `[n, r]` product;
//!   where the adapter reads the input as it is (bf16 on cuBLAS, any dtype through wgpu's
//!   `low_rank_add`) it keeps the input itself, shared;
//!   dropout keeps its mask and the masked input instead;
//! - the fused RMSNorm keeps its input, GeGLU both inputs (f16's row-scaled one too), the masked
//!   softmax its output; the plain ops (CPU) keep f32 copies: a norm its f32 input and output,
//!   GeGLU also `gelu(gate)`, the softmax `exp` and the quotient;
//! - attention keeps q (after its norm) and k, v as each product reads them (a sliding layer's
//!   query blocks read `≤ 2W − 1` keys each), and the probabilities `[b, h, s, t]`; as the flash
//!   kernel (GPUs, `gemma4_kernels::fused::flash_enabled`) it keeps q, k, v, its output and an
//!   f32 log-sum-exp per query row instead, linear in `s`.

use std::collections::BTreeSet;

use gemma4_model::{Gemma4TextConfig, LayerSpec, LayerType, ProjName};

/// The sizes every layer shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    /// Rows per micro-batch and tokens per row.
    pub b: u64,
    pub s: u64,
    /// Bytes per value: weights/activations, the residual stream (f32 under f16).
    pub dt: u64,
    pub rd: u64,
    /// The CPU's plain ops (else the GPU's fused kernels).
    pub plain: bool,
    /// LoRA rank, and whether dropout is on.
    pub r: u64,
    pub dropout: bool,
    /// The adapter's products read the activation as it is instead of an f32 copy
    /// ([`super::DeviceFacts::bf16_lora_inputs`], [`super::DeviceFacts::low_rank_add_rank`]).
    pub lora_reads_input: bool,
    /// Attention through the flash kernel ([`super::DeviceFacts::flash`]).
    pub flash: bool,
}

impl Dims {
    fn n(&self) -> u64 {
        self.b * self.s
    }

    /// A norm over `width` whose input has `bytes` per value.
    fn norm(&self, width: u64, bytes: u64) -> u64 {
        if self.plain { 8 * self.n() * width } else { bytes * self.n() * width }
    }

    /// The inputs kept for the products reading one activation of `width` (`targeted` of them
    /// with LoRA, `products` in all).
    fn product_inputs(&self, width: u64, targeted: u64, products: u64) -> u64 {
        let n = self.n();
        let plain_keep = if self.plain && products > 0 { self.dt * n * width } else { 0 };
        if targeted == 0 {
            return plain_keep;
        }
        // The adapter's input: an f32 copy per projection, or (f32 weights, bf16 read as it is)
        // the activation itself, kept once for all the projections reading it.
        let shared = self.dt == 4 || self.lora_reads_input;
        let one = if shared { self.dt } else { 4 } * n * width;
        let kept = if self.dropout {
            2 * one * targeted + plain_keep // each projection: its mask and its masked input
        } else if shared {
            one.max(plain_keep)
        } else {
            one * targeted + plain_keep
        };
        kept + targeted * 4 * n * self.r // the `[n, r]` product each B reads
    }
}

/// One layer: bytes kept on the tape, and the largest transient of its backward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct LayerTape {
    pub saved: u64,
    pub backward: u64,
}

/// The score blocks of a layer of `kind` over `s` tokens (causal sliding layers may attend in
/// query blocks of `w`: `gemma4_model::blocks_queries`, `windowed`): `(query × key entries, the widest block's,
/// key rows read summed over blocks)`.
pub(crate) fn score_area(cfg: &Gemma4TextConfig, kind: LayerType, s: u64) -> (u64, u64, u64) {
    let w = cfg.effective_sliding_window() as u64;
    let blocked = kind == LayerType::Sliding
        && !cfg.bidirectional
        && gemma4_model::blocks_queries(w as usize, s as usize);
    if !blocked {
        return (s * s, s * s, s);
    }
    let (mut area, mut widest, mut reads) = (0, 0, 0);
    for start in (0..s).step_by(w as usize) {
        let len = w.min(s - start);
        let keys = start + len - start.saturating_sub(w - 1);
        (area, widest, reads) = (area + len * keys, widest.max(len * keys), reads + keys);
    }
    (area, widest, reads)
}

/// The tape of layer `spec` with LoRA on `targets`.
pub(crate) fn layer(
    cfg: &Gemma4TextConfig,
    spec: &LayerSpec,
    targets: &BTreeSet<ProjName>,
    d: &Dims,
) -> LayerTape {
    let attn = attention(cfg, spec, targets, d);
    let mlp = mlp(cfg, spec, targets, d);
    let (n, e) = (d.n(), cfg.hidden_size as u64);
    let mut saved = attn.saved + mlp.saved;
    saved += d.norm(e, d.rd) + d.norm(e, d.dt); // input norm (the layer input), post-attention
    saved += d.norm(e, d.rd) + d.norm(e, if d.dt == 2 && d.rd == 4 { 4 } else { d.dt }); // pre/post-MLP
    let ple = cfg.hidden_size_per_layer_input as u64;
    if ple > 0 {
        // gelu(gate)·p keeps both `[n, D]` inputs; the output norm its input.
        saved += 2 * d.dt * n * ple + d.norm(e, d.dt) + d.product_inputs(e, 0, 1);
        saved += d.product_inputs(ple, 0, 1);
    }
    // The gradient flowing into the layer (f32) beside the op being differentiated.
    LayerTape { saved, backward: attn.backward.max(mlp.backward) + 4 * n * e }
}

fn count(targets: &BTreeSet<ProjName>, names: &[ProjName]) -> u64 {
    names.iter().filter(|p| targets.contains(p)).count() as u64
}

fn attention(
    cfg: &Gemma4TextConfig,
    spec: &LayerSpec,
    targets: &BTreeSet<ProjName>,
    d: &Dims,
) -> LayerTape {
    let (n, e, h) = (d.n(), cfg.hidden_size as u64, cfg.num_attention_heads as u64);
    let (hd, kv) = (spec.head_dim as u64, spec.num_key_value_heads as u64);
    let own_kv = spec.kv_donor.is_none();
    let mut qkv = vec![ProjName::QProj];
    if own_kv {
        qkv.push(ProjName::KProj);
        if !spec.k_eq_v {
            qkv.push(ProjName::VProj);
        }
    }
    let mut saved = d.product_inputs(e, count(targets, &qkv), qkv.len() as u64);
    saved += d.norm(h * hd, d.dt) + d.dt * n * h * hd; // q: its norm, the product's copy
    let own_norms = if own_kv {
        let v_norm = if spec.k_eq_v { 0 } else { d.norm(kv * hd, d.dt) };
        d.norm(kv * hd, d.dt) + v_norm
    } else {
        0
    };
    saved += own_norms + d.product_inputs(h * hd, count(targets, &[ProjName::OProj]), 1);
    if d.flash {
        // k and v as they are (a KV-shared layer holds its donor's, already kept), the output
        // (its backward's `Σ dO∘O`) and the f32 log-sum-exp per row; backward: dq, dk, dv in
        // f32 beside `Σ dO∘O`.
        let own = if own_kv { 2 * d.dt * n * kv * hd } else { 0 };
        saved += own + d.dt * n * h * hd + 4 * n * h;
        let backward = 4 * n * (h * hd + 2 * kv * hd + h);
        return LayerTape { saved, backward };
    }
    let (area, widest, reads) = score_area(cfg, spec.layer_type, d.s);
    // K and V as the products read them (each query block its key range).
    saved += 2 * d.dt * d.b * reads * kv * hd;
    let probs = if !d.plain {
        d.dt
    } else if d.dt == 4 {
        8
    } else {
        4 + d.dt
    };
    saved += probs * d.b * h * area;
    // Backward: the gradients of the probabilities and of the scores of the widest block.
    let backward = 2 * probs.max(d.dt) * d.b * h * widest;
    LayerTape { saved, backward }
}

fn mlp(
    cfg: &Gemma4TextConfig,
    spec: &LayerSpec,
    targets: &BTreeSet<ProjName>,
    d: &Dims,
) -> LayerTape {
    let (n, e, m) = (d.n(), cfg.hidden_size as u64, spec.intermediate_size as u64);
    let up = count(targets, &[ProjName::GateProj, ProjName::UpProj]);
    let mut saved = d.product_inputs(e, up, 2);
    // GeGLU keeps gate and up: as they are on a GPU (f16's row-scaled kernel too); the plain
    // ops under f16 form the product from f32 copies, and also keep gelu(gate).
    let act = if d.plain && d.dt == 2 && d.rd == 4 { 4 } else { d.dt };
    saved += if d.plain { 3 } else { 2 } * act * n * m;
    saved += d.product_inputs(m, count(targets, &[ProjName::DownProj]), 1);
    let mut backward = n * m * (4 + 3 * act);
    if cfg.enable_moe_block {
        let (k, mi) = (cfg.top_k_experts as u64, cfg.moe_intermediate_size as u64);
        // Norms of the branch, the routed rows, gate_up's halves kept by GeGLU, the outputs.
        saved += d.norm(e, d.rd) + 2 * d.norm(e, d.dt);
        saved += d.dt * n * k * e + 2 * d.dt * n * k * mi;
        if d.plain {
            saved += d.dt * n * k * (e + mi);
        }
        backward = backward.max(n * k * mi * (4 + 3 * d.dt));
    }
    LayerTape { saved, backward }
}
