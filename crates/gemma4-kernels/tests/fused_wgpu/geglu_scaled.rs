//! f16's row-scaled GeGLU (`fused::geglu_scaled`) against the plain ops on the CPU: the row
//! scales (powers of two, exactly), the activation they undo (`h·s`) and the gradients of gate
//! and up, with rows whose product passes f16's range and rows that need no scale, widths below
//! and above the kernel's block.

use burn::tensor::{DType, Device, Tensor, TensorData};
use gemma4_kernels::{fused, reference};

use super::{gpu, random, rel_l2, values};

/// `(h·s, s, dgate, dup)` under `loss = Σ (h·s)·c` (the down projection's view: `s` is off the
/// tape).
fn scaled_and_grads(
    data: [&TensorData; 3],
    device: &Device,
    dtype: DType,
    fused_path: bool,
) -> [Vec<f64>; 4] {
    let ad = device.clone().autodiff();
    let [gate, up, c] = data.map(|d| Tensor::<3>::from_data(d.clone(), &ad));
    let (gate, up) = (gate.cast(dtype).require_grad(), up.cast(dtype).require_grad());
    let (h, s) = if fused_path {
        fused::geglu_scaled(gate.clone(), up.clone())
    } else {
        reference::geglu_scaled(gate.clone(), up.clone())
    };
    assert_eq!((h.dtype(), s.dtype()), (dtype, DType::F32));
    let act = h.cast(DType::F32) * s.clone();
    let grads = (act.clone() * c).sum().backward();
    let dgate = gate.grad(&grads).expect("gate is tracked");
    let dup = up.grad(&grads).expect("up is tracked");
    [values(act), values(s), values(dgate), values(dup)]
}

/// Random rows, every third one multiplied by `big` (its product then reaches `big²`).
fn rows(shape: [usize; 3], big: f32) -> TensorData {
    let t = Tensor::<3>::from_data(random(shape), &Device::flex());
    let n = shape[0] * shape[1];
    let factor: Vec<f32> = (0..n).map(|r| if r % 3 == 1 { big } else { 1.0 }).collect();
    let factor =
        Tensor::<3>::from_data(TensorData::new(factor, [shape[0], shape[1], 1]), &Device::flex());
    (t * factor).into_data()
}

fn check(device: &Device, shape: [usize; 3], dtype: DType, tol: f64) {
    let (gate, up, c) = (rows(shape, 150.0), rows(shape, 150.0), random(shape));
    let want = scaled_and_grads([&gate, &up, &c], &Device::flex(), DType::F32, false);
    let got = scaled_and_grads([&gate, &up, &c], device, dtype, true);
    assert_eq!(got[1], want[1], "{shape:?} {dtype:?}: the row scales");
    assert!(want[1].iter().any(|&s| s > 1.0), "some rows are scaled: {:?}", want[1]);
    assert!(want[1].contains(&1.0), "some rows are not");
    for (name, (g, w)) in ["h·s", "s", "dgate", "dup"].iter().zip(got.iter().zip(&want)) {
        let e = rel_l2(g, w);
        eprintln!("geglu_scaled {shape:?} {dtype:?} {name}: {e:.2e} (bound {tol:.0e})");
        assert!(e <= tol, "geglu_scaled {shape:?} {dtype:?} {name}: {e:.2e} > {tol:.0e}");
    }
}

#[test]
fn geglu_scaled_matches_the_reference_forward_and_backward() {
    let Some(device) = gpu() else { return };
    check(&device, [2, 3, 37], DType::F32, 1e-5);
    check(&device, [1, 5, 700], DType::F32, 1e-5);
    if device.supports_dtype(DType::F16) {
        check(&device, [2, 3, 37], DType::F16, 2e-3);
        check(&device, [2, 3, 1030], DType::F16, 2e-3);
    } else {
        eprintln!("f16: not supported by this device, skipped");
    }
}
