//! Analytic FLOPs per token of a config (the convention `tests/reference/bench_peft.py` shares).
//!
//! - linear: 2 × the weight elements a token passes through (attention and MLP projections,
//!   k/v only on layers with their own KV, the routed experts' share `top_k / num_experts`,
//!   the MoE router, PLE gate/projections, and the LM head);
//! - attention: `4·h·d·ctx` per layer, `ctx` the mean number of keys a query sees (causal:
//!   `(seq + 1) / 2`, sliding window `W`: the mean of `min(t + 1, W)`);
//! - LoRA: `2·r·(in + out)` per adapted projection (a routed expert's adapter: `top_k` of them).
//!
//! A LoRA training step with a frozen base costs `2 × linear + 3 × attention + 3 × LoRA` per
//! token: the forward pass, then the input gradients (no base weight gradients); attention's
//! backward costs twice its forward; the adapter gets both its gradients. Prefill counts the
//! forward pass without the LM head. Recomputation under gradient checkpointing is not counted.

use gemma4_lora::LoraAdapter;
use gemma4_model::{Gemma4TextConfig, LayerType};

/// FLOPs per token, by kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flops {
    /// Projections and experts, without the LM head.
    pub linear: f64,
    pub lm_head: f64,
    pub attention: f64,
    pub lora: f64,
}

impl Flops {
    pub fn new(cfg: &Gemma4TextConfig, seq: usize, adapter: &LoraAdapter) -> Self {
        let (e, h, d) = (
            cfg.hidden_size as f64,
            cfg.num_attention_heads as f64,
            cfg.hidden_size_per_layer_input as f64,
        );
        let mut weights = 0.0;
        let mut attention = 0.0;
        for spec in &cfg.layers {
            let (hd, kv, m) = (
                spec.head_dim as f64,
                spec.num_key_value_heads as f64,
                spec.intermediate_size as f64,
            );
            weights += 2.0 * h * hd * e; // q_proj, o_proj
            if spec.kv_donor.is_none() {
                weights += if spec.k_eq_v { 1.0 } else { 2.0 } * kv * hd * e;
            }
            weights += 3.0 * m * e;
            weights += 2.0 * d * e; // PLE gate + projection (0 without PLE)
            if cfg.enable_moe_block {
                weights += cfg.num_experts as f64 * e
                    + cfg.top_k_experts as f64 * 3.0 * cfg.moe_intermediate_size as f64 * e;
            }
            let window =
                (spec.layer_type == LayerType::Sliding).then(|| cfg.effective_sliding_window());
            attention += 4.0 * h * hd * mean_context(seq, window);
        }
        weights += cfg.num_hidden_layers as f64 * d * e; // per_layer_model_projection
        let routed = if cfg.num_experts > 0 {
            cfg.top_k_experts as f64 / cfg.num_experts as f64
        } else {
            1.0
        };
        let lora = adapter
            .modules
            .values()
            .map(|m| {
                let ([re, inp], out) = (m.lora_a.dims(), m.lora_b.dims()[0]);
                let share = if m.num_experts > 1 { routed } else { 1.0 };
                2.0 * re as f64 * (inp + out) as f64 * share
            })
            .sum();
        Self { linear: 2.0 * weights, lm_head: 2.0 * e * cfg.vocab_size as f64, attention, lora }
    }

    /// The forward pass with the LM head (an evaluation token).
    pub fn forward(&self) -> f64 {
        self.linear + self.lm_head + self.attention + self.lora
    }

    /// A LoRA training token (frozen base).
    pub fn train(&self) -> f64 {
        2.0 * (self.linear + self.lm_head) + 3.0 * self.attention + 3.0 * self.lora
    }

    /// A prefill token (no LM head).
    pub fn prefill(&self) -> f64 {
        self.linear + self.attention + self.lora
    }
}

/// Mean keys per query over positions `0..seq`, causal, optionally within a sliding window.
pub fn mean_context(seq: usize, window: Option<usize>) -> f64 {
    let w = window.unwrap_or(usize::MAX);
    (0..seq).map(|t| (t + 1).min(w) as f64).sum::<f64>() / seq.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_context_counts_causal_and_windowed_keys() {
        assert_eq!(mean_context(4, None), 2.5); // (1 + 2 + 3 + 4) / 4
        assert_eq!(mean_context(4, Some(2)), 1.75); // (1 + 2 + 2 + 2) / 4
    }
}
