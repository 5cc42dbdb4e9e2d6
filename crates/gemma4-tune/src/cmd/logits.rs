//! `gemma4-tune logits --model DIR --input IN.safetensors --out OUT.safetensors`
//!
//! IN holds `input_ids` (i64 or i32 `[B, T]`, optionally `attention_mask` `[B, T]`); OUT gets
//! `logits` (f32 `[B, T, V]`) and `loss` (f32 `[1]`, mean next-token cross-entropy over all
//! B·(T−1) positions, HF's causal-LM convention). If IN also holds reference `logits` (e.g. from
//! transformers), the relative L2 difference is printed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use gemma4_model::{
    Gemma4TextModel, LoadOptions, NoAdapter, TokenBatch, WeightDtype, causal_lm_loss,
};
use safetensors::SafeTensors;

use crate::backend::{self, Backend};
use crate::demo::Demo;
use crate::io;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory: config.json + model.safetensors (or model.safetensors.index.json and its
    /// shards). Without it, a tiny built-in E2B-shaped model and its transformers reference run.
    #[arg(long, requires = "input")]
    model: Option<PathBuf>,
    /// Safetensors file with `input_ids` (i64 [B, T]; optional `attention_mask`, reference `logits`).
    #[arg(long, requires = "model")]
    input: Option<PathBuf>,
    /// Where to write `logits` and `loss` (f32); nothing is written without it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compute backend: `auto` takes a CUDA device, else a GPU through wgpu (Vulkan, Metal),
    /// else the CPU, and says which.
    #[arg(long, value_enum, default_value_t = Backend::Auto, env = "GEMMA4_TUNE_BACKEND")]
    backend: Backend,
    /// Weight/activation dtype.
    #[arg(long, default_value = "f32", value_parser = backend::dtype_parser())]
    dtype: WeightDtype,
    /// A LoRA adapter (PEFT files): OUT also gets `lora_logits` and `lora_loss`.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// With --adapter: also write the gradient of `lora_loss` for every adapter tensor as
    /// `grad.<PEFT key>` (PEFT orientation).
    #[arg(long, requires = "adapter")]
    grads: bool,
}

pub fn run(args: Args) -> Result<()> {
    let demo;
    let (model_dir, input) = match (&args.model, &args.input) {
        (Some(m), Some(i)) => (m.clone(), i.clone()),
        _ => {
            demo = Demo::write()?;
            println!(
                "no --model given: running the built-in tiny E2B-shaped model against its transformers reference"
            );
            (demo.model_dir().to_owned(), demo.input())
        }
    };
    if let Some(out) = &args.out {
        let mut inputs = vec![model_dir.as_path(), input.as_path()];
        inputs.extend(args.adapter.as_deref());
        gemma4_store::refuse_input_overwrite(out, &inputs)?;
    }
    let backend::Opened { mut device, piece_bytes, .. } = backend::open(args.backend)?;
    if args.grads {
        device = device.autodiff();
    }
    let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", input.display()))?;
    let batch = read_batch(&st, &input)?;
    check_vocab(&batch, &input, &model_dir)?;

    let options = LoadOptions::new(args.dtype.burn()).with_piece_bytes(piece_bytes);
    let model = load_model(&model_dir, &device, options)?;
    // HF convention for `labels = input_ids`: every next-token position counts.
    let loss_batch = TokenBatch { attention_mask: None, ..batch.clone() };
    let f = Forward { model: &model, batch: &batch, loss_batch: &loss_batch };
    let mut tensors = base_outputs(&f, &st, &input)?;
    if let Some(dir) = &args.adapter {
        let shape = tensors[0].2.clone();
        tensors.extend(adapter_outputs(&f, dir, args.grads, &shape, &st, &input)?);
    }
    if let Some(out) = &args.out {
        io::write_f32_atomic(out, &tensors)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// A named f32 tensor to write: name, values, shape.
type Named = (String, Vec<f32>, Vec<usize>);

/// The model and the batch it runs on (`loss_batch`: the batch without its attention mask).
struct Forward<'a> {
    model: &'a Gemma4TextModel,
    batch: &'a TokenBatch,
    loss_batch: &'a TokenBatch,
}

/// `input_ids` (2-D, at least 2 tokens a row, ids that fit u32) and the optional
/// `attention_mask` of `input` (`st`) as a batch.
fn read_batch(st: &SafeTensors, input: &Path) -> Result<TokenBatch> {
    let ids = io::read_int(st, input, "input_ids")?
        .with_context(|| format!("{}: no tensor `input_ids`", input.display()))?;
    let [b, t] = ids.shape[..] else {
        bail!("{}: `input_ids` must be 2-D [B, T], found {:?}", input.display(), ids.shape)
    };
    if b == 0 {
        bail!(
            "{}: `input_ids` has no rows (shape [0, {t}]); it needs at least one",
            input.display()
        );
    }
    if t < 2 {
        bail!("{}: `input_ids` needs at least 2 tokens per row for the loss", input.display());
    }
    let ids: Vec<u32> = ids
        .values
        .iter()
        .map(|&v| {
            u32::try_from(v).map_err(|_| {
                anyhow::anyhow!(
                    "{}: token id {v} in `input_ids` is negative or past u32",
                    input.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    let attention_mask = match io::read_int(st, input, "attention_mask")? {
        Some(m) if m.shape == [b, t] => {
            Some(m.values.chunks(t).map(|r| r.iter().map(|&x| x != 0).collect()).collect())
        }
        Some(m) => bail!(
            "{}: `attention_mask` shape {:?} does not match input_ids [{b}, {t}]",
            input.display(),
            m.shape
        ),
        None => None,
    };
    Ok(TokenBatch { attention_mask, ..TokenBatch::new(ids, b, t) })
}

/// The model in `model_dir`, its warnings and what was loaded reported on stderr.
/// Ids past the model's vocabulary are refused before the weights load, naming the input
/// (issue 16: the forward pass reported them, without the file). A config that does not read
/// is left for the model's loader to report.
fn check_vocab(batch: &TokenBatch, input: &Path, model_dir: &Path) -> Result<()> {
    let Ok(loaded) = Gemma4TextModel::config_at(model_dir) else { return Ok(()) };
    let vocab = loaded.config.vocab_size;
    if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= vocab) {
        bail!(
            "{}: token id {id} in `input_ids` is >= the model's vocab_size {vocab} (config of {})",
            input.display(),
            model_dir.display()
        );
    }
    Ok(())
}

fn load_model(model_dir: &Path, device: &Device, options: LoadOptions) -> Result<Gemma4TextModel> {
    let (model, report, warnings) = Gemma4TextModel::from_dir_with(model_dir, device, options)
        .with_context(|| format!("loading model from {}", model_dir.display()))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "loaded {} tensors ({} dropped: towers / KV-shared K/V)",
        report.used,
        report.dropped.len()
    );
    Ok(model)
}

/// `logits` and `loss` of the base model, printed and compared with reference `logits` in
/// `input` if there are any.
fn base_outputs(f: &Forward, st: &SafeTensors, input: &Path) -> Result<Vec<Named>> {
    let out = f.model.forward_hidden(f.batch, &NoAdapter, false)?;
    let logits = f.model.logits(out.hidden);
    let loss = causal_lm_loss(logits.clone(), f.loss_batch)?;
    let shape = logits.dims().to_vec();
    let logits = to_vec(logits)?;
    let loss = to_vec(loss)?;
    println!("logits [{}, {}, {}]  loss {:.6}", shape[0], shape[1], shape[2], loss[0]);
    if !loss[0].is_finite() {
        // The config is validated when read and the ids are checked: the weights are the cause.
        eprintln!(
            "warning: the loss is {}: the model's weights hold or produce non-finite values (config.json was checked)",
            loss[0]
        );
    }
    if let Some((reference, ref_shape)) = io::read_f32(st, input, "logits")? {
        report_difference("logits", &logits, &shape, &reference, &ref_shape, input)?;
    }
    Ok(vec![("logits".into(), logits, shape), ("loss".into(), loss, vec![1])])
}

/// With the adapter in `dir`: `grad.<key>` for every adapter tensor (if `grads`), then
/// `lora_logits` (of `shape`) and `lora_loss`, printed and compared with reference
/// `lora_logits` in `input` if there are any.
fn adapter_outputs(
    f: &Forward,
    dir: &Path,
    grads: bool,
    shape: &[usize],
    st: &SafeTensors,
    input: &Path,
) -> Result<Vec<Named>> {
    let model = f.model;
    let mut tensors = Vec::new();
    let mut adapter = gemma4_lora::peft_io::load(dir, model)
        .with_context(|| format!("loading adapter {}", dir.display()))?;
    if grads {
        adapter.map_tensors(|_, t| t.require_grad());
    }
    let lora_logits = model.logits(model.forward_hidden(f.batch, &adapter, false)?.hidden);
    let lora_loss = causal_lm_loss(lora_logits.clone(), f.loss_batch)?;
    if grads {
        let grads = lora_loss.backward();
        for (key, t) in adapter.tensors() {
            let g = t.grad(&grads).with_context(|| format!("no gradient for {key}"))?;
            let gshape = g.dims().to_vec();
            tensors.push((format!("grad.{key}"), to_vec(g)?, gshape));
        }
    }
    let lora_logits = to_vec(lora_logits)?;
    let lora_loss = to_vec(lora_loss)?;
    println!(
        "adapter {}: {} modules, lora_loss {:.6}{}",
        dir.display(),
        adapter.modules.len(),
        lora_loss[0],
        if grads { ", gradients written" } else { "" }
    );
    if let Some((reference, ref_shape)) = io::read_f32(st, input, "lora_logits")? {
        report_difference("lora_logits", &lora_logits, shape, &reference, &ref_shape, input)?;
    }
    tensors.push(("lora_logits".into(), lora_logits, shape.to_vec()));
    tensors.push(("lora_loss".into(), lora_loss, vec![1]));
    Ok(tensors)
}

fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().try_to_vec_as::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
}

fn report_difference(
    name: &str,
    ours: &[f32],
    shape: &[usize],
    reference: &[f32],
    ref_shape: &[usize],
    input: &Path,
) -> Result<()> {
    if ref_shape != shape {
        bail!("reference `{name}` in {} has shape {ref_shape:?}, ours {shape:?}", input.display());
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (a, r) in ours.iter().zip(reference) {
        num += (*a as f64 - *r as f64).powi(2);
        den += (*r as f64).powi(2);
    }
    println!(
        "relative L2 difference to the reference {name} in {}: {:.3e}",
        input.display(),
        (num / den.max(1e-30)).sqrt()
    );
    Ok(())
}
