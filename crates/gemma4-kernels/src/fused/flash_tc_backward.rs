//! Flash attention's backward on tensor cores (see `flash_tc.rs` for the layout: one cube per
//! 16 rows, a plane per 64 head-dim columns), the same two kernels as `flash_backward.rs`:
//!
//! - `dq`: per block of queries, `D = Σ dO∘O` per row, then per key tile the score and
//!   `dp = dO·vᵀ` tiles (planes' partial products summed), `ds = p·(dp − D)` and
//!   `dq += ds·k·scale`.
//! - `dk`/`dv`: per block of keys, every query head of the group and query tile that can see
//!   it: `dv += pᵀ·dO`, `dk += dsᵀ·q·scale`, the group's heads summed in the accumulators.

use burn_cubecl::tensor::CubeTensor;
use cubecl::cmma::{MatrixIdent, MatrixLayout};
use cubecl::prelude::*;

use super::flash_attention::{
    Geometry, GeometryLaunch, MaskFlags, grid_of, key_range, query_range, visible,
};
use super::flash_tc::{
    ALIGN, LANES, PAD, TILE, TILE2, accumulate, accumulators, col_operands, cube_dim, operand,
    partial_product, row_operands, stage_rows, summed, write_rows,
};

/// The probabilities of this unit's entries of the score tile (entry `UNIT_POS + i·units`):
/// `exp(s·scale − lse)` where the mask lets the query see the key, else 0; `part` holds the
/// planes' partial scores, `rows` the tile's log-sum-exps (then its `D`s).
#[cube]
#[allow(clippy::too_many_arguments)]
fn probabilities<F: Float, I: Int>(
    part: &Shared<[f32]>,
    q0: u32,
    k0: u32,
    q_rows: u32,
    k_rows: u32,
    batch: u32,
    rows: &Shared<[f32]>,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    g: &Geometry,
    #[comptime] flags: MaskFlags,
    #[comptime] planes: u32,
) -> Array<f32> {
    let units = LANES * planes;
    let mut p = Array::<f32>::new(comptime!((TILE2 / (LANES * planes)) as usize));
    #[unroll]
    for i in 0..comptime!(TILE2 / (LANES * planes)) {
        let e = UNIT_POS + i * units;
        let (r, j) = (e / TILE, e % TILE);
        let seen = r < q_rows
            && j < k_rows
            && visible::<I>(q0 + r, k0 + j, batch, valid, segments, g, flags);
        p[i as usize] = select(seen, (summed(part, e) * g.scale - rows[r as usize]).exp(), 0.0f32);
    }
    p
}

/// `ds = p·(dp − D)` for this unit's entries, `part` holding the planes' partial `dp = dO·vᵀ`.
#[cube]
fn score_gradients<F: Float>(
    part: &Shared<[f32]>,
    p: &Array<f32>,
    rows: &Shared<[f32]>,
    ds: &mut Shared<[F]>,
    #[comptime] planes: u32,
) {
    let units = LANES * planes;
    #[unroll]
    for i in 0..comptime!(TILE2 / (LANES * planes)) {
        let e = UNIT_POS + i * units;
        let dp = summed(part, e);
        ds[e as usize] = F::cast_from(p[i as usize] * (dp - rows[(TILE + e / TILE) as usize]));
    }
}

#[cube(launch)]
fn flash_tc_dq_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    o: &Tensor<F>,
    dout: &Tensor<F>,
    lse: &Tensor<f32>,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    dq: &mut Tensor<F>,
    delta: &mut Tensor<f32>,
    g: &Geometry,
    #[comptime] d: u32,
    #[comptime] planes: u32,
    #[comptime] flags: MaskFlags,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let (batch, head, q0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * TILE);
    let q_rows = min(g.s - q0, TILE);
    let row0 = (batch * g.heads + head) * g.s + q0;
    let q_base = row0 as usize * d as usize;
    let kv_head = head / g.group;
    let kv_base = ((batch * (g.heads / g.group) + kv_head) * g.t) as usize * d as usize;
    let units = LANES * planes;
    let mut ks = Shared::<[F]>::new_aligned_slice((TILE * (d + PAD)) as usize, ALIGN);
    let mut vs = Shared::<[F]>::new_aligned_slice((TILE * (d + PAD)) as usize, ALIGN);
    let mut part = Shared::<[f32]>::new_aligned_slice((planes * TILE2) as usize, ALIGN);
    let mut ds = Shared::<[F]>::new_aligned_slice(TILE2 as usize, ALIGN);
    let mut rows = Shared::<[f32]>::new_slice((2 * TILE) as usize); // lse, then D
    // D = Σ dO∘O: unit u sums row u % TILE over the columns ≡ u / TILE (mod units / TILE).
    let (r, chunks) = (UNIT_POS % TILE, units / TILE);
    let mut d_part = f32::new(0.0);
    if r < q_rows {
        let at = q_base + (r * d) as usize;
        for col in range_stepped(UNIT_POS / TILE, d, chunks) {
            d_part +=
                f32::cast_from(dout[at + col as usize]) * f32::cast_from(o[at + col as usize]);
        }
    }
    part[UNIT_POS as usize] = d_part;
    stage_rows::<F>(q, q_base, q_rows, &mut ks, d);
    stage_rows::<F>(dout, q_base, q_rows, &mut vs, d);
    sync_cube();
    if UNIT_POS < TILE {
        let mut dsum = f32::new(0.0);
        for c in 0..chunks {
            dsum += part[(c * TILE + UNIT_POS) as usize];
        }
        rows[(TILE + UNIT_POS) as usize] = dsum;
        rows[UNIT_POS as usize] = lse[(row0 + min(UNIT_POS, q_rows - 1)) as usize];
        if UNIT_POS < q_rows {
            delta[(row0 + UNIT_POS) as usize] = dsum;
        }
    }
    let qf = row_operands::<F>(&ks, d);
    let dof = row_operands::<F>(&vs, d);
    let mut acc = accumulators();
    let (lo, hi) = key_range(q0, q0 + q_rows, g, flags);
    for k0 in range_stepped(lo, hi, TILE) {
        let k_rows = min(hi - k0, TILE);
        sync_cube();
        stage_rows::<F>(k, kv_base + (k0 * d) as usize, k_rows, &mut ks, d);
        stage_rows::<F>(v, kv_base + (k0 * d) as usize, k_rows, &mut vs, d);
        sync_cube();
        let kf = col_operands::<F>(&ks, d);
        partial_product::<F>(&qf, &kf, &mut part);
        sync_cube();
        let p = probabilities::<F, I>(
            &part, q0, k0, q_rows, k_rows, batch, &rows, valid, segments, g, flags, planes,
        );
        sync_cube();
        let vf = col_operands::<F>(&vs, d);
        partial_product::<F>(&dof, &vf, &mut part);
        sync_cube();
        score_gradients::<F>(&part, &p, &rows, &mut ds, planes);
        sync_cube();
        let dsf = operand::<F>(&ds, 0, TILE, MatrixIdent::A, MatrixLayout::RowMajor);
        accumulate::<F>(&mut acc, &dsf, &ks, d);
    }
    write_rows::<F>(&acc, g.scale, dq, q_base, q_rows, &mut part, d);
}

#[cube(launch)]
fn flash_tc_dkdv_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    dout: &Tensor<F>,
    lse: &Tensor<f32>,
    delta: &Tensor<f32>,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    dk: &mut Tensor<F>,
    dv: &mut Tensor<F>,
    g: &Geometry,
    #[comptime] d: u32,
    #[comptime] planes: u32,
    #[comptime] flags: MaskFlags,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let (batch, kv_head, k0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * TILE);
    let kv_heads = g.heads / g.group;
    let k_rows = min(g.t - k0, TILE);
    let k_base = ((batch * kv_heads + kv_head) * g.t + k0) as usize * d as usize;
    let units = LANES * planes;
    let mut qs = Shared::<[F]>::new_aligned_slice((TILE * (d + PAD)) as usize, ALIGN);
    let mut dos = Shared::<[F]>::new_aligned_slice((TILE * (d + PAD)) as usize, ALIGN);
    let mut part = Shared::<[f32]>::new_aligned_slice((planes * TILE2) as usize, ALIGN);
    let mut probs = Shared::<[F]>::new_aligned_slice(TILE2 as usize, ALIGN);
    let mut ds = Shared::<[F]>::new_aligned_slice(TILE2 as usize, ALIGN);
    let mut rows = Shared::<[f32]>::new_slice((2 * TILE) as usize); // lse, then D
    stage_rows::<F>(k, k_base, k_rows, &mut qs, d);
    stage_rows::<F>(v, k_base, k_rows, &mut dos, d);
    sync_cube();
    let kf = col_operands::<F>(&qs, d);
    let vf = col_operands::<F>(&dos, d);
    let mut dk_acc = accumulators();
    let mut dv_acc = accumulators();
    let (lo, hi) = query_range(k0, k0 + k_rows, g, flags);
    for head in range_stepped(kv_head * g.group, (kv_head + 1) * g.group, 1u32) {
        let head_row = (batch * g.heads + head) * g.s;
        for q0 in range_stepped(lo, hi, TILE) {
            let q_rows = min(hi - q0, TILE);
            let q_base = (head_row + q0) as usize * d as usize;
            sync_cube();
            stage_rows::<F>(q, q_base, q_rows, &mut qs, d);
            stage_rows::<F>(dout, q_base, q_rows, &mut dos, d);
            if UNIT_POS < TILE {
                let at = (head_row + q0 + min(UNIT_POS, q_rows - 1)) as usize;
                rows[UNIT_POS as usize] = lse[at];
                rows[(TILE + UNIT_POS) as usize] = delta[at];
            }
            sync_cube();
            let qf = row_operands::<F>(&qs, d);
            partial_product::<F>(&qf, &kf, &mut part);
            sync_cube();
            let p = probabilities::<F, I>(
                &part, q0, k0, q_rows, k_rows, batch, &rows, valid, segments, g, flags, planes,
            );
            #[unroll]
            for i in 0..comptime!(TILE2 / (LANES * planes)) {
                probs[(UNIT_POS + i * units) as usize] = F::cast_from(p[i as usize]);
            }
            sync_cube();
            let dof = row_operands::<F>(&dos, d);
            partial_product::<F>(&dof, &vf, &mut part);
            sync_cube();
            score_gradients::<F>(&part, &p, &rows, &mut ds, planes);
            sync_cube();
            // pᵀ and dsᵀ: the row-major [query, key] tiles read column-major.
            let pt = operand::<F>(&probs, 0, TILE, MatrixIdent::A, MatrixLayout::ColMajor);
            accumulate::<F>(&mut dv_acc, &pt, &dos, d);
            let dst = operand::<F>(&ds, 0, TILE, MatrixIdent::A, MatrixLayout::ColMajor);
            accumulate::<F>(&mut dk_acc, &dst, &qs, d);
        }
    }
    write_rows::<F>(&dk_acc, g.scale, dk, k_base, k_rows, &mut part, d);
    write_rows::<F>(&dv_acc, 1.0f32, dv, k_base, k_rows, &mut part, d);
}

/// [`super::flash_backward::backward`] on tensor cores ([`super::flash_tc::usable`] said yes;
/// contiguous inputs, outputs allocated): fills `dq`, `dk`, `dv` and `delta`.
pub fn backward(
    [q, k, v, o, lse, dout]: [CubeTensor; 6],
    [valid, segments]: [CubeTensor; 2],
    [dq, dk, dv, delta]: [&CubeTensor; 4],
    [g_dq, g_dkdv]: [GeometryLaunch; 2],
    flags: MaskFlags,
    dtypes: [ElemType; 2],
) {
    let [b, h, s, d] = q.meta.shape().dims::<4>();
    let [_, kv, t, _] = k.meta.shape().dims::<4>();
    let (d32, planes) = (d as u32, (d / super::flash_tc::COLS as usize) as u32);
    let client = q.client.clone();
    let arg = |t: &CubeTensor| t.clone().into_tensor_arg();
    flash_tc_dq_kernel::launch(
        &client,
        grid_of(s, TILE, h, b),
        cube_dim(d),
        arg(&q),
        arg(&k),
        arg(&v),
        arg(&o),
        arg(&dout),
        arg(&lse),
        arg(&valid),
        arg(&segments),
        arg(dq),
        arg(delta),
        g_dq,
        d32,
        planes,
        flags,
        dtypes,
    );
    flash_tc_dkdv_kernel::launch(
        &client,
        grid_of(t, TILE, kv, b),
        cube_dim(d),
        arg(&q),
        arg(&k),
        arg(&v),
        arg(&dout),
        arg(&lse),
        arg(delta),
        arg(&valid),
        arg(&segments),
        arg(dk),
        arg(dv),
        g_dkdv,
        d32,
        planes,
        flags,
        dtypes,
    );
}
