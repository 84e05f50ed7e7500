//! Readers and writers of model containers (safetensors, GGUF) for wcodec
