//! Many needles, one pass, no dependency on a multi-pattern crate.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;

use crate::ledger::MIN_SECRET_LEN;

/// Many needles, one pass: each position's first 8 bytes are looked up in a bitset, and only
/// on a hit in a map of the needles by those bytes (no dependency on a multi-pattern crate).
pub struct Needles<'a> {
    needles: Vec<&'a [u8]>,
    by_prefix: HashMap<u64, Vec<usize>>,
    bits: Vec<u64>,
    longest: usize,
}

impl std::fmt::Debug for Needles<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The needles are secrets.
        f.debug_struct("Needles")
            .field("count", &self.needles.len())
            .finish_non_exhaustive()
    }
}

const PREFIX: usize = MIN_SECRET_LEN;
const SLOT_BITS: u32 = 16;
const CHUNK: usize = 8 << 20;

fn prefix_key(window: &[u8]) -> u64 {
    let mut bytes = [0u8; PREFIX];
    bytes.copy_from_slice(&window[..PREFIX]);
    u64::from_le_bytes(bytes)
}

fn slot(key: u64) -> usize {
    // Fibonacci hashing: the top bits of a multiplication spread any prefix well.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize
}

impl<'a> Needles<'a> {
    /// # Panics
    /// A needle shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(needles: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let needles: Vec<&[u8]> = needles.into_iter().collect();
        let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut bits = vec![0u64; (1 << SLOT_BITS) / 64];
        for (i, n) in needles.iter().enumerate() {
            assert!(n.len() >= PREFIX, "needle {i} is shorter than {PREFIX} bytes");
            let key = prefix_key(n);
            let s = slot(key);
            bits[s / 64] |= 1 << (s % 64);
            by_prefix.entry(key).or_default().push(i);
        }
        let longest = needles.iter().map(|n| n.len()).max().unwrap_or(PREFIX);
        Needles {
            needles,
            by_prefix,
            bits,
            longest,
        }
    }

    /// Indices of the needles that occur in `haystack`, added to `found`.
    pub fn find_in(&self, haystack: &[u8], found: &mut BTreeSet<usize>) {
        if haystack.len() < PREFIX {
            return;
        }
        for i in 0..=haystack.len() - PREFIX {
            let key = prefix_key(&haystack[i..]);
            let s = slot(key);
            if self.bits[s / 64] & (1 << (s % 64)) == 0 {
                continue;
            }
            for &n in self.by_prefix.get(&key).into_iter().flatten() {
                if haystack[i..].starts_with(self.needles[n]) {
                    found.insert(n);
                }
            }
        }
    }

    /// Indices of the needles that occur in the file, read in chunks that overlap by the
    /// longest needle so none is missed at a boundary.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn find_in_file(&self, path: &Path) -> anyhow::Result<BTreeSet<usize>> {
        let mut found = BTreeSet::new();
        let mut file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + self.longest);
        loop {
            let keep = buf.len().min(self.longest - 1);
            buf.drain(..buf.len() - keep);
            let read = (&mut file)
                .take(CHUNK as u64)
                .read_to_end(&mut buf)
                .with_context(|| format!("read {}", path.display()))?;
            if read == 0 {
                return Ok(found);
            }
            self.find_in(&buf, &mut found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_are_found_across_chunk_boundaries() {
        let dir = tempfile::tempdir().expect("dir");
        let needle = b"boundary-secret-77";
        let mut hay = vec![b'.'; CHUNK - 5];
        hay.extend_from_slice(needle);
        hay.extend_from_slice(&[b'.'; 100]);
        std::fs::write(dir.path().join("big.log"), &hay).expect("write");
        let needles = Needles::new([&needle[..], b"not-there-at-all"]);
        let found = needles.find_in_file(&dir.path().join("big.log")).expect("scan");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [0]);
    }
}
