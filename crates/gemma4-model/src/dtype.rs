//! `WeightDtype`: the project's one dtype setting — the dtype of the base weights and
//! activations (norms, softmax, softcap and the loss always run in f32). A recipe's
//! `[model] dtype`, every CLI `--dtype` flag and `fuse`'s output dtype name it the same way:
//! `f32`, `f16` or `bf16` (serde, [`FromStr`] and [`fmt::Display`] agree). It converts to Burn's
//! [`DType`], to the safetensors dtype, and to the name HF writes in `config.json`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::DType;
use serde::{Deserialize, Serialize};

/// Weight/activation dtype.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    /// 32-bit float (the default: exact, the most memory).
    #[default]
    F32,
    /// IEEE half precision (training uses a dynamic loss scale).
    F16,
    /// bfloat16 (f32's range, 8 bits of mantissa).
    Bf16,
}

impl WeightDtype {
    /// Every dtype, in the order the CLI lists them.
    pub const ALL: [WeightDtype; 3] = [Self::F32, Self::F16, Self::Bf16];

    /// The name used in recipes and on the command line: `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// Burn's dtype.
    pub fn burn(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    /// The safetensors dtype of tensors stored in this dtype.
    pub fn safetensors(self) -> safetensors::Dtype {
        match self {
            Self::F32 => safetensors::Dtype::F32,
            Self::F16 => safetensors::Dtype::F16,
            Self::Bf16 => safetensors::Dtype::BF16,
        }
    }

    /// The `dtype` value transformers writes in `config.json` (`float32`, `float16`, `bfloat16`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }
}

impl From<WeightDtype> for DType {
    fn from(d: WeightDtype) -> Self {
        d.burn()
    }
}

impl fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype name that is not `f32`, `f16` or `bf16`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype {0:?} (expected f32, f16 or bf16)")]
pub struct UnknownDtype(pub String);

impl FromStr for WeightDtype {
    type Err = UnknownDtype;

    /// `f32`, `f16` or `bf16`, exactly (as in recipes and on the command line).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| UnknownDtype(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_display_and_serialise_the_same_way() {
        for d in WeightDtype::ALL {
            assert_eq!(d.name().parse::<WeightDtype>(), Ok(d));
            assert_eq!(d.to_string(), d.name());
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.name()));
            assert_eq!(serde_json::from_str::<WeightDtype>(&format!("\"{d}\"")).unwrap(), d);
        }
        assert_eq!(WeightDtype::default(), WeightDtype::F32);
        assert_eq!(DType::from(WeightDtype::Bf16), DType::BF16);
        assert_eq!(WeightDtype::F16.hf_name(), "float16");
    }

    #[test]
    fn unknown_names_are_errors_listing_the_choices() {
        for bad in ["f64", "F32", "bfloat16", "", " f16", "keep"] {
            let e = bad.parse::<WeightDtype>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("f32, f16 or bf16"), "{e}");
            assert!(serde_json::from_str::<WeightDtype>(&format!("{bad:?}")).is_err(), "{bad}");
        }
    }
}
