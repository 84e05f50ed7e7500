//! `cargo xtask golden [--check]`: format regression checks.
//!
//! Fixed inputs (the checked-in real slices and a few generated tensors) are compressed with
//! default options (and one slice with the `--fast` and `--for-gpu` presets); each file's header dump and hash is compared with a committed insta
//! snapshot under xtask/src/snapshots/. Any change of the bytes shows up as a snapshot diff:
//! intended changes are accepted by running `cargo xtask golden` and committing the result.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run(args: &[String]) -> crate::Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err("usage: cargo xtask golden [--check]".into()),
    };
    let root = project_root();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root).args(["test", "--quiet", "-p", "xtask", "--bin", "xtask", "golden"]);
    if check {
        cmd.env("INSTA_UPDATE", "no").env("CI", "true");
    } else {
        cmd.env("INSTA_UPDATE", "always").env("INSTA_FORCE_PASS", "1");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(if check {
            "golden files changed. If the change of format is intended, run `cargo xtask golden`, \
             review `git diff xtask/src/snapshots` and commit it (and say so in docs/FORMAT.md)"
                .into()
        } else {
            "golden run failed".into()
        });
    }
    if !check {
        eprintln!("golden snapshots written to xtask/src/snapshots/: review with git diff");
    }
    Ok(())
}

pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is one level down").to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use wcodec::format::PlaneEncoding;
    use wcodec::{Directory, Dtype, EncodeOptions};

    /// The golden inputs: (snapshot name, file bytes as compressed).
    pub fn cases(root: &Path) -> Vec<(String, Vec<u8>)> {
        let options = EncodeOptions::default();
        let mut out = Vec::new();
        let data = root.join("tests/data");
        for name in [
            "minilm-int8-per-tensor.safetensors",
            "minilm-bf16-slice.safetensors",
            "smollm2-slice.gguf",
        ] {
            let source = std::fs::read(data.join(name)).expect("checked-in slice");
            out.push((name.to_owned(), wcodec::compress(&source, &options).expect("compresses")));
        }
        // The presets: `--fast` (tables from sampled histograms) and `--for-gpu` (fitted tiles).
        let int8 = std::fs::read(data.join("minilm-int8-per-tensor.safetensors")).expect("slice");
        for (preset, options) in
            [("fast", EncodeOptions::fast()), ("for-gpu", EncodeOptions::for_gpu())]
        {
            out.push((
                format!("minilm-int8-per-tensor.safetensors.{preset}"),
                wcodec::compress(&int8, &options).expect("compresses"),
            ));
        }
        // GGUF blocks coded whole (`--for-gpu`): identity planes in rows of whole blocks and
        // groups, column classes.
        let gguf = std::fs::read(data.join("smollm2-slice.gguf")).expect("checked-in slice");
        out.push((
            "smollm2-slice.gguf.for-gpu".to_owned(),
            wcodec::compress(&gguf, &EncodeOptions::for_gpu()).expect("compresses"),
        ));
        let quants = std::fs::read(data.join("smollm2-q8_0-quants-256x1024.i8")).expect("slice");
        out.push((
            "smollm2-q8_0-quants-256x1024.i8".to_owned(),
            wcodec::compress_raw(&quants, Dtype::I8, &[256, 1024], &options).expect("compresses"),
        ));
        // Generated: a ramp that LEFT predicts and odd shapes with partial tiles.
        let ramp: Vec<u8> = (0..300 * 257).map(|i| ((i % 257) as u8).wrapping_mul(5)).collect();
        out.push((
            "generated-ramp-300x257.u8".to_owned(),
            wcodec::compress_raw(&ramp, Dtype::U8, &[300, 257], &options).expect("compresses"),
        ));
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let f16: Vec<u8> = (0..3 * 70 * 90)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                half::f16::from_f32(((x >> 40) as f32 / 16_777_216.0 - 0.5) * 0.1).to_le_bytes()
            })
            .collect();
        out.push((
            "generated-f16-3x70x90".to_owned(),
            wcodec::compress_raw(&f16, Dtype::F16, &[3, 70, 90], &options).expect("compresses"),
        ));
        out
    }

    /// A readable dump of a .wcz's header and directory, ending with its hash.
    pub fn dump(wcz: &[u8]) -> String {
        let dir = Directory::from_file_bytes(wcz).expect("valid file");
        // The gaps section as stored: its codec (directory header byte 41) and length (48..56).
        let tail = &wcz[wcz.len() - 32..];
        let d = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes")) as usize;
        let (codec, stored) = (wcz[d + 41], &wcz[d + 48..d + 56]);
        let stored = u64::from_le_bytes(stored.try_into().expect("8 bytes"));
        let mut s = format!(
            "file: {} bytes, crc32c {:08x}\nsource: {} {} bytes, gaps {} bytes (codec {codec}, \
             {stored} stored)\n",
            wcz.len(),
            crc32c::crc32c(wcz),
            dir.source_kind.name(),
            dir.source_len,
            dir.gaps.len()
        );
        for t in &dir.tensors {
            s += &format!(
                "tensor {:?} {} {:?} {} at {}+{} crc {:08x} order0 {}\n",
                t.name,
                t.dtype,
                t.dims,
                t.transform.name(),
                t.source_offset,
                t.source_len,
                t.crc32c,
                t.order0_bytes
            );
            for (j, p) in t.planes.iter().enumerate() {
                match &p.encoding {
                    PlaneEncoding::Raw { crc32c } => {
                        s += &format!(
                            "  plane {j}: {}x{} raw at {} crc {crc32c:08x}\n",
                            p.rows, p.cols, p.payload_offset
                        )
                    }
                    PlaneEncoding::Rans { prob_bits, tables, row_tables, col_tables, units } => {
                        let mut mix = [0usize; 5];
                        for u in units {
                            mix[u.predictor as usize] += 1;
                        }
                        let stored: u64 = units.iter().map(|u| u64::from(u.len)).sum();
                        s += &format!(
                            "  plane {j}: {}x{} rans tile {}x{} bits {prob_bits} tables {} \
                             row-classes {} units {} predictors {mix:?} at {}+{} stored {stored}{}{}\n",
                            p.rows,
                            p.cols,
                            p.tile_rows,
                            p.tile_cols,
                            tables.len(),
                            if row_tables.is_empty() { "-" } else { "yes" },
                            units.len(),
                            p.payload_offset,
                            p.payload_len,
                            if p.bias128 { " bias128" } else { "" },
                            if col_tables.is_empty() {
                                String::new()
                            } else {
                                format!(" column-classes {col_tables:?}")
                            },
                        );
                    }
                }
            }
        }
        s
    }

    /// Every golden input's header dump and hash matches its committed snapshot
    /// (xtask/src/snapshots/), and every golden file round-trips.
    #[test]
    fn golden_files_match_their_snapshots() {
        for (name, wcz) in cases(&super::project_root()) {
            assert!(wcodec::decompress(&wcz).is_ok(), "{name} decodes");
            insta::assert_snapshot!(name.clone(), dump(&wcz));
        }
    }
}
