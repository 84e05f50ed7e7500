//! Layer types of transformer tensors, from their names (Llama/HF, BERT and GGUF naming), for
//! per-layer-type reports.

/// The layer types a report groups tensors by, in report order.
pub const LAYER_TYPES: [&str; 12] = [
    "embeddings",
    "attention q",
    "attention k",
    "attention v",
    "attention o",
    "mlp gate",
    "mlp up",
    "mlp down",
    "norms",
    "lm head",
    "scales",
    "other",
];

/// The layer type of a tensor named `name`.
pub fn layer_type(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| n.contains(k));
    if n.ends_with(".scale") {
        "scales"
    } else if has(&["norm", "ln_"]) {
        "norms"
    } else if has(&["embed", "wte", "wpe", "token_embd"]) {
        "embeddings"
    } else if has(&["lm_head"]) || n == "output.weight" {
        "lm head"
    } else if has(&["q_proj", "attn_q.", "self.query"]) {
        "attention q"
    } else if has(&["k_proj", "attn_k.", "self.key"]) {
        "attention k"
    } else if has(&["v_proj", "attn_v.", "self.value"]) {
        "attention v"
    } else if has(&["o_proj", "attn_output", "attention.output.dense"]) {
        "attention o"
    } else if has(&["gate_proj", "ffn_gate"]) {
        "mlp gate"
    } else if has(&["up_proj", "ffn_up", "intermediate.dense"]) {
        "mlp up"
    } else if has(&["down_proj", "ffn_down", "output.dense"]) {
        "mlp down"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::layer_type;

    #[test]
    fn names_of_common_architectures() {
        assert_eq!(layer_type("model.layers.0.self_attn.q_proj.weight"), "attention q");
        assert_eq!(layer_type("blk.3.attn_v.weight"), "attention v");
        assert_eq!(layer_type("encoder.layer.0.attention.output.dense.weight"), "attention o");
        assert_eq!(layer_type("encoder.layer.0.attention.output.LayerNorm.weight"), "norms");
        assert_eq!(layer_type("encoder.layer.0.output.dense.weight"), "mlp down");
        assert_eq!(layer_type("encoder.layer.0.intermediate.dense.weight"), "mlp up");
        assert_eq!(layer_type("model.layers.0.mlp.gate_proj.weight"), "mlp gate");
        assert_eq!(layer_type("token_embd.weight"), "embeddings");
        assert_eq!(layer_type("lm_head.weight"), "lm head");
        assert_eq!(layer_type("output.weight"), "lm head");
        assert_eq!(layer_type("blk.0.attn_q.weight.scale"), "scales");
    }
}
