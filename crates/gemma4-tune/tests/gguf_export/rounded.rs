//! Our model on the weights a GGUF export holds. Every matrix of a safetensors checkpoint goes
//! through the export's block type and back through our dequantiser; 1-D tensors stay F32, as
//! in the file. Our f32 forward on such a copy differs from our forward on the source only by
//! the format's rounding. So llama.cpp against this copy measures llama.cpp's own arithmetic,
//! and this copy against the source measures what the format costs.

use std::path::Path;

use gemma4_model::dequantize;
use gemma4_model::gguf_out::{ExportQuant, Role, quantize};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Copy the checkpoint directory `src` (one `model.safetensors`, f32) to `dst`, with each
/// matrix rounded as the `quant` export writes it.
pub fn rounded_copy(src: &Path, quant: ExportQuant, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, dst.join(path.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), Dtype::F32, "{name}: the fixtures are f32");
        let shape = view.shape().to_vec();
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // The uniform types these cases export: no tensor takes more bits for its role.
        let (ty, _) = quant.tensor_type(&shape, Role::Plain);
        let back = dequantize(ty, &quantize(ty, &values).unwrap());
        out.push((name, shape, back.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views: Vec<(&str, TensorView)> = out
        .iter()
        .map(|(n, s, d)| (n.as_str(), TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
}

/// Relative L2 `‖a − b‖ / ‖b‖`.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}
