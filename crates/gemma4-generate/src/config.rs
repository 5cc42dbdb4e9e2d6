//! `generation_config.json`: sampling defaults and the EOS list (overriding `config.json`'s, as
//! mlx-lm and transformers do). Gemma 4 -it: `eos_token_id = [1, 106, 50]` (`<eos>`, `<turn|>`,
//! `<|tool_response>`).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::sampler::SamplingConfig;

/// The parts of `generation_config.json` we use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    pub eos_token_ids: Vec<u32>,
    pub sampling: Option<SamplingConfig>,
}

#[derive(Deserialize)]
struct Raw {
    eos_token_id: Option<Value>,
    do_sample: Option<bool>,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
}

impl GenerationConfig {
    /// Read `dir/generation_config.json` if present (a malformed file is an error naming it).
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join("generation_config.json");
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
        let raw: Raw =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let eos_token_ids = match raw.eos_token_id {
            Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => {
                a.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect()
            }
            _ => Vec::new(),
        };
        if let Some(t) = raw.temperature.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(format!(
                "{}: `temperature` {t} must be a finite number >= 0",
                path.display()
            ));
        }
        if let Some(p) = raw.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(format!("{}: `top_p` {p} must be in (0, 1]", path.display()));
        }
        let sampling = (raw.do_sample == Some(true)).then(|| SamplingConfig {
            temperature: raw.temperature.unwrap_or(1.0),
            top_k: raw.top_k.unwrap_or(0),
            top_p: raw.top_p.unwrap_or(1.0),
            seed: 0,
        });
        Ok(Some(Self { eos_token_ids, sampling }))
    }
}
