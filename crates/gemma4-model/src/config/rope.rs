//! `rope_parameters` resolved per layer type: HF's `default_rope_params` when absent, else each
//! `sliding_attention` / `full_attention` entry checked (type, keys, bounds) with HF's defaults
//! and the overrides transformers applies to `default` and `linear` RoPE.

use super::resolve::is_positive;
use super::*;

/// The RoPE of each layer type, from `rope_parameters` (`rope_types`: the types the caller's
/// model family supports).
pub(crate) fn resolve_rope(
    params: Option<BTreeMap<String, Value>>,
    layer_types: &[LayerType],
    rope_types: &[&str],
) -> Result<BTreeMap<LayerType, RopeConfig>> {
    let Some(params) = params else {
        return Ok(default_rope());
    };
    let mut out = BTreeMap::new();
    for lt in [LayerType::Sliding, LayerType::Full] {
        let key = format!("rope_parameters.{}", lt.hf_name());
        let Some(v) = params.get(lt.hf_name()) else {
            if layer_types.contains(&lt) {
                return Err(ModelError::invalid(key, "missing, but layers of this type exist"));
            }
            continue;
        };
        let obj = v.as_object().ok_or_else(|| ModelError::invalid(&key, "expected an object"))?;
        out.insert(lt, rope_entry(key, obj, rope_types)?);
    }
    Ok(out)
}

/// HF `default_rope_params`: default RoPE on sliding layers, proportional on full ones.
fn default_rope() -> BTreeMap<LayerType, RopeConfig> {
    let mut out = BTreeMap::new();
    out.insert(
        LayerType::Sliding,
        RopeConfig {
            rope_type: "default".into(),
            rope_theta: 10_000.0,
            partial_rotary_factor: 1.0,
            factor: 1.0,
        },
    );
    out.insert(
        LayerType::Full,
        RopeConfig {
            rope_type: "proportional".into(),
            rope_theta: 1_000_000.0,
            partial_rotary_factor: 0.25,
            factor: 1.0,
        },
    );
    out
}

/// One `rope_parameters[layer_type]` object (`key` names it in errors).
fn rope_entry(
    key: String,
    obj: &serde_json::Map<String, Value>,
    rope_types: &[&str],
) -> Result<RopeConfig> {
    // transformers 5.24 standardises a dict without `rope_type` to "default" (full-width RoPE,
    // `partial_rotary_factor` ignored) — see docs/reference-findings.md.
    let rope_type = match obj.get("rope_type") {
        None | Some(Value::Null) => "default",
        Some(v) => v
            .as_str()
            .ok_or_else(|| ModelError::invalid(format!("{key}.rope_type"), "expected a string"))?,
    };
    if !rope_types.contains(&rope_type) {
        return Err(ModelError::unsupported(format!("{key}.rope_type"), format!("{rope_type:?}")));
    }
    let num = |name: &str, default: f64| -> Result<f64> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .ok_or_else(|| ModelError::invalid(format!("{key}.{name}"), "expected a number")),
        }
    };
    for k in obj.keys() {
        // `original_max_position_embeddings` does not enter either RoPE type's frequencies.
        if !matches!(
            k.as_str(),
            "rope_type"
                | "rope_theta"
                | "partial_rotary_factor"
                | "factor"
                | "original_max_position_embeddings"
        ) {
            return Err(ModelError::unsupported(format!("{key}.{k}"), &obj[k]));
        }
    }
    let mut cfg = RopeConfig {
        rope_type: rope_type.into(),
        rope_theta: num("rope_theta", 10_000.0)?,
        partial_rotary_factor: num("partial_rotary_factor", 1.0)?,
        factor: num("factor", 1.0)?,
    };
    // HF's `default` RoPE (`compute_default_rope_parameters`) ignores both.
    if rope_type == "default" {
        cfg.partial_rotary_factor = 1.0;
        cfg.factor = 1.0;
    }
    if rope_type == "linear" {
        cfg.partial_rotary_factor = 1.0; // Gemma 3 `linear`: full width, every frequency / factor
    }
    if !is_positive(cfg.factor)
        || !(0.0..=1.0).contains(&cfg.partial_rotary_factor)
        || !is_positive(cfg.rope_theta)
    {
        return Err(ModelError::invalid(
            key,
            "rope_theta/factor must be > 0, partial_rotary_factor in [0, 1]",
        ));
    }
    Ok(cfg)
}
