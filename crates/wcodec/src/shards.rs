//! Sharded models: a directory of safetensors or GGUF shards (with its
//! `model.safetensors.index.json`, configs, tokenizer) compresses to a directory of `.wcz`
//! files plus verbatim copies of everything else, and back.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::files::{InputKind, compress_path, decompress_path, write_file};

/// What a directory operation did, file by file.
#[derive(Clone, Debug, Default)]
pub struct DirReport {
    /// (source, destination) of each file coded.
    pub coded: Vec<(PathBuf, PathBuf)>,
    /// Files copied as they are.
    pub copied: Vec<PathBuf>,
    pub source_bytes: u64,
    pub output_bytes: u64,
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let io = |source| Error::Io { path: dir.to_owned(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            return Err(Error::Usage(format!(
                "{}: nested directories are not supported in a sharded model",
                path.display()
            )));
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

fn is_model_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("safetensors" | "gguf"))
}

fn copy(src: &Path, dst: &Path, force: bool) -> Result<u64, Error> {
    let bytes = std::fs::read(src).map_err(|source| Error::Io { path: src.to_owned(), source })?;
    write_file(dst, force, &bytes)?;
    Ok(bytes.len() as u64)
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn ensure_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })
}

/// Compresses every `.safetensors` / `.gguf` file of `input` into `output/<name>.wcz` and
/// copies the other files (index, configs) unchanged.
pub fn compress_dir(
    input: &Path,
    output: &Path,
    options: &crate::EncodeOptions,
    force: bool,
    progress: &mut dyn FnMut(&Path, u64, u64),
) -> Result<DirReport, Error> {
    ensure_dir(output)?;
    let mut report = DirReport::default();
    for src in entries(input)? {
        let name = src.file_name().expect("a directory entry").to_string_lossy().into_owned();
        if is_model_file(&src) {
            let dst = output.join(format!("{name}.wcz"));
            let r =
                compress_path(&src, &dst, &InputKind::Container, options, force, &mut |d, t| {
                    progress(&src, d, t)
                })?;
            report.source_bytes += r.source_len;
            report.output_bytes += r.compressed_len;
            report.coded.push((src, dst));
        } else {
            let n = copy(&src, &output.join(&name), force)?;
            report.source_bytes += n;
            report.output_bytes += n;
            report.copied.push(src);
        }
    }
    Ok(report)
}

/// Decompresses every `.wcz` file of `input` into `output` (the name without `.wcz`) and
/// copies the other files unchanged.
pub fn decompress_dir(
    input: &Path,
    output: &Path,
    force: bool,
    progress: &mut dyn FnMut(&Path, u64, u64),
) -> Result<DirReport, Error> {
    ensure_dir(output)?;
    let mut report = DirReport::default();
    for src in entries(input)? {
        let name = src.file_name().expect("a directory entry").to_string_lossy().into_owned();
        match name.strip_suffix(".wcz") {
            Some(original) => {
                let dst = output.join(original);
                let n = decompress_path(&src, &dst, force, &mut |d, t| progress(&src, d, t))?;
                report.source_bytes += len(&src);
                report.output_bytes += n;
                report.coded.push((src, dst));
            }
            None => {
                let n = copy(&src, &output.join(&name), force)?;
                report.source_bytes += n;
                report.output_bytes += n;
                report.copied.push(src);
            }
        }
    }
    Ok(report)
}
