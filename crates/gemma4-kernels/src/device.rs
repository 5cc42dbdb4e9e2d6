//! Which runtime a device belongs to, seen through autodiff.

use burn::backend::DispatchDevice;
use burn::tensor::Device;

/// The CubeCL device under `device` (directly or under autodiff), if it is one.
pub fn cube(device: &Device) -> Option<&burn_cubecl::CubeDevice> {
    fn inner(d: &DispatchDevice) -> Option<&burn_cubecl::CubeDevice> {
        match d {
            DispatchDevice::Cube(c) => Some(c),
            DispatchDevice::Autodiff(a) => inner(a),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
    inner(device.as_dispatch())
}

/// Whether `device` is a CubeCL device (wgpu or CUDA).
pub fn is_cube(device: &Device) -> bool {
    cube(device).is_some()
}
