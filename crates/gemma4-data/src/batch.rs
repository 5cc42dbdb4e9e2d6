//! `Batcher`: samples → padded, length-grouped (optionally packed) batches, shuffled per epoch.
//!
//! **Grouping.** Each epoch the samples are shuffled, then stably sorted by length and cut into
//! batches of `batch_size` consecutive samples, so a batch holds similar lengths and little
//! padding while ties are broken differently every epoch; then the batch order is shuffled.
//! Rows are padded on the right to the batch's longest row (`attention_mask` false). The last
//! batch of an epoch may hold fewer rows (`Batch::batch` says how many).
//!
//! **Packing.** Shuffled samples are laid end to end, greedily, into rows of at most
//! `max_seq_len` tokens; rows are then grouped and padded as above. `segments[t]` numbers the
//! sample a token belongs to within its row (0, 1, …; padding gets `u32::MAX`, so padding only
//! "sees" padding and no attention row is empty) — attend only where segments are equal (and
//! causal); `positions[t]` restarts at 0 for each sample (padding: 0). The first token of each
//! sample is never a target, so no loss crosses a sample boundary.
//!
//! **Determinism.** All randomness is a ChaCha8 stream seeded by `seed`, stream number `epoch`:
//! the same (seed, epoch) gives the same batches on every machine. Samples with no target
//! tokens are dropped at construction, so no batch has zero target tokens.

use crate::config::check_max_seq_len;
use crate::error::DataError;
use crate::split::Split;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One batch, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Token ids `[batch * seq]`, right-padded with the pad id.
    pub ids: Vec<u32>,
    /// `target[b * seq + t]`: token t of row b is trained (predicted from the tokens before it).
    pub target: Vec<bool>,
    /// Rows.
    pub batch: usize,
    /// Columns (the longest row of this batch).
    pub seq: usize,
    /// False on right padding.
    pub attention_mask: Vec<bool>,
    /// Packing only: sample index of each token within its row; padding `u32::MAX`.
    pub segments: Option<Vec<u32>>,
    /// Packing only: RoPE position of each token, restarting at 0 per sample; padding 0.
    pub positions: Option<Vec<u32>>,
    /// Number of `true`s in `target` (> 0 always).
    pub target_tokens: usize,
    /// JSONL line numbers of the samples in this batch (for error messages).
    pub lines: Vec<usize>,
}

/// Makes batches of one split, epoch after epoch.
#[derive(Debug, Clone)]
pub struct Batcher {
    samples: Vec<(Vec<u32>, Vec<bool>, usize)>,
    batch_size: usize,
    packing: bool,
    max_seq_len: usize,
    pad_id: u32,
}

impl Batcher {
    /// Takes the split's samples that have target tokens (cut to `max_seq_len`); pad id 0
    /// (Gemma's `<pad>`; see [`Batcher::with_pad_id`]).
    pub fn new(
        split: &Split,
        batch_size: usize,
        packing: bool,
        max_seq_len: usize,
    ) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::Config {
                field: "batch_size".into(),
                message: "must be at least 1".into(),
            });
        }
        check_max_seq_len(max_seq_len)?;
        let samples = split
            .samples
            .iter()
            .map(|s| {
                let n = s.ids.len().min(max_seq_len);
                (s.ids[..n].to_vec(), s.target[..n].to_vec(), s.line)
            })
            .filter(|(_, target, _)| target.iter().any(|&t| t))
            .collect();
        Ok(Self { samples, batch_size, packing, max_seq_len, pad_id: 0 })
    }

    /// Uses `pad_id` for padding (it never reaches the loss; attention ignores it).
    pub fn with_pad_id(mut self, pad_id: u32) -> Self {
        self.pad_id = pad_id;
        self
    }

    /// Samples that will be batched (those with at least one target token).
    pub fn num_samples(&self) -> usize {
        self.samples.len()
    }

    /// All batches of one epoch, in training order.
    pub fn epoch(&self, epoch: u64, seed: u64) -> Vec<Batch> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        order.shuffle(&mut rng);
        let mut rows: Vec<Vec<usize>> = if self.packing {
            self.pack(&order)
        } else {
            order.into_iter().map(|i| vec![i]).collect()
        };
        rows.sort_by_key(|row| self.row_len(row));
        let mut batches: Vec<Batch> =
            rows.chunks(self.batch_size).map(|rows| self.build(rows)).collect();
        batches.shuffle(&mut rng);
        batches
    }

    /// Greedy packing in the given order: a sample starts a new row when it does not fit.
    fn pack(&self, order: &[usize]) -> Vec<Vec<usize>> {
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut used = 0;
        for &i in order {
            let len = self.samples[i].0.len();
            match rows.last_mut() {
                Some(row) if used + len <= self.max_seq_len => {
                    row.push(i);
                    used += len;
                }
                _ => {
                    rows.push(vec![i]);
                    used = len;
                }
            }
        }
        rows
    }

    fn row_len(&self, row: &[usize]) -> usize {
        row.iter().map(|&i| self.samples[i].0.len()).sum()
    }

    fn build(&self, rows: &[Vec<usize>]) -> Batch {
        let seq = rows.iter().map(|r| self.row_len(r)).max().unwrap_or(0);
        let n = rows.len() * seq;
        let mut ids = vec![self.pad_id; n];
        let mut target = vec![false; n];
        let mut attention_mask = vec![false; n];
        let mut segments = vec![u32::MAX; n];
        let mut positions = vec![0u32; n];
        for (b, row) in rows.iter().enumerate() {
            let mut t = b * seq;
            for (seg, &i) in row.iter().enumerate() {
                let (sample_ids, sample_target, _) = &self.samples[i];
                for (p, (&id, &tgt)) in sample_ids.iter().zip(sample_target).enumerate() {
                    ids[t] = id;
                    target[t] = tgt;
                    attention_mask[t] = true;
                    segments[t] = seg as u32;
                    positions[t] = p as u32;
                    t += 1;
                }
            }
        }
        let target_tokens = target.iter().filter(|&&t| t).count();
        let (segments, positions) =
            if self.packing { (Some(segments), Some(positions)) } else { (None, None) };
        let lines = rows.iter().flatten().map(|&i| self.samples[i].2).collect();
        Batch {
            ids,
            target,
            batch: rows.len(),
            seq,
            attention_mask,
            segments,
            positions,
            target_tokens,
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::Sample;
    use crate::stats::SplitStats;
    use std::path::PathBuf;

    /// Sample `i` has length `lens[i]`, ids all `i + 10`, targets on all but the first token.
    fn split(lens: &[usize]) -> Split {
        let samples: Vec<Sample> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| Sample {
                ids: vec![i as u32 + 10; n],
                target: (0..n).map(|t| t > 0).collect(),
                truncated: false,
                line: i + 1,
            })
            .collect();
        let stats = SplitStats::from_samples(&samples);
        Split { path: PathBuf::from("x"), samples, stats }
    }

    #[test]
    fn batches_group_similar_lengths_and_pad_right() {
        let b = Batcher::new(&split(&[3, 9, 4, 8]), 2, false, 16).unwrap();
        let batches = b.epoch(0, 1);
        let mut seqs: Vec<usize> = batches.iter().map(|b| b.seq).collect();
        seqs.sort();
        assert_eq!(seqs, [4, 9]);
        let short = batches.iter().find(|b| b.seq == 4).unwrap();
        assert_eq!(short.batch, 2);
        let pads = short.attention_mask.iter().filter(|&&m| !m).count();
        assert_eq!(pads, 1, "3 and 4 tokens padded to 4");
        assert!(short.ids.iter().zip(&short.attention_mask).all(|(&id, &m)| m || id == 0));
        assert_eq!(short.target_tokens, 2 + 3);
    }

    #[test]
    fn the_same_seed_and_epoch_give_the_same_batches_and_epochs_differ() {
        let s = split(&[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        let b = Batcher::new(&s, 1, false, 64).unwrap();
        assert_eq!(b.epoch(3, 42), b.epoch(3, 42));
        assert_ne!(b.epoch(0, 42), b.epoch(1, 42));
        assert_ne!(b.epoch(0, 42), b.epoch(0, 43));
    }

    #[test]
    fn samples_without_targets_never_reach_a_batch() {
        let mut s = split(&[4, 5]);
        s.samples[0].target = vec![false; 4];
        let b = Batcher::new(&s, 8, false, 64).unwrap();
        assert_eq!(b.num_samples(), 1);
        let batches = b.epoch(0, 0);
        assert_eq!(batches.len(), 1);
        assert!(batches.iter().all(|b| b.target_tokens > 0));
    }

    #[test]
    fn packing_fills_rows_without_crossing_samples() {
        let s = split(&[3, 4, 5, 2]);
        let b = Batcher::new(&s, 8, true, 8).unwrap();
        let batches = b.epoch(0, 7);
        let total: usize =
            batches.iter().map(|b| b.attention_mask.iter().filter(|&&m| m).count()).sum();
        assert_eq!(total, 14, "every token of every sample lands once");
        for batch in &batches {
            assert!(batch.seq <= 8);
            let (segs, pos) = (batch.segments.as_ref().unwrap(), batch.positions.as_ref().unwrap());
            for t in 0..batch.ids.len() {
                let starts_segment = batch.attention_mask[t] && pos[t] == 0;
                assert!(
                    !(starts_segment && batch.target[t]),
                    "the first token of a sample is never a target"
                );
                if !batch.attention_mask[t] {
                    assert_eq!(segs[t], u32::MAX);
                } else if pos[t] > 0 {
                    assert_eq!(segs[t], segs[t - 1]);
                    assert_eq!(batch.ids[t], batch.ids[t - 1], "one sample per segment");
                }
            }
        }
    }

    #[test]
    fn zero_batch_size_is_a_named_error() {
        let e = Batcher::new(&split(&[3]), 0, false, 8).unwrap_err();
        assert_eq!(e.to_string(), "invalid setting `batch_size`: must be at least 1");
    }
}
