//! Files: memory-mapped input, atomic output (temporary file, fsync, rename), never
//! overwriting without `force`, never touching the input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::Error;
use wcodec_encode::SourceHint;
use wcodec_format::Dtype;

/// A read-only view of an input file.
#[derive(Debug)]
pub enum Input {
    Mapped(memmap2::Mmap),
    Empty,
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Input::Mapped(m) => m,
            Input::Empty => &[],
        }
    }
}

impl Input {
    /// Passes an encoder's [`SourceHint`] on to the kernel: read ahead the bytes that come
    /// next, and drop from this process's memory those done with (they stay in the page cache,
    /// and are read from it again if touched), so that compressing a model larger than RAM
    /// keeps a batch or two of it mapped in, not all it has read. Advice only: a refusal
    /// changes nothing.
    fn advise(&self, hint: &SourceHint) {
        #[cfg(unix)]
        if let Input::Mapped(map) = self {
            let (SourceHint::WillNeed(range) | SourceHint::DoneWith(range)) = hint;
            let start = (range.start as usize).min(map.len());
            let len = (range.end as usize).min(map.len()).saturating_sub(start);
            if len == 0 {
                return;
            }
            let _ = match hint {
                SourceHint::WillNeed(_) => map.advise_range(memmap2::Advice::WillNeed, start, len),
                // SAFETY: the map is private and read-only, so no page of it holds changes
                // that dropping it would lose: a dropped page is read again from the file, the
                // same bytes under the CLI's contract that inputs do not change while it runs
                // (the contract the map itself rests on, see `read_input`).
                #[allow(unsafe_code)]
                SourceHint::DoneWith(_) => unsafe {
                    map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
                },
            };
        }
        #[cfg(not(unix))]
        let _ = (self, hint);
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Reads `buf.len()` bytes at `offset` without moving a shared cursor.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// The start of the names of this process's temporary outputs: `.wcodec-<pid>-`, then random
/// characters and `.tmp`. They are created beside their target and renamed over it when
/// complete; the pid lets an interrupted process (see the CLI's Ctrl-C handler) find and
/// remove its own, and a user tell whose a leftover one was (a SIGKILL leaves it behind).
pub fn temp_prefix() -> String {
    format!(".wcodec-{}-", std::process::id())
}

/// Maps `path` read-only.
pub fn read_input(path: &Path) -> Result<Input, Error> {
    let file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    if len == 0 {
        return Ok(Input::Empty);
    }
    // SAFETY: the map is read-only and private to this process. If another process truncates
    // or rewrites the file while it is mapped, reads may fault or see new bytes; every value
    // read is validated and checksummed, and this is the documented contract of the CLI
    // (inputs must not change while wcodec runs).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(path))?;
    Ok(Input::Mapped(map))
}

/// Writes `output` atomically: `write` fills a temporary file beside it, which is synced and
/// renamed over the target only when everything succeeded.
pub(crate) fn write_atomically<T>(
    output: &Path,
    force: bool,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<T, Error>,
) -> Result<T, Error> {
    if !force && output.exists() {
        return Err(Error::OutputExists { path: output.to_owned() });
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_error(output))?;
    let result = {
        let mut writer = BufWriter::with_capacity(1 << 20, temp.as_file());
        let value = write(&mut writer)?;
        writer.flush().map_err(io_error(output))?;
        value
    };
    // Temporary files are private (0600); the result gets the usual 0644 (less the umask's
    // effect is not re-applied: outputs hold no secrets the input did not).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_error(output))?;
    }
    temp.as_file().sync_all().map_err(io_error(output))?;
    if force {
        temp.persist(output).map_err(|e| Error::Io { path: output.to_owned(), source: e.error })?;
    } else {
        temp.persist_noclobber(output).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists { path: output.to_owned() }
            } else {
                Error::Io { path: output.to_owned(), source: e.error }
            }
        })?;
    }
    Ok(result)
}

/// Writes `bytes` to `output` atomically (never over an existing file without `force`).
pub fn write_file(output: &Path, force: bool, bytes: &[u8]) -> Result<(), Error> {
    write_atomically(output, force, |w| w.write_all(bytes).map_err(io_error(output)))
}

/// What `compress_path` did.
#[derive(Clone, Debug)]
pub struct CompressReport {
    pub source_len: u64,
    pub compressed_len: u64,
    pub tensors: usize,
}

/// How `compress_path` reads its input.
#[derive(Clone, Debug)]
pub enum InputKind {
    /// Detect safetensors or GGUF from the bytes.
    Container,
    /// The whole file is one tensor of this dtype and shape.
    Raw { dtype: Dtype, dims: Vec<u64> },
}

/// Compresses `input` into `output`, encoding straight from a memory map of it: no copy of
/// its bytes, and memory bounded by the batch in flight whatever the file's size, as the
/// encoder's hints have the kernel read ahead the next batch and drop the mapped pages of the
/// batches done (`Input::advise`).
pub fn compress_path(
    input: &Path,
    output: &Path,
    kind: &InputKind,
    options: &crate::EncodeOptions,
    force: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CompressReport, Error> {
    let source = read_input(input)?;
    let layout = match kind {
        InputKind::Container => wcodec_container::read_layout(&source)?,
        InputKind::Raw { dtype, dims } => wcodec_container::SourceLayout {
            kind: wcodec_format::SourceKind::Raw,
            tensors: vec![wcodec_container::SourceTensor {
                name: "tensor".into(),
                dtype: *dtype,
                dims: dims.clone(),
                offset: 0,
                len: source.len() as u64,
            }],
        },
    };
    let total = source.len() as u64;
    let tensors = layout.tensors.len();
    let compressed_len = write_atomically(output, force, |w| {
        let mut counter = CountingWriter { inner: w, count: 0 };
        wcodec_encode::compress_file_hinted(
            &source,
            &layout,
            options,
            &mut counter,
            &mut |done| progress(done, total),
            &mut |hint| source.advise(&hint),
        )
        .map_err(|e| match e {
            wcodec_encode::EncodeError::Io(source) => Error::Io { path: output.to_owned(), source },
            other => other.into(),
        })?;
        Ok(counter.count)
    })?;
    Ok(CompressReport { source_len: total, compressed_len, tensors })
}

/// Decompresses `input` (.wcz) into `output`, byte-identical to the original file, one tensor
/// at a time.
pub fn decompress_path(
    input: &Path,
    output: &Path,
    force: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, Error> {
    decompress_path_with_limits(input, output, force, &crate::Limits::default(), progress)
}

/// `decompress_path` within `limits` (the default refuses outputs over 1024x the file).
pub fn decompress_path_with_limits(
    input: &Path,
    output: &Path,
    force: bool,
    limits: &crate::Limits,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, Error> {
    let archive = crate::Archive::open_with_limits(input, limits)?;
    let total = archive.directory().source_len;
    write_atomically(output, force, |w| {
        archive.write_source(w, output, progress)?;
        Ok(total)
    })
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
