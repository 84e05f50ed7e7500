//! The CUDA decoder against the CPU reference decoder, on a GPU: every shape class, dtype and
//! predictor, many tensors in one launch, every launch shape, real data, damaged and hostile
//! files. Without a GPU (or without kernels in this build) each test says "skipping" and
//! passes. `WCODEC_GPU_QUICK=1` runs smaller sets (for compute-sanitizer, which is slow).

mod common;

use common::*;
use wcodec_cuda::{CompactTables, CudaDecoder, CudaError, LaunchConfig, PlanOptions};
use wcodec_format::{Directory, PlaneEncoding};

fn gpu() -> Option<CudaDecoder> {
    match CudaDecoder::new(0) {
        Ok(gpu) => {
            println!("GPU: {}", gpu.device_name());
            Some(gpu)
        }
        Err(CudaError::NotAvailable(why)) => {
            println!("skipping: no CUDA device ({why})");
            None
        }
        Err(other) => panic!("opening the GPU failed: {other}"),
    }
}

fn quick() -> bool {
    std::env::var_os("WCODEC_GPU_QUICK").is_some()
}

/// Decodes every tensor on the GPU and compares each with the reference.
fn check_all(gpu: &CudaDecoder, file: &[u8], what: &str) {
    let dir = Directory::from_file_bytes(file).unwrap();
    let expected = reference(file, &dir);
    let tensors = gpu.decode_all(file, &dir).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(tensors.len(), expected.len());
    for (t, want) in tensors.iter().zip(&expected) {
        assert_eq!(t.len(), want.len(), "{what}: {}", t.name);
        let got = t.to_host().unwrap_or_else(|e| panic!("{what}: {}: {e}", t.name));
        assert!(got == *want, "{what}: tensor {:?} differs from the reference", t.name);
    }
}

#[test]
fn every_shape_dtype_and_predictor_matches_the_reference() {
    let Some(gpu) = gpu() else { return };
    let cases = cases();
    let step = if quick() { 7 } else { 1 };
    for case in cases.iter().step_by(step) {
        check_all(&gpu, &file_of(std::slice::from_ref(case)), &case.name);
    }
}

#[test]
fn many_tensors_in_one_launch_with_every_launch_shape() {
    let Some(mut gpu) = gpu() else { return };
    let cases = cases();
    let cases = if quick() { &cases[..12] } else { &cases[..] };
    let file = file_of(cases);
    check_all(&gpu, &file, "default launch");
    let mut configs = Vec::new();
    for variant in 0..wcodec_cuda::abi::VARIANTS {
        let max = wcodec_cuda::abi::VARIANT_WARPS[variant as usize];
        for warps in [1u32, 3, 8, 16, 32].into_iter().filter(|&w| w <= max) {
            for (blocks_per_sm, units_per_block) in
                [(1, 0), (2, 0), (5, 0), (1, 1), (1, warps), (1, 4 * warps)]
            {
                configs.push(LaunchConfig {
                    variant,
                    warps_per_block: warps,
                    blocks_per_sm,
                    units_per_block,
                });
            }
        }
    }
    if quick() {
        // The first shapes of variant 0, and two of the variant that stages the stream in
        // shared memory.
        let mut kept: Vec<LaunchConfig> = configs[..4].to_vec();
        kept.extend(configs.iter().filter(|c| {
            c.variant >= 6 && c.warps_per_block == 3 && c.units_per_block == 3
                || c.variant >= 6 && c.warps_per_block == 8 && c.blocks_per_sm == 2
        }));
        configs = kept;
    }
    for config in configs {
        gpu.set_plan_options(PlanOptions {
            verify_checksums: true,
            launch: Some(config),
            ..PlanOptions::default()
        });
        check_all(&gpu, &file, &format!("{config:?}"));
    }
}

#[test]
fn tables_too_big_for_shared_memory_are_read_in_place() {
    let Some(mut gpu) = gpu() else { return };
    // Full tables: compact ones (80 KiB for 16 tables) would fit.
    gpu.set_plan_options(PlanOptions {
        compact_tables: CompactTables::Never,
        ..PlanOptions::default()
    });
    let file = file_of(&[sixteen_tables()]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let PlaneEncoding::Rans { tables, .. } = &dir.tensors[0].planes[0].encoding else {
        panic!("expected a rANS plane")
    };
    let bytes = tables.len() << 14;
    let limit = gpu.kernel_info(0).unwrap().max_dynamic_shared as usize;
    println!("{} tables, {bytes} bytes, shared memory limit {limit}", tables.len());
    assert!(bytes > limit, "this case no longer exercises the global-memory tables");
    check_all(&gpu, &file, "16 row classes");
}

/// Compact tables everywhere, on planes of more than 16 KiB of tables, nowhere and as the
/// decoder decides decode alike, on each kernel
/// variant (one small-block shape and one shape of ranges each) and the decoder's own shape.
#[test]
fn compact_and_full_tables_decode_alike() {
    let Some(mut gpu) = gpu() else { return };
    let mut cases = cases();
    cases.push(sixteen_tables());
    let file = file_of(&cases);
    let mut configs: Vec<Option<LaunchConfig>> = vec![None];
    for variant in 0..wcodec_cuda::abi::VARIANTS {
        let warps = wcodec_cuda::abi::VARIANT_WARPS[variant as usize].min(8);
        configs.push(Some(LaunchConfig {
            variant,
            warps_per_block: warps,
            blocks_per_sm: 1,
            units_per_block: warps,
        }));
        configs.push(Some(LaunchConfig {
            variant,
            warps_per_block: warps,
            blocks_per_sm: 2,
            units_per_block: 0,
        }));
    }
    if quick() {
        // The decoder's shape, and the ring variant's small blocks.
        configs.retain(|c| c.is_none_or(|c| c.variant == 6 && c.units_per_block > 0));
    }
    let rule = CompactTables::Above(wcodec_cuda::plan::COMPACT_TABLES_ABOVE);
    for how in [CompactTables::Above(0), rule, CompactTables::Never, CompactTables::Auto] {
        for &launch in &configs {
            gpu.set_plan_options(PlanOptions {
                launch,
                compact_tables: how,
                ..PlanOptions::default()
            });
            check_all(&gpu, &file, &format!("{how:?}, {launch:?}"));
        }
    }
}

/// Tensors larger than the pinned windows the compressed bytes go up and the tensors come back
/// through (32 MiB, three of them): more windows than buffers both ways, a last window cut
/// short, a raw plane and a coded one; `to_host` and `write_to` give the original bytes.
#[test]
fn large_tensors_cross_many_copy_windows() {
    let Some(gpu) = gpu() else { return };
    if quick() {
        println!("skipping under WCODEC_GPU_QUICK: 190 MB of tensors");
        return;
    }
    let mut rng = Rng::new(11);
    let coded = Case {
        name: "coded".into(),
        dtype: wcodec_format::Dtype::I8,
        dims: vec![12_289, 10_240],
        bytes: weights(&mut rng, 12_289, 10_240),
        options: wcodec_encode::EncodeOptions::for_gpu(),
    };
    let noise: Vec<u8> = (0..(60 << 20) + 12_345).map(|_| rng.next() as u8).collect();
    let raw = Case {
        name: "raw".into(),
        dtype: wcodec_format::Dtype::U8,
        dims: vec![noise.len() as u64],
        bytes: noise,
        options: wcodec_encode::EncodeOptions::for_gpu(),
    };
    let cases = [coded, raw];
    let file = file_of(&cases);
    let dir = Directory::from_file_bytes(&file).unwrap();
    assert!(
        dir.tensors.iter().map(|t| t.stored_len()).sum::<u64>() > 4 * (32 << 20),
        "the compressed bytes must take more windows than there are buffers"
    );
    let tensors = gpu.decode_all(&file, &dir).unwrap();
    for (t, case) in tensors.iter().zip(&cases) {
        assert!(t.to_host().unwrap() == case.bytes, "{}: to_host", t.name);
        let mut written = Vec::new();
        t.write_to(&mut written).unwrap();
        assert!(written == case.bytes, "{}: write_to", t.name);
        // A writer that fails after the first window: an error, and the copies left in flight
        // do not disturb the next copy back.
        let mut full = FailsAfter(40 << 20);
        assert!(matches!(t.write_to(&mut full), Err(CudaError::Io(_))), "{}", t.name);
        assert!(t.to_host().unwrap() == case.bytes, "{}: to_host after a failed write", t.name);
    }
}

/// A writer that takes `.0` bytes, then fails.
struct FailsAfter(usize);

impl std::io::Write for FailsAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.0 {
            return Err(std::io::Error::other("no space left"));
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn real_slices_match_the_reference() {
    let Some(gpu) = gpu() else { return };
    let tiles: &[(u32, u32)] =
        if quick() { &[(64, 256)] } else { &[(256, 256), (64, 256), (128, 128), (40, 33)] };
    for &tile in tiles {
        let options = options(tile, &wcodec_format::Predictor::ALL, 8);
        for (name, file) in real_files(&options) {
            check_all(&gpu, &file, &format!("{name} tile {tile:?}"));
        }
    }
}

/// Decodes launched while the compressed bytes go up (`PlanOptions::streamed_launch_bytes`, at
/// steps small enough that each file takes many launches): every case, merged and scratch
/// BF16, a raw plane, real slices and chosen tensors against the reference, with each launch
/// shape of small blocks; damaged files give the errors of one launch after the upload.
#[test]
fn streamed_decodes_match_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let streamed = |step| PlanOptions { streamed_launch_bytes: step, ..PlanOptions::default() };
    let mut all_cases = cases();
    all_cases.extend(bf16_cases());
    // GGUF blocks, merged after the last piece, and coded whole.
    all_cases.extend(field_run_cases());
    all_cases.extend(whole_block_cases());
    let coded = file_of(if quick() { &all_cases[..16] } else { &all_cases });
    let (_, raw) = raw_plane_file();
    let mut files = vec![("every case".to_string(), coded.clone()), ("raw plane".into(), raw)];
    let real_options = options((64, 256), &wcodec_format::Predictor::ALL, 8);
    files.extend(real_files(&real_options));
    let steps: &[u64] = if quick() { &[4096] } else { &[4096, 100_000, 1 << 20] };
    for &step in steps {
        gpu.set_plan_options(streamed(step));
        for (name, file) in &files {
            check_all(&gpu, file, &format!("{name}, a launch every {step} bytes"));
        }
    }
    gpu.set_plan_options(PlanOptions { merge_while_decoding: false, ..streamed(4096) });
    check_all(&gpu, &coded, "every case, BF16 through scratch, a launch every 4096 bytes");
    for units_per_block in [1, 3, 16] {
        let config =
            LaunchConfig { variant: 6, warps_per_block: 8, blocks_per_sm: 1, units_per_block };
        gpu.set_plan_options(PlanOptions { launch: Some(config), ..streamed(4096) });
        check_all(&gpu, &coded, &format!("every case, {units_per_block} units a block"));
    }
    // Chosen tensors, repeated.
    gpu.set_plan_options(streamed(4096));
    let dir = Directory::from_file_bytes(&coded).unwrap();
    let expected = reference(&coded, &dir);
    let n = dir.tensors.len();
    let which = [n - 1, 2, 2, n / 2, 0];
    for (t, &i) in gpu.decode_tensors(&coded, &dir, &which).unwrap().iter().zip(&which) {
        assert_eq!(t.to_host().unwrap(), expected[i], "tensor {i}");
    }
    // Every tensor twice: more staged bytes than the file, so the plan comes first.
    let twice: Vec<usize> = (0..n).chain(0..n).collect();
    assert!(wcodec_cuda::Plan::staging_of(&coded, &dir, &twice, &streamed(4096)).is_none());
    for (t, &i) in gpu.decode_tensors(&coded, &dir, &twice).unwrap().iter().zip(&twice) {
        assert_eq!(t.to_host().unwrap(), expected[i], "tensor {i}, asked for twice");
    }
    // Damaged files: the same first error as one launch after the upload.
    let file = file_of(&cases()[..if quick() { 8 } else { 20 }]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let mut errors = 0;
    for (what, f, d) in damaged(&file, &dir) {
        for verify_checksums in [true, false] {
            let once =
                PlanOptions { verify_checksums, streamed_launch_bytes: 0, ..Default::default() };
            gpu.set_plan_options(once);
            let expected = gpu.decode_all(&f, &d).map(|_| ()).map_err(|e| e.to_string());
            gpu.set_plan_options(PlanOptions { verify_checksums, ..streamed(4096) });
            let got = gpu.decode_all(&f, &d).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(got, expected, "{what}");
            errors += usize::from(got.is_err());
        }
    }
    assert!(errors > 0, "no damaged file was an error");
    gpu.set_plan_options(PlanOptions::default());
    check_all(&gpu, &file, "after the damaged files");
}

#[test]
fn chosen_tensors_and_repeats() {
    let Some(gpu) = gpu() else { return };
    let cases = cases();
    let file = file_of(&cases[..10]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let which = [7usize, 2, 2, 9, 0];
    let tensors = gpu.decode_tensors(&file, &dir, &which).unwrap();
    for (t, &i) in tensors.iter().zip(&which) {
        assert_eq!(t.index, i);
        assert_eq!(t.to_host().unwrap(), expected[i]);
    }
    assert!(gpu.decode_tensors(&file, &dir, &[]).unwrap().is_empty());
    let one = gpu.decode_tensor(&file, &dir, 3).unwrap();
    assert_eq!(one.to_host().unwrap(), expected[3]);
    assert!(matches!(gpu.decode_tensor(&file, &dir, 10), Err(CudaError::NoSuchTensor { .. })));
}

/// A damaged unit is an error (from the checksums, or with them off from the kernel's own
/// checks or the tensor's CRC), never a wrong tensor and never a crash.
/// A file kept in device memory: subsets of its tensors decoded from there, again and again,
/// with merged BF16 tensors and tensors through scratch and the merge launch.
#[test]
fn kept_files_decode_any_subset_again() {
    let Some(mut gpu) = gpu() else { return };
    let (file, dir, expected) = mixed_with_reference();
    let n = dir.tensors.len();
    for merge_while_decoding in [true, false] {
        gpu.set_plan_options(PlanOptions { merge_while_decoding, ..PlanOptions::default() });
        let kept = gpu.keep(&file, &dir).unwrap();
        assert!(kept.device_bytes() > 0);
        let all: Vec<usize> = (0..n).collect();
        for which in [vec![3], vec![n - 1, n - 2, 0, 5], vec![3], all] {
            let mut tensors = which.clone();
            tensors.sort_unstable();
            let got = kept.decode_tensors(&which).unwrap();
            assert_eq!(got.iter().map(|t| t.index).collect::<Vec<_>>(), tensors);
            for t in &got {
                assert!(t.to_host().unwrap() == expected[t.index], "tensor {}", t.name);
            }
        }
        let err = kept.decode_tensors(&[n]).unwrap_err();
        assert!(matches!(err, CudaError::NoSuchTensor { index, .. } if index == n));
    }
}

/// A kept file decoded into buffers the caller owns (views of its allocations): the
/// reference's bytes; buffers of the wrong count or length are errors, not writes.
#[cfg(wcodec_kernels)]
#[test]
fn kept_files_decode_into_the_callers_buffers() {
    let Some(gpu) = gpu() else { return };
    let (file, dir, expected) = mixed_with_reference();
    let kept = gpu.keep(&file, &dir).unwrap();
    let n = dir.tensors.len();
    let s = gpu.stream().clone();
    let mut bufs: Vec<_> =
        expected.iter().map(|e| s.alloc_zeros::<u8>(e.len() + 1).unwrap()).collect();
    for which in [vec![n - 1, 0, 5], (0..n).collect::<Vec<_>>(), vec![2]] {
        let mut tensors = which.clone();
        tensors.sort_unstable();
        let mut views: Vec<_> = bufs
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| tensors.contains(i))
            .map(|(i, b)| b.slice_mut(..expected[i].len()))
            .collect();
        kept.decode_tensors_into(&which, &mut views).unwrap();
        drop(views);
        for &i in &tensors {
            let host = s.clone_dtoh(&bufs[i]).unwrap();
            assert!(host[..expected[i].len()] == expected[i], "tensor {i} of {which:?}");
        }
    }
    let mut views = vec![bufs[2].slice_mut(..)];
    let err = kept.decode_tensors_into(&[2], &mut views).unwrap_err();
    assert!(matches!(err, CudaError::Invalid { .. }), "{err}");
    let err = kept.decode_tensors_into(&[2, 3], &mut views).unwrap_err();
    assert!(matches!(err, CudaError::Invalid { .. }), "{err}");
}

/// A prepared decode launched once, then 2 and 3 times back to back: the reference's bytes in
/// its own buffers each time; checking it before a launch is an error.
#[cfg(wcodec_kernels)]
#[test]
fn prepared_decodes_launch_again_and_again() {
    let Some(gpu) = gpu() else { return };
    let (file, dir, expected) = mixed_with_reference();
    let kept = gpu.keep(&file, &dir).unwrap();
    let n = dir.tensors.len();
    let s = gpu.stream().clone();
    for which in [vec![n - 1, 0, 5, 0], (0..n).collect::<Vec<_>>(), vec![2]] {
        let mut prepared = kept.prepare_tensors(&which).unwrap();
        let err = prepared.check().unwrap_err();
        assert!(matches!(err, CudaError::Invalid { .. }), "{err}");
        let mut tensors = which.clone();
        tensors.sort_unstable();
        tensors.dedup();
        let indices: Vec<usize> = prepared.tensors().iter().map(|&(i, _)| i).collect();
        assert_eq!(indices, tensors);
        for round in 0..3 {
            // Launches queued back to back, then one wait; the bytes are the tensors' after
            // each round (a launch rewrites them in full).
            for _ in 0..=round {
                prepared.launch().unwrap();
            }
            prepared.check().unwrap();
            for (i, buffer) in prepared.tensors() {
                let host = buffer.map_or_else(Vec::new, |b| s.clone_dtoh(b).unwrap());
                assert!(host == expected[i], "tensor {i} of {which:?}, round {round}");
            }
        }
    }
    assert!(kept.prepare_tensors(&[n]).is_err());
}

#[test]
fn damaged_files_are_errors() {
    let Some(mut gpu) = gpu() else { return };
    let cases = cases();
    let file = file_of(&cases[..if quick() { 8 } else { 20 }]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let damaged = damaged(&file, &dir);
    assert!(!damaged.is_empty());
    let mut kernel_errors = 0;
    for (what, f, d) in &damaged {
        if *d == dir {
            // The CRC kernel finds the unit the host's check finds, for a decode and a keep.
            let on_host = PlanOptions { checksums_on_device: false, ..PlanOptions::default() };
            gpu.set_plan_options(on_host);
            let host = gpu.decode_all(f, d).unwrap_err();
            assert!(matches!(host, CudaError::Checksum { .. }), "{what}: {host}");
            gpu.set_plan_options(PlanOptions::default());
            let err = gpu.decode_all(f, d).unwrap_err();
            assert_eq!(err.to_string(), host.to_string(), "{what}");
            let err = gpu.keep(f, d).unwrap_err();
            assert_eq!(err.to_string(), host.to_string(), "{what}");
        }
        // The default launch, and the paired variant (a half-warp a unit) over every unit.
        let paired = LaunchConfig {
            variant: LaunchConfig::PAIRED_VARIANT,
            warps_per_block: 4,
            blocks_per_sm: 1,
            units_per_block: 8,
        };
        for launch in [None, Some(paired)] {
            gpu.set_plan_options(PlanOptions {
                verify_checksums: false,
                launch,
                ..PlanOptions::default()
            });
            match gpu.decode_all(f, d) {
                Err(CudaError::Corrupt { .. }) => kernel_errors += usize::from(launch.is_none()),
                Err(other) => panic!("{what}: {other}"),
                Ok(tensors) => {
                    for (t, want) in tensors.iter().zip(&expected) {
                        match t.to_host() {
                            Ok(bytes) => {
                                assert!(bytes == *want, "{what}: a wrong tensor, no error")
                            }
                            Err(CudaError::Checksum { .. }) => {}
                            Err(other) => panic!("{what}: {other}"),
                        }
                    }
                }
            }
        }
    }
    println!("{kernel_errors} of {} damaged files stopped by the kernel's checks", damaged.len());
    assert!(kernel_errors > 0);
    // The GPU is still fine afterwards.
    gpu.set_plan_options(PlanOptions::default());
    check_all(&gpu, &file, "after the damaged files");
}

/// A raw plane of several CRC chunks (64 KiB each) and the units of every case: the CRC
/// kernel's results combine into the stored CRCs (a load succeeds), and a byte changed in any
/// chunk of the raw plane is its checksum error.
#[test]
fn the_crc_kernel_checks_raw_planes_in_chunks() {
    let Some(gpu) = gpu() else { return };
    let (bytes, file) = raw_plane_file();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let plane = &dir.tensors[0].planes[0];
    assert!(matches!(plane.encoding, wcodec_format::PlaneEncoding::Raw { .. }));
    assert_eq!(gpu.decode_all(&file, &dir).unwrap()[0].to_host().unwrap(), bytes);
    for at in [0u64, 65_535, 65_536, 150_000, 200_000] {
        let mut f = file.clone();
        f[(plane.payload_offset + at) as usize] ^= 0x10;
        let err = gpu.decode_all(&f, &dir).unwrap_err();
        assert!(matches!(err, CudaError::Checksum { .. }), "byte {at}: {err}");
    }
    // A raw plane of one chunk, compared in the kernel: its error is the host's.
    let (bytes, small) = raw_plane_file_of(5_000);
    let dir = Directory::from_file_bytes(&small).unwrap();
    assert_eq!(gpu.decode_all(&small, &dir).unwrap()[0].to_host().unwrap(), bytes);
    let mut f = small.clone();
    f[(dir.tensors[0].planes[0].payload_offset + 4_321) as usize] ^= 0x01;
    let err = gpu.decode_all(&f, &dir).unwrap_err();
    let on_host = PlanOptions { checksums_on_device: false, ..PlanOptions::default() };
    let host = wcodec_cuda::Plan::build(&f, &dir, &[0], &on_host).unwrap_err();
    assert_eq!(err.to_string(), host.to_string());
    let cases = cases();
    let file = file_of(&cases[..if quick() { 8 } else { cases.len() }]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let kept = gpu.keep(&file, &dir).unwrap();
    assert_eq!(kept.decode_tensors(&[0]).unwrap().len(), 1);
}

#[test]
fn hostile_directories_never_reach_the_kernel() {
    let Some(gpu) = gpu() else { return };
    let file = file_of(&cases()[18..22]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    for t in 0..dir.tensors.len() {
        let mut d = dir.clone();
        for p in &mut d.tensors[t].planes {
            p.payload_offset = file.len() as u64 - 8;
        }
        if d.tensors[t].planes.iter().all(|p| p.payload_len == 0) {
            continue;
        }
        let err = gpu.decode_all(&file, &d).unwrap_err();
        assert!(matches!(err, CudaError::Invalid { .. }), "{err}");
    }
    check_all(&gpu, &file, "after the hostile directories");
}

#[test]
fn bench_reports_a_verified_speed() {
    let Some(gpu) = gpu() else { return };
    let file = file_of(&cases()[..6]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let options =
        wcodec_cuda::BenchOptions { warmup: 1, iters: 3, copies: 2, ..Default::default() };
    let reports = gpu.bench(&file, &dir, &all, &options).unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].gbps > 0.0);
    println!("{:?}", reports[0]);
}

/// Each of `cases` alone, then all of them in one file with every kernel variant at 1, 4 and 8
/// warps a block: the reference's bytes.
fn check_cases_at_every_shape(gpu: &mut CudaDecoder, cases: &[Case], what: &str) {
    check_cases_at_every_shape_with(gpu, cases, what, PlanOptions::default());
}

fn check_cases_at_every_shape_with(
    gpu: &mut CudaDecoder,
    cases: &[Case],
    what: &str,
    base: PlanOptions,
) {
    gpu.set_plan_options(base);
    for case in cases {
        check_all(gpu, &file_of(std::slice::from_ref(case)), &case.name);
    }
    let file = file_of(cases);
    for variant in 0..wcodec_cuda::abi::VARIANTS {
        let max = wcodec_cuda::abi::VARIANT_WARPS[variant as usize];
        for warps in [1u32, 4, 8].into_iter().filter(|&w| w <= max) {
            let launch = LaunchConfig {
                variant,
                warps_per_block: warps,
                blocks_per_sm: 1,
                units_per_block: 0,
            };
            gpu.set_plan_options(PlanOptions { launch: Some(launch), ..base });
            check_all(gpu, &file, &format!("{what} {launch:?}"));
        }
    }
    gpu.set_plan_options(PlanOptions::default());
}

/// GGUF block fields in runs of 4 columns decoded by the ring loops (2- and 4-aligned blocks,
/// one table and several), and fields left to the general loop, at every launch shape: with
/// whole blocks merged from scratch (Q4_0, Q4_1, Q8_0) and with those blocks' quants in place.
#[test]
fn field_runs_match_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    check_cases_at_every_shape(&mut gpu, &field_run_cases(), "field runs");
    let in_place = PlanOptions { merge_whole_blocks: false, ..PlanOptions::default() };
    check_cases_at_every_shape_with(&mut gpu, &field_run_cases(), "field runs in place", in_place);
}

/// GGUF blocks coded whole (column classes), decoded in place: the ring loop's column tables
/// (units of whole groups) and the general loop (edge tiles), at every launch shape, with full
/// and with compact tables; then the real SmolLM2 slice with the GPU preset.
#[test]
fn whole_blocks_match_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let cases = whole_block_cases();
    check_cases_at_every_shape(&mut gpu, &cases, "whole blocks");
    let compact = PlanOptions { compact_tables: CompactTables::Above(0), ..PlanOptions::default() };
    check_cases_at_every_shape_with(&mut gpu, &cases, "whole blocks, compact tables", compact);
    let source = std::fs::read(data_dir().join("smollm2-slice.gguf")).unwrap();
    let layout = wcodec_container::read_layout(&source).unwrap();
    let options = wcodec_encode::EncodeOptions::for_gpu();
    let file =
        wcodec_encode::compress_file(&source, &layout, &options, Vec::new(), &mut |_| {}).unwrap();
    check_all(&gpu, &file, "SmolLM2 slice, GPU preset");
}

/// Edge tiles narrower than a group (64 and 32 columns) decoded by the ring loop, and the
/// edges it leaves to the general loop, alone and in one file, at every launch shape.
#[test]
fn narrow_edge_tiles_match_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    check_cases_at_every_shape(&mut gpu, &narrow_edge_cases(), "narrow edges");
}

/// BF16 merged while decoding (and the tensors that still take scratch and merge): each case
/// alone, then all of them in one launch with every kernel variant over several launch shapes.
#[test]
fn bf16_merged_while_decoding_matches_the_reference() {
    let Some(mut gpu) = gpu() else { return };
    let cases = bf16_cases();
    let step = if quick() { 5 } else { 1 };
    for case in cases.iter().step_by(step) {
        check_all(&gpu, &file_of(std::slice::from_ref(case)), &case.name);
    }
    let file = file_of(&cases);
    let mut configs = Vec::new();
    for variant in 0..wcodec_cuda::abi::VARIANTS {
        let max = wcodec_cuda::abi::VARIANT_WARPS[variant as usize];
        for warps in [1u32, 4, 8, 32].into_iter().filter(|&w| w <= max) {
            for (blocks_per_sm, units_per_block) in [(2, 0), (1, warps), (1, 3 * warps)] {
                configs.push(LaunchConfig {
                    variant,
                    warps_per_block: warps,
                    blocks_per_sm,
                    units_per_block,
                });
            }
        }
    }
    if quick() {
        configs.retain(|c| c.variant >= 3 && c.warps_per_block == 4);
    }
    for config in configs {
        gpu.set_plan_options(PlanOptions {
            verify_checksums: true,
            launch: Some(config),
            ..PlanOptions::default()
        });
        check_all(&gpu, &file, &format!("bf16 {config:?}"));
    }
    // The same tensors through scratch memory and the merge launch.
    gpu.set_plan_options(PlanOptions { merge_while_decoding: false, ..PlanOptions::default() });
    check_all(&gpu, &file, "bf16 through scratch and merge");
}
