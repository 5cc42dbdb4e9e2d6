//! KV cache for incremental decoding (mlx-lm `make_cache` semantics, state passed in, never
//! stored in the model):
//! - full-attention layers: a growing cache of every key/value so far;
//! - sliding layers: a rotating window — after each step only the last `window − 1` positions
//!   are kept, which is all a later query can see (it sees `window` keys including itself);
//! - KV-shared layers: no cache; they read their donor's keys/values as the donor returns them.
//!
//! The cache carries the explicit position `offset` of the next token; positions are never
//! inferred from a cache length.

use burn::tensor::Tensor;

use crate::config::{Gemma4TextConfig, LayerType};

/// One layer's cached keys and values.
#[derive(Clone, Debug)]
pub struct LayerCache {
    /// `[b, kv, t, d]` each (`None` before the first step).
    pub kv: Option<(Tensor<4>, Tensor<4>)>,
    /// Absolute position of the first cached key.
    pub key_start: usize,
    /// `Some(w)` for sliding layers.
    pub window: Option<usize>,
}

impl LayerCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append this step's keys/values; return every key/value the step's queries attend over
    /// (starting at absolute position `self.key_start` as it was before the call), then trim a
    /// rotating cache to its last `window − 1` positions.
    ///
    /// # Shapes
    /// - k/v: `[b, kv, n, d]` → `([b, kv, t + n, d], [b, kv, t + n, d])`
    pub fn update(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (k_all, v_all) = match self.kv.take() {
            Some((ck, cv)) => (Tensor::cat(vec![ck, k], 2), Tensor::cat(vec![cv, v], 2)),
            None => (k, v),
        };
        let total = k_all.dims()[2];
        let keep = match self.window {
            Some(w) => total.min(w.saturating_sub(1)),
            None => total,
        };
        let drop = total - keep;
        self.kv = (keep > 0)
            .then(|| (k_all.clone().narrow(2, drop, keep), v_all.clone().narrow(2, drop, keep)));
        let seen_from = self.key_start;
        self.key_start += drop;
        debug_assert!(seen_from <= self.key_start);
        (k_all, v_all)
    }
}

/// The whole model's cache.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Position of the next token to be fed.
    pub offset: usize,
    /// One entry per layer; `None` for KV-shared layers.
    pub layers: Vec<Option<LayerCache>>,
}

impl KvCache {
    pub fn new(cfg: &Gemma4TextConfig) -> Self {
        let window = cfg.effective_sliding_window();
        let layers = cfg
            .layers
            .iter()
            .map(|l| {
                l.kv_donor.is_none().then(|| LayerCache {
                    kv: None,
                    key_start: 0,
                    window: (l.layer_type == LayerType::Sliding).then_some(window),
                })
            })
            .collect();
        Self { offset: 0, layers }
    }

    /// `(key_start, cached length)` of the first cached layer of `layer_type` (all layers of a
    /// type hold the same positions), for building that type's mask.
    pub fn span(&self, cfg: &Gemma4TextConfig, layer_type: LayerType) -> (usize, usize) {
        cfg.layers
            .iter()
            .zip(&self.layers)
            .find_map(|(spec, c)| (spec.layer_type == layer_type).then_some(c.as_ref()).flatten())
            .map_or((self.offset, 0), |c| (c.key_start, c.len()))
    }
}
