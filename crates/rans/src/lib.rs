//! 32-lane interleaved rANS coder of wcodec, byte-compatible with its GPU decoder
