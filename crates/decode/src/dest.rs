//! Where decoded bytes go: a caller's initialised buffer, or a fresh allocation that is not
//! zeroed up front.
//!
//! A fresh `vec![0; n]` is zeroed in one pass before the decode writes it again: on one thread
//! that pass cost a tenth of a decode (MiniLM int8, 22.7 MB), and it ran on one thread whatever
//! the count. A [`Dest`] over fresh memory instead zeroes each part just before that part is
//! decoded (a band, in L2), on the thread that decodes it, or not at all where the part is
//! written whole by a function that writes every byte ([`Dest::written_by`]: the merge of a
//! split tensor's planes; decoding a fresh BF16 tensor 1.2x faster). This is the crate's only
//! unsafe code: it hands out `&mut [u8]` only over bytes it has initialised, and [`fresh_vec`]
//! sets the vector's length only once every byte has been (it counts them).

#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Output bytes of a decode, split as the work is, each part ending as an initialised `&mut
/// [u8]` ([`Dest::into_bytes`]). A part of a fresh buffer that is dropped unused is zeroed, so
/// every byte of it is initialised once every part is gone.
pub(crate) struct Dest<'a> {
    bytes: &'a mut [MaybeUninit<u8>],
    /// `Some` over fresh memory: counts the bytes initialised so far.
    fresh: Option<&'a AtomicUsize>,
}

impl<'a> Dest<'a> {
    /// Over bytes already initialised (nothing is zeroed).
    pub(crate) fn of_bytes(bytes: &'a mut [u8]) -> Dest<'a> {
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and a `Dest` writes only
        // initialised values (zeros, or through `into_bytes`), so the bytes stay initialised.
        let bytes = unsafe { &mut *(std::ptr::from_mut(bytes) as *mut [MaybeUninit<u8>]) };
        Dest { bytes, fresh: None }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The first `mid` bytes and the rest.
    pub(crate) fn split_at(mut self, mid: usize) -> (Dest<'a>, Dest<'a>) {
        let (head, tail) = std::mem::take(&mut self.bytes).split_at_mut(mid);
        (Dest { bytes: head, fresh: self.fresh }, Dest { bytes: tail, fresh: self.fresh })
    }

    /// Consecutive parts of `len` bytes (the last may be shorter).
    pub(crate) fn chunks(mut self, len: usize) -> Vec<Dest<'a>> {
        let fresh = self.fresh;
        std::mem::take(&mut self.bytes)
            .chunks_mut(len.max(1))
            .map(|bytes| Dest { bytes, fresh })
            .collect()
    }

    /// The bytes, written by `fill`, which must write every one of them (`merge_planes`
    /// does, and checks its lengths): fresh bytes are not zeroed first.
    pub(crate) fn written_by(mut self, fill: impl FnOnce(&mut [MaybeUninit<u8>])) -> &'a mut [u8] {
        let bytes = std::mem::take(&mut self.bytes);
        fill(bytes);
        if let Some(count) = self.fresh {
            count.fetch_add(bytes.len(), Ordering::Relaxed);
        }
        // SAFETY: every byte is initialised: written by `fill` (its contract), or given
        // initialised (`of_bytes`, where `fill` could only write initialised values over it).
        unsafe { &mut *(std::ptr::from_mut(bytes) as *mut [u8]) }
    }

    /// The bytes, zeroed first where they were fresh.
    pub(crate) fn into_bytes(mut self) -> &'a mut [u8] {
        let bytes = std::mem::take(&mut self.bytes);
        if let Some(count) = self.fresh {
            bytes.fill(MaybeUninit::new(0));
            count.fetch_add(bytes.len(), Ordering::Relaxed);
        }
        // SAFETY: every byte is initialised: zeroed just now, or given initialised
        // (`of_bytes`, or a part of such a buffer).
        unsafe { &mut *(std::ptr::from_mut(bytes) as *mut [u8]) }
    }
}

impl Drop for Dest<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.fresh {
            self.bytes.fill(MaybeUninit::new(0));
            count.fetch_add(self.bytes.len(), Ordering::Relaxed);
        }
    }
}

/// A vector of `len` bytes filled by `fill`, which gets them as a fresh [`Dest`]: no pass
/// zeroes them before `fill` runs. On an error the memory is dropped unread.
pub(crate) fn fresh_vec<E>(
    len: usize,
    fill: impl FnOnce(Dest<'_>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut out = Vec::with_capacity(len);
    let count = AtomicUsize::new(0);
    fill(Dest { bytes: &mut out.spare_capacity_mut()[..len], fresh: Some(&count) })?;
    // Every part of the `Dest` was turned into bytes or dropped (both count their bytes);
    // only a part leaked with `mem::forget` could be missing, which no caller does.
    assert_eq!(count.load(Ordering::Relaxed), len, "every byte of a fresh output initialised");
    // SAFETY: the `len` bytes are initialised (counted above; parts are disjoint).
    unsafe { out.set_len(len) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Dest, fresh_vec};

    #[test]
    fn parts_written_and_parts_dropped_make_the_whole_vector() {
        let v = fresh_vec(10, |dest| -> Result<(), ()> {
            let (a, b) = dest.split_at(4);
            a.into_bytes().copy_from_slice(&[1, 2, 3, 4]);
            let mut parts = b.chunks(4);
            assert_eq!(parts.iter().map(Dest::len).collect::<Vec<_>>(), [4, 2]);
            parts.pop().expect("a last part").into_bytes().copy_from_slice(&[9, 9]);
            // The middle part is dropped unused: zeros.
            Ok(())
        })
        .unwrap();
        assert_eq!(v, [1, 2, 3, 4, 0, 0, 0, 0, 9, 9]);
        // A part written whole by a function (not zeroed first), beside one zeroed.
        let v = fresh_vec(7, |dest| -> Result<(), ()> {
            let (a, b) = dest.split_at(3);
            let a = a.written_by(|bytes| {
                for (k, x) in bytes.iter_mut().enumerate() {
                    x.write(k as u8 + 5);
                }
            });
            assert_eq!(a, [5, 6, 7]);
            b.into_bytes()[3] = 8;
            Ok(())
        })
        .unwrap();
        assert_eq!(v, [5, 6, 7, 0, 0, 0, 8]);
        assert!(fresh_vec(3, |_| Err::<(), _>("failed")).is_err());
        assert_eq!(fresh_vec(0, |_| Ok::<(), ()>(())).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn an_initialised_buffer_keeps_its_bytes_until_written() {
        let mut buf = [7u8; 6];
        let (a, b) = Dest::of_bytes(&mut buf).split_at(2);
        assert!(!a.is_empty());
        a.into_bytes()[0] = 1;
        drop(b);
        assert_eq!(buf, [1, 7, 7, 7, 7, 7]);
        let (a, b) = Dest::of_bytes(&mut buf).split_at(4);
        b.written_by(|bytes| bytes.fill(std::mem::MaybeUninit::new(2)));
        assert_eq!(a.into_bytes(), [1, 7, 7, 7]);
        assert_eq!(buf, [1, 7, 7, 7, 2, 2]);
    }
}
