//! `SeriesHasher`: the hash of the keys metrics are looked up by, twice per request: a
//! service's name, then its (method, status).
//!
//! std's default SipHash resists keys chosen to collide, at about two hundred instructions
//! a lookup; these keys are names the operator deploys and a method label with a status
//! code, a few thousand values at most, nothing a client could use to flood one bucket.
//! One multiply per part is enough.

use std::hash::{BuildHasherDefault, Hasher};

/// Builds the `SeriesHasher` of a series map.
pub(super) type BuildSeriesHasher = BuildHasherDefault<SeriesHasher>;

/// Mixes each part in with a rotate, xor and multiply (rustc's FxHasher step).
#[derive(Default)]
pub(super) struct SeriesHasher(u64);

impl SeriesHasher {
    fn add(&mut self, part: u64) {
        const SEED: u64 = 0x517c_c1b7_2722_0a95;
        self.0 = (self.0.rotate_left(5) ^ part).wrapping_mul(SEED);
    }
}

impl Hasher for SeriesHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    /// A status code.
    fn write_u16(&mut self, part: u16) {
        self.add(u64::from(part));
    }

    /// The discriminant of a method label, as `derive(Hash)` writes it.
    fn write_isize(&mut self, part: isize) {
        // Reinterpreting the bits is all a hash needs; the value is never read back.
        self.add(part as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;
    use crate::metrics::registry::MethodLabel;

    #[test]
    fn spreads_keys_when_they_differ_in_method_or_status() {
        let build = BuildSeriesHasher::default();
        let hashes: HashSet<u64> = [MethodLabel::Get, MethodLabel::Post, MethodLabel::Other]
            .into_iter()
            .flat_map(|method| [200u16, 404, 502].map(|status| (method, status)))
            .map(|key| build.hash_one(key))
            .collect();
        assert_eq!(hashes.len(), 9);
    }
}
