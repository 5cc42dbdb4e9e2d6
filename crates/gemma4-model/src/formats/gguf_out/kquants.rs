//! f32 → the block formats llama.cpp's `Q4_K_M` mix writes: Q4_K (256 values: 8 groups of 32,
//! each `y = d·sc·q − dmin·m` with 4-bit `q` and 6-bit `sc`, `m`), Q6_K (256 values: 16 groups
//! of 16, `y = d·sc·(q − 32)` with 6-bit `q` and an 8-bit signed `sc`) and Q5_0 (32 values,
//! `y = d·(q − 16)`, its fallback for rows that are not whole 256-blocks). The layouts are the
//! ones `formats::quant` decodes; the rounding is a plain min/max fit per group, not
//! llama.cpp's iterative search, so the error is a little larger than its encoder's.

use half::f16;

/// `v` rounded and held in `[lo, hi]`.
fn level(v: f32, lo: i32, hi: i32) -> i32 {
    (v.round() as i32).clamp(lo, hi)
}

/// One Q4_K block (144 bytes) of 256 values.
pub fn q4_k(x: &[f32], out: &mut Vec<u8>) {
    // Per group of 32: the step and the offset (the negated minimum, at least 0).
    let mut steps = [0f32; 8];
    let mut offs = [0f32; 8];
    for (g, vals) in x.chunks_exact(32).enumerate() {
        let lo = vals.iter().fold(0f32, |m, &v| m.min(v));
        let hi = vals.iter().fold(f32::MIN, |m, &v| m.max(v));
        steps[g] = (hi - lo).max(0.0) / 15.0;
        offs[g] = -lo;
    }
    let d = steps.iter().fold(0f32, |m, &v| m.max(v)) / 63.0;
    let dmin = offs.iter().fold(0f32, |m, &v| m.max(v)) / 63.0;
    let (d16, dmin16) = (f16::from_f32(d), f16::from_f32(dmin));
    let (d, dmin) = (d16.to_f32(), dmin16.to_f32());
    let inv = |v: f32, s: f32| if s > 0.0 { v / s } else { 0.0 };
    let sc: Vec<u8> = steps.iter().map(|&s| level(inv(s, d), 0, 63) as u8).collect();
    let mn: Vec<u8> = offs.iter().map(|&o| level(inv(o, dmin), 0, 63) as u8).collect();
    out.extend(d16.to_le_bytes());
    out.extend(dmin16.to_le_bytes());
    // The 12 scale bytes: groups 0–3 in the low 6 bits of bytes 0–3 (scales) and 4–7 (mins),
    // groups 4–7 as nibbles of bytes 8–11 with their top 2 bits above groups 0–3's.
    let mut scales = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            scales[j] |= sc[j] & 63;
            scales[j + 4] |= mn[j] & 63;
        } else {
            scales[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
            scales[j - 4] |= (sc[j] >> 4) << 6;
            scales[j] |= (mn[j] >> 4) << 6;
        }
    }
    out.extend(scales);
    let q = |g: usize, v: f32| {
        let step = d * sc[g] as f32;
        level(inv(v + dmin * mn[g] as f32, step), 0, 15) as u8
    };
    // 32 bytes per pair of groups: group 2i in the low nibbles, 2i + 1 in the high ones.
    for i in 0..4 {
        let (a, b) = (&x[64 * i..64 * i + 32], &x[64 * i + 32..64 * i + 64]);
        out.extend((0..32).map(|l| q(2 * i, a[l]) | (q(2 * i + 1, b[l]) << 4)));
    }
}

/// One Q6_K block (210 bytes) of 256 values.
pub fn q6_k(x: &[f32], out: &mut Vec<u8>) {
    // Per group of 16: the signed value of largest magnitude maps to −32.
    let mut steps = [0f32; 16];
    for (g, vals) in x.chunks_exact(16).enumerate() {
        let max = vals.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        steps[g] = max / -32.0;
    }
    let d16 = f16::from_f32(steps.iter().fold(0f32, |m, &v| m.max(v.abs())) / 127.0);
    let d = d16.to_f32();
    let sc: Vec<i8> =
        steps.iter().map(|&s| if d > 0.0 { level(s / d, -128, 127) as i8 } else { 0 }).collect();
    let q: Vec<u8> = x
        .iter()
        .enumerate()
        .map(|(e, &v)| {
            let step = d * sc[e / 16] as f32;
            if step == 0.0 { 32 } else { (level(v / step, -32, 31) + 32) as u8 }
        })
        .collect();
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for n in 0..2 {
        let h = &q[128 * n..128 * n + 128];
        for l in 0..32 {
            ql[64 * n + l] = (h[l] & 0xF) | ((h[l + 64] & 0xF) << 4);
            ql[64 * n + l + 32] = (h[l + 32] & 0xF) | ((h[l + 96] & 0xF) << 4);
            qh[32 * n + l] = (h[l] >> 4)
                | ((h[l + 32] >> 4) << 2)
                | ((h[l + 64] >> 4) << 4)
                | ((h[l + 96] >> 4) << 6);
        }
    }
    out.extend(ql);
    out.extend(qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend(d16.to_le_bytes());
}

/// One Q5_0 block (22 bytes) of 32 values.
pub fn q5_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d16 = f16::from_f32(max / -16.0);
    let d = d16.to_f32();
    let q = |v: f32| if d != 0.0 { (level(v / d, -16, 15) + 16) as u32 } else { 16 };
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let (a, b) = (q(x[j]), q(x[j + 16]));
        qs[j] = ((a & 0xF) | ((b & 0xF) << 4)) as u8;
        qh |= ((a >> 4) & 1) << j;
        qh |= ((b >> 4) & 1) << (j + 16);
    }
    out.extend(d16.to_le_bytes());
    out.extend(qh.to_le_bytes());
    out.extend(qs);
}
