//! The fused kernels on a wgpu device against the plain-op reference on the CPU: forward values
//! and every input's gradient, f32 and (where the device has it) f16, odd widths, widths above
//! the kernels' block, head shapes; RMSNorm with and without a scale; the softmax with a
//! per-batch and a broadcast mask, a fully masked (padding) row and a scale; the loss
//! (`cross_entropy.rs`), flash attention (`flash.rs`), f16's row-scaled GeGLU
//! (`geglu_scaled.rs`), the tensor-core matmul (`matmul.rs`), LoRA's change (`low_rank.rs`) and
//! the optimizer (`optimizer.rs`).
//!
//! Runs on any Vulkan or Metal device, Mesa's software Vulkan (lavapipe) included, which
//! `.ci/run` installs. Without a device the tests skip with a message, except where
//! `GEMMA4_TUNE_REQUIRE_GPU_TESTS=1` (set by `.ci/run`): there they fail. In a `cuda` build
//! (or with `GEMMA4_TEST_DEVICE=cuda` in a build with both) they run on CUDA device 0.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

#[path = "fused_wgpu/cross_entropy.rs"]
mod cross_entropy;
#[path = "fused_wgpu/flash.rs"]
mod flash;
#[path = "fused_wgpu/geglu_scaled.rs"]
mod geglu_scaled;
#[path = "fused_wgpu/low_rank.rs"]
mod low_rank;
#[path = "fused_wgpu/matmul.rs"]
mod matmul;
#[path = "fused_wgpu/optimizer.rs"]
mod optimizer;

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use gemma4_kernels::{fused, reference};

/// The wgpu device, or `None` (with a message) where none can be opened and none is required.
fn gpu() -> Option<Device> {
    let probe = std::panic::catch_unwind(|| {
        let device = open();
        let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        let _ = t.sum().into_data();
        device
    });
    match probe {
        Ok(device) => Some(device),
        Err(_) if std::env::var("GEMMA4_TUNE_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1") => {
            panic!("no wgpu device, and GEMMA4_TUNE_REQUIRE_GPU_TESTS=1 requires one")
        }
        Err(_) => {
            eprintln!("skipped: no wgpu (Vulkan/Metal) device; install mesa-vulkan-drivers");
            None
        }
    }
}

/// CUDA device 0 in a `cuda` build without `wgpu` or with `GEMMA4_TEST_DEVICE=cuda`, else the
/// default wgpu device.
fn open() -> Device {
    #[cfg(feature = "cuda")]
    if cfg!(not(feature = "wgpu")) || std::env::var("GEMMA4_TEST_DEVICE").is_ok_and(|v| v == "cuda")
    {
        return Device::cuda(0);
    }
    #[cfg(feature = "wgpu")]
    return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    #[cfg(not(feature = "wgpu"))]
    unreachable!("a cuda build without wgpu opened CUDA above")
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.cast(DType::F32).into_data().iter::<f32>().map(f64::from).collect()
}

/// ‖a − b‖ / ‖b‖.
fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Host data of a random tensor (offset so rows have a non-zero mean, as activations do).
fn random<const D: usize>(shape: [usize; D]) -> TensorData {
    Tensor::<D>::random(shape, Distribution::Uniform(-1.0, 2.0), &Device::flex()).into_data()
}

/// The norm's output and the input's gradient under `loss = Σ y·c` for a fixed `c`.
fn norm_and_grad<const D: usize>(
    x: &TensorData,
    w: Option<&TensorData>,
    c: &TensorData,
    device: &Device,
    dtype: DType,
    fused_path: bool,
) -> (Vec<f64>, Vec<f64>) {
    let ad = device.clone().autodiff();
    let x = Tensor::<D>::from_data(x.clone(), &ad).cast(dtype).require_grad();
    let w = w.map(|w| Tensor::<1>::from_data(w.clone(), &ad));
    let c = Tensor::<D>::from_data(c.clone(), &ad);
    let y = if fused_path {
        fused::rms_norm(x.clone(), w.as_ref(), 1e-6)
    } else {
        reference::rms_norm(x.clone(), w.as_ref(), 1e-6)
    };
    assert_eq!(y.dtype(), dtype, "the norm keeps the input's dtype");
    let grads = (y.clone().cast(DType::F32) * c).sum().backward();
    let dx = x.grad(&grads).expect("x is tracked");
    (values(y), values(dx))
}

fn check_rms_norm<const D: usize>(device: &Device, shape: [usize; D], dtype: DType, tol: f64) {
    let d = shape[D - 1];
    let x = random(shape);
    let c = random(shape);
    let w = random([d]);
    for weight in [Some(&w), None] {
        let (y_ref, dx_ref) =
            norm_and_grad::<D>(&x, weight, &c, &Device::flex(), DType::F32, false);
        let (y, dx) = norm_and_grad::<D>(&x, weight, &c, device, dtype, true);
        let (ey, edx) = (rel_l2(&y, &y_ref), rel_l2(&dx, &dx_ref));
        let what = format!("{shape:?} {dtype:?} weight: {}", weight.is_some());
        eprintln!("rms_norm {what}: y {ey:.2e}, dx {edx:.2e} (bound {tol:.0e})");
        assert!(ey <= tol && edx <= tol, "rms_norm {what}: y {ey:.2e}, dx {edx:.2e} > {tol:.0e}");
    }
}

#[test]
fn rms_norm_matches_the_reference_forward_and_backward() {
    let Some(device) = gpu() else { return };
    assert!(fused::enabled(&device), "the fused kernels are on for a wgpu device");
    // Odd width below the block, a width above it (not a multiple), head-shaped rows.
    check_rms_norm(&device, [3, 5, 37], DType::F32, 1e-5);
    check_rms_norm(&device, [2, 700], DType::F32, 1e-5);
    check_rms_norm(&device, [1, 3, 4, 256], DType::F32, 1e-5);
    if device.supports_dtype(DType::F16) {
        check_rms_norm(&device, [3, 5, 37], DType::F16, 2e-3);
        check_rms_norm(&device, [2, 700], DType::F16, 2e-3);
    } else {
        eprintln!("f16: not supported by this device, skipped");
    }
}

/// GeGLU's output and both inputs' gradients under `loss = Σ h·c`.
fn geglu_and_grads<const D: usize>(
    inputs: [&TensorData; 3],
    device: &Device,
    dtype: DType,
    fused_path: bool,
) -> [Vec<f64>; 3] {
    let ad = device.clone().autodiff();
    let [gate, up, c] = inputs;
    let gate = Tensor::<D>::from_data(gate.clone(), &ad).cast(dtype).require_grad();
    let up = Tensor::<D>::from_data(up.clone(), &ad).cast(dtype).require_grad();
    let c = Tensor::<D>::from_data(c.clone(), &ad);
    let h = if fused_path {
        fused::geglu(gate.clone(), up.clone())
    } else {
        reference::geglu(gate.clone(), up.clone())
    };
    assert_eq!(h.dtype(), dtype);
    let grads = (h.clone().cast(DType::F32) * c).sum().backward();
    let dgate = gate.grad(&grads).expect("gate is tracked");
    let dup = up.grad(&grads).expect("up is tracked");
    [values(h), values(dgate), values(dup)]
}

fn check_geglu<const D: usize>(device: &Device, shape: [usize; D], dtype: DType, tol: f64) {
    let (gate, up, c) = (random(shape), random(shape), random(shape));
    let want = geglu_and_grads::<D>([&gate, &up, &c], &Device::flex(), DType::F32, false);
    let got = geglu_and_grads::<D>([&gate, &up, &c], device, dtype, true);
    for (name, (g, w)) in ["h", "dgate", "dup"].iter().zip(got.iter().zip(&want)) {
        let e = rel_l2(g, w);
        eprintln!("geglu {shape:?} {dtype:?} {name}: {e:.2e} (bound {tol:.0e})");
        assert!(e <= tol, "geglu {shape:?} {dtype:?} {name}: {e:.2e} > {tol:.0e}");
    }
}

#[test]
fn geglu_matches_the_reference_forward_and_backward() {
    let Some(device) = gpu() else { return };
    check_geglu(&device, [3, 5, 37], DType::F32, 1e-5);
    check_geglu(&device, [2, 700], DType::F32, 1e-5);
    if device.supports_dtype(DType::F16) {
        check_geglu(&device, [3, 5, 37], DType::F16, 2e-3);
    }
}

/// An additive mask `[mb, 1, s, t]`: causal, and every key of query row 0 of batch entry 0
/// masked (as a padding query is).
fn causal_bias(mb: usize, s: usize, t: usize) -> TensorData {
    let mut v = vec![0.0f32; mb * s * t];
    for bi in 0..mb {
        for i in 0..s {
            for j in 0..t {
                if j > i + (t - s) || (bi == 0 && i == 0) {
                    v[(bi * s + i) * t + j] = -1.0e30;
                }
            }
        }
    }
    TensorData::new(v, [mb, 1, s, t])
}

fn softmax_and_grad(
    inputs: [&TensorData; 3],
    device: &Device,
    dtype: DType,
    scale: f64,
    fused_path: bool,
) -> [Vec<f64>; 2] {
    let ad = device.clone().autodiff();
    let [scores, bias, c] = inputs;
    let scores = Tensor::<4>::from_data(scores.clone(), &ad).cast(dtype).require_grad();
    let bias = Tensor::<4>::from_data(bias.clone(), &ad);
    let c = Tensor::<4>::from_data(c.clone(), &ad);
    let p = if fused_path {
        fused::masked_softmax(scores.clone(), bias, scale)
    } else {
        reference::masked_softmax(scores.clone(), bias, scale)
    };
    assert_eq!(p.dtype(), dtype);
    let grads = (p.clone().cast(DType::F32) * c).sum().backward();
    [values(p), values(scores.grad(&grads).expect("scores are tracked"))]
}

fn check_softmax(
    device: &Device,
    shape: [usize; 4],
    mb: usize,
    scale: f64,
    dtype: DType,
    tol: f64,
) {
    let [_, _, s, t] = shape;
    let (scores, c, bias) = (random(shape), random(shape), causal_bias(mb, s, t));
    let want = softmax_and_grad([&scores, &bias, &c], &Device::flex(), DType::F32, scale, false);
    let got = softmax_and_grad([&scores, &bias, &c], device, dtype, scale, true);
    for (name, (g, w)) in ["p", "dscores"].iter().zip(got.iter().zip(&want)) {
        let e = rel_l2(g, w);
        eprintln!("softmax {shape:?} mask batch {mb} scale {scale} {dtype:?} {name}: {e:.2e}");
        assert!(e <= tol, "softmax {shape:?} {dtype:?} {name}: {e:.2e} > {tol:.0e}");
    }
}

#[test]
fn masked_softmax_matches_the_reference_forward_and_backward() {
    let Some(device) = gpu() else { return };
    // Keys fewer than the block, keys above it (not a multiple), per-batch and broadcast masks.
    check_softmax(&device, [2, 3, 5, 9], 2, 1.0, DType::F32, 1e-5);
    check_softmax(&device, [2, 2, 4, 300], 1, 0.7, DType::F32, 1e-5);
    if device.supports_dtype(DType::F16) {
        check_softmax(&device, [2, 3, 5, 9], 2, 1.0, DType::F16, 2e-3);
    }
}

#[test]
fn rms_norm_on_an_empty_batch_is_empty() {
    let Some(device) = gpu() else { return };
    let x = Tensor::<3>::zeros([0, 4, 8], &device);
    let y = fused::rms_norm(x, None, 1e-6);
    assert_eq!(y.dims(), [0, 4, 8]);
}

/// RoPE's output and the input's gradient under `loss = Σ y·c`.
fn rope_and_grad(
    [x, cos, sin, c]: [&TensorData; 4],
    device: &Device,
    dtype: DType,
    fused_path: bool,
) -> (Vec<f64>, Vec<f64>) {
    let ad = device.clone().autodiff();
    let x = Tensor::<4>::from_data(x.clone(), &ad).cast(dtype).require_grad();
    let (cos, sin) = (Tensor::from_data(cos.clone(), &ad), Tensor::from_data(sin.clone(), &ad));
    let c = Tensor::<4>::from_data(c.clone(), &ad);
    let y = if fused_path {
        fused::rope(x.clone(), &cos, &sin)
    } else {
        reference::rope(x.clone(), &cos, &sin)
    };
    assert_eq!(y.dtype(), dtype, "RoPE keeps the input's dtype");
    let grads = (y.clone().cast(DType::F32) * c).sum().backward();
    (values(y), values(x.grad(&grads).expect("x is tracked")))
}

#[test]
fn rope_matches_the_reference_forward_and_backward() {
    let Some(device) = gpu() else { return };
    // Broadcast tables and per-batch ones (packed positions), a head dim above the block.
    for (shape, tables, dtype, tol) in [
        ([2, 5, 3, 8], 1, DType::F32, 1e-6),
        ([2, 7, 2, 6], 2, DType::F32, 1e-6),
        ([1, 3, 2, 512], 1, DType::F32, 1e-6),
        ([2, 5, 3, 8], 2, DType::F16, 2e-3),
    ] {
        if dtype == DType::F16 && !device.supports_dtype(DType::F16) {
            eprintln!("f16: not supported by this device, skipped");
            continue;
        }
        let [b, s, h, d] = shape;
        let (x, c) = (random([b, s, h, d]), random([b, s, h, d]));
        let (cos, sin) = (random([tables, s, 1, d]), random([tables, s, 1, d]));
        let inputs = [&x, &cos, &sin, &c];
        let (y_ref, dx_ref) = rope_and_grad(inputs, &Device::flex(), DType::F32, false);
        let (y, dx) = rope_and_grad(inputs, &device, dtype, true);
        let (ey, edx) = (rel_l2(&y, &y_ref), rel_l2(&dx, &dx_ref));
        eprintln!("rope {shape:?} tables {tables} {dtype:?}: y {ey:.2e}, dx {edx:.2e}");
        assert!(ey <= tol && edx <= tol, "rope {shape:?} {dtype:?}: {ey:.2e}, {edx:.2e} > {tol}");
    }
}
