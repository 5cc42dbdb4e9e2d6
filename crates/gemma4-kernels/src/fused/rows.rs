//! What the kernels share: for the row kernels (RMSNorm, softmax) one cube of [`BLOCK`] units
//! per row, the cube-wide sum and maximum in shared memory and the launch grid; for all, the
//! element types and an empty output shaped like an input ([`like`]).

use burn::tensor::DType;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::{ElemType, FloatKind, IntKind, UIntKind};
use cubecl::prelude::*;

/// Units per cube (a power of two: the shared-memory sum halves it step by step).
pub const BLOCK: u32 = 256;
/// Cubes along x before rows wrap onto y (wgpu caps each dispatch axis at 65,535).
pub const MAX_CUBES_X: u32 = 32_768;

/// Sums `v` over the cube's units; every unit gets the total. `partial` holds `BLOCK` values.
#[cube]
pub fn cube_sum(partial: &mut Shared<[f32]>, v: f32) -> f32 {
    let unit = UNIT_POS_X as usize;
    partial[unit] = v;
    sync_cube();
    let mut stride = CUBE_DIM_X / 2;
    while stride > 0 {
        if UNIT_POS_X < stride {
            partial[unit] += partial[unit + stride as usize];
        }
        sync_cube();
        stride /= 2;
    }
    let total = partial[0];
    sync_cube();
    total
}

/// The maximum of `v` over the cube's units; every unit gets it.
#[cube]
pub fn cube_max(partial: &mut Shared<[f32]>, v: f32) -> f32 {
    let unit = UNIT_POS_X as usize;
    partial[unit] = v;
    sync_cube();
    let mut stride = CUBE_DIM_X / 2;
    while stride > 0 {
        if UNIT_POS_X < stride {
            partial[unit] = max(partial[unit], partial[unit + stride as usize]);
        }
        sync_cube();
        stride /= 2;
    }
    let total = partial[0];
    sync_cube();
    total
}

/// CubeCL's element type for a float dtype the fused kernels take.
pub fn elem(dtype: DType) -> ElemType {
    match dtype {
        DType::F16 => ElemType::Float(FloatKind::F16),
        DType::BF16 => ElemType::Float(FloatKind::BF16),
        DType::F32 => ElemType::Float(FloatKind::F32),
        other => panic!("fused kernels: unsupported dtype {other:?} (f32, f16 or bf16)"),
    }
}

/// CubeCL's element type for an integer dtype the labels and masks come in.
pub fn int_elem(dtype: DType) -> ElemType {
    match dtype {
        DType::I64 => ElemType::Int(IntKind::I64),
        DType::I32 => ElemType::Int(IntKind::I32),
        DType::U32 => ElemType::UInt(UIntKind::U32),
        DType::U64 => ElemType::UInt(UIntKind::U64),
        other => panic!("fused kernels: unsupported int dtype {other:?}"),
    }
}

/// The launch grid of one cube per row of `x` (rows of its last axis), and the row count and
/// width.
pub fn row_grid(x: &CubeTensor) -> (CubeCount, u32, u32) {
    let shape = x.meta.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let (rows, d) = (
        u32::try_from(rows).expect("fused kernels: rows fit u32"),
        u32::try_from(d).expect("fused kernels: width fits u32"),
    );
    let cubes_x = rows.clamp(1, MAX_CUBES_X);
    (CubeCount::Static(cubes_x, rows.div_ceil(cubes_x), 1), rows, d)
}

/// An empty contiguous tensor of `t`'s shape, dtype and device.
pub fn like(t: &CubeTensor) -> CubeTensor {
    empty_device_contiguous_dtype(
        t.client.clone(),
        t.device.clone(),
        t.meta.shape().clone(),
        t.dtype,
    )
}
