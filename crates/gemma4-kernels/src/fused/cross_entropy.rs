//! The LM loss over a chunk of logits in two kernels: the final softcap `c·tanh(x/c)`,
//! log-sum-exp and the picked label's log-probability forward (one cube per row, three passes
//! over the row), and the gradient with respect to the raw head output backward (one unit per
//! entry). f32 inside; the raw logits and their gradient keep the head's dtype. Replaces about
//! 20 launches, each a pass over `[rows, vocab]` f32 logits (1 GiB per 1,024 rows of Gemma's
//! 262,144 vocabulary), per chunk.
//!
//! - Forward: `lse = log Σ_j exp(z_j)`, `loss = lse − z_label`, with `z = c·tanh(x/c)`.
//! - Backward: `dx_j = dloss·(exp(z_j − lse) − [j = label])·(1 − tanh²(x_j/c))`, written as
//!   `[n, V]` or, split into `S` column blocks, as `[S, n, V/S]` (the head's backward then sums
//!   `S` products of `k = V/S` in one batched matmul: more cubes than the `[n, e]` output gives).

use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::{BLOCK, cube_max, cube_sum, elem, int_elem, row_grid};

/// The softcapped logit in f32.
#[cube]
fn capped<F: Float>(x: F, cap: f32, #[comptime] has_cap: bool) -> f32 {
    let v = f32::cast_from(x);
    if comptime!(has_cap) { (v / cap).tanh() * cap } else { v }
}

#[cube(launch)]
fn cross_entropy_forward_kernel<F: Float, I: Int>(
    raw: &Tensor<F>,
    labels: &Tensor<I>,
    loss: &mut Tensor<f32>,
    lse: &mut Tensor<f32>,
    rows: u32,
    vocab: u32,
    cap: f32,
    #[comptime] has_cap: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let row = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = row as usize * vocab as usize;
    let mut partial = Shared::<[f32]>::new_slice(BLOCK as usize);
    let mut m = f32::new(-3.0e38);
    let mut j = UNIT_POS_X;
    while j < vocab {
        m = max(m, capped::<F>(raw[base + j as usize], cap, has_cap));
        j += CUBE_DIM_X;
    }
    let m = cube_max(&mut partial, m);
    let mut s = f32::new(0.0);
    let mut j = UNIT_POS_X;
    while j < vocab {
        s += (capped::<F>(raw[base + j as usize], cap, has_cap) - m).exp();
        j += CUBE_DIM_X;
    }
    let s = cube_sum(&mut partial, s);
    if UNIT_POS_X == 0 {
        let label = min(u32::cast_from(labels[row as usize]), vocab - 1);
        let row_lse = m + s.ln();
        lse[row as usize] = row_lse;
        loss[row as usize] = row_lse - capped::<F>(raw[base + label as usize], cap, has_cap);
    }
}

#[cube(launch)]
fn cross_entropy_backward_kernel<F: Float, I: Int>(
    raw: &Tensor<F>,
    labels: &Tensor<I>,
    lse: &Tensor<f32>,
    dloss: &Tensor<f32>,
    draw: &mut Tensor<F>,
    vocab: u32,
    rows: u32,
    cols: u32,
    cap: f32,
    #[comptime] has_cap: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let i = ABSOLUTE_POS;
    if i >= draw.len() {
        terminate!();
    }
    let row = i / vocab as usize;
    let j = (i % vocab as usize) as u32;
    // Column block `j / cols` of the `[S, n, V/S]` layout (one block: `[n, V]`).
    let out = ((j / cols) as usize * rows as usize + row) * cols as usize + (j % cols) as usize;
    let x = f32::cast_from(raw[i]);
    let mut z = x;
    let mut slope = f32::new(1.0);
    if comptime!(has_cap) {
        let t = (x / cap).tanh();
        z = t * cap;
        slope = f32::new(1.0) - t * t;
    }
    let mut g = (z - lse[row]).exp();
    if j == u32::cast_from(labels[row]) {
        g -= f32::new(1.0);
    }
    draw[out] = F::cast_from(g * dloss[row] * slope);
}

/// Per-row loss and log-sum-exp (both f32) of the softcapped logits.
///
/// # Shapes
/// - raw: `[n, V]`, labels: `[n]` → (`[n]`, `[n]`)
pub fn forward(raw: CubeTensor, labels: CubeTensor, cap: Option<f32>) -> (CubeTensor, CubeTensor) {
    let (raw, labels) = (into_contiguous(raw), into_contiguous(labels));
    let (count, rows, vocab) = row_grid(&raw);
    let out = || {
        let shape = Shape::new([rows as usize]);
        empty_device_contiguous_dtype(raw.client.clone(), raw.device.clone(), shape, DType::F32)
    };
    let (loss, lse) = (out(), out());
    if rows == 0 || vocab == 0 {
        return (loss, lse);
    }
    let dtypes = [elem(raw.dtype), int_elem(labels.dtype)];
    cross_entropy_forward_kernel::launch(
        &raw.client.clone(),
        count,
        CubeDim::new_1d(BLOCK),
        raw.into_tensor_arg(),
        labels.into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        rows,
        vocab,
        cap.unwrap_or(1.0),
        cap.is_some(),
        dtypes,
    );
    (loss, lse)
}

/// The gradient with respect to the raw logits, in their dtype, in `split` column blocks
/// (`split` divides `V`; 1: the logits' own layout).
///
/// # Shapes
/// - raw: `[n, V]`, labels, lse, dloss: `[n]` → `[n, V]` (split 1) or `[split, n, V/split]`
pub fn backward(
    [raw, labels, lse, dloss]: [CubeTensor; 4],
    cap: Option<f32>,
    split: usize,
) -> CubeTensor {
    let [raw, labels, lse, dloss] = [raw, labels, lse, dloss].map(into_contiguous);
    let [rows, vocab] = raw.meta.shape().dims::<2>();
    let cols = vocab / split.max(1);
    assert_eq!(cols * split, vocab, "fused cross-entropy: the split divides the vocabulary");
    let shape = if split == 1 { [rows, vocab].into() } else { [split, rows, cols].into() };
    let draw =
        empty_device_contiguous_dtype(raw.client.clone(), raw.device.clone(), shape, raw.dtype);
    let n = rows * vocab;
    if n == 0 {
        return draw;
    }
    let client = raw.client.clone();
    let dim = CubeDim::new(&client, n);
    let dtypes = [elem(raw.dtype), int_elem(labels.dtype)];
    cross_entropy_backward_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, n, dim),
        dim,
        raw.into_tensor_arg(),
        labels.into_tensor_arg(),
        lse.into_tensor_arg(),
        dloss.into_tensor_arg(),
        draw.clone().into_tensor_arg(),
        size(vocab),
        size(rows),
        size(cols),
        cap.unwrap_or(1.0),
        cap.is_some(),
        dtypes,
    );
    draw
}

fn size(d: usize) -> u32 {
    u32::try_from(d).expect("fused cross-entropy: sizes fit u32")
}
