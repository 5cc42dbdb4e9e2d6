//! The optimizer's kernels against the plain ops on the CPU: two AdamW steps (the second
//! gradient a transposed view, as the backward gives) and the clip's square sums.

use burn::tensor::{Device, Tensor, TensorData};
use gemma4_kernels::{fused, reference};

use super::{gpu, random, rel_l2, values};

/// Two AdamW steps (with weight decay and a gradient factor on the device) of a `[5, 37]` tensor
/// on `device`; the second gradient is a transposed view (`g2` holds `[37, 5]`), as the backward
/// gives.
fn two_adamw_steps(device: &Device, inputs: [&TensorData; 3]) -> [Vec<f64>; 3] {
    let [p, g1, g2] = inputs.map(|d| Tensor::<2>::from_data(d.clone(), device));
    let g2 = g2.transpose();
    let mut s = gemma4_kernels::AdamwStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 1,
    };
    let half = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), device);
    let (p, m, v) = fused::adamw(p, g1, None, &half, &s);
    s.step = 2;
    let (p, m, v) = fused::adamw(p, g2, Some((m, v)), &half, &s);
    [values(p), values(m), values(v)]
}

#[test]
fn adamw_matches_the_reference() {
    let Some(device) = gpu() else { return };
    let (p, g1, g2) = (random([5, 37]), random([5, 37]), random([37, 5]));
    let got = two_adamw_steps(&device, [&p, &g1, &g2]);
    let want = two_adamw_steps(&Device::flex(), [&p, &g1, &g2]);
    for (name, (g, w)) in ["param", "m", "v"].iter().zip(got.iter().zip(&want)) {
        let e = rel_l2(g, w);
        eprintln!("adamw {name}: {e:.2e} (bound 1e-6)");
        assert!(e <= 1e-6, "adamw {name}: {e:.2e} > 1e-6");
    }
}

#[test]
fn square_sums_match_the_reference() {
    let Some(device) = gpu() else { return };
    // Eleven tensors: a launch's group of eight and a short one.
    let shapes = [[5, 37], [300, 7], [16, 2], [1, 1], [64, 33], [2, 900], [7, 7], [3, 5]];
    let data: Vec<TensorData> = shapes.iter().chain(&shapes[..3]).map(|s| random(*s)).collect();
    let on = |d: &Device| -> Vec<Tensor<2>> {
        let mut t: Vec<Tensor<2>> = data.iter().map(|x| Tensor::from_data(x.clone(), d)).collect();
        t[1] = t[1].clone().transpose(); // a transposed view, as gradients often are
        t[9] = t[9].clone().transpose();
        t
    };
    let (gpu_t, cpu_t) = (on(&device), on(&Device::flex()));
    // Partial sums per tensor, left on the device, added up here.
    let sums = |parts: Option<Tensor<2>>| -> Vec<f64> {
        let parts = parts.expect("eleven tensors");
        let per = parts.dims()[1];
        let values: Vec<f32> = parts.into_data().iter::<f32>().collect();
        values.chunks(per).map(|p| p.iter().map(|&x| f64::from(x)).sum()).collect()
    };
    let got = sums(fused::square_sums(&gpu_t.iter().collect::<Vec<_>>()));
    let want = sums(reference::square_sums(&cpu_t.iter().collect::<Vec<_>>()));
    assert_eq!(got.len(), 11);
    let e = rel_l2(&got, &want);
    eprintln!("square_sums: {got:?} vs {want:?}: {e:.2e}");
    // f32 sums of up to 2,112 squares in another order: ~√n·2⁻²⁴ ≈ 3e-6 relative at worst
    // (1.28e-6 seen once on lavapipe against an earlier 1e-6 bound).
    assert!(e <= 1e-5, "square_sums {e:.2e} > 1e-5");
    assert!(fused::square_sums(&[]).is_none());
}

/// AdamW over many tensors at once (`adamw_many`): more than a launch's group, first steps and
/// later ones mixed, transposed gradients; each item against its own plain-op update.
#[test]
fn adamw_over_many_tensors_matches_the_reference() {
    let Some(device) = gpu() else { return };
    let shapes = [[5, 37], [16, 3], [1, 1], [64, 33], [2, 900], [7, 7], [3, 5], [33, 16], [4, 4]];
    // Odd items' gradients are stored transposed (`[c, r]`) and read as a transposed view.
    let data: Vec<[TensorData; 4]> = (0..shapes.len())
        .map(|i| {
            let [r, c] = shapes[i];
            let g = if i % 2 == 1 { random([c, r]) } else { random([r, c]) };
            [random([r, c]), g, random([r, c]), random([r, c])]
        })
        .collect();
    let s = gemma4_kernels::AdamwStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 3,
    };
    let run = |d: &Device| -> Vec<[Vec<f64>; 3]> {
        let items: Vec<fused::AdamwItem> = data
            .iter()
            .enumerate()
            .map(|(i, [p, g, m, v])| {
                let t = |x: &TensorData| Tensor::<2>::from_data(x.clone(), d);
                let grad = if i % 2 == 1 { t(g).transpose() } else { t(g) };
                // Every third item has no moments yet (its first step).
                let moments = (i % 3 != 0).then(|| (t(m), t(v).abs()));
                (t(p), grad, moments)
            })
            .collect();
        let half = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), d);
        fused::adamw_many(items, &half, &s)
            .into_iter()
            .map(|(p, m, v)| [values(p), values(m), values(v)])
            .collect()
    };
    let (got, want) = (run(&device), run(&Device::flex()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        for (name, (a, b)) in ["param", "m", "v"].iter().zip(g.iter().zip(w)) {
            let e = rel_l2(a, b);
            assert!(e <= 1e-6, "item {i} {name}: {e:.2e} > 1e-6");
        }
    }
    eprintln!("adamw over {} tensors: every item within 1e-6", got.len());
}
