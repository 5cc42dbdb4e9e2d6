//! Config resolution: HF defaults, both spellings, donors, unsupported values.

use super::*;
use serde_json::json;

fn tiny() -> Value {
    json!({
        "model_type": "gemma4_text", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "global_head_dim": 16, "sliding_window": 4, "hidden_size_per_layer_input": 0,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                        "sliding_attention", "sliding_attention", "sliding_attention"]
    })
}

#[test]
fn last_layer_is_forced_to_full_attention() {
    let c = Gemma4TextConfig::from_json(&tiny()).unwrap().config;
    assert_eq!(c.layers[5].layer_type, LayerType::Full);
    assert_eq!(c.layers[5].head_dim, 16);
    assert_eq!(c.layers[4].head_dim, 8);
}

#[test]
fn kv_donor_is_last_non_shared_layer_of_same_type() {
    let mut j = tiny();
    j["num_kv_shared_layers"] = json!(3);
    j["use_double_wide_mlp"] = json!(true);
    let c = Gemma4TextConfig::from_json(&j).unwrap().config;
    let donors: Vec<_> = c.layers.iter().map(|l| l.kv_donor).collect();
    assert_eq!(donors, vec![None, None, None, Some(1), Some(1), Some(2)]);
    assert_eq!(c.layers[3].intermediate_size, 64);
    assert_eq!(c.layers[2].intermediate_size, 32);
}

#[test]
fn per_layer_config_spelling_equals_global_keys() {
    let mut a = tiny();
    a["attention_k_eq_v"] = json!(true);
    a["num_global_key_value_heads"] = json!(1);
    let mut b = a.clone();
    let obj = b.as_object_mut().unwrap();
    obj.remove("global_head_dim");
    obj.remove("num_global_key_value_heads");
    obj.insert(
        "per_layer_config".into(),
        json!({
            "2": {"head_dim": 16, "num_key_value_heads": 1},
            "5": {"head_dim": 16, "num_key_value_heads": 1}
        }),
    );
    let ca = Gemma4TextConfig::from_json(&a).unwrap().config;
    let cb = Gemma4TextConfig::from_json(&b).unwrap().config;
    assert_eq!(ca.layers, cb.layers);
    assert_eq!(ca.layers[2].num_key_value_heads, 1);
    assert!(ca.layers[2].k_eq_v && !ca.layers[1].k_eq_v);
}

#[test]
fn multimodal_config_reads_text_config() {
    let j = json!({"model_type": "gemma4", "text_config": tiny(), "vision_config": {}});
    let c = Gemma4TextConfig::from_json(&j).unwrap().config;
    assert!(c.multimodal);
    assert_eq!(c.hidden_size, 16);
}

#[test]
fn unsupported_values_name_their_key() {
    let mut j = tiny();
    j["hidden_activation"] = json!("silu");
    let e = Gemma4TextConfig::from_json(&j).unwrap_err().to_string();
    assert!(e.contains("hidden_activation") && e.contains("silu"), "{e}");
    let mut j = tiny();
    j["rope_parameters"] =
        json!({"sliding_attention": {"rope_theta": 1.0}, "full_attention": {"rope_type": "yarn"}});
    let e = Gemma4TextConfig::from_json(&j).unwrap_err().to_string();
    assert!(e.contains("rope_parameters.full_attention.rope_type") && e.contains("yarn"), "{e}");
    let mut j = tiny();
    j["model_type"] = json!("llama");
    assert!(Gemma4TextConfig::from_json(&j).unwrap_err().to_string().contains("model_type"));
    let mut j = tiny();
    j["use_bidirectional_attention"] = json!("text");
    assert!(
        Gemma4TextConfig::from_json(&j)
            .unwrap_err()
            .to_string()
            .contains("use_bidirectional_attention")
    );
}

#[test]
fn rope_without_type_is_default_rope_as_in_hf() {
    let mut j = tiny();
    j["rope_parameters"] = json!({"sliding_attention": {"rope_theta": 100.0, "partial_rotary_factor": 0.5},
                                  "full_attention": {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25}});
    let c = Gemma4TextConfig::from_json(&j).unwrap().config;
    let s = &c.rope_parameters[&LayerType::Sliding];
    assert_eq!((s.rope_type.as_str(), s.partial_rotary_factor), ("default", 1.0));
}

#[test]
fn multimodal_tie_comes_from_the_top_level_key() {
    let mut text = tiny();
    text["tie_word_embeddings"] = json!(true);
    let j = json!({"model_type": "gemma4", "text_config": text, "tie_word_embeddings": false});
    assert!(!Gemma4TextConfig::from_json(&j).unwrap().config.tie_word_embeddings);
    let j = json!({"model_type": "gemma4", "text_config": tiny()});
    assert!(Gemma4TextConfig::from_json(&j).unwrap().config.tie_word_embeddings);
}

#[test]
fn missing_keys_take_hf_defaults() {
    let c =
        Gemma4TextConfig::from_json(&json!({"model_type": "gemma4_text", "num_hidden_layers": 6}))
            .unwrap()
            .config;
    assert_eq!((c.hidden_size, c.num_key_value_heads, c.sliding_window), (2304, 4, 512));
    assert_eq!(c.final_logit_softcapping, None);
    assert!(!c.use_double_wide_mlp);
    assert_eq!(c.layers[5].layer_type, LayerType::Full);
    assert_eq!(c.layers[0].layer_type, LayerType::Sliding);
    assert_eq!(c.layers[5].head_dim, 512);
    assert_eq!(c.rope_parameters[&LayerType::Full].partial_rotary_factor, 0.25);
}
