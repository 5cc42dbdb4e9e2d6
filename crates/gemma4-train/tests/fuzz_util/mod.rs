//! Generators the binary-format fuzz targets share: integers a loader must not trust, and raw
//! byte edits (cuts, overwritten and inserted bytes) applied after a structured file is built.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;

/// Integers at the edges: 0, `u64::MAX`, 2^31, 2^40, 2^62, small, anything.
pub fn arbitrary_int() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1 << 31),
        Just(1 << 40),
        Just(1 << 62),
        0u64..64,
        any::<u64>(),
    ]
}

/// One raw edit of a file's bytes.
#[derive(Clone, Debug)]
pub enum Raw {
    /// Overwrite a byte, in the first 512 (`head`: where headers are) or anywhere.
    Set { at: Index, byte: u8, head: bool },
    /// Cut the file here.
    Cut(Index),
    /// Insert bytes here.
    Insert(Index, Vec<u8>),
}

/// Raw edits, applied in order (none in most cases, so most files stay well formed).
#[derive(Clone, Debug)]
pub struct RawEdits(pub Vec<Raw>);

pub fn byte_edits() -> impl Strategy<Value = RawEdits> {
    let raw = prop_oneof![
        3 => (any::<Index>(), any::<u8>(), any::<bool>())
            .prop_map(|(at, byte, head)| Raw::Set { at, byte, head }),
        1 => any::<Index>().prop_map(Raw::Cut),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(at, b)| Raw::Insert(at, b)),
    ];
    prop_oneof![
        4 => Just(RawEdits(Vec::new())),
        1 => prop::collection::vec(raw, 1..4).prop_map(RawEdits),
    ]
}

impl RawEdits {
    pub fn apply(&self, mut b: Vec<u8>) -> Vec<u8> {
        for e in &self.0 {
            match e {
                Raw::Set { .. } | Raw::Cut(_) if b.is_empty() => {}
                Raw::Set { at, byte, head } => {
                    let i = at.index(if *head { b.len().min(512) } else { b.len() });
                    b[i] = *byte;
                }
                Raw::Cut(at) => b.truncate(at.index(b.len())),
                Raw::Insert(at, bytes) => {
                    let i = at.index(b.len() + 1);
                    b.splice(i..i, bytes.iter().copied());
                }
            }
        }
        b
    }
}
