//! `--backend` and `--dtype`: which Burn device runs the model, compiled in by cargo features,
//! and the weight dtype (`gemma4_model::WeightDtype`, parsed by its own `FromStr`).

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use gemma4_model::WeightDtype;

/// A compute backend (each behind a cargo feature of this crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (`flex`); feature `cpu`.
    Cpu,
    /// burn-wgpu: Vulkan on Linux/Windows, Metal on macOS; feature `wgpu`.
    Wgpu,
    /// burn-wgpu pinned to Vulkan with the SPIR-V compiler (tensor-core f16 matmuls); feature `vulkan`.
    Vulkan,
    /// CUDA through CubeCL (NVRTC), cuBLAS for the large matmuls; feature `cuda`.
    Cuda,
}

/// `--dtype f32|f16|bf16`: weight/activation dtype (norms, softmax, softcap and loss always run
/// in f32). Help and errors list the choices.
pub fn dtype_parser() -> impl TypedValueParser<Value = WeightDtype> {
    PossibleValuesParser::new(WeightDtype::ALL.map(WeightDtype::name))
        .try_map(|s| s.parse::<WeightDtype>())
}

/// The default backend: the GPU one when compiled in, else the CPU.
pub fn default_backend() -> Backend {
    if cfg!(feature = "cuda") {
        Backend::Cuda
    } else if cfg!(feature = "vulkan") {
        Backend::Vulkan
    } else if cfg!(feature = "wgpu") {
        Backend::Wgpu
    } else {
        Backend::Cpu
    }
}

/// The device of `backend`, and the largest piece a weight is loaded into there, in bytes: the
/// device's largest buffer on a GPU, at most [`gemma4_model::MAX_PIECE_BYTES`]
/// ([`gemma4_model::LoadOptions::piece_bytes`]).
pub fn device(backend: Backend) -> Result<(Device, usize)> {
    let device = match backend {
        #[cfg(feature = "cpu")]
        Backend::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Device::cuda(0),
        #[allow(unreachable_patterns)]
        other => bail!(
            "backend `{other:?}` is not compiled into this binary (rebuild with `--features {}`)",
            format!("{other:?}").to_lowercase()
        ),
    };
    let piece_bytes = gemma4_model::piece_limit(largest_buffer(&device));
    Ok((device, piece_bytes))
}

/// The largest buffer a CubeCL device allocates in one piece (`None` on the CPU backend).
pub fn largest_buffer(device: &Device) -> Option<u64> {
    match device.as_dispatch() {
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        burn::backend::DispatchDevice::Cube(d) => {
            Some(d.client().properties().memory.max_page_size)
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
