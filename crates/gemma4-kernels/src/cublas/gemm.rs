//! The cuBLAS call: `cublasGemmStridedBatchedEx` on raw device pointers, f32 accumulation (f32
//! inputs: full-precision SGEMM, no TF32), one handle and one stream per thread (cudarc;
//! libcublas is loaded at run time).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use burn::tensor::DType;
use cudarc::cublas::{CudaBlas, result, sys};
use cudarc::driver::sys as driver;
use cudarc::driver::{CudaContext, CudaStream};

use crate::layout::RowMajor;

/// Whether libcublas loads on this machine (checked once) and the route is not switched off
/// with `GEMMA4_TUNE_CUBLAS=0` (which keeps every product on CubeCL's matmul, e.g. to compare).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // SAFETY: only tries to open the library by its usual names.
        !crate::switches::cublas_off() && unsafe { sys::is_culib_present() }
    })
}

/// `c[i] = alpha·a[i]·b[i] + beta·c[i]` on device pointers, laid out as [`RowMajor`] says: `a`
/// and `b` in `input`, `c` in `output` (`input` itself, or f32 for 16-bit inputs).
pub struct Gemm {
    pub input: DType,
    pub output: DType,
    pub shape: RowMajor,
    pub alpha: f32,
    /// 0 (write `c`) or 1 (add into it).
    pub beta: f32,
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

/// This thread's cuBLAS handle on its own stream, for one device.
struct Blas {
    device: usize,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
}

thread_local! {
    static BLAS: RefCell<Option<Blas>> = const { RefCell::new(None) };
}

/// How the call is ordered with CubeCL's stream.
pub enum Order {
    /// The caller drained CubeCL's stream; this drains cuBLAS's stream before returning.
    Host,
    /// On the device (see `handoff`): wait for `*go ≥ n`, run, then store `n` into `*done`.
    Device { go: u64, done: u64, n: u32 },
}

/// Runs `gs` in order on device `device`, ordered as `order` says: one wait before the first,
/// one signal after the last. The caller holds the buffers until this returns.
///
/// # Panics
/// If CUDA or cuBLAS fails: the device is then in no state to continue a training step.
pub fn run(device: usize, gs: &[Gemm], order: &Order) {
    BLAS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|b| b.device != device) {
            let ctx = CudaContext::new(device).expect("CUDA context for cuBLAS");
            let stream = ctx.new_stream().expect("a CUDA stream for cuBLAS");
            let blas = CudaBlas::new(stream.clone()).expect("a cuBLAS handle");
            *slot = Some(Blas { device, stream, blas });
        }
        let Some(b) = slot.as_ref() else { unreachable!("set above") };
        let stream = b.stream.cu_stream();
        if let Order::Device { go, n, .. } = *order {
            let geq = driver::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_GEQ as u32;
            // SAFETY: `go` is a live CubeCL buffer of this context (the caller holds it).
            unsafe { driver::cuStreamWaitValue32_v2(stream, go, n, geq) }
                .result()
                .expect("cuStreamWaitValue32 before cuBLAS");
        }
        for g in gs {
            // SAFETY: the pointers are live device buffers of the stated sizes (the caller
            // holds them); the handle belongs to this thread and its stream to the same
            // context.
            unsafe { gemm(*b.blas.handle(), g) }.expect("cublasGemmStridedBatchedEx");
        }
        match *order {
            Order::Host => b.stream.synchronize().expect("cuBLAS stream synchronize"),
            Order::Device { done, n, .. } => {
                // SAFETY: as above; the default flags order the store after the products.
                unsafe { driver::cuStreamWriteValue32_v2(stream, done, n, 0) }
                    .result()
                    .expect("cuStreamWriteValue32 after cuBLAS");
            }
        }
    });
}

/// The column-major call of [`RowMajor::col_major`]: cuBLAS's first operand is our `b`.
unsafe fn gemm(handle: sys::cublasHandle_t, g: &Gemm) -> Result<(), result::CublasError> {
    let ty = |dtype: DType| match dtype {
        DType::BF16 => sys::cudaDataType_t::CUDA_R_16BF,
        DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
        _ => sys::cudaDataType_t::CUDA_R_32F,
    };
    let (ty_in, ty_out) = (ty(g.input), ty(g.output));
    let op = |t: bool| {
        if t { sys::cublasOperation_t::CUBLAS_OP_T } else { sys::cublasOperation_t::CUBLAS_OP_N }
    };
    let c = g.shape.col_major();
    // SAFETY: forwarded from `run`; every size fits an i32 (checked by the caller).
    unsafe {
        result::gemm_strided_batched_ex(
            handle,
            op(c.first.transposed),
            op(c.second.transposed),
            c.rows as i32,
            c.cols as i32,
            c.inner as i32,
            (&g.alpha as *const f32).cast(),
            g.b as *const _,
            ty_in,
            c.first.ld as i32,
            c.first.stride as i64,
            g.a as *const _,
            ty_in,
            c.second.ld as i32,
            c.second.stride as i64,
            (&g.beta as *const f32).cast(),
            g.c as *mut _,
            ty_out,
            c.ld_c as i32,
            c.stride_c as i64,
            c.batch as i32,
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
        )
    }
}
