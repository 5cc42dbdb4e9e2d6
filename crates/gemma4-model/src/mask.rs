//! Attention masks: booleans where `true` = masked out, built on the device from positions.
//!
//! - full attention: causal, query at absolute position `q` sees keys `k ≤ q`;
//! - sliding attention: causal band `0 ≤ q − k < window` (HF `sliding_window_overlay`);
//! - right padding: keys whose `attention_mask` entry is 0 are hidden from every query;
//! - bidirectional (`use_bidirectional_attention: "all"`): no causal part; a sliding window
//!   keeps keys with `|q − k| ≤ window` (HF `sliding_window_bidirectional_overlay`).
//!
//! Queries are positions `offset .. offset + s` (offset = tokens already in the cache), keys are
//! positions `0 .. offset + s`... or the window of them a rotating cache still holds, given by
//! `key_start`.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Which keys each query may see.
#[derive(Clone, Copy, Debug)]
pub struct MaskSpec {
    /// Absolute position of the first query.
    pub offset: usize,
    /// Number of queries.
    pub queries: usize,
    /// Absolute position of the first key.
    pub key_start: usize,
    /// Number of keys.
    pub keys: usize,
    /// `Some(w)`: sliding window of `w` tokens (including the query itself).
    pub window: Option<usize>,
    /// `false` under bidirectional attention.
    pub causal: bool,
}

impl MaskSpec {
    /// Is key `k` (absolute) hidden from query `q` (absolute)?
    pub fn masked(&self, q: usize, k: usize) -> bool {
        if self.causal {
            k > q || self.window.is_some_and(|w| q - k >= w)
        } else {
            self.window.is_some_and(|w| q.abs_diff(k) > w)
        }
    }
}

/// Per-row key restrictions beyond the causal/window rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowMasks<'a> {
    /// `[b][keys]` key validity (`false` = right padding).
    pub padding: Option<&'a [Vec<bool>]>,
    /// `[b][tokens]` packed-sample index: a query sees only keys of its own segment.
    /// Only used without a cache (queries and keys are the same tokens).
    pub segments: Option<&'a [Vec<u32>]>,
}

/// Build the boolean mask.
///
/// # Shapes
/// - returns `[b, 1, queries, keys]` (`b` = 1 without row masks), `true` = masked
pub fn build_mask(spec: &MaskSpec, rows: RowMasks, device: &Device) -> Tensor<4, Bool> {
    let b = rows.padding.map(|p| p.len()).or(rows.segments.map(|s| s.len())).unwrap_or(1);
    let (nq, nk) = (spec.queries, spec.keys);
    let shape = [b, 1, nq, nk];
    // The position rule from two index vectors, on the device: no `[b, q, k]` loop or upload
    // (a training batch of 4 × 2048 is 16.8 M entries per layer type).
    let q = Tensor::<1, Int>::arange(spec.offset as i64..(spec.offset + nq) as i64, device)
        .reshape([1, 1, nq, 1])
        .expand(shape);
    let k = Tensor::<1, Int>::arange(spec.key_start as i64..(spec.key_start + nk) as i64, device)
        .reshape([1, 1, 1, nk])
        .expand(shape);
    let mut mask = match (spec.causal, spec.window) {
        (true, None) => k.greater(q),
        (true, Some(w)) => {
            k.clone().greater(q.clone()).bool_or((q - k).greater_equal_elem(w as i64))
        }
        (false, Some(w)) => (q - k).abs().greater_elem(w as i64),
        (false, None) => Tensor::<4, Bool>::zeros(shape, device),
    };
    if let Some(pad) = rows.padding {
        let hidden: Vec<bool> =
            pad.iter().flat_map(|v| (0..nk).map(|j| !v.get(j).copied().unwrap_or(true))).collect();
        mask = mask.bool_or(
            Tensor::<4, Bool>::from_data(TensorData::new(hidden, [b, 1, 1, nk]), device)
                .expand(shape),
        );
    }
    if let Some(seg) = rows.segments {
        // A missing index reads as -1 on both sides (as `Option` compares: None = None ≠ Some).
        let ids = |n: usize, dims: [usize; 4]| {
            let v: Vec<i64> = seg
                .iter()
                .flat_map(|s| (0..n).map(|i| s.get(i).map_or(-1, |&x| x as i64)))
                .collect();
            Tensor::<4, Int>::from_data(TensorData::new(v, dims), device).expand(shape)
        };
        mask = mask.bool_or(ids(nq, [b, 1, nq, 1]).not_equal(ids(nk, [b, 1, 1, nk])));
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(m: Tensor<4, Bool>) -> Vec<bool> {
        m.into_data().try_to_vec::<bool>().unwrap()
    }

    #[test]
    fn sliding_window_includes_the_query_itself() {
        let device = Device::flex();
        let spec = MaskSpec {
            offset: 0,
            queries: 4,
            key_start: 0,
            keys: 4,
            window: Some(2),
            causal: true,
        };
        let m = grid(build_mask(&spec, RowMasks::default(), &device));
        #[rustfmt::skip]
        let want = [false, true, true, true,
                    false, false, true, true,
                    true, false, false, true,
                    true, true, false, false];
        assert_eq!(m, want);
    }

    #[test]
    fn causal_mask_with_offset_and_padding() {
        let device = Device::flex();
        let spec =
            MaskSpec { offset: 2, queries: 1, key_start: 0, keys: 3, window: None, causal: true };
        let pad = vec![vec![true, true, true], vec![true, false, true]];
        let m = grid(build_mask(&spec, RowMasks { padding: Some(&pad), segments: None }, &device));
        assert_eq!(m, [false, false, false, false, true, false]);
        let spec =
            MaskSpec { offset: 0, queries: 2, key_start: 0, keys: 2, window: None, causal: true };
        assert_eq!(
            grid(build_mask(&spec, RowMasks::default(), &device)),
            [false, true, false, false]
        );
    }

    #[test]
    fn packed_segments_do_not_attend_to_each_other() {
        let device = Device::flex();
        let spec =
            MaskSpec { offset: 0, queries: 3, key_start: 0, keys: 3, window: None, causal: true };
        let seg = vec![vec![0, 0, 1]];
        let m = grid(build_mask(&spec, RowMasks { padding: None, segments: Some(&seg) }, &device));
        #[rustfmt::skip]
        let want = [false, true, true,
                    false, false, true,
                    true, true, false];
        assert_eq!(m, want);
    }

    #[test]
    fn bidirectional_window_is_symmetric_and_inclusive() {
        let device = Device::flex();
        let spec = MaskSpec {
            offset: 0,
            queries: 3,
            key_start: 0,
            keys: 3,
            window: Some(1),
            causal: false,
        };
        #[rustfmt::skip]
        let want = [false, false, true,
                    false, false, false,
                    true, false, false];
        assert_eq!(grid(build_mask(&spec, RowMasks::default(), &device)), want);
    }
}
