//! The mutator: a small seeded PRNG and the classic byte-level mutations (AFL/libFuzzer's
//! set, without coverage feedback): bit flips, random and "interesting" bytes and integers
//! (0, -1, 0x7f.., 0x80.., powers of two, little- and big-endian), small arithmetic, byte
//! insertion and deletion, chunk duplication and copying, truncation, and splicing with
//! another corpus input. Each input gets 1 to 8 stacked mutations.

/// xorshift64*: deterministic for a `--seed`, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Writes `v` as `width` bytes at `at` (little- or big-endian), clipped to the input.
fn put_int(data: &mut [u8], at: usize, v: u64, width: usize, big: bool) {
    let bytes = if big { v.to_be_bytes()[8 - width..].to_vec() } else { v.to_le_bytes()[..width].to_vec() };
    for (i, b) in bytes.into_iter().enumerate() {
        if let Some(slot) = data.get_mut(at + i) {
            *slot = b;
        }
    }
}

/// One mutation of `data` in place; `other` is another corpus input for splicing.
pub fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    if data.is_empty() {
        data.push(rng.next_u64() as u8);
        return;
    }
    let len = data.len();
    let at = rng.below(len);
    match rng.below(12) {
        0 => data[at] ^= 1 << rng.below(8),
        1 => data[at] = rng.next_u64() as u8,
        2 => {
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1, 2, 4, 8][rng.below(4)];
            // Also the negative of it: -1, -128, ...
            let v = if rng.below(4) == 0 { v.wrapping_neg() } else { v };
            put_int(data, at, v, width, rng.below(2) == 0);
        }
        3 => {
            let delta = rng.below(35) as u8;
            data[at] = if rng.below(2) == 0 { data[at].wrapping_add(delta) } else { data[at].wrapping_sub(delta) };
        }
        4 => {
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(at..at, bytes);
        }
        5 => {
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        6 => {
            // Duplicate a chunk in place (repeated records, segments, frames).
            let n = 1 + rng.below((len - at).min(256));
            let chunk = data[at..at + n].to_vec();
            data.splice(at..at, chunk);
        }
        7 => {
            // Copy a chunk over another place.
            let n = 1 + rng.below((len - at).min(64));
            let chunk = data[at..at + n].to_vec();
            let to = rng.below(len);
            for (i, b) in chunk.into_iter().enumerate() {
                if let Some(slot) = data.get_mut(to + i) {
                    *slot = b;
                }
            }
        }
        8 => data.truncate(at),
        9 if !other.is_empty() => {
            // Splice: our head, the other input's tail.
            let from = rng.below(other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        10 => {
            // An ASCII digit run: numbers in JSON and text headers.
            let digits = ["0", "-1", "1e308", "4294967296", "18446744073709551616", "NaN", "1e-320", "999999999"];
            let d = digits[rng.below(digits.len())].as_bytes().to_vec();
            data.splice(at..at, d);
        }
        _ => {
            let n = 1 + rng.below((len - at).min(8));
            let b = rng.next_u64() as u8;
            data[at..at + n].fill(b);
        }
    }
    data.truncate(max_len);
}

/// A fresh mutant of `seed`: 1 to 8 stacked mutations.
pub fn mutant(rng: &mut Rng, seed: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        mutate_once(rng, &mut data, other, max_len);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutants_and_lengths_bounded() {
        let seed = b"{\"device\": {\"cores\": 4}}".to_vec();
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..500).map(|_| mutant(&mut rng, &seed, b"other input", 64)).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!(a.iter().all(|m| m.len() <= 64));
        // Not stuck on the seed: most mutants differ from it.
        assert!(a.iter().filter(|m| **m != seed).count() > 450);
    }
}
