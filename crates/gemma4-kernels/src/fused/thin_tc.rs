//! [`super::thin`]'s `y = scale·x·wᵀ` on tensor cores, for an f16/bf16 `x` and ranks up to 16:
//! `w` (`[r, k]`) goes to `x`'s dtype first (a LoRA factor: what PEFT multiplies in the
//! compute dtype too; one small cast, where converting each staged f32 value instead took the
//! kernel from 36 to 60 ms per E2B step on the H200), the sums stay f32. A cube takes 16 rows; its eight planes split `k` (plane `p`
//! the steps `p, p + 8, …` of [`BK`] columns), each staging its own `[16, BK]` tiles of `x`
//! and of `w` (its rows past `r` zeros) and adding `x·wᵀ` into one `[16, 16]` accumulator; the
//! planes' accumulators are added at the end. The scalar kernel sums one product per
//! shared-memory read and ran at about 350 GB/s of `x` (docs/performance.md).

use burn::tensor::DType;
use burn_cubecl::kernel::{cast, into_contiguous};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cmma::{self, MatrixIdent, MatrixLayout};
use cubecl::ir::ElemType;
use cubecl::prelude::*;

use super::flash_tc::{operand, zeros};
use super::rows::elem;

/// `cmma` tile edge (rows per cube, the widest rank), planes per cube, units per plane.
const TILE: u32 = 16;
const PLANES: u32 = 8;
const LANES: u32 = 32;
/// Columns of `k` a plane stages per step, and the padding of a staged row.
const BK: u32 = 32;
const PAD: u32 = 8;
const STRIDE: u32 = BK + PAD;
/// One plane's staged tile (elements).
const STAGE: u32 = TILE * STRIDE;

#[cube(launch)]
fn thin_tc_kernel<F: Float>(
    x: &Tensor<F>,
    w: &Tensor<F>,
    y: &mut Tensor<f32>,
    scale: f32,
    rows: u32,
    r: u32,
    k: u32,
    #[define(F)] _dtype: ElemType,
) {
    let (plane, lane) = (UNIT_POS_Y, UNIT_POS_X);
    let i0 = CUBE_POS_X * TILE;
    let mut xs = Shared::<[F]>::new_aligned_slice((PLANES * STAGE) as usize, 32usize);
    let mut ws = Shared::<[F]>::new_aligned_slice((PLANES * STAGE) as usize, 32usize);
    let mut part = Shared::<[f32]>::new_aligned_slice((PLANES * TILE * TILE) as usize, 32usize);
    let mine = plane * STAGE;
    let acc = zeros();
    let mut k0 = plane * BK;
    while k0 < k {
        // Stage x[i0 .. i0 + 16, k0 .. k0 + BK] and w[0 .. 16, k0 .. k0 + BK], zeros outside.
        #[unroll]
        for e in 0..TILE * BK / LANES {
            let v = lane + e * LANES;
            let (row, col) = (v / BK, v % BK);
            let c = k0 + col;
            let mut xv = F::new(0.0);
            if i0 + row < rows && c < k {
                xv = x[((i0 + row) * k + c) as usize];
            }
            xs[(mine + row * STRIDE + col) as usize] = xv;
            let mut wv = F::new(0.0);
            if row < r && c < k {
                wv = w[(row * k + c) as usize];
            }
            ws[(mine + row * STRIDE + col) as usize] = wv;
        }
        sync_plane();
        #[unroll]
        for kk in 0..BK / TILE {
            let at = mine + kk * TILE;
            let a = operand::<F>(&xs, at, STRIDE, MatrixIdent::A, MatrixLayout::RowMajor);
            // B[kk][t] = w[t][kk]: the staged `w` rows read column-major.
            let b = operand::<F>(&ws, at, STRIDE, MatrixIdent::B, MatrixLayout::ColMajor);
            cmma::execute(&a, &b, &acc, &acc);
        }
        sync_plane();
        k0 += PLANES * BK;
    }
    let at = (plane * TILE * TILE) as usize;
    cmma::store(&mut part[at..at + (TILE * TILE) as usize], &acc, TILE, MatrixLayout::RowMajor);
    sync_cube();
    // 256 units, one output each: row `u / 16`, column `u % 16`.
    let u = plane * LANES + lane;
    let (row, t) = (u / TILE, u % TILE);
    let mut total = f32::new(0.0);
    #[unroll]
    for p in 0..PLANES {
        total += part[(p * TILE * TILE + u) as usize];
    }
    if i0 + row < rows && t < r {
        y[((i0 + row) * r + t) as usize] = total * scale;
    }
}

/// Whether the kernel takes `x·wᵀ` for `x` (`[n, k]`) at rank `r`: f16/bf16 `cmma` with f32
/// sums on `x`'s device, planes of 32, `r ≤ 16`, indices within `u32`.
pub fn usable(x: &CubeTensor, r: usize) -> bool {
    let [n, k] = x.meta.shape().dims::<2>();
    (1..=TILE as usize).contains(&r)
        && n.checked_mul(k).is_some_and(|e| e < (1 << 31))
        && super::matmul_tc::usable(x)
}

/// `scale·x·wᵀ` in f32 (module docs; [`usable`] first).
///
/// # Shapes
/// - x: `[n, k]` (f16/bf16), w: `[r, k]` (f32) → `[n, r]` (f32)
pub fn product(x: CubeTensor, w: CubeTensor, scale: f32) -> CubeTensor {
    let x = into_contiguous(x);
    let w = into_contiguous(cast(w, x.dtype));
    let [n, k] = x.meta.shape().dims::<2>();
    let r = w.meta.shape().dims::<2>()[0];
    let client = x.client.clone();
    let y =
        empty_device_contiguous_dtype(client.clone(), x.device.clone(), [n, r].into(), DType::F32);
    let dtype = elem(x.dtype);
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    thin_tc_kernel::launch(
        &client,
        CubeCount::Static((n as u32).div_ceil(TILE).max(1), 1, 1),
        CubeDim::new_2d(LANES, PLANES),
        x.into_tensor_arg(),
        w.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        scale,
        n as u32,
        r as u32,
        k as u32,
        dtype,
    );
    y
}

/// Launches of the kernel so far in this process (tests check which path ran).
pub static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
