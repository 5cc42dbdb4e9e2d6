//! Which projections get an adapter, following PEFT's matching rules
//! (`peft.tuners.tuners_utils.check_target_module_exists`):
//! - `target_modules` as a list: the module path equals an entry or ends with `.` + entry;
//! - `target_modules` as a string: a regex that must match the WHOLE module path;
//! - `layers_to_transform`: only layers with those indices (the number after `layers.`).
//!
//! Module paths are HF's (`model.layers.3.self_attn.q_proj`, or `model.language_model.layers…`
//! for multimodal checkpoints). KV-shared layers own no k/v projections and k_eq_v layers no
//! v_proj, so they can never be targets.

use std::collections::BTreeMap;

use gemma4_model::{Gemma4TextModel, Projection};
use regex::Regex;

use crate::adapter::{LoraAdapter, LoraModule, ModuleSite, init_rng};
use crate::config::{LayerSelection, LoraConfig, TargetModules};
use crate::error::{LoraError, Result};

/// The projections `cfg` selects in `model`.
pub fn select(model: &Gemma4TextModel, cfg: &LoraConfig) -> Result<Vec<Projection>> {
    select_from(model.projections(), model.config.num_hidden_layers, cfg)
}

/// The projections `cfg` selects among `projections` of a model of `n` layers (also used
/// without a loaded model: the memory plan lists them from the config).
pub fn select_from(
    projections: Vec<Projection>,
    n: usize,
    cfg: &LoraConfig,
) -> Result<Vec<Projection>> {
    let matcher = Matcher::new(cfg)?;
    let out_of_range = match &cfg.layers_to_transform {
        Some(LayerSelection::One(i)) => Some(*i).filter(|&i| i >= n),
        Some(LayerSelection::Many(v)) => v.iter().copied().find(|&i| i >= n),
        None => None,
    };
    if let Some(i) = out_of_range {
        return Err(LoraError::Target(format!(
            "`layers_to_transform`: layer {i} does not exist (the model has {n} layers: 0..={})",
            n.saturating_sub(1)
        )));
    }
    Ok(projections
        .into_iter()
        .filter(|p| {
            matcher.matches(&p.path)
                && cfg.layers_to_transform.as_ref().is_none_or(|l| l.contains(p.site.layer))
        })
        .collect())
}

enum Matcher {
    None,
    Names(Vec<String>),
    Regex(Regex),
}

impl Matcher {
    fn new(cfg: &LoraConfig) -> Result<Self> {
        Ok(match &cfg.target_modules {
            None => Self::None,
            Some(TargetModules::List(names)) => Self::Names(names.clone()),
            Some(TargetModules::Regex(r)) if r == "all-linear" => {
                return Err(LoraError::Target(
                    "`all-linear` is not supported: list the modules (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)".into(),
                ));
            }
            Some(TargetModules::Regex(r)) => Self::Regex(
                Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| LoraError::Target(format!("target_modules regex {r:?}: {e}")))?,
            ),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::None => false,
            Self::Names(names) => {
                names.iter().any(|n| path == n || path.ends_with(&format!(".{n}")))
            }
            Self::Regex(re) => re.is_match(path),
        }
    }
}

/// PEFT's key prefix for a module path.
pub fn peft_key(path: &str) -> String {
    format!("base_model.model.{path}")
}

/// An expert parameter an adapter may target: `(layer, down, path of the parameter, in, out, experts)`.
pub fn expert_params(model: &Gemma4TextModel) -> Vec<(usize, bool, String, usize, usize, usize)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        if let Some(moe) = &layer.moe {
            let [e, h, two_m] = moe.experts.gate_up_dims();
            let prefix = format!("{}layers.{i}.experts", model.weight_prefix);
            out.push((i, false, format!("{prefix}.gate_up_proj"), h, two_m, e));
            out.push((i, true, format!("{prefix}.down_proj"), two_m / 2, h, e));
        }
    }
    out
}

/// PEFT module key of an expert parameter: PEFT wraps the `experts` module once per targeted
/// parameter, in the module's parameter order, so the k-th of n targets sits under
/// `.base_layer` repeated (n − 1 − k) times.
pub fn expert_key(experts_path: &str, position: usize, count: usize) -> String {
    let mut key = peft_key(experts_path);
    for _ in position + 1..count {
        key.push_str(".base_layer");
    }
    key
}

/// A fresh adapter for training: PEFT init (A Kaiming-uniform, B zero) from a seeded RNG.
pub fn init_adapter(model: &Gemma4TextModel, cfg: &LoraConfig, seed: u64) -> Result<LoraAdapter> {
    cfg.validate().map_err(|e| LoraError::Target(e.to_string()))?;
    let mut rng = init_rng(seed);
    let device = &model.device;
    let mut modules = BTreeMap::new();
    for p in select(model, cfg)? {
        let m = LoraModule::init(
            peft_key(&p.path),
            p.in_features,
            p.out_features,
            cfg.r,
            1,
            &mut rng,
            device,
        );
        modules.insert(ModuleSite::Proj(p.site), m);
    }
    // Expert parameters (`target_parameters`; PEFT ignores `layers_to_transform` for them).
    let targets = cfg.target_parameters.clone().unwrap_or_default();
    let wanted = |path: &str| targets.iter().any(|t| path == t || path.ends_with(&format!(".{t}")));
    let params = expert_params(model);
    for &(layer, down, ref path, inp, outp, experts) in &params {
        if !wanted(path) {
            continue;
        }
        // PEFT wraps `experts` once per targeted parameter in the module's definition order
        // (gate_up_proj, then down_proj): the first of two sits under `.base_layer`.
        let both = params.iter().filter(|p| p.0 == layer && wanted(&p.2)).count();
        let position = if down { both - 1 } else { 0 };
        let experts_path = path.rsplit_once('.').map_or(path.as_str(), |(a, _)| a);
        let m = LoraModule::init(
            expert_key(experts_path, position, both),
            inp,
            outp,
            cfg.r,
            experts,
            &mut rng,
            device,
        );
        modules.insert(ModuleSite::Experts { layer, down }, m);
    }
    if modules.is_empty() {
        return Err(LoraError::Target("the targets select no module of this model".into()));
    }
    Ok(LoraAdapter { config: cfg.clone(), modules, training: false })
}
