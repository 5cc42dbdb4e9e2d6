//! Flash attention's forward kernel, and what its backward kernels (`flash_backward.rs`) share:
//! the mask rule evaluated per (query, key), the key or query range a block can see, and the
//! tile of dot products.
//!
//! One cube of 256 units per (batch, query head, block of [`BQ`] queries). The keys are walked in
//! tiles of [`BK`]: the `[BQ, BK]` scores come from `Q` and `K` chunks of [`DC`] columns staged
//! in shared memory (one score per unit), then each unit updates its query row's online softmax
//! (f32 maximum and sum, every unit of a row keeps the same copy) and its `d / U` columns of the
//! output (registers). No `[s, t]` scores exist anywhere; the forward stores the output and the
//! per-row log-sum-exp.
//!
//! The mask is computed here from a rule (absolute query and key positions, causal, sliding
//! window, bidirectional window: gemma4-model's `MaskSpec::masked`) and two optional per-token
//! `[b, t]` integer tensors: key validity (right padding) and packed segment ids. A query row
//! that sees no key gives zeros (and a log-sum-exp of [`EMPTY`]); its gradients are zero.
//! Grouped-query heads read their KV head `h / (heads / kv)` in place (K/V are not repeated).

use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::ops::FlashRule;
use super::rows::{elem, int_elem, like};

/// Queries per block (rows of the score tile).
pub const BQ: u32 = 16;
/// Keys per tile (columns of the score tile); also the units sharing one row ([`U`]).
pub const BK: u32 = 16;
/// Units per query row: a unit owns columns `lane + U·i` of its row's output.
pub const U: u32 = 16;
/// Units per cube (`BQ · U`).
pub const UNITS: u32 = 256;
/// Head-dim columns staged per step of the dot products.
pub const DC: u32 = 64;
/// The staged chunks' row stride (one float of padding spreads the rows over the banks).
pub const PITCH: u32 = DC + 1;
/// The log-sum-exp stored for a row that sees no key (and the running maximum's start).
pub const EMPTY: f32 = -3.0e38;

/// The compile-time half of the mask rule: each combination is its own kernel.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MaskFlags {
    /// Keys after the query are hidden (else bidirectional).
    pub causal: bool,
    /// A sliding window applies ([`Geometry::window`]).
    pub windowed: bool,
    /// Key validity (right padding) is read.
    pub has_valid: bool,
    /// Segment ids are read.
    pub has_segments: bool,
}

/// The runtime half of the mask rule and the sizes, shared by the three kernels.
#[derive(CubeLaunch, CubeType)]
pub struct Geometry {
    /// Queries and keys per (batch, head).
    pub s: u32,
    pub t: u32,
    /// Query heads, and query heads per KV head.
    pub heads: u32,
    pub group: u32,
    /// Absolute positions of query 0 and key 0.
    pub q_pos0: i32,
    pub k_pos0: i32,
    /// The sliding window (read when the kernel is compiled with one).
    pub window: i32,
    /// Query `i` is key `i + seg_shift` for the segment ids.
    pub seg_shift: i32,
    /// Multiplies `q·k`.
    pub scale: f32,
}

/// Whether the position rule lets query position `qp` see key position `kp`.
#[cube]
pub fn rule_allows(
    qp: i32,
    kp: i32,
    window: i32,
    #[comptime] causal: bool,
    #[comptime] windowed: bool,
) -> bool {
    let gap = qp - kp;
    let mut ok = true;
    if comptime!(causal) {
        ok = gap >= 0;
        if comptime!(windowed) {
            ok = ok && gap < window;
        }
    } else if comptime!(windowed) {
        ok = gap <= window && -gap <= window;
    }
    ok
}

/// Whether query `qi` sees key `kj` of batch entry `batch` (both indices in range): the rule,
/// then the key's validity and the segments. Reads at clamped indices only.
#[cube]
pub fn visible<I: Int>(
    qi: u32,
    kj: u32,
    batch: u32,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    g: &Geometry,
    #[comptime] flags: MaskFlags,
) -> bool {
    let qp = g.q_pos0 + i32::cast_from(qi);
    let kp = g.k_pos0 + i32::cast_from(kj);
    let mut ok = rule_allows(qp, kp, g.window, flags.causal, flags.windowed);
    let row = batch as usize * g.t as usize;
    if comptime!(flags.has_valid) {
        ok = ok && i32::cast_from(valid[row + kj as usize]) != 0;
    }
    if comptime!(flags.has_segments) {
        let qk = i32::cast_from(qi) + g.seg_shift;
        let inside = qk >= 0 && qk < i32::cast_from(g.t);
        let at = min(max(qk, 0), i32::cast_from(g.t) - 1);
        let q_seg = select(inside, i32::cast_from(segments[row + at as usize]), -1);
        ok = ok && q_seg == i32::cast_from(segments[row + kj as usize]);
    }
    ok
}

/// The keys `[lo, hi)` the position rule can show to queries `[q0, q1)` (`q1 > q0`).
#[cube]
pub fn key_range(q0: u32, q1: u32, g: &Geometry, #[comptime] flags: MaskFlags) -> (u32, u32) {
    let first = g.q_pos0 + i32::cast_from(q0) - g.k_pos0; // query q0's position as a key index
    let last = g.q_pos0 + i32::cast_from(q1) - 1 - g.k_pos0;
    let t = i32::cast_from(g.t);
    let mut lo = i32::new(0);
    let mut hi = t;
    if comptime!(flags.causal) {
        hi = last + 1;
        if comptime!(flags.windowed) {
            lo = first - g.window + 1;
        }
    } else if comptime!(flags.windowed) {
        lo = first - g.window;
        hi = last + g.window + 1;
    }
    let lo = min(max(lo, 0), t);
    let hi = min(max(hi, lo), t);
    (lo as u32, hi as u32)
}

/// The queries `[lo, hi)` the position rule can show keys `[k0, k1)` to (`k1 > k0`).
#[cube]
pub fn query_range(k0: u32, k1: u32, g: &Geometry, #[comptime] flags: MaskFlags) -> (u32, u32) {
    let first = g.k_pos0 + i32::cast_from(k0) - g.q_pos0; // key k0's position as a query index
    let last = g.k_pos0 + i32::cast_from(k1) - 1 - g.q_pos0;
    let s = i32::cast_from(g.s);
    let mut lo = i32::new(0);
    let mut hi = s;
    if comptime!(flags.causal) {
        lo = first;
        if comptime!(flags.windowed) {
            hi = last + g.window;
        }
    } else if comptime!(flags.windowed) {
        lo = first - g.window;
        hi = last + g.window + 1;
    }
    let lo = min(max(lo, 0), s);
    let hi = min(max(hi, lo), s);
    (lo as u32, hi as u32)
}

/// `a[r]·b[j]` over `d` columns for this unit's `(r, j) = (unit / BK, unit % BK)`, with `a`'s
/// rows `a_base + r·d` (`a_rows` of them exist) and `b`'s `b_base + j·d` (`b_rows`); missing
/// rows read as zeros. Every unit of the cube must call it (it synchronises).
#[cube]
pub fn dot_tile<F: Float>(
    a: &Tensor<F>,
    b: &Tensor<F>,
    bases: (usize, usize),
    rows: (u32, u32),
    stage: &mut Shared<[f32]>,
    #[comptime] d: u32,
) -> f32 {
    let (a_base, b_base) = bases;
    let (a_rows, b_rows) = rows;
    let r = UNIT_POS_X / BK;
    let j = UNIT_POS_X % BK;
    let half = (BQ * PITCH) as usize; // `b`'s chunk follows `a`'s
    let mut acc = f32::new(0.0);
    for c0 in range_stepped(0u32, d, DC) {
        sync_cube();
        #[unroll]
        for m in 0..(BQ * DC / UNITS) {
            let e = UNIT_POS_X + m * UNITS;
            let (row, col) = (e / DC, e % DC);
            let inside = c0 + col < d;
            let at = (row * PITCH + col) as usize;
            let a_ok = inside && row < a_rows;
            let a_at = select(a_ok, a_base + (row * d + c0 + col) as usize, 0);
            stage[at] = select(a_ok, f32::cast_from(a[a_at]), 0.0f32);
            let b_ok = inside && row < b_rows;
            let b_at = select(b_ok, b_base + (row * d + c0 + col) as usize, 0);
            stage[half + at] = select(b_ok, f32::cast_from(b[b_at]), 0.0f32);
        }
        sync_cube();
        let (ra, rb) = ((r * PITCH) as usize, half + (j * PITCH) as usize);
        #[unroll]
        for c in 0..DC {
            acc += stage[ra + c as usize] * stage[rb + c as usize];
        }
    }
    acc
}

#[cube(launch)]
fn flash_forward_kernel<F: Float, I: Int>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    valid: &Tensor<I>,
    segments: &Tensor<I>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<f32>,
    g: &Geometry,
    #[comptime] d: u32,
    #[comptime] flags: MaskFlags,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let (batch, head, q0) = (CUBE_POS_Z, CUBE_POS_Y, CUBE_POS_X * BQ);
    let kv_head = head / g.group;
    let (r, lane) = (UNIT_POS_X / U, UNIT_POS_X % U);
    let qi = q0 + r;
    let q_rows = min(g.s - q0, BQ);
    let q_base = ((batch * g.heads + head) * g.s + q0) as usize * d as usize;
    let kv_base = ((batch * (g.heads / g.group) + kv_head) * g.t) as usize * d as usize;
    let mut stage = Shared::<[f32]>::new_slice((2 * BQ * PITCH) as usize);
    let mut scores = Shared::<[f32]>::new_slice((BQ * BK) as usize);
    let mut acc = Array::<f32>::new(comptime!(d.div_ceil(U) as usize));
    #[unroll]
    for i in 0..d.div_ceil(U) {
        acc[i as usize] = 0.0f32;
    }
    let mut m = f32::new(EMPTY);
    let mut l = f32::new(0.0);
    let (lo, hi) = key_range(q0, q0 + q_rows, g, flags);
    for k0 in range_stepped(lo, hi, BK) {
        let k_rows = min(hi - k0, BK);
        let dot = dot_tile::<F>(
            q,
            k,
            (q_base, kv_base + (k0 * d) as usize),
            (q_rows, k_rows),
            &mut stage,
            d,
        );
        let kj = k0 + UNIT_POS_X % BK;
        let seen = UNIT_POS_X % BK < k_rows
            && r < q_rows
            && visible::<I>(min(qi, g.s - 1), min(kj, g.t - 1), batch, valid, segments, g, flags);
        scores[UNIT_POS_X as usize] = select(seen, dot * g.scale, EMPTY);
        sync_cube();
        // The row's online softmax, kept alike by its U units.
        let row = (r * BK) as usize;
        let mut tile_max = f32::new(EMPTY);
        for j in 0..BK {
            tile_max = max(tile_max, scores[row + j as usize]);
        }
        let m_new = max(m, tile_max);
        let alpha = (m - m_new).exp();
        l *= alpha;
        #[unroll]
        for i in 0..d.div_ceil(U) {
            acc[i as usize] *= alpha;
        }
        for j in 0..k_rows {
            let sc = scores[row + j as usize];
            if sc > EMPTY {
                let p = (sc - m_new).exp();
                l += p;
                let v_row = kv_base + ((k0 + j) * d) as usize;
                #[unroll]
                for i in 0..d.div_ceil(U) {
                    let col = lane + i * U;
                    if col < d {
                        acc[i as usize] += p * f32::cast_from(v[v_row + col as usize]);
                    }
                }
            }
        }
        m = m_new;
    }
    if r < q_rows {
        let inv = select(l > 0.0f32, 1.0f32 / l, 0.0f32);
        let o_row = q_base + (r * d) as usize;
        #[unroll]
        for i in 0..d.div_ceil(U) {
            let col = lane + i * U;
            if col < d {
                out[o_row + col as usize] = F::cast_from(acc[i as usize] * inv);
            }
        }
        if lane == 0 {
            let at = ((batch * g.heads + head) * g.s + qi) as usize;
            lse[at] = select(l > 0.0f32, m + l.ln(), EMPTY);
        }
    }
}

/// The kernels' sizes and rule from the tensors' shapes and the [`FlashRule`].
pub fn geometry(q: &CubeTensor, k: &CubeTensor, rule: &FlashRule) -> GeometryLaunch {
    let [b, h, s, d] = q.meta.shape().dims::<4>();
    let [kb, kv, t, kd] = k.meta.shape().dims::<4>();
    assert!(
        kb == b && kd == d && kv > 0 && h.is_multiple_of(kv),
        "flash attention: q [{b}, {h}, {s}, {d}] and k/v [{kb}, {kv}, {t}, {kd}] do not fit"
    );
    let to_u32 = |v: usize| u32::try_from(v).expect("flash attention: sizes fit u32");
    GeometryLaunch::new(
        to_u32(s),
        to_u32(t),
        to_u32(h),
        to_u32(h / kv),
        rule.q_pos0,
        rule.k_pos0,
        rule.window.unwrap_or(0),
        rule.q_pos0 - rule.k_pos0,
        rule.scale,
    )
}

/// The compile-time switches of a rule.
pub fn flags(rule: &FlashRule) -> MaskFlags {
    MaskFlags {
        causal: rule.causal,
        windowed: rule.window.is_some(),
        has_valid: rule.has_valid,
        has_segments: rule.has_segments,
    }
}

/// A `[b, h, s]` f32 tensor on `q`'s device.
pub fn rows_f32(q: &CubeTensor) -> CubeTensor {
    let [b, h, s, _] = q.meta.shape().dims::<4>();
    empty_device_contiguous_dtype(
        q.client.clone(),
        q.device.clone(),
        Shape::new([b, h, s]),
        DType::F32,
    )
}

/// The grid of one cube per (block of `per` rows, head, batch entry).
pub fn grid_of(blocks_of: usize, per: u32, heads: usize, batch: usize) -> CubeCount {
    let c = |v: usize| u32::try_from(v).expect("flash attention: grid fits u32");
    CubeCount::Static(c(blocks_of.div_ceil(per as usize)), c(heads), c(batch))
}

/// Attention with the mask of `rule`; returns the output (q's dtype) and the per-row
/// log-sum-exp of the scaled, masked scores (f32, [`EMPTY`] for rows that see no key).
///
/// # Shapes
/// - q: `[b, h, s, d]`, k, v: `[b, kv, t, d]`, valid, segments: `[b, t]` (int; read when the
///   rule says so) → (`[b, h, s, d]`, `[b, h, s]`)
pub fn forward(
    [q, k, v, valid, segments]: [CubeTensor; 5],
    rule: &FlashRule,
) -> (CubeTensor, CubeTensor) {
    let [q, k, v, valid, segments] = [q, k, v, valid, segments].map(into_contiguous);
    assert!(q.dtype == k.dtype && k.dtype == v.dtype, "flash attention: q, k, v dtypes differ");
    assert_eq!(k.meta.shape(), v.meta.shape(), "flash attention: k and v shapes differ");
    let [b, h, s, d] = q.meta.shape().dims::<4>();
    let (out, lse) = (like(&q), rows_f32(&q));
    if b * h * s == 0 || d == 0 {
        return (out, lse);
    }
    let g = geometry(&q, &k, rule);
    if super::flash_tc::usable(&q) {
        return super::flash_tc::forward([q, k, v, valid, segments], out, lse, g, flags(rule));
    }
    let dtypes = [elem(q.dtype), int_elem(valid.dtype)];
    let d = u32::try_from(d).expect("flash attention: head dim fits u32");
    flash_forward_kernel::launch(
        &q.client.clone(),
        grid_of(s, BQ, h, b),
        CubeDim::new_1d(UNITS),
        q.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        valid.into_tensor_arg(),
        segments.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        g,
        d,
        flags(rule),
        dtypes,
    );
    (out, lse)
}
