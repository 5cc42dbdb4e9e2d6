//! The environment switches of how products and kernels run, in one place: each is read once
//! per process. They exist to compare paths or to bisect; the defaults are what is measured
//! fastest (docs/performance.md). CubeCL's own variables are CubeCL's; the one default the
//! binary changes (launches per wgpu submission) is set where it opens the device
//! (`gemma4-tune`'s `backend.rs`).

use std::sync::OnceLock;

/// `pub fn $name() -> bool`: whether `$var` is set to `$value` (read once).
macro_rules! switch {
    ($(#[$doc:meta])* $name:ident = $var:literal == $value:literal) => {
        $(#[$doc])*
        pub fn $name() -> bool {
            static SET: OnceLock<bool> = OnceLock::new();
            *SET.get_or_init(|| std::env::var($var).is_ok_and(|v| v == $value))
        }
    };
}

switch!(
    /// `GEMMA4_TUNE_FUSED=0`: Burn's plain ops instead of the project's fused GPU kernels.
    fused_off = "GEMMA4_TUNE_FUSED" == "0"
);
switch!(
    /// `GEMMA4_TUNE_FLASH=1`: attention through the flash kernels (memory linear in the
    /// sequence, slower at 2,048 tokens).
    flash_on = "GEMMA4_TUNE_FLASH" == "1"
);
switch!(
    /// `GEMMA4_TUNE_FLASH_TC=0`: flash attention on its scalar kernels, off the tensor cores.
    flash_tensor_cores_off = "GEMMA4_TUNE_FLASH_TC" == "0"
);
switch!(
    /// `GEMMA4_TUNE_TILE_MATMUL=1`: f16/bf16 products through the project's tensor-core matmul.
    tile_matmul_on = "GEMMA4_TUNE_TILE_MATMUL" == "1"
);
switch!(
    /// `GEMMA4_TUNE_CUBLAS=0`: every product on CubeCL's matmul, none through cuBLAS.
    cublas_off = "GEMMA4_TUNE_CUBLAS" == "0"
);
switch!(
    /// `GEMMA4_TUNE_CUBLAS_SYNC=host`: each cuBLAS call ordered by host drains, not on the device.
    cublas_host_sync = "GEMMA4_TUNE_CUBLAS_SYNC" == "host"
);
switch!(
    /// `GEMMA4_TUNE_LOW_RANK=0`: the adapter's `x·Aᵀ·Bᵀ` as composed ops, not one op.
    low_rank_off = "GEMMA4_TUNE_LOW_RANK" == "0"
);
switch!(
    /// `GEMMA4_TUNE_LORA_INPUTS=f32`: a bf16 model's adapter gets f32 copies of its inputs.
    lora_inputs_f32 = "GEMMA4_TUNE_LORA_INPUTS" == "f32"
);
switch!(
    /// `GEMMA4_TUNE_TALL=0`: on the fused kernels' devices without cuBLAS, the adapter's change
    /// as composed ops (an f32 copy of `x`, Burn's products, casts and adds) instead of one op
    /// (`fused::low_rank_add`), to compare.
    tall_off = "GEMMA4_TUNE_TALL" == "0"
);
switch!(
    /// `GEMMA4_TUNE_THIN_TC=0`: the adapter's `x·Aᵀ` and `dy·B` on the scalar kernel, not the
    /// tensor cores (f16/bf16 activations, ranks up to 16).
    thin_tc_off = "GEMMA4_TUNE_THIN_TC" == "0"
);
switch!(
    /// `GEMMA4_TUNE_RANK_GROUP=0`: the rank update reads and writes one row at a time instead
    /// of reading a group of rows' frozen outputs first.
    rank_group_off = "GEMMA4_TUNE_RANK_GROUP" == "0"
);
