//! `y = scale·x·wᵀ` for a narrow `w` (`[r, k]`, a LoRA rank, f32) and a tall `x` read in its
//! own dtype (f16, bf16 or f32), the sums and `y` in f32: the adapter's `x·Aᵀ` without an f32
//! copy of `x`, and its backward's `dy·B`. A cube takes [`ROWS`] rows; `k` goes by tiles of
//! [`TK`] staged in shared memory (the rows of `x` and of `w`); each of a row's 16 units sums
//! every 16th column of the tile for all `r` outputs, and the 16 partial sums are added at the
//! end.

use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::rows::elem;

/// Rows of `x` per cube, units per row, columns of `k` per tile.
const ROWS: usize = 16;
const LANES: usize = 16;
const TK: usize = 64;

#[cube(launch)]
fn thin_kernel<F: Float>(
    x: &Tensor<F>,
    w: &Tensor<f32>,
    y: &mut Tensor<f32>,
    scale: f32,
    #[comptime] r: usize,
    #[define(F)] _dtype: ElemType,
) {
    let (rows, k) = (x.shape(0), x.shape(1));
    let u = UNIT_POS as usize;
    let (row, lane) = (u / LANES, u % LANES);
    let i0 = CUBE_POS_X as usize * ROWS;
    let mut xs = Shared::<[f32]>::new_slice(ROWS * TK);
    let mut ws = Shared::<[f32]>::new_slice(comptime!(r * TK));
    let mut acc = Array::<f32>::new(r);
    #[unroll]
    for t in 0..r {
        acc[t] = f32::new(0.0);
    }
    let mut k0 = 0usize;
    while k0 < k {
        // Stage the tile: x[i0 .. i0 + ROWS, k0 .. k0 + TK] and w[.., k0 .. k0 + TK].
        let mut e = u;
        while e < ROWS * TK {
            let (ri, c) = (i0 + e / TK, k0 + e % TK);
            let mut v = f32::new(0.0);
            if ri < rows && c < k {
                v = f32::cast_from(x[ri * k + c]);
            }
            xs[e] = v;
            e += ROWS * LANES;
        }
        let mut e = u;
        while e < comptime!(r * TK) {
            let (t, c) = (e / TK, k0 + e % TK);
            let mut v = f32::new(0.0);
            if c < k {
                v = w[t * k + c];
            }
            ws[e] = v;
            e += ROWS * LANES;
        }
        sync_cube();
        #[unroll]
        for q in 0..TK / LANES {
            let c = q * LANES + lane;
            let xv = xs[row * TK + c];
            #[unroll]
            for t in 0..r {
                acc[t] += xv * ws[t * TK + c];
            }
        }
        sync_cube();
        k0 += TK;
    }
    // Add the row's 16 partial sums of each output.
    let mut sums = Shared::<[f32]>::new_slice(comptime!(ROWS * LANES * r));
    #[unroll]
    for t in 0..r {
        sums[(row * LANES + lane) * r + t] = acc[t];
    }
    sync_cube();
    let mut o = u;
    while o < comptime!(ROWS * r) {
        let (ri, t) = (o / r, o % r);
        let mut total = f32::new(0.0);
        for l in 0..LANES {
            total += sums[(ri * LANES + l) * r + t];
        }
        if i0 + ri < rows {
            y[(i0 + ri) * r + t] = total * scale;
        }
        o += ROWS * LANES;
    }
}

/// `scale·x·wᵀ` in f32 (module docs); on tensor cores ([`super::thin_tc`]) where it is usable
/// and `GEMMA4_TUNE_THIN_TC=0` is not set.
///
/// # Shapes
/// - x: `[n, k]` (any float dtype), w: `[r, k]` (f32) → `[n, r]` (f32)
pub fn product(x: CubeTensor, w: CubeTensor, scale: f32) -> CubeTensor {
    if !crate::switches::thin_tc_off() && super::thin_tc::usable(&x, w.meta.shape().dims::<2>()[0])
    {
        return super::thin_tc::product(x, w, scale);
    }
    let (x, w) = (into_contiguous(x), into_contiguous(w));
    let n = x.meta.shape().dims::<2>()[0];
    let r = w.meta.shape().dims::<2>()[0];
    let client = x.client.clone();
    let y =
        empty_device_contiguous_dtype(client.clone(), x.device.clone(), [n, r].into(), DType::F32);
    let dtype = elem(x.dtype);
    thin_kernel::launch(
        &client,
        CubeCount::Static((n as u32).div_ceil(ROWS as u32).max(1), 1, 1),
        CubeDim::new_1d((ROWS * LANES) as u32),
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        scale,
        r,
        dtype,
    );
    y
}
