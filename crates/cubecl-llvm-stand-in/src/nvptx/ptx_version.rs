//! The PTX ISA version for a driver, which cubecl-cuda also uses in its kernel cache's
//! namespace. Same mapping as the real crate (clang's table), so cache names agree.

use core::fmt;

/// A PTX ISA version as the NVPTX target feature spells it: 8.7 is `87`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PtxVersion(u32);

impl PtxVersion {
    /// The newest version a driver of CUDA `driver` loads, as `cuDriverGetVersion` reports it
    /// (12.8 is `12080`); `None` below CUDA 10.0.
    pub fn for_driver(driver: i32) -> Option<Self> {
        DRIVER_PTX.iter().find(|(first, _)| driver >= *first).map(|(_, ptx)| Self(*ptx))
    }
}

impl fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptx{}", self.0)
    }
}

/// The first CUDA release to load each PTX version, newest first.
const DRIVER_PTX: &[(i32, u32)] = &[
    (13030, 93),
    (13020, 92),
    (13010, 91),
    (13000, 90),
    (12090, 88),
    (12080, 87),
    (12050, 85),
    (12040, 84),
    (12030, 83),
    (12020, 82),
    (12010, 81),
    (12000, 80),
    (11080, 78),
    (11070, 77),
    (11060, 76),
    (11050, 75),
    (11040, 74),
    (11030, 73),
    (11020, 72),
    (11010, 71),
    (11000, 70),
    (10020, 65),
    (10010, 64),
    (10000, 63),
];

#[cfg(test)]
mod tests {
    use super::PtxVersion;

    #[test]
    fn maps_drivers_to_ptx_versions() {
        assert_eq!(PtxVersion::for_driver(13000).map(|v| v.to_string()), Some("ptx90".into()));
        assert_eq!(PtxVersion::for_driver(12085).map(|v| v.to_string()), Some("ptx87".into()));
        assert_eq!(PtxVersion::for_driver(9020), None);
    }
}
