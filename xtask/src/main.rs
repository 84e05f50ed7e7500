//! Project automation for wcodec: `cargo xtask <command> [args]`.
//!
//! A small hand-written dispatch (no argument-parsing crate, to keep xtask's dependencies
//! few). To add a command: a module with `pub fn run(args: &[String]) -> Result<()>`, a line in
//! `COMMANDS` and an arm in `main`.

mod bench;
mod ci;
mod corpus;
mod cuda;
mod fuzz;
mod golden;
mod gpu;
mod kernels;
mod large_file;

use std::process::ExitCode;

// Encoding allocates and frees tensor-sized buffers; mimalloc reuses them where the system
// allocator returns them to the kernel and pays page faults to get them back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// (name, one-line description) of every command, for `cargo xtask help`.
const COMMANDS: &[(&str, &str)] = &[
    (
        "corpus",
        "fetch the real-weights corpus into a cache and derive its variants (--help for options)",
    ),
    ("ci", "every check CI runs: format, lints, tests, golden files, benches build"),
    (
        "bench",
        "criterion benches, then ratio and speed on the real corpus; --gpu: a folder for the GPU run",
    ),
    (
        "bench-decode",
        "decode speed alone on the corpus, 1 and all threads (--runs N, --only TEXT, --save DIR,\
         --into, --fast, --for-gpu, --max-tables N, --prob-bits B, --predictors LIST, --tile RxC)",
    ),
    (
        "bench-encode",
        "encode speed alone on the corpus, 1 and all threads (--runs N, --only TEXT, --loop N,\
         --fast, --for-gpu, --max-tables N, --prob-bits B, --predictors LIST, --tile RxC)",
    ),
    (
        "bench-large",
        "the CLI's time and peak RSS on a generated GIB-GiB file (run by bench: --large-gib)",
    ),
    ("golden", "compare compressed golden files with their snapshots (--check: fail on change)"),
    ("fuzz", "run every fuzz target of fuzz/ for a while (--seconds N; needs cargo-fuzz)"),
    ("cuda-toolchain", "install the pinned nvcc (CUDA 13.0 wheels) into a cache; print CUDA_HOME"),
    ("kernels", "compile kernels/*.cu and print registers, shared memory and spills per kernel"),
];

fn usage() {
    eprintln!("usage: cargo xtask <command> [args]\n\ncommands:");
    for (name, about) in COMMANDS {
        eprintln!("  {name:<10} {about}");
    }
}

fn main() -> ExitCode {
    wcodec::disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage();
        return ExitCode::FAILURE;
    };
    // Timings taken by an unoptimised xtask (the `cargo xtask` alias builds the dev profile)
    // would measure the facade, rayon and the checksums unoptimised: rerun optimised.
    let timed = ["bench-report", "bench-large", "bench-decode", "bench-encode"];
    if cfg!(debug_assertions) && timed.contains(&command.as_str()) {
        return bench::rerun_optimised(&args);
    }
    let result = match command.as_str() {
        "corpus" => corpus::run(rest),
        "golden" => golden::run(rest),
        "bench" => bench::run(rest),
        "ci" => ci::run(rest),
        "fuzz" => fuzz::run(rest),
        "cuda-toolchain" => cuda::run(rest),
        "kernels" => kernels::run(rest),
        "bench-report" => bench::report(rest),
        "bench-large" => large_file::run(rest),
        "bench-decode" => bench::speed_report(rest, bench::Timed::Decode),
        "bench-encode" => bench::speed_report(rest, bench::Timed::Encode),
        "help" | "-h" | "--help" => {
            usage();
            Ok(())
        }
        other => {
            usage();
            Err(format!("unknown command '{other}'").into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
