//! Recipe values that may be left to the run to decide: `[model] dtype = "auto"` and
//! `[train] gradient_checkpointing = "auto"` (both the default). The memory plan
//! ([`crate::plan`]) resolves them once a device is known, and the resolved recipe
//! (`recipe.resolved.toml`) holds the concrete choice, so a resumed run repeats it.

use std::fmt;

use gemma4_model::WeightDtype;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[model] dtype`: `"auto"` (the default) or a fixed `f32`, `f16` or `bf16`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DtypeChoice {
    /// bf16 where the backend has it (CUDA), f16 on wgpu/Vulkan/Metal (with the f16 guards: f32
    /// residual stream, row-scaled MLP product, loss scaling), f32 on the CPU.
    #[default]
    Auto,
    /// As written.
    Fixed(WeightDtype),
}

impl DtypeChoice {
    /// The fixed dtype, `None` while it is still `auto`.
    pub fn fixed(self) -> Option<WeightDtype> {
        match self {
            Self::Auto => None,
            Self::Fixed(d) => Some(d),
        }
    }

    /// The name as written in a recipe.
    pub fn name(self) -> &'static str {
        self.fixed().map_or("auto", WeightDtype::name)
    }
}

impl From<WeightDtype> for DtypeChoice {
    fn from(d: WeightDtype) -> Self {
        Self::Fixed(d)
    }
}

impl Serialize for DtypeChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DtypeChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            return Ok(Self::Auto);
        }
        s.parse::<WeightDtype>().map(Self::Fixed).map_err(|_| {
            de::Error::custom(format!("unknown dtype {s:?} (expected auto, f32, f16 or bf16)"))
        })
    }
}

/// `[train] gradient_checkpointing`: `true`, `false`, `"auto"` (the default: the fewest
/// recomputed layers that fit, none when the run fits without) or a number `N`: recompute the
/// first `N` decoder layers and keep the rest on the tape (0 is `false`; the layer count or
/// more is `true`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recompute {
    #[default]
    Auto,
    On,
    Off,
    /// The first `N` layers.
    Layers(usize),
}

impl Recompute {
    /// How many of `total` layers (the first ones) are recomputed. `auto` not yet resolved by
    /// a plan counts as none.
    pub fn layers(self, total: usize) -> usize {
        match self {
            Self::Auto | Self::Off => 0,
            Self::On => total,
            Self::Layers(n) => n.min(total),
        }
    }

    /// The concrete value for `n` of `total` layers: `false`, `true` or the number.
    pub fn resolved(n: usize, total: usize) -> Self {
        match n {
            0 => Self::Off,
            n if n >= total => Self::On,
            n => Self::Layers(n),
        }
    }

    /// The value as written in a recipe.
    pub fn name(self) -> String {
        match self {
            Self::Auto => "auto".into(),
            Self::On => "true".into(),
            Self::Off => "false".into(),
            Self::Layers(n) => n.to_string(),
        }
    }
}

impl From<bool> for Recompute {
    fn from(on: bool) -> Self {
        if on { Self::On } else { Self::Off }
    }
}

impl Serialize for Recompute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::On => s.serialize_bool(true),
            Self::Off => s.serialize_bool(false),
            Self::Layers(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Recompute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RecomputeVisitor)
    }
}

struct RecomputeVisitor;

impl Visitor<'_> for RecomputeVisitor {
    type Value = Recompute;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true, false, \"auto\" or a number of layers")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Recompute, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Recompute, E> {
        Ok(if v == 0 { Recompute::Off } else { Recompute::Layers(v as usize) })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Recompute, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Recompute, E> {
        match v {
            "auto" => Ok(Recompute::Auto),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct T {
        dtype: DtypeChoice,
        gc: Recompute,
    }

    #[test]
    fn auto_and_fixed_values_round_trip_through_toml() {
        for (text, want) in [
            (
                "dtype = \"auto\"\ngc = \"auto\"\n",
                T { dtype: DtypeChoice::Auto, gc: Recompute::Auto },
            ),
            (
                "dtype = \"bf16\"\ngc = true\n",
                T { dtype: WeightDtype::Bf16.into(), gc: Recompute::On },
            ),
            (
                "dtype = \"f32\"\ngc = false\n",
                T { dtype: WeightDtype::F32.into(), gc: Recompute::Off },
            ),
            (
                "dtype = \"f16\"\ngc = 12\n",
                T { dtype: WeightDtype::F16.into(), gc: Recompute::Layers(12) },
            ),
        ] {
            let t: T = toml::from_str(text).unwrap();
            assert_eq!(t, want);
            assert_eq!(toml::to_string(&t).unwrap(), text, "written back as read");
        }
    }

    #[test]
    fn bad_values_name_the_choices() {
        let e = toml::from_str::<T>("dtype = \"f64\"\ngc = true\n").unwrap_err().to_string();
        assert!(e.contains("expected auto, f32, f16 or bf16"), "{e}");
        let e = toml::from_str::<T>("dtype = \"auto\"\ngc = \"yes\"\n").unwrap_err().to_string();
        assert!(e.contains("true, false, \"auto\" or a number of layers"), "{e}");
        let e = toml::from_str::<T>("dtype = \"auto\"\ngc = -1\n").unwrap_err().to_string();
        assert!(e.contains("true, false, \"auto\" or a number of layers"), "{e}");
        let e = toml::from_str::<T>("dtype = \"auto\"\ngc = 1.5\n").unwrap_err().to_string();
        assert!(e.contains("true, false, \"auto\" or a number of layers"), "{e}");
    }
}
