//! `gemma4-tune generate --model DIR [--adapter DIR] (--prompt TEXT | --chat) [--json]`
//!
//! Renders the prompt with the checkpoint's chat template (unless `--raw`), streams tokens as
//! they come, stops on the checkpoint's EOS list (Gemma 4 -it: `<eos>`, `<turn|>`,
//! `<|tool_response>`), and prints prompt and generation tokens/s at the end. `--chat` keeps the
//! KV cache across turns (only the new part of the conversation is fed). `--json` prints the
//! structured result: answer, thought channel and OpenAI-style `tool_calls`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use gemma4_data::{ChatTemplate, Tokenizer, parse_output};
use gemma4_generate::{GenerateOptions, GenerationConfig, Sampler, SamplingConfig, generate};
use gemma4_model::{Adapter, Gemma4TextModel, KvCache, LoadOptions, NoAdapter, WeightDtype};
use gemma4_train::setup::Base;
use serde_json::{Value, json};

use crate::backend::{self, Backend};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (config.json, weights, tokenizer.json, chat template).
    #[arg(long)]
    model: PathBuf,
    /// LoRA adapter directory (PEFT files).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// One prompt (a user message, unless --raw).
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    prompt: Option<String>,
    /// Interactive chat on stdin; the KV cache is kept across turns.
    #[arg(long)]
    chat: bool,
    /// Feed the prompt as plain text (BOS + text), without the chat template.
    #[arg(long)]
    raw: bool,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// Let the model think first (`enable_thinking`).
    #[arg(long)]
    thinking: bool,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy (default: generation_config.json, else greedy).
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the result as JSON: content, reasoning and tool calls.
    #[arg(long)]
    json: bool,
    /// Compute backend: `auto` takes a CUDA device, else a GPU through wgpu (Vulkan, Metal),
    /// else the CPU, and says which.
    #[arg(long, value_enum, default_value_t = Backend::Auto, env = "GEMMA4_TUNE_BACKEND")]
    backend: Backend,
    #[arg(long, default_value = "f32", value_parser = backend::dtype_parser())]
    dtype: WeightDtype,
}

struct Session {
    model: Gemma4TextModel,
    adapter: Option<gemma4_lora::LoraAdapter>,
    tok: Tokenizer,
    template: ChatTemplate,
    stops: Vec<u32>,
    sampler: Sampler,
    cache: KvCache,
    /// Tokens already in the cache.
    fed: Vec<u32>,
}

pub fn run(args: Args) -> Result<()> {
    check_sampling_flags(&args)?;
    let backend::Opened { device, piece_bytes, .. } = backend::open(args.backend)?;
    let options = LoadOptions::new(args.dtype.burn()).with_piece_bytes(piece_bytes);
    let base = Base::open(&args.model, &device, options)
        .with_context(|| format!("loading model from {}", args.model.display()))?;
    for w in &base.warnings {
        eprintln!("warning: {w}");
    }
    let Base { model, tokenizer: tok, template, .. } = base;
    let adapter = match &args.adapter {
        Some(d) => Some(
            gemma4_lora::peft_io::load(d, &model)
                .with_context(|| format!("loading adapter {}", d.display()))?,
        ),
        None => None,
    };
    let gen_cfg = GenerationConfig::from_model_dir(&args.model)
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let mut stops = if gen_cfg.eos_token_ids.is_empty() {
        model.config.eos_token_ids.clone()
    } else {
        gen_cfg.eos_token_ids.clone()
    };
    stops.extend(["<turn|>", "<eos>"].iter().filter_map(|t| tok.token_to_id(t)));
    let mut sampling = gen_cfg.sampling.unwrap_or_default();
    sampling.temperature = args.temperature.unwrap_or(sampling.temperature);
    sampling.top_k = args.top_k.unwrap_or(sampling.top_k);
    sampling.top_p = args.top_p.unwrap_or(sampling.top_p);
    sampling.seed = args.seed;
    let cache = KvCache::new(&model.config);
    let mut s = Session {
        model,
        adapter,
        tok,
        template,
        stops,
        sampler: Sampler::new(SamplingConfig { ..sampling }),
        cache,
        fed: Vec::new(),
    };
    let mut messages: Vec<Value> =
        args.system.iter().map(|t| json!({"role": "system", "content": t})).collect();
    if let Some(prompt) = &args.prompt {
        let ids = if args.raw {
            s.tok.encode(prompt, true)?.ids
        } else {
            messages.push(json!({"role": "user", "content": prompt}));
            render(&s, &messages, args.thinking)?
        };
        let text = turn(&mut s, &ids, &args)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&parse_output(&text).to_json())?);
        }
        return Ok(());
    }
    let stdin = std::io::stdin();
    eprint!("> ");
    std::io::stderr().flush().ok();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            eprint!("> ");
            continue;
        }
        messages.push(json!({"role": "user", "content": line}));
        let ids = render(&s, &messages, args.thinking)?;
        let text = turn(&mut s, &ids, &args)?;
        let parsed = parse_output(&text);
        if args.json {
            println!("{}", serde_json::to_string(&parsed.to_json())?);
        }
        messages.push(json!({"role": "assistant", "content": parsed.content}));
        eprint!("> ");
        std::io::stderr().flush().ok();
    }
    Ok(())
}

/// Sampling flags out of range are refused before anything loads (issue 16: NaN was accepted).
fn check_sampling_flags(args: &Args) -> Result<()> {
    if let Some(t) = args.temperature
        && !(t.is_finite() && t >= 0.0)
    {
        bail!("--temperature {t}: must be a finite number >= 0 (0 = greedy)");
    }
    if let Some(p) = args.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        bail!("--top-p {p}: must be in (0, 1] (1 = off)");
    }
    Ok(())
}

fn render(s: &Session, messages: &[Value], thinking: bool) -> Result<Vec<u32>> {
    let text = s.template.render(&Value::Array(messages.to_vec()), None, true, thinking)?;
    Ok(s.tok.encode(&text, false)?.ids)
}

/// Feed what the cache does not hold yet, generate, stream. Returns the generated text.
fn turn(s: &mut Session, ids: &[u32], args: &Args) -> Result<String> {
    let common = s.fed.iter().zip(ids).take_while(|(a, b)| a == b).count();
    if common < s.fed.len() || common == ids.len() {
        // The conversation diverged from what the cache holds: start over.
        s.cache = KvCache::new(&s.model.config);
        s.fed.clear();
    }
    if let Some(max) = s.model.config.max_position_embeddings
        && ids.len().saturating_add(args.max_tokens) > max
    {
        eprintln!(
            "warning: {} prompt tokens + --max-tokens {} exceed the model's max_position_embeddings {max} (config.json): output past {max} tokens is unreliable",
            ids.len(),
            args.max_tokens
        );
    }
    let start = s.fed.len();
    let new = &ids[start..];
    if new.is_empty() {
        bail!("nothing to feed");
    }
    let adapter: &dyn Adapter = match &s.adapter {
        Some(a) => a,
        None => &NoAdapter,
    };
    let (tok, quiet) = (&s.tok, args.json && !args.chat);
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    let mut out = std::io::stdout();
    let options = GenerateOptions { max_new: args.max_tokens, stop_tokens: &s.stops };
    let result = generate(&s.model, adapter, &mut s.cache, new, options, &mut s.sampler, |t| {
        generated.push(t);
        if !quiet
            && let Ok(text) = tok.decode(&generated)
            && !text.ends_with('\u{FFFD}')
            && text.len() > printed
        {
            let _ = write!(out, "{}", &text[printed..]);
            let _ = out.flush();
            printed = text.len();
        }
        true
    })?;
    s.fed.extend_from_slice(new);
    let fed_generated = s.cache.offset - s.fed.len(); // the last sampled token is not fed when the limit is hit
    s.fed.extend_from_slice(&result.tokens[..fed_generated]);
    if !quiet {
        println!();
    }
    eprintln!(
        "[{} prompt tokens, {:.1} tok/s | {} generated, {:.1} tok/s | stop: {:?}]",
        result.prompt_tokens,
        result.prompt_tokens_per_s,
        result.tokens.len(),
        result.generated_tokens_per_s,
        result.stop
    );
    Ok(tok.decode(&result.tokens)?)
}
