//! `gemma4-tune inspect --model DIR`: the resolved config and parameter counts (reads only config.json).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gemma4_model::{Gemma4TextConfig, Gemma4TextModel, LayerType, ParamCounts};

use crate::demo::Demo;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory, config.json or .gguf file. Without it, the tiny built-in model.
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let demo;
    let model = match args.model {
        Some(m) => m,
        None => {
            demo = Demo::write()?;
            demo.model_dir().to_owned()
        }
    };
    let path = model.clone();
    let loaded = Gemma4TextModel::config_at(&path)
        .with_context(|| format!("reading the config of {}", path.display()))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let c = &loaded.config;
    print_summary(&path, c);
    print_layers(c);
    print_params(c);
    Ok(())
}

/// The model's layout, sizes, attention, RoPE, PLE, KV sharing, MoE and head.
fn print_summary(path: &Path, c: &Gemma4TextConfig) {
    println!("{}", path.display());
    println!(
        "  layout           {}",
        if c.multimodal { "multimodal (model.language_model.*)" } else { "text-only (model.*)" }
    );
    println!("  vocab / hidden   {} / {}", c.vocab_size, c.hidden_size);
    println!(
        "  layers           {} ({} sliding, {} full), sliding_window {}",
        c.num_hidden_layers,
        c.layers.iter().filter(|l| l.layer_type == LayerType::Sliding).count(),
        c.layers.iter().filter(|l| l.layer_type == LayerType::Full).count(),
        c.sliding_window
    );
    println!(
        "  heads            {} query heads; attention_bias {}; k_eq_v {}",
        c.num_attention_heads, c.attention_bias, c.attention_k_eq_v
    );
    for (lt, r) in &c.rope_parameters {
        println!(
            "  rope {:<11} {} theta {} partial {} factor {}",
            lt.hf_name(),
            r.rope_type,
            r.rope_theta,
            r.partial_rotary_factor,
            r.factor
        );
    }
    println!(
        "  PLE              {}",
        if c.hidden_size_per_layer_input > 0 {
            format!(
                "D = {}, table rows {}",
                c.hidden_size_per_layer_input, c.vocab_size_per_layer_input
            )
        } else {
            "off".into()
        }
    );
    println!(
        "  KV sharing       {} shared layers (first {})",
        c.num_kv_shared_layers,
        c.first_kv_shared_layer()
    );
    println!(
        "  MoE              {}",
        if c.enable_moe_block {
            format!(
                "{} experts, top-{}, expert width {}",
                c.num_experts, c.top_k_experts, c.moe_intermediate_size
            )
        } else {
            "off".into()
        }
    );
    println!(
        "  head             {}; final softcap {:?}",
        if c.tie_word_embeddings { "tied" } else { "untied lm_head" },
        c.final_logit_softcapping
    );
}

/// One row per layer: type, head_dim, KV heads, k_eq_v, KV donor and MLP width.
fn print_layers(c: &Gemma4TextConfig) {
    println!("  layer  type     head_dim  kv_heads  k_eq_v  kv_donor  mlp_width");
    for (i, l) in c.layers.iter().enumerate() {
        println!(
            "  {:>5}  {:<7}  {:>8}  {:>8}  {:>6}  {:>8}  {:>9}",
            i,
            if l.layer_type == LayerType::Full { "full" } else { "sliding" },
            l.head_dim,
            l.num_key_value_heads,
            l.k_eq_v,
            l.kv_donor.map_or("-".into(), |d| d.to_string()),
            l.intermediate_size
        );
    }
}

/// Parameter counts: total, the large tables, without the PLE table, active per token.
fn print_params(c: &Gemma4TextConfig) {
    let p = ParamCounts::from_config(c);
    println!(
        "  parameters       total {}  (PLE table {}, embed_tokens {}, experts {})",
        human(p.total),
        human(p.ple_table),
        human(p.embed_tokens),
        human(p.experts)
    );
    println!(
        "                   without PLE table {}; active per token {}",
        human(p.total - p.ple_table),
        human(p.active_per_token)
    );
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
