//! Attention masks, built on the host as booleans where `true` = masked out.
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

use burn::tensor::{Bool, Device, Tensor, TensorData};

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
    let mut data = Vec::with_capacity(b * spec.queries * spec.keys);
    for r in 0..b {
        let valid = rows.padding.map(|p| &p[r]);
        let segment = rows.segments.map(|s| &s[r]);
        for i in 0..spec.queries {
            let q = spec.offset + i;
            for j in 0..spec.keys {
                let hidden_pad = valid.is_some_and(|v| !v.get(j).copied().unwrap_or(true));
                let other_segment = segment.is_some_and(|s| s.get(i) != s.get(j));
                data.push(spec.masked(q, spec.key_start + j) || hidden_pad || other_segment);
            }
        }
    }
    let shape = [b, 1, spec.queries, spec.keys];
    Tensor::<4, Bool>::from_data(TensorData::new(data, shape), device)
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
        let spec = MaskSpec { offset: 0, queries: 4, key_start: 0, keys: 4, window: Some(2), causal: true };
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
        let spec = MaskSpec { offset: 2, queries: 1, key_start: 0, keys: 3, window: None, causal: true };
        let pad = vec![vec![true, true, true], vec![true, false, true]];
        let m = grid(build_mask(&spec, RowMasks { padding: Some(&pad), segments: None }, &device));
        assert_eq!(m, [false, false, false, false, true, false]);
        let spec = MaskSpec { offset: 0, queries: 2, key_start: 0, keys: 2, window: None, causal: true };
        assert_eq!(grid(build_mask(&spec, RowMasks::default(), &device)), [false, true, false, false]);
    }

    #[test]
    fn packed_segments_do_not_attend_to_each_other() {
        let device = Device::flex();
        let spec = MaskSpec { offset: 0, queries: 3, key_start: 0, keys: 3, window: None, causal: true };
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
        let spec = MaskSpec { offset: 0, queries: 3, key_start: 0, keys: 3, window: Some(1), causal: false };
        #[rustfmt::skip]
        let want = [false, false, true,
                    false, false, false,
                    true, false, false];
        assert_eq!(grid(build_mask(&spec, RowMasks::default(), &device)), want);
    }
}
