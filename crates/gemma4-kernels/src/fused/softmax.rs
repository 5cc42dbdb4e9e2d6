//! Attention's masked softmax in one kernel each way, for the CubeCL runtimes.
//!
//! One cube per row of scores. Three passes over the row (maximum, sum of exponentials,
//! write), all f32; the scores and probabilities keep the activation dtype. The additive mask
//! bias is f32 and broadcast over heads (and over the batch when it has one row).
//!
//! - Forward: `p = softmax(scores·scale + bias)` over the last axis.
//! - Backward (the scores' gradient; the bias is a constant):
//!   `dscores = scale · p·(dp − Σ_j p_j·dp_j)`.
//!
//! Replaces, per attention block, about 9 launches forward (cast, scale, bias, the softmax's
//! max/sub/exp/sum/div, cast back) that each pass over the whole `[b, h, s, t]` scores in f32,
//! and about as many backward.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::{BLOCK, cube_max, cube_sum, elem, like, row_grid};

/// Scores `[b, n, s, t]` as rows of `t`: `rows` of them, `s` per (batch, head), `per_batch` =
/// `n·s` per batch entry; `bias_batched`: the bias has a row block per batch entry.
#[cube(launch)]
fn softmax_forward_kernel<F: Float>(
    scores: &Tensor<F>,
    bias: &Tensor<f32>,
    probs: &mut Tensor<F>,
    rows: u32,
    t: u32,
    s: u32,
    per_batch: u32,
    scale: f32,
    bias_batched: u32,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = row as usize * t as usize;
    let batch = (row / per_batch) * bias_batched;
    let bias_base = (batch * s + row % s) as usize * t as usize;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut m = f32::new(-3.0e38);
    let mut j = UNIT_POS_X;
    while j < t {
        let v = f32::cast_from(scores[base + j as usize]) * scale + bias[bias_base + j as usize];
        m = max(m, v);
        j += CUBE_DIM_X;
    }
    let m = cube_max(&mut partial, m);
    let mut sum = f32::new(0.0);
    let mut j = UNIT_POS_X;
    while j < t {
        let v = f32::cast_from(scores[base + j as usize]) * scale + bias[bias_base + j as usize];
        sum += (v - m).exp();
        j += CUBE_DIM_X;
    }
    let sum = cube_sum(&mut partial, sum);
    let mut j = UNIT_POS_X;
    while j < t {
        let v = f32::cast_from(scores[base + j as usize]) * scale + bias[bias_base + j as usize];
        probs[base + j as usize] = F::cast_from((v - m).exp() / sum);
        j += CUBE_DIM_X;
    }
}

#[cube(launch)]
fn softmax_backward_kernel<F: Float>(
    probs: &Tensor<F>,
    dprobs: &Tensor<F>,
    dscores: &mut Tensor<F>,
    rows: u32,
    t: u32,
    scale: f32,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = row as usize * t as usize;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut dot = f32::new(0.0);
    let mut j = UNIT_POS_X;
    while j < t {
        dot += f32::cast_from(probs[base + j as usize]) * f32::cast_from(dprobs[base + j as usize]);
        j += CUBE_DIM_X;
    }
    let dot = cube_sum(&mut partial, dot);
    let mut j = UNIT_POS_X;
    while j < t {
        let p = f32::cast_from(probs[base + j as usize]);
        let dp = f32::cast_from(dprobs[base + j as usize]);
        dscores[base + j as usize] = F::cast_from(scale * p * (dp - dot));
        j += CUBE_DIM_X;
    }
}

/// `softmax(scores·scale + bias)` over the last axis, in `scores`' dtype.
///
/// # Shapes
/// - scores: `[b, n, s, t]`, bias: `[b or 1, 1, s, t]` (f32) → `[b, n, s, t]`
pub fn forward(scores: CubeTensor, bias: CubeTensor, scale: f32) -> CubeTensor {
    let (scores, bias) = (into_contiguous(scores), into_contiguous(bias));
    let [b, n, s, t] = scores.meta.shape().dims::<4>();
    let bias_dims = bias.meta.shape().dims::<4>();
    assert!(
        (bias_dims[0] == 1 || bias_dims[0] == b) && bias_dims[1..] == [1, s, t],
        "fused softmax: bias {bias_dims:?} does not broadcast to scores [{b}, {n}, {s}, {t}]"
    );
    let probs = like(&scores);
    let (count, rows, t) = row_grid(&scores);
    if rows == 0 || t == 0 {
        return probs;
    }
    let to_u32 = |v: usize| u32::try_from(v).expect("fused softmax: sizes fit u32");
    let dtype = elem(scores.dtype);
    softmax_forward_kernel::launch(
        &scores.client.clone(),
        count,
        CubeDim::new_1d(BLOCK),
        scores.into_tensor_arg(),
        bias.into_tensor_arg(),
        probs.clone().into_tensor_arg(),
        rows,
        t,
        to_u32(s),
        to_u32(n * s),
        scale,
        u32::from(bias_dims[0] == b && b > 1),
        dtype,
    );
    probs
}

/// The gradient of [`forward`] with respect to the scores, from its output `probs` and the
/// output's gradient `dprobs`.
///
/// # Shapes
/// - probs, dprobs: `[.., t]` → `[.., t]`
pub fn backward(probs: CubeTensor, dprobs: CubeTensor, scale: f32) -> CubeTensor {
    let (probs, dprobs) = (into_contiguous(probs), into_contiguous(dprobs));
    assert_eq!(probs.dtype, dprobs.dtype, "fused softmax backward: dtypes differ");
    let dscores = like(&probs);
    let (count, rows, t) = row_grid(&probs);
    if rows == 0 || t == 0 {
        return dscores;
    }
    let dtype = elem(probs.dtype);
    softmax_backward_kernel::launch(
        &probs.client.clone(),
        count,
        CubeDim::new_1d(BLOCK),
        probs.into_tensor_arg(),
        dprobs.into_tensor_arg(),
        dscores.clone().into_tensor_arg(),
        rows,
        t,
        scale,
        dtype,
    );
    dscores
}
