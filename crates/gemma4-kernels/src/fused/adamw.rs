//! AdamW for many tensors, `ADAMW_GROUP` per launch, for the CubeCL runtimes: the gradient
//! times a factor read from the device (unscaling and clipping, so no read-back comes before
//! the update), both moments, bias correction, decoupled weight decay and the update, with
//! PyTorch's `torch.optim.AdamW` arithmetic in f32 and in the same order as the plain ops of
//! [`crate::reference::adamw`]. One kernel replaced about 14 launches per tensor (a step of
//! E2B's 410 LoRA tensors took 0.2 s of launches on the H200); grouping takes E2B's 410 launches
//! to 103 (GPU time 2.8 → 0.9 ms; the step about 1% shorter through Vulkan,
//! docs/performance.md).

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::ops::{ADAMW_GROUP as GROUP, AdamwScalars};

/// Units per cube.
const UNITS: u32 = 256;

/// The step's scalars, as the kernel takes them (all f32).
#[derive(CubeType, CubeLaunch)]
struct Scalars {
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    correction1: f32,
    correction2: f32,
    lr: f32,
    eps: f32,
    decay: f32,
}

/// Element `i` of one tensor's update (nothing past its end).
#[cube]
#[allow(clippy::too_many_arguments)]
fn update(
    param: &Tensor<f32>,
    grad: &Tensor<f32>,
    m: &Tensor<f32>,
    v: &Tensor<f32>,
    new_param: &mut Tensor<f32>,
    new_m: &mut Tensor<f32>,
    new_v: &mut Tensor<f32>,
    factor: f32,
    s: &Scalars,
    #[comptime] first: bool,
    #[comptime] decays: bool,
) {
    let i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    if i < new_param.len() {
        // The gradient as it lies (often a transposed view): read through its strides.
        let cols = new_param.shape(1);
        let g = grad[(i / cols) * grad.stride(0) + (i % cols) * grad.stride(1)] * factor;
        let mut m_i = g * s.one_minus_beta1;
        let mut v_i = g * g * s.one_minus_beta2;
        if comptime!(!first) {
            m_i += m[i] * s.beta1;
            v_i += v[i] * s.beta2;
        }
        let m_hat = m_i / s.correction1;
        let v_hat = v_i / s.correction2;
        let mut p = param[i];
        if comptime!(decays) {
            p *= s.decay;
        }
        new_param[i] = p - m_hat / (v_hat.sqrt() + s.eps) * s.lr;
        new_m[i] = m_i;
        new_v[i] = v_i;
    }
}

/// Cube row `y` updates the group's tensor `y` (rows from the launch's count on are not run).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel(
    p0: &Tensor<f32>,
    g0: &Tensor<f32>,
    m0: &Tensor<f32>,
    v0: &Tensor<f32>,
    np0: &mut Tensor<f32>,
    nm0: &mut Tensor<f32>,
    nv0: &mut Tensor<f32>,
    p1: &Tensor<f32>,
    g1: &Tensor<f32>,
    m1: &Tensor<f32>,
    v1: &Tensor<f32>,
    np1: &mut Tensor<f32>,
    nm1: &mut Tensor<f32>,
    nv1: &mut Tensor<f32>,
    p2: &Tensor<f32>,
    g2: &Tensor<f32>,
    m2: &Tensor<f32>,
    v2: &Tensor<f32>,
    np2: &mut Tensor<f32>,
    nm2: &mut Tensor<f32>,
    nv2: &mut Tensor<f32>,
    p3: &Tensor<f32>,
    g3: &Tensor<f32>,
    m3: &Tensor<f32>,
    v3: &Tensor<f32>,
    np3: &mut Tensor<f32>,
    nm3: &mut Tensor<f32>,
    nv3: &mut Tensor<f32>,
    factor: &Tensor<f32>,
    s: Scalars,
    #[comptime] first: bool,
    #[comptime] decays: bool,
) {
    let slot = CUBE_POS_Y;
    let f = factor[0];
    if slot == 0 {
        update(p0, g0, m0, v0, np0, nm0, nv0, f, &s, first, decays);
    } else if slot == 1 {
        update(p1, g1, m1, v1, np1, nm1, nv1, f, &s, first, decays);
    } else if slot == 2 {
        update(p2, g2, m2, v2, np2, nm2, nv2, f, &s, first, decays);
    } else {
        update(p3, g3, m3, v3, np3, nm3, nv3, f, &s, first, decays);
    }
}

/// The updated parameters and moments of each `(param, grad, m, v)` (the gradient times
/// `factor[0]`), `ADAMW_GROUP` per launch; `m`, `v` (the previous moments) are not read on the
/// first step.
///
/// # Shapes
/// - param, grad, m, v: `[r, c]` (equal within an item, f32; `grad` any strides), factor: `[1]`
///   (f32) → three of `[r, c]` per item
pub fn step(
    items: Vec<[CubeTensor; 4]>,
    factor: CubeTensor,
    s: AdamwScalars,
) -> Vec<[CubeTensor; 3]> {
    let factor = into_contiguous(factor);
    let items: Vec<[CubeTensor; 4]> = items
        .into_iter()
        .map(|[param, grad, m, v]| {
            let grad = if grad.meta.is_tiled() { into_contiguous(grad) } else { grad };
            [into_contiguous(param), grad, into_contiguous(m), into_contiguous(v)]
        })
        .collect();
    let outputs: Vec<[CubeTensor; 3]> = items
        .iter()
        .map(|[param, ..]| {
            [(); 3].map(|_| {
                empty_device_contiguous_dtype(
                    param.client.clone(),
                    param.device.clone(),
                    param.meta.shape().clone(),
                    param.dtype,
                )
            })
        })
        .collect();
    for (group, outs) in items.chunks(GROUP).zip(outputs.chunks(GROUP)) {
        launch(group, outs, &factor, &s);
    }
    outputs
}

/// One launch over a group of at most `ADAMW_GROUP` items and their outputs.
fn launch(
    group: &[[CubeTensor; 4]],
    outs: &[[CubeTensor; 3]],
    factor: &CubeTensor,
    s: &AdamwScalars,
) {
    let longest = group.iter().map(|t| t[0].meta.shape().num_elements()).max().unwrap_or(0);
    if longest == 0 {
        return;
    }
    let lead = &group[0][0];
    let client = lead.client.clone();
    // Slots past the group's end read its first item and write one-value buffers of their
    // own (writable bindings must not alias); their cubes are not launched.
    let spare = || {
        [(); 3].map(|_| {
            empty_device_contiguous_dtype(
                client.clone(),
                lead.device.clone(),
                [1, 1].into(),
                lead.dtype,
            )
        })
    };
    let spares: Vec<[CubeTensor; 3]> = (group.len()..GROUP).map(|_| spare()).collect();
    let input = |k: usize, j: usize| group.get(k).unwrap_or(&group[0])[j].clone().into_tensor_arg();
    let output = |k: usize, j: usize| {
        outs.get(k).unwrap_or_else(|| &spares[k - group.len()])[j].clone().into_tensor_arg()
    };
    adamw_kernel::launch(
        &client,
        CubeCount::Static((longest as u32).div_ceil(UNITS), group.len() as u32, 1),
        CubeDim::new_1d(UNITS),
        input(0, 0),
        input(0, 1),
        input(0, 2),
        input(0, 3),
        output(0, 0),
        output(0, 1),
        output(0, 2),
        input(1, 0),
        input(1, 1),
        input(1, 2),
        input(1, 3),
        output(1, 0),
        output(1, 1),
        output(1, 2),
        input(2, 0),
        input(2, 1),
        input(2, 2),
        input(2, 3),
        output(2, 0),
        output(2, 1),
        output(2, 2),
        input(3, 0),
        input(3, 1),
        input(3, 2),
        input(3, 3),
        output(3, 0),
        output(3, 1),
        output(3, 2),
        factor.clone().into_tensor_arg(),
        ScalarsLaunch::new(
            s.beta1,
            s.beta2,
            s.one_minus_beta1,
            s.one_minus_beta2,
            s.correction1,
            s.correction2,
            s.lr,
            s.eps,
            s.decay,
        ),
        s.first,
        s.decay != 1.0,
    );
}
