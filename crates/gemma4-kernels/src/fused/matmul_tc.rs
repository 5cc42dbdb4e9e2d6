//! `c = a·b` on tensor cores (`cmma`, 16 × 16 × 16 tiles, f16/bf16 in, f32 sums, the result in
//! the inputs' dtype), for the runtimes whose own matmul leaves them idle: Burn's f16 matmul
//! through Vulkan reaches about a sixth of the H200's tensor-core rate (docs/performance.md).
//!
//! One cube of sixteen planes per `[BM, BN]` block of `c`; plane `p` owns the `[32, 32]` corner
//! `(p / 4, p % 4)` of it as 2 × 2 accumulators: small corners run fastest through Vulkan on the
//! H200 (f16: `[32, 32]` 101–138 TFLOP/s, `[64, 32]` 62–107, `[64, 64]` 31–66; Burn's 122–132;
//! docs/performance.md). The cube walks `k` in steps of [`BK`]: every unit fetches its share of the next `a` and `b` tiles from global memory (vectors of 4) into
//! registers while the planes multiply the current ones from shared memory, then stores them
//! into the other of two shared buffers: one barrier per step. Each operand is staged the way
//! it lies, so the fetches read contiguous runs: `a` as `[m, k]` rows, or `[k, m]` when it is a
//! transposed view, and likewise `b` (`[k, n]`, or `[n, k]`: a frozen `[out, in]` weight read
//! for `x·Wᵀ`, or `dy·W`'s `W` transposed); `cmma` reads either layout. Rows staged `+ PAD`
//! apart spread a fragment's rows over the shared-memory banks.
//!
//! Out-of-range rows and columns (any `m`, `n`, `k` that the vectors divide) are read as zeros
//! and not written.

use burn::backend::ops::FloatTensorOps;
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::cmma::{self, MatrixIdent, MatrixLayout};
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;

use super::flash_tc::zeros;
use super::rows::elem;
use crate::stored::physical;

/// Rows and columns of `c` per cube.
pub const BM: u32 = 128;
pub const BN: u32 = BM;
/// The `k` step.
pub const BK: u32 = 32;
/// `cmma` tile edge.
const TILE: u32 = 16;
/// Padding of a staged row (elements).
const PAD: u32 = 8;
/// Elements per fetched vector.
pub const VEC: u32 = 4;
/// Units per plane, planes per cube.
const LANES: u32 = 32;
const PLANES: u32 = 16;
const UNITS: u32 = LANES * PLANES;
/// A plane's corner: `WM × WN`, as `FM × FN` accumulators.
const WM: u32 = 32;
const WN: u32 = 32;
const FM: u32 = WM / TILE;
const FN: u32 = WN / TILE;
/// Vectors each unit fetches per operand tile (`BM·BK / VEC / UNITS`; `BN = BM`).
const FETCHES: u32 = BM * BK / VEC / UNITS;
/// Elements of one staged operand tile, padded (the larger of `[128, 32 + 8]` and `[32, 136]`).
const STAGE: u32 = BM * (BK + PAD);
/// Shared memory a cube takes: two buffers per operand and a `[16, 16]` tile per plane.
pub const SHARED_BYTES: usize = ((4 * STAGE + PLANES * TILE * TILE) * 2) as usize;

/// Fetches the `[rows, cols]` tile at (`r0`, `c0`) of a contiguous row-major `[lim_r, lim_c]`
/// matrix into this unit's [`FETCHES`] vectors `regs`; out of range reads zeros.
#[cube]
fn fetch<F: Float, N: Size>(
    src: &Tensor<Vector<F, N>>,
    r0: u32,
    c0: u32,
    lim_r: u32,
    lim_c: u32,
    regs: &mut Array<Vector<F, N>>,
    #[comptime] cols: u32,
) {
    let per_row = cols / VEC;
    #[unroll]
    for i in 0..FETCHES {
        let v = UNIT_POS + i * UNITS;
        let (r, c) = (r0 + v / per_row, c0 + (v % per_row) * VEC);
        let mut value = Vector::<F, N>::new(F::new(0.0));
        if r < lim_r && c < lim_c {
            value = src[(r as usize * lim_c as usize + c as usize) / VEC as usize];
        }
        regs[i as usize] = value;
    }
}

/// Stores this unit's fetched vectors into the staged tile at vector `base` (rows
/// `cols + PAD` apart).
#[cube]
fn stash<F: Float, N: Size>(
    regs: &Array<Vector<F, N>>,
    stage: &mut Shared<[Vector<F, N>]>,
    base: u32,
    #[comptime] cols: u32,
) {
    let (per_row, stride) = (cols / VEC, (cols + PAD) / VEC);
    #[unroll]
    for i in 0..FETCHES {
        let v = UNIT_POS + i * UNITS;
        stage[(base + (v / per_row) * stride + v % per_row) as usize] = regs[i as usize];
    }
}

/// A `[16, 16]` operand fragment at element `at` of a staged tile (`stride` elements a row).
#[cube]
fn fragment<F: Float, N: Size>(
    stage: &Shared<[Vector<F, N>]>,
    at: u32,
    stride: u32,
    #[comptime] ident: MatrixIdent,
    #[comptime] layout: MatrixLayout,
) -> cmma::Matrix<F> {
    let mut m =
        unsafe { cmma::Matrix::<F>::uninitialized(ident, 16usize, 16usize, 16usize, layout) };
    let (start, end) = (at / VEC, (at + (TILE - 1) * stride + TILE) / VEC);
    cmma::load(&mut m, &stage[start as usize..end as usize], stride);
    m
}

/// This unit's share of an operand's tile at `k0`, staged as it lies (module docs): `a` (outer
/// = `m`) is stored `[k, m]` when `k_rows`, else `[m, k]`; `b` (outer = `n`) likewise, `[k, n]`
/// when `k_rows` (the tiles' outer side is `BM = BN` either way).
#[cube]
fn fetch_operand<F: Float, N: Size>(
    t: &Tensor<Vector<F, N>>,
    k0: u32,
    outer0: u32,
    outer: u32,
    depth: u32,
    regs: &mut Array<Vector<F, N>>,
    #[comptime] k_rows: bool,
) {
    if comptime!(k_rows) {
        fetch::<F, N>(t, k0, outer0, depth, outer, regs, BM);
    } else {
        fetch::<F, N>(t, outer0, k0, outer, depth, regs, BK);
    }
}

/// Four zeroed accumulators: this plane's `[WM, WN]` corner of `c`.
#[cube]
fn accumulators() -> Sequence<cmma::Matrix<f32>> {
    let mut acc = Sequence::<cmma::Matrix<f32>>::new();
    #[unroll]
    for _ in 0..FM * FN {
        acc.push(zeros());
    }
    acc
}

/// `acc += a·b` over one staged `k` step (buffers at element `buf`), for this plane's corner
/// at (`pm`, `pn`) of the block.
#[cube]
fn multiply<F: Float, N: Size>(
    sa: &Shared<[Vector<F, N>]>,
    sb: &Shared<[Vector<F, N>]>,
    buf: u32,
    corner: (u32, u32),
    acc: &mut Sequence<cmma::Matrix<f32>>,
    #[comptime] a_col: bool,
    #[comptime] b_col: bool,
) {
    let (pm, pn) = corner;
    let a_stride = comptime!(if a_col { BM } else { BK }) + PAD;
    let b_stride = comptime!(if b_col { BK } else { BN }) + PAD;
    #[unroll]
    for kk in 0..BK / TILE {
        let mut fa = Sequence::<cmma::Matrix<F>>::new();
        #[unroll]
        for i in 0..FM {
            let (row, col) = (pm + i * TILE, kk * TILE);
            if comptime!(a_col) {
                let at = buf + col * a_stride + row;
                fa.push(fragment::<F, N>(sa, at, a_stride, MatrixIdent::A, MatrixLayout::ColMajor));
            } else {
                let at = buf + row * a_stride + col;
                fa.push(fragment::<F, N>(sa, at, a_stride, MatrixIdent::A, MatrixLayout::RowMajor));
            }
        }
        #[unroll]
        for j in 0..FN {
            let (row, col) = (kk * TILE, pn + j * TILE);
            let fb = if comptime!(b_col) {
                let at = buf + col * b_stride + row;
                fragment::<F, N>(sb, at, b_stride, MatrixIdent::B, MatrixLayout::ColMajor)
            } else {
                let at = buf + row * b_stride + col;
                fragment::<F, N>(sb, at, b_stride, MatrixIdent::B, MatrixLayout::RowMajor)
            };
            #[unroll]
            for i in 0..FM {
                let t = (i * FN + j) as usize;
                cmma::execute(&fa[i as usize], &fb, &acc[t], &acc[t]);
            }
        }
    }
}

/// Writes this plane's accumulators (its corner at `origin` of `c`, `[rows, cols]`) in `F`,
/// each through the plane's `[16, 16]` tile of `out`, in range only.
#[cube]
fn write_c<F: Float, N: Size>(
    acc: &Sequence<cmma::Matrix<f32>>,
    c: &mut Tensor<Vector<F, N>>,
    out: &mut Shared<[Vector<F, N>]>,
    origin: (u32, u32),
    rows: u32,
    cols: u32,
) {
    let mine = UNIT_POS_Y * TILE * TILE / VEC;
    #[unroll]
    for t in 0..FM * FN {
        let (row0, col0) = (origin.0 + (t / FN) * TILE, origin.1 + (t % FN) * TILE);
        let half = cmma::cast::<f32, F, cmma::Plane>(&acc[t as usize]);
        cmma::store(
            &mut out[mine as usize..(mine + TILE * TILE / VEC) as usize],
            &half,
            TILE,
            MatrixLayout::RowMajor,
        );
        sync_plane();
        #[unroll]
        for e in 0..TILE * TILE / VEC / LANES {
            let v = UNIT_POS_X + e * LANES;
            let (r, col) = (row0 + v / (TILE / VEC), col0 + (v % (TILE / VEC)) * VEC);
            if r < rows && col < cols {
                c[(r as usize * cols as usize + col as usize) / VEC as usize] =
                    out[(mine + v) as usize];
            }
        }
        sync_plane();
    }
}

/// `c = a·b` (module docs); `steps` = ⌈`depth` / [`BK`]⌉.
#[cube(launch)]
fn matmul_tc_kernel<F: Float, N: Size>(
    a: &Tensor<Vector<F, N>>,
    b: &Tensor<Vector<F, N>>,
    c: &mut Tensor<Vector<F, N>>,
    rows: u32,
    cols: u32,
    depth: u32,
    steps: u32,
    #[comptime] a_col: bool,
    #[comptime] b_col: bool,
    #[define(F)] _dtype: ElemType,
) {
    let (m0, n0) = (CUBE_POS_Y * BM, CUBE_POS_X * BN);
    // Each operand tile as it lies: `a` `[BM, BK]` or `[BK, BM]`, `b` `[BK, BN]` or `[BN, BK]`.
    let a_cols = comptime!(if a_col { BM } else { BK });
    let b_cols = comptime!(if b_col { BK } else { BN });
    let mut sa = Shared::<[Vector<F, N>]>::new_aligned_slice((2 * STAGE / VEC) as usize, 32usize);
    let mut sb = Shared::<[Vector<F, N>]>::new_aligned_slice((2 * STAGE / VEC) as usize, 32usize);
    let mut out =
        Shared::<[Vector<F, N>]>::new_aligned_slice((PLANES * TILE * TILE / VEC) as usize, 32usize);
    let mut acc = accumulators();
    let (pm, pn) = ((UNIT_POS_Y / (BN / WN)) * WM, (UNIT_POS_Y % (BN / WN)) * WN);
    let mut ra = Array::<Vector<F, N>>::new(FETCHES as usize);
    let mut rb = Array::<Vector<F, N>>::new(FETCHES as usize);
    fetch_operand::<F, N>(a, 0, m0, rows, depth, &mut ra, a_col);
    fetch_operand::<F, N>(b, 0, n0, cols, depth, &mut rb, !b_col);
    stash::<F, N>(&ra, &mut sa, 0, a_cols);
    stash::<F, N>(&rb, &mut sb, 0, b_cols);
    sync_cube();
    for step in 0..steps {
        let more = step + 1 < steps;
        if more {
            fetch_operand::<F, N>(a, (step + 1) * BK, m0, rows, depth, &mut ra, a_col);
            fetch_operand::<F, N>(b, (step + 1) * BK, n0, cols, depth, &mut rb, !b_col);
        }
        multiply::<F, N>(&sa, &sb, (step % 2) * STAGE, (pm, pn), &mut acc, a_col, b_col);
        if more {
            let next = ((step + 1) % 2) * STAGE / VEC;
            stash::<F, N>(&ra, &mut sa, next, a_cols);
            stash::<F, N>(&rb, &mut sb, next, b_cols);
        }
        sync_cube();
    }
    write_c::<F, N>(&acc, c, &mut out, (m0 + pm, n0 + pn), rows, cols);
}

/// Whether the kernel takes `a·b` on `a`'s device in `dtype`: f16 or bf16, planes of 32 units,
/// 16 × 16 × 16 `cmma` with f32 sums, room for [`SHARED_BYTES`] and cubes of 512 units.
pub fn usable(a: &CubeTensor) -> bool {
    let hw = &a.client.properties().hardware;
    let half = matches!(elem(a.dtype), ElemType::Float(FloatKind::F16 | FloatKind::BF16));
    let config = cubecl::ir::features::MmaConfig {
        a_type: elem(a.dtype),
        b_type: elem(a.dtype),
        cd_type: ElemType::Float(FloatKind::F32),
        m: TILE,
        n: TILE,
        k: TILE,
    };
    half && hw.plane_size_min == LANES
        && hw.plane_size_max == LANES
        && SHARED_BYTES <= hw.max_shared_memory_size
        && UNITS <= hw.max_units_per_cube
        && a.client.features().matmul.cmma.contains(&config)
}

/// Launches `c = a·b` of contiguous buffers: `a` `[m, k]` (stored `[k, m]` when `a_col`), `b`
/// `[k, n]` (stored `[n, k]` when `b_col`), `c` `[m, n]` contiguous; `m`, `n`, `k` multiples of
/// [`VEC`] where they are a stored row's length.
pub fn launch(a: CubeTensor, b: CubeTensor, c: CubeTensor, dims: [u32; 3], cols: [bool; 2]) {
    let [m, n, k] = dims;
    let count = CubeCount::Static(n.div_ceil(BN), m.div_ceil(BM), 1);
    let dtype = elem(a.dtype);
    matmul_tc_kernel::launch(
        &a.client.clone(),
        count,
        CubeDim::new_2d(LANES, PLANES),
        VEC as usize,
        a.into_tensor_arg(),
        b.into_tensor_arg(),
        c.into_tensor_arg(),
        m,
        n,
        k,
        k.div_ceil(BK),
        cols[0],
        cols[1],
        dtype,
    );
}

/// The fewest rows and columns of `c` the kernel takes.
const MIN_SIDE: usize = 64;

/// `a·b` through the kernel where [`usable`] and the sizes allow it (one dtype, `m`, `n`, `k`
/// multiples of [`VEC`], `m` and `n` at least [`MIN_SIDE`], `k` at least [`BK`]); Burn's matmul
/// otherwise.
///
/// # Shapes
/// - a: `[m, k]`, b: `[k, n]` → `[m, n]`
pub fn forward(a: CubeTensor, b: CubeTensor) -> CubeTensor {
    let ([m, k], [kb, n]) = (a.meta.shape().dims::<2>(), b.meta.shape().dims::<2>());
    // Thin products (decoding's few rows, LoRA's rank) waste a block: Burn's matmul.
    let sizes_fit = [m, n, k].iter().all(|&d| d.is_multiple_of(VEC as usize) && d < (1 << 30))
        && m >= MIN_SIDE
        && n >= MIN_SIDE
        && k >= BK as usize;
    if a.dtype != b.dtype || k != kb || !sizes_fit || !usable(&a) {
        return CubeBackend::float_matmul(a, b);
    }
    let (a, a_col) = physical(a);
    let (b, b_col) = physical(b);
    let c =
        empty_device_contiguous_dtype(a.client.clone(), a.device.clone(), [m, n].into(), a.dtype);
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    launch(a, b, c.clone(), [m, n, k].map(|d| d as u32), [a_col, b_col]);
    c
}

/// Launches of the kernel so far in this process (tests check which path ran).
pub static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
