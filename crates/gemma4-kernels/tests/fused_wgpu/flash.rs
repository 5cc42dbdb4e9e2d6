//! Flash attention on a wgpu device against the plain-op reference on the CPU: the output and
//! the gradients of q, k and v, on sizes that are not multiples of the kernel's tiles (odd
//! head dims too, and 256), grouped-query heads (4 on 1 and on 2), causal and bidirectional
//! rules with windows smaller and larger than the keys, a cache offset and a rotated key
//! start, right padding, packed segments and rows that see no key (zeros, zero gradients).

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use gemma4_kernels::reference::{AttentionRule, TokenMasks};
use gemma4_kernels::{fused, reference};

use super::{gpu, random, rel_l2, values};

/// One case: sizes, the rule, the per-token masks (`[b][t]`) and the dtype with its bound.
struct Case {
    /// `[b, h, kv, s, t, d]`
    dims: [usize; 6],
    rule: AttentionRule,
    valid: Option<Vec<i64>>,
    segments: Option<Vec<i64>>,
    dtype: DType,
    tol: f64,
}

fn rule(offset: usize, key_start: usize, causal: bool, window: Option<usize>) -> AttentionRule {
    AttentionRule { offset, key_start, causal, window, scale: 0.3 }
}

/// The output and the gradients of q, k, v under `loss = Σ o·c`.
fn attend(case: &Case, data: [&TensorData; 4], device: &Device, fused_path: bool) -> [Vec<f64>; 4] {
    let ad = device.clone().autodiff();
    let dtype = if fused_path { case.dtype } else { DType::F32 };
    let [q, k, v, c] = data.map(|d| Tensor::<4>::from_data(d.clone(), &ad));
    let [q, k, v] = [q, k, v].map(|t| t.cast(dtype).require_grad());
    let [b, _, _, _, t, _] = case.dims;
    let int = |v: &Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v.clone(), [b, t]), &ad);
    let (valid, segments) = (case.valid.as_ref().map(int), case.segments.as_ref().map(int));
    let masks = TokenMasks { valid: valid.as_ref(), segments: segments.as_ref() };
    let (qc, kc, vc) = (q.clone(), k.clone(), v.clone());
    let o = if fused_path {
        fused::flash_attention(qc, kc, vc, &case.rule, masks)
    } else {
        reference::flash_attention(qc, kc, vc, &case.rule, masks)
    };
    assert_eq!(o.dtype(), dtype, "the output keeps q's dtype");
    let grads = (o.clone().cast(DType::F32) * c).sum().backward();
    let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("tracked"));
    [values(o), grad(&q), grad(&k), grad(&v)]
}

/// Runs `case` both ways, checks every output, and returns the kernel's (o, dq, dk, dv).
fn check(device: &Device, case: &Case) -> [Vec<f64>; 4] {
    if case.dtype != DType::F32 && !device.supports_dtype(case.dtype) {
        eprintln!("{:?}: not supported by this device, skipped", case.dtype);
        return Default::default();
    }
    let [b, h, kv, s, t, d] = case.dims;
    let (q, c) = (random([b, h, s, d]), random([b, h, s, d]));
    let (k, v) = (random([b, kv, t, d]), random([b, kv, t, d]));
    let want = attend(case, [&q, &k, &v, &c], &Device::flex(), false);
    let got = attend(case, [&q, &k, &v, &c], device, true);
    let what = format!("{:?} {:?} {:?}", case.dims, case.rule, case.dtype);
    for (name, (g, w)) in ["o", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
        assert!(g.iter().all(|x| x.is_finite()), "flash {what} {name}: not finite");
        let e = rel_l2(g, w);
        let max = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!("flash {what} {name}: rel {e:.2e}, max abs {max:.2e} (bound {:.0e})", case.tol);
        assert!(e <= case.tol, "flash {what} {name}: {e:.2e} > {:.0e}", case.tol);
    }
    got
}

/// Batch entry 1 right-padded after `len` of `t` keys (entry 0 full).
fn padded(t: usize, len: usize) -> Vec<i64> {
    (0..2 * t).map(|i| i64::from(i < t || i - t < len)).collect()
}

#[test]
fn flash_attention_matches_the_reference_causal_padded_gqa() {
    let Some(device) = gpu() else { return };
    let f32_case = |dims, rule, valid| Case {
        dims,
        rule,
        valid,
        segments: None,
        dtype: DType::F32,
        tol: 1e-5,
    };
    // Odd sizes, 4 query heads on 2 KV heads, right padding.
    check(&device, &f32_case([2, 4, 2, 19, 19, 37], rule(0, 0, true, None), Some(padded(19, 13))));
    // 4 query heads on 1, windows smaller and larger than the keys.
    check(&device, &f32_case([1, 4, 1, 23, 23, 8], rule(0, 0, true, Some(5)), None));
    check(
        &device,
        &f32_case([2, 2, 1, 21, 21, 12], rule(0, 0, true, Some(40)), Some(padded(21, 9))),
    );
    // A cache: 5 queries after 10 cached tokens; a rotated window of 11 keys from position 12.
    check(&device, &f32_case([1, 4, 2, 5, 15, 16], rule(10, 0, true, None), None));
    check(&device, &f32_case([2, 2, 1, 3, 11, 16], rule(20, 12, true, Some(8)), None));
}

#[test]
fn flash_attention_matches_the_reference_bidirectional_and_packed() {
    let Some(device) = gpu() else { return };
    let case = |dims, rule, valid, segments| Case {
        dims,
        rule,
        valid,
        segments,
        dtype: DType::F32,
        tol: 1e-5,
    };
    check(&device, &case([1, 2, 1, 17, 17, 16], rule(0, 0, false, Some(3)), None, None));
    check(
        &device,
        &case([2, 4, 2, 18, 18, 9], rule(0, 0, false, None), Some(padded(18, 11)), None),
    );
    // Packed: 7 + 9 tokens, then 4 padding tokens in their own segment that see no valid key
    // (rows that see nothing: zeros, zero gradients).
    let seg: Vec<i64> = (0..20)
        .map(|i| {
            if i < 7 {
                0
            } else if i < 16 {
                1
            } else {
                2
            }
        })
        .collect();
    let segments = [seg.clone(), seg].concat();
    let valid: Vec<i64> = (0..40).map(|i| i64::from(i % 20 < 16)).collect();
    let packed = rule(0, 0, true, None);
    let dims = [2, 4, 1, 20, 20, 24];
    let [o, dq, _, _] =
        check(&device, &case(dims, packed, Some(valid.clone()), Some(segments.clone())));
    // [b, h, s, d]: rows 16.. of every (batch, head) see nothing: exactly zero, zero gradient.
    for (row, (o, dq)) in o.chunks(24).zip(dq.chunks(24)).enumerate() {
        if row % 20 >= 16 {
            assert!(o.iter().chain(dq).all(|&x| x == 0.0), "row {row} sees no key: zeros");
        }
    }
    check(
        &device,
        &case([2, 2, 2, 20, 20, 8], rule(0, 0, true, Some(4)), Some(valid), Some(segments)),
    );
}

#[test]
fn flash_attention_matches_the_reference_wide_heads_and_f16() {
    let Some(device) = gpu() else { return };
    let causal = rule(0, 0, true, None);
    let case =
        |dims, dtype, tol| Case { dims, rule: causal, valid: None, segments: None, dtype, tol };
    // Gemma 4's head dims: 256 (sliding), 512 (full), scaled by d^-½. The offset inputs' dot
    // products over 512 terms differ by their f32 summation order alone: dq reaches ~9e-6
    // relative in repeated runs, hence the wider bound there.
    for (d, s, tol) in [(256, 18, 1e-5), (512, 9, 3e-5)] {
        let scaled = AttentionRule { scale: (d as f64).powf(-0.5), ..causal };
        check(&device, &Case { rule: scaled, ..case([1, 2, 1, s, s, d], DType::F32, tol) });
    }
    check(
        &device,
        &Case { valid: Some(padded(19, 13)), ..case([2, 4, 2, 19, 19, 37], DType::F16, 5e-3) },
    );
}

/// The tensor-core kernels (f16 and bf16, head dims 64, 256 and 512) against the f32
/// reference, where the device has cooperative matrices; elsewhere the scalar kernels run the
/// same cases. `GEMMA4_TUNE_REQUIRE_TENSOR_CORES=1` fails if the tensor cores did not run.
#[test]
fn flash_attention_on_tensor_cores_matches_the_reference() {
    let Some(device) = gpu() else { return };
    let before = fused::flash_tensor_core_launches();
    let seg: Vec<i64> = (0..2 * 37).map(|i| i64::from(i % 37 >= 20)).collect();
    for (dtype, tol) in [(DType::F16, 5e-3), (DType::BF16, 3e-2)] {
        let case = |dims, rule, valid, segments| Case { dims, rule, valid, segments, dtype, tol };
        let scaled =
            |d: usize, r: AttentionRule| AttentionRule { scale: (d as f64).powf(-0.5), ..r };
        // Odd rows and keys, 4 query heads on 2, right padding, packed segments.
        check(
            &device,
            &case(
                [2, 4, 2, 37, 37, 64],
                scaled(64, rule(0, 0, true, None)),
                Some(padded(37, 29)),
                Some(seg.clone()),
            ),
        );
        // Gemma 4's sliding layer (window smaller than the keys, 8 heads on 1) and full layer.
        check(
            &device,
            &case([1, 8, 1, 45, 45, 256], scaled(256, rule(0, 0, true, Some(9))), None, None),
        );
        check(
            &device,
            &case([1, 2, 1, 21, 21, 512], scaled(512, rule(0, 0, true, None)), None, None),
        );
        // Bidirectional window; a cache offset with a rotated key start.
        check(
            &device,
            &case([1, 2, 2, 19, 19, 64], scaled(64, rule(0, 0, false, Some(6))), None, None),
        );
        check(
            &device,
            &case([2, 4, 1, 7, 30, 128], scaled(128, rule(40, 17, true, Some(20))), None, None),
        );
    }
    let ran = fused::flash_tensor_core_launches() - before;
    eprintln!("flash on tensor cores: {ran} forward launches");
    if std::env::var("GEMMA4_TUNE_REQUIRE_TENSOR_CORES").is_ok_and(|v| v == "1") {
        // Five cases per half dtype the device has (Vulkan: f16 only).
        let halves = [DType::F16, DType::BF16].iter().filter(|d| device.supports_dtype(**d));
        let want = 5 * halves.count() as u64;
        assert!(
            want > 0 && ran >= want,
            "GEMMA4_TUNE_REQUIRE_TENSOR_CORES=1: {ran} tensor-core launches, {want} expected"
        );
    }
}

/// A KV-shared layer: the donor's k and v serve the donor's attention (sliding window) and the
/// sharer's (causal), and their gradients are the sum of both. q comes as a transposed view,
/// as the model makes it.
fn shared_kv(data: [&TensorData; 5], device: &Device, fused_path: bool) -> [Vec<f64>; 4] {
    let ad = device.clone().autodiff();
    let [q1, q2, k, v, c] = data.map(|d| Tensor::<4>::from_data(d.clone(), &ad));
    let [q1, q2, k, v] = [q1, q2, k, v].map(|t| t.require_grad());
    let attend = |q: &Tensor<4>, rule: AttentionRule| {
        let (q, k, v) = (q.clone().swap_dims(1, 2), k.clone(), v.clone()); // [b, h, s, d]
        let masks = TokenMasks::default();
        if fused_path {
            fused::flash_attention(q, k, v, &rule, masks)
        } else {
            reference::flash_attention(q, k, v, &rule, masks)
        }
    };
    let o1 = attend(&q1, rule(0, 0, true, Some(4)));
    let o2 = attend(&q2, rule(0, 0, true, None));
    let loss = (o1.clone() * c.clone()).sum() + (o2 * c).sum();
    let grads = loss.backward();
    let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("tracked"));
    [values(o1), grad(&q2), grad(&k), grad(&v)]
}

#[test]
fn flash_attention_sends_shared_kv_gradients_to_the_donor() {
    let Some(device) = gpu() else { return };
    let (b, h, kv, s, d) = (1, 4, 2, 13, 16);
    let (q1, q2) = (random([b, s, h, d]), random([b, s, h, d])); // [b, s, h, d]
    let (k, v, c) = (random([b, kv, s, d]), random([b, kv, s, d]), random([b, h, s, d]));
    let data = [&q1, &q2, &k, &v, &c];
    let want = shared_kv(data, &Device::flex(), false);
    let got = shared_kv(data, &device, true);
    for (name, (g, w)) in ["o", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
        let e = rel_l2(g, w);
        eprintln!("flash shared kv {name}: rel {e:.2e} (bound 1e-5)");
        assert!(e <= 1e-5, "flash shared kv {name}: {e:.2e} > 1e-5");
    }
}
