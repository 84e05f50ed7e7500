//! The launch plan and the kernel's algorithm, checked on the CPU: `emulate` runs a plan as the
//! kernel does (lanes, ballots, word stores, the predictor wavefront), and its output must be
//! the reference decoder's, byte for byte, for every shape class, dtype, predictor and tile
//! geometry, on random and on real data. These run everywhere; tests/gpu.rs runs the same cases
//! on a GPU.

mod common;

use common::*;
use wcodec_cuda::abi::{self, ERR_NOT_FINAL, GROUP_COMPACT_TABLES, WcRange};
use wcodec_cuda::emulate::{crcs, execute, merge};
use wcodec_cuda::plan::{COMPACT_TABLES_ABOVE, CompactTables, MergePiece, Plan, PlanOptions};
use wcodec_cuda::{CudaError, LaunchConfig};
use wcodec_format::{Directory, Dtype, PlaneEncoding};

/// Runs a plan's launches (decode, then merge) on the CPU over outputs filled with `poison`;
/// returns the status words and the decoded tensors (scratch dropped).
fn run(plan: &Plan, ranges: &[WcRange], staging: &[u8], poison: u8) -> (Vec<u32>, Vec<Vec<u8>>) {
    let mut outputs: Vec<Vec<u8>> =
        plan.outputs.iter().map(|o| vec![poison; o.len as usize]).collect();
    let status = execute(plan, ranges, staging, &mut outputs);
    merge(plan, &mut outputs);
    let tensors =
        outputs.into_iter().zip(&plan.outputs).filter(|(_, o)| !o.scratch).map(|(v, _)| v);
    (status, tensors.collect())
}

/// Decodes every tensor of `file` through the emulated kernel, twice over outputs poisoned
/// with different bytes (so a byte the kernel never writes shows up as a difference).
fn emulate_all(file: &[u8], dir: &Directory, blocks: usize) -> Result<Vec<Vec<u8>>, String> {
    emulate_with(file, dir, blocks, &PlanOptions::default())
}

fn emulate_with(
    file: &[u8],
    dir: &Directory,
    blocks: usize,
    options: &PlanOptions,
) -> Result<Vec<Vec<u8>>, String> {
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(file, dir, &all, options).map_err(|e| e.to_string())?;
    let ranges: Vec<WcRange> = plan.ranges(blocks);
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(file, &mut staging);
    plan.verify_crcs(dir, &crcs(&plan, &staging)).map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    for poison in [0x00u8, 0xff] {
        let (status, outputs) = run(&plan, &ranges, &staging, poison);
        plan.check_status(dir, &status).map_err(|e| e.to_string())?;
        results.push(outputs);
    }
    if results[0] != results[1] {
        return Err("some output bytes were never written".into());
    }
    Ok(results.swap_remove(0))
}

#[test]
fn every_shape_dtype_and_predictor_matches_the_reference() {
    for case in cases() {
        let file = file_of(std::slice::from_ref(&case));
        let dir = Directory::from_file_bytes(&file).unwrap();
        let expected = reference(&file, &dir);
        let got = emulate_all(&file, &dir, 3).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got, expected, "{}", case.name);
    }
}

/// Compact tables (`plan::compact_table`) give back every slot's entry, for every table size and
/// for skewed, flat and one-symbol distributions.
#[test]
fn compact_tables_give_every_entry_back() {
    let mut x = 0x2545_f491_u32;
    for prob_bits in 8..=12u8 {
        for kind in 0..4 {
            let mut counts = [0u64; 256];
            match kind {
                0 => counts[77] = 5,
                1 => counts.iter_mut().for_each(|c| *c = 3),
                _ => {
                    for _ in 0..5000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        // Mostly near 128 (weights), some anywhere.
                        let s =
                            if kind == 2 { 128 + (x % 9) as usize - 4 } else { (x >> 24) as usize };
                        counts[s] += 1;
                    }
                }
            }
            let freqs = wcodec_rans::normalize(&counts, prob_bits);
            let table = wcodec_rans::DecodeTable::new(&freqs, prob_bits).unwrap();
            let full = table.entries();
            let compact = wcodec_cuda::plan::compact_table(full);
            assert_eq!(compact.len(), wcodec_cuda::plan::compact_table_words(prob_bits));
            for (slot, &e) in full.iter().enumerate() {
                let symbol = (compact[256 + slot / 4] >> (8 * (slot % 4))) & 0xff;
                let got = compact[symbol as usize].wrapping_add((slot as u32) << 20);
                assert_eq!(got, e, "{prob_bits} bits, kind {kind}, slot {slot}");
            }
        }
    }
}

/// Planes decode the same with compact tables everywhere, on planes of more than 16 KiB of
/// tables, and nowhere; that rule gives some planes of the cases each form. Compacting a built
/// (and replicated) plan in place gives the plan built compact.
#[test]
fn compact_and_full_tables_decode_alike() {
    let mut cases = cases();
    cases.push(sixteen_tables());
    let file = file_of(&cases);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let rule = CompactTables::Above(COMPACT_TABLES_ABOVE);
    for how in [CompactTables::Above(0), rule, CompactTables::Never] {
        let options = PlanOptions { compact_tables: how, ..PlanOptions::default() };
        for blocks in [1, 9] {
            let got = emulate_with(&file, &dir, blocks, &options).unwrap();
            assert_eq!(got, expected, "{how:?}, {blocks} blocks");
        }
    }
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let options = |how| PlanOptions { compact_tables: how, ..PlanOptions::default() };
    let plan = Plan::build(&file, &dir, &all, &options(rule)).unwrap();
    let mut in_place = Plan::build(&file, &dir, &all, &options(CompactTables::Never)).unwrap();
    in_place.compact_tables(COMPACT_TABLES_ABOVE);
    assert_eq!((&in_place.groups, &in_place.tables), (&plan.groups, &plan.tables));
    // Copies of a plane share its tables, compact ones included.
    let mut copies = Plan::build(&file, &dir, &all, &options(CompactTables::Never)).unwrap();
    copies = copies.replicate(3);
    copies.compact_tables(COMPACT_TABLES_ABOVE);
    assert_eq!(copies.tables, plan.tables);
    let mut staging = vec![0u8; copies.staging_len as usize];
    copies.fill_staging(&file, &mut staging);
    let (status, outputs) = run(&copies, &copies.ranges(16), &staging, 0);
    copies.check_status(&dir, &status).unwrap();
    for (k, o) in outputs.iter().enumerate() {
        assert_eq!(o, &expected[k % expected.len()], "copy {}", k / expected.len());
    }
    let rans = plan.groups.iter().filter(|g| g.prob_bits > 0);
    let compact = rans.clone().filter(|g| g.flags & GROUP_COMPACT_TABLES != 0).count();
    let full = rans.count() - compact;
    assert!(compact > 0 && full > 0, "{compact} compact, {full} full");
}

/// Compact tables pay where, with full tables, a block's range of units would cross from one
/// plane of large tables into the next, and not for one plane (a layer) or planes of small
/// tables.
#[test]
fn compact_tables_pay_where_ranges_cross_planes() {
    let options = PlanOptions { compact_tables: CompactTables::Never, ..PlanOptions::default() };
    let file = file_of(&[sixteen_tables()]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let one = Plan::build(&file, &dir, &[0], &options).unwrap();
    assert!(one.groups[0].n_units > 1 && one.tables.len() * 4 > COMPACT_TABLES_ABOVE);
    for sms in [1, 2, 132] {
        assert!(!one.compact_tables_pay(sms), "one plane, {sms} multiprocessors");
    }
    let three = one.replicate(3);
    assert!(three.compact_tables_pay(2));
    assert!(!three.compact_tables_pay(3), "one block a plane");
    let mut compacted = three.clone();
    compacted.compact_tables(COMPACT_TABLES_ABOVE);
    assert!(!compacted.compact_tables_pay(2), "already compact");
    // Small tables only: nothing to compact.
    let small = file_of(&cases()[..6]);
    let dir = Directory::from_file_bytes(&small).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&small, &dir, &all, &options).unwrap().replicate(4);
    assert!(
        plan.groups
            .iter()
            .all(|g| (usize::from(g.n_tables) << g.prob_bits) * 4 <= COMPACT_TABLES_ABOVE)
    );
    assert!(!plan.compact_tables_pay(5));
    // A coded plane and a raw one (as an f32 scale beside its int8 tensor): ranges that cross
    // only into raw planes do not count.
    let mut rng = Rng::new(0x1234_5679);
    let noise: Vec<u8> = (0..1 << 14).map(|_| rng.next() as u8).collect();
    let raw = Case {
        name: "noise".into(),
        dtype: wcodec_format::Dtype::U8,
        dims: vec![128, 128],
        bytes: noise,
        options: wcodec_encode::EncodeOptions::default(),
    };
    let file = file_of(&[sixteen_tables(), raw]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let plan = Plan::build(&file, &dir, &[0, 1], &options).unwrap();
    assert_eq!((plan.groups.len(), plan.groups[1].prob_bits), (2, 0), "a raw plane second");
    for sms in [1, 2, 132] {
        assert!(!plan.compact_tables_pay(sms), "{sms} multiprocessors");
    }
}

#[test]
fn many_tensors_in_one_plan() {
    let cases = cases();
    let file = file_of(&cases[..24]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    for blocks in [1, 7, 64, 100_000] {
        assert_eq!(emulate_all(&file, &dir, blocks).unwrap(), expected);
    }
}

/// A plan built in runs of tensors on all cores is the plan of one run over every tensor,
/// field for field (units, offsets, tables, CRC lists, merges), whatever the runs, the options
/// and the tensors asked for; a damaged file gives the same first error.
#[test]
fn plans_built_in_runs_are_one_plan() {
    let mut all_cases = cases();
    all_cases.extend(bf16_cases());
    all_cases.extend(field_run_cases());
    all_cases.push(sixteen_tables());
    let file = file_of(&all_cases);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let n = dir.tensors.len();
    let all: Vec<usize> = (0..n).collect();
    let some = [3, 3, 0, n - 1, 5, n / 2, n - 1];
    let base = PlanOptions::default();
    let variants = [
        base,
        PlanOptions { checksums_on_device: false, ..base },
        PlanOptions { verify_checksums: false, ..base },
        PlanOptions { merge_while_decoding: false, ..base },
        PlanOptions { compact_tables: CompactTables::Above(0), ..base },
    ];
    let one_run =
        |f: &[u8], d: &Directory, which: &[usize], o: &PlanOptions| match Plan::build_in_runs(
            f,
            d,
            which,
            o,
            which.len(),
        ) {
            Ok(plan) => format!("{plan:?}"),
            Err(e) => format!("error: {e}"),
        };
    for options in &variants {
        for which in [&all[..], &some[..]] {
            let expected = one_run(&file, &dir, which, options);
            assert!(!expected.starts_with("error"), "{expected}");
            for run in [1, 2, 3, 7, which.len() - 1] {
                let plan = Plan::build_in_runs(&file, &dir, which, options, run).unwrap();
                assert_eq!(format!("{plan:?}"), expected, "runs of {run}, {options:?}");
            }
            let plan = Plan::build(&file, &dir, which, options).unwrap();
            assert_eq!(format!("{plan:?}"), expected, "{options:?}");
        }
    }
    // A raw plane alone, between coded ones (its CRC chunks and plane checks move).
    let (_, raw) = raw_plane_file();
    let raw_dir = Directory::from_file_bytes(&raw).unwrap();
    let expected = one_run(&raw, &raw_dir, &[0, 0, 0], &base);
    for run in [1, 2] {
        let plan = Plan::build_in_runs(&raw, &raw_dir, &[0, 0, 0], &base, run).unwrap();
        assert_eq!(format!("{plan:?}"), expected);
    }
    let mut errors = 0;
    for (what, f, d) in damaged(&file, &dir) {
        for options in &variants[..2] {
            let expected = one_run(&f, &d, &all, options);
            errors += usize::from(expected.starts_with("error"));
            for run in [1, 5] {
                let got = match Plan::build_in_runs(&f, &d, &all, options, run) {
                    Ok(plan) => format!("{plan:?}"),
                    Err(e) => format!("error: {e}"),
                };
                assert_eq!(got, expected, "{what}: runs of {run}");
            }
        }
    }
    assert!(errors > 0, "some damaged file fails its host checks");
}

/// The staging a load uploads and the outputs it allocates before its plan is made
/// (`Plan::staging_of`, `Plan::outputs_of`, from the directory alone) are the plan's, for every
/// tensor class, option and choice of tensors; a directory whose payloads leave the file has
/// none, nor one whose outputs would take more than a few times the file.
#[test]
fn the_staging_known_before_the_plan_is_the_plans() {
    let mut all_cases = cases();
    all_cases.extend(bf16_cases());
    all_cases.extend(field_run_cases());
    all_cases.push(sixteen_tables());
    let (_, raw) = raw_plane_file();
    for file in [file_of(&all_cases), raw] {
        let dir = Directory::from_file_bytes(&file).unwrap();
        let n = dir.tensors.len();
        let all: Vec<usize> = (0..n).collect();
        // Distinct tensors out of order (tensors asked for twice stage more than the file).
        let mut some = vec![n - 1, 0, n / 2];
        some.dedup();
        for merge_while_decoding in [true, false] {
            let options = PlanOptions { merge_while_decoding, ..PlanOptions::default() };
            for which in [&all[..], &some[..], &[]] {
                let plan = Plan::build(&file, &dir, which, &options).unwrap();
                let staging = Plan::staging_of(&file, &dir, which, &options).unwrap();
                assert_eq!(staging.segments, plan.segments, "{which:?} {options:?}");
                assert_eq!(staging.len, plan.staging_len);
                let outputs = Plan::outputs_of(&file, &dir, which, &options).unwrap();
                assert_eq!(outputs, plan.outputs, "{which:?} {options:?}");
                let mut window = vec![0xeeu8; 1000];
                let mut expected = vec![0x11u8; 1000];
                for start in [0u64, 999, staging.len / 2] {
                    staging.fill_window(&file, start, &mut window);
                    plan.fill_staging_window(&file, start, &mut expected);
                    assert_eq!(window, expected);
                }
            }
        }
        let mut bad = dir.clone();
        bad.tensors[n - 1].planes[0].payload_offset = file.len() as u64;
        let options = PlanOptions::default();
        assert!(Plan::staging_of(&file, &bad, &all, &options).is_none());
        assert!(Plan::staging_of(&file, &dir, &[n], &options).is_none());
        // More staged bytes than the file holds: none (the load makes its plan first).
        let twice: Vec<usize> = all.iter().chain(&all).copied().collect();
        assert!(Plan::staging_of(&file, &dir, &twice, &options).is_none());
        assert!(Plan::outputs_of(&file, &dir, &[n], &options).is_none());
    }
    // Outputs of more than EARLY_OUTPUT_RATIO times the file (zeros compress far better than
    // weights): none, allocated once the plan is made.
    let zeros = vec![0u8; 1 << 20];
    let options = wcodec_encode::EncodeOptions::default();
    let file = wcodec_encode::compress_raw(&zeros, wcodec_format::Dtype::U8, &[1 << 20], &options)
        .unwrap();
    let dir = Directory::from_file_bytes(&file).unwrap();
    assert!(file.len() * 4 < zeros.len(), "zeros compress {} to {}", zeros.len(), file.len());
    assert!(Plan::outputs_of(&file, &dir, &[0], &PlanOptions::default()).is_none());
}

/// A decode launched piece by piece while its bytes go up (`Plan::streamed`): each launch takes
/// the blocks and CRC chunks whose bytes are all on the device, run here over a staging buffer
/// whose bytes past the upload are garbage; every unit is launched once, every chunk checked
/// once, and the tensors are the reference's, for any step and block size.
#[test]
fn streamed_launches_read_only_uploaded_bytes() {
    let mut all_cases = cases();
    all_cases.extend(bf16_cases());
    // GGUF blocks (Q8_0, Q4_1, Q4_K), merged from scratch after the last piece.
    let blocks = field_run_cases();
    all_cases.extend([1, 2, 12, 6].map(|i| blocks[i].clone()));
    let (_, raw) = raw_plane_file();
    // Each BF16 case alone too: a merged tensor's last tile reads its sign-mantissa plane up to
    // the plane's end, with no other tensor staged after it.
    let mut files = vec![file_of(&all_cases), raw];
    files.extend(bf16_cases().iter().map(|c| file_of(std::slice::from_ref(c))));
    for (k, file) in files.into_iter().enumerate() {
        let many = k < 2; // the files of many units
        let dir = Directory::from_file_bytes(&file).unwrap();
        let expected = reference(&file, &dir);
        let all: Vec<usize> = (0..dir.tensors.len()).collect();
        let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap();
        let total = plan.staging_len as usize + abi::STAGING_PAD;
        for units_per_block in [1, 16] {
            let streamed = plan.streamed(units_per_block);
            let ends = streamed.range_ends.iter().chain(&streamed.crc_ends);
            assert!(ends.into_iter().all(|&e| e <= total as u64), "an end past the staging");
        }
        let mut staged = vec![0u8; total];
        plan.fill_staging(&file, &mut staged);
        for units_per_block in [1, 3, 16] {
            let streamed = plan.streamed(units_per_block);
            assert_eq!(streamed.ranges.len(), streamed.range_ends.len());
            assert_eq!(streamed.crc_ends.len(), plan.crc_chunks.len());
            for step in [4 << 10, 40 << 10, 1 << 20] {
                let mut device = vec![0xa5u8; total];
                let mut outputs: Vec<Vec<u8>> =
                    plan.outputs.iter().map(|o| vec![0x5a; o.len as usize]).collect();
                let mut status = vec![0u32; plan.units.len()];
                let mut launched = vec![0u32; plan.units.len()];
                let mut computed = vec![None; plan.crc_chunks.len()];
                let (mut blocks, mut checks, mut launches) = (0, 0, 0);
                for start in (0..total).step_by(step) {
                    let x = (start + step).min(total);
                    device[start..x].copy_from_slice(&staged[start..x]);
                    let b = streamed.range_ends.partition_point(|&e| e <= x as u64);
                    let c = streamed.crc_ends.partition_point(|&e| e <= x as u64);
                    if b == blocks && c == checks {
                        continue;
                    }
                    launches += 1;
                    let crcs = wcodec_cuda::emulate::crcs(&plan, &device);
                    for k in checks..c {
                        computed[k] = Some(crcs[k]);
                    }
                    let ranges = &streamed.ranges[blocks..b];
                    let got = execute(&plan, ranges, &device, &mut outputs);
                    for (all, one) in status.iter_mut().zip(got) {
                        *all |= one;
                    }
                    for r in ranges {
                        for u in r.first_unit..r.first_unit + r.n_units {
                            launched[u as usize] += 1;
                        }
                    }
                    (blocks, checks) = (b, c);
                }
                let what = format!("{units_per_block} units a block, steps of {step}");
                assert_eq!(blocks, streamed.ranges.len(), "{what}");
                assert!(launched.iter().all(|&n| n == 1), "{what}: a unit launched twice");
                let computed: Vec<u32> = computed.into_iter().map(Option::unwrap).collect();
                plan.verify_crcs(&dir, &computed).unwrap();
                plan.check_status(&dir, &status).unwrap();
                merge(&plan, &mut outputs);
                let tensors: Vec<Vec<u8>> = outputs
                    .into_iter()
                    .zip(&plan.outputs)
                    .filter(|(_, o)| !o.scratch)
                    .map(|(v, _)| v)
                    .collect();
                assert_eq!(tensors, expected, "{what}");
                if step == 4 << 10 && many {
                    assert!(launches > 2, "{what}: {launches} launches");
                }
            }
        }
    }
}

/// The file of `cases`, its directory and the plan of all its tensors.
fn planned(cases: &[Case]) -> (Vec<u8>, Directory, Plan) {
    let file = file_of(cases);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap();
    (file, dir, plan)
}

/// The paired variant is for plans whose units are mostly one group wide with one table and no
/// prediction, decoded in place: one-byte tensors made for the GPU, not the CPU defaults (256
/// columns a tile, row classes), nor MiniLM BF16 (its exponents merged as they decode) or GGUF
/// blocks (decoded into scratch, then merged) made for the GPU.
#[test]
fn plans_of_one_group_wide_units_pair() {
    let mut rng = Rng::new(7);
    let bytes = weights(&mut rng, 256, 512);
    let plan_of = |options: wcodec_encode::EncodeOptions| {
        let dims = vec![256, 512];
        let case =
            Case { name: "i8".into(), dtype: Dtype::I8, dims, bytes: bytes.clone(), options };
        planned(&[case]).2
    };
    assert!(plan_of(wcodec_encode::EncodeOptions::for_gpu()).mostly_paired());
    assert!(!plan_of(Default::default()).mostly_paired());
    let source = std::fs::read(data_dir().join("minilm-bf16-slice.safetensors")).unwrap();
    let layout = wcodec_container::read_layout(&source).unwrap();
    let options = wcodec_encode::EncodeOptions::for_gpu();
    let file =
        wcodec_encode::compress_file(&source, &layout, &options, Vec::new(), &mut |_| {}).unwrap();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    assert!(!Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap().mostly_paired());
    let source = std::fs::read(data_dir().join("smollm2-slice.gguf")).unwrap();
    let layout = wcodec_container::read_layout(&source).unwrap();
    let file =
        wcodec_encode::compress_file(&source, &layout, &options, Vec::new(), &mut |_| {}).unwrap();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    assert!(!Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap().mostly_paired());
}

/// A plane 576 columns wide in tiles of 128 has an edge tile of 64 in every tile row, and a
/// last tile row shorter than the others: the plan puts the units the paired loop takes (128
/// wide) first, tallest first, so that consecutive units pair, each unit keeping its tile as its
/// origin; the file decodes as the reference.
#[test]
fn pairable_units_come_side_by_side() {
    let mut rng = Rng::new(11);
    let (rows, cols) = (200u64, 576u64);
    let bytes = weights(&mut rng, rows as usize, cols as usize);
    let options = options((64, 128), &[wcodec_format::Predictor::None], 1);
    let case = Case { name: "i8".into(), dtype: Dtype::I8, dims: vec![rows, cols], bytes, options };
    let (file, dir, plan) = planned(std::slice::from_ref(&case));
    let units: Vec<(&abi::WcUnit, usize)> = plan
        .units
        .iter()
        .zip(&plan.origins)
        .filter(|(u, _)| u.kind == abi::UNIT_RANS)
        .map(|(u, o)| (u, o.unit))
        .collect();
    // 4 tile rows (64, 64, 64, 8 rows) of 5 tiles (4 of 128 columns, one of 64).
    assert_eq!(units.len(), 20);
    let shapes: Vec<(u32, u32)> = units.iter().map(|(u, _)| (u.width, u.height)).collect();
    let mut expected = vec![(128, 64); 12];
    expected.extend([(128, 8); 4]);
    expected.extend([(64, 64), (64, 64), (64, 64), (64, 8)]);
    assert_eq!(shapes, expected);
    let tiles: Vec<usize> = units.iter().map(|&(_, tile)| tile).collect();
    assert_eq!(tiles, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 4, 9, 14, 19]);
    let decoded = emulate_all(&file, &dir, 7).unwrap();
    assert_eq!(decoded[0], case.bytes);
}

/// The GPU preset's edge tiles narrower than a group: the plan has one-table units of 64 and 32
/// columns in whole groups of whole rows (what the kernel's ring loop takes as one-span tiles)
/// and units that miss one condition each; all decode as the reference.
#[test]
fn narrow_edge_tiles() {
    let (file, dir, plan) = planned(&narrow_edge_cases());
    let rans = plan.units.iter().filter(|u| u.kind == abi::UNIT_RANS && u.width > 0);
    let narrow = |u: &&abi::WcUnit| {
        u.width < 128 && 128u32.is_multiple_of(u.width) && (u.width * u.height).is_multiple_of(128)
    };
    let one_table = |u: &&abi::WcUnit| u.flags & abi::FLAG_ROW_TABLES == 0;
    let words = |u: &&abi::WcUnit| u.flags & abi::FLAG_WORD_STORES != 0;
    let taken: Vec<u32> =
        rans.clone().filter(narrow).filter(one_table).filter(words).map(|u| u.width).collect();
    assert!(taken.contains(&64) && taken.contains(&32), "{taken:?}");
    assert!(rans.clone().filter(narrow).any(|u| !one_table(&u)), "a narrow unit of row tables");
    let edge = |u: &abi::WcUnit| !u.width.is_multiple_of(128) && !narrow(&u);
    assert!(rans.clone().any(edge), "an edge left alone");
    assert_eq!(emulate_all(&file, &dir, 64).unwrap(), reference(&file, &dir));
}

/// GGUF block fields in runs of 4 columns: the plan flags units of 2-aligned and of 4-aligned
/// blocks, one table and several, and leaves narrow fields alone; all decode as the reference.
/// (Fields decoded in place: the quants of Q4_0, Q4_1 and Q8_0 go to scratch with
/// `merge_whole_blocks`, so it is off here; K-quants' fields always decode in place.)
#[test]
fn field_runs() {
    let options = PlanOptions { merge_whole_blocks: false, ..PlanOptions::default() };
    let file = file_of(&field_run_cases());
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&file, &dir, &all, &options).unwrap();
    let rans: Vec<&abi::WcUnit> = plan.units.iter().filter(|u| u.kind == abi::UNIT_RANS).collect();
    let runs: Vec<&&abi::WcUnit> =
        rans.iter().filter(|u| u.flags & abi::FLAG_FIELD_RUNS != 0).collect();
    assert!(runs.iter().all(|u| u.group >= 4 && u.width >= u32::from(u.group)));
    assert!(runs.iter().any(|u| u.width == 64), "an edge tile of 64 columns");
    assert!(runs.iter().any(|u| !u.col_stride.is_multiple_of(4)), "2-aligned blocks");
    assert!(runs.iter().any(|u| u.col_stride.is_multiple_of(4)), "4-aligned blocks");
    assert!(runs.iter().any(|u| u.flags & abi::FLAG_ROW_TABLES != 0), "several tables");
    assert!(runs.iter().any(|u| u.flags & abi::FLAG_ROW_TABLES == 0), "one table");
    assert!(rans.iter().any(|u| u.group > 1 && u.flags & abi::FLAG_FIELD_RUNS == 0));
    assert_eq!(emulate_with(&file, &dir, 64, &options).unwrap(), reference(&file, &dir));
    assert_eq!(emulate_all(&file, &dir, 64).unwrap(), reference(&file, &dir));
}

/// GGUF block heads (the fp16 scales' bytes) decode into scratch, a plane after the other, and
/// the merge launch puts them into their blocks. Random blocks (heads of 2 and 4 bytes; Q6_K's
/// scales come last in its blocks, so its planes stay in place), then the real SmolLM2 slice:
/// its coded head tiles (512 x 18 and 64 x 18 bytes, whole groups) are decoded as rows of 128
/// with word stores, with the GPU preset; all decode as the reference.
#[test]
fn block_heads_through_scratch() {
    let (file, dir, plan) = planned(&field_run_cases());
    let fields = |plan: &Plan, kind: u32| -> std::collections::BTreeSet<u32> {
        plan.merges.iter().filter(|m| m.kind == kind).map(|m: &MergePiece| m.fields).collect()
    };
    // Whole blocks where the head is followed by one field (Q8_0, Q4_0: 2 head bytes; Q4_1: 4),
    // heads alone where more fields follow (Q4_K).
    assert_eq!(fields(&plan, abi::MERGE_BLOCKS), [2, 4].into());
    assert_eq!(fields(&plan, abi::MERGE_BLOCK_HEAD), [4].into());
    let heads_only = PlanOptions { merge_whole_blocks: false, ..PlanOptions::default() };
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan_heads = Plan::build(&file, &dir, &all, &heads_only).unwrap();
    assert!(fields(&plan_heads, abi::MERGE_BLOCKS).is_empty());
    assert_eq!(fields(&plan_heads, abi::MERGE_BLOCK_HEAD), [2, 4].into());
    let q6k = dir.tensors.iter().position(|t| t.dtype == Dtype::Q6K).unwrap();
    assert!(plan.outputs.iter().all(|o| !(o.scratch && o.tensor == q6k)));
    for blocks in [1, 64] {
        assert_eq!(emulate_all(&file, &dir, blocks).unwrap(), reference(&file, &dir));
        let emulated = emulate_with(&file, &dir, blocks, &heads_only).unwrap();
        assert_eq!(emulated, reference(&file, &dir));
    }

    let source = std::fs::read(data_dir().join("smollm2-slice.gguf")).unwrap();
    let layout = wcodec_container::read_layout(&source).unwrap();
    let split = wcodec_encode::EncodeOptions {
        whole_blocks: false,
        ..wcodec_encode::EncodeOptions::for_gpu()
    };
    for options in [split, Default::default()] {
        let file =
            wcodec_encode::compress_file(&source, &layout, &options, Vec::new(), &mut |_| {})
                .unwrap();
        let dir = Directory::from_file_bytes(&file).unwrap();
        let all: Vec<usize> = (0..dir.tensors.len()).collect();
        let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap();
        let flat = (0..plan.units.len()).filter(|&i| {
            let u = &plan.units[i];
            plan.outputs[plan.unit_output[i] as usize].scratch
                && u.kind == abi::UNIT_RANS
                && u.width == 128
                && u.flags & abi::FLAG_WORD_STORES != 0
        });
        assert!(flat.count() > 0, "flat head tiles");
        assert_eq!(emulate_all(&file, &dir, 8).unwrap(), reference(&file, &dir));
        assert_eq!(emulate_with(&file, &dir, 8, &heads_only).unwrap(), reference(&file, &dir));
    }
}

/// GGUF blocks coded whole (column classes) decode in place, no scratch and no merge: units of
/// whole groups a row with word stores (the ring loop's column tables: fixed for a unit one
/// group wide, a group's span at a time for wider ones) and edge tiles (the general loop); on
/// random blocks of six types in three tile shapes, and on the real SmolLM2 slice with the GPU
/// preset, whose units are all of whole groups; all as the reference.
#[test]
fn whole_blocks_in_place() {
    let (file, dir, plan) = planned(&whole_block_cases());
    let cols = |u: &&abi::WcUnit| u.kind == abi::UNIT_RANS && u.flags & abi::FLAG_COL_TABLES != 0;
    let coded: Vec<&abi::WcUnit> = plan.units.iter().filter(cols).collect();
    let ring = |u: &&&abi::WcUnit| u.width == 128 && u.flags & abi::FLAG_WORD_STORES != 0;
    assert!(coded.iter().any(|u| ring(&u)), "units one group wide");
    let wide = |u: &&&abi::WcUnit| u.width > 128 && u.width.is_multiple_of(128);
    assert!(coded.iter().any(|u| wide(&u)), "units of several groups a row");
    assert!(coded.iter().any(|u| !u.width.is_multiple_of(128) && u.width > 64), "edge tiles");
    assert!(plan.outputs.iter().all(|o| !o.scratch) && plan.merges.is_empty());
    for blocks in [1, 8, 64] {
        assert_eq!(emulate_all(&file, &dir, blocks).unwrap(), reference(&file, &dir));
    }

    let source = std::fs::read(data_dir().join("smollm2-slice.gguf")).unwrap();
    let layout = wcodec_container::read_layout(&source).unwrap();
    let options = wcodec_encode::EncodeOptions::for_gpu();
    let file =
        wcodec_encode::compress_file(&source, &layout, &options, Vec::new(), &mut |_| {}).unwrap();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap();
    let whole_groups =
        |u: &&abi::WcUnit| u.width.is_multiple_of(128) && u.flags & abi::FLAG_WORD_STORES != 0;
    assert!(plan.units.iter().filter(cols).all(|u| whole_groups(&u)), "units of whole groups");
    assert!(plan.units.iter().filter(cols).count() > 0);
    assert!(plan.merges.iter().all(|m| m.kind != abi::MERGE_BLOCKS));
    assert_eq!(emulate_all(&file, &dir, 8).unwrap(), reference(&file, &dir));
}

/// Tensors of one-byte elements narrower than a tile, rows back to back in place: a tile of
/// whole groups (64 x 96, 48 groups) is decoded as rows of 128 with word stores, one of 37 x 96
/// (27.75 groups) as it is; both as the reference.
#[test]
fn flat_tiles_of_narrow_tensors() {
    let mut rng = Rng::new(96);
    let cases: Vec<Case> = [64usize, 37]
        .into_iter()
        .map(|rows| Case {
            name: format!("{rows}x96 i8"),
            dtype: Dtype::I8,
            dims: vec![rows as u64, 96],
            bytes: weights(&mut rng, rows, 96),
            options: wcodec_encode::EncodeOptions::for_gpu(),
        })
        .collect();
    let (file, dir, plan) = planned(&cases);
    let shapes: Vec<(u32, u32)> = (0..plan.units.len())
        .filter(|&i| !plan.outputs[plan.unit_output[i] as usize].scratch)
        .map(|i| (plan.units[i].height, plan.units[i].width))
        .collect();
    assert_eq!(shapes, [(48, 128), (37, 96)]);
    assert_eq!(emulate_all(&file, &dir, 4).unwrap(), reference(&file, &dir));
}

#[test]
fn sixteen_row_classes() {
    let file = file_of(&[sixteen_tables()]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let PlaneEncoding::Rans { tables, .. } = &dir.tensors[0].planes[0].encoding else {
        panic!("expected a rANS plane")
    };
    assert!(tables.len() >= 15, "the encoder picked {} tables, not 15 or 16", tables.len());
    assert_eq!(emulate_all(&file, &dir, 8).unwrap(), reference(&file, &dir));
}

#[test]
fn real_slices_match_the_reference() {
    for tile in [(256, 256), (64, 256), (128, 128)] {
        let options = options(tile, &wcodec_format::Predictor::ALL, 8);
        for (name, file) in real_files(&options) {
            let dir = Directory::from_file_bytes(&file).unwrap();
            let got = emulate_all(&file, &dir, 8).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, reference(&file, &dir), "{name} tile {tile:?}");
        }
    }
}

#[test]
fn subsets_and_repeats() {
    let cases = cases();
    let file = file_of(&cases[..10]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let which = [7usize, 2, 2, 9];
    let plan = Plan::build(&file, &dir, &which, &PlanOptions::default()).unwrap();
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(&file, &mut staging);
    let (status, outputs) = run(&plan, &plan.ranges(4), &staging, 0);
    plan.check_status(&dir, &status).unwrap();
    for (o, &i) in outputs.iter().zip(&which) {
        assert_eq!(o, &expected[i]);
    }
    let err = Plan::build(&file, &dir, &[10], &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, CudaError::NoSuchTensor { index: 10, count: 10 }));
}

/// A plan of the whole file, kept (as `KeptFile` keeps it in device memory), and subsets of
/// it decoded over its staging buffer and tables: each gives its tensors as the reference does,
/// merged BF16 tensors and tensors through scratch and the merge launch included.
#[test]
fn subsets_of_a_kept_plan_decode_alike() {
    let file = mixed_file();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let n = dir.tensors.len();
    let all: Vec<usize> = (0..n).collect();
    for merge_while_decoding in [true, false] {
        let options = PlanOptions { merge_while_decoding, ..PlanOptions::default() };
        let full = Plan::build(&file, &dir, &all, &options).unwrap();
        let mut staging = vec![0u8; full.staging_len as usize];
        full.fill_staging(&file, &mut staging);
        for which in [vec![3], vec![11, 0, 5], vec![n - 1, n - 2, n - 3, 2, 2], all.clone()] {
            let mut sub = full.subset(&which).unwrap();
            assert!(sub.tables.is_empty() && sub.maps.is_empty() && sub.segments.is_empty());
            sub.tables.clone_from(&full.tables);
            sub.maps.clone_from(&full.maps);
            let (status, outputs) = run(&sub, &sub.ranges(5), &staging, 0xa5);
            sub.check_status(&dir, &status).unwrap();
            let mut tensors = which.clone();
            tensors.sort_unstable();
            tensors.dedup();
            assert_eq!(outputs.len(), tensors.len(), "{which:?}");
            for (o, &i) in outputs.iter().zip(&tensors) {
                assert_eq!(o, &expected[i], "tensor {i} of {which:?}");
            }
        }
        assert!(
            matches!(full.subset(&[n]), Err(CudaError::NoSuchTensor { index, .. }) if index == n)
        );
    }
}

#[test]
fn replicated_plans_decode_every_copy() {
    let file = file_of(&cases()[20..26]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap().replicate(3);
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(&file, &mut staging);
    let (status, outputs) = run(&plan, &plan.ranges(16), &staging, 0);
    plan.check_status(&dir, &status).unwrap();
    for (k, o) in outputs.iter().enumerate() {
        assert_eq!(o, &expected[k % expected.len()]);
    }
}

/// The staging goes to the device window by window (each filled while the one before is
/// copied): windows of any size, laid end to end, give the whole staging buffer, zeros in its
/// gaps and pad, whatever the windows' bytes held before.
#[test]
fn staging_windows_give_the_whole_staging() {
    let file = file_of(&cases()[..12]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap().replicate(2);
    assert!(plan.segments.len() > 20, "the windows must cut across many segments");
    let total = plan.staging_len as usize + 100; // past the end: the pad
    let mut whole = vec![0u8; total];
    plan.fill_staging(&file, &mut whole);
    for window in [1usize, 7, 64, 4096, 10_000, total] {
        let mut pieces = vec![0xa5u8; total];
        for (k, out) in pieces.chunks_mut(window).enumerate() {
            plan.fill_staging_window(&file, (k * window) as u64, out);
        }
        assert!(pieces == whole, "windows of {window} bytes");
    }
}

#[test]
fn damaged_units_are_reported() {
    let file = file_of(&cases()[..12]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    let mut reported = 0;
    for (what, f, d) in damaged(&file, &dir) {
        // With checksums verified on the host the plan refuses the file before any launch,
        // and on the GPU the CRC kernel finds the same unit...
        let all: Vec<usize> = (0..d.tensors.len()).collect();
        if d == dir {
            let on_host = PlanOptions { checksums_on_device: false, ..PlanOptions::default() };
            let err = Plan::build(&f, &d, &all, &on_host).unwrap_err();
            assert!(matches!(err, CudaError::Checksum { .. }), "{what}: {err}");
            assert_eq!(device_checksum_error(&f, &d), Some(err.to_string()), "{what}");
        }
        // ...and without, the kernel's own checks catch it (or the bytes are still right).
        let options =
            PlanOptions { verify_checksums: false, launch: None, ..PlanOptions::default() };
        let plan = Plan::build(&f, &d, &all, &options).unwrap();
        let mut staging = vec![0u8; plan.staging_len as usize];
        plan.fill_staging(&f, &mut staging);
        let (status, outputs) = run(&plan, &plan.ranges(8), &staging, 0);
        match plan.check_status(&d, &status) {
            Err(CudaError::Corrupt { .. }) => reported += 1,
            Err(other) => panic!("{what}: {other}"),
            Ok(()) => assert_eq!(outputs, expected, "{what}: a wrong tensor without an error"),
        }
        assert!(status.iter().all(|&s| s & !0xf == 0));
    }
    assert!(reported > 10, "only {reported} damaged units reported");
    let _ = ERR_NOT_FINAL;
}

/// The error of the checks a plan leaves to the GPU, made by the emulated CRC kernel over the
/// staged bytes (`None`: every check passed).
fn device_checksum_error(file: &[u8], dir: &Directory) -> Option<String> {
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(file, dir, &all, &PlanOptions::default()).unwrap();
    assert!(!plan.crc_chunks.is_empty());
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(file, &mut staging);
    plan.verify_crcs(dir, &crcs(&plan, &staging)).err().map(|e| e.to_string())
}

/// A raw plane of several CRC chunks (64 KiB each, the last shorter): its chunks' CRCs,
/// computed as the CRC kernel does, combine into the plane's; a byte changed in any chunk is
/// the plane's checksum error, as the host's own check reports it.
#[test]
fn raw_planes_are_checked_in_chunks() {
    let (_, file) = raw_plane_file();
    let dir = Directory::from_file_bytes(&file).unwrap();
    let plane = &dir.tensors[0].planes[0];
    assert!(matches!(plane.encoding, PlaneEncoding::Raw { .. }), "random bytes are stored");
    let plan = Plan::build(&file, &dir, &[0], &PlanOptions::default()).unwrap();
    assert_eq!(plan.crc_planes.len(), 1);
    assert_eq!(plan.crc_chunks.len(), 4);
    assert_eq!(device_checksum_error(&file, &dir), None);
    for at in [0u64, 65_535, 65_536, 150_000, 200_000] {
        let mut f = file.clone();
        f[(plane.payload_offset + at) as usize] ^= 0x10;
        let on_host = PlanOptions { checksums_on_device: false, ..PlanOptions::default() };
        let err = Plan::build(&f, &dir, &[0], &on_host).unwrap_err();
        assert!(matches!(err, CudaError::Checksum { .. }), "byte {at}: {err}");
        assert_eq!(device_checksum_error(&f, &dir), Some(err.to_string()), "byte {at}");
    }
    // A raw plane of one chunk is compared on the GPU as a unit is: no chunk CRC to read back
    // unless it fails, and then the plane's error.
    let (_, small) = raw_plane_file_of(5_000);
    let dir = Directory::from_file_bytes(&small).unwrap();
    let plan = Plan::build(&small, &dir, &[0], &PlanOptions::default()).unwrap();
    assert_eq!(plan.crc_chunks.len(), 1);
    assert_ne!(plan.crc_chunks[0].len & abi::CRC_COMPARE, 0);
    assert!(!plan.crc_planes_to_combine());
    assert_eq!(device_checksum_error(&small, &dir), None);
    let mut f = small.clone();
    f[(dir.tensors[0].planes[0].payload_offset + 4_321) as usize] ^= 0x01;
    let on_host = PlanOptions { checksums_on_device: false, ..PlanOptions::default() };
    let err = Plan::build(&f, &dir, &[0], &on_host).unwrap_err();
    assert!(err.to_string().contains("raw plane 0"), "{err}");
    assert_eq!(device_checksum_error(&f, &dir), Some(err.to_string()));
}

/// The plan refuses directories that would make the kernel read or write out of bounds, even
/// when they did not come from parsing the file (a caller's own `Directory`).
#[test]
fn hostile_directories_are_refused() {
    let file = file_of(&cases()[18..22]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let options = PlanOptions { verify_checksums: false, launch: None, ..PlanOptions::default() };
    let refuse = |d: &Directory, what: &str| {
        let err = Plan::build(&file, d, &all, &options).unwrap_err();
        assert!(matches!(err, CudaError::Invalid { .. }), "{what}: {err}");
    };
    let rans_plane = dir
        .tensors
        .iter()
        .enumerate()
        .flat_map(|(t, te)| te.planes.iter().enumerate().map(move |(p, pe)| (t, p, pe)))
        .find(|(_, _, p)| matches!(p.encoding, PlaneEncoding::Rans { .. }))
        .map(|(t, p, _)| (t, p))
        .expect("a rANS plane");
    let (t, p) = rans_plane;
    let edit = |f: &dyn Fn(&mut wcodec_format::PlaneEntry)| {
        let mut d = dir.clone();
        f(&mut d.tensors[t].planes[p]);
        d
    };
    refuse(&edit(&|pl| pl.payload_offset = file.len() as u64), "payload past the file");
    refuse(&edit(&|pl| pl.rows += 1), "plane taller than its tensor");
    refuse(&edit(&|pl| pl.tile_rows = 0), "empty tile");
    refuse(&edit(&|pl| pl.tile_rows = 1 << 12 | 1), "tile of more than 2^22 symbols");
    refuse(
        &edit(&|pl| {
            if let PlaneEncoding::Rans { units, .. } = &mut pl.encoding {
                units[0].len = u32::MAX - 1;
            }
        }),
        "unit past its payload",
    );
    refuse(
        &edit(&|pl| {
            if let PlaneEncoding::Rans { units, .. } = &mut pl.encoding {
                units.pop();
            }
        }),
        "a tile without a unit",
    );
    refuse(
        &edit(&|pl| {
            if let PlaneEncoding::Rans { tables, .. } = &mut pl.encoding {
                tables[0][0] += 1;
            }
        }),
        "table not summing to 2^prob_bits",
    );
    refuse(
        &edit(&|pl| {
            if let PlaneEncoding::Rans { tables, row_tables, .. } = &mut pl.encoding {
                tables.push(tables[0]);
                *row_tables = vec![5; row_tables.len().max(1)];
            }
        }),
        "row class beyond the tables",
    );
    let mut d = dir.clone();
    d.tensors[t].dims.push(2);
    refuse(&d, "shape not matching the length");
}

#[test]
fn launch_shapes_follow_the_work() {
    // Small tables: blocks of one plane each, a warp a unit, many blocks a multiprocessor.
    let c = LaunchConfig::choose(256, 4, 8192, 16 << 10, 132, 36, false, false);
    assert_eq!((c.warps_per_block, c.units_per_block), (2, 2));
    // Up to 16 KiB of tables: the ring variant, 8 warps; variant 4 for more.
    let c = LaunchConfig::choose(100_000, 500, 8192, 16 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (6, 8, 8));
    // One 11-bit table and units enough: 2 units a warp, 4 warps a block on small planes, 8
    // on large ones; a unit a warp where the units do not fill the GPU twice.
    let c = LaunchConfig::choose(100_000, 500, 8192, 8 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (6, 4, 8));
    let c = LaunchConfig::choose(100_000, 50, 8192, 8 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (6, 8, 16));
    let c = LaunchConfig::choose(2048, 1, 8192, 8 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (6, 8, 8));
    // Units of more than 64x128 symbols: a unit a warp.
    let c = LaunchConfig::choose(100_000, 500, 16384, 8 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (6, 4, 4));
    let c = LaunchConfig::choose(100_000, 50, 16384, 8 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (6, 8, 8));
    let c = LaunchConfig::choose(100_000, 500, 8192, 32 << 10, 132, 36, false, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (4, 8, 8));
    // Most units one group wide (files made for the GPU): the paired variant, two units a warp
    // whatever their size; not where the tables are larger or the units few.
    let c = LaunchConfig::choose(100_000, 500, 16384, 8 << 10, 132, 36, false, true);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (7, 2, 4));
    let c = LaunchConfig::choose(100_000, 50, 8192, 8 << 10, 132, 36, false, true);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (7, 8, 16));
    let c = LaunchConfig::choose(100_000, 500, 8192, 16 << 10, 132, 36, false, true);
    assert_eq!(c.variant, 6);
    let c = LaunchConfig::choose(2048, 1, 8192, 8 << 10, 132, 36, false, true);
    assert_eq!(c.variant, 6);
    // Compact tables (40 KiB for 8 tables) and units enough: 2 units a warp; a unit a warp
    // where the units fill the GPU once.
    let c = LaunchConfig::choose(100_000, 500, 8192, 40 << 10, 132, 36, true, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (4, 8, 16));
    let c = LaunchConfig::choose(4000, 500, 8192, 40 << 10, 132, 36, true, false);
    assert_eq!((c.variant, c.warps_per_block, c.units_per_block), (4, 8, 8));
    // Tables so large that one block fills a multiprocessor, and planes of many units: one
    // block per multiprocessor with all its warps, over ranges of equal work.
    let c = LaunchConfig::choose(100_000, 50, 8192, 128 << 10, 132, 36, false, false);
    assert_eq!((c.warps_per_block, c.blocks_per_sm, c.units_per_block), (32, 1, 0));
    let c = LaunchConfig::choose(1000, 900, 8192, 128 << 10, 132, 36, false, false);
    assert_eq!((c.warps_per_block, c.units_per_block), (32, 0));
}

#[test]
fn chunks_stay_in_their_plane() {
    let file = file_of(&cases()[..24]);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap();
    let chunks = plan.chunks(3);
    let mut covered = vec![0u32; plan.units.len()];
    for r in &chunks {
        let g = plan.groups[r.first_group as usize];
        assert!(r.n_units <= 3 && r.first_unit >= g.first_unit);
        assert!(r.first_unit + r.n_units <= g.first_unit + g.n_units);
        for c in &mut covered[r.first_unit as usize..(r.first_unit + r.n_units) as usize] {
            *c += 1;
        }
    }
    // Every unit in one block; the costliest blocks first.
    assert!(covered.iter().all(|&c| c == 1));
    assert!(chunks.windows(2).all(|w| plan.block_cost(&w[0]) >= plan.block_cost(&w[1])));
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(&file, &mut staging);
    let (status, outputs) = run(&plan, &plan.chunks(3), &staging, 0);
    plan.check_status(&dir, &status).unwrap();
    assert_eq!(outputs, reference(&file, &dir));
}

/// The cases above reach every path of the kernel: word and byte stores, raw chunks (strided
/// and contiguous), one table and row classes, every predictor, signed and unsigned planes.
#[test]
fn the_cases_cover_every_kernel_path() {
    use wcodec_cuda::abi::*;
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for case in cases() {
        let file = file_of(std::slice::from_ref(&case));
        let dir = Directory::from_file_bytes(&file).unwrap();
        let all: Vec<usize> = (0..dir.tensors.len()).collect();
        let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap();
        for m in &plan.merges {
            *seen
                .entry(if m.kind == MERGE_BF16_SPLIT { "bf16 merge" } else { "f32 merge" })
                .or_default() += 1;
        }
        for u in &plan.units {
            let mut count = |what| *seen.entry(what).or_default() += 1;
            if u.group > 1 {
                count("block fields");
            }
            if u.kind == UNIT_RAW {
                count(if u.flags & FLAG_CONTIGUOUS != 0 {
                    "raw contiguous"
                } else {
                    "raw strided"
                });
                continue;
            }
            count(if u.flags & FLAG_WORD_STORES != 0 { "word stores" } else { "byte stores" });
            count(if u.flags & FLAG_ROW_TABLES != 0 { "row tables" } else { "one table" });
            count(if u.flags & FLAG_BIAS128 != 0 { "bias128" } else { "unbiased" });
            count(["none", "left", "top", "avg", "paeth"][usize::from(u.predictor)]);
            if u.group == 1 && u.col_stride > 1 {
                count("byte planes");
            }
            if u.height * u.width % 128 != 0 {
                count("partial group");
            }
        }
    }
    for what in [
        "raw contiguous",
        "raw strided",
        "word stores",
        "byte stores",
        "row tables",
        "one table",
        "bias128",
        "unbiased",
        "none",
        "left",
        "top",
        "avg",
        "paeth",
        "byte planes",
        "partial group",
        "block fields",
        "bf16 merge",
        "f32 merge",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) > 0,
            "no unit takes the {what} path: {seen:?}"
        );
    }
}

/// BF16: the exponent units that merge the raw sign-mantissa plane as they decode (word and
/// byte stores, whole row spans, predicted tiles rebuilt then merged, partial tiles, specials),
/// and the tensors that still take the scratch-and-merge path, against the reference; the cases
/// reach each of these paths.
#[test]
fn bf16_merged_while_decoding_matches_the_reference() {
    use wcodec_cuda::abi::*;
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for case in bf16_cases() {
        let file = file_of(std::slice::from_ref(&case));
        let dir = Directory::from_file_bytes(&file).unwrap();
        let expected = reference(&file, &dir);
        let got = emulate_all(&file, &dir, 5).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got, expected, "{}", case.name);
        let plan = Plan::build(&file, &dir, &[0], &PlanOptions::default()).unwrap();
        let mut count = |what| *seen.entry(what).or_default() += 1;
        if !plan.merges.is_empty() {
            count("scratch and merge");
        }
        for u in plan.units.iter().filter(|u| u.flags & FLAG_MIX_BF16 != 0) {
            assert_eq!(u.kind, UNIT_RANS);
            count("merged");
            if u.flags & FLAG_WORD_STORES != 0 {
                count(if u.width % 128 == 0 { "merged, whole spans" } else { "merged, words" });
            } else {
                count("merged, bytes");
            }
            if u.predictor != 0 {
                count("merged, predicted");
            }
            if u.height * u.width % 128 != 0 {
                count("merged, partial group");
            }
            if u.flags & FLAG_ROW_TABLES != 0 {
                count("merged, row tables");
            }
        }
        // A merged tensor has no units of its raw plane and no scratch.
        if plan.units.iter().any(|u| u.flags & FLAG_MIX_BF16 != 0) {
            assert!(plan.merges.is_empty() && plan.outputs.iter().all(|o| !o.scratch));
            assert!(plan.units.iter().all(|u| u.flags & FLAG_MIX_BF16 != 0));
        }
    }
    println!("{seen:?}");
    for what in [
        "scratch and merge",
        "merged",
        "merged, whole spans",
        "merged, words",
        "merged, bytes",
        "merged, predicted",
        "merged, partial group",
        "merged, row tables",
    ] {
        assert!(seen.get(what).copied().unwrap_or(0) > 0, "no unit takes {what}: {seen:?}");
    }
}

/// Many merged BF16 tensors in one plan, every way of cutting it into blocks, and replicated
/// (the sign-mantissa offsets move with each copy).
#[test]
fn bf16_merged_in_one_plan_and_replicated() {
    let cases = bf16_cases();
    let file = file_of(&cases);
    let dir = Directory::from_file_bytes(&file).unwrap();
    let expected = reference(&file, &dir);
    for blocks in [1, 13, 100_000] {
        assert_eq!(emulate_all(&file, &dir, blocks).unwrap(), expected);
    }
    let all: Vec<usize> = (0..dir.tensors.len()).collect();
    // Through scratch memory and the merge launch instead: the same bytes.
    let options = PlanOptions { merge_while_decoding: false, ..PlanOptions::default() };
    let plan = Plan::build(&file, &dir, &all, &options).unwrap();
    assert!(plan.units.iter().all(|u| u.flags & wcodec_cuda::abi::FLAG_MIX_BF16 == 0));
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(&file, &mut staging);
    let (status, outputs) = run(&plan, &plan.ranges(7), &staging, 0);
    plan.check_status(&dir, &status).unwrap();
    assert_eq!(outputs, expected);
    let plan = Plan::build(&file, &dir, &all, &PlanOptions::default()).unwrap().replicate(3);
    let mut staging = vec![0u8; plan.staging_len as usize];
    plan.fill_staging(&file, &mut staging);
    let (status, outputs) = run(&plan, &plan.chunks(3), &staging, 0x5a);
    plan.check_status(&dir, &status).unwrap();
    for (k, o) in outputs.iter().enumerate() {
        assert_eq!(o, &expected[k % expected.len()], "copy {}", k / expected.len());
    }
}

/// The plan refuses a merged BF16 tensor whose raw sign-mantissa plane does not have the
/// tensor's element count, and verifies its checksum.
#[test]
fn bf16_raw_plane_is_checked() {
    let case = bf16_cases().into_iter().find(|c| c.name.contains("[129, 384]")).unwrap();
    let file = file_of(std::slice::from_ref(&case));
    let dir = Directory::from_file_bytes(&file).unwrap();
    assert!(matches!(dir.tensors[0].planes[1].encoding, PlaneEncoding::Raw { .. }));
    let mut d = dir.clone();
    d.tensors[0].planes[1].payload_len -= 1;
    let err = Plan::build(&file, &d, &[0], &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, CudaError::Invalid { .. }), "{err}");
    let mut d = dir.clone();
    d.tensors[0].planes[1].payload_offset = file.len() as u64 - 100;
    let err = Plan::build(&file, &d, &[0], &PlanOptions::default()).unwrap_err();
    assert!(matches!(err, CudaError::Invalid { .. }), "{err}");
    let mut f = file.clone();
    f[dir.tensors[0].planes[1].payload_offset as usize + 7] ^= 1;
    let on_host = PlanOptions { checksums_on_device: false, ..PlanOptions::default() };
    let err = Plan::build(&f, &dir, &[0], &on_host).unwrap_err();
    assert!(matches!(err, CudaError::Checksum { .. }), "{err}");
    assert_eq!(device_checksum_error(&f, &dir), Some(err.to_string()));
}
