//! `SplitStats`: what `gemma4-tune data` prints about a split.

use crate::split::Sample;
use std::fmt::Write;

/// Smallest histogram bucket (tokens); buckets double from here.
const FIRST_BUCKET: usize = 8;
/// Width of the histogram bars.
const BAR: usize = 30;

/// Counts over one split.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitStats {
    /// Samples (non-blank lines).
    pub samples: usize,
    /// Tokens over all samples, after truncation.
    pub tokens: usize,
    /// Trained tokens over all samples.
    pub target_tokens: usize,
    /// Samples cut to `max_seq_len`.
    pub truncated: usize,
    /// Samples with zero trained tokens: kept out of batches, counted here.
    pub no_target: usize,
    /// Longest sample, in tokens (after truncation).
    pub max_len: usize,
    /// `(bucket upper bound, count)`: samples with `previous bound < len ≤ bound`; bounds are
    /// 8, 16, 32, … up to the first that holds the longest sample.
    pub length_histogram: Vec<(usize, usize)>,
}

impl SplitStats {
    /// Computes the statistics of `samples`.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let max_len = samples.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let mut bounds = vec![FIRST_BUCKET];
        while bounds.last().is_some_and(|&b| b < max_len) {
            bounds.push(bounds[bounds.len() - 1] * 2);
        }
        let mut length_histogram: Vec<(usize, usize)> =
            bounds.into_iter().map(|b| (b, 0)).collect();
        for s in samples {
            if let Some(bucket) = length_histogram.iter_mut().find(|(b, _)| s.ids.len() <= *b) {
                bucket.1 += 1;
            }
        }
        Self {
            samples: samples.len(),
            tokens: samples.iter().map(|s| s.ids.len()).sum(),
            target_tokens: samples.iter().map(Sample::target_tokens).sum(),
            truncated: samples.iter().filter(|s| s.truncated).count(),
            no_target: samples.iter().filter(|s| s.target_tokens() == 0).count(),
            max_len,
            length_histogram,
        }
    }
}

/// A human-readable block: counts, trained vs masked share, and the length histogram.
pub fn format_stats(stats: &SplitStats) -> String {
    let pct =
        |n: usize| if stats.tokens == 0 { 0.0 } else { 100.0 * n as f64 / stats.tokens as f64 };
    let mean = if stats.samples == 0 { 0.0 } else { stats.tokens as f64 / stats.samples as f64 };
    let mut out = String::new();
    let _ = writeln!(out, "samples    {:>9}", stats.samples);
    let _ = writeln!(out, "truncated  {:>9}   (longer than max_seq_len, cut)", stats.truncated);
    let _ = writeln!(
        out,
        "no target  {:>9}   (nothing to train: left out of batches)",
        stats.no_target
    );
    let _ = writeln!(
        out,
        "tokens     {:>9}   (mean {mean:.1}, max {} per sample)",
        stats.tokens, stats.max_len
    );
    let _ = writeln!(
        out,
        "trained    {:>9}   ({:.1}% trained, {:.1}% masked)",
        stats.target_tokens,
        pct(stats.target_tokens),
        pct(stats.tokens - stats.target_tokens)
    );
    let _ = writeln!(out, "length histogram (tokens per sample):");
    let most = stats.length_histogram.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let mut lower = 0;
    for &(bound, count) in &stats.length_histogram {
        let bar = "#".repeat((count * BAR).div_ceil(most));
        let _ = writeln!(out, "  {:>6}-{:<6} {:>7}  {bar}", lower + 1, bound, count);
        lower = bound;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, trained: usize, truncated: bool) -> Sample {
        let target = (0..len).map(|t| t > 0 && t <= trained).collect();
        Sample { ids: vec![7; len], target, truncated, line: 1 }
    }

    #[test]
    fn counts_and_histogram_cover_every_sample() {
        let s = SplitStats::from_samples(&[
            sample(5, 4, false),
            sample(20, 0, false),
            sample(33, 10, true),
        ]);
        assert_eq!(
            (s.samples, s.tokens, s.target_tokens, s.truncated, s.no_target, s.max_len),
            (3, 58, 14, 1, 1, 33)
        );
        assert_eq!(s.length_histogram, [(8, 1), (16, 0), (32, 1), (64, 1)]);
    }

    #[test]
    fn formatted_stats_show_the_masked_share_and_buckets() {
        let text = format_stats(&SplitStats::from_samples(&[sample(10, 5, false)]));
        assert!(text.contains("50.0% trained, 50.0% masked"), "{text}");
        assert!(text.contains("9-16"), "{text}");
    }
}
