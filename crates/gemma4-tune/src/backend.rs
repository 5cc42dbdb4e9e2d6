//! `--backend` and `--dtype`: which Burn device runs the model, compiled in by cargo features,
//! and the weight dtype (`gemma4_model::WeightDtype`, parsed by its own `FromStr`).

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use gemma4_model::WeightDtype;
use gemma4_train::plan::DeviceFacts;

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

/// What the memory plan needs to know about `device` of `backend`: GPU or CPU, bf16 or not, its
/// memory (CubeCL's `max_memory`: CUDA's total, Vulkan's largest device-local heap, Metal's
/// recommended working set; the CPU's `MemTotal`), and the weight piece limit.
pub fn facts(backend: Backend, device: &Device, piece_bytes: usize) -> DeviceFacts {
    let gpu = largest_buffer(device).is_some();
    let (memory, memory_source) = match device_memory(device) {
        Some(m) => (Some(m), memory_source(backend).to_owned()),
        None if gpu => (None, "the GPU runtime reports no capacity".into()),
        None => match host_memory() {
            Some(m) => (Some(m), "/proc/meminfo MemTotal".into()),
            None => (None, "no /proc/meminfo on this system".into()),
        },
    };
    DeviceFacts {
        backend: format!("{backend:?}").to_lowercase(),
        gpu,
        // bf16 kernels: CUDA. WGSL has no bf16, nor Vulkan's SPIR-V path without
        // VK_KHR_shader_bfloat16 (README, Backends).
        bf16: backend == Backend::Cuda,
        memory,
        memory_source,
        piece_bytes,
        // The adapter's decision for a bf16 model on this device (gemma4-lora adapter.rs).
        bf16_lora_inputs: gemma4_kernels::bf16_lora_inputs(device, burn::tensor::DType::BF16),
    }
}

/// The memory a CubeCL device reports (`None` on the CPU backend, or where the runtime has no
/// figure).
fn device_memory(device: &Device) -> Option<u64> {
    match device.as_dispatch() {
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        burn::backend::DispatchDevice::Cube(d) => d.client().properties().memory.max_memory(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// `MemTotal` of /proc/meminfo, in bytes (Linux).
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a backend's reported memory is.
fn memory_source(backend: Backend) -> &'static str {
    match backend {
        Backend::Cuda => "CUDA's total device memory",
        Backend::Wgpu | Backend::Vulkan if cfg!(target_os = "macos") => {
            "Metal's recommended working set"
        }
        Backend::Wgpu | Backend::Vulkan => "the largest device-local Vulkan heap",
        Backend::Cpu => "/proc/meminfo MemTotal",
    }
}
