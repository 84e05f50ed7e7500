//! The decode kernel run on the CPU, step for step: the same lanes, ballots, shuffles, word
//! stores and wavefront as kernels/decode.cu, on host buffers.
//!
//! It is not a decoder to use (wcodec-decode is); it is how the plan (`Plan::build`) and the
//! kernel's algorithm are tested on machines with no GPU, against the reference decoder. Any
//! change to the kernel's logic is mirrored here. Out-of-bounds writes, which the plan must
//! make impossible, panic here instead of corrupting memory.

use crate::abi::*;
use crate::plan::{Plan, table_entries};

const LANES: usize = 32;
const STATE_LOW: u32 = wcodec_format::rans::STATE_LOW;

/// The CRC kernel (kernels/crc.cu) on the CPU: the CRC-32C of each of the plan's
/// `crc_chunks` of `staging`, computed as a warp does (the host compares them all, with
/// `Plan::verify_crcs`, as it does when the kernel reports a mismatch).
pub fn crcs(plan: &Plan, staging: &[u8]) -> Vec<u32> {
    let tables = crate::crc::device_tables();
    plan.crc_chunks
        .iter()
        .map(|c| {
            let len = (c.len & !CRC_COMPARE) as usize;
            crate::crc::warp_crc32c(&staging[c.src as usize..][..len], &tables)
        })
        .collect()
}

/// Runs the thread blocks of `ranges` (from `plan.ranges`) over `staging` (the staged
/// compressed bytes) into `outputs` (one buffer per `plan.outputs`, sized to it), plane by
/// plane as the kernel does; returns every unit's status word.
pub fn execute(
    plan: &Plan,
    ranges: &[WcRange],
    staging: &[u8],
    outputs: &mut [Vec<u8>],
) -> Vec<u32> {
    let mut status = vec![0u32; plan.units.len()];
    for r in ranges {
        let end = r.first_unit + r.n_units;
        let mut start = r.first_unit;
        let mut gi = r.first_group as usize;
        while start < end && gi < plan.groups.len() {
            let g = &plan.groups[gi];
            let seg_end = end.min(g.first_unit + g.n_units);
            let tables = Tables {
                words: &plan.tables[g.table as usize..][..table_entries(g)],
                compact: g.flags & GROUP_COMPACT_TABLES != 0,
                prob_bits: u32::from(g.prob_bits),
            };
            for index in start as usize..seg_end as usize {
                let u = &plan.units[index];
                let out = &mut outputs[plan.unit_output[index] as usize];
                status[index] = if u.kind == UNIT_RANS {
                    let st =
                        decode_rans(staging, &plan.maps, u, tables, u32::from(g.prob_bits), out);
                    if u.predictor != 0 {
                        // A merged unit is rebuilt in its elements' high bytes, then merged.
                        let mix = u.flags & FLAG_MIX_BF16 != 0;
                        let home = WcUnit { dst: u.dst + u64::from(mix), ..*u };
                        if by_words(&home, mix) {
                            reconstruct_words(out, &home);
                        } else {
                            reconstruct(out, &home);
                        }
                        if mix {
                            merge_tile(staging, u, out);
                        }
                    }
                    st
                } else {
                    copy_raw(staging, u, out);
                    0
                };
            }
            start = seg_end;
            gi += 1;
        }
    }
    status
}

/// The merge launch (`wc_merge_kernel`): tensors whose planes were decoded into scratch.
pub fn merge(plan: &Plan, outputs: &mut [Vec<u8>]) {
    for m in &plan.merges {
        let scratch = std::mem::take(&mut outputs[m.scratch_output as usize]);
        let out = &mut outputs[m.tensor_output as usize];
        let plane = |j: u64, i: u64| u32::from(scratch[(j * m.plane_len + m.offset + i) as usize]);
        for i in 0..u64::from(m.n) {
            let at = ((m.offset + i) * u64::from(m.elem_size)) as usize;
            if m.kind == MERGE_BLOCK_HEAD || m.kind == MERGE_BLOCKS {
                for j in 0..u64::from(m.fields) {
                    out[at + j as usize] = plane(j, i) as u8;
                }
                if m.kind == MERGE_BLOCKS {
                    let tail = (m.elem_size - m.fields) as usize;
                    let from = m.tail as usize + i as usize * tail;
                    let block = &mut out[at..at + m.elem_size as usize];
                    block[m.fields as usize..].copy_from_slice(&scratch[from..from + tail]);
                }
                continue;
            }
            let (e, sm) = (plane(0, i), plane(1, i));
            if m.kind == MERGE_BF16_SPLIT {
                let v = ((sm & 0x80) << 8) | (e << 7) | (sm & 0x7f);
                out[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
            } else {
                let v = ((sm & 0x80) << 24)
                    | (e << 23)
                    | ((sm & 0x7f) << 16)
                    | (plane(2, i) << 8)
                    | plane(3, i);
                out[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        outputs[m.scratch_output as usize] = scratch;
    }
}

/// `merge_bf16` of the kernel: a BF16 element from its exponent and sign-mantissa bytes.
fn merge_bf16(e: u32, sm: u32) -> u16 {
    (((sm & 0x80) << 8) | (e << 7) | (sm & 0x7f)) as u16
}

/// `merge_tile` of the kernel: a rebuilt WC_FLAG_MIX_BF16 tile, exponents in the elements'
/// high bytes, merged with its sign-mantissa bytes.
fn merge_tile(src: &[u8], u: &WcUnit, out: &mut [u8]) {
    let sm_stride = u.row_stride / 2;
    for r in 0..u64::from(u.height) {
        for c in 0..u64::from(u.width) {
            let at = (u.dst + r * u.row_stride + 2 * (u.first + c)) as usize;
            let sm = u32::from(src[(u.mix + r * sm_stride + c) as usize]);
            let v = merge_bf16(u32::from(out[at + 1]), sm);
            out[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// `Cols::at` of the kernel: where column c0 + c of a plane lies within its output row.
fn column(u: &WcUnit, c0: u64, c: u64) -> u64 {
    let c = c0 + c;
    let (group, col_stride, step) =
        (u64::from(u.group), u64::from(u.col_stride), u64::from(u.step));
    (c / group) * col_stride + (c % group) * step
}

fn ballot(pred: &[bool; LANES]) -> u32 {
    pred.iter().enumerate().fold(0, |m, (lane, &p)| m | (u32::from(p) << lane))
}

/// All lanes of the warp as one decoder, with the kernel's register window over the stream
/// (`Stream` in kernels/decode.cu): lane l's `a` holds the pair of words `q = l (mod 32)` in
/// `[first, first + 32)`, its `b` and `c` the pairs 32 and 64 further.
struct Warp<'a> {
    x: [u32; LANES],
    words: &'a [u8],
    n_words: u32,
    first: u32,
    rel: u32,
    a: [u32; LANES],
    b: [u32; LANES],
    c: [u32; LANES],
    mask: u32,
    prob_bits: u32,
    table: Tables<'a>,
}

impl Warp<'_> {
    /// `Stream::load_pair`: words 2q and 2q + 1, zero past the end.
    fn load_pair(&self, q: u32) -> u32 {
        let word = |w: u32| {
            if w < self.n_words {
                let i = w as usize * 2;
                u32::from(u16::from_le_bytes([self.words[i], self.words[i + 1]]))
            } else {
                0
            }
        };
        word(2 * q) | word(2 * q + 1) << 16
    }

    fn init(&mut self) {
        for lane in 0..LANES as u32 {
            let l = lane as usize;
            self.a[l] = self.load_pair(lane);
            self.b[l] = self.load_pair(lane + 32);
            self.c[l] = self.load_pair(lane + 64);
        }
    }

    fn pos(&self) -> u32 {
        2 * self.first + self.rel
    }

    fn slide(&mut self) {
        for lane in 0..LANES as u32 {
            let l = lane as usize;
            let age = lane.wrapping_sub(self.first) & 31;
            if age < 16 {
                self.a[l] = self.b[l];
                self.b[l] = self.c[l];
                self.c[l] = self.load_pair(self.first + age + 96);
            }
        }
        self.first += 16;
        self.rel -= 32;
    }

    /// One step of every lane (`rans_step` in the kernel), lane i with the table starting at
    /// entry `tb[i]`; returns each lane's symbol.
    fn step(&mut self, active: &[bool; LANES], tb: &[u32; LANES]) -> [u32; LANES] {
        let mut xn = [0u32; LANES];
        let mut need = [false; LANES];
        let mut sym = [0u32; LANES];
        for lane in 0..LANES {
            let x = self.x[lane];
            let e = self.table.entry(tb[lane], x & self.mask);
            let freq = ((e >> 8) & 0xfff) + 1;
            let v = freq.wrapping_mul(x >> self.prob_bits).wrapping_add(e >> 20);
            xn[lane] = if active[lane] { v } else { x };
            need[lane] = active[lane] && v < STATE_LOW;
            sym[lane] = e & 0xff;
        }
        let m = ballot(&need);
        for lane in 0..LANES {
            let o = self.rel + (m & ((1u32 << lane) - 1)).count_ones();
            // __shfl_sync(.., a, first + o / 2): the source lane modulo 32.
            let pair = self.a[((self.first + o / 2) % 32) as usize];
            let word = (pair >> ((o & 1) * 16)) & 0xffff;
            self.x[lane] = if need[lane] { (xn[lane] << 16) | word } else { xn[lane] };
        }
        self.rel += m.count_ones();
        if self.rel >= 32 {
            self.slide();
        }
        sym
    }
}

/// A plane's tables as the kernel reads them: full (an entry a slot) or compact
/// (`plan::compact_table`).
#[derive(Clone, Copy)]
struct Tables<'a> {
    words: &'a [u32],
    compact: bool,
    prob_bits: u32,
}

impl Tables<'_> {
    /// The entry of `slot` in the table whose first entry is `tb` (`table << prob_bits`).
    fn entry(&self, tb: u32, slot: u32) -> u32 {
        if !self.compact {
            return self.words[(tb | slot) as usize];
        }
        // TableCompact in the kernel: the table's records, then its symbol bytes.
        let table = (tb >> self.prob_bits) as usize;
        let at = table * (256 + (1 << self.prob_bits) / 4);
        let symbols = &self.words[at + 256..];
        let s = slot as usize;
        let symbol = (symbols[s / 4] >> (8 * (s % 4))) & 0xff;
        self.words[at + symbol as usize].wrapping_add(slot << 20)
    }
}

fn decode_rans(
    src: &[u8],
    maps: &[u8],
    u: &WcUnit,
    table: Tables,
    prob_bits: u32,
    out: &mut [u8],
) -> u32 {
    let unit = &src[u.src as usize..(u.src + u64::from(u.len)) as usize];
    let x: [u32; LANES] = std::array::from_fn(|lane| {
        u32::from_le_bytes(unit[4 * lane..4 * lane + 4].try_into().expect("4 bytes"))
    });
    let mut status = if x.iter().any(|&s| s < STATE_LOW) { ERR_BAD_INITIAL_STATE } else { 0 };
    let mut warp = Warp {
        x,
        words: &unit[128..],
        n_words: (u.len - 128) / 2,
        first: 0,
        rel: 0,
        a: [0; LANES],
        b: [0; LANES],
        c: [0; LANES],
        mask: (1 << prob_bits) - 1,
        prob_bits,
        table,
    };
    warp.init();
    let (width, height) = (u.width, u.height);
    let n = height * width;
    let bias: u32 = if u.flags & FLAG_BIAS128 != 0 { 0x80 } else { 0 };
    let xor4 = if u.predictor == 0 { bias * 0x0101_0101 } else { 0 };
    let groups = n / 128;
    let rest = n - groups * 128;
    let row_tables = u.flags & FLAG_ROW_TABLES != 0;
    let col_tables = u.flags & FLAG_COL_TABLES != 0;
    let table_of_row = |r: u32| -> u32 {
        if row_tables {
            u32::from(maps[(u.row_map + u64::from(r.min(height - 1))) as usize]) << prob_bits
        } else {
            0
        }
    };
    // The table of tile row r, column c (column classes: that of the column).
    let table_of = |r: u32, c: u32| -> u32 {
        if col_tables {
            u32::from(maps[(u.row_map + u64::from(c.min(width - 1))) as usize]) << prob_bits
        } else {
            table_of_row(r)
        }
    };
    // FLAG_MIX_BF16: 2-byte elements merged with their sign-mantissa bytes at `mix`.
    let mix = u.flags & FLAG_MIX_BF16 != 0;
    let es: u64 = if mix { 2 } else { 1 };
    let sm_stride = u.row_stride / 2;
    // Stores a lane's 4 symbols at `p` (its sign-mantissa bytes at `q` when merged).
    let store = |out: &mut [u8], p: u64, q: u64, word: u32| {
        let p = p as usize;
        if mix {
            for j in 0..4 {
                let v = merge_bf16((word >> (8 * j)) & 0xff, u32::from(src[q as usize + j]));
                out[p + 2 * j..p + 2 * j + 2].copy_from_slice(&v.to_le_bytes());
            }
        } else {
            out[p..p + 4].copy_from_slice(&word.to_le_bytes());
        }
    };
    if u.flags & FLAG_WORD_STORES != 0 {
        // Where each lane's run of the current group starts: column, row, address (and that of
        // its sign-mantissa bytes), table.
        let mut col: [u32; LANES] = std::array::from_fn(|lane| 4 * lane as u32);
        let mut row = [0u32; LANES];
        let mut p = [0u64; LANES];
        let mut q = [0u64; LANES];
        let mut tb = [0u32; LANES];
        let wrap = u.row_stride - es * u64::from(width);
        let sm_wrap = sm_stride.wrapping_sub(u64::from(width));
        for lane in 0..LANES {
            while col[lane] >= width {
                col[lane] -= width;
                row[lane] += 1;
            }
            p[lane] =
                u.dst + es * (u.first + u64::from(col[lane])) + u64::from(row[lane]) * u.row_stride;
            q[lane] = u.mix + u64::from(row[lane]) * sm_stride + u64::from(col[lane]);
            tb[lane] = table_of_row(row[lane]);
        }
        let all = [true; LANES];
        // The tables of each lane's symbol j: its row's, or its column's.
        let step_tables = |j: u32, tb: &[u32; LANES], col: &[u32; LANES]| -> [u32; LANES] {
            std::array::from_fn(
                |lane| if col_tables { table_of(0, col[lane] + j) } else { tb[lane] },
            )
        };
        for _ in 0..groups {
            let mut word = [0u32; LANES];
            for j in 0..4 {
                let sym = warp.step(&all, &step_tables(j, &tb, &col));
                for lane in 0..LANES {
                    word[lane] |= sym[lane] << (8 * j);
                }
            }
            for lane in 0..LANES {
                store(out, p[lane], q[lane], word[lane] ^ xor4);
                col[lane] += 128;
                p[lane] += es * 128;
                q[lane] = q[lane].wrapping_add(128);
                if col[lane] >= width {
                    while col[lane] >= width {
                        col[lane] -= width;
                        p[lane] += wrap;
                        q[lane] = q[lane].wrapping_add(sm_wrap);
                        row[lane] += 1;
                    }
                    tb[lane] = table_of_row(row[lane]);
                }
            }
        }
        if rest > 0 {
            let mut word = [0u32; LANES];
            for j in 0..4 {
                let active: [bool; LANES] = std::array::from_fn(|lane| 4 * lane as u32 + j < rest);
                let sym = warp.step(&active, &step_tables(j, &tb, &col));
                for lane in 0..LANES {
                    word[lane] |= sym[lane] << (8 * j);
                }
            }
            for lane in 0..LANES {
                if 4 * (lane as u32) < rest {
                    store(out, p[lane], q[lane], word[lane] ^ xor4);
                }
            }
        }
    } else {
        for g in 0..groups + u32::from(rest > 0) {
            for j in 0..4 {
                let t: [u32; LANES] = std::array::from_fn(|lane| g * 128 + 4 * lane as u32 + j);
                let active: [bool; LANES] = std::array::from_fn(|lane| t[lane] < n);
                let tb: [u32; LANES] =
                    std::array::from_fn(|lane| table_of(t[lane] / width, t[lane] % width));
                let sym = warp.step(&active, &tb);
                for lane in 0..LANES {
                    if active[lane] {
                        let (r, c) = (t[lane] / width, t[lane] % width);
                        let at = (u.dst
                            + u64::from(r) * u.row_stride
                            + column(u, u.first, u64::from(c)))
                            as usize;
                        if !mix {
                            out[at] = ((sym[lane] ^ xor4) & 0xff) as u8;
                        } else if u.predictor == 0 {
                            let b = src[(u.mix + u64::from(r) * sm_stride + u64::from(c)) as usize];
                            let v = merge_bf16((sym[lane] ^ xor4) & 0xff, u32::from(b));
                            out[at..at + 2].copy_from_slice(&v.to_le_bytes());
                        } else {
                            out[at + 1] = sym[lane] as u8; // the residual, in the high byte
                        }
                    }
                }
            }
        }
    }
    if warp.pos() > warp.n_words {
        status |= ERR_OVERRUN;
    }
    if warp.pos() < warp.n_words {
        status |= ERR_WORDS_LEFT;
    }
    if warp.x.iter().any(|&s| s != STATE_LOW) {
        status |= ERR_NOT_FINAL;
    }
    status
}

fn predict(mode: u8, a: u32, b: u32, c: u32) -> u32 {
    match mode {
        1 => a,
        2 => b,
        3 => (a + b) >> 1,
        _ => {
            let p = a as i32 + b as i32 - c as i32;
            let (pa, pb, pc) = ((p - a as i32).abs(), (p - b as i32).abs(), (p - c as i32).abs());
            if pa <= pb && pa <= pc {
                a
            } else if pb <= pc {
                b
            } else {
                c
            }
        }
    }
}

/// The kernel's wavefront over a tile of `height` rows and `width` columns (or words): rows 32
/// at a time, lane l on row r0 + l, at step k on column k - l. `visit(r, c, up, own)` runs for
/// each lane with a column to do, in lane order; `up` is what lane l - 1 returned at the step
/// before (its `__shfl_up_sync`), `own` what this lane returned; it returns the lane's new state.
fn wavefront<T: Copy + Default>(
    height: u32,
    width: u32,
    mut visit: impl FnMut(u32, u32, T, T) -> T,
) {
    for r0 in (0..height).step_by(LANES) {
        let mut state = [T::default(); LANES];
        for k in 0..width + LANES as u32 - 1 {
            // __shfl_up_sync(.., 1): lane l reads lane l - 1; lane 0 reads itself.
            let up: [T; LANES] = std::array::from_fn(|l| state[l.saturating_sub(1)]);
            for lane in 0..LANES as u32 {
                let (r, c) = (r0 + lane, k.wrapping_sub(lane));
                if r < height && k >= lane && c < width {
                    let l = lane as usize;
                    state[l] = visit(r, c, up[l], state[l]);
                }
            }
        }
    }
}

/// The kernel's `reconstruct`: a byte a step; a lane's state is its last two values.
fn reconstruct(out: &mut [u8], u: &WcUnit) {
    let bias: u32 = if u.flags & FLAG_BIAS128 != 0 { 0x80 } else { 0 };
    let at = |r: u32, c: u32| {
        (u.dst + u64::from(r) * u.row_stride + column(u, u.first, u64::from(c))) as usize
    };
    wavefront(u.height, u.width, |r, c, (up, up_left), (last, _): (u32, u32)| {
        let a = if c > 0 { last } else { 0 };
        // Lane 0 reads the row above from memory (written by the previous pass).
        let (b, tl) = match (r % LANES as u32, r) {
            (0, 0) => (0, 0),
            (0, _) => {
                let b = u32::from(out[at(r - 1, c)]) ^ bias;
                (b, if c > 0 { u32::from(out[at(r - 1, c - 1)]) ^ bias } else { 0 })
            }
            _ => (up, if c > 0 { up_left } else { 0 }),
        };
        let q = at(r, c);
        let value = (u32::from(out[q]) + predict(u.predictor, a, b, tl)) & 0xff;
        out[q] = (value ^ bias) as u8;
        (value, last)
    });
}

/// Whether the kernel rebuilds a predicted tile a word a step: contiguous bytes a row, rows
/// 4-byte aligned (output buffers are, so an offset stands for the address).
fn by_words(u: &WcUnit, mix: bool) -> bool {
    !mix && u.group == 1
        && u.col_stride == 1
        && u.width.is_multiple_of(4)
        && ((u.dst + u.first) | u.row_stride).is_multiple_of(4)
}

/// The kernel's `reconstruct_words`: the wavefront a word of 4 columns a step; a lane's state
/// is its last word of values and the word above it.
fn reconstruct_words(out: &mut [u8], u: &WcUnit) {
    let bias4: u32 = if u.flags & FLAG_BIAS128 != 0 { 0x8080_8080 } else { 0 };
    // The tile's first column is `first` (one byte an element).
    let at = |r: u32, j: u32| {
        (u.dst + u.first + u64::from(r) * u.row_stride + 4 * u64::from(j)) as usize
    };
    let word = |out: &[u8], q: usize| u32::from_le_bytes(out[q..q + 4].try_into().expect("4"));
    wavefront(u.height, u.width / 4, |r, j, (up, _), (last, top_last): (u32, u32)| {
        let top = match (r % LANES as u32, r) {
            (0, 0) => 0,
            (0, _) => word(out, at(r - 1, j)) ^ bias4,
            _ => up,
        };
        let q = at(r, j);
        let residuals = word(out, q);
        let (mut a, mut tl) = if j > 0 { (last >> 24, top_last >> 24) } else { (0, 0) };
        let mut value = 0u32;
        for b in 0..4 {
            let t = (top >> (8 * b)) & 0xff;
            let v = (((residuals >> (8 * b)) & 0xff) + predict(u.predictor, a, t, tl)) & 0xff;
            value |= v << (8 * b);
            (a, tl) = (v, t);
        }
        out[q..q + 4].copy_from_slice(&(value ^ bias4).to_le_bytes());
        (value, top)
    });
}

fn copy_raw(src: &[u8], u: &WcUnit, out: &mut [u8]) {
    let from = &src[u.src as usize..(u.src + u64::from(u.len)) as usize];
    if u.flags & FLAG_CONTIGUOUS != 0 {
        let start = (u.dst + u.first) as usize;
        out[start..start + from.len()].copy_from_slice(from);
    } else {
        let width = u64::from(u.width);
        for (i, &byte) in from.iter().enumerate() {
            let k = u.first + i as u64;
            let (r, c) = (k / width, k % width);
            out[(u.dst + r * u.row_stride + column(u, 0, c)) as usize] = byte;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FLAG_BIAS128, WcUnit, by_words, reconstruct, reconstruct_words};

    /// The word-a-step wavefront rebuilds the same bytes as the byte-a-step one, for every
    /// predictor, with and without the bias, on passes of 32 rows and a partial one.
    #[test]
    fn the_word_wavefront_rebuilds_what_the_byte_wavefront_does() {
        let mut x = 0x1234_5678_u32;
        let (height, width, row_stride) = (70u32, 132u32, 140u64);
        let noise: Vec<u8> = (0..row_stride as usize * height as usize + 8)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        for predictor in 1..=4u8 {
            for flags in [0, FLAG_BIAS128] {
                let u = WcUnit {
                    dst: 1,
                    first: 3,
                    row_stride,
                    height,
                    width,
                    predictor,
                    flags,
                    group: 1,
                    col_stride: 1,
                    ..WcUnit::default()
                };
                assert!(by_words(&u, false) && !by_words(&WcUnit { first: 4, ..u }, false));
                let (mut bytes, mut words) = (noise.clone(), noise.clone());
                reconstruct(&mut bytes, &u);
                reconstruct_words(&mut words, &u);
                assert_eq!(bytes, words, "predictor {predictor}, flags {flags}");
                assert_ne!(bytes, noise, "predictor {predictor} changed nothing");
            }
        }
    }
}
