//! A frozen projection with a low-rank change (LoRA's shape, no LoRA semantics here), its
//! products under one cuBLAS handoff each way. Separately, the frozen product, `x·aᵀ` and the
//! change each took an ordering handoff (two one-thread kernels), the factors' scale and the
//! sum a launch each, and the backward five handoffs and an add. Here: the factors' casts and
//! one handoff forward (three products), the casts and one handoff backward (six).

use burn::backend::ops::FloatTensorOps;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use super::cube::{Target, cast, cuda_index, plan, run};
use super::ops::CublasMatmul;

/// `t` with its last two axes swapped (a view).
fn tr(t: CubeTensor) -> CubeTensor {
    let r = t.meta.shape().num_dims();
    CubeBackend::float_swap_dims(t, r - 2, r - 1)
}

/// `x·w + alpha·(x·aᵀ)·bᵀ` in `x`'s dtype.
///
/// # Shapes
/// - x: `[m, k]`, w: `[k, n]`, a: `[r, k]`, b: `[n, r]` → `[m, n]`
pub fn forward(
    x: CubeTensor,
    w: CubeTensor,
    a: CubeTensor,
    b: CubeTensor,
    alpha: f32,
) -> CubeTensor {
    let dt = x.dtype;
    let (a, b) = (cast(a, dt), cast(b, dt));
    let Some(index) = cuda_index(&x, &w).filter(|_| w.dtype == dt) else {
        // Not a cuBLAS product: the same sum through the general ops.
        let y = CubeBackend::cublas_matmul(x.clone(), w, dt, dt, 1.0);
        let xa = CubeBackend::cublas_matmul(x, tr(a), dt, dt, 1.0);
        return CubeBackend::cublas_matmul_add(xa, tr(b), y, dt, alpha);
    };
    let y = plan(x.clone(), w, Target::Fresh(dt), 1.0); // [m, n]
    let xa = plan(x, tr(a), Target::Fresh(dt), 1.0); // [m, r]
    let delta = plan(xa.c.clone(), tr(b), Target::Add(Box::new(y.c.clone())), alpha); // y +=
    let out = y.c.clone();
    run(index, &[y, xa, delta]);
    out
}

/// `(dx, da, db)` of [`forward`] from `dy`: `xa = x·aᵀ`, `db = α·dyᵀ·xa`, `dxa = α·dy·b`,
/// `da = dxaᵀ·x`, `dx = dy·wᵀ + dxa·a`.
///
/// # Shapes
/// - x: `[m, k]`, w: `[k, n]`, a: `[r, k]`, b: `[n, r]`, dy: `[m, n]` →
///   (`[m, k]`, `[r, k]`, `[n, r]`)
pub fn backward(
    x: CubeTensor,
    w: CubeTensor,
    a: CubeTensor,
    b: CubeTensor,
    dy: CubeTensor,
    alpha: f32,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let (dt, a_dt, b_dt) = (x.dtype, a.dtype, b.dtype);
    let (a, b, dy) = (cast(a, dt), cast(b, dt), cast(dy, dt));
    let Some(index) = cuda_index(&x, &w).filter(|_| w.dtype == dt) else {
        let mm = |p, q, out, s| CubeBackend::cublas_matmul(p, q, dt, out, s);
        let xa = mm(x.clone(), tr(a.clone()), dt, 1.0);
        let db = mm(tr(dy.clone()), xa, b_dt, alpha);
        let dxa = mm(dy.clone(), b, dt, alpha);
        let da = mm(tr(dxa.clone()), x, a_dt, 1.0);
        let dx = CubeBackend::cublas_matmul_add(dxa, a, mm(dy, tr(w), dt, 1.0), dt, 1.0);
        return (dx, da, db);
    };
    let xa = plan(x.clone(), tr(a.clone()), Target::Fresh(dt), 1.0); // [m, r]
    let db = plan(tr(dy.clone()), xa.c.clone(), Target::Fresh(b_dt), alpha); // [n, r]
    let dxa = plan(dy.clone(), b, Target::Fresh(dt), alpha); // [m, r]
    let da = plan(tr(dxa.c.clone()), x, Target::Fresh(a_dt), 1.0); // [r, k]
    let dx = plan(dy, tr(w), Target::Fresh(dt), 1.0); // [m, k]
    let dx_lr = plan(dxa.c.clone(), a, Target::Add(Box::new(dx.c.clone())), 1.0); // dx +=
    let out = (dx.c.clone(), da.c.clone(), db.c.clone());
    run(index, &[xa, db, dxa, da, dx, dx_lr]);
    out
}
