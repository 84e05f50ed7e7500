//! Every error maps to the exit code the README and `wcodec --help` document: 2 usage, 3
//! invalid or corrupt input, 4 I/O, 5 GPU unavailable.

use wcodec::decode::DecodeError;
use wcodec::{Dtype, Error};

#[test]
fn errors_map_to_the_documented_exit_codes() {
    let io = || std::io::Error::other("disk on fire");
    let bad_wcz = wcodec::decompress(b"not a wcz file, not at all, no").unwrap_err();
    let bad_container = wcodec::compress(b"hello", &Default::default()).unwrap_err();
    let bad_shape =
        wcodec::compress_raw(&[0; 5], Dtype::I8, &[2, 2], &Default::default()).unwrap_err();
    let bad_options = wcodec::compress_raw(
        &[0; 4],
        Dtype::I8,
        &[2, 2],
        &wcodec::EncodeOptions { prob_bits: 3, ..Default::default() },
    )
    .unwrap_err();
    let cases = [
        (Error::Usage("bad".into()), 2),
        (Error::OutputExists { path: "x".into() }, 2),
        (bad_options, 2),
        (bad_wcz, 3),
        (bad_container, 3),
        (bad_shape, 3),
        (
            Error::Decode(DecodeError::TooLarge {
                what: "t".into(),
                claimed: 1 << 40,
                file_len: 1,
                max_expansion: 1024,
            }),
            3,
        ),
        (Error::Io { path: "x".into(), source: io() }, 4),
        (Error::Decode(DecodeError::Io(io())), 4),
        (Error::GpuUnavailable("no CUDA driver".into()), 5),
    ];
    for (error, code) in cases {
        assert_eq!(error.exit_code(), code, "{error}");
        assert_eq!(error.to_string().lines().count(), 1, "{error}");
    }
}
