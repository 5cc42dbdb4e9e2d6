//! What an adapter can attach to, from the model or from its config alone: projection paths
//! and shapes, expert parameters, the device. `fuse` resolves adapters from the config only, so
//! a checkpoint larger than memory never has to be loaded.

use burn::tensor::Device;
use gemma4_model::{Gemma4TextConfig, Gemma4TextModel, ProjName, Projection, Site};

/// An expert parameter: `(layer, down, parameter path, in, out, experts)`.
pub type ExpertParam = (usize, bool, String, usize, usize, usize);

/// The adaptable structure of a model.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `model.` or `model.language_model.`
    pub prefix: String,
    pub projections: Vec<Projection>,
    pub experts: Vec<ExpertParam>,
    pub device: Device,
}

impl Layout {
    pub fn from_model(model: &Gemma4TextModel) -> Self {
        Self {
            prefix: model.weight_prefix.to_owned(),
            projections: model.projections(),
            experts: crate::target::expert_params(model),
            device: model.device.clone(),
        }
    }

    /// The same, from the resolved config and the checkpoint's text prefix (no weights).
    pub fn from_config(cfg: &Gemma4TextConfig, prefix: &str, device: &Device) -> Self {
        let e = cfg.hidden_size;
        let mut projections = Vec::new();
        let mut experts = Vec::new();
        for (i, l) in cfg.layers.iter().enumerate() {
            let (qd, kvd, m) = (
                cfg.num_attention_heads * l.head_dim,
                l.num_key_value_heads * l.head_dim,
                l.intermediate_size,
            );
            let mut push = |proj: ProjName, inp: usize, out: usize| {
                projections.push(Projection {
                    site: Site { layer: i, proj },
                    path: format!("{prefix}layers.{i}.{}", proj.hf_path()),
                    in_features: inp,
                    out_features: out,
                });
            };
            push(ProjName::QProj, e, qd);
            if l.kv_donor.is_none() {
                push(ProjName::KProj, e, kvd);
                if !l.k_eq_v {
                    push(ProjName::VProj, e, kvd);
                }
            }
            push(ProjName::OProj, qd, e);
            push(ProjName::GateProj, e, m);
            push(ProjName::UpProj, e, m);
            push(ProjName::DownProj, m, e);
            if cfg.enable_moe_block {
                let p = format!("{prefix}layers.{i}.experts");
                let mi = cfg.moe_intermediate_size;
                experts.push((i, false, format!("{p}.gate_up_proj"), e, 2 * mi, cfg.num_experts));
                experts.push((i, true, format!("{p}.down_proj"), mi, e, cfg.num_experts));
            }
        }
        Self { prefix: prefix.to_owned(), projections, experts, device: device.clone() }
    }
}
