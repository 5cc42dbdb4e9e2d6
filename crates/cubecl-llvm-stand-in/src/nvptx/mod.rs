//! NVPTX items cubecl-cuda names.

pub mod ptx_version;
