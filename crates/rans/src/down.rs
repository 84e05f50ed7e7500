//! The encoder's word buffer. rANS codes a unit's symbols last first, so its words come out in
//! reverse; stored downward from the buffer's end they lie in stream order, and the unit's
//! states go just below them when it is done. A unit coded into a buffer of its own then stays
//! where the coder wrote it ([`CodedUnit`]): no copy, and no zeroing of the buffer first.
//!
//! This module holds the crate's one unsafe line outside the kernels: viewing the written end of
//! the buffer as bytes.

use std::mem::MaybeUninit;

use crate::{LANES, STATES_BYTES};

/// Words of the states, kept free below the words until the unit is done.
const STATE_WORDS: usize = STATES_BYTES / 2;

/// A buffer of u16 words (little-endian bytes) written downward from its end. Invariant: the
/// bytes from `2 * cur` to the end have been written.
#[derive(Debug)]
pub(crate) struct Down {
    buf: Box<[MaybeUninit<u8>]>,
    /// The lowest word written (the buffer's length in words while none is).
    cur: usize,
}

impl Down {
    pub(crate) fn empty() -> Down {
        Down { buf: Box::new([]), cur: 0 }
    }

    /// An empty buffer with room for `words` words, plus the states.
    pub(crate) fn with_room(words: usize) -> Down {
        let len = words + STATE_WORDS;
        Down { buf: Box::new_uninit_slice(2 * len), cur: len }
    }

    /// Empties the buffer, keeping its memory, and makes room for `words` words.
    pub(crate) fn reset(&mut self, words: usize) {
        self.cur = self.buf.len() / 2;
        self.reserve(words);
    }

    /// Free words below the written ones, beyond those kept for the states.
    pub(crate) fn room(&self) -> usize {
        self.cur.saturating_sub(STATE_WORDS)
    }

    /// Grows the buffer (moving the words to the end of a larger one) until `room() >= words`.
    pub(crate) fn reserve(&mut self, words: usize) {
        if self.room() >= words {
            return;
        }
        let len = self.buf.len() / 2;
        let grown = (2 * len).max(len + words + STATE_WORDS);
        let mut buf = Box::new_uninit_slice(2 * grown);
        let cur = self.cur + (grown - len);
        buf[2 * cur..].copy_from_slice(&self.buf[2 * self.cur..]);
        *self = Down { buf, cur };
    }

    /// Stores `word` below the others if `keep`, without a branch: the word is written either
    /// way, into a place left free when `keep` is false (a branch on whether a state
    /// renormalises is mispredicted about as often as not). Needs `room() >= 1`.
    #[inline(always)]
    pub(crate) fn put_if(&mut self, word: u16, keep: bool) {
        let [low, high] = word.to_le_bytes();
        let at = self.cur - 1;
        self.buf[2 * at].write(low);
        self.buf[2 * at + 1].write(high);
        self.cur -= usize::from(keep);
    }

    /// The buffer and the lowest word written, for a kernel that stores words below it (and
    /// lowers it by as many), at most `room()` + the states' words.
    pub(crate) fn parts(&mut self) -> (&mut [MaybeUninit<u8>], &mut usize) {
        (&mut self.buf, &mut self.cur)
    }

    /// Stores the 32 states (little-endian u32) below the words: the unit is then complete.
    pub(crate) fn finish(&mut self, states: &[u32; LANES]) {
        assert!(self.cur >= STATE_WORDS, "a kernel wrote into the states' room");
        self.cur -= STATE_WORDS;
        let at = 2 * self.cur;
        for (bytes, s) in self.buf[at..at + STATES_BYTES].chunks_exact_mut(4).zip(states) {
            for (b, v) in bytes.iter_mut().zip(s.to_le_bytes()) {
                b.write(v);
            }
        }
    }

    /// The bytes written: once finished, the unit.
    pub(crate) fn bytes(&self) -> &[u8] {
        let written = &self.buf[2 * self.cur..];
        // SAFETY: every byte from `2 * cur` on has been written (the type's invariant: `put`
        // and `finish` write what they lower `cur` past; the kernels given `parts` store every
        // word they lower it past; `reserve` copies the written bytes to the same place from
        // the end), and `MaybeUninit<u8>` has the layout of `u8`.
        #[allow(unsafe_code)]
        unsafe {
            &*(std::ptr::from_ref(written) as *const [u8])
        }
    }
}

/// A unit coded by [`crate::encode_unit_owned`] into a buffer of its own, its bytes (32 states,
/// then the words) at the end of that buffer, where the coder left them.
#[derive(Debug)]
pub struct CodedUnit(pub(crate) Down);

impl CodedUnit {
    /// The unit's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// The bytes the buffer holds, the unit's and the unused ones below them.
    pub fn capacity(&self) -> usize {
        self.0.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Down, STATE_WORDS};

    #[test]
    fn words_grow_downward_and_keep_their_place_when_the_buffer_grows() {
        let mut down = Down::with_room(3);
        for w in [0x0102u16, 0x0304, 0x0506] {
            // A word not kept takes no room and leaves no trace.
            down.put_if(0xdead, false);
            down.put_if(w, true);
        }
        assert_eq!(down.room(), 0);
        down.reserve(100);
        assert!(down.room() >= 100);
        down.put_if(0x0708, true);
        down.put_if(0xbeef, false);
        let mut states = [0u32; 32];
        states[0] = 0x1122_3344;
        states[31] = 0xaabb_ccdd;
        down.finish(&states);
        let bytes = down.bytes();
        assert_eq!(bytes.len(), 128 + 8);
        assert_eq!(bytes[..4], [0x44, 0x33, 0x22, 0x11]);
        assert_eq!(bytes[124..128], [0xdd, 0xcc, 0xbb, 0xaa]);
        assert_eq!(bytes[128..], [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
    }

    #[test]
    fn a_reset_buffer_is_empty_and_has_the_room_asked_for() {
        let mut down = Down::empty();
        assert_eq!(down.room(), 0);
        down.reset(10);
        assert!(down.room() >= 10);
        down.put_if(1, true);
        down.reset(5);
        assert!(down.bytes().is_empty() && down.room() >= 10);
        down.finish(&[0; 32]);
        assert_eq!(down.bytes().len(), 2 * STATE_WORDS);
    }
}
