//! `show_sample`: a sample as the model sees it, trained spans marked `⟦…⟧`.

use crate::split::Sample;
use crate::tokenize::Tokenizer;

/// Opens a trained span in [`show_sample`]'s output.
pub const TRAINED_OPEN: &str = "⟦";
/// Closes a trained span in [`show_sample`]'s output.
pub const TRAINED_CLOSE: &str = "⟧";

/// The decoded sample (special tokens shown) with every run of trained tokens wrapped in
/// `⟦…⟧`, after a one-line header: file line, token count, trained count, truncation.
pub fn show_sample(sample: &Sample, tok: &Tokenizer) -> String {
    let trained = sample.target_tokens();
    let mut out = format!(
        "── line {} · {} tokens · {} trained{} ──\n",
        sample.line,
        sample.ids.len(),
        trained,
        if sample.truncated { " · truncated" } else { "" }
    );
    let mut start = 0;
    while start < sample.ids.len() {
        let on = sample.target.get(start).copied().unwrap_or(false);
        let len = sample.target[start..].iter().take_while(|&&t| t == on).count().max(1);
        let end = (start + len).min(sample.ids.len());
        // Ids come from this tokenizer; should one not decode, show the ids rather than fail.
        let text = tok
            .decode(&sample.ids[start..end])
            .unwrap_or_else(|_| format!("{:?}", &sample.ids[start..end]));
        if on {
            out.push_str(TRAINED_OPEN);
            out.push_str(&text);
            out.push_str(TRAINED_CLOSE);
        } else {
            out.push_str(&text);
        }
        start = end;
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny::tiny_tokenizer;

    #[test]
    fn trained_runs_are_bracketed_and_the_header_counts_them() {
        let tok = tiny_tokenizer();
        let ids = tok.encode("<bos>ab<turn|>", false).unwrap().ids;
        let sample =
            Sample { ids, target: vec![false, false, true, true], truncated: false, line: 9 };
        assert_eq!(
            show_sample(&sample, &tok),
            "── line 9 · 4 tokens · 2 trained ──\n<bos>a⟦b<turn|>⟧\n"
        );
    }
}
