//! The two vocabulary-sized matrices, `embed_tokens` (`[V, e]`) and the head (`[e, V]`), held on
//! the device as pieces of whole vocabulary rows, each at most the load's piece limit
//! ([`MAX_PIECE_BYTES`](crate::pieces::MAX_PIECE_BYTES) by default; why: see there; the 31B f16
//! embedding is 2.8 GB, E4B's f32 head 2.7 GB).
//!
//! One piece is exactly the single-tensor path; more pieces give the same values: the head's
//! logits are the pieces' products concatenated along the vocabulary, and a lookup gathers each
//! token's row from the piece that holds it.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::error::Result;
use crate::pieces::resplit;

/// `embed_tokens`: token rows, in vocabulary order.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[v_p, e]` each; the first `v_0` token ids are in piece 0, the next `v_1` in piece 1, ….
    pub pieces: Vec<Tensor<2>>,
}

impl Embedding {
    /// The rows of `ids` (all `< V`, checked by the caller).
    ///
    /// # Shapes
    /// - ids: `b·s` → `[b, s, e]`
    pub fn lookup(&self, ids: &[usize], b: usize, s: usize, device: &Device) -> Tensor<3> {
        let e = self.pieces[0].dims()[1];
        let index = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        if self.pieces.len() == 1 {
            let ids = ids.iter().map(|&i| i as i64).collect();
            return self.pieces[0].clone().select(0, index(ids)).reshape([b, s, e]);
        }
        // Gather per piece (rows grouped by piece), then one select back into token order.
        let mut gathered = Vec::new();
        let mut order = vec![0i64; ids.len()]; // token position → row of `gathered`
        let (mut start, mut next) = (0usize, 0i64);
        for piece in &self.pieces {
            let rows = piece.dims()[0];
            let mut local = Vec::new();
            for (pos, &id) in ids.iter().enumerate() {
                if (start..start + rows).contains(&id) {
                    local.push((id - start) as i64);
                    order[pos] = next;
                    next += 1;
                }
            }
            if !local.is_empty() {
                gathered.push(piece.clone().select(0, index(local)));
            }
            start += rows;
        }
        Tensor::cat(gathered, 0).select(0, index(order)).reshape([b, s, e])
    }

    /// Dtype of the rows.
    pub fn dtype(&self) -> DType {
        self.pieces[0].dtype()
    }

    /// The same rows re-split into pieces of `rows` rows (tests exercise the multi-piece path
    /// on small vocabularies with this).
    pub fn split_rows(self, rows: usize) -> Result<Self> {
        Ok(Self { pieces: resplit(self.pieces, 0, rows)? })
    }
}

/// The head `[e, V]`, contiguous: `lm_head.weight`ᵀ, or `embed_tokens`ᵀ when tied.
#[derive(Clone, Debug)]
pub struct Head {
    /// `[e, v_p]` each, in vocabulary order.
    pub pieces: Vec<Tensor<2>>,
}

impl Head {
    /// Logits before the softcap, in the head's dtype.
    ///
    /// # Shapes
    /// - hidden: `[b, s, e]` → `[b, s, V]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        let hidden = hidden.cast(self.pieces[0].dtype());
        let mut parts: Vec<Tensor<3>> = self
            .pieces
            .iter()
            .map(|w| gemma4_kernels::linear(hidden.clone(), w.clone(), None))
            .collect();
        if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(parts, 2) }
    }

    /// The same columns re-split into pieces of `rows` vocabulary entries.
    pub fn split_rows(self, rows: usize) -> Result<Self> {
        Ok(Self { pieces: resplit(self.pieces, 1, rows)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pieces::{MAX_PIECE_BYTES, rows_per_piece};

    #[test]
    fn large_vocabulary_matrices_are_cut_below_the_limit() {
        let v: usize = 262_144;
        // E4B's f32 head (2.68 GB, the operand that was not computed) and the 31B f16 embedding.
        for (e, dtype) in [(2560, DType::F32), (5376, DType::F16), (1536, DType::F16)] {
            let rows = rows_per_piece(MAX_PIECE_BYTES, e, dtype);
            assert!(rows * e * dtype.size() <= MAX_PIECE_BYTES);
            let pieces = v.div_ceil(rows);
            assert_eq!(
                pieces > 1,
                v * e * dtype.size() > MAX_PIECE_BYTES,
                "e={e} {dtype:?}: {pieces} pieces"
            );
        }
        assert_eq!(
            rows_per_piece(MAX_PIECE_BYTES, 1 << 40, DType::F32),
            1,
            "a row wider than the limit is still one row"
        );
    }

    #[test]
    fn lookup_and_head_across_pieces_equal_one_piece() {
        let device = Device::flex();
        let (v, e) = (11, 3);
        let table = Tensor::<2>::from_data(
            TensorData::new((0..v * e).map(|i| i as f32 * 0.5 - 4.0).collect::<Vec<_>>(), [v, e]),
            &device,
        );
        let ids = [10usize, 0, 4, 4, 7, 3];
        let one = Embedding { pieces: vec![table.clone()] };
        let split = one.clone().split_rows(4).unwrap();
        assert_eq!(split.pieces.iter().map(|p| p.dims()[0]).collect::<Vec<_>>(), [4, 4, 3]);
        let a = one.lookup(&ids, 2, 3, &device).into_data().try_to_vec::<f32>().unwrap();
        let b = split.lookup(&ids, 2, 3, &device).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[..3], &[11.0, 11.5, 12.0], "row 10 first");
        let head = Head { pieces: vec![table.transpose()] };
        let hidden = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 0.25, 3.0, 0.5, -1.0], [1, 2, 3]),
            &device,
        );
        let a = head.clone().forward(hidden.clone()).into_data().try_to_vec::<f32>().unwrap();
        let b =
            head.split_rows(5).unwrap().forward(hidden).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), 2 * v);
        assert_eq!(a, b);
        assert!(Embedding { pieces: vec![] }.split_rows(0).is_err());
    }
}
