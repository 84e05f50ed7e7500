//! The GPU decoder's host side on arbitrary bytes: `Plan::build` refuses what the kernel could
//! not take, and what it accepts runs through the kernel's algorithm on the CPU
//! (`wcodec_cuda::emulate`, which reads and writes exactly what the kernel would) without going
//! out of bounds (a panic here would be a read or write outside a buffer on the GPU). Where every
//! unit ends in its final states and the reference decoder reads the tensor, the two agree, with
//! full and with compact tables and with ranges of one and of several blocks, and a subset of the
//! tensors decodes as the whole plan did. The CRC checks left to the GPU (computed as its CRC
//! kernel does) agree with the host's; the staging and outputs known before the plan
//! (`Plan::staging_of`, `outputs_of`) are the plan's, and a plan made in runs of tensors is the same plan. Each input runs as it is
//! and with its unit, raw-plane and directory CRCs recomputed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wcodec::format::Directory;
use wcodec_cuda::{Plan, PlanOptions, emulate};

#[path = "wcz.rs"]
mod wcz;

/// Decoded bytes above which an input is not emulated (a directory may describe large tensors
/// in few bytes: zeros compress well).
const MAX_OUTPUT: u64 = 16 << 20;

fn check(data: &[u8]) {
    let Ok(dir) = Directory::from_file_bytes(data) else { return };
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    for verify_checksums in [true, false] {
        let options = PlanOptions { verify_checksums, ..PlanOptions::default() };
        // A plan made in runs of one tensor is the same plan, or the same error.
        let built = Plan::build(data, &dir, &all, &options);
        let in_runs = Plan::build_in_runs(data, &dir, &all, &options, 1);
        assert_eq!(format!("{in_runs:?}"), format!("{built:?}"), "a plan in runs differs");
        let Ok(plan) = built else { continue };
        // The staging a load uploads before the plan is made is the plan's.
        if let Some(early) = Plan::staging_of(data, &dir, &all, &options) {
            assert_eq!(early.segments, plan.segments, "the staging known early differs");
            assert_eq!(early.len, plan.staging_len);
        }
        if let Some(outputs) = Plan::outputs_of(data, &dir, &all, &options) {
            assert_eq!(outputs, plan.outputs, "the outputs known early differ");
        }
        if plan.outputs.iter().map(|o| o.len).sum::<u64>() > MAX_OUTPUT {
            return;
        }
        let mut compact = plan.clone();
        compact.compact_tables(0);
        let mut staging = vec![0u8; plan.staging_len as usize];
        plan.fill_staging(data, &mut staging);
        // The checks left to the GPU read inside the staging and find what the host's find.
        let device =
            plan.verify_crcs(&dir, &emulate::crcs(&plan, &staging)).map_err(|e| e.to_string());
        if verify_checksums {
            let on_host = PlanOptions { checksums_on_device: false, ..options.clone() };
            let host =
                Plan::build(data, &dir, &all, &on_host).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(device, host, "the GPU's CRC checks and the host's disagree");
        }
        let mut first: Option<Vec<Vec<u8>>> = None;
        for (p, blocks) in [(&plan, 1), (&plan, 7), (&compact, 3)] {
            let mut outputs: Vec<Vec<u8>> =
                p.outputs.iter().map(|o| vec![0u8; o.len as usize]).collect();
            let status = emulate::execute(p, &p.ranges(blocks), &staging, &mut outputs);
            emulate::merge(p, &mut outputs);
            if p.check_status(&dir, &status).is_err() {
                continue;
            }
            let tensors: Vec<Vec<u8>> = outputs
                .into_iter()
                .zip(&p.outputs)
                .filter(|(_, o)| !o.scratch)
                .map(|(v, _)| v)
                .collect();
            match &first {
                None => {
                    let decoded = p.outputs.iter().filter(|o| !o.scratch).zip(&tensors);
                    for (o, got) in decoded {
                        let tensor = &dir.tensors[o.tensor];
                        if let Ok(want) = wcodec::decode::decode_tensor_reference(data, tensor) {
                            assert!(*got == want, "tensor {:?} differs", tensor.name);
                        }
                    }
                    first = Some(tensors);
                }
                Some(first) => assert!(*first == tensors, "launch shapes disagree"),
            }
        }
        // Every other tensor, as a file kept in device memory decodes them (`Plan::subset`,
        // over the whole plan's staging and tables): the same bytes as the whole plan gave.
        if let Some(first) = &first {
            let which: Vec<usize> = all.iter().copied().step_by(2).collect();
            let mut sub = plan.subset(&which).expect("every tensor is in the plan");
            sub.tables.clone_from(&plan.tables);
            sub.maps.clone_from(&plan.maps);
            let mut outputs: Vec<Vec<u8>> =
                sub.outputs.iter().map(|o| vec![0u8; o.len as usize]).collect();
            let status = emulate::execute(&sub, &sub.ranges(2), &staging, &mut outputs);
            emulate::merge(&sub, &mut outputs);
            assert!(
                sub.check_status(&dir, &status).is_ok(),
                "a subset fails where the whole did not"
            );
            let whole: Vec<usize> =
                plan.outputs.iter().filter(|o| !o.scratch).map(|o| o.tensor).collect();
            let decoded = outputs.iter().zip(&sub.outputs).filter(|(_, o)| !o.scratch);
            for (got, o) in decoded {
                let k = whole.iter().position(|&t| t == o.tensor).expect("in the whole plan");
                assert!(*got == first[k], "subset tensor {} differs", o.tensor);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| wcz::as_is_and_fixed(data, check));
