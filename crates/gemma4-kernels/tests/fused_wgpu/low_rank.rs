//! A projection's output with LoRA's change added as one op (`fused::low_rank_add`) against
//! the plain ops on the CPU: the output and the gradients of `x`, `a`, `b` and the output it
//! is added to, in f32 and (where the device has it) with f16 `x` and output, row counts that
//! are not a multiple of the kernels' chunks, widths on both sides of their blocks, and the
//! narrow side on either operand of the tall products; f16's thin products on tensor cores
//! where the device has them (ragged rows and `k`, ranks 16, 4 and 1).

use burn::tensor::{DType, Device, Tensor, TensorData};
use gemma4_kernels::fused;

use super::{gpu, random, rel_l2, values};

/// `y = base + s·(x·aᵀ)·bᵀ` (`x` and `base` in `dtype`) and the gradients of `x`, `a`, `b`,
/// `base` under `loss = Σ y·w`.
fn change(
    data: [&TensorData; 5],
    dtype: DType,
    device: &Device,
    fused_path: bool,
) -> [Vec<f64>; 5] {
    let ad = device.clone().autodiff();
    let [x, a, b, base, w] = data.map(|d| Tensor::<2>::from_data(d.clone(), &ad));
    let (x, base) = (x.cast(dtype).require_grad(), base.cast(dtype).require_grad());
    let (a, b) = (a.require_grad(), b.require_grad());
    let y = if fused_path {
        fused::low_rank_add(x.clone(), a.clone(), b.clone(), base.clone(), 0.5)
    } else {
        let xa = x.clone().cast(DType::F32).matmul(a.clone().transpose());
        base.clone() + xa.matmul(b.clone().transpose()).mul_scalar(0.5).cast(dtype)
    };
    assert_eq!(y.dtype(), dtype, "the output keeps base's dtype");
    let grads = (y.clone().cast(DType::F32) * w).sum().backward();
    let grad = |t: &Tensor<2>| values(t.grad(&grads).expect("tracked"));
    [values(y), grad(&x), grad(&a), grad(&b), grad(&base)]
}

#[test]
fn low_rank_add_matches_the_plain_ops_forward_and_backward() {
    let Some(device) = gpu() else { return };
    let before = fused::tall_launches();
    let tc_before = fused::thin_tensor_core_launches();
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 2e-3)] {
        if !device.supports_dtype(dtype) {
            eprintln!("{dtype:?}: not supported by this device, skipped");
            continue;
        }
        // [rows, in, out, rank]: ragged chunks, both wide sides past one block, rank 1.
        for [n, k, out, r] in [[300, 70, 520, 16], [129, 600, 40, 4], [64, 33, 12, 1]] {
            let data = [random([n, k]), random([r, k]), random([out, r]), random([n, out])];
            let w = random([n, out]);
            let inputs = [&data[0], &data[1], &data[2], &data[3], &w];
            let want = change(inputs, DType::F32, &Device::flex(), false);
            let got = change(inputs, dtype, &device, true);
            let errs: Vec<f64> = got.iter().zip(&want).map(|(g, e)| rel_l2(g, e)).collect();
            let text: Vec<String> = errs.iter().map(|e| format!("{e:.2e}")).collect();
            eprintln!("low rank add {dtype:?} [{n}, {k}, {out}, {r}]: y dx da db dbase {text:?}");
            assert!(errs.iter().all(|&e| e <= tol), "[{n}, {k}, {out}, {r}] {dtype:?}: {errs:?}");
        }
    }
    let ran = fused::tall_launches() - before;
    eprintln!("tall products: {ran} launches");
    assert!(ran >= 6, "the factors' gradients went through the tall kernel ({ran} launches)");
    // f16 `x·Aᵀ` and `dy·B` on tensor cores where the device has cooperative matrices
    // (`GEMMA4_TUNE_REQUIRE_TENSOR_CORES=1` fails if they did not run: two per f16 case).
    let tc = fused::thin_tensor_core_launches() - tc_before;
    eprintln!("thin products on tensor cores: {tc} launches");
    if std::env::var("GEMMA4_TUNE_REQUIRE_TENSOR_CORES").is_ok_and(|v| v == "1") {
        assert!(tc >= 6, "the f16 thin products ran on tensor cores ({tc} launches)");
    }
}
