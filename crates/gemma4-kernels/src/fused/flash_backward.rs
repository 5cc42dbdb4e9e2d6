//! Flash attention's backward in two kernels (no atomics, no `[s, t]` tensor), recomputing the
//! probabilities `p = exp(q·k·scale − lse)` tile by tile from the forward's log-sum-exp:
//!
//! - `dq`: one cube per (batch, query head, block of queries), the same walk over key tiles as
//!   the forward. It first forms `D = Σ dO∘O` per row (written out for the second kernel), then
//!   per tile `dp = dO·vᵀ`, `ds = p·(dp − D)` and `dq += ds·k·scale`.
//! - `dk`/`dv`: one cube per (batch, KV head, block of keys), walking every query head of the
//!   group and the query tiles that can see the block: `dv += pᵀ·dO`, `dk += dsᵀ·q·scale`. The
//!   group's heads are summed in registers, so a KV head's gradient is written once.
//!
//! Masked entries (and rows that see no key) have `p = 0`, so they add nothing anywhere.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::zeros_client;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::flash_attention::{
    BK, BQ, Geometry, MaskFlags, PITCH, U, UNITS, dot_tile, flags, geometry, grid_of, key_range,
    query_range, rows_f32, visible,
};
use super::ops::FlashRule;
use super::rows::{elem, int_elem, like};

#[cube(launch)]
fn flash_dq_kernel<F: Float, I: Int>(
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
    #[comptime] flags: MaskFlags,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let (batch, head, q0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * BQ);
    let (r, lane) = (UNIT_POS_X / U, UNIT_POS_X % U);
    let qi = q0 + r;
    let q_rows = min(g.s - q0, BQ);
    let q_base = ((batch * g.heads + head) * g.s + q0) as usize * d as usize;
    let kv_head = head / g.group;
    let kv_base = ((batch * (g.heads / g.group) + kv_head) * g.t) as usize * d as usize;
    let row_at = ((batch * g.heads + head) * g.s + min(qi, g.s - 1)) as usize;
    let mut stage = Shared::<[f32]>::new_slice((2 * BQ * PITCH) as usize);
    let mut tile = Shared::<[f32]>::new_slice(UNITS as usize);
    // D = Σ dO∘O of this unit's row: partial sums over its columns, then the row's U of them.
    let mut part = f32::new(0.0);
    if r < q_rows {
        let at = q_base + (r * d) as usize;
        for col in range_stepped(lane, d, U) {
            part += f32::cast_from(dout[at + col as usize]) * f32::cast_from(o[at + col as usize]);
        }
    }
    tile[UNIT_POS_X as usize] = part;
    sync_cube();
    let mut dsum = f32::new(0.0);
    for i in 0..U {
        dsum += tile[(r * U + i) as usize];
    }
    if r < q_rows && lane == 0 {
        delta[row_at] = dsum;
    }
    let row_lse = lse[row_at];
    let mut acc = Array::<f32>::new(comptime!(d.div_ceil(U) as usize));
    #[unroll]
    for i in 0..d.div_ceil(U) {
        acc[i as usize] = 0.0f32;
    }
    let (lo, hi) = key_range(q0, q0 + q_rows, g, flags);
    for k0 in range_stepped(lo, hi, BK) {
        let k_rows = min(hi - k0, BK);
        let k_at = kv_base + (k0 * d) as usize;
        let s = dot_tile::<F>(q, k, (q_base, k_at), (q_rows, k_rows), &mut stage, d);
        let dp = dot_tile::<F>(dout, v, (q_base, k_at), (q_rows, k_rows), &mut stage, d);
        let kj = k0 + UNIT_POS_X % BK;
        let seen = UNIT_POS_X % BK < k_rows
            && r < q_rows
            && visible::<I>(min(qi, g.s - 1), min(kj, g.t - 1), batch, valid, segments, g, flags);
        let p = select(seen, (s * g.scale - row_lse).exp(), 0.0f32);
        sync_cube(); // the D partials (first tile) or the last tile's ds are read
        tile[UNIT_POS_X as usize] = p * (dp - dsum);
        sync_cube();
        for j in 0..k_rows {
            let ds = tile[(r * BK + j) as usize];
            let k_row = k_at + (j * d) as usize;
            #[unroll]
            for i in 0..d.div_ceil(U) {
                let col = lane + i * U;
                if col < d {
                    acc[i as usize] += ds * f32::cast_from(k[k_row + col as usize]);
                }
            }
        }
    }
    if r < q_rows {
        let at = q_base + (r * d) as usize;
        #[unroll]
        for i in 0..d.div_ceil(U) {
            let col = lane + i * U;
            if col < d {
                dq[at + col as usize] = F::cast_from(acc[i as usize] * g.scale);
            }
        }
    }
}

#[cube(launch)]
fn flash_dkdv_kernel<F: Float, I: Int>(
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
    #[comptime] flags: MaskFlags,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let (batch, kv_head, k0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * BK);
    let kv_heads = g.heads / g.group;
    let k_rows = min(g.t - k0, BK);
    let k_at = ((batch * kv_heads + kv_head) * g.t + k0) as usize * d as usize;
    // Score-tile coordinates (query r, key j) and accumulation ones (key row, lane).
    let (r, j) = (UNIT_POS_X / BK, UNIT_POS_X % BK);
    let (key, lane) = (UNIT_POS_X / U, UNIT_POS_X % U);
    let mut stage = Shared::<[f32]>::new_slice((2 * BQ * PITCH) as usize);
    let mut p_tile = Shared::<[f32]>::new_slice(UNITS as usize);
    let mut ds_tile = Shared::<[f32]>::new_slice(UNITS as usize);
    let mut dk_acc = Array::<f32>::new(comptime!(d.div_ceil(U) as usize));
    let mut dv_acc = Array::<f32>::new(comptime!(d.div_ceil(U) as usize));
    #[unroll]
    for i in 0..d.div_ceil(U) {
        dk_acc[i as usize] = 0.0f32;
        dv_acc[i as usize] = 0.0f32;
    }
    let (lo, hi) = query_range(k0, k0 + k_rows, g, flags);
    for head in range_stepped(kv_head * g.group, (kv_head + 1) * g.group, 1u32) {
        let head_row = (batch * g.heads + head) * g.s;
        for q0 in range_stepped(lo, hi, BQ) {
            let q_rows = min(hi - q0, BQ);
            let q_at = (head_row + q0) as usize * d as usize;
            let s = dot_tile::<F>(q, k, (q_at, k_at), (q_rows, k_rows), &mut stage, d);
            let dp = dot_tile::<F>(dout, v, (q_at, k_at), (q_rows, k_rows), &mut stage, d);
            let qi = min(q0 + r, g.s - 1);
            let seen = r < q_rows
                && j < k_rows
                && visible::<I>(qi, k0 + min(j, k_rows - 1), batch, valid, segments, g, flags);
            let row_at = (head_row + qi) as usize;
            let p = select(seen, (s * g.scale - lse[row_at]).exp(), 0.0f32);
            p_tile[UNIT_POS_X as usize] = p;
            ds_tile[UNIT_POS_X as usize] = p * (dp - delta[row_at]);
            sync_cube();
            for rr in 0..q_rows {
                let pv = p_tile[(rr * BK + key) as usize];
                let ds = ds_tile[(rr * BK + key) as usize];
                let at = q_at + (rr * d) as usize;
                #[unroll]
                for i in 0..d.div_ceil(U) {
                    let col = lane + i * U;
                    if col < d {
                        dv_acc[i as usize] += pv * f32::cast_from(dout[at + col as usize]);
                        dk_acc[i as usize] += ds * f32::cast_from(q[at + col as usize]);
                    }
                }
            }
        }
    }
    if key < k_rows {
        let at = k_at + (key * d) as usize;
        #[unroll]
        for i in 0..d.div_ceil(U) {
            let col = lane + i * U;
            if col < d {
                dk[at + col as usize] = F::cast_from(dk_acc[i as usize] * g.scale);
                dv[at + col as usize] = F::cast_from(dv_acc[i as usize]);
            }
        }
    }
}

/// The gradients of [`super::flash_attention::forward`] with respect to q, k and v (each in
/// its dtype), from the forward's output `o`, its log-sum-exp and the output's gradient.
///
/// # Shapes
/// - q, o, dout: `[b, h, s, d]`, k, v: `[b, kv, t, d]`, lse: `[b, h, s]`, valid, segments:
///   `[b, t]` → (`[b, h, s, d]`, `[b, kv, t, d]`, `[b, kv, t, d]`)
pub fn backward(
    [q, k, v, o, lse, dout]: [CubeTensor; 6],
    [valid, segments]: [CubeTensor; 2],
    rule: &FlashRule,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let [q, k, v, o, lse, dout] = [q, k, v, o, lse, dout].map(into_contiguous);
    let [valid, segments] = [valid, segments].map(into_contiguous);
    assert!(o.dtype == q.dtype && dout.dtype == q.dtype, "flash attention backward: dtypes differ");
    let [b, h, s, d] = q.meta.shape().dims::<4>();
    let [_, kv, t, _] = k.meta.shape().dims::<4>();
    if b * h * s * t == 0 || d == 0 {
        // No key or no query: nothing is attended, every gradient is zero.
        let zeros = |x: &CubeTensor| {
            zeros_client(x.client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype)
        };
        return (zeros(&q), zeros(&k), zeros(&v));
    }
    let (dq, dk, dv, delta) = (like(&q), like(&k), like(&v), rows_f32(&q));
    let client = q.client.clone();
    let dtypes = [elem(q.dtype), int_elem(valid.dtype)];
    let d32 = u32::try_from(d).expect("flash attention: head dim fits u32");
    if super::flash_tc::usable(&q) {
        let gs = [geometry(&q, &k, rule), geometry(&q, &k, rule)];
        super::flash_tc_backward::backward(
            [q, k, v, o, lse, dout],
            [valid, segments],
            [&dq, &dk, &dv, &delta],
            gs,
            flags(rule),
            dtypes,
        );
        return (dq, dk, dv);
    }
    let arg = |t: &CubeTensor| t.clone().into_tensor_arg();
    flash_dq_kernel::launch(
        &client,
        grid_of(s, BQ, h, b),
        CubeDim::new_1d(UNITS),
        arg(&q),
        arg(&k),
        arg(&v),
        o.into_tensor_arg(),
        arg(&dout),
        arg(&lse),
        arg(&valid),
        arg(&segments),
        arg(&dq),
        arg(&delta),
        geometry(&q, &k, rule),
        d32,
        flags(rule),
        dtypes,
    );
    flash_dkdv_kernel::launch(
        &client,
        grid_of(t, BQ, kv, b),
        CubeDim::new_1d(UNITS),
        arg(&q),
        arg(&k),
        arg(&v),
        arg(&dout),
        arg(&lse),
        arg(&delta),
        arg(&valid),
        arg(&segments),
        arg(&dk),
        arg(&dv),
        geometry(&q, &k, rule),
        d32,
        flags(rule),
        dtypes,
    );
    (dq, dk, dv)
}
