//! Feature narrowing for the LLVM backend. cubecl-cuda calls [`restrict_features`] only when
//! the LLVM backend is selected, which never happens with the stand-in.

use cubecl_core::prelude::DeviceProperties;

/// The GPU target a device's features would be narrowed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTarget {
    Nvptx,
}

/// Leaves `props` as they are: nothing here lowers through LLVM.
pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
