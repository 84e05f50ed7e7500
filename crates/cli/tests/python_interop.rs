//! Files written by the reference Python libraries (safetensors, gguf) round-trip through the
//! CLI byte-identical, and the decompressed files load in those libraries with equal tensors.
//!
//! Needs python3 with numpy, safetensors and gguf (.ci/run installs them and sets
//! WCODEC_REQUIRE_PYTHON=1, which turns a missing library into a failure). Elsewhere the test
//! skips with a message.

use std::path::Path;
use std::process::Command;

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy, safetensors, gguf"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reference_library_files_round_trip_and_load() {
    if !python_ready() {
        assert!(
            std::env::var_os("WCODEC_REQUIRE_PYTHON").is_none(),
            "WCODEC_REQUIRE_PYTHON is set but python3 lacks numpy, safetensors or gguf"
        );
        eprintln!("skipping: python3 with numpy, safetensors and gguf not found");
        return;
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/reference_files.py");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(Command::new("python3").arg(&script).arg("write").arg(d));
    for name in ["reference.safetensors", "reference.gguf"] {
        let (src, wcz, back) =
            (d.join(name), d.join(format!("{name}.wcz")), d.join(format!("{name}.back")));
        let wcodec = env!("CARGO_BIN_EXE_wcodec");
        run(Command::new(wcodec).args(["compress", "-q"]).arg(&src).arg("-o").arg(&wcz));
        run(Command::new(wcodec).args(["verify"]).arg(&wcz));
        run(Command::new(wcodec).args(["decompress", "-q"]).arg(&wcz).arg("-o").arg(&back));
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&back).unwrap(), "{name}");
    }
    run(Command::new("python3").arg(&script).arg("check").arg(d));
}
