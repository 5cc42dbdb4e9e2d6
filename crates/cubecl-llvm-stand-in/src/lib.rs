//! Stand-in for `cubecl-llvm` 0.11.3: the items `cubecl-cuda` names, with no LLVM behind them.
//!
//! gemma4-tune builds cubecl-cuda with its `cpp` backend (CUDA C++ through NVRTC), so the LLVM
//! path is never selected. If it were, [`PlironCompiler::compile`] fails with an error naming
//! this crate. See README.md beside this file.

use cubecl_core::CompilationError;
use cubecl_core::environment::backtrace::BackTrace;
use cubecl_core::ir::attributes::BufferIOAttr;
use cubecl_core::ir::nvidia::SmArch;
use cubecl_core::prelude::KernelDefinition;

pub mod nvptx;
pub mod shared;

/// The LLVM target a [`PlironCompiler`] lowers for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    #[default]
    Cpu,
    AmdGpu,
    Nvptx,
}

/// Options cubecl-cuda fills in for the LLVM backend; read by nothing here.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    pub arch: Option<()>,
    pub sm_arch: Option<SmArch>,
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    pub grid_constants: bool,
}

/// A PTX module, as the real crate's NVPTX backend would return it.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX assembly.
    pub ptx: Vec<core::ffi::c_char>,
    /// Kernel entry point symbol.
    pub entrypoint: String,
    /// IR for logging and cache keys.
    pub ir: String,
    /// Shared memory required per launch, in bytes.
    pub shared_memory_size: usize,
    /// Buffer access modes in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What a compilation produces. Never constructed here.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
}

/// The LLVM-backed compiler. Always refuses: this build has no LLVM.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

impl PlironCompiler {
    /// Always an error: the LLVM path is not built into gemma4-tune.
    pub fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &PlironOptions,
    ) -> Result<PlironArtifact, CompilationError> {
        Err(CompilationError::Generic {
            reason: "CubeCL's LLVM backend is not built into this binary (the cubecl-llvm \
                     stand-in of gemma4-tune); CUDA kernels compile through NVRTC (cubecl's \
                     `cuda-cpp` feature)"
                .to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    /// The language tag the real crate reports for each target.
    pub fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "mlir",
            LlvmTarget::AmdGpu | LlvmTarget::Nvptx => "llvm",
        }
    }
}
