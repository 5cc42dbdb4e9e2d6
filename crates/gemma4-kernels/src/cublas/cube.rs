//! [`CublasMatmul`] on CubeCL: CUDA tensors go to cuBLAS on their buffers' device pointers,
//! ordered with CubeCL's stream on the device (`handoff.rs`);
//! anything else (another runtime, mixed dtypes, unequal batch axes) is CubeCL's own matmul
//! (and, for the sum into `c`, a plain add).

use burn::backend::ops::FloatTensorOps;
use burn::tensor::DType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl_runtime::runtime::Runtime;

use super::gemm::{self, Gemm, Order};
use super::ops::CublasMatmul;
use super::{handoff, low_rank};
use crate::layout::RowMajor;
use crate::stored::physical;

type CudaServer = <cubecl::cuda::CudaRuntime as Runtime>::Server;

impl CublasMatmul for CubeBackend {
    fn cublas_matmul(
        a: CubeTensor,
        b: CubeTensor,
        compute: DType,
        out: DType,
        alpha: f32,
    ) -> CubeTensor {
        let (a, b) = (cast(a, compute), cast(b, compute));
        // cuBLAS writes 16-bit inputs' products in their dtype or f32, f32 inputs' in f32.
        let written = if out == compute || out == DType::F32 { out } else { compute };
        let c = match cuda_index(&a, &b) {
            Some(index) => product(index, a, b, Target::Fresh(written), alpha),
            None => scaled(Self::float_matmul(a, b), alpha),
        };
        cast(c, out)
    }

    fn cublas_matmul_add(
        a: CubeTensor,
        b: CubeTensor,
        c: CubeTensor,
        compute: DType,
        alpha: f32,
    ) -> CubeTensor {
        let (a, b) = (cast(a, compute), cast(b, compute));
        let takes = c.dtype == compute || c.dtype == DType::F32;
        match cuda_index(&a, &b) {
            Some(index) if takes => product(index, a, b, Target::Add(Box::new(owned(c))), alpha),
            _ => {
                let dtype = c.dtype;
                Self::float_add(c, Self::cublas_matmul(a, b, compute, dtype, alpha))
            }
        }
    }

    fn cublas_low_rank(
        x: CubeTensor,
        w: CubeTensor,
        a: CubeTensor,
        b: CubeTensor,
        alpha: f32,
    ) -> CubeTensor {
        low_rank::forward(x, w, a, b, alpha)
    }

    fn cublas_low_rank_backward(
        x: CubeTensor,
        w: CubeTensor,
        a: CubeTensor,
        b: CubeTensor,
        dy: CubeTensor,
        alpha: f32,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        low_rank::backward(x, w, a, b, dy, alpha)
    }
}

/// `t` in `dtype` (itself when it already is).
pub(super) fn cast(t: CubeTensor, dtype: DType) -> CubeTensor {
    if t.dtype == dtype { t } else { CubeBackend::float_cast(t, dtype.into()) }
}

/// `alpha·t` (itself when `alpha` is 1).
fn scaled(t: CubeTensor, alpha: f32) -> CubeTensor {
    if alpha == 1.0 { t } else { CubeBackend::float_mul_scalar(t, alpha.into()) }
}

/// Where cuBLAS writes a product.
pub(super) enum Target {
    /// A new buffer in this dtype.
    Fresh(DType),
    /// Added into this buffer (`beta = 1`), which the caller owns: contiguous, not shared.
    Add(Box<CubeTensor>),
}

/// `c = alpha·a·b + beta·c`, its operands ready for cuBLAS.
pub(super) struct Product {
    a: CubeTensor,
    b: CubeTensor,
    pub c: CubeTensor,
    shape: RowMajor,
    alpha: f32,
    beta: f32,
}

/// The product `alpha·a·b` (one dtype) into `target`: operands as cuBLAS reads them (a
/// transposed view as it lies), the output allocated.
pub(super) fn plan(a: CubeTensor, b: CubeTensor, target: Target, alpha: f32) -> Product {
    let (a, a_t) = physical(a);
    let (b, b_t) = physical(b);
    let (sa, sb) = (a.meta.shape().to_vec(), b.meta.shape().to_vec());
    let r = sa.len();
    let (m, k) = if a_t { (sa[r - 1], sa[r - 2]) } else { (sa[r - 2], sa[r - 1]) };
    let (kb, n) = if b_t { (sb[r - 1], sb[r - 2]) } else { (sb[r - 2], sb[r - 1]) };
    assert_eq!(k, kb, "cublas_matmul: inner dimensions differ ({sa:?}·{sb:?})");
    let batch: usize = sa[..r - 2].iter().product();
    let mut shape = sa[..r - 2].to_vec();
    shape.extend([m, n]);
    let (c, beta) = match target {
        Target::Fresh(out) => {
            let (client, device) = (a.client.clone(), a.device.clone());
            (empty_device_contiguous_dtype(client, device, shape.into(), out), 0.0)
        }
        Target::Add(c) => {
            assert_eq!(c.meta.shape().to_vec(), shape, "cublas_matmul_add: c's shape");
            (*c, 1.0)
        }
    };
    let shape = RowMajor { batch, m, n, k, a_transposed: a_t, b_transposed: b_t };
    Product { a, b, c, shape, alpha, beta }
}

/// `c`, made a buffer cuBLAS may add into: itself when contiguous and not shared, else a copy.
pub(super) fn owned(c: CubeTensor) -> CubeTensor {
    if c.meta.is_tiled() || !c.is_contiguous() {
        into_contiguous(c)
    } else if c.can_mut() {
        c
    } else {
        c.copy()
    }
}

/// Runs `products` in order through cuBLAS on device `index`, under one ordering handoff
/// with CubeCL's stream (`handoff.rs`): a product may read an earlier one's output.
pub(super) fn run(index: usize, products: &[Product]) {
    let Some(first) = products.first() else { return };
    let resource = |t: &CubeTensor| {
        t.client.get_resource::<CudaServer>(t.handle.clone()).expect("a CUDA buffer")
    };
    // Each `get_resource` pins its buffer and lines this thread's stream up with the one that
    // wrote it.
    let held: Vec<_> = products.iter().map(|p| [&p.a, &p.b, &p.c].map(resource)).collect();
    let gs: Vec<Gemm> = products
        .iter()
        .zip(&held)
        .map(|(p, [ra, rb, rc])| Gemm {
            input: p.a.dtype,
            output: p.c.dtype,
            shape: p.shape,
            alpha: p.alpha,
            beta: p.beta,
            a: ra.resource().ptr,
            b: rb.resource().ptr,
            c: rc.resource().ptr,
        })
        .collect();
    if handoff::on_device() {
        let (flags, count) = handoff::next(&first.c);
        handoff::raise(&flags, count);
        let go = resource(&flags).resource().ptr;
        gemm::run(index, &gs, &Order::Device { go, done: go + 4, n: count });
        handoff::await_done(&flags, count);
    } else {
        // The sync waits for the inputs' writes (and the allocation of the outputs).
        cubecl::future::block_on(first.a.client.sync()).expect("CUDA stream sync before cuBLAS");
        gemm::run(index, &gs, &Order::Host);
    }
    drop(held);
}

/// `alpha·a·b` (one dtype) through cuBLAS on device `index`, into `target`.
fn product(index: usize, a: CubeTensor, b: CubeTensor, target: Target, alpha: f32) -> CubeTensor {
    let p = plan(a, b, target, alpha);
    run(index, std::slice::from_ref(&p));
    p.c
}

/// The CUDA device index when cuBLAS takes `a·b`: CUDA tensors of one float dtype cuBLAS runs,
/// rank ≥ 2 with equal batch axes, no empty axis, and libcublas present.
pub(super) fn cuda_index(a: &CubeTensor, b: &CubeTensor) -> Option<usize> {
    let cubecl::Device::Cuda(device) = &a.device else { return None };
    let (sa, sb) = (a.meta.shape(), b.meta.shape());
    let ok = a.dtype == b.dtype
        && matches!(a.dtype, DType::F32 | DType::F16 | DType::BF16)
        && sa.num_dims() == sb.num_dims()
        && sa.num_dims() >= 2
        && sa[..sa.num_dims() - 2] == sb[..sb.num_dims() - 2]
        && sa.iter().chain(sb.iter()).all(|&d| d > 0 && d <= i32::MAX as usize)
        && gemm::available();
    ok.then_some(device.index)
}
