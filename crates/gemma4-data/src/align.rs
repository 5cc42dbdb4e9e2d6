//! Locating a span of one rendering inside another rendering of the same conversation.
//!
//! A template may render history differently from a conversation cut short (Gemma 4 drops the
//! reasoning of tool-call turns once a later user turn exists), so the output of message `k`
//! measured in `render(messages[..=k])` is not always at the same bytes of the full rendering.
//! We align the two texts with a patience diff over *pieces* — `<…>` tags, newlines, blanks and
//! words — and carry the span across the equal runs. Patience anchors on pieces that occur once
//! in both texts (words of the answer), where a byte-level Myers diff happily matches the `e`
//! of `user` with the `e` of `model` and lands the span in the wrong turn.

use std::ops::Range;

/// How far back a position may be moved to the start of a partly matched tag.
const MAX_TAG_LEN: usize = 32;

/// Where `span` of `part` lies in `full`, or `None` if none of it survives in `full`.
pub(crate) fn locate(part: &str, span: Range<usize>, full: &str) -> Option<Range<usize>> {
    if span.is_empty() {
        return None;
    }
    if full.starts_with(part) {
        return Some(span);
    }
    let (a, b) = (pieces(part), pieces(full));
    let a_text: Vec<&str> = a.iter().map(|p| &part[p.clone()]).collect();
    let b_text: Vec<&str> = b.iter().map(|p| &full[p.clone()]).collect();
    let (mut lo, mut hi) = (usize::MAX, 0);
    for op in similar::capture_diff_slices(similar::Algorithm::Patience, &a_text, &b_text) {
        let similar::DiffOp::Equal { old_index, new_index, len } = op else { continue };
        // Equal pieces are identical strings, so the run is one equal byte run.
        let (old_start, new_start) = (a[old_index].start, b[new_index].start);
        let old_end = a[old_index + len - 1].end;
        let (s, e) = (old_start.max(span.start), old_end.min(span.end));
        if s < e {
            lo = lo.min(new_start + (s - old_start));
            hi = hi.max(new_start + (e - old_start));
        }
    }
    if lo >= hi {
        return None;
    }
    let lo = snap_before_open_tag(full, floor_char_boundary(full, lo));
    let hi = floor_char_boundary(full, hi);
    (lo < hi).then_some(lo..hi)
}

/// Splits text into `<…>` tags, single newlines, runs of other whitespace, and words.
fn pieces(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        i += 1;
        if c == b'<' {
            // A tag if it closes soon without opening another; else just a `<`.
            let close = bytes[i..].iter().take(MAX_TAG_LEN).position(|&x| x == b'>' || x == b'<');
            if let Some(n) = close.filter(|&n| bytes[i + n] == b'>') {
                i += n + 1;
            }
        } else if c != b'\n' {
            let same_kind = |x: u8| {
                x != b'<' && x != b'\n' && x.is_ascii_whitespace() == c.is_ascii_whitespace()
            };
            while i < bytes.len() && same_kind(bytes[i]) {
                i += 1;
            }
        }
        out.push(start..i);
    }
    out
}

/// If `pos` is inside an unclosed `<…` (a `<` after the last `>`), move it back to that `<`.
pub(crate) fn snap_before_open_tag(text: &str, pos: usize) -> usize {
    let from = floor_char_boundary(text, pos.saturating_sub(MAX_TAG_LEN));
    let window = &text[from..pos];
    match (window.rfind('<'), window.rfind('>')) {
        (Some(lt), gt) if gt.is_none_or(|gt| gt < lt) => from + lt,
        _ => pos,
    }
}

/// The largest char boundary `≤ i`.
pub(crate) fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(s: &'a str, r: &[Range<usize>]) -> Vec<&'a str> {
        r.iter().map(|p| &s[p.clone()]).collect()
    }

    #[test]
    fn pieces_are_tags_newlines_blanks_and_words() {
        let s = "<|turn>model\nHi  there<turn|>a<b";
        assert_eq!(
            texts(s, &pieces(s)),
            ["<|turn>", "model", "\n", "Hi", "  ", "there", "<turn|>", "a", "<", "b"]
        );
    }

    #[test]
    fn a_span_whose_history_renders_differently_is_found_in_the_right_turn() {
        let part = "<bos><|turn>model\n<|channel>thought\nR<channel|><|tool_call>call:f{}<tool_call|><turn|>";
        let full = "<bos><|turn>model\n<|tool_call>call:f{}<tool_call|><turn|>\n<|turn>user\nmore<turn|>\n";
        let start = part.find("<|channel>").unwrap();
        assert_eq!(
            &full[locate(part, start..part.len(), full).unwrap()],
            "<|tool_call>call:f{}<tool_call|><turn|>"
        );
    }

    #[test]
    fn words_anchor_the_alignment_where_a_byte_diff_would_not() {
        let part = "<bos><|turn>user\n…<turn|>\n<|turn>model\nWelcome<turn|>\n";
        let full = "<bos><|turn>model\nWelcome<turn|>\n<|turn>user\nHi<turn|>\n";
        let start = part.find("Welcome").unwrap();
        let span = locate(part, start..start + "Welcome<turn|>".len(), full).unwrap();
        assert_eq!(&full[span], "Welcome<turn|>");
    }

    #[test]
    fn a_partly_shared_tag_is_not_split() {
        assert_eq!(snap_before_open_tag("x<|tu", 5), 1);
        assert_eq!(snap_before_open_tag("<a>b", 4), 4);
    }
}
