//! The cuBLAS call: `cublasGemmStridedBatchedEx` on raw device pointers, f32 accumulation (f32
//! inputs: full-precision SGEMM, no TF32), one handle and one stream per thread (cudarc;
//! libcublas is loaded at run time).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use burn::tensor::DType;
use cudarc::cublas::{CudaBlas, result, sys};
use cudarc::driver::{CudaContext, CudaStream};

/// Whether libcublas loads on this machine (checked once) and the route is not switched off
/// with `GEMMA4_TUNE_CUBLAS=0` (which keeps every product on CubeCL's matmul, e.g. to compare).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let off = std::env::var("GEMMA4_TUNE_CUBLAS").is_ok_and(|v| v == "0");
        // SAFETY: only tries to open the library by its usual names.
        !off && unsafe { sys::is_culib_present() }
    })
}

/// A contiguous row-major matrix (batch) on the device, read as stored or transposed.
pub struct Operand {
    pub ptr: u64,
    /// Stored as the transpose of the logical operand (`[k, m]` for a logical `[m, k]`).
    pub transposed: bool,
}

/// `c[i] = a[i]·b[i]` for each of `batch` row-major matrices: `a[i]` is `[m, k]`, `b[i]` is
/// `[k, n]` (as read), `c[i]` is `[m, n]`, all of one dtype.
pub struct Gemm {
    pub dtype: DType,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand,
    pub b: Operand,
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

/// Runs `g` on device `device` and waits for it. The caller has drained CubeCL's stream, so
/// the inputs are written, and holds the buffers until this returns.
///
/// # Panics
/// If CUDA or cuBLAS fails: the device is then in no state to continue a training step.
pub fn run(device: usize, g: &Gemm) {
    BLAS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|b| b.device != device) {
            let ctx = CudaContext::new(device).expect("CUDA context for cuBLAS");
            let stream = ctx.new_stream().expect("a CUDA stream for cuBLAS");
            let blas = CudaBlas::new(stream.clone()).expect("a cuBLAS handle");
            *slot = Some(Blas { device, stream, blas });
        }
        let Some(b) = slot.as_ref() else { unreachable!("set above") };
        // SAFETY: the pointers are live device buffers of the stated sizes (the caller holds
        // them); the handle belongs to this thread and its stream to the same context.
        unsafe { gemm(*b.blas.handle(), g) }.expect("cublasGemmStridedBatchedEx");
        b.stream.synchronize().expect("cuBLAS stream synchronize");
    });
}

/// Column-major cuBLAS computes `cᵀ[n, m] = bᵀ · aᵀ`: a row-major buffer read column-major is
/// its transpose, so a stored operand needs cuBLAS's transpose flag exactly when it is stored
/// transposed, and nothing is copied.
unsafe fn gemm(handle: sys::cublasHandle_t, g: &Gemm) -> Result<(), result::CublasError> {
    use sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    let ty = match g.dtype {
        DType::BF16 => sys::cudaDataType_t::CUDA_R_16BF,
        DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
        _ => sys::cudaDataType_t::CUDA_R_32F,
    };
    let (m, n, k) = (g.m as i32, g.n as i32, g.k as i32);
    // Leading dimension: the stored row length.
    let (op_b, ld_b) = if g.b.transposed { (CUBLAS_OP_T, k) } else { (CUBLAS_OP_N, n) };
    let (op_a, ld_a) = if g.a.transposed { (CUBLAS_OP_T, m) } else { (CUBLAS_OP_N, k) };
    let (one, zero) = (1.0f32, 0.0f32);
    // SAFETY: forwarded from `run`.
    unsafe {
        result::gemm_strided_batched_ex(
            handle,
            op_b,
            op_a,
            n,
            m,
            k,
            (&one as *const f32).cast(),
            g.b.ptr as *const _,
            ty,
            ld_b,
            (g.k * g.n) as i64,
            g.a.ptr as *const _,
            ty,
            ld_a,
            (g.m * g.k) as i64,
            (&zero as *const f32).cast(),
            g.c as *mut _,
            ty,
            n,
            (g.m * g.n) as i64,
            g.batch as i32,
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
        )
    }
}
