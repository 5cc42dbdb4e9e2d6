"""The tiny Gemma 4 fixtures `generate.py` writes: one spec per fixture (text config overrides,
dtype, wrapping, sequence length, extras), shared by the reference scripts.
"""

import torch

S, F = "sliding_attention", "full_attention"

# --------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------

COMMON_TEXT = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    global_head_dim=32,
    rms_norm_eps=1e-6,
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=1,
    max_position_embeddings=4096,
)

FIXTURES: dict[str, dict] = {
    # a. plain dense text-only model
    "dense": dict(
        kind="causal",
        seed=1001,
        T=24,
        disk_dtype=torch.float32,
        text=dict(
            COMMON_TEXT,
            num_hidden_layers=5,
            # deliberately ends with sliding: HF forces the last layer to full_attention
            layer_types=[S, S, F, S, S],
            sliding_window=6,
            rope_parameters={
                S: {"rope_type": "default", "rope_theta": 10000.0},
                F: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0},
            },
            final_logit_softcapping=5.0,
            tie_word_embeddings=True,
            hidden_size_per_layer_input=0,
        ),
        alt_spelling=True,
    ),
    # b. E2B-like: PLE + KV sharing (S and F shared layers) + double-wide MLP, bf16 on disk
    "e2b_like": dict(
        kind="causal",
        seed=2002,
        T=24,
        disk_dtype=torch.bfloat16,
        inject_shared_kv=True,
        text=dict(
            COMMON_TEXT,
            num_key_value_heads=1,
            num_hidden_layers=7,
            layer_types=[S, S, F, S, F, S, F],
            num_kv_shared_layers=3,  # first_shared = 4; donors: S -> 3, F -> 2
            sliding_window=8,
            use_double_wide_mlp=True,
            hidden_size_per_layer_input=16,
            vocab_size_per_layer_input=256,
            final_logit_softcapping=30.0,
            tie_word_embeddings=True,
        ),
    ),
    # g. use_bidirectional_attention="all": non-causal attention, sliding window |q-k| <= W//2+1
    "bidirectional": dict(
        kind="causal",
        seed=7007,
        T=20,
        disk_dtype=torch.float32,
        text=dict(
            COMMON_TEXT,
            num_hidden_layers=4,
            layer_types=[S, F, S, F],
            sliding_window=10,  # HF halves it: |q-k| <= 6
            use_bidirectional_attention="all",
            final_logit_softcapping=8.0,
            tie_word_embeddings=True,
            hidden_size_per_layer_input=0,
        ),
    ),
    # c. MoE + K=V on full layers with a different KV head count on full layers
    "moe_keqv": dict(
        kind="causal",
        seed=3003,
        T=22,
        disk_dtype=torch.float32,
        text=dict(
            COMMON_TEXT,
            intermediate_size=96,
            num_hidden_layers=4,
            layer_types=[S, F, S, F],
            sliding_window=7,
            enable_moe_block=True,
            num_experts=4,
            top_k_experts=2,
            moe_intermediate_size=32,
            attention_k_eq_v=True,
            num_global_key_value_heads=1,
            final_logit_softcapping=30.0,
            tie_word_embeddings=True,
            hidden_size_per_layer_input=0,
        ),
        alt_spelling=True,
    ),
    # d. K=V + attention biases + untied head + RoPE factor; fp16 on disk; no softcap
    "keqv_bias_untied": dict(
        kind="causal",
        seed=4004,
        T=20,
        disk_dtype=torch.float16,
        text=dict(
            COMMON_TEXT,
            num_hidden_layers=4,
            layer_types=[S, S, F, F],
            sliding_window=6,
            attention_k_eq_v=True,
            num_global_key_value_heads=1,
            attention_bias=True,
            tie_word_embeddings=False,
            rope_parameters={
                S: {"rope_type": "default", "rope_theta": 50000.0},
                F: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "factor": 4.0},
            },
            final_logit_softcapping=None,
            hidden_size_per_layer_input=0,
        ),
    ),
    # f. 12 layers (zero-padded per_layer_config keys "05", "11"), HF-default layer_types and
    #    rope_parameters, K=V with MORE kv heads on full layers than on sliding ones; also ships
    #    config_minimal.json with every key equal to its HF default removed
    "per_layer_config": dict(
        kind="causal",
        seed=6006,
        T=20,
        disk_dtype=torch.float32,
        minimal_config=True,
        text=dict(
            vocab_size=256,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=12,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            global_head_dim=16,
            attention_k_eq_v=True,
            num_global_key_value_heads=2,
            sliding_window=5,
            final_logit_softcapping=30.0,
            hidden_size_per_layer_input=0,
        ),
    ),
    # e. multimodal wrapper (text under text_config), sharded, with vision + audio towers
    "multimodal": dict(
        kind="multimodal",
        seed=5005,
        T=24,
        disk_dtype=torch.float32,
        max_shard_size="150KB",
        junk_file=True,
        text=dict(
            COMMON_TEXT,
            hidden_size=48,  # sqrt(48), 48**-0.5 and sqrt(8) are not exact: exercises the scale constants
            num_hidden_layers=4,
            layer_types=[S, S, S, F],
            sliding_window=7,
            hidden_size_per_layer_input=8,
            vocab_size_per_layer_input=256,
            final_logit_softcapping=30.0,
            tie_word_embeddings=True,
            use_bidirectional_attention="vision",
        ),
        vision=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            patch_size=4,
            position_embedding_size=16,
            pooling_kernel_size=2,
        ),
        audio=dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            subsampling_conv_channels=[4, 4],
            conv_kernel_size=3,
            output_proj_dims=16,
        ),
    ),
}
