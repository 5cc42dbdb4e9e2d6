//! The tensor-core matmul (`fused::matmul`) against the f32 product on the CPU: the output and
//! both operands' gradients, in f16 and bf16 where the device has them, for every way the
//! operands lie (contiguous, or a transposed view read as it lies), with sizes that are not
//! multiples of the kernel's blocks, and a size it does not take (Burn's matmul then).

use burn::tensor::{DType, Device, Tensor, TensorData};
use gemma4_kernels::fused;

use super::{gpu, random, rel_l2, values};

/// `c = a·b` and the gradients of `a` and `b` under `loss = Σ c·w`; `a_t`/`b_t` pass each
/// operand as a transposed view of its transposed copy.
fn product(
    data: [&TensorData; 3],
    views: [bool; 2],
    device: &Device,
    dtype: DType,
    tiled: bool,
) -> [Vec<f64>; 3] {
    let ad = device.clone().autodiff();
    let [a, b, w] = data.map(|d| Tensor::<2>::from_data(d.clone(), &ad));
    let lay = |t: Tensor<2>, view: bool| {
        let t = if view { t.transpose().cast(dtype).transpose() } else { t.cast(dtype) };
        t.require_grad()
    };
    let (a, b) = (lay(a, views[0]), lay(b, views[1]));
    let c = if tiled { fused::matmul(a.clone(), b.clone()) } else { a.clone().matmul(b.clone()) };
    assert_eq!(c.dtype(), dtype, "the product keeps the inputs' dtype");
    let grads = (c.clone().cast(DType::F32) * w).sum().backward();
    let (da, db) = (a.grad(&grads).expect("a is tracked"), b.grad(&grads).expect("b too"));
    [values(c), values(da), values(db)]
}

fn check(device: &Device, [m, k, n]: [usize; 3], dtype: DType, tol: f64) {
    let (a, b, w) = (random([m, k]), random([k, n]), random([m, n]));
    for views in [[false, false], [false, true], [true, false], [true, true]] {
        let want = product([&a, &b, &w], [false; 2], &Device::flex(), DType::F32, false);
        let got = product([&a, &b, &w], views, device, dtype, true);
        let what = format!("[{m}, {k}]·[{k}, {n}] {dtype:?} transposed views {views:?}");
        let errs: Vec<f64> = got.iter().zip(&want).map(|(g, r)| rel_l2(g, r)).collect();
        eprintln!(
            "matmul {what}: c {:.2e}, da {:.2e}, db {:.2e} (bound {tol:.0e})",
            errs[0], errs[1], errs[2]
        );
        assert!(errs.iter().all(|&e| e <= tol), "matmul {what}: {errs:?} > {tol:.0e}");
    }
}

/// `GEMMA4_TUNE_REQUIRE_TENSOR_CORES=1` fails if the tensor cores did not run.
#[test]
fn tile_matmul_matches_the_reference_forward_and_backward() {
    let Some(device) = gpu() else { return };
    let before = fused::tile_matmul_launches();
    for (dtype, tol) in [(DType::F16, 3e-3), (DType::BF16, 2e-2)] {
        if !device.supports_dtype(dtype) {
            eprintln!("{dtype:?}: not supported by this device, skipped");
            continue;
        }
        // One block; blocks with ragged edges in every dimension; a long k.
        check(&device, [128, 32, 128], dtype, tol);
        check(&device, [200, 68, 132], dtype, tol);
        check(&device, [68, 1000, 260], dtype, tol);
        // k not a multiple of 4: Burn's matmul, same answer.
        check(&device, [20, 30, 12], dtype, tol);
    }
    let ran = fused::tile_matmul_launches() - before;
    eprintln!("matmul on tensor cores: {ran} launches");
    if std::env::var("GEMMA4_TUNE_REQUIRE_TENSOR_CORES").is_ok_and(|v| v == "1") {
        assert!(ran >= 24, "GEMMA4_TUNE_REQUIRE_TENSOR_CORES=1: only {ran} tensor-core launches");
    }
}
