//! The GGUF reader: arbitrary bytes are an error or a layout of sorted, non-overlapping
//! tensors inside the file whose shapes match their lengths; a file that reads compresses and
//! decompresses back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = wcodec::container::read_gguf(data) else { return };
    common::check_layout(&layout, data);
});
