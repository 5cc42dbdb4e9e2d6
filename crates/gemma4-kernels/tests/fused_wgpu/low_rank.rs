//! LoRA's change as one op (`fused::low_rank`) against Burn's plain products on the CPU: the
//! output and the gradients of `x`, `a` and `b`, in f32, with row counts that are not a
//! multiple of the kernel's chunk, widths on both sides of its block, and the narrow side on
//! either operand of the tall products.

use burn::tensor::{Device, Tensor, TensorData};
use gemma4_kernels::fused;

use super::{gpu, random, rel_l2, values};

/// `y = s·(x·aᵀ)·bᵀ` and the gradients of `x`, `a`, `b` under `loss = Σ y·w`.
fn change(data: [&TensorData; 4], scale: f64, device: &Device, fused_path: bool) -> [Vec<f64>; 4] {
    let ad = device.clone().autodiff();
    let [x, a, b, w] = data.map(|d| Tensor::<2>::from_data(d.clone(), &ad));
    let (x, a, b) = (x.require_grad(), a.require_grad(), b.require_grad());
    let y = if fused_path {
        fused::low_rank(x.clone(), a.clone(), b.clone(), scale)
    } else {
        x.clone().matmul(a.clone().transpose()).matmul(b.clone().transpose()).mul_scalar(scale)
    };
    let grads = (y.clone() * w).sum().backward();
    let grad = |t: &Tensor<2>| values(t.grad(&grads).expect("tracked"));
    [values(y), grad(&x), grad(&a), grad(&b)]
}

#[test]
fn low_rank_change_matches_the_plain_products_forward_and_backward() {
    let Some(device) = gpu() else { return };
    let before = fused::tall_launches();
    // [rows, in, out, rank]: ragged chunks (300 rows), both wide sides past one block, rank 1.
    for [n, k, out, r] in [[300, 70, 520, 16], [129, 600, 40, 4], [64, 33, 12, 1]] {
        let (x, a, b, w) = (random([n, k]), random([r, k]), random([out, r]), random([n, out]));
        let want = change([&x, &a, &b, &w], 0.5, &Device::flex(), false);
        let got = change([&x, &a, &b, &w], 0.5, &device, true);
        let errs: Vec<f64> = got.iter().zip(&want).map(|(g, e)| rel_l2(g, e)).collect();
        let text: Vec<String> = errs.iter().map(|e| format!("{e:.2e}")).collect();
        eprintln!("low rank [{n}, {k}]·[{r}, {k}]ᵀ·[{out}, {r}]ᵀ: y, dx, da, db {text:?}");
        assert!(errs.iter().all(|&e| e <= 1e-5), "low rank [{n}, {k}, {out}, {r}]: {errs:?}");
    }
    let ran = fused::tall_launches() - before;
    eprintln!("tall products: {ran} launches");
    assert!(ran >= 6, "the factors' gradients went through the tall kernel ({ran} launches)");
}
