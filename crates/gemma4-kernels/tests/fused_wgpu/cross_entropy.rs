//! The fused LM loss against the plain ops: the per-row losses and the raw logits' gradient,
//! through autodiff and without a tape in column blocks, with and without the softcap.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use gemma4_kernels::{fused, reference};

use super::{gpu, random, rel_l2, values};

/// The per-row losses and the raw logits' gradient under `Σ loss·c`.
fn loss_and_grad(
    inputs: [&TensorData; 3],
    device: &Device,
    dtype: DType,
    cap: Option<f64>,
    fused_path: bool,
) -> [Vec<f64>; 2] {
    let ad = device.clone().autodiff();
    let [raw, labels, c] = inputs;
    // Logits of a head's size: spread so the softcap (30) matters.
    let raw = Tensor::<2>::from_data(raw.clone(), &ad).mul_scalar(20.0).cast(dtype).require_grad();
    let labels = Tensor::<1, Int>::from_data(labels.clone(), &ad);
    let c = Tensor::<1>::from_data(c.clone(), &ad);
    let loss = if fused_path {
        fused::softcap_cross_entropy(raw.clone(), labels, cap)
    } else {
        reference::softcap_cross_entropy(raw.clone(), labels, cap)
    };
    assert_eq!(loss.dtype(), DType::F32);
    let grads = (loss.clone() * c).sum().backward();
    [values(loss), values(raw.grad(&grads).expect("raw is tracked"))]
}

/// [`fused::softcap_cross_entropy_grad`] (the losses and `dloss·∂loss/∂raw` in `split` column
/// blocks, no tape) on `device`, the blocks put back in `[n, V]` order.
fn loss_and_blocked_grad(
    [raw, labels, c]: [&TensorData; 3],
    device: &Device,
    dtype: DType,
    cap: Option<f64>,
    split: usize,
) -> [Vec<f64>; 2] {
    let raw = Tensor::<2>::from_data(raw.clone(), device).mul_scalar(20.0).cast(dtype);
    let [n, v] = raw.dims();
    let labels = Tensor::<1, Int>::from_data(labels.clone(), device);
    let c = Tensor::<1>::from_data(c.clone(), device);
    let (loss, draw) = fused::softcap_cross_entropy_grad(raw, labels, cap, c, split);
    assert_eq!(draw.dims(), [split, n, v / split]);
    [values(loss), values(draw.swap_dims(0, 1).reshape([n, v]))]
}

#[test]
fn softcap_cross_entropy_grad_in_blocks_matches_autodiff() {
    let (rows, vocab) = (5, 300);
    let raw = random([rows, vocab]);
    let labels = TensorData::new(vec![0i64, 299, 17, 150, 17], [rows]);
    let c = random([rows]);
    // The plain-op formula on the CPU first, then the kernel on the GPU (both against autodiff).
    let mut devices = vec![(Device::flex(), "cpu")];
    devices.extend(gpu().map(|d| (d, "gpu")));
    for (device, name) in &devices {
        let mut cases = vec![(DType::F32, 1e-5)];
        if device.supports_dtype(DType::F16) && *name == "gpu" {
            cases.push((DType::F16, 2e-3));
        }
        for ((dtype, tol), cap, split) in cases.iter().flat_map(|c| {
            [(Some(30.0), 1), (Some(30.0), 3), (None, 4)].map(|(cap, split)| (*c, cap, split))
        }) {
            let want = loss_and_grad([&raw, &labels, &c], &Device::flex(), dtype, cap, false);
            let got = loss_and_blocked_grad([&raw, &labels, &c], device, dtype, cap, split);
            for (what, (g, w)) in ["loss", "draw"].iter().zip(got.iter().zip(&want)) {
                let e = rel_l2(g, w);
                eprintln!(
                    "{name} cross-entropy grad {split} blocks {cap:?} {dtype:?} {what}: {e:.2e}"
                );
                assert!(
                    e <= tol,
                    "{name} {split} blocks {cap:?} {dtype:?} {what}: {e:.2e} > {tol:.0e}"
                );
            }
        }
    }
}

#[test]
fn softcap_cross_entropy_matches_the_reference() {
    let Some(device) = gpu() else { return };
    let (rows, vocab) = (5, 300);
    let raw = random([rows, vocab]);
    let labels = TensorData::new(vec![0i64, 299, 17, 150, 17], [rows]);
    let c = random([rows]);
    for cap in [Some(30.0), None] {
        let mut cases = vec![(DType::F32, 1e-5)];
        if device.supports_dtype(DType::F16) {
            cases.push((DType::F16, 2e-3));
        }
        for (dtype, tol) in cases {
            // The reference on the CPU from the same (rounded) logits, in f32 inside: logits of
            // ±40 in f16 are off by up to 0.016, which moves the softmax itself by 1.6%.
            let want = loss_and_grad([&raw, &labels, &c], &Device::flex(), dtype, cap, false);
            let got = loss_and_grad([&raw, &labels, &c], &device, dtype, cap, true);
            for (name, (g, w)) in ["loss", "draw"].iter().zip(got.iter().zip(&want)) {
                let e = rel_l2(g, w);
                eprintln!("cross-entropy cap {cap:?} {dtype:?} {name}: {e:.2e} (bound {tol:.0e})");
                assert!(
                    e <= tol,
                    "cross-entropy cap {cap:?} {dtype:?} {name}: {e:.2e} > {tol:.0e}"
                );
            }
        }
    }
}
