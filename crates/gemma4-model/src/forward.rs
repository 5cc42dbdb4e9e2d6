//! The forward pass: one code path for training (full sequence, no cache), evaluation, and
//! generation (prefill + decode with a [`KvCache`]).
//!
//! embeddings · √H → PLE → layers (KV-shared layers read the K/V their donor produced in this
//! same pass, after the donor's cache update) → final norm. Positions come from the cache's
//! explicit offset (or the batch's packed positions), masks from each layer type's cache span.

use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor, TensorData};

use crate::attention::{AttnInputs, AttnMask, KeyValue, mask_bias};
use crate::cache::{KvCache, LayerCache};
use crate::config::LayerType;
use crate::error::{ModelError, Result};
use crate::linear::{Adapter, residual_dtype};
use crate::mask::{MaskSpec, RowMasks, build_mask};
use crate::model::{Gemma4TextModel, Outputs, TokenBatch, round_to};
use crate::ple::PleRows;

/// Inputs every layer of one forward pass shares ([`Gemma4TextModel::prologue`]).
#[derive(Clone, Debug)]
pub struct Prologue {
    /// Scaled embeddings `h₀`. `[b, s, e]`
    pub h0: Tensor<3>,
    /// Combined PLE inputs. `[b, s, L, D]`
    pub ple: Option<Tensor<4>>,
    /// RoPE tables and masks per layer type.
    pub inputs: BTreeMap<LayerType, AttnInputs>,
}

impl Gemma4TextModel {
    /// The full no-cache forward pass, up to and including the final norm.
    ///
    /// # Shapes
    /// - batch: `[b, s]` ids → `Outputs.hidden` `[b, s, e]`
    pub fn forward_hidden(
        &self,
        batch: &TokenBatch,
        adapter: &dyn Adapter,
        capture: bool,
    ) -> Result<Outputs> {
        self.forward_inner(batch, adapter, capture, None)
    }

    /// Prefill or decode: run `batch` (positions `cache.offset ..`) against the cache, update it.
    ///
    /// # Shapes
    /// - batch: `[b, n]` new ids → hidden `[b, n, e]`
    pub fn forward_cached(
        &self,
        batch: &TokenBatch,
        cache: &mut KvCache,
        adapter: &dyn Adapter,
    ) -> Result<Tensor<3>> {
        if batch.segments.is_some() || batch.positions.is_some() {
            return Err(ModelError::Input("packed batches cannot use a KV cache".into()));
        }
        let out = self.forward_inner(batch, adapter, false, Some(cache))?;
        Ok(out.hidden)
    }

    fn forward_inner(
        &self,
        batch: &TokenBatch,
        adapter: &dyn Adapter,
        capture: bool,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Outputs> {
        let pro = self.prologue(batch, cache.as_deref())?;
        let mut kv_store: BTreeMap<LayerType, KeyValue> = BTreeMap::new();
        let mut layer_outputs = Vec::new();
        let mut h = pro.h0.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let lt = layer.spec.layer_type;
            let shared = if layer.spec.kv_donor.is_some() { kv_store.get(&lt) } else { None };
            let layer_cache = cache.as_deref_mut().and_then(|c| c.layers[i].as_mut());
            let (out, own_kv) = self.layer_forward(i, h, &pro, shared, layer_cache, adapter)?;
            if let Some(kv) = own_kv {
                kv_store.insert(lt, kv); // the last non-shared layer of each type is the donor
            }
            if capture {
                layer_outputs.push(out.clone());
            }
            h = out;
        }
        if let Some(c) = cache {
            c.offset += batch.seq;
        }
        let hidden = self.norm.forward(h);
        let Prologue { h0, ple, .. } = pro;
        Ok(Outputs {
            hidden,
            embeddings: capture.then_some(h0),
            per_layer_inputs: if capture { ple } else { None },
            layer_outputs,
        })
    }

    /// What every layer of a forward pass shares: scaled embeddings, PLE inputs, RoPE tables
    /// and masks (for positions `cache.offset ..` when a cache is given).
    pub fn prologue(&self, batch: &TokenBatch, cache: Option<&KvCache>) -> Result<Prologue> {
        let cfg = &self.config;
        let (b, s) = (batch.batch, batch.seq);
        let ids = self.check_ids(batch)?;
        // HF multiplies by √H cast to the weight dtype (bf16: √1536 → 39.25).
        let h0 = self
            .embed_tokens
            .lookup(&ids, b, s, &self.device)
            .mul_scalar(round_to(cfg.hidden_size as f64, self.dtype()));
        let ple = match &self.ple {
            Some(p) => Some(p.inputs(&ids, &h0, batch.ple_rows.as_ref())?),
            None => None,
        };
        let h0 = h0.cast(residual_dtype(self.dtype()));
        Ok(Prologue { h0, ple, inputs: self.attention_inputs(batch, cache) })
    }

    /// `batch`'s PLE rows uploaded now, for a forward pass to come (set as its
    /// [`TokenBatch::ple_rows`]); `None` without PLE. Meant for while the device is busy: the
    /// next batch's rows during this one's backward pass.
    pub fn upload_ple_rows(&self, batch: &TokenBatch) -> Result<Option<PleRows>> {
        let Some(ple) = &self.ple else { return Ok(None) };
        Ok(Some(ple.upload_ahead(self.check_ids(batch)?, &self.device)?))
    }

    /// Decoder layer `i` on `h`; `shared` is the donor's K/V for KV-shared layers. Returns the
    /// layer output and the K/V it computed (none for KV-shared layers).
    ///
    /// # Shapes
    /// - h: `[b, s, e]` → `([b, s, e], Some(([b, kv, t, d], [b, kv, t, d])))`
    pub fn layer_forward(
        &self,
        i: usize,
        h: Tensor<3>,
        pro: &Prologue,
        shared: Option<&KeyValue>,
        cache: Option<&mut LayerCache>,
        adapter: &dyn Adapter,
    ) -> Result<(Tensor<3>, Option<KeyValue>)> {
        let layer = &self.layers[i];
        let [b, s, _] = h.dims();
        let d = self.config.hidden_size_per_layer_input;
        let p = pro.ple.as_ref().map(|p| p.clone().narrow(2, i, 1).reshape([b, s, d]));
        let shared = if layer.spec.kv_donor.is_some() { shared } else { None };
        layer.forward(h, p, shared, &pro.inputs[&layer.spec.layer_type], cache, adapter)
    }

    pub(crate) fn check_ids(&self, batch: &TokenBatch) -> Result<Vec<usize>> {
        if batch.ids.len() != batch.batch * batch.seq || batch.seq == 0 {
            return Err(ModelError::Input(format!(
                "token batch: {} ids for shape [{}, {}]",
                batch.ids.len(),
                batch.batch,
                batch.seq
            )));
        }
        let vocab = self.config.vocab_size;
        batch
            .ids
            .iter()
            .map(|&id| {
                let id = id as usize;
                if id < vocab {
                    Ok(id)
                } else {
                    Err(ModelError::Input(format!(
                        "token id {id} out of range (vocab_size {vocab})"
                    )))
                }
            })
            .collect()
    }

    /// RoPE tables and masks, once per layer type present.
    fn attention_inputs(
        &self,
        batch: &TokenBatch,
        cache: Option<&KvCache>,
    ) -> BTreeMap<LayerType, AttnInputs> {
        let s = batch.seq;
        let offset = cache.map_or(0, |c| c.offset);
        let mut out = BTreeMap::new();
        for (lt, rope) in &self.rope {
            let window =
                (*lt == LayerType::Sliding).then_some(self.config.effective_sliding_window());
            let (key_start, cached) = cache.map_or((0, 0), |c| c.span(&self.config, *lt));
            let spec = MaskSpec {
                offset,
                queries: s,
                key_start,
                keys: cached + s,
                window,
                causal: !self.config.bidirectional,
            };
            let rows = RowMasks {
                // No key hidden (a batch without padding, as every packed or full batch is):
                // the masks of one `[1, 1, s, t]` rule instead of a `[b, 1, s, t]` bias per row.
                padding: batch
                    .attention_mask
                    .as_deref()
                    .filter(|p| p.iter().flatten().any(|&v| !v)),
                segments: batch.segments.as_deref(),
            };
            let mask = self.attention_mask(&spec, rows, cache.is_none());
            let (cos, sin) = match &batch.positions {
                Some(p) => rope.tables_at(&p.concat(), batch.batch, &self.device),
                None => rope.tables(offset, s, &self.device),
            };
            // Blocked sliding-window attention needs the whole causal sequence as keys.
            let window = window.filter(|_| cache.is_none() && !self.config.bidirectional);
            out.insert(*lt, AttnInputs { cos, sin, mask, window });
        }
        out
    }

    /// The mask of `spec` and `rows`: without a cache on a device where flash attention runs
    /// (`gemma4_kernels::fused::flash_enabled`), the rule and per-token masks its kernel
    /// evaluates itself; else the additive bias of the built mask (the cache's prefill and
    /// decode keep the plain-op attention).
    fn attention_mask(&self, spec: &MaskSpec, rows: RowMasks, no_cache: bool) -> AttnMask {
        if !(no_cache && gemma4_kernels::fused::flash_enabled(&self.device)) {
            return AttnMask::Bias(mask_bias(build_mask(spec, rows, &self.device)));
        }
        let rule = gemma4_kernels::reference::AttentionRule {
            offset: spec.offset,
            key_start: spec.key_start,
            causal: spec.causal,
            window: spec.window,
            scale: 1.0,
        };
        // `[b][keys]` rows as a `[b, keys]` int tensor (a missing entry reads as `fill`).
        let int_rows = |rows: Vec<Vec<i64>>, fill: i64| {
            let b = rows.len();
            let v: Vec<i64> = rows
                .iter()
                .flat_map(|r| (0..spec.keys).map(move |j| r.get(j).copied().unwrap_or(fill)))
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(v, [b, spec.keys]), &self.device)
        };
        let valid = rows.padding.map(|p| {
            int_rows(p.iter().map(|r| r.iter().map(|&x| i64::from(x)).collect()).collect(), 1)
        });
        let segments = rows.segments.map(|s| {
            int_rows(s.iter().map(|r| r.iter().map(|&x| i64::from(x)).collect()).collect(), -1)
        });
        AttnMask::Rule { rule, valid, segments }
    }
}
