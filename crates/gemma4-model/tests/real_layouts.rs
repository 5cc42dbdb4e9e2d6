//! The real Gemma 4 checkpoints' layouts (E2B, E4B, 26B-A4B, 31B; names and shapes written by
//! `tests/reference/real_layouts.py` from transformers 5.24 on the meta device, no weights):
//! every config resolves, every tensor name resolves to exactly one row of the weight table or
//! a drop rule, and our parameter count equals the checkpoint's text parameters.

mod common;

use gemma4_model::{Gemma4TextConfig, ParamCounts};
use gemma4_model::{classify, expected_tensors};

#[test]
fn real_checkpoint_layouts_resolve_through_the_weight_table() {
    for name in ["e2b", "e4b", "26b_a4b", "31b"] {
        let path = common::fixtures_dir().join("real_layouts").join(format!("{name}.json"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cfg = Gemma4TextConfig::from_json(&json["config"]).unwrap().config;
        assert!(cfg.multimodal);
        let shared_from = cfg.first_kv_shared_layer();
        let mut text_values = 0usize;
        let mut read = 0usize;
        for (tensor, shape) in json["tensors"].as_object().unwrap() {
            let row =
                classify(tensor, "model.language_model.", shared_from, cfg.tie_word_embeddings)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            if row.is_some() {
                read += 1;
                text_values += shape
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .product::<usize>();
            }
        }
        assert!(read > 0);
        let counts = ParamCounts::from_config(&cfg);
        assert_eq!(counts.total, text_values, "{name}: parameter count from config vs checkpoint");
        assert_eq!(counts.total as u64, json["text_params"].as_u64().unwrap(), "{name}");
        // Names and shapes: what we would read equals what the checkpoint stores for the text model.
        for (tensor, shape) in expected_tensors(&cfg, "model.language_model.") {
            let stored: Vec<usize> = json["tensors"][&tensor]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: checkpoint lacks {tensor}"))
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(stored, shape, "{name}: {tensor}");
        }
    }
}
