//! GGUF reading and dequantisation against llama.cpp's gguf-py (`tests/reference/gguf_blocks.py`):
//! random blocks of every supported ggml type, dequantised here and by gguf-py's numpy reference.

mod common;

use common::*;
use gemma4_model::{GgmlType, GgufHeader, MetaValue, dequantize};

#[test]
fn every_block_type_dequantises_like_gguf_py() {
    let dir = fixtures_dir().join("gguf_blocks");
    let path = dir.join("blocks.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let header = GgufHeader::parse(&bytes, &path).unwrap();
    let want = {
        let b = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&b).unwrap();
        st.tensors()
            .into_iter()
            .map(|(n, v)| {
                (
                    n,
                    v.data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect::<Vec<f32>>(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(header.tensors.len(), 9);
    for t in &header.tensors {
        assert_eq!(t.shape, vec![2, 512], "{}", t.name);
        let ours = dequantize(t.ggml_type.clone().unwrap(), &bytes[t.start..t.end]);
        let theirs = &want[&t.name];
        assert_eq!(ours.len(), theirs.len(), "{}", t.name);
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{} [{i}]: {a} vs gguf-py {b}",
                t.name
            );
        }
    }
    let m = &header.metadata;
    assert_eq!(m["test.u32"], MetaValue::Int(7));
    assert_eq!(m["test.i32"], MetaValue::Int(-5));
    assert_eq!(m["test.f32"], MetaValue::Float(0.5));
    assert_eq!(m["test.bool"], MetaValue::Bool(true));
    assert_eq!(m["test.str"].as_str(), Some("héllo"));
    assert_eq!(
        m["test.arr"],
        MetaValue::Array(vec![MetaValue::Int(1), MetaValue::Int(2), MetaValue::Int(3)])
    );
    assert_eq!(m["general.architecture"].as_str(), Some("gemma3"));
}

#[test]
fn unsupported_types_and_bad_files_are_clear_errors() {
    let path = std::path::Path::new("x.gguf");
    let e = GgufHeader::parse(b"GGML\x03\0\0\0", path).unwrap_err().to_string();
    assert!(e.contains("bad magic"), "{e}");
    let e = GgufHeader::parse(b"GGUF\x03\0\0\0\x01", path).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    assert_eq!(GgmlType::from_id(10), Err("Q2_K".into()));
}
