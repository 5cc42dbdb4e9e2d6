//! `--backend` and `--dtype`: which Burn device runs the model (backends compiled in by cargo
//! features; `auto` picks among them with [`probe`]), and the weight dtype
//! (`gemma4_model::WeightDtype`, parsed by its own `FromStr`).

mod probe;

use anyhow::{Result, anyhow, bail};
use burn::tensor::Device;
#[cfg(feature = "wgpu")]
use burn::tensor::DeviceKind;
use clap::ValueEnum;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use gemma4_model::WeightDtype;
use gemma4_train::plan::DeviceFacts;
#[cfg(feature = "wgpu")]
use probe::AdapterKind;
use probe::{Adapter, Choice};

/// A compute backend (each but `auto` behind a cargo feature of this crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The best device present: CUDA, else a hardware wgpu adapter, else the CPU (with a note).
    Auto,
    /// Burn's pure-Rust CPU backend (`flex`); feature `cpu`.
    Cpu,
    /// burn-wgpu: Vulkan on Linux/Windows, Metal on macOS; feature `wgpu`.
    Wgpu,
    /// burn-wgpu pinned to Vulkan with the SPIR-V compiler (tensor-core f16 matmuls); feature `vulkan`.
    Vulkan,
    /// CUDA through CubeCL (NVRTC), cuBLAS for the large matmuls; feature `cuda`.
    Cuda,
}

impl Backend {
    /// As `--backend` spells it.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// `--dtype f32|f16|bf16`: weight/activation dtype (norms, softmax, softcap and loss always run
/// in f32). Help and errors list the choices.
pub fn dtype_parser() -> impl TypedValueParser<Value = WeightDtype> {
    PossibleValuesParser::new(WeightDtype::ALL.map(WeightDtype::name))
        .try_map(|s| s.parse::<WeightDtype>())
}

/// A device opened for a command.
pub struct Opened {
    /// The backend it runs on (never `auto`).
    pub backend: Backend,
    pub device: Device,
    /// The largest piece a weight is loaded into there, in bytes: the device's largest buffer
    /// on a GPU, at most [`gemma4_model::MAX_PIECE_BYTES`] ([`gemma4_model::LoadOptions::piece_bytes`]).
    pub piece_bytes: usize,
}

impl Opened {
    /// What the memory plan needs to know about this device ([`facts`]).
    pub fn facts(&self) -> DeviceFacts {
        facts(self.backend, &self.device, self.piece_bytes)
    }
}

/// Open the device `requested` names and print which one it is on stderr, one line
/// (`device: wgpu · NVIDIA H200 (discrete GPU, Vulkan) · 139.8 GiB`), with a `note:` line when
/// `auto` settles for the CPU. `auto` takes [`probe::choose`]'s pick; should that GPU fail to
/// open, the CPU. An explicit backend that is not compiled in, or has no device here, is an
/// error.
pub fn open(requested: Backend) -> Result<Opened> {
    let (backend, mut adapter, mut note) = match requested {
        Backend::Auto => match probe::choose(&probe::probe()) {
            Choice::Cuda => (Backend::Cuda, None, None),
            Choice::Gpu(a) if cfg!(feature = "vulkan") && a.api == "Vulkan" => {
                (Backend::Vulkan, Some(a), None)
            }
            Choice::Gpu(a) => (Backend::Wgpu, Some(a), None),
            Choice::Cpu { why } if !cfg!(feature = "cpu") => bail!(
                "no device: {why}; and the CPU backend is not compiled into this binary \
                 (rebuild with `--features cpu`)"
            ),
            Choice::Cpu { why } => {
                (Backend::Cpu, None, Some(format!("no GPU found, running on the CPU: {why}")))
            }
        },
        explicit => {
            require(explicit)?;
            (explicit, None, None)
        }
    };
    let opened = match (start(backend, adapter.as_ref()), requested) {
        (Ok(opened), _) => opened,
        (Err(e), Backend::Auto) if backend != Backend::Cpu => {
            note = Some(format!("{e:#}; running on the CPU"));
            adapter = None;
            start(Backend::Cpu, None)?
        }
        (Err(e), _) => return Err(e),
    };
    eprintln!("{}", device_line(&opened, adapter.as_ref()));
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    Ok(opened)
}

/// An explicit `--backend`: compiled in, and a device of it present.
fn require(backend: Backend) -> Result<()> {
    let compiled = match backend {
        Backend::Auto => true,
        Backend::Cpu => cfg!(feature = "cpu"),
        Backend::Wgpu => cfg!(feature = "wgpu"),
        Backend::Vulkan => cfg!(feature = "vulkan"),
        Backend::Cuda => cfg!(feature = "cuda"),
    };
    if !compiled {
        bail!(
            "backend `{0}` is not compiled into this binary (rebuild with `--features {0}`)",
            backend.name()
        );
    }
    match backend {
        Backend::Cuda => match probe::cuda() {
            Some(Ok(0)) => bail!("--backend cuda: the CUDA driver reports no device"),
            Some(Err(e)) => bail!("--backend cuda: no CUDA device ({e})"),
            _ => Ok(()),
        },
        Backend::Wgpu | Backend::Vulkan => match probe::wgpu() {
            Some(Ok(adapters)) if adapters.is_empty() => bail!(
                "--backend {}: no {} adapter (install a GPU driver; on Linux Mesa's software \
                 Vulkan, `mesa-vulkan-drivers`, also counts)",
                backend.name(),
                probe::gpu_apis()
            ),
            Some(Err(e)) => bail!("--backend {}: asking for adapters failed ({e})", backend.name()),
            _ => Ok(()),
        },
        Backend::Auto | Backend::Cpu => Ok(()),
    }
}

/// Create `backend`'s device (on `adapter` where `auto` chose one) and bring it up, a panic in
/// the runtime turned into an error.
fn start(backend: Backend, adapter: Option<&Adapter>) -> Result<Opened> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::panic::catch_unwind(|| {
        new_device(backend, adapter).map(|device| (largest_buffer(&device), device))
    });
    std::panic::set_hook(hook);
    let (largest, device) = started.map_err(|p| {
        anyhow!("could not open the {} device: {}", backend.name(), probe::panic_message(&*p))
    })??;
    // burn-wgpu's devices take the 1 GiB cap; CUDA's own largest page is its limit.
    let capped = !gemma4_kernels::uses_cublas(&device);
    Ok(Opened { backend, piece_bytes: gemma4_model::piece_limit(largest, capped), device })
}

/// The Burn device of `backend`: the adapter `auto` chose, or the runtime's default (wgpu's
/// runtime brought up here, with its options; the others lazily).
fn new_device(backend: Backend, adapter: Option<&Adapter>) -> Result<Device> {
    #[cfg(feature = "wgpu")]
    let kind = match adapter.map(|a| (a.kind, a.index)) {
        Some((AdapterKind::Discrete, i)) => DeviceKind::DiscreteGpu(i),
        Some((AdapterKind::Integrated, i)) => DeviceKind::IntegratedGpu(i),
        Some((AdapterKind::Virtual, i)) => DeviceKind::VirtualGpu(i),
        _ => DeviceKind::DefaultDevice,
    };
    #[cfg(not(feature = "wgpu"))]
    let _ = adapter;
    Ok(match backend {
        #[cfg(feature = "cpu")]
        Backend::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => wgpu_device(kind, burn::tensor::wgpu::WgpuBackend::Auto)?,
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => wgpu_device(kind, burn::tensor::wgpu::WgpuBackend::Vulkan)?,
        #[cfg(feature = "cuda")]
        Backend::Cuda => Device::cuda(0),
        #[allow(unreachable_patterns)]
        other => bail!("backend `{}` is not compiled into this binary", other.name()),
    })
}

/// Kernel launches per wgpu submission where `CUBECL_WGPU_MAX_TASKS` does not say: CubeCL's
/// default of 32 submits 230 command buffers in an E2B training step, and the GPU idles
/// between them; 64–170 ran the step 4–6% faster on an H200 through Vulkan, 256 and 512
/// less (CubeCL also waits for the work submitted 512 launches back; docs/performance.md).
#[cfg(feature = "wgpu")]
const WGPU_TASKS_MAX: usize = 128;

/// Bring up burn-wgpu's runtime on `kind` through `api`, with [`WGPU_TASKS_MAX`] launches a
/// submission unless `CUBECL_WGPU_MAX_TASKS` is set (then the runtime reads it).
#[cfg(feature = "wgpu")]
fn wgpu_device(kind: DeviceKind, api: burn::tensor::wgpu::WgpuBackend) -> Result<Device> {
    let mut options = Device::wgpu_options().device_kind(kind).graphics_api(api);
    if std::env::var_os("CUBECL_WGPU_MAX_TASKS").is_none() {
        options = options.tasks_max(WGPU_TASKS_MAX);
    }
    options.init().map_err(|e| anyhow!("could not open the {api:?} device: {e}"))
}

/// `device: BACKEND · NAME (KIND, API) · MEMORY`, what the runtime and the probe say.
fn device_line(opened: &Opened, adapter: Option<&Adapter>) -> String {
    let name = device_name(&opened.device);
    let memory = match device_memory(&opened.device) {
        None if name.is_none() => host_memory(),
        m => m,
    };
    let mut line = format!("device: {}", opened.backend.name());
    line += &format!(" · {}", name.as_deref().unwrap_or("Burn flex on the CPU"));
    if let Some(a) = adapter {
        line += &format!(" ({}, {})", a.kind.describe(), a.api);
    }
    match memory {
        Some(m) => line + &format!(" · {:.1} GiB", m as f64 / f64::from(1u32 << 30)),
        None => line + " · memory unknown",
    }
}

/// The CPU device, for the commands that always run there (`fuse`), opened without a word.
pub fn cpu() -> Result<Device> {
    new_device(Backend::Cpu, None)
}

/// The name a CubeCL device gives itself (`None` on the CPU backend).
fn device_name(device: &Device) -> Option<String> {
    match device.as_dispatch() {
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        burn::backend::DispatchDevice::Cube(d) => {
            Some(d.client().properties().identity.name.clone())
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
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
        backend: backend.name(),
        gpu,
        // bf16 kernels: CUDA. WGSL has no bf16, nor Vulkan's SPIR-V path without
        // VK_KHR_shader_bfloat16 (README, Backends).
        bf16: backend == Backend::Cuda,
        memory,
        memory_source,
        piece_bytes,
        // The adapter's decision for a bf16 model on this device (gemma4-lora adapter.rs).
        bf16_lora_inputs: gemma4_kernels::bf16_lora_inputs(device, burn::tensor::DType::BF16),
        low_rank_add_rank: {
            let max = gemma4_kernels::fused::MAX_RANK;
            gemma4_kernels::fuses_low_rank_add(device, max).then_some(max)
        },
        flash: gemma4_kernels::fused::flash_enabled(device),
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
        Backend::Cpu | Backend::Auto => "/proc/meminfo MemTotal",
    }
}
