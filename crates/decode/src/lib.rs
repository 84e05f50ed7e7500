//! Reference and parallel CPU decoders of wcodec
