//! The binary on damaged and hostile files: exit code 3 and one line naming the file and what
//! is wrong, for `verify`, `info` and `decompress`; and every documented exit code reached.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wcodec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wcodec")).args(args).output().expect("runs")
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/minilm-bf16-slice.safetensors")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Checks that `out` failed with `code` and one line on stderr that contains `needle`.
fn one_line(out: &Output, code: i32, needle: &str, what: &str) {
    let msg = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {msg}");
    assert_eq!(msg.trim_end().lines().count(), 1, "{what}: {msg}");
    assert!(msg.starts_with("wcodec: error: "), "{what}: {msg}");
    assert!(msg.contains(needle), "{what}: {needle:?} not in {msg}");
}

#[test]
fn damaged_files_exit_3_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    let out = wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz), "--tile", "64x128"]);
    assert!(out.status.success());
    let good = std::fs::read(&wcz).unwrap();
    let n = good.len();
    let directory = u64::from_le_bytes(good[n - 32..n - 24].try_into().unwrap()) as usize;
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x04;
        b
    };
    let damaged: [(&str, Vec<u8>, &str); 7] = [
        ("magic", flip(1), "bad magic"),
        ("header reserved", flip(20), "file header"),
        ("unit payload", flip(200), "checksum mismatch"),
        ("directory", flip(directory + 70), "checksum mismatch in directory"),
        ("trailer magic", flip(n - 3), "trailer"),
        ("truncated", good[..n / 2].to_vec(), "trailer"),
        ("empty", Vec::new(), "truncated"),
    ];
    for (what, bytes, needle) in damaged {
        let path = dir.path().join(format!("{}.wcz", what.replace(' ', "-")));
        std::fs::write(&path, &bytes).unwrap();
        let target = dir.path().join("out.safetensors");
        let runs: [Vec<&str>; 3] = [
            vec!["verify", "-q", s(&path)],
            vec!["decompress", "-q", s(&path), "-o", s(&target)],
            vec!["info", s(&path)],
        ];
        for args in runs {
            let out = wcodec(&args);
            // info reads no payload: a damaged unit is only found by decoding.
            if what == "unit payload" && args[0] == "info" {
                assert!(out.status.success());
                continue;
            }
            one_line(&out, 3, needle, &format!("{what}, {}", args[0]));
            one_line(&out, 3, s(&path), &format!("{what}, {}", args[0]));
            assert!(!target.exists(), "{what}: output written");
        }
    }
    assert_eq!(std::fs::read(&wcz).unwrap(), good);
}

#[test]
fn every_exit_code_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    // 0: success.
    assert_eq!(wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]).status.code(), Some(0));
    // 2: usage errors (bad arguments, an existing output), one line too.
    one_line(&wcodec(&["frobnicate"]), 2, "frobnicate", "unknown command");
    one_line(&wcodec(&["compress", "--tile", "0x5", s(&sample())]), 2, "tile", "zero tile");
    one_line(
        &wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]),
        2,
        "already exists",
        "exists",
    );
    // 3: invalid input (not a .wcz; a safetensors file that is not one).
    one_line(&wcodec(&["verify", s(&sample())]), 3, s(&sample()), "not a .wcz");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\0\0\0\0\0\0\0{\"a\": 1}  ").unwrap();
    one_line(&wcodec(&["compress", "-q", s(&junk)]), 3, s(&junk), "bad safetensors");
    // 4: I/O (a missing input, an output directory that does not exist).
    let missing = dir.path().join("missing.wcz");
    one_line(&wcodec(&["verify", s(&missing)]), 4, s(&missing), "missing input");
    let nowhere = dir.path().join("no/such/dir/out");
    one_line(
        &wcodec(&["decompress", "-q", s(&wcz), "-o", s(&nowhere)]),
        4,
        "no/such/dir",
        "no dir",
    );
    // 5 (GPU unavailable): `--device cuda` without a GPU, in cli.rs; the facade's error maps to
    // it (crates/wcodec/tests/exit_codes.rs). 130 (interrupted): interrupt.rs.
    assert!(String::from_utf8_lossy(&wcodec(&["--help"]).stdout).contains("5 GPU unavailable"));
}
