//! A compress or decompress killed mid-way: nothing appears under the target name (an existing
//! target is left as it was), the input is untouched, Ctrl-C (SIGINT) and SIGTERM remove the
//! temporary file and exit with 130, and SIGKILL, which cannot be caught, leaves at most one
//! `.wcodec-<pid>-*.tmp` beside the target (documented in the README).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A raw i8 tensor of 4096 x 16384 (64 MiB) of noisy small values: long enough to encode and
/// decode that a signal lands mid-way.
fn big_input(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..(64usize << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0x0f0f_0f0f_0f0f_0f0f).to_le_bytes()
        })
        .collect();
    let path = dir.join("big.i8");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wcodec"))
        .args(["--threads", "1", "-q"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".wcodec-") && n.ends_with(".tmp"))
        .collect()
}

/// Waits until `child` has started writing its temporary file in `dir`, then sends `signal`.
/// Returns false if the child finished first (the machine was too fast for the test).
fn interrupt(child: &mut Child, dir: &Path, signal: &str) -> bool {
    let start = Instant::now();
    while temporaries(dir).is_empty() {
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(20) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    if child.try_wait().unwrap().is_some() {
        return false;
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    true
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn interrupted_compress_and_decompress_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (input, bytes) = big_input(dir.path());
    let wcz = dir.path().join("big.wcz");
    let shape = ["--raw", "--dtype", "i8", "--shape", "4096,16384"];
    for signal in ["-INT", "-TERM", "-KILL"] {
        let mut args = vec!["compress", s(&input), "-o", s(&wcz)];
        args.extend(shape);
        let mut child = spawn(&args);
        let pid = child.id();
        if !interrupt(&mut child, dir.path(), signal) {
            eprintln!("compress finished before {signal}: nothing to check");
            continue;
        }
        let status = child.wait_with_output().unwrap();
        assert!(!wcz.exists(), "{signal}: a partial output under the target name");
        let left = temporaries(dir.path());
        if signal == "-KILL" {
            assert_eq!(status.status.code(), None, "killed by the signal");
            let own = format!(".wcodec-{pid}-");
            assert!(left.len() <= 1 && left.iter().all(|n| n.starts_with(&own)), "{left:?}");
            for n in left {
                std::fs::remove_file(dir.path().join(n)).unwrap();
            }
        } else {
            assert_eq!(status.status.code(), Some(130), "{signal}");
            assert!(left.is_empty(), "{signal}: temporaries left: {left:?}");
            let msg = String::from_utf8_lossy(&status.stderr);
            assert_eq!(msg.trim_end().lines().count(), 1, "{msg}");
        }
    }
    // The input was only read.
    assert!(std::fs::read(&input).unwrap() == bytes, "input modified");

    // Decompress: a complete .wcz, then interrupted decodes; an existing target is kept.
    let mut args = vec!["compress", s(&input), "-o", s(&wcz)];
    args.extend(shape);
    assert!(spawn(&args).wait().unwrap().success());
    let wcz_bytes = std::fs::read(&wcz).unwrap();
    let out = dir.path().join("big.out");
    for signal in ["-INT", "-KILL"] {
        std::fs::write(&out, b"precious").unwrap();
        let mut child = spawn(&["decompress", "--force", s(&wcz), "-o", s(&out)]);
        if !interrupt(&mut child, dir.path(), signal) {
            eprintln!("decompress finished before {signal}: nothing to check");
            std::fs::remove_file(&out).unwrap();
            continue;
        }
        child.wait().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"precious", "{signal}: target replaced");
        for n in temporaries(dir.path()) {
            assert_eq!(signal, "-KILL", "{signal}: temporary {n} left");
            std::fs::remove_file(dir.path().join(n)).unwrap();
        }
    }
    assert!(std::fs::read(&wcz).unwrap() == wcz_bytes, "compressed input modified");
}
