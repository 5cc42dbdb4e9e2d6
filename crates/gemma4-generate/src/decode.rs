//! One forward step through the KV cache, the building block of prefill and decode: feed each
//! row's next tokens (the prompt, or the last sampled token), get the logits of each row's last
//! position. [`crate::generate()`] samples from them one row at a time; `bench` decodes batches
//! greedily on the device with [`Decoder::greedy`].

use burn::tensor::{Int, Tensor};
use gemma4_model::{Adapter, Gemma4TextModel, KvCache, ModelError, TokenBatch};

/// A model, an adapter and the KV cache being filled.
pub struct Decoder<'a> {
    pub model: &'a Gemma4TextModel,
    pub adapter: &'a dyn Adapter,
    pub cache: &'a mut KvCache,
}

impl Decoder<'_> {
    /// Feed `rows` rows of `ids.len() / rows` tokens each (continuing from what the cache holds).
    /// Returns the logits of each row's last position.
    ///
    /// # Shapes
    /// - returns `[b, 1, v]`
    pub fn step(&mut self, ids: Vec<u32>, rows: usize) -> Result<Tensor<3>, ModelError> {
        let n = ids.len() / rows.max(1);
        if n == 0 {
            return Err(ModelError::Input("decode: no tokens to feed".into()));
        }
        let hidden =
            self.model.forward_cached(&TokenBatch::new(ids, rows, n), self.cache, self.adapter)?;
        Ok(self.model.logits(hidden.narrow(1, n - 1, 1))) // [b, 1, v]
    }

    /// A step, then the argmax token of each row (on the device; one read-back).
    pub fn greedy(&mut self, ids: Vec<u32>, rows: usize) -> Result<Vec<u32>, ModelError> {
        let next: Tensor<3, Int> = self.step(ids, rows)?.argmax(2); // [b, 1, 1]
        let values = next
            .into_data()
            .try_to_vec_as::<i64>()
            .map_err(|e| ModelError::Input(format!("decode: {e:?}")))?;
        Ok(values.into_iter().map(|v| v as u32).collect())
    }
}

/// One row's logits `[1, 1, v]` as f32 values (for a [`crate::Sampler`]).
pub fn logits_f32(logits: Tensor<3>) -> Result<Vec<f32>, ModelError> {
    logits
        .into_data()
        .try_to_vec_as::<f32>()
        .map_err(|e| ModelError::Input(format!("logits: {e:?}")))
}
