//! The driver of the SIMD decoders (safe code): it splits a unit into runs of full groups coded
//! with one table a half group (or, with column classes in rows of whole groups, a table a
//! symbol), which go to a kernel, and the rest (groups that straddle rows of different tables,
//! the tail group, the last groups of the stream), which take the kernel's path for mixed groups
//! or a scalar step per symbol.
//!
//! It is equivalent to the reference `decode_words` step for step: the same words reach the same
//! lanes (zeros past the end of the stream), the same checks run after the same groups, so
//! outputs and errors are identical. A unit is resumable group by group, so that two units can
//! share one core: a step of one unit is a chain of dependent instructions (a gather of ~30
//! cycles, a multiply, a compare, an expand) that leaves most of the core idle, which the other
//! unit's chain fills.

use crate::decode::{DecodeTable, SLOTS, open};
use crate::simd::{GroupsOut, Kernel, LaneClasses, Run, STREAM_AHEAD, WINDOW};
use crate::{ColumnPattern, GROUP, LANES, Path, RUN, RansError, STATE_LOW, TableMap};

/// One unit to decode with [`decode_units`]: the arguments of [`crate::decode_unit`], with
/// where its symbols go.
#[derive(Debug)]
pub struct UnitJob<'a> {
    pub unit: &'a [u8],
    pub tables: &'a [DecodeTable],
    pub map: TableMap<'a>,
    pub out: Out<'a>,
}

/// Where a unit's symbols go.
#[derive(Debug)]
pub enum Out<'a> {
    /// Back to back, as they are (`out.len()` symbols).
    Flat(&'a mut [u8]),
    /// A tile of a wider byte matrix: the unit's symbols are rows of `rows[0].len()` symbols
    /// (all of one length), row `r` into `rows[r]`, every byte XORed with `bias`.
    Rows { rows: Vec<&'a mut [u8]>, bias: u8 },
}

impl<'b> Out<'b> {
    /// Symbols of the unit.
    ///
    /// Panics where rows differ in length.
    pub fn symbols(&self) -> usize {
        match self {
            Out::Flat(out) => out.len(),
            Out::Rows { rows, .. } => {
                let width = rows.first().map_or(0, |r| r.len());
                assert!(rows.iter().all(|r| r.len() == width), "rows of one width");
                rows.len() * width
            }
        }
    }

    /// Whether the kernels store straight into it: no group straddles two rows (one row is a
    /// run like `Flat`, its last group, if partial, placed as a flat unit's is).
    fn suits_kernels(&self) -> bool {
        match self {
            Out::Flat(_) => true,
            Out::Rows { rows, .. } => {
                rows.len() <= 1 || rows.first().is_none_or(|r| r.len().is_multiple_of(GROUP))
            }
        }
    }

    /// Copies `symbols` (from symbol `t` on) to their places.
    fn place(&mut self, mut t: usize, mut symbols: &[u8]) {
        match self {
            Out::Flat(out) => out[t..t + symbols.len()].copy_from_slice(symbols),
            Out::Rows { rows, bias } => {
                let width = rows.first().map_or(0, |r| r.len());
                while !symbols.is_empty() {
                    let (r, c) = (t / width, t % width);
                    let run = (width - c).min(symbols.len());
                    for (o, &x) in rows[r][c..c + run].iter_mut().zip(&symbols[..run]) {
                        *o = x ^ *bias;
                    }
                    (t, symbols) = (t + run, &symbols[run..]);
                }
            }
        }
    }

    /// The kernels' view from group `g` on.
    fn groups(&mut self, g: usize) -> GroupsOut<'_, 'b> {
        match self {
            Out::Flat(out) => GroupsOut::Flat { out, at: g * GROUP },
            Out::Rows { rows, bias } => {
                let (t, width) = (g * GROUP, rows.first().map_or(1, |r| r.len()));
                GroupsOut::Rows { rows, row: t / width, col: t % width, bias: *bias }
            }
        }
    }
}

thread_local! {
    /// Symbols of units whose rows the decoder does not store into directly.
    static STAGING: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes one job on `path` where no kernel stores into its output: into a buffer, then
/// placed.
fn decode_staged(path: Path, job: &mut UnitJob) -> Result<(), RansError> {
    if let Out::Flat(out) = &mut job.out {
        return crate::decode_unit_with(path, job.unit, job.tables, job.map, out);
    }
    let n = job.out.symbols();
    STAGING.with_borrow_mut(|buf| {
        buf.clear();
        buf.resize(n, 0);
        let result = crate::decode_unit_with(path, job.unit, job.tables, job.map, buf);
        job.out.place(0, buf);
        result
    })
}

/// Decodes several units, each exactly as [`crate::decode_unit`] would (the same output and the
/// same result, in order; for [`Out::Rows`] the output of a unit that fails is unspecified).
/// With AVX-512 or AVX2 the units are decoded two at a time (with AVX-512 three where their
/// steps wait long: tables out of L1, or 6 bits a symbol and more), interleaved on one core,
/// which is about 1.6 times the throughput of one at a time with AVX-512 and 1.1-1.25 times
/// with AVX2: as soon as one ends, the next unit takes its place, so that units of different
/// lengths keep the kernel's lanes full.
pub fn decode_units(jobs: &mut [UnitJob<'_>]) -> Vec<Result<(), RansError>> {
    decode_units_with(Path::detected(), jobs)
}

/// [`decode_units`] on the given path (the scalar one where this CPU lacks it).
#[doc(hidden)]
pub fn decode_units_with(path: Path, jobs: &mut [UnitJob<'_>]) -> Vec<Result<(), RansError>> {
    let Some(kernel) = path.kernel() else {
        return jobs.iter_mut().map(|j| decode_staged(path, j)).collect();
    };
    let mut results = vec![Ok(()); jobs.len()];
    let mut queue = jobs.iter_mut().enumerate().peekable();
    let mut slots: [Option<(usize, FastUnit)>; INTERLEAVED] = std::array::from_fn(|_| None);
    loop {
        // Fill the free slots with the next units that open (the others fail here; units the
        // kernels cannot store are decoded on their own).
        for slot in &mut slots {
            while slot.is_none() {
                let Some((i, j)) = queue.next() else { break };
                if !j.out.suits_kernels() {
                    results[i] = decode_staged(path, j);
                    continue;
                }
                let n = j.out.symbols();
                match open(j.unit, j.tables, j.map, n) {
                    Ok((states, words)) => {
                        let (tables, map, out) = (j.tables, j.map, &mut j.out);
                        let unit = FastUnit::new(states, words, tables, map, out, n, kernel);
                        *slot = Some((i, unit));
                        // The kernels ask for each stream's bytes a few KiB ahead of their
                        // reads; the start of the unit that opens next is asked for here.
                        if let Some((_, next)) = queue.peek() {
                            crate::prefetch(&next.unit[..next.unit.len().min(STREAM_AHEAD)]);
                        }
                    }
                    Err(e) => results[i] = Err(e),
                }
            }
        }
        // A unit that is done leaves its slot.
        let mut left = false;
        for slot in &mut slots {
            if let Some((i, unit)) = slot
                && unit.is_done()
            {
                results[*i] = unit.finish();
                (*slot, left) = (None, true);
            }
        }
        if left {
            continue;
        }
        match slots.iter().filter(|s| s.is_some()).count() {
            0 => return results,
            1 => {
                // The queue is empty: the last unit alone.
                let slot = slots.iter_mut().find(|s| s.is_some()).expect("a unit");
                let (i, unit) = slot.as_mut().expect("a unit");
                if let Err(e) = unit.advance(kernel) {
                    results[*i] = Err(e);
                    *slot = None;
                }
                continue;
            }
            _ => {}
        }
        // The units in a kernel run go in lockstep (a lone one waits for a partner); the others
        // advance a group on their own. A unit that fails leaves its slot.
        let mut runs = [0usize; INTERLEAVED];
        for (run, slot) in runs.iter_mut().zip(&mut slots) {
            if let Some((_, unit)) = slot {
                *run = unit.run();
            }
        }
        // Units go in lockstep with units of their kind: of a table a half, or of tables lane
        // by lane (`FastUnit::lanes`).
        let by_lane = |k: usize| slots[k].as_ref().is_some_and(|(_, u)| u.lanes.is_some());
        let ready =
            |lanes: bool| (0..INTERLEAVED).filter(move |&k| runs[k] > 0 && by_lane(k) == lanes);
        let kind = [false, true].into_iter().find(|&lanes| ready(lanes).count() >= 2);
        if let Some(lanes) = kind {
            // Three units at once where their steps wait long: tables out of L1 (gathers from
            // L2), or units of at least 6 bits a symbol (a word read at most steps); a third
            // chain then hides more of the wait (MiniLM int8 per-row, 7.3 bits with one 12-bit
            // table: 1.09x; GGUF blocks coded whole, five tables, lane by lane: 1.08x). Two
            // elsewhere, where a third costs more in spilled registers than it hides (MiniLM
            // BF16 and FP16, 0.96-0.97x).
            let slow = |u: &FastUnit| {
                u.tables.len() << u.tables[0].prob_bits() > 1 << 12 || 8 * u.stream.len() >= 6 * u.n
            };
            let three = kernel.decodes_threes()
                && ready(lanes).count() == 3
                && slots.iter().flatten().all(|(_, u)| slow(u));
            let mut chosen = [false; INTERLEAVED];
            for k in ready(lanes).take(if three { 3 } else { 2 }) {
                chosen[k] = true;
            }
            let groups = (0..INTERLEAVED).filter(|&k| chosen[k]).map(|k| runs[k]).min();
            let groups = groups.expect("two units");
            let mut units = slots
                .iter_mut()
                .zip(chosen)
                .filter(|(_, c)| *c)
                .filter_map(|(slot, _)| slot.as_mut().map(|(_, unit)| unit));
            let (a, b) = (units.next().expect("a unit"), units.next().expect("a unit"));
            match units.next() {
                Some(c) if lanes => {
                    let runs = [a.kernel_run(groups), b.kernel_run(groups), c.kernel_run(groups)];
                    match kernel.decode_lane_runs(runs) {
                        Some(done) => (a.g, b.g, c.g) = (a.g + done, b.g + done, c.g + done),
                        None => [a, b, c].into_iter().for_each(FastUnit::drop_lanes),
                    }
                }
                Some(c) => {
                    let runs = [a.kernel_run(groups), b.kernel_run(groups), c.kernel_run(groups)];
                    let done = kernel.decode_runs(runs);
                    debug_assert!(done > 0, "all windows were checked");
                    (a.g, b.g, c.g) = (a.g + done, b.g + done, c.g + done);
                }
                None if lanes => {
                    match kernel.decode_lane_runs([a.kernel_run(groups), b.kernel_run(groups)]) {
                        Some(done) => (a.g, b.g) = (a.g + done, b.g + done),
                        None => [a, b].into_iter().for_each(FastUnit::drop_lanes),
                    }
                }
                None => {
                    let done = kernel.decode_runs([a.kernel_run(groups), b.kernel_run(groups)]);
                    debug_assert!(done > 0, "all windows were checked");
                    (a.g, b.g) = (a.g + done, b.g + done);
                }
            }
        }
        // The others advance a group or a run on their own: units not in a kernel run, and,
        // where no two of one kind are ready, those that are (one of each kind; a lone ready
        // unit waits for a partner).
        let alone = kind.is_none() && runs.iter().filter(|&&r| r > 0).count() >= 2;
        for (slot, &run) in slots.iter_mut().zip(&runs) {
            let Some((i, unit)) = slot else { continue };
            if (run == 0 || alone)
                && let Err(e) = unit.advance(kernel)
            {
                results[*i] = Err(e);
                *slot = None;
            }
        }
    }
}

/// Units a core decodes at once, interleaved.
const INTERLEAVED: usize = 3;

/// A unit being decoded by a SIMD path.
pub(crate) struct FastUnit<'a, 'b> {
    states: [u32; LANES],
    /// The unit's words, little-endian u16.
    stream: &'a [u8],
    /// The next word.
    pos: usize,
    /// The next group.
    g: usize,
    tables: &'a [DecodeTable],
    map: TableMap<'a>,
    /// Where the symbols go, and how many there are.
    out: &'a mut Out<'b>,
    n: usize,
    /// Once fewer than `WINDOW` words are left: a copy of the stream from word `start` on,
    /// zero-padded, long enough for a window from any position up to the end.
    tail: Option<Tail>,
    /// The tables of the groups of the current kernel run.
    classes: [[u8; 2]; MAX_RUN],
    /// The group `classes` starts at, if it is filled, and its length.
    classes_from: Option<usize>,
    classes_len: usize,
    /// Where its tables go by column in rows of whole groups, on a kernel that decodes such
    /// runs ([`Kernel::decode_lane_runs`]): the columns' classes; the groups of a run then
    /// start at `phases` of them.
    lanes: Option<ColumnPattern>,
    phases: [u32; MAX_RUN],
}

/// Groups in one kernel call at most.
const MAX_RUN: usize = 64;

/// The column pattern of a unit with `map` and `tables`, where `kernel` decodes its runs
/// ([`Kernel::decode_lane_runs`]: its number of tables, 32-bit offsets between them).
fn lane_pattern(map: TableMap, tables: &[DecodeTable], kernel: Kernel) -> Option<ColumnPattern> {
    if !kernel.decodes_lanes(tables.len()) {
        return None;
    }
    crate::simd::table_offsets(tables)?;
    ColumnPattern::of(map)
}

struct Tail {
    start: usize,
    words: [u8; 4 * WINDOW],
}

impl<'a, 'b> FastUnit<'a, 'b> {
    pub(crate) fn new(
        states: [u32; LANES],
        stream: &'a [u8],
        tables: &'a [DecodeTable],
        map: TableMap<'a>,
        out: &'a mut Out<'b>,
        n: usize,
        kernel: Kernel,
    ) -> FastUnit<'a, 'b> {
        debug_assert!(out.suits_kernels() && out.symbols() == n);
        FastUnit {
            states,
            stream,
            pos: 0,
            g: 0,
            tables,
            map,
            out,
            n,
            tail: None,
            classes: [[0; 2]; MAX_RUN],
            classes_from: None,
            classes_len: 0,
            lanes: lane_pattern(map, tables, kernel),
            phases: [0; MAX_RUN],
        }
    }

    pub(crate) fn run_to_end(mut self, kernel: Kernel) -> Result<(), RansError> {
        while !self.is_done() {
            self.advance(kernel)?;
        }
        self.finish()
    }

    fn n_words(&self) -> usize {
        self.stream.len() / 2
    }

    fn is_done(&self) -> bool {
        self.g >= self.n.div_ceil(GROUP)
    }

    /// The final checks: every word consumed, every state back to `L`.
    fn finish(&self) -> Result<(), RansError> {
        let words_left = self.n_words() - self.pos;
        if words_left != 0 || self.states.iter().any(|&s| s != STATE_LOW) {
            return Err(RansError::NotFinal { words_left });
        }
        Ok(())
    }

    /// The kernel run the unit is at, read in place: the number of groups from `g` (at most
    /// `MAX_RUN`) that are full and whose halves are coded with one table each (as in tiles of
    /// a width that is a multiple of 64), their tables put in `classes` (or, for a unit of
    /// `lanes`, its full groups, their phases put in `phases`),
    /// while a whole window of words is left; 0 when the next group is not such.
    fn run(&mut self) -> usize {
        if self.tail.is_some() || self.is_done() || self.pos + WINDOW > self.n_words() {
            return 0;
        }
        // The tables found last time still hold while the unit has not moved.
        if self.classes_from == Some(self.g) {
            return self.classes_len;
        }
        let groups = (self.n / GROUP).saturating_sub(self.g).min(MAX_RUN);
        if let Some(lanes) = &self.lanes {
            lanes.fill_phases(self.g, &mut self.phases[..groups]);
            (self.classes_from, self.classes_len) = (Some(self.g), groups);
            return groups;
        }
        let k = self.map.fill_half_tables(self.g * GROUP, &mut self.classes[..groups]);
        (self.classes_from, self.classes_len) = (Some(self.g), k);
        k
    }

    /// Takes the unit off lane runs, where the kernel refused one (not expected: its pattern
    /// was made for this kernel and these tables): its groups go one at a time from here.
    fn drop_lanes(&mut self) {
        (self.lanes, self.classes_from) = (None, None);
    }

    /// The kernel's view of the next `k` groups, their tables in `classes` (or `phases`).
    fn kernel_run(&mut self, k: usize) -> Run<'_, 'b> {
        Run {
            states: &mut self.states,
            words: self.stream,
            pos: &mut self.pos,
            tables: self.tables,
            classes: &self.classes[..k],
            lanes: self
                .lanes
                .as_ref()
                .map(|lanes| LaneClasses { pattern: lanes.classes(), phases: &self.phases[..k] }),
            out: self.out.groups(self.g),
        }
    }

    /// Decodes the next kernel run, mixed group or tail group.
    fn advance(&mut self, kernel: Kernel) -> Result<(), RansError> {
        let base = self.g * GROUP;
        let len = (self.n - base).min(GROUP);
        if self.tail.is_none() && self.pos + WINDOW <= self.n_words() {
            // In place: every read lies inside the stream, so no group can run past its end.
            let k = self.run();
            if k > 0 && self.lanes.is_some() {
                match kernel.decode_lane_runs([self.kernel_run(k)]) {
                    Some(done) => self.g += done,
                    None => self.drop_lanes(),
                }
            } else if k > 0 {
                self.g += kernel.decode_run(self.kernel_run(k));
            } else {
                let window = &self.stream[2 * self.pos..];
                let (tables, map) = (self.tables, self.map);
                self.pos +=
                    mixed_group(&mut self.states, window, tables, map, base, len, kernel, self.out);
                self.g += 1;
            }
            return Ok(());
        }
        let (stream, pos) = (self.stream, self.pos);
        let tail = self.tail.get_or_insert_with(|| {
            let mut words = [0u8; 4 * WINDOW];
            words[..stream.len() - 2 * pos].copy_from_slice(&stream[2 * pos..]);
            Tail { start: pos, words }
        });
        // pos <= n_words < start + WINDOW (checked after every group).
        let window = &tail.words[2 * (self.pos - tail.start)..];
        match uniform_table(self.map, base, len) {
            Some(t) => {
                let mut read = 0;
                let run = Run {
                    states: &mut self.states,
                    words: window,
                    pos: &mut read,
                    tables: self.tables,
                    classes: &[t],
                    lanes: None,
                    out: self.out.groups(self.g),
                };
                let done = kernel.decode_run(run);
                debug_assert_eq!(done, 1, "a window is left");
                self.pos += read;
            }
            None => {
                let (tables, map) = (self.tables, self.map);
                self.pos +=
                    mixed_group(&mut self.states, window, tables, map, base, len, kernel, self.out);
            }
        }
        self.g += 1;
        if self.pos > self.n_words() {
            return Err(RansError::StreamExhausted { words: self.n_words() });
        }
        Ok(())
    }
}

/// The tables of the halves of a full group of `len` symbols from `base`, each coded with one.
#[inline]
fn uniform_table(map: TableMap, base: usize, len: usize) -> Option<[u8; 2]> {
    if len == GROUP { map.half_tables(base) } else { None }
}

/// A group the run kernels do not take (several tables in a half, or a tail): its `len`
/// symbols from symbol `base` of the unit, into their places in `out`. A full group goes through
/// the kernel's path for mixed tables where it has one, else per symbol as in the reference
/// decoder; `window` is the stream from the group's first word (at least `GROUP + 1` words,
/// zeros past the end). Returns the words taken.
#[allow(clippy::too_many_arguments)]
fn mixed_group(
    states: &mut [u32; LANES],
    window: &[u8],
    tables: &[DecodeTable],
    map: TableMap,
    base: usize,
    len: usize,
    kernel: Kernel,
    out: &mut Out,
) -> usize {
    let mut group = [0u8; GROUP];
    let read = decode_group(states, window, tables, map, base, &mut group[..len], kernel);
    out.place(base, &group[..len]);
    read
}

/// [`mixed_group`] into `out`, the group's symbols in order.
fn decode_group(
    states: &mut [u32; LANES],
    window: &[u8],
    tables: &[DecodeTable],
    map: TableMap,
    base: usize,
    out: &mut [u8],
    kernel: Kernel,
) -> usize {
    // The table of each symbol of the group, one division for the whole group.
    let mut classes = [0u8; GROUP];
    map.fill_tables(base, &mut classes[..out.len()]);
    // A full group goes to the kernel's path for mixed tables where it has one.
    if let Ok(group) = <&mut [u8; GROUP]>::try_from(&mut *out)
        && let Some(read) = kernel.decode_mixed_group(states, window, tables, &classes, group)
    {
        return read;
    }
    let prob_bits = tables[0].prob_bits();
    let mask = (1u32 << prob_bits) - 1;
    let window: &[u8; 2 * (GROUP + 1)] =
        window[..2 * (GROUP + 1)].try_into().expect("a window of words");
    let mut read = 0usize;
    let mut step = |state: &mut u32, t: usize| -> u8 {
        let entries = &tables[usize::from(classes[t])].entries;
        let x = *state;
        let e = entries[(x & mask) as usize & (SLOTS - 1)];
        let x = (((e >> 8) & 0xfff) + 1) * (x >> prob_bits) + (e >> 20);
        let need = x < STATE_LOW;
        let w = 2 * read.min(GROUP);
        let word = u16::from_le_bytes([window[w], window[w + 1]]);
        // Select with a mask, not a branch: `need` is unpredictable.
        let keep = u32::from(need).wrapping_sub(1);
        *state = (x & keep) | (((x << 16) | u32::from(word)) & !keep);
        read += usize::from(need);
        e as u8
    };
    if let Ok(group) = <&mut [u8; GROUP]>::try_from(&mut *out) {
        for j in 0..RUN {
            for (lane, state) in states.iter_mut().enumerate() {
                group[lane * RUN + j] = step(state, lane * RUN + j);
            }
        }
    } else {
        for j in 0..RUN {
            for (lane, state) in states.iter_mut().enumerate() {
                let t = lane * RUN + j;
                if t < out.len() {
                    out[t] = step(state, t);
                }
            }
        }
    }
    read
}
