//! Byte planes: how a transform splits a tensor's bytes and merges them back.

use wcodec_format::{Dtype, Transform};

/// Splits a tensor's bytes into the planes of `transform`.
pub fn split_planes(bytes: &[u8], dtype: Dtype, transform: Transform) -> Vec<Vec<u8>> {
    let size = dtype.size();
    match transform {
        Transform::Identity => vec![bytes.to_vec()],
        Transform::BytePlanes => {
            let n = bytes.len() / size;
            let mut planes = vec![Vec::with_capacity(n); size];
            for element in bytes.chunks_exact(size) {
                for (plane, &b) in planes.iter_mut().zip(element) {
                    plane.push(b);
                }
            }
            planes
        }
    }
}

/// Merges planes back into the tensor's bytes. `out.len()` must be the tensor's byte length.
pub fn merge_planes(planes: &[&[u8]], dtype: Dtype, transform: Transform, out: &mut [u8]) {
    let size = dtype.size();
    match transform {
        Transform::Identity => out.copy_from_slice(planes[0]),
        Transform::BytePlanes => {
            for (j, plane) in planes.iter().enumerate() {
                for (element, &b) in out.chunks_exact_mut(size).zip(plane.iter()) {
                    element[j] = b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_planes_round_trip() {
        let bytes: Vec<u8> = (0..64u8).collect();
        let planes = split_planes(&bytes, Dtype::F32, Transform::BytePlanes);
        assert_eq!(planes.len(), 4);
        assert_eq!(planes[1], (0..16).map(|i| i * 4 + 1).collect::<Vec<u8>>());
        let refs: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u8; 64];
        merge_planes(&refs, Dtype::F32, Transform::BytePlanes, &mut out);
        assert_eq!(out, bytes);
    }
}
