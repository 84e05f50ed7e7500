//! Times `Plan::build` (the host's share of a decode into GPU memory) over a .wcz file; needs no
//! GPU.
//!
//! usage: plan_time FILE [LOADS]   (default 8; the minimum and median are printed)
//! env:   RUN=N        plan runs of N tensors each (`Plan::build_in_runs`; N = the tensor
//!                     count plans them one by one, on one core)
//!        NOVERIFY=1   no CRC checks (`PlanOptions::verify_checksums` off)
//!        ON_HOST=1    the CRC checks on the host's cores (`checksums_on_device` off)
use wcodec_cuda::plan::{Plan, PlanOptions};
use wcodec_format::Directory;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: plan_time FILE [LOADS]")?;
    let loads: usize = args.get(2).map_or(Ok(8), |s| s.parse())?.max(1);
    let file = std::fs::read(path)?;
    let dir = Directory::from_file_bytes(&file)?;
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let options = PlanOptions {
        verify_checksums: std::env::var_os("NOVERIFY").is_none(),
        checksums_on_device: std::env::var_os("ON_HOST").is_none(),
        ..PlanOptions::default()
    };
    let run: Option<usize> = std::env::var("RUN").ok().map(|r| r.parse()).transpose()?;
    let mut times = Vec::with_capacity(loads);
    let mut units = 0;
    for _ in 0..loads {
        let start = std::time::Instant::now();
        let plan = match run {
            Some(run) => Plan::build_in_runs(&file, &dir, &all, &options, run)?,
            None => Plan::build(&file, &dir, &all, &options)?,
        };
        times.push(start.elapsed().as_secs_f64() * 1e3);
        units = plan.units.len();
        drop(plan);
    }
    times.sort_by(f64::total_cmp);
    let threads = rayon::current_num_threads();
    println!(
        "{path}: {} tensors, {units} units, {threads} threads, runs of {}: plan {:.2} ms min, \
         {:.2} ms median",
        all.len(),
        run.map_or("(default)".into(), |r| r.to_string()),
        times[0],
        times[loads / 2]
    );
    Ok(())
}
