//! Flash attention's backward on tensor cores (see `flash_tc.rs` for the layout: one cube per
//! 16 rows, a plane per 64 head-dim columns), the same two kernels as `flash_backward.rs`:
//!
//! - `dq`: per block of queries, `D = Σ dO∘O` per row, then per key tile the score and
//!   `dp = dO·vᵀ` tiles (planes' partial products summed), `ds = p·(dp − D)` and
//!   `dq += ds·k·scale`.
//! - `dk`/`dv`: per block of keys, every query head of the group and query tile that can see
//!   it: `dv += pᵀ·dO`, `dk += dsᵀ·q·scale`, the group's heads summed in the accumulators.

use burn::tensor::{DType, Shape};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::cmma::{MatrixIdent, MatrixLayout};
use cubecl::prelude::*;

use super::flash_attention::{
    Geometry, GeometryLaunch, MaskFlags, grid_of, key_range, query_range, visible,
};
use super::flash_tc::{
    ALIGN, LANES, PAD, TILE, TILE2, accumulate, accumulators, col_operands, cube_dim, operand,
    partial_product, row_operands, stage_rows, summed, write_rows,
};
use super::rows::elem;

/// The probabilities of this unit's entries of the score tile (entry `UNIT_POS + i·units`):
/// `exp(s·scale − lse)` where the mask lets the query see the key, else 0; `part` holds the
/// planes' partial scores, `rows` the tile's log-sum-exps (then its `D`s).
#[cube]
#[allow(clippy::too_many_arguments)]
fn probabilities<I: Int>(
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
        let p = probabilities::<I>(
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

/// `split`: one cube per (16 keys, query head), writing that head's share of `dk`/`dv` (f32,
/// `[b, h, t, d]`) for [`group_sum_kernel`] to add up; else one cube per (16 keys, KV head)
/// walking its group's query heads in turn.
#[cube(launch)]
fn flash_tc_dkdv_kernel<F: Float, O: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    dout: &Tensor<F>,
    lse: &Tensor<f32>,
    delta: &Tensor<f32>,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    dk: &mut Tensor<O>,
    dv: &mut Tensor<O>,
    g: &Geometry,
    #[comptime] d: u32,
    #[comptime] planes: u32,
    #[comptime] flags: MaskFlags,
    #[comptime] split: bool,
    #[define(F, O, I)] _dtypes: [ElemType; 3],
) {
    let (batch, y, k0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * TILE);
    let kv_heads = g.heads / g.group;
    // The KV head, its query heads [first, first + count), and the heads of the outputs.
    let mut kv_head = y;
    let mut first = y * g.group;
    let mut count = g.group;
    let mut out_heads = kv_heads;
    if split {
        kv_head = y / g.group;
        first = y;
        count = 1;
        out_heads = g.heads;
    }
    let k_rows = min(g.t - k0, TILE);
    let k_base = ((batch * kv_heads + kv_head) * g.t + k0) as usize * d as usize;
    let out_base = ((batch * out_heads + y) * g.t + k0) as usize * d as usize;
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
    for head in range_stepped(first, first + count, 1u32) {
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
            let p = probabilities::<I>(
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
    write_rows::<O>(&dk_acc, g.scale, dk, out_base, k_rows, &mut part, d);
    write_rows::<O>(&dv_acc, 1.0f32, dv, out_base, k_rows, &mut part, d);
}

/// `dk[b, kv] = Σ_j part_k[b, kv·group + j]` (and `dv`), in order: the split dk/dv's heads added.
#[cube(launch)]
fn group_sum_kernel<F: Float>(
    part_k: &Tensor<f32>,
    part_v: &Tensor<f32>,
    dk: &mut Tensor<F>,
    dv: &mut Tensor<F>,
    group: u32,
    per_head: u32,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= dk.len() {
        terminate!();
    }
    let (head, rest) = (i / per_head as usize, i % per_head as usize);
    let (mut a, mut b) = (f32::new(0.0), f32::new(0.0));
    for j in 0..group {
        let at = (head * group as usize + j as usize) * per_head as usize + rest;
        a += part_k[at];
        b += part_v[at];
    }
    dk[i] = F::cast_from(a);
    dv[i] = F::cast_from(b);
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
    // A group of query heads per KV head: the heads in parallel, their shares added after.
    let split = h > kv;
    let (targets, outputs) = if split {
        let part = || {
            empty_device_contiguous_dtype(
                client.clone(),
                q.device.clone(),
                Shape::new([b, h, t, d]),
                DType::F32,
            )
        };
        let (pk, pv) = (part(), part());
        ((pk.clone(), pv.clone()), Some((pk, pv)))
    } else {
        ((dk.clone(), dv.clone()), None)
    };
    let out_type = elem(targets.0.dtype);
    flash_tc_dkdv_kernel::launch(
        &client,
        grid_of(t, TILE, if split { h } else { kv }, b),
        cube_dim(d),
        arg(&q),
        arg(&k),
        arg(&v),
        arg(&dout),
        arg(&lse),
        arg(delta),
        arg(&valid),
        arg(&segments),
        targets.0.into_tensor_arg(),
        targets.1.into_tensor_arg(),
        g_dkdv,
        d32,
        planes,
        flags,
        split,
        [dtypes[0], out_type, dtypes[1]],
    );
    if let Some((pk, pv)) = outputs {
        let n = b * kv * t * d;
        let dim = CubeDim::new(&client, n);
        let u = |x: usize| u32::try_from(x).expect("flash attention: sizes fit u32");
        group_sum_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, n, dim),
            dim,
            pk.into_tensor_arg(),
            pv.into_tensor_arg(),
            arg(dk),
            arg(dv),
            u(h / kv),
            u(t * d),
            dtypes[0],
        );
    }
}
