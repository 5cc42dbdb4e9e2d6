//! RMSNorm as Gemma 4 defines it (HF `Gemma4RMSNorm`): `x · (mean(x²) + eps)^-½ · w`, computed in
//! f32 and cast back to the input dtype. The scale is `w` itself (initialised to 1), **not**
//! Gemma 1–3's `1 + w`. `with_scale = false` (the V norm, the router norm) multiplies by nothing.
//! Gemma 3 (HF `Gemma3RMSNorm`, `x̂ · (1 + w.float())`) loads through [`RmsNorm::with_offset`]
//! with the config's `norm_weight_offset` = 1: the f32 sum `1 + w` is formed once at load.

use burn::tensor::{DType, Tensor};

/// A Gemma 4 RMSNorm over the last axis, with or without a learned scale.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// `[d]`, f32; `None` for the scale-free norms (`v_norm`, the router's).
    pub weight: Option<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor<1>, eps: f64) -> Self {
        Self { weight: Some(weight.cast(DType::F32)), eps }
    }

    /// Scale `offset + w` (f32): `norm_weight_offset` of the config (0 Gemma 4, 1 Gemma 3).
    pub fn with_offset(weight: Tensor<1>, eps: f64, offset: f64) -> Self {
        let w = weight.cast(DType::F32);
        Self { weight: Some(if offset == 0.0 { w } else { w.add_scalar(offset as f32) }), eps }
    }

    pub fn without_scale(eps: f64) -> Self {
        Self { weight: None, eps }
    }

    /// One fused kernel each way on a GPU, Burn's plain ops on the CPU
    /// ([`gemma4_kernels::fused::rms_norm`]).
    ///
    /// # Shapes
    /// - x: `[..., d]` → `[..., d]` (same dtype as `x`)
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        gemma4_kernels::fused::rms_norm(x, self.weight.as_ref(), self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn scale_is_w_not_one_plus_w() {
        let device = Device::flex();
        let x =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 4]), &device);
        let w = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, 1.5, 2.0, 0.25], [4]), &device);
        let y: Vec<f32> =
            RmsNorm::new(w, 1e-6).forward(x).into_data().try_to_vec_as::<f32>().unwrap();
        // mean(x²) = 7.5 → x / sqrt(7.5 + 1e-6) · w
        let r = 1.0 / (7.5f64 + 1e-6).sqrt();
        let want = [0.5 * r, 2.0 * 1.5 * r, 3.0 * 2.0 * r, 4.0 * 0.25 * r];
        for (a, b) in y.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn gemma3_offset_scales_by_one_plus_w() {
        let device = Device::flex();
        let x =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 4]), &device);
        let w = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, -1.5, 2.0, 0.0], [4]), &device);
        let y: Vec<f32> = RmsNorm::with_offset(w, 1e-6, 1.0)
            .forward(x)
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        let r = 1.0 / (7.5f64 + 1e-6).sqrt();
        let want = [1.5 * r, 2.0 * -0.5 * r, 3.0 * 3.0 * r, 4.0 * r];
        for (a, b) in y.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn norm_without_scale_has_unit_rms() {
        let device = Device::flex();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![3.0f32, -4.0, 1.0, 1.0], [1, 2, 2]),
            &device,
        );
        let y: Vec<f32> =
            RmsNorm::without_scale(0.0).forward(x).into_data().try_to_vec_as::<f32>().unwrap();
        let r = (12.5f32).sqrt();
        assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] + 4.0 / r).abs() < 1e-6);
        assert!((y[2] - 1.0).abs() < 1e-6 && (y[3] - 1.0).abs() < 1e-6);
    }
}
