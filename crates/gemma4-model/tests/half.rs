//! Reduced precision: f16 weights with the f32 residual stream and the rescaled MLP product
//! stay within a stated tolerance of transformers' f32 goldens, and an MLP whose gate·up product
//! exceeds f16's range (±65504) still gives the f32 answer instead of inf.

mod common;

use burn::tensor::{DType, Tensor, TensorData};
use common::*;
use gemma4_model::Linear;
use gemma4_model::Mlp;
use gemma4_model::{Gemma4TextModel, NoAdapter};

/// f16 keeps ~3 decimal digits: the logits of these tiny models agree to about 1e-3.
const TOL_F16: f64 = 1e-2;

#[test]
fn f16_logits_track_the_f32_goldens() {
    for name in ["dense", "e2b_like", "moe_keqv"] {
        let golden = load_golden(name);
        let (model, _, _) =
            Gemma4TextModel::from_dir(&fixtures_dir().join(name), &device(), DType::F16).unwrap();
        let batch = batch(&golden["input_ids"], None);
        let hidden = model.forward_hidden(&batch, &NoAdapter, false).unwrap().hidden;
        let logits = to_vec(model.logits(hidden));
        let err = rel_l2(&logits, &golden["logits"].values, |_| true);
        assert!(logits.iter().all(|v| v.is_finite()), "{name}: non-finite f16 logits");
        assert!(err < TOL_F16, "{name}: f16 logits relative L2 {err:.3e} vs transformers f32");
    }
}

#[test]
fn f16_mlp_survives_products_beyond_the_f16_range() {
    let (e, m) = (8, 16);
    let mlp = |dtype: DType| {
        let w = |v: f32, shape: [usize; 2]| Linear {
            weight: Tensor::<2>::from_data(
                TensorData::new(vec![v; shape[0] * shape[1]], shape),
                &device(),
            )
            .cast(dtype),
            bias: None,
        };
        Mlp {
            layer: 0,
            gate_proj: w(40.0, [e, m]),
            up_proj: w(40.0, [e, m]),
            down_proj: w(1e-3, [m, e]),
        }
    };
    let x = Tensor::<3>::from_data(
        TensorData::new((0..2 * e).map(|i| 1.0 + 0.01 * i as f32).collect(), [1, 2, e]),
        &device(),
    );
    // gate = up ≈ 320 per unit → gelu(gate)·up ≈ 1.0e5 > 65504.
    let want = to_vec(mlp(DType::F32).forward(x.clone(), &NoAdapter));
    let got = to_vec(mlp(DType::F16).forward(x.cast(DType::F16), &NoAdapter).cast(DType::F32));
    assert!(got.iter().all(|v| v.is_finite()), "f16 MLP overflowed: {got:?}");
    let err = rel_l2(&got, &want, |_| true);
    assert!(err < 1e-2, "f16 MLP relative L2 {err:.3e} vs f32");
}
