//! Ordering a cuBLAS call between CubeCL's kernels without the host waiting for either stream.
//!
//! CubeCL runs its kernels on a stream of its own that it does not expose, and cuBLAS runs on
//! this crate's stream. Two counters in one CubeCL buffer (`[go, done]`, u32) carry the order
//! across, entirely on the device:
//! 1. CubeCL's stream: a one-thread kernel stores `n` into `go` ([`raise`]). Everything CubeCL
//!    queued before it (the writes of `a` and `b`, the reuse of `c`'s memory) comes first.
//! 2. cuBLAS's stream: wait until `go ≥ n` (`cuStreamWaitValue32`), the product, then store `n`
//!    into `done` (`cuStreamWriteValue32`, after the product's writes).
//! 3. CubeCL's stream: a one-thread kernel spins until `done ≥ n` ([`await_done`]), so every
//!    kernel queued after it (readers of `c`, and new owners of `a`'s or `b`'s memory once they
//!    are freed) runs after the product.
//!
//! Steps 1 and 3 must stay two kernels. One kernel that stores `go` and then spins hung on the
//! H200 (2026-12-02): the stream wait did not see a store made by a kernel still running, so
//! the product never started.
//!
//! `n` grows by one per product on each thread (CubeCL's streams are per thread), so no
//! counter is ever reset. The spin occupies one thread of one SM while the product runs on the
//! rest. `GEMMA4_TUNE_CUBLAS_SYNC=host` switches back to draining both streams from the host
//! (two host round trips per product), to compare or to rule this out.

use std::cell::RefCell;

use burn::tensor::DType;
use burn_cubecl::ops::numeric::zeros_client;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

#[cube(launch)]
fn raise_kernel(flags: &mut Tensor<Atomic<u32>>, n: u32) {
    if UNIT_POS == 0 {
        flags[0].store(n);
    }
}

#[cube(launch)]
fn await_done_kernel(flags: &mut Tensor<Atomic<u32>>, n: u32) {
    if UNIT_POS == 0 {
        // A volatile load from L2 each turn (CubeCL's atomic load on CUDA).
        loop {
            if flags[1].load() >= n {
                break;
            }
        }
    }
}

/// Whether products are ordered on the device (the default) rather than by host drains.
pub fn on_device() -> bool {
    !crate::switches::cublas_host_sync()
}

/// This thread's counters on one device, and the last `n` handed out.
struct Counters {
    device: cubecl::Device,
    flags: CubeTensor,
    n: u32,
}

thread_local! {
    static COUNTERS: RefCell<Option<Counters>> = const { RefCell::new(None) };
}

/// The `[go, done]` buffer of this thread on `like`'s device and the next `n` (≥ 1).
pub fn next(like: &CubeTensor) -> (CubeTensor, u32) {
    COUNTERS.with(|cell| {
        let mut slot = cell.borrow_mut();
        // A fresh buffer on a new device, or before `n` would wrap (4·10⁹ products).
        if slot.as_ref().is_none_or(|c| c.device != like.device || c.n == u32::MAX) {
            let flags =
                zeros_client(like.client.clone(), like.device.clone(), [2].into(), DType::U32);
            *slot = Some(Counters { device: like.device.clone(), flags, n: 0 });
        }
        let Some(c) = slot.as_mut() else { unreachable!("set above") };
        c.n += 1;
        (c.flags.clone(), c.n)
    })
}

/// Step 1: `go = n` on CubeCL's stream, after everything queued so far.
pub fn raise(flags: &CubeTensor, n: u32) {
    raise_kernel::launch(
        &flags.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(1),
        flags.clone().into_tensor_arg(),
        n,
    );
}

/// Step 3: CubeCL's stream waits for `done ≥ n`.
pub fn await_done(flags: &CubeTensor, n: u32) {
    await_done_kernel::launch(
        &flags.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(1),
        flags.clone().into_tensor_arg(),
        n,
    );
}
