//! `--backend auto`: what devices this machine has, and which one runs the command.
//!
//! [`probe`] asks the drivers, with nothing opened: the CUDA driver for its device count
//! (feature `cuda`), and wgpu for the adapters of the graphics API it would run on (feature
//! `wgpu`: Metal on macOS; Vulkan, else DX12, elsewhere — the first API with a hardware adapter,
//! as cubecl-wgpu settles it, so the adapter chosen here is the one the device opens). [`choose`]
//! is the rule, a pure function: CUDA, else the best hardware adapter (discrete, integrated,
//! virtual, other), else the CPU with a note saying why. A software rasteriser (Mesa's lavapipe
//! and llvmpipe, WARP: wgpu's device type `Cpu`) is no GPU here: it runs the same kernels many
//! times slower than the CPU backend, so `auto` never picks it (`--backend wgpu` still does).
//!
//! A probe never panics and never hangs the command: it runs on its own thread under a time
//! limit, and a panic or a timeout is a note and the CPU. No Vulkan loader or driver is an empty
//! adapter list (wgpu skips an API whose library does not load).

use std::time::Duration;

/// How long the drivers may take to answer before `auto` gives up on them.
const PROBE_LIMIT: Duration = Duration::from_secs(20);

/// What a graphics API reports an adapter as (wgpu's `DeviceType`), best first.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))] // only the wgpu probe makes them
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdapterKind {
    /// A GPU of its own.
    Discrete,
    /// A GPU sharing the CPU's memory.
    Integrated,
    /// A GPU of a virtual machine.
    Virtual,
    /// An adapter of unknown type.
    Other,
    /// A software rasteriser running on the CPU (lavapipe, llvmpipe, WARP): never chosen.
    Software,
}

impl AdapterKind {
    /// As the device line says it.
    pub fn describe(self) -> &'static str {
        match self {
            AdapterKind::Discrete => "discrete GPU",
            AdapterKind::Integrated => "integrated GPU",
            AdapterKind::Virtual => "virtual GPU",
            AdapterKind::Other => "GPU",
            AdapterKind::Software => "software rasteriser",
        }
    }
}

/// One adapter a graphics API offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    /// As the driver names it, e.g. `NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    pub kind: AdapterKind,
    /// The graphics API: `Vulkan`, `Metal`, `Dx12`.
    pub api: String,
    /// Its position among the adapters of its kind on that API (how Burn's `DeviceKind`
    /// counts: `DiscreteGpu(1)` is the second discrete GPU).
    pub index: usize,
}

/// What the probe found, per backend; `None` where the backend is not compiled in.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The number of CUDA devices, or why none could be counted.
    pub cuda: Option<Result<usize, String>>,
    /// The adapters of the graphics API wgpu settles on, or why the probe failed.
    pub wgpu: Option<Result<Vec<Adapter>, String>>,
}

/// The device `auto` runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// CUDA device 0.
    Cuda,
    /// This wgpu adapter.
    Gpu(Adapter),
    /// The CPU; `why`: what no GPU was found of, one line.
    Cpu { why: String },
}

/// The graphics APIs wgpu is asked about here, as the note names them.
pub fn gpu_apis() -> &'static str {
    if cfg!(target_os = "macos") { "Metal" } else { "Vulkan or DX12" }
}

/// The rule of `--backend auto`: a CUDA device, else the best hardware wgpu adapter (by
/// [`AdapterKind`], then the driver's order), else the CPU with a note naming what was missing.
pub fn choose(found: &Found) -> Choice {
    if let Some(Ok(n)) = &found.cuda
        && *n > 0
    {
        return Choice::Cuda;
    }
    let adapters = match &found.wgpu {
        Some(Ok(adapters)) => adapters.as_slice(),
        _ => &[],
    };
    let best = adapters.iter().filter(|a| a.kind != AdapterKind::Software).min_by_key(|a| a.kind);
    if let Some(best) = best {
        return Choice::Gpu(best.clone());
    }
    let mut why = Vec::new();
    match &found.cuda {
        Some(Ok(_)) => why.push("no CUDA device".to_owned()),
        Some(Err(e)) => why.push(format!("no CUDA device ({e})")),
        None => {}
    }
    let software: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
    match &found.wgpu {
        None => {
            why.push("this binary has no GPU backend (build it with the default features)".into())
        }
        Some(Err(e)) => why.push(format!("asking {} for adapters failed ({e})", gpu_apis())),
        Some(Ok(_)) if software.is_empty() => {
            why.push(format!("no {} adapter (is a GPU driver installed?)", gpu_apis()))
        }
        Some(Ok(_)) => why.push(format!(
            "{} offers only {}, a software rasteriser slower than the CPU backend \
             (`--backend wgpu` runs on it anyway)",
            adapters[0].api,
            software.join(", ")
        )),
    }
    Choice::Cpu { why: why.join("; ") }
}

/// Ask every compiled-in GPU backend what it has, each under [`PROBE_LIMIT`], never panicking.
pub fn probe() -> Found {
    Found { cuda: cuda(), wgpu: wgpu() }
}

/// The number of CUDA devices (feature `cuda`).
pub fn cuda() -> Option<Result<usize, String>> {
    #[cfg(feature = "cuda")]
    return Some(guarded(cuda_devices));
    #[cfg(not(feature = "cuda"))]
    None
}

/// The adapters wgpu would open a device on (feature `wgpu`).
pub fn wgpu() -> Option<Result<Vec<Adapter>, String>> {
    #[cfg(feature = "wgpu")]
    return Some(guarded(wgpu_adapters));
    #[cfg(not(feature = "wgpu"))]
    None
}

/// `f` on its own thread: its result, or an error where it panicked or took longer than
/// [`PROBE_LIMIT`] (the thread is then left behind; the command goes on without it).
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
fn guarded<T: Send + 'static>(f: fn() -> Result<T, String>) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("gpu-probe".into()).spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(f));
    });
    if let Err(e) = spawned {
        return Err(format!("could not start the probe: {e}"));
    }
    match rx.recv_timeout(PROBE_LIMIT) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(format!("the driver panicked: {}", panic_message(panic.as_ref()))),
        Err(_) => Err(format!("no answer within {} s", PROBE_LIMIT.as_secs())),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(feature = "cuda")]
fn cuda_devices() -> Result<usize, String> {
    // SAFETY: only tries to dlopen libcuda under its usual names (cubecl-cuda asks the same
    // before counting: counting without the library panics).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no libcuda: no NVIDIA driver".into());
    }
    match cudarc::driver::CudaContext::device_count() {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(e) => Err(format!("the driver says {e}")),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_adapters() -> Result<Vec<Adapter>, String> {
    use burn::backend::wgpu::wgpu::{self, Backend as Api};
    let apis: &[Api] =
        if cfg!(target_os = "macos") { &[Api::Metal] } else { &[Api::Vulkan, Api::Dx12] };
    // cubecl-wgpu's rule: the first API with a hardware adapter, else the first with any.
    let mut first = Vec::new();
    for &api in apis {
        if !wgpu::Instance::enabled_backend_features().contains(api.into()) {
            continue;
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let infos: Vec<wgpu::AdapterInfo> = block_on(instance.enumerate_adapters(api.into()))
            .iter()
            .map(wgpu::Adapter::get_info)
            .collect();
        let adapters = adapters_of(&infos);
        if adapters.iter().any(|a| a.kind != AdapterKind::Software) {
            return Ok(adapters);
        }
        if first.is_empty() {
            first = adapters;
        }
    }
    Ok(first)
}

/// wgpu's adapter infos as [`Adapter`]s, each numbered among its kind.
#[cfg(feature = "wgpu")]
fn adapters_of(infos: &[burn::backend::wgpu::wgpu::AdapterInfo]) -> Vec<Adapter> {
    use burn::backend::wgpu::wgpu::DeviceType;
    let mut seen: Vec<AdapterKind> = Vec::new();
    infos
        .iter()
        .map(|info| {
            let kind = match info.device_type {
                DeviceType::DiscreteGpu => AdapterKind::Discrete,
                DeviceType::IntegratedGpu => AdapterKind::Integrated,
                DeviceType::VirtualGpu => AdapterKind::Virtual,
                DeviceType::Cpu => AdapterKind::Software,
                DeviceType::Other => AdapterKind::Other,
            };
            let index = seen.iter().filter(|k| **k == kind).count();
            seen.push(kind);
            Adapter { name: info.name.clone(), kind, api: format!("{:?}", info.backend), index }
        })
        .collect()
}

/// Drive a future that native wgpu completes at once (adapter enumeration), yielding between
/// polls should it not.
#[cfg(feature = "wgpu")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, kind: AdapterKind, index: usize) -> Adapter {
        Adapter { name: name.into(), kind, api: "Vulkan".into(), index }
    }

    fn lavapipe() -> Adapter {
        adapter("llvmpipe (LLVM 15.0.6, 256 bits)", AdapterKind::Software, 0)
    }

    fn note(choice: Choice) -> String {
        match choice {
            Choice::Cpu { why } => why,
            other => panic!("expected the CPU, got {other:?}"),
        }
    }

    #[test]
    fn a_cuda_device_wins_over_every_wgpu_adapter() {
        let found = Found {
            cuda: Some(Ok(2)),
            wgpu: Some(Ok(vec![adapter("NVIDIA H200", AdapterKind::Discrete, 0)])),
        };
        assert_eq!(choose(&found), Choice::Cuda);
    }

    #[test]
    fn a_discrete_gpu_wins_over_an_integrated_one_listed_first() {
        let igpu = adapter("Intel(R) Graphics", AdapterKind::Integrated, 0);
        let dgpu = adapter("AMD Radeon RX 7900", AdapterKind::Discrete, 0);
        let found =
            Found { cuda: Some(Ok(0)), wgpu: Some(Ok(vec![lavapipe(), igpu, dgpu.clone()])) };
        assert_eq!(choose(&found), Choice::Gpu(dgpu));
    }

    #[test]
    fn an_integrated_gpu_beats_the_cpu() {
        let igpu = adapter("Apple M2", AdapterKind::Integrated, 0);
        let found = Found { cuda: None, wgpu: Some(Ok(vec![igpu.clone()])) };
        assert_eq!(choose(&found), Choice::Gpu(igpu));
    }

    #[test]
    fn lavapipe_alone_is_not_a_gpu_and_the_note_says_so() {
        let note = note(choose(&Found { cuda: None, wgpu: Some(Ok(vec![lavapipe()])) }));
        assert!(note.starts_with("Vulkan offers only llvmpipe (LLVM 15.0.6, 256 bits)"), "{note}");
        assert!(note.contains("software rasteriser") && note.contains("--backend wgpu"), "{note}");
    }

    #[test]
    fn no_adapter_and_no_cuda_device_are_both_named() {
        let found = Found {
            cuda: Some(Err("no libcuda: no NVIDIA driver".into())),
            wgpu: Some(Ok(vec![])),
        };
        let note = note(choose(&found));
        assert!(note.contains("no CUDA device (no libcuda: no NVIDIA driver)"), "{note}");
        assert!(note.contains(&format!("no {} adapter", gpu_apis())), "{note}");
        assert!(!note.contains('\n'), "one line: {note}");
    }

    #[test]
    fn a_failed_probe_falls_back_to_the_cpu_with_its_reason() {
        let found = Found { cuda: None, wgpu: Some(Err("no answer within 20 s".into())) };
        assert!(note(choose(&found)).contains("failed (no answer within 20 s)"));
    }

    #[test]
    fn a_build_without_gpu_backends_says_so() {
        let note = note(choose(&Found::default()));
        assert!(note.contains("no GPU backend"), "{note}");
    }

    #[test]
    fn a_panicking_or_slow_probe_is_an_error_not_a_panic() {
        let panicked = guarded::<()>(|| panic!("no Vulkan loader"));
        assert_eq!(panicked, Err("the driver panicked: no Vulkan loader".into()));
        assert_eq!(guarded(|| Ok(3)), Ok(3));
    }
}
