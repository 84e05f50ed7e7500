//! The encoder: runs the decoder's steps backwards and reverses the words.

use crate::down::{CodedUnit, Down};
use crate::simd::{ENCODE_HEADROOM, EncodeLaneRun, EncodeRun, Kernel};
use crate::{
    ColumnPattern, Frequencies, GROUP, LANES, Path, RUN, RansError, STATE_LOW, STATES_BYTES,
    TableMap,
};

/// Per-symbol constants of the encoder; a division-free quotient through a 64-bit reciprocal,
/// and the coding step as one multiply-add: with `q = x / freq` and `M = 2^prob_bits`,
/// `(q << prob_bits) + (x - q * freq) + cum == x + cum + q * (M - freq)` (as in Giesen's
/// ryg_rans).
#[derive(Clone, Copy, Debug, Default)]
struct EncSymbol {
    /// `floor(2^64 / freq) + 1`: `mulhi(rcp, x) == x / freq` for every 32-bit `x`
    /// (Lemire, Kaser, Kurz 2019). For `freq == 1`, `2^64 - 1`, whose quotient `x - 1` the
    /// bias makes up for.
    rcp: u64,
    /// Renormalise (emit a word) before coding when `x >= x_max`; 0 when `freq == 0`.
    x_max: u64,
    /// `cum`, plus `M - 1` when `freq == 1` (`x + cum + M - 1 + (x - 1) (M - 1) == x M + cum`).
    bias: u32,
    /// `M - freq`.
    cmpl_freq: u32,
}

impl EncSymbol {
    fn new(freq: u32, cum: u32, prob_bits: u8) -> EncSymbol {
        let m = 1u32 << prob_bits;
        let (rcp, bias) = match freq {
            0 => (0, 0),
            1 => (u64::MAX, cum + m - 1),
            _ => (u64::MAX / u64::from(freq) + 1, cum),
        };
        EncSymbol {
            rcp,
            x_max: u64::from(freq) << (32 - u32::from(prob_bits)),
            bias,
            cmpl_freq: m - freq,
        }
    }

    /// The coding step on `v`, a renormalised state: in `[1, x_max)` (a state is at least
    /// `2^16` before renormalisation, so at least 1 after; `x - 1` is then freq 1's quotient).
    #[inline(always)]
    fn code(&self, v: u32) -> u32 {
        let q = ((u128::from(self.rcp) * u128::from(v)) >> 64) as u32;
        v.wrapping_add(self.bias).wrapping_add(q.wrapping_mul(self.cmpl_freq))
    }
}

/// Encoder table for one frequency table.
#[derive(Clone, Debug)]
pub struct EncodeTable {
    pub(crate) prob_bits: u32,
    symbols: [EncSymbol; 256],
    /// Read by the x86-64 kernels only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) simd: SimdEncTable,
}

/// The per-symbol constants in the layout the SIMD kernels gather from, one array per field.
#[derive(Clone, Debug)]
pub(crate) struct SimdEncTable {
    /// The AVX2 encoder's: `freq | bias << 13 | shift << 27` (`freq <= 2^12`, `bias` as in
    /// `EncSymbol` (`< 2^13`), `shift` of `magic32`).
    pub(crate) info: [u32; 256],
    /// `x / freq == (t + (x - t) / 2) >> shift` with `t = mulhi(x, magic32)` for every 32-bit
    /// `x` and `freq >= 2` (the 33-bit reciprocal of Granlund and Montgomery, its top bit
    /// implied); for `freq == 1`, `2^32 - 1` and shift 0, whose quotient `x - 1` the bias makes
    /// up for; 0 when `freq == 0`.
    pub(crate) magic32: [u32; 256],
    /// The AVX-512 encoder's: `freq | bias << 16`, with `bias` as in `EncSymbol` (`< 2^13`).
    pub(crate) info512: [u32; 256],
    /// The AVX-512 encoder's: `magic52 | (M - freq) << 52`. `magic52` is `ceil(2^52 / freq)`:
    /// `x / freq == (x * magic52) >> 52` for every 32-bit `x` and `freq >= 2` (the error term
    /// `x * (magic52 * freq - 2^52) < 2^44` never reaches the next integer); for `freq == 1`
    /// `2^52 - 1`, whose quotient `x - 1` the bias makes up for; 0 when `freq == 0`. The
    /// 52-bit multiplies read the low 52 bits of their operands only.
    pub(crate) magic_cmpl: [u64; 256],
}

impl SimdEncTable {
    /// The constants of `freqs`, stored at each symbol XOR `relabel` (`EncodeTable::relabeled`).
    fn new(freqs: &Frequencies, relabel: u8) -> SimdEncTable {
        let mut t = SimdEncTable {
            info: [0; 256],
            magic32: [0; 256],
            info512: [0; 256],
            magic_cmpl: [0; 256],
        };
        let m = freqs.iter().sum::<u32>();
        let mut cum = 0u32;
        for (symbol, &freq) in freqs.iter().enumerate() {
            let s = symbol ^ usize::from(relabel);
            let (magic52, bias) = match freq {
                0 => (0, 0),
                1 => ((1 << 52) - 1, cum + m - 1),
                _ => ((1u64 << 52).div_ceil(u64::from(freq)), cum),
            };
            let (magic32, shift) = if freq == 1 { (u32::MAX, 0) } else { div_magic32(freq) };
            t.info[s] = (freq & 0x1fff) | (bias & 0x3fff) << 13 | shift << 27;
            t.magic32[s] = magic32;
            t.info512[s] = freq | bias << 16;
            t.magic_cmpl[s] = magic52 | u64::from(m.wrapping_sub(freq) & 0xfff) << 52;
            cum += freq;
        }
        t
    }
}

/// `(magic, shift)` with `x / d == (t + (x - t) / 2) >> shift`, `t = mulhi(x, magic)`, for
/// every 32-bit `x` and `2 <= d <= 2^12`; `(0, 0)` for `d <= 1`.
fn div_magic32(d: u32) -> (u32, u32) {
    if d <= 1 {
        return (0, 0);
    }
    let k = 31 - d.leading_zeros();
    if d.is_power_of_two() {
        // t = 0: (x / 2) >> (k - 1).
        return (0, k - 1);
    }
    // m = ceil(2^(33 + k) / d) lies in (2^32, 2^33): floor((x + mulhi(x, m - 2^32)) / 2^(k+1))
    // == floor(x * m / 2^(33 + k)) == floor(x / d), as x * (m * d - 2^(33 + k)) < 2^(33 + k).
    let m = (1u64 << (33 + k)).div_ceil(u64::from(d));
    ((m - (1u64 << 32)) as u32, k)
}

impl EncodeTable {
    /// `freqs` must sum to `2^prob_bits` (as `normalize` guarantees).
    pub fn new(freqs: &Frequencies, prob_bits: u8) -> EncodeTable {
        EncodeTable::relabeled(freqs, prob_bits, 0)
    }

    /// The table of `freqs` that codes byte `b` as symbol `b ^ relabel`: coding a plane's bytes
    /// with it is coding their residuals `b ^ relabel` with `freqs` (the same words), without
    /// the residuals ever being written out.
    pub fn relabeled(freqs: &Frequencies, prob_bits: u8, relabel: u8) -> EncodeTable {
        let mut symbols = [EncSymbol::default(); 256];
        let mut cum = 0u32;
        for (s, &freq) in freqs.iter().enumerate() {
            symbols[s ^ usize::from(relabel)] = EncSymbol::new(freq, cum, prob_bits);
            cum += freq;
        }
        debug_assert_eq!(cum, 1 << prob_bits);
        EncodeTable {
            prob_bits: u32::from(prob_bits),
            symbols,
            simd: SimdEncTable::new(freqs, relabel),
        }
    }

    /// `put`, with the word stored below the others in `down` instead.
    #[inline(always)]
    fn put_down(&self, x: &mut u32, symbol: u8, down: &mut Down) -> bool {
        let s = &self.symbols[symbol as usize];
        let v = *x;
        let emit = u64::from(v) >= s.x_max;
        down.put_if(v as u16, emit);
        *x = s.code(if emit { v >> 16 } else { v });
        s.x_max != 0
    }

    /// Codes `symbol` into `x`, storing a word at `buf[*len]` (u16, in reverse order) when
    /// `x` renormalises. Returns whether the symbol has a frequency (else `x` is garbage).
    #[inline(always)]
    fn put(&self, x: &mut u32, symbol: u8, buf: &mut [u16], len: &mut usize) -> bool {
        let s = &self.symbols[symbol as usize];
        let v = *x;
        // Branch-free renormalisation: always store, advance only when the word is needed.
        let emit = u64::from(v) >= s.x_max;
        buf[*len] = v as u16;
        *len += usize::from(emit);
        *x = s.code(if emit { v >> 16 } else { v });
        s.x_max != 0
    }
}

/// Encodes `symbols` as one unit and appends it to `out`: 32 little-endian u32 initial states,
/// then the u16 words. `map` says which of `tables` codes each symbol; every symbol must have
/// a non-zero frequency in its table, else the result is [`RansError::NoFrequency`] and `out`
/// is left as it was (no path ever writes a unit that does not decode to `symbols`).
///
/// Panics if `map` does not cover the symbols with tables of `tables` (a caller bug: the
/// encoder builds the map itself).
///
/// Runs the fastest path of this CPU ([`Path::detected`]); every path writes the same bytes.
pub fn encode_unit(
    symbols: &[u8],
    tables: &[EncodeTable],
    map: TableMap,
    out: &mut Vec<u8>,
) -> Result<(), RansError> {
    encode_unit_with(Path::detected(), symbols, tables, map, out)
}

/// [`encode_unit`] on the given path, or on the scalar one where this CPU lacks it (see
/// [`Path::is_available`]). For tests and benchmarks.
#[doc(hidden)]
pub fn encode_unit_with(
    path: Path,
    symbols: &[u8],
    tables: &[EncodeTable],
    map: TableMap,
    out: &mut Vec<u8>,
) -> Result<(), RansError> {
    map.check(symbols.len(), tables.len()).expect("the table map covers the unit");
    let coded = if let Some(kernel) = path.kernel() {
        encode_fast(kernel, symbols, tables, map, out)
    } else {
        // At most one word per symbol, plus the slot the branch-free store writes past the
        // end. The buffer is reused per thread: a fresh one per unit costs page faults.
        WORDS.with_borrow_mut(|buf| {
            if buf.len() < symbols.len() + 1 {
                buf.resize(symbols.len() + 1, 0);
            }
            let mut words = Words { buf: std::mem::take(buf), len: 0 };
            let coded = encode_into(symbols, tables, map, &mut words, out);
            *buf = words.buf;
            coded
        })
    };
    if coded { Ok(()) } else { Err(RansError::NoFrequency) }
}

thread_local! {
    static WORDS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Codes `symbols` on the scalar steps and appends the unit to `out`; returns whether every
/// symbol had a frequency (else appends nothing).
fn encode_into(
    symbols: &[u8],
    tables: &[EncodeTable],
    map: TableMap,
    words: &mut Words,
    out: &mut Vec<u8>,
) -> bool {
    let mut states = [STATE_LOW; LANES];
    let mut coded = true;
    let n = symbols.len();
    // The buffer and its length as locals, which the step updates through references.
    let buf = &mut words.buf[..];
    let mut len = words.len;
    // The steps run backwards: groups from the last to the first (the tail group, decoded
    // last, comes first); within a group, steps from the last; within a step, lanes from 31
    // down to 0.
    for g in (0..n.div_ceil(GROUP)).rev() {
        let base = g * GROUP;
        let size = (n - base).min(GROUP);
        match map.group_table(base, size) {
            Some(table) if size == GROUP => {
                let table = &tables[table];
                let group: &[u8; GROUP] =
                    symbols[base..base + GROUP].try_into().expect("a full group");
                for j in (0..RUN).rev() {
                    for lane in (0..LANES).rev() {
                        coded &= table.put(&mut states[lane], group[lane * RUN + j], buf, &mut len);
                    }
                }
            }
            _ => {
                for j in (0..RUN).rev() {
                    for lane in (0..LANES).rev() {
                        let t = base + lane * RUN + j;
                        if t < n {
                            let table = &tables[map.table_of(t)];
                            coded &= table.put(&mut states[lane], symbols[t], buf, &mut len);
                        }
                    }
                }
            }
        }
    }
    words.len = len;
    if !coded {
        return false;
    }
    out.reserve(LANES * 4 + words.len * 2);
    for s in states {
        out.extend_from_slice(&s.to_le_bytes());
    }
    // Into a presized slice: a push a word kept the Vec's length in memory, a third of the
    // scalar encoder's time.
    let start = out.len();
    out.resize(start + 2 * words.len, 0);
    for (dst, w) in out[start..].chunks_exact_mut(2).zip(words.buf[..words.len].iter().rev()) {
        dst.copy_from_slice(&w.to_le_bytes());
    }
    true
}

/// Words emitted so far, in encoding (reverse) order.
struct Words {
    buf: Vec<u16>,
    len: usize,
}

/// Groups in one kernel call at most.
const MAX_RUN: usize = 64;

/// The encoder of the SIMD paths, equivalent to `encode_into` step for step: full groups with
/// one table a half go to the kernel in runs, other groups take the scalar steps. The words are
/// stored downward from the end of a buffer, so that they end up in stream order, with no
/// reversal.
fn encode_fast(
    kernel: Kernel,
    symbols: &[u8],
    tables: &[EncodeTable],
    map: TableMap,
    out: &mut Vec<u8>,
) -> bool {
    DOWN.with_borrow_mut(|down| {
        // Room for every symbol's word: the buffer, reused, never grows while coding.
        down.reset(symbols.len() + ENCODE_HEADROOM);
        let coded = code_down(Some(kernel), symbols.into(), tables, map, down);
        if coded {
            out.extend_from_slice(down.bytes());
        }
        coded
    })
}

/// A unit's symbols where the coder reads them: one slice, or the rows of a tile of a wider
/// plane read in place, each row whole groups (no copy of the tile first).
#[derive(Clone, Copy, Debug)]
pub struct UnitSymbols<'a> {
    bytes: &'a [u8],
    /// Symbols a row, a multiple of `GROUP` where rows are apart (`stride > width`).
    width: usize,
    /// Bytes from a row's start to the next's.
    stride: usize,
    len: usize,
}

impl<'a> UnitSymbols<'a> {
    /// `rows` rows of `width` symbols, row `r` at `bytes[r * stride..]`; `None` unless `width`
    /// is a positive multiple of [`GROUP`] (a group then never spans two rows), `stride >=
    /// width`, and the rows lie in `bytes`.
    pub fn rows(bytes: &'a [u8], width: usize, stride: usize, rows: usize) -> Option<Self> {
        let end = rows.checked_sub(1).map_or(Some(0), |last| {
            last.checked_mul(stride).and_then(|start| start.checked_add(width))
        })?;
        (width > 0 && width.is_multiple_of(GROUP) && stride >= width && end <= bytes.len())
            .then(|| UnitSymbols { bytes, width, stride, len: rows * width })
    }

    /// The number of symbols.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the symbols are one slice.
    fn is_contiguous(&self) -> bool {
        self.stride == self.width
    }

    /// Group `g`'s symbols: `GROUP`, fewer in the last group of a unit that ends with a partial
    /// one (only a slice's can).
    fn group(&self, g: usize) -> &'a [u8] {
        let start = g * GROUP;
        let at = if self.is_contiguous() {
            start
        } else {
            start / self.width * self.stride + start % self.width
        };
        &self.bytes[at..at + GROUP.min(self.len - start)]
    }

    /// Full group `g`.
    fn full_group(&self, g: usize) -> &'a [u8; GROUP] {
        self.group(g).try_into().expect("a full group")
    }

    /// Full groups `first..first + groups.len()` into `groups` (stepping along the rows: no
    /// division a group).
    fn fill_groups(&self, first: usize, groups: &mut [&'a [u8; GROUP]]) {
        let start = first * GROUP;
        let (mut row, mut col) = (start / self.width, start % self.width);
        for group in groups {
            *group = self.bytes[row * self.stride + col..][..GROUP].try_into().expect("a group");
            col += GROUP;
            if col == self.width {
                (row, col) = (row + 1, 0);
            }
        }
    }
}

impl<'a> From<&'a [u8]> for UnitSymbols<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        UnitSymbols { bytes, width: bytes.len(), stride: bytes.len(), len: bytes.len() }
    }
}

impl<'a> From<&'a Vec<u8>> for UnitSymbols<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        bytes.as_slice().into()
    }
}

/// Encodes `symbols` as [`encode_unit`] does, into a buffer of its own sized for about
/// `expected_len` bytes of unit (grown if it needs more): the unit is then where the coder
/// wrote it, never copied. For an encoder that keeps its units.
pub fn encode_unit_owned<'a>(
    symbols: impl Into<UnitSymbols<'a>>,
    tables: &[EncodeTable],
    map: TableMap,
    expected_len: usize,
) -> Result<CodedUnit, RansError> {
    encode_unit_owned_with(Path::detected(), symbols, tables, map, expected_len)
}

/// [`encode_unit_owned`] on the given path, or on the scalar one where this CPU lacks it. For
/// tests and benchmarks.
#[doc(hidden)]
pub fn encode_unit_owned_with<'a>(
    path: Path,
    symbols: impl Into<UnitSymbols<'a>>,
    tables: &[EncodeTable],
    map: TableMap,
    expected_len: usize,
) -> Result<CodedUnit, RansError> {
    let symbols = symbols.into();
    map.check(symbols.len(), tables.len()).expect("the table map covers the unit");
    // Room for the words (the states have theirs).
    let words = expected_len.saturating_sub(STATES_BYTES).div_ceil(2);
    let mut down = Down::with_room(words + ENCODE_HEADROOM);
    if code_down(path.kernel(), symbols, tables, map, &mut down) {
        Ok(CodedUnit(down))
    } else {
        Err(RansError::NoFrequency)
    }
}

/// Codes a unit into `down`, growing it where it lacks room: runs of full groups on `kernel`,
/// the other groups (every group without one) on the scalar steps. Returns whether every
/// symbol had a frequency in its table.
fn code_down(
    kernel: Option<Kernel>,
    symbols: UnitSymbols<'_>,
    tables: &[EncodeTable],
    map: TableMap,
    down: &mut Down,
) -> bool {
    let mut coded = true;
    let mut unit = Coding::new(symbols, map, down);
    // Column classes in rows of whole groups (GGUF blocks coded whole) go in runs, each lane
    // with its own table, where the kernel has that path and the tables one precision.
    let lanes = kernel.filter(|k| k.encodes_lanes(tables.len()));
    let prob_bits = tables.first().map_or(0, |t| t.prob_bits);
    let lanes = lanes.filter(|_| tables.iter().all(|t| t.prob_bits == prob_bits));
    // (Lane runs take a slice: a unit read in place takes their groups one at a time.)
    let contiguous = symbols.is_contiguous();
    unit.lanes = lanes.filter(|_| contiguous).and_then(|_| ColumnPattern::of(map));
    while unit.g > 0 {
        if let (Some(kernel), Some(_)) = (lanes, &unit.lanes)
            && unit.symbols.len() - (unit.g - 1) * GROUP >= GROUP
        {
            // At most one word a symbol: a run as long as the room allows.
            if unit.down.room() < GROUP + ENCODE_HEADROOM {
                unit.down.reserve(GROUP * unit.g.min(MAX_RUN) + ENCODE_HEADROOM);
            }
            let k = unit.g.min(MAX_RUN).min((unit.down.room() - ENCODE_HEADROOM) / GROUP);
            match kernel.encode_lane_run(unit.lane_run(tables, k), prob_bits) {
                Some(run_coded) => {
                    coded &= run_coded;
                    unit.g -= k;
                }
                // (Not expected: the tables were checked above.)
                None => unit.lanes = None,
            }
            continue;
        }
        let run = kernel.and_then(|kernel| Some((kernel, unit.run_before(tables)?)));
        match run {
            Some((kernel, (start, prob_bits))) => {
                // At most one word a symbol: a run as long as the room allows.
                if unit.down.room() < GROUP + ENCODE_HEADROOM {
                    unit.down.reserve(GROUP * (unit.g - start) + ENCODE_HEADROOM);
                }
                let k = (unit.g - start).min((unit.down.room() - ENCODE_HEADROOM) / GROUP);
                coded &= kernel.encode_run(unit.run(tables, k), prob_bits);
                unit.g -= k;
            }
            None => {
                // A full group of mixed tables (column classes: GGUF blocks coded whole) on
                // the kernel's path for them where it has one, else the scalar steps.
                if unit.down.room() < GROUP + ENCODE_HEADROOM {
                    unit.down.reserve(GROUP + ENCODE_HEADROOM);
                }
                match kernel.and_then(|kernel| unit.mixed_group(kernel, tables)) {
                    Some(group_coded) => coded &= group_coded,
                    None => coded &= unit.scalar_group(tables),
                }
            }
        }
    }
    let states = unit.states;
    down.finish(&states);
    coded
}

/// One unit being coded by [`code_down`]: groups `0..g` are still to code, the words so far
/// are in `down`.
struct Coding<'a> {
    symbols: UnitSymbols<'a>,
    map: TableMap<'a>,
    states: [u32; LANES],
    g: usize,
    down: &'a mut Down,
    /// The half tables of the run found by `run_before`, in the last entries.
    classes: [[u8; 2]; MAX_RUN],
    /// The unit's column classes, where it codes runs of them (`Kernel::encode_lane_run`),
    /// and the phases of a run's groups.
    lanes: Option<ColumnPattern>,
    phases: [u32; MAX_RUN],
    /// The groups of a run (`run`), in group order.
    groups: [&'a [u8; GROUP]; MAX_RUN],
}

impl<'a> Coding<'a> {
    fn new(symbols: UnitSymbols<'a>, map: TableMap<'a>, down: &'a mut Down) -> Coding<'a> {
        Coding {
            symbols,
            map,
            states: [STATE_LOW; LANES],
            g: symbols.len().div_ceil(GROUP),
            down,
            classes: [[0; 2]; MAX_RUN],
            lanes: None,
            phases: [0; MAX_RUN],
            groups: [&[0; GROUP]; MAX_RUN],
        }
    }

    /// The kernel's run of the last `k` groups, their symbols' tables by column (`lanes` set).
    fn lane_run<'r>(&'r mut self, tables: &'r [EncodeTable], k: usize) -> EncodeLaneRun<'r> {
        let lanes = self.lanes.as_ref().expect("column classes");
        lanes.fill_phases(self.g - k, &mut self.phases[..k]);
        let (buf, cur) = self.down.parts();
        EncodeLaneRun {
            states: &mut self.states,
            symbols: &self.symbols.bytes[(self.g - k) * GROUP..self.g * GROUP],
            tables,
            pattern: lanes.classes(),
            phases: &self.phases[..k],
            buf,
            cur,
        }
    }

    /// The run of full groups that ends with group `g - 1` and whose halves (lanes 0..16,
    /// 16..32) each have one table (all of one precision): at most `MAX_RUN` groups, their
    /// tables in group order in the last entries of `classes`. Returns its first group and
    /// precision, or `None` where group `g - 1` is partial or not one table a half. (A group
    /// across rows of different tables still has one table a half where the rows are 64
    /// symbols wide.)
    fn run_before(&mut self, tables: &[EncodeTable]) -> Option<(usize, u32)> {
        let (g, map) = (self.g, self.map);
        // Group g - 1 first: where it has no run (partial, or tables mixed within a half, as
        // in every group of GGUF blocks coded whole) the search below would try up to
        // `MAX_RUN` groups before finding so.
        if self.symbols.len() - (g - 1) * GROUP < GROUP
            || map.half_tables((g - 1) * GROUP).is_none()
        {
            return None;
        }
        // Group `s` has its tables in `classes[MAX_RUN - (g - s)]`. Filled forward from up to
        // `MAX_RUN` groups back (a fill is one division, a group at a time was 2.4% of an int8
        // encode), past any group whose halves do not each share a table.
        let mut start = g.saturating_sub(MAX_RUN);
        loop {
            let filled =
                map.fill_half_tables(start * GROUP, &mut self.classes[MAX_RUN - (g - start)..]);
            if start + filled == g {
                break;
            }
            start += filled + 1;
            if start == g {
                return None;
            }
        }
        let last = self.classes[MAX_RUN - 1];
        let prob_bits = tables[usize::from(last[0])].prob_bits;
        let same_bits =
            |h: [u8; 2]| h.iter().all(|&c| tables[usize::from(c)].prob_bits == prob_bits);
        let mut first = g - 1;
        while first > start && same_bits(self.classes[MAX_RUN - (g - first) - 1]) {
            first -= 1;
        }
        (same_bits(last)).then_some((first, prob_bits))
    }

    /// The kernel's run of the last `k` groups of the run `run_before` found.
    fn run<'r>(&'r mut self, tables: &'r [EncodeTable], k: usize) -> EncodeRun<'r> {
        self.symbols.fill_groups(self.g - k, &mut self.groups[..k]);
        let (buf, cur) = self.down.parts();
        EncodeRun {
            states: &mut self.states,
            groups: &self.groups[..k],
            tables,
            classes: &self.classes[MAX_RUN - k..],
            buf,
            cur,
        }
    }

    /// Group `g - 1` on the kernel's path for a table a symbol, if the group is full, its
    /// tables are of one precision and the kernel has that path; needs room for a word a
    /// symbol and the headroom. Returns whether every symbol had a frequency.
    fn mixed_group(&mut self, kernel: Kernel, tables: &[EncodeTable]) -> Option<bool> {
        let base = (self.g - 1) * GROUP;
        let group: &[u8; GROUP] = self.symbols.group(self.g - 1).try_into().ok()?;
        let prob_bits = tables[0].prob_bits;
        if tables.iter().any(|t| t.prob_bits != prob_bits) {
            return None;
        }
        let mut classes = [0u8; GROUP];
        self.map.fill_tables(base, &mut classes);
        let (buf, cur) = self.down.parts();
        let coded = kernel.encode_mixed_group(
            &mut self.states,
            group,
            tables,
            &classes,
            prob_bits,
            buf,
            cur,
        )?;
        self.g -= 1;
        Some(coded)
    }

    /// Group `g - 1` (full or not) on the scalar steps; needs room for a word a symbol.
    /// Returns whether every symbol had a frequency.
    fn scalar_group(&mut self, tables: &[EncodeTable]) -> bool {
        let mut coded = true;
        let (n, base) = (self.symbols.len(), (self.g - 1) * GROUP);
        let size = (n - base).min(GROUP);
        // The group's table, or each symbol's (filled one after another, no division each).
        let group_table = self.map.group_table(base, size);
        if let (Some(table), GROUP) = (group_table, size) {
            // A full group of one table (most groups): no per-symbol checks.
            let (table, states) = (&tables[table], &mut self.states);
            let group = self.symbols.full_group(self.g - 1);
            for j in (0..RUN).rev() {
                for lane in (0..LANES).rev() {
                    coded &= table.put_down(&mut states[lane], group[lane * RUN + j], self.down);
                }
            }
            self.g -= 1;
            return coded;
        }
        let mut classes = [0u8; GROUP];
        if group_table.is_none() {
            self.map.fill_tables(base, &mut classes[..size]);
        }
        let group = self.symbols.group(self.g - 1);
        for j in (0..RUN).rev() {
            for lane in (0..LANES).rev() {
                let t = base + lane * RUN + j;
                if t < n {
                    let table = group_table.unwrap_or(usize::from(classes[t - base]));
                    let (state, symbol) = (&mut self.states[lane], group[t - base]);
                    coded &= tables[table].put_down(state, symbol, self.down);
                }
            }
        }
        self.g -= 1;
        coded
    }
}

thread_local! {
    /// `encode_fast`'s word buffer, reused per thread.
    static DOWN: std::cell::RefCell<Down> = std::cell::RefCell::new(Down::empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit coded into a buffer of its own is the unit `encode_unit` appends, on the scalar
    /// path (the one Miri runs) and the detected one, from no room at all (grown group by
    /// group) to more than it needs.
    #[test]
    fn owned_units_are_the_appended_units() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let symbols: Vec<u8> = (0..GROUP * 3 + 37)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Skewed: mostly small values, some of every byte.
                if x.is_multiple_of(4) { (x >> 8) as u8 } else { (x >> 8) as u8 % 6 }
            })
            .collect();
        let freqs = crate::normalize(&crate::histogram(&symbols), 10);
        let tables = [EncodeTable::new(&freqs, 10)];
        for path in [Path::Scalar, Path::detected()] {
            let mut appended = vec![7];
            encode_unit_with(path, &symbols, &tables, TableMap::Single, &mut appended)
                .expect("every symbol has a frequency");
            for expected in [0, 64, appended.len(), 4 * appended.len()] {
                let unit =
                    encode_unit_owned_with(path, &symbols, &tables, TableMap::Single, expected)
                        .expect("every symbol has a frequency");
                assert!(unit.bytes() == &appended[1..], "{path:?}, room for {expected} bytes");
            }
        }
    }

    /// Numerators where a reciprocal is most likely off: around multiples of `d`, and the ends.
    fn numerators(d: u32) -> impl Iterator<Item = u32> {
        let step = (u32::MAX / d / 512).max(1);
        (0..=u32::MAX / d)
            .step_by(step as usize)
            .chain([u32::MAX / d, u32::MAX / d - 1])
            .flat_map(move |k| {
                let m = k.wrapping_mul(d);
                [m, m.wrapping_sub(1), m.wrapping_add(1), m.wrapping_add(d - 1)]
            })
            .chain([0, 1, u32::MAX, u32::MAX - 1, 1 << 31])
    }

    #[test]
    fn simd_reciprocals_divide_exactly() {
        for d in 2..=4096u32 {
            let (magic, shift) = div_magic32(d);
            let magic52 = (1u64 << 52).div_ceil(u64::from(d));
            for x in numerators(d) {
                let t = ((u64::from(x) * u64::from(magic)) >> 32) as u32;
                let q32 = (t + ((x - t) >> 1)) >> shift;
                let q52 = ((u128::from(x) * u128::from(magic52)) >> 52) as u32;
                assert_eq!(q32, x / d, "magic32, {x} / {d}");
                assert_eq!(q52, x / d, "magic52, {x} / {d}");
            }
        }
    }

    /// Renormalised states to code a symbol of `freq` from, in `[1, x_max)`: around multiples
    /// of `freq` and at both ends.
    fn renormalised_states(freq: u32, prob_bits: u8) -> impl Iterator<Item = u32> {
        let top = ((u64::from(freq) << (32 - u32::from(prob_bits))) - 1) as u32;
        numerators(freq).filter(move |&x| x <= top).chain([top, 1 << 16]).filter(|&x| x > 0)
    }

    /// The AVX-512 step's table (`info512`, `magic_cmpl`), done as the kernel does it in 64-bit
    /// lanes (`q = (x * magic) >> 52` on the low 52 bits, `x + q * (M - freq)` on the low 52
    /// bits, its low 32 bits plus the bias), is the rANS step for every frequency at every
    /// precision, freq 1 and freq M included, at both ends of the renormalised states.
    #[test]
    fn avx512_table_steps_are_the_rans_step() {
        for prob_bits in 8..=12u8 {
            let m = 1u32 << prob_bits;
            for freq in 1..=m {
                let cum = (m - freq) / 2;
                let mut freqs = [0u32; 256];
                freqs[0] = cum;
                freqs[1] = freq;
                freqs[2] = m - freq - cum;
                let t = SimdEncTable::new(&freqs, 0);
                let (info, magic_cmpl) = (t.info512[1], t.magic_cmpl[1]);
                assert_eq!(info & 0xffff, freq);
                let low52 = |v: u64| v & ((1 << 52) - 1);
                for x in renormalised_states(freq, prob_bits) {
                    let q = ((u128::from(x) * u128::from(low52(magic_cmpl))) >> 52) as u64;
                    let y = low52(u64::from(x) + low52(q) * (magic_cmpl >> 52)) as u32;
                    let got = y.wrapping_add(info >> 16);
                    let expected = u64::from(x / freq) * u64::from(m) + u64::from(x % freq + cum);
                    assert_eq!(u64::from(got), expected, "{x} at {freq}/{m}");
                }
            }
        }
    }

    /// The scalar step `x + bias + q (M - freq)` is the rANS step `(x / freq) M + x % freq +
    /// cum` for every frequency at every precision (freq 1 and freq M included) and every
    /// renormalised state class: around multiples of `freq` and at both ends of `[0, x_max)`.
    #[test]
    fn scalar_steps_are_the_rans_step() {
        for prob_bits in 8..=12u8 {
            let m = 1u32 << prob_bits;
            for freq in 1..=m {
                let cum = (m - freq) / 2;
                let s = EncSymbol::new(freq, cum, prob_bits);
                let x_max = u64::from(freq) << (32 - u32::from(prob_bits));
                assert_eq!(s.x_max, x_max);
                for x in renormalised_states(freq, prob_bits) {
                    let expected = u64::from(x / freq) * u64::from(m) + u64::from(x % freq + cum);
                    assert_eq!(u64::from(s.code(x)), expected, "{x} at {freq}/{m}");
                }
            }
        }
    }
}
