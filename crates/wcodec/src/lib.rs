//! wcodec: lossless compression of LLM weights (facade over the wcodec crates)
