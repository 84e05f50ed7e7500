//! `cargo xtask ci`: the project's whole check, as CI runs it (.ci/run) and as the README
//! gives it: formatting, lints, tests, golden files, and that the benches build.

use std::process::Command;

use crate::Result;

/// (what, cargo arguments) of each step, in order.
const STEPS: &[(&str, &[&str])] = &[
    ("format", &["fmt", "--all", "--", "--check"]),
    ("lints", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    ("tests", &["test", "--workspace"]),
    ("golden files", &["xtask", "golden", "--check"]),
    ("benches build", &["bench", "--workspace", "--no-run"]),
];

pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        return Err("usage: cargo xtask ci".into());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = crate::golden::project_root();
    for (what, step) in STEPS {
        eprintln!("==> {what}: cargo {}", step.join(" "));
        let status = Command::new(&cargo).current_dir(&root).args(*step).status()?;
        if !status.success() {
            return Err(format!("{what} failed (cargo {})", step.join(" ")).into());
        }
    }
    eprintln!("==> all checks passed");
    Ok(())
}
