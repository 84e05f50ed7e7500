//! Two-pass CPU encoder of wcodec
