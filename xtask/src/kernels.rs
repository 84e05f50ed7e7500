//! `cargo xtask kernels`: compiles kernels/*.cu for every target of kernels/gencode.txt, each
//! file as kernels/builds.txt says the crate's build compiles it (whole, or as relocatable
//! device code: its registers can differ), with ptxas's resource report, and prints, per kernel
//! and target, its registers, shared memory, stack and spills. A kernel that does not compile
//! fails the command.

use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::cuda::find_nvcc;

/// One line of the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Usage {
    kernel: String,
    arch: String,
    registers: u32,
    shared: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        if a != "-h" && a != "--help" {
            return Err(format!("unknown argument {a}; usage: cargo xtask kernels").into());
        }
        println!(
            "usage: cargo xtask kernels\n\nCompiles kernels/*.cu as the crate's build does (kernels/builds.txt; nvcc -Xptxas -v) and prints registers, shared memory and spills per kernel."
        );
        return Ok(());
    }
    let nvcc = find_nvcc()
        .ok_or("nvcc not found: set CUDA_HOME or NVCC, or run `cargo xtask cuda-toolchain`")?;
    let root = crate::golden::project_root();
    let kernels = root.join("kernels");
    let gencode = gencode_list(&kernels.join("gencode.txt"))?;
    let out_dir = std::env::temp_dir().join(format!("wcodec-kernels-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let mut sources: Vec<_> = std::fs::read_dir(&kernels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    let builds = kernel_builds(&kernels.join("builds.txt"))?;
    let mut rows = Vec::new();
    for source in &sources {
        let name = source.file_name().unwrap_or_default().to_string_lossy();
        let relocatable = builds
            .iter()
            .find(|(file, _)| *file == name)
            .map(|&(_, r)| r)
            .ok_or_else(|| format!("kernels/{name} is not listed in kernels/builds.txt"))?;
        let mut cmd = Command::new(&nvcc);
        cmd.args(["-c", "-O3", "-std=c++17", "-lineinfo", "-Xptxas", "-v", "-I"]).arg(&kernels);
        if relocatable {
            cmd.arg("-rdc=true");
        }
        for g in &gencode {
            cmd.arg("-gencode").arg(g);
        }
        let object = out_dir.join("kernel.o");
        let output = cmd.arg(source).arg("-o").arg(&object).output()?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("nvcc failed on {}:\n{log}", source.display()).into());
        }
        rows.extend(parse(&log));
    }
    std::fs::remove_dir_all(&out_dir).ok();
    println!("nvcc: {}", nvcc.display());
    println!(
        "| kernel | target | registers | shared bytes (static) | stack bytes | spill stores | spill loads |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.kernel, r.arch, r.registers, r.shared, r.stack, r.spill_stores, r.spill_loads
        );
    }
    Ok(())
}

/// kernels/builds.txt: each kernel file and whether the crate's build compiles it as
/// relocatable device code (`whole FILE` or `relocatable FILE` a line; `#` starts a comment).
fn kernel_builds(path: &Path) -> Result<Vec<(String, bool)>> {
    let mut builds = Vec::new();
    for line in std::fs::read_to_string(path)?.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        builds.push(match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["whole", file] => (file.to_owned(), false),
            ["relocatable", file] => (file.to_owned(), true),
            _ => {
                return Err(format!(
                    "kernels/builds.txt: `{line}` is not `whole FILE` or `relocatable FILE`"
                )
                .into());
            }
        });
    }
    Ok(builds)
}

/// The -gencode values, one a line; `#` starts a comment.
fn gencode_list(path: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// The numbers before `unit` in `line` ("Used 56 registers" -> 56).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let at = line.find(unit)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

/// Reads ptxas -v output: "Compiling entry function 'NAME' for 'sm_90'", then the function's
/// stack/spill line and its "Used N registers, ... N bytes smem" line.
fn parse(log: &str) -> Vec<Usage> {
    let mut rows = Vec::new();
    let mut current: Option<Usage> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            if let Some(done) = current.take() {
                rows.push(done);
            }
            let mut parts = rest.split('\'');
            let name = parts.next().unwrap_or_default();
            let arch = parts.nth(1).unwrap_or_default();
            current = Some(Usage { kernel: demangle(name), arch: arch.into(), ..Usage::default() });
        } else if let Some(u) = current.as_mut() {
            if line.contains("bytes stack frame") {
                u.stack = number_before(line, "bytes stack frame").unwrap_or(0);
                u.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                u.registers = number_before(line, "registers").unwrap_or(0);
                u.shared = number_before(line, "bytes smem").unwrap_or(0);
                rows.push(current.take().expect("current"));
            }
        }
    }
    rows.extend(current);
    rows
}

/// A readable name for the project's kernels: `wc_decode_kernel<1024, 1, StreamLoad>` from its
/// Itanium mangling (template arguments: `Lj<n>E` numbers, `Lb<0|1>E` bools and `<len><name>`
/// types).
fn demangle(mangled: &str) -> String {
    let Some(start) = mangled.find("wc_") else { return mangled.into() };
    let rest = &mangled[start..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    // Kernel names are snake case: the first capital starts the template arguments (`I...`)
    // or the end of the name and the parameters (`E...`).
    let name = &rest[..end];
    let (base, args) = match name.find(|c: char| c.is_ascii_uppercase()) {
        Some(i) if name[i..].starts_with('I') => (&name[..i], &name[i..]),
        Some(i) => (&name[..i], ""),
        None => (name, ""),
    };
    let mut out = vec![];
    let mut s = args.trim_start_matches('I');
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix("Lj") {
            let n: String = r.chars().take_while(char::is_ascii_digit).collect();
            s = r[n.len()..].trim_start_matches('E');
            out.push(n);
        } else if let Some(r) = s.strip_prefix("Lb") {
            // A bool: Lb0E or Lb1E.
            out.push(if r.starts_with('1') { "true" } else { "false" }.to_owned());
            s = r.get(1..).unwrap_or("").trim_start_matches('E');
        } else if let Some(r) = s.strip_prefix("NS_") {
            let n: String = r.chars().take_while(char::is_ascii_digit).collect();
            let len: usize = n.parse().unwrap_or(0);
            let r = &r[n.len()..];
            out.push(r.get(..len).unwrap_or(r).to_owned());
            s = r.get(len..).unwrap_or("").trim_start_matches('E');
        } else {
            break;
        }
    }
    let base = base.trim_end_matches(|c: char| c.is_ascii_digit());
    if out.is_empty() { base.to_owned() } else { format!("{base}<{}>", out.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ptxas_reports() {
        let log = "ptxas info    : Compiling entry function '_ZN41_GLOBAL__N__acd6d9da_9_decode_cu_e649625916wc_decode_kernelILj1024ELj1ENS_10StreamLoadEEEv8WcLaunch' for 'sm_90'
ptxas info    : Function properties for x
    0 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 56 registers, used 1 barriers, 16 bytes smem
ptxas info    : Compiling entry function '_ZN41_GLOBAL__N__acd6d9da_9_decode_cu_e649625915wc_merge_kernelEPK7WcMerge' for 'sm_80'
ptxas info    : Used 22 registers, used 0 barriers";
        let rows = parse(log);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kernel, "wc_decode_kernel<1024, 1, StreamLoad>");
        assert_eq!((rows[0].registers, rows[0].shared, rows[0].spill_stores), (56, 16, 4));
        assert_eq!(rows[1].kernel, "wc_merge_kernel");
        assert_eq!((rows[1].arch.as_str(), rows[1].registers), ("sm_80", 22));
        // The compact twin of the ring variant: bools and numbers after the type.
        let twin = "_ZN41_GLOBAL__N__acd6d9da_9_decode_cu_e649625916wc_decode_kernelILj384ELj4ENS_10StreamLoadELb1ELj2048ELb1EEEv8WcLaunch";
        assert_eq!(demangle(twin), "wc_decode_kernel<384, 4, StreamLoad, true, 2048, true>");
        // Relocatable code's names, and a kernel of other parameters.
        let crc = "__nv_static_27__b50b2021_6_crc_cu_9e091035__ZN38_GLOBAL__N__b50b2021_6_crc_cu_9e09103516wc_crc32c_kernelEPK10WcCrcChunkjPKhPKjPjS7_";
        assert_eq!(demangle(crc), "wc_crc32c_kernel");
    }
}
