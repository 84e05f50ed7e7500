//! The streaming decode (`Archive::write_source`): spans decoded while a writer thread writes
//! the ones before, in every budget, stream back identical; a writer or a span that fails
//! ends the stream with its error, never a hang.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use wcodec::{Archive, EncodeOptions, Error};

/// The int8 MiniLM sample (26 tensors) and its .wcz written to a temporary directory.
fn sample() -> (Vec<u8>, Vec<u8>, tempfile::TempDir, PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/minilm-int8-per-tensor.safetensors");
    let source = std::fs::read(&path).unwrap();
    let wcz = wcodec::compress(&source, &EncodeOptions::for_gpu()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.wcz");
    std::fs::write(&file, &wcz).unwrap();
    (source, wcz, dir, file)
}

/// Runs `f` on another thread; fails the test if it takes more than a minute (a hang).
fn without_hanging<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(60)).expect("finished within a minute")
}

#[test]
fn every_span_size_and_overlap_budget_streams_back_identical() {
    let (source, _, _dir, file) = sample();
    let archive = Archive::open(&file).unwrap();
    let total = source.len() as u64;
    // Spans of one tensor each up to the whole file; no overlap, some, and every span.
    for span_bytes in [1, 256 << 10, 4 << 20, 64 << 20] {
        for overlap in [0, 1 << 20, 8 << 20, usize::MAX] {
            let mut reports = Vec::new();
            let out = archive
                .write_source_in_spans(
                    Vec::new(),
                    Path::new("(memory)"),
                    &mut |done, all| reports.push((done, all)),
                    span_bytes,
                    overlap,
                )
                .unwrap();
            assert!(out == source, "spans of {span_bytes}, overlap {overlap}");
            assert!(reports.iter().all(|&(_, all)| all == total));
            assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "progress never goes back");
            assert_eq!(reports.last(), Some(&(total, total)));
        }
    }
}

/// A sink that takes `room` bytes, then fails.
struct FullDisk {
    room: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_ends_the_stream_with_its_error() {
    let (source, _, _dir, file) = sample();
    for room in [0, 1000, source.len() / 3, source.len() - 1] {
        let file = file.clone();
        let err = without_hanging(move || {
            let archive = Archive::open(&file).unwrap();
            let sink = FullDisk { room };
            let path = Path::new("out.safetensors");
            archive.write_source_in_spans(sink, path, &mut |_, _| {}, 256 << 10, 1 << 20).err()
        });
        match err {
            Some(Error::Io { path, source }) => {
                assert_eq!(path, Path::new("out.safetensors"));
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "room {room}");
            }
            other => panic!("room {room}: {other:?}"),
        }
    }
}

#[test]
fn a_damaged_later_span_ends_the_stream_with_its_error() {
    let (source, wcz, dir, _) = sample();
    // A byte in the last tensor's payload: found after earlier spans were written.
    let archive = Archive::open(&dir.path().join("m.wcz")).unwrap();
    let last = archive.directory().tensors.last().unwrap().clone();
    let plane = last.planes.iter().max_by_key(|p| p.payload_len).unwrap();
    let mut bad = wcz.clone();
    bad[(plane.payload_offset + plane.payload_len / 2) as usize] ^= 0x20;
    let file = dir.path().join("bad.wcz");
    std::fs::write(&file, &bad).unwrap();
    let (written, err) = without_hanging(move || {
        let archive = Archive::open(&file).unwrap();
        let mut written = Vec::new();
        let result = archive.write_source_in_spans(
            &mut written,
            Path::new("out"),
            &mut |_, _| {},
            256 << 10,
            1 << 20,
        );
        let err = result.err().map(|e| e.to_string());
        (written, err)
    });
    let err = err.expect("an error");
    assert!(err.contains(&format!("{:?}", last.name)), "{err}");
    // What was written before the error is the source's beginning, and not all of it.
    assert!(!written.is_empty() && written.len() < source.len(), "{}", written.len());
    assert!(source.starts_with(&written));
}
