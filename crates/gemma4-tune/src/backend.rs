//! `--backend` and `--dtype`: which Burn device runs the model, compiled in by cargo features.

use anyhow::{Result, bail};
use burn::tensor::{DType, Device};
use clap::ValueEnum;

/// A compute backend (each behind a cargo feature of this crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (`flex`); feature `cpu`.
    Cpu,
    /// burn-wgpu: Vulkan on Linux/Windows, Metal on macOS; feature `wgpu`.
    Wgpu,
    /// burn-wgpu pinned to Vulkan with the SPIR-V compiler (tensor-core f16 matmuls); feature `vulkan`.
    Vulkan,
}

/// Weight/activation dtype (norms, softmax, softcap and loss always run in f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn burn(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// The default backend: the GPU one when compiled in, else the CPU.
pub fn default_backend() -> Backend {
    if cfg!(feature = "vulkan") {
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
        #[allow(unreachable_patterns)]
        other => bail!("backend `{other:?}` is not compiled into this binary (rebuild with `--features {}`)", format!("{other:?}").to_lowercase()),
    };
    let piece_bytes = gemma4_model::piece_limit(largest_buffer(&device));
    Ok((device, piece_bytes))
}

/// The largest buffer a CubeCL device allocates in one piece (`None` on the CPU backend).
pub fn largest_buffer(device: &Device) -> Option<u64> {
    match device.as_dispatch() {
        #[cfg(feature = "wgpu")]
        burn::backend::DispatchDevice::Cube(d) => Some(d.client().properties().memory.max_page_size),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
