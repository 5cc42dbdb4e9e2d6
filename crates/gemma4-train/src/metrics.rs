//! Feedback: `metrics.jsonl` (one JSON object per report and per evaluation, appended and
//! flushed), the same records as TensorBoard scalars when asked (`tensorboard.rs`), the
//! one-line reports, and the loss-curve plot (SVG) at the end.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Result, TrainError};
use crate::tensorboard::Board;

/// Appends metric records to `metrics.jsonl` (and to a TensorBoard event file when one is open).
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    board: Option<Board>,
    pub train: Vec<(usize, f64)>,
    pub valid: Vec<(usize, f64)>,
}

impl MetricsLog {
    /// Open (append) `dir/metrics.jsonl`. Resuming at step N (`keep_until = Some(N)`), the records
    /// up to N stay; a fresh run (`None`) starts an empty file (records of a run killed before its
    /// first checkpoint would otherwise stay, e.g. a second step-0 validation). `tensorboard`:
    /// also write each record to a new event file in `dir/tensorboard/`.
    pub fn open(dir: &Path, keep_until: Option<usize>, tensorboard: bool) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut train = Vec::new();
        let mut valid = Vec::new();
        let mut kept = String::new();
        if let (Some(keep_until), Ok(text)) = (keep_until, std::fs::read_to_string(&path)) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                let step = v["step"].as_u64().unwrap_or(0) as usize;
                if step > keep_until {
                    continue;
                }
                if let Some(l) = v["loss"].as_f64() {
                    train.push((step, l));
                }
                if let Some(l) = v["val_loss"].as_f64() {
                    valid.push((step, l));
                }
                kept.push_str(line);
                kept.push('\n');
            }
        }
        // Rewrite without records from beyond the resume point (they will be produced again).
        gemma4_store::write_atomic(&path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|source| TrainError::Io { path: path.clone(), source })?;
        let board = if tensorboard { Some(Board::create(dir, keep_until)?) } else { None };
        Ok(Self { path, file, board, train, valid })
    }

    pub fn record(&mut self, v: Value) -> Result<()> {
        if let (Some(s), Some(l)) = (v["step"].as_u64(), v["loss"].as_f64()) {
            self.train.push((s as usize, l));
        }
        if let (Some(s), Some(l)) = (v["step"].as_u64(), v["val_loss"].as_f64()) {
            self.valid.push((s as usize, l));
        }
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(|source| TrainError::Io { path: self.path.clone(), source })?;
        match &mut self.board {
            Some(board) => board.record(&v),
            None => Ok(()),
        }
    }
}

/// A train report as a JSON record.
pub fn train_record(
    step: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens_per_s: f64,
    trained_tokens: usize,
    elapsed_s: f64,
) -> Value {
    json!({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
           "trained_tokens": trained_tokens, "elapsed_s": elapsed_s})
}

/// Write the loss curves (train, valid) as an SVG line plot, on a log axis when they span an
/// order of magnitude or more (a quickstart falls from ~17 to ~0.5: on a linear axis the end of
/// the curve, where runs differ, is a flat line).
pub fn write_plot(path: &Path, train: &[(usize, f64)], valid: &[(usize, f64)]) -> Result<()> {
    let (w, h, pad) = (720.0, 420.0, 56.0);
    let all = train.iter().chain(valid);
    let max_x = all.clone().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (mut lo, mut hi) =
        all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let log = lo > 0.0 && hi / lo >= 10.0;
    let axis = |l: f64| if log { l.log10() } else { l };
    let (a0, mut a1) = (axis(lo), axis(hi));
    if a1 - a0 < 1e-9 {
        a1 = a0 + 1.0;
    }
    let x = |s: f64| pad + s / max_x * (w - 2.0 * pad);
    let y = |l: f64| h - pad - (axis(l) - a0) / (a1 - a0) * (h - 2.0 * pad);
    let line = |pts: &[(usize, f64)], color: &str| {
        let p: Vec<String> =
            pts.iter().map(|&(s, l)| format!("{:.1},{:.1}", x(s as f64), y(l))).collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            p.join(" ")
        )
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    svg += &format!(
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for l in y_ticks(lo, hi, log) {
        svg += &format!("<text x=\"4\" y=\"{:.1}\">{}</text>\n", y(l) + 4.0, tick_label(l));
    }
    for i in 0..=4 {
        let s = max_x * i as f64 / 4.0;
        svg += &format!("<text x=\"{:.1}\" y=\"{}\">{s:.0}</text>\n", x(s) - 8.0, h - pad + 18.0);
    }
    let scale = if log { " (log scale)" } else { "" };
    svg += &format!(
        "<text x=\"{}\" y=\"{}\">step</text>\n<text x=\"{pad}\" y=\"20\">loss{scale} — train (blue), valid (orange)</text>\n",
        w / 2.0,
        h - 12.0
    );
    svg += &line(train, "#1f77b4");
    svg += &line(valid, "#ff7f0e");
    for &(s, l) in valid {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#ff7f0e\"/>\n",
            x(s as f64),
            y(l)
        );
    }
    svg += "</svg>\n";
    gemma4_store::write_atomic(path, svg.as_bytes())?;
    Ok(())
}

/// Values to label on the loss axis: five even steps, or on a log axis 1, 2 and 5 times each
/// power of ten inside `[lo, hi]`.
fn y_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if !log {
        return (0..=4).map(|i| lo + (hi - lo) * i as f64 / 4.0).collect();
    }
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (first..=last)
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// `17.3`, `2`, `0.05`: three significant digits at most, no trailing zeros.
fn tick_label(v: f64) -> String {
    let magnitude = if v == 0.0 { 0 } else { v.abs().log10().floor() as i32 };
    let digits = (2 - magnitude).clamp(0, 6) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the kill test (crates/gemma4-tune/tests/kill_resume.rs): a run killed before its
    /// first checkpoint restarts fresh, and its step-0 validation record appeared twice.
    #[test]
    fn a_fresh_run_starts_an_empty_log_and_a_resumed_one_keeps_records_up_to_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let old = "{\"step\":0,\"val_loss\":3.0}\n{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.0}\n{\"step\":2,\"lo";
        std::fs::write(dir.path().join("metrics.jsonl"), old).unwrap();
        let log = MetricsLog::open(dir.path(), Some(1), false).unwrap();
        assert_eq!((log.train.clone(), log.valid.clone()), (vec![(1, 2.0)], vec![(0, 3.0)]));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap().lines().count(),
            2
        );
        let log = MetricsLog::open(dir.path(), None, false).unwrap();
        assert!(log.train.is_empty() && log.valid.is_empty());
        assert_eq!(std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap(), "");
    }

    #[test]
    fn the_plot_goes_to_a_log_axis_when_the_curves_span_orders_of_magnitude() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.svg");
        let train: Vec<(usize, f64)> =
            (1..=100).map(|s| (s, 17.0 * 0.95f64.powi(s as i32))).collect();
        write_plot(&path, &train, &[(0, 17.3), (50, 1.4), (100, 0.11)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("loss (log scale)"), "{svg}");
        // Ticks at 1, 2, 5 × powers of ten within the span, both curves drawn.
        for tick in [">0.2<", ">1<", ">10<"] {
            assert!(svg.contains(tick), "{tick}: {svg}");
        }
        assert_eq!(svg.matches("<polyline").count(), 2);
        // A narrow span stays linear.
        write_plot(&path, &[(1, 2.0), (2, 1.5)], &[(2, 1.6)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            !svg.contains("log scale") && svg.contains(">2<") && svg.contains(">1.5<"),
            "{svg}"
        );
    }
}
