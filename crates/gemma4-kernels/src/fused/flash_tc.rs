//! Flash attention on tensor cores (`cmma`, 16 × 16 × 16 tiles, f16/bf16 in, f32 sums), where
//! the runtime has them (CUDA; Vulkan through its SPIR-V compiler on devices with cooperative
//! matrices) and the head dim is a multiple of [`COLS`]. Elsewhere the scalar kernels of
//! `flash_attention.rs` and `flash_backward.rs` run; they are the ones CI checks on lavapipe,
//! which has no cooperative matrices, and the mask rule, key ranges and [`Geometry`] are theirs.
//!
//! One cube per block of 16 rows (queries here and in `dq`, keys in `dk`/`dv`), with
//! `d / COLS` planes of 32 units: plane `p` owns head-dim columns `[p·COLS, (p+1)·COLS)`. A
//! score tile `q·kᵀ` is the sum of the planes' partial products over their columns (shared
//! memory), then masked and scaled by the cube's units; a product with the probabilities
//! (`p·v`, `pᵀ·dO`, …) is each plane's own columns, kept in `cmma` accumulators.
//!
//! The forward walks the keys twice: first for each row's log-sum-exp, then for
//! `o = Σ exp(s − lse)·v` with nothing to rescale. The backward recomputes the probabilities
//! from that log-sum-exp, as the scalar kernels do.

use burn_cubecl::tensor::CubeTensor;
use cubecl::cmma::{self, MatrixIdent, MatrixLayout};
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;

use super::flash_attention::{EMPTY, Geometry, MaskFlags, key_range, visible};
use super::rows::elem;

/// Head-dim columns per plane (four 16-wide tiles).
pub const COLS: u32 = 64;
/// Units per plane.
pub const LANES: u32 = 32;
/// Rows (and keys) per tile.
pub const TILE: u32 = 16;
/// Entries of a score tile.
pub const TILE2: u32 = TILE * TILE;
/// Padding of a staged row (elements): rows `d + PAD` apart spread a tile's rows over the
/// shared-memory banks and keep every tile 32-byte aligned.
pub const PAD: u32 = 8;
/// Byte alignment of the shared buffers `cmma` reads and writes.
pub const ALIGN: usize = 32;

/// Whether the tensor-core kernels take `q` (`[b, h, s, d]`): f16 or bf16, `d` a multiple of
/// [`COLS`] up to 512, planes of 32 units and 16 × 16 × 16 `cmma` with f32 sums on its device,
/// unless `GEMMA4_TUNE_FLASH_TC=0`.
pub fn usable(q: &CubeTensor) -> bool {
    let d = q.meta.shape().dims::<4>()[3];
    let half = matches!(elem(q.dtype), ElemType::Float(FloatKind::F16 | FloatKind::BF16));
    let hw = &q.client.properties().hardware;
    let config = cubecl::ir::features::MmaConfig {
        a_type: elem(q.dtype),
        b_type: elem(q.dtype),
        cd_type: ElemType::Float(FloatKind::F32),
        m: TILE,
        n: TILE,
        k: TILE,
    };
    half && d % COLS as usize == 0
        && (COLS as usize..=512).contains(&d)
        && shared_bytes(d) <= hw.max_shared_memory_size
        && hw.plane_size_min == LANES
        && hw.plane_size_max == LANES
        && !super::tensor_cores_off()
        && q.client.features().matmul.cmma.contains(&config)
}

/// The most shared memory a kernel here takes for head dim `d` (the backward's: two staged
/// `[TILE, d + PAD]` half tiles, an f32 partial tile per plane, two half tiles and rows; d =
/// 512 takes 42,624 bytes, within Vulkan's usual 48 KiB).
pub fn shared_bytes(d: usize) -> usize {
    let planes = d / COLS as usize;
    let tile = TILE as usize;
    2 * tile * (d + PAD as usize) * 2
        + planes * (TILE2 as usize) * 4
        + 2 * (TILE2 as usize) * 2
        + 2 * tile * 4
}

/// Forward launches on tensor cores so far in this process (tests check which path ran).
pub static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The cube: `d / COLS` planes of [`LANES`] units.
pub fn cube_dim(d: usize) -> CubeDim {
    CubeDim::new_2d(LANES, (d / COLS as usize) as u32)
}

/// Copies rows `[0, rows)` (at most [`TILE`]) of `src` from `base` (`d` apart) into `stage`
/// (`[TILE, d]`, rows `d + PAD` apart), zeros below them. Every unit of the cube takes part; no synchronisation.
#[cube]
pub fn stage_rows<F: Float>(
    src: &Tensor<F>,
    base: usize,
    rows: u32,
    stage: &mut Shared<[F]>,
    #[comptime] d: u32,
) {
    let units = CUBE_DIM_X * CUBE_DIM_Y;
    for e in range_stepped(UNIT_POS, TILE * d, units) {
        let (row, col) = (e / d, e % d);
        let ok = row < rows;
        let at = select(ok, base + e as usize, 0);
        stage[(row * (d + PAD) + col) as usize] = select(ok, src[at], F::cast_from(0.0f32));
    }
}

/// A fresh f32 accumulator.
#[cube]
pub fn zeros() -> cmma::Matrix<f32> {
    cmma::Matrix::<f32>::from_value(
        MatrixIdent::Accumulator,
        16usize,
        16usize,
        16usize,
        MatrixLayout::Undefined,
        0.0f32,
    )
}

/// An operand tile from shared memory, `stride` apart.
#[cube]
pub fn operand<F: Float>(
    stage: &Shared<[F]>,
    at: u32,
    stride: u32,
    #[comptime] ident: MatrixIdent,
    #[comptime] layout: MatrixLayout,
) -> cmma::Matrix<F> {
    let end = (at + (TILE - 1) * stride + TILE) as usize;
    cmma::Matrix::<F>::from_slice(
        ident,
        16usize,
        16usize,
        16usize,
        layout,
        &stage[at as usize..end],
        stride,
    )
}

/// This plane's four column tiles of `[TILE, d]` rows in `stage` as `A` operands (row-major).
#[cube]
pub fn row_operands<F: Float>(
    stage: &Shared<[F]>,
    #[comptime] d: u32,
) -> Sequence<cmma::Matrix<F>> {
    let mut tiles = Sequence::new();
    #[unroll]
    for c in 0..COLS / TILE {
        let at = UNIT_POS_Y * COLS + c * TILE;
        tiles.push(operand::<F>(stage, at, d + PAD, MatrixIdent::A, MatrixLayout::RowMajor));
    }
    tiles
}

/// This plane's four column tiles of `[TILE, d]` rows in `stage`, transposed, as `B` operands
/// (the rows' `xᵀ` for `a·xᵀ`).
#[cube]
pub fn col_operands<F: Float>(
    stage: &Shared<[F]>,
    #[comptime] d: u32,
) -> Sequence<cmma::Matrix<F>> {
    let mut tiles = Sequence::new();
    #[unroll]
    for c in 0..COLS / TILE {
        let at = UNIT_POS_Y * COLS + c * TILE;
        tiles.push(operand::<F>(stage, at, d + PAD, MatrixIdent::B, MatrixLayout::ColMajor));
    }
    tiles
}

/// Four zeroed accumulators (this plane's columns of a `[TILE, d]` result).
#[cube]
pub fn accumulators() -> Sequence<cmma::Matrix<f32>> {
    let mut tiles = Sequence::new();
    #[unroll]
    for _ in 0..COLS / TILE {
        tiles.push(zeros());
    }
    tiles
}

/// This plane's part of a `[TILE, TILE]` product over its columns: `Σ_c a[c]·b[c]`, stored
/// row-major at `part[plane·TILE2 ..]`.
#[cube]
pub fn partial_product<F: Float>(
    a: &Sequence<cmma::Matrix<F>>,
    b: &Sequence<cmma::Matrix<F>>,
    part: &mut Shared<[f32]>,
) {
    let acc = zeros();
    #[unroll]
    for c in 0..COLS / TILE {
        cmma::execute(&a[c as usize], &b[c as usize], &acc, &acc);
    }
    let at = (UNIT_POS_Y * TILE2) as usize;
    cmma::store(&mut part[at..at + TILE2 as usize], &acc, TILE, MatrixLayout::RowMajor);
}

/// Entry `e` of the tile: the planes' partial products summed.
#[cube]
pub fn summed(part: &Shared<[f32]>, e: u32) -> f32 {
    let mut v = f32::new(0.0);
    for p in 0..CUBE_DIM_Y {
        v += part[(p * TILE2 + e) as usize];
    }
    v
}

/// `acc[c] += a·b[c]` for this plane's four column tiles, `b[c]` read from the `[TILE, d]`
/// rows in `stage` (row-major).
#[cube]
pub fn accumulate<F: Float>(
    acc: &mut Sequence<cmma::Matrix<f32>>,
    a: &cmma::Matrix<F>,
    stage: &Shared<[F]>,
    #[comptime] d: u32,
) {
    #[unroll]
    for c in 0..COLS / TILE {
        let at = UNIT_POS_Y * COLS + c * TILE;
        let b = operand::<F>(stage, at, d + PAD, MatrixIdent::B, MatrixLayout::RowMajor);
        cmma::execute(a, &b, &acc[c as usize], &acc[c as usize]);
    }
}

/// Writes this plane's accumulators times `scale` into rows `[0, rows)` of `out` from `base`
/// (`d` apart), through this plane's `[TILE, TILE]` of `part`. Every unit takes part.
#[cube]
pub fn write_rows<F: Float>(
    acc: &Sequence<cmma::Matrix<f32>>,
    scale: f32,
    out: &mut Tensor<F>,
    base: usize,
    rows: u32,
    part: &mut Shared<[f32]>,
    #[comptime] d: u32,
) {
    let at = (UNIT_POS_Y * TILE2) as usize;
    #[unroll]
    for c in 0..COLS / TILE {
        sync_cube();
        cmma::store(
            &mut part[at..at + TILE2 as usize],
            &acc[c as usize],
            TILE,
            MatrixLayout::RowMajor,
        );
        sync_cube();
        for e in range_stepped(UNIT_POS_X, TILE2, LANES) {
            let (row, col) = (e / TILE, UNIT_POS_Y * COLS + c * TILE + e % TILE);
            if row < rows {
                out[base + (row * d + col) as usize] = F::cast_from(part[at + e as usize] * scale);
            }
        }
    }
}

#[cube(launch)]
fn flash_tc_forward_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    g: &Geometry,
    #[comptime] d: u32,
    #[comptime] planes: u32,
    #[comptime] flags: MaskFlags,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let (batch, head, q0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * TILE);
    let q_rows = min(g.s - q0, TILE);
    let q_base = ((batch * g.heads + head) * g.s + q0) as usize * d as usize;
    let kv_head = head / g.group;
    let kv_base = ((batch * (g.heads / g.group) + kv_head) * g.t) as usize * d as usize;
    let units = LANES * planes;
    let mut kv = Shared::<[F]>::new_aligned_slice((TILE * (d + PAD)) as usize, ALIGN);
    let mut part = Shared::<[f32]>::new_aligned_slice((planes * TILE2) as usize, ALIGN);
    let mut probs = Shared::<[F]>::new_aligned_slice(TILE2 as usize, ALIGN);
    let mut scores = Shared::<[f32]>::new_slice(TILE2 as usize);
    let mut row_lse = Shared::<[f32]>::new_slice(TILE as usize);
    stage_rows::<F>(q, q_base, q_rows, &mut kv, d);
    sync_cube();
    let qf = row_operands::<F>(&kv, d);
    let mut acc = accumulators();
    // Row statistics (units 0..TILE, one row each).
    let mut m = f32::new(EMPTY);
    let mut l = f32::new(0.0);
    let (lo, hi) = key_range(q0, q0 + q_rows, g, flags);
    for pass in 0..2u32 {
        for k0 in range_stepped(lo, hi, TILE) {
            let k_rows = min(hi - k0, TILE);
            sync_cube();
            stage_rows::<F>(k, kv_base + (k0 * d) as usize, k_rows, &mut kv, d);
            sync_cube();
            let kf = col_operands::<F>(&kv, d);
            partial_product::<F>(&qf, &kf, &mut part);
            sync_cube();
            if pass == 1 {
                stage_rows::<F>(v, kv_base + (k0 * d) as usize, k_rows, &mut kv, d);
            }
            for e in range_stepped(UNIT_POS, TILE2, units) {
                let (r, j) = (e / TILE, e % TILE);
                let seen = r < q_rows
                    && j < k_rows
                    && visible::<I>(q0 + r, k0 + j, batch, valid, segments, g, flags);
                let sc = select(seen, summed(&part, e) * g.scale, EMPTY);
                if pass == 0 {
                    scores[e as usize] = sc;
                } else {
                    let p = select(seen, (sc - row_lse[r as usize]).exp(), 0.0f32);
                    probs[e as usize] = F::cast_from(p);
                }
            }
            sync_cube();
            if pass == 0 {
                if UNIT_POS < TILE {
                    let row = (UNIT_POS * TILE) as usize;
                    let mut tile_max = f32::new(EMPTY);
                    for j in 0..TILE {
                        tile_max = max(tile_max, scores[row + j as usize]);
                    }
                    let m_new = max(m, tile_max);
                    l *= (m - m_new).exp();
                    for j in 0..TILE {
                        let sc = scores[row + j as usize];
                        l += select(sc > EMPTY, (sc - m_new).exp(), 0.0f32);
                    }
                    m = m_new;
                }
            } else {
                let pf = operand::<F>(&probs, 0, TILE, MatrixIdent::A, MatrixLayout::RowMajor);
                accumulate::<F>(&mut acc, &pf, &kv, d);
            }
        }
        if pass == 0 && UNIT_POS < TILE {
            let row_value = select(l > 0.0f32, m + l.ln(), EMPTY);
            row_lse[UNIT_POS as usize] = row_value;
            if UNIT_POS < q_rows {
                lse[((batch * g.heads + head) * g.s + q0 + UNIT_POS) as usize] = row_value;
            }
        }
    }
    write_rows::<F>(&acc, 1.0f32, out, q_base, q_rows, &mut part, d);
}

/// [`super::flash_attention::forward`] on tensor cores ([`usable`] said yes; contiguous
/// inputs): the output and the per-row log-sum-exp.
pub fn forward(
    [q, k, v, valid, segments]: [CubeTensor; 5],
    out: CubeTensor,
    lse: CubeTensor,
    g: super::flash_attention::GeometryLaunch,
    flags: MaskFlags,
) -> (CubeTensor, CubeTensor) {
    let [b, h, s, d] = q.meta.shape().dims::<4>();
    let dtypes = [elem(q.dtype), super::rows::int_elem(valid.dtype)];
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    flash_tc_forward_kernel::launch(
        &q.client.clone(),
        super::flash_attention::grid_of(s, TILE, h, b),
        cube_dim(d),
        q.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        valid.into_tensor_arg(),
        segments.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        g,
        d as u32,
        (d / COLS as usize) as u32,
        flags,
        dtypes,
    );
    (out, lse)
}
