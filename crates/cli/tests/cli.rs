//! The `wcodec` binary end to end: round trips through files, info and verify, refusing to
//! overwrite, and exit codes with one-line messages on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wcodec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wcodec")).args(args).output().expect("runs")
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/minilm-int8-per-tensor.safetensors")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn compress_decompress_info_verify() {
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    let back = dir.path().join("m.safetensors");
    let before = std::fs::read(sample()).unwrap();
    let out = wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wcodec(&["decompress", "-q", s(&wcz), "-o", s(&back)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back).unwrap(), before);
    assert_eq!(std::fs::read(sample()).unwrap(), before, "input untouched");

    let info = wcodec(&["info", s(&wcz)]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success());
    assert!(text.contains("encoder.layer.0.attention.self.query.weight"), "{text}");
    assert!(text.contains("predictor wins over"), "{text}");

    let json = wcodec(&["info", "--json", s(&wcz)]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 12);
    assert!(doc["ratio"].as_f64().unwrap() > 1.4);
    // The safetensors header is the file's gaps: stored compressed, and the file's length adds
    // up from the tensors, the gaps and the rest.
    let (gaps, gaps_stored) =
        (doc["gaps_bytes"].as_u64().unwrap(), doc["gaps_stored_bytes"].as_u64().unwrap());
    let header = u64::from_le_bytes(before[..8].try_into().unwrap()) + 8;
    assert_eq!(gaps, header);
    assert!(gaps_stored > 0 && gaps_stored < gaps, "{gaps} -> {gaps_stored}");
    assert!(text.contains(&format!("padding): {gaps} -> {gaps_stored} bytes")), "{text}");

    let verify = wcodec(&["verify", s(&wcz)]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("OK"));
}

#[test]
fn raw_tensors_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("t.i8");
    let data: Vec<u8> = (0..300 * 200u32).map(|i| ((i * 7) % 23) as u8).collect();
    std::fs::write(&raw, &data).unwrap();
    let out = wcodec(&[
        "--threads",
        "1",
        "compress",
        "-q",
        s(&raw),
        "--raw",
        "--dtype",
        "i8",
        "--shape",
        "300,200",
        "--tile",
        "64x64",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wcz = dir.path().join("t.i8.wcz");
    std::fs::remove_file(&raw).unwrap();
    let out = wcodec(&["decompress", "-q", s(&wcz)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&raw).unwrap(), data);
    // A shape that does not match the bytes is invalid input.
    let out = wcodec(&[
        "compress",
        "-q",
        s(&raw),
        "-o",
        s(&dir.path().join("bad.wcz")),
        "--raw",
        "--dtype",
        "i8",
        "--shape",
        "3,3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    std::fs::write(&wcz, b"precious").unwrap();
    let out = wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&wcz).unwrap(), b"precious");
    let out = wcodec(&["compress", "-q", "--force", s(&sample()), "-o", s(&wcz)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No temporary files are left behind.
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn errors_have_exit_codes_and_one_line_messages() {
    let dir = tempfile::tempdir().unwrap();
    // Corrupt input: 3.
    let wcz = dir.path().join("m.wcz");
    assert!(wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]).status.success());
    let mut bytes = std::fs::read(&wcz).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&wcz, &bytes).unwrap();
    for args in
        [vec!["verify", s(&wcz)], vec!["decompress", "-q", s(&wcz), "-o", "/nonexistent-dir/x"]]
    {
        let out = wcodec(&args);
        let code = out.status.code();
        assert!(code == Some(3) || code == Some(4), "{args:?}: {code:?}");
        let msg = stderr(&out);
        assert_eq!(msg.trim_end().lines().count(), 1, "{msg}");
        assert!(msg.starts_with("wcodec: error:"), "{msg}");
    }
    let out = wcodec(&["verify", s(&wcz)]);
    assert_eq!(out.status.code(), Some(3));
    // Not a .wcz at all: 3. Missing file: 4. Bad arguments: 2.
    assert_eq!(wcodec(&["info", s(&sample())]).status.code(), Some(3));
    assert_eq!(wcodec(&["info", "/nonexistent/file.wcz"]).status.code(), Some(4));
    assert_eq!(wcodec(&["compress", "--tile", "0x5", s(&sample())]).status.code(), Some(2));
    assert_eq!(wcodec(&["frobnicate"]).status.code(), Some(2));
    // Nothing was written under a failed decompress's target name.
    assert!(!dir.path().join("out").exists());
}

#[test]
fn quantize_then_compress_reports_by_layer_type() {
    use wcodec::Dtype;
    let dir = tempfile::tempdir().unwrap();
    let f32_bytes = |n: usize, seed: u32| -> Vec<u8> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) >> 20) as f32 / 4096.0 - 0.5)
            .flat_map(f32::to_le_bytes)
            .collect()
    };
    let q = f32_bytes(64 * 32, 1);
    let up = f32_bytes(128 * 32, 2);
    let norm = f32_bytes(32, 3);
    let source = wcodec::container::write_safetensors(
        &[
            ("layers.0.self_attn.q_proj.weight", Dtype::F32, &[64, 32], &q),
            ("layers.0.mlp.up_proj.weight", Dtype::F32, &[128, 32], &up),
            ("layers.0.input_layernorm.weight", Dtype::F32, &[32], &norm),
        ],
        None,
    )
    .unwrap();
    let src = dir.path().join("model.safetensors");
    std::fs::write(&src, &source).unwrap();
    let int8 = dir.path().join("model.int8.safetensors");
    let out = wcodec(&["quantize", s(&src), "-o", s(&int8), "--int8", "per-channel"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lossy") && stderr(&out).contains("max abs error"),
        "{}",
        stderr(&out)
    );
    let bad = wcodec(&["quantize", s(&src), "-o", s(&int8), "--int8", "per-row"]);
    assert_eq!(bad.status.code(), Some(2));
    let wcz = dir.path().join("model.wcz");
    assert!(wcodec(&["compress", "-q", s(&int8), "-o", s(&wcz)]).status.success());
    let report = wcodec(&["info", "--by-layer-type", "--json", s(&wcz)]);
    assert!(report.status.success(), "{}", stderr(&report));
    let rows: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let q_row = rows.as_array().unwrap().iter().find(|r| r["layer"] == "attention q").unwrap();
    // The original was f32: four times the int8 bytes.
    assert_eq!(q_row["original_bytes"], 64 * 32 * 4);
    assert_eq!(q_row["source_bytes"], 64 * 32);
    let layers: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["layer"].as_str().unwrap()).collect();
    assert_eq!(layers, ["attention q", "mlp up", "norms", "scales"]);
}

#[test]
fn extract_one_tensor_and_sharded_directories() {
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    assert!(wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]).status.success());
    let out = dir.path().join("key.bin");
    let name = "encoder.layer.0.attention.self.key.weight";
    let r = wcodec(&["extract", s(&wcz), name, "-o", s(&out)]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::read(&out).unwrap().len(), 384 * 384);
    let piped = wcodec(&["extract", s(&wcz), name]);
    assert_eq!(piped.stdout, std::fs::read(&out).unwrap());
    assert_eq!(wcodec(&["extract", s(&wcz), "nope"]).status.code(), Some(2));

    // A directory of shards plus an index compresses to a directory and back, identical.
    let shards = dir.path().join("model");
    std::fs::create_dir(&shards).unwrap();
    std::fs::copy(sample(), shards.join("model-00001-of-00002.safetensors")).unwrap();
    let bf16 = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/minilm-bf16-slice.safetensors");
    std::fs::copy(&bf16, shards.join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(shards.join("model.safetensors.index.json"), br#"{"weight_map":{}}"#).unwrap();
    let packed = dir.path().join("model.wcz");
    let back = dir.path().join("model.back");
    let r = wcodec(&["compress", "-q", s(&shards), "-o", s(&packed)]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(packed.join("model-00001-of-00002.safetensors.wcz").exists());
    assert!(packed.join("model.safetensors.index.json").exists());
    let r = wcodec(&["decompress", "-q", s(&packed), "-o", s(&back)]);
    assert!(r.status.success(), "{}", stderr(&r));
    for name in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ] {
        assert_eq!(
            std::fs::read(shards.join(name)).unwrap(),
            std::fs::read(back.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn device_cuda_without_a_gpu_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    let back = dir.path().join("m.safetensors");
    let out = wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wcodec(&["decompress", "-q", "--device", "cuda", s(&wcz), "-o", s(&back)]);
    if out.status.success() {
        // A GPU decoded it (a build with the `cuda` feature on a machine with one).
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(sample()).unwrap());
        eprintln!("skipping the no-GPU assertion: a GPU is present");
        return;
    }
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("GPU unavailable"), "{err}");
    assert!(!back.exists(), "no output without a GPU");
    let out = wcodec(&["bench", "--device", "cuda", s(&wcz)]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = wcodec(&["bench", "--device", "cuda", "--load", s(&wcz)]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    // Loading into GPU memory is timed on the GPU only: a usage error on the CPU.
    let out = wcodec(&["bench", "--load", s(&wcz)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--device cuda"), "{}", stderr(&out));
    // The CPU path is the default and works everywhere.
    let out = wcodec(&["bench", "--iters", "2", "--json", s(&wcz)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["gbps"].as_f64().unwrap() > 0.0);
}

#[test]
fn expansion_limit_refuses_bombs_unless_raised() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("zeros.u8");
    std::fs::write(&raw, vec![7u8; 2048 * 2048]).unwrap();
    let wcz = dir.path().join("zeros.wcz");
    let out = wcodec(&[
        "compress",
        "-q",
        s(&raw),
        "-o",
        s(&wcz),
        "--raw",
        "--dtype",
        "u8",
        "--shape",
        "2048,2048",
        "--tile",
        "2048x2048",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let size = std::fs::metadata(&wcz).unwrap().len();
    assert!(size * 1024 < 2048 * 2048, "a constant tensor in one tile expands {size} -> 4 MiB");
    let back = dir.path().join("back.u8");
    let refused = wcodec(&["decompress", "-q", s(&wcz), "-o", s(&back)]);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("limit") || stderr(&refused).contains("expan"),
        "{}",
        stderr(&refused)
    );
    assert!(!back.exists());
    assert!(wcodec(&["info", s(&wcz)]).status.success(), "listing decodes nothing");
    let ok = wcodec(&["--max-expansion", "1000000", "decompress", "-q", s(&wcz), "-o", s(&back)]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&raw).unwrap());
}

/// Output into a pipe whose reader is gone (`wcodec info big.wcz | head`) ends the process
/// quietly, as for other command-line tools: no panic, no message.
#[cfg(unix)]
#[test]
fn a_closed_pipe_on_stdout_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let wcz = dir.path().join("m.wcz");
    assert!(wcodec(&["compress", "-q", s(&sample()), "-o", s(&wcz)]).status.success());
    for args in [&["info", s(&wcz)][..], &["info", "--json", s(&wcz)], &["--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // every write to the pipe fails
        let out = Command::new(env!("CARGO_BIN_EXE_wcodec"))
            .args(args)
            .stdout(writer)
            .output()
            .expect("runs");
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
        // Ended by SIGPIPE, or done before noticing.
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
            "{args:?}: {:?}",
            out.status
        );
    }
}

#[test]
fn the_gpu_preset_leaves_tiles_unpredicted_unless_asked() {
    // A ramp: uniform bytes that LEFT or TOP turn into one residual.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("ramp.i8");
    let data: Vec<u8> = (0..256 * 256u32).map(|i| ((i / 256) * 5 + (i % 256) * 3) as u8).collect();
    std::fs::write(&raw, &data).unwrap();
    let info = |extra: &[&str]| {
        let wcz = dir.path().join("ramp.wcz");
        let mut args = vec!["compress", "-q", "--force", "--raw", "--dtype", "i8"];
        args.extend(["--shape", "256,256", "--for-gpu", s(&raw), "-o", s(&wcz)]);
        args.extend(extra);
        let out = wcodec(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let json = wcodec(&["info", "--json", s(&wcz)]);
        serde_json::from_slice::<serde_json::Value>(&json.stdout).unwrap()
    };
    let preset = info(&[]);
    let predicted = |doc: &serde_json::Value| {
        ["left", "top", "avg", "paeth"]
            .iter()
            .map(|p| doc["predictors"][p].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(predicted(&preset), 0, "{preset}");
    assert!(preset["ratio"].as_f64().unwrap() < 1.01, "{preset}");
    let asked = info(&["--predictors", "none,left"]);
    assert!(asked["predictors"]["left"].as_u64().unwrap() > 0, "{asked}");
    assert!(asked["ratio"].as_f64().unwrap() > 10.0, "{asked}");
}

#[test]
fn the_fast_preset_round_trips_with_one_table_a_plane() {
    let dir = tempfile::tempdir().unwrap();
    let (wcz, back) = (dir.path().join("f.wcz"), dir.path().join("f.safetensors"));
    let out = wcodec(&["compress", "-q", "--fast", s(&sample()), "-o", s(&wcz)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wcodec(&["decompress", "-q", s(&wcz), "-o", s(&back)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(sample()).unwrap());
    // One table a plane, no predictor but NONE (the preset), on every coded plane.
    let dir_of = wcodec::Directory::from_file_bytes(&std::fs::read(&wcz).unwrap()).unwrap();
    let coded: Vec<_> = dir_of
        .tensors
        .iter()
        .flat_map(|t| &t.planes)
        .filter_map(|p| match &p.encoding {
            wcodec::format::PlaneEncoding::Rans { tables, units, .. } => Some((tables, units)),
            _ => None,
        })
        .collect();
    assert!(!coded.is_empty());
    for (tables, units) in coded {
        assert_eq!(tables.len(), 1);
        assert!(units.iter().all(|u| u.predictor == wcodec::format::Predictor::None));
    }
    // The presets exclude each other.
    let out = wcodec(&["compress", "-q", "--fast", "--for-gpu", s(&sample()), "-o", s(&wcz)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
