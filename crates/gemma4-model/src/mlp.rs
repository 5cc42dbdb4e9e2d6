//! GeGLU MLP (HF `Gemma4TextMLP`): `down(gelu_tanh(gate(x)) ⊙ up(x))`. Width `intermediate_size`,
//! doubled on KV-shared layers when `use_double_wide_mlp` (E2B); the config resolves the width.

use burn::tensor::{DType, Tensor};
use gemma4_kernels::fused::geglu;

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
        // f16: the product gelu(gate)·up can exceed f16's range. Form it in f32 and scale it by a
        // power of two into range for the f16 down_proj (its LoRA term is linear too), then undo
        // the scale in f32: exact, whatever the activations' size. Output f32 (the residual dtype).
        let act = geglu(gate.cast(DType::F32), up.cast(DType::F32));
        let scale = f16_scale(&act);
        let y = self.down_proj.forward(
            act.div(scale.clone()).cast(DType::F16),
            site(ProjName::DownProj),
            adapter,
        );
        y.cast(DType::F32).mul(scale)
    }
}

/// Per row (token), a power of two `s ≥ 1` with `max|x_row| / s ≤ 2¹⁴`, as a broadcastable
/// `[b, s, 1]` tensor (off the tape: each row of `down(x/s)·s` equals `down(x)`'s, for any `s`,
/// since a projection maps rows independently; so no gradient flows through it). Per row, not one
/// scale for the whole tensor: a row reduction is one parallel pass, where a global maximum over
/// `[b·s, intermediate]` was the slowest kernel of a training step on the GPU (11 ms per layer).
fn f16_scale(x: &Tensor<3>) -> Tensor<3> {
    let amax = x.clone().detach().abs().max_dim(2);
    let ln2 = std::f64::consts::LN_2;
    amax.div_scalar(16384.0)
        .log()
        .div_scalar(ln2)
        .ceil()
        .clamp_min(0.0)
        .mul_scalar(ln2)
        .exp()
        .round()
}
