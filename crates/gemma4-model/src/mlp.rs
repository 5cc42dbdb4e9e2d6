//! GeGLU MLP (HF `Gemma4TextMLP`): `down(gelu_tanh(gate(x)) ⊙ up(x))`. Width `intermediate_size`,
//! doubled on KV-shared layers when `use_double_wide_mlp` (E2B); the config resolves the width.

use burn::tensor::{DType, Tensor};
use gemma4_kernels::fused::{geglu, geglu_scaled};

use crate::config::{Gemma4TextConfig, LayerSpec};
use crate::error::Result;
use crate::linear::{Adapter, Linear, ProjName, Site};
use crate::weights::Weights;

#[derive(Clone, Debug)]
pub struct Mlp {
    pub layer: usize,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn load(
        w: &mut Weights,
        cfg: &Gemma4TextConfig,
        spec: &LayerSpec,
        i: usize,
    ) -> Result<Self> {
        let (e, m) = (cfg.hidden_size, spec.intermediate_size);
        let mut lin = |name: &str, shape: [usize; 2]| -> Result<Linear> {
            Ok(Linear {
                weight: w.get(&format!("layers.{{i}}.mlp.{name}.weight"), Some(i), shape)?,
                bias: None,
            })
        };
        Ok(Self {
            layer: i,
            gate_proj: lin("gate_proj", [m, e])?,
            up_proj: lin("up_proj", [m, e])?,
            down_proj: lin("down_proj", [e, m])?,
        })
    }

    /// # Shapes
    /// - x: `[b, s, e]` → `[b, s, e]`
    pub fn forward(&self, x: Tensor<3>, adapter: &dyn Adapter) -> Tensor<3> {
        let site = |proj| Site { layer: self.layer, proj };
        let gate = self.gate_proj.forward(x.clone(), site(ProjName::GateProj), adapter);
        let up = self.up_proj.forward(x, site(ProjName::UpProj), adapter);
        if gate.dtype() != DType::F16 {
            return self.down_proj.forward(geglu(gate, up), site(ProjName::DownProj), adapter);
        }
        // f16: the product gelu(gate)·up can exceed f16's range. It is formed in f32 and scaled
        // per row by a power of two into range for the f16 down_proj (its LoRA term is linear
        // too), and the scale undone in f32: exact, whatever the activations' size. Output f32
        // (the residual dtype).
        let (act, scale) = geglu_scaled(gate, up);
        let y = self.down_proj.forward(act, site(ProjName::DownProj), adapter);
        y.cast(DType::F32).mul(scale)
    }
}
