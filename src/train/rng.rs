//! The one random-number generator of the trainer: SplitMix64, defined by its constants alone,
//! so data, initial weights, dropout masks and batches stay the same across releases of any
//! crate. Its state advances by a fixed step, which makes "the n-th draw" directly addressable:
//! any thread (or GPU block) can draw any element, and resuming needs only a draw count.

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective avalanche of 64 bits.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draw number `index` of the random stream `key`: the `index + 1`-th output of a SplitMix64
/// generator seeded with `key`, computed directly from the counter. Also derives child keys
/// (`counter_hash(parent, child_id)`).
pub const fn counter_hash(key: u64, index: u64) -> u64 {
    mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// A SplitMix64 stream read in order.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    seed: u64,
    draws: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self::at(seed, 0)
    }

    /// The generator after `draws` draws from `seed`.
    pub fn at(seed: u64, draws: u64) -> Self {
        Self { seed, draws }
    }

    pub fn next_u64(&mut self) -> u64 {
        let value = counter_hash(self.seed, self.draws);
        self.draws = self.draws.wrapping_add(1);
        value
    }

    /// Uniform in `0..n` (multiply-shift: no division, bias below 2^-64 · n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_and_jumps_to_any_draw() {
        // The first outputs for seed 0 in the generator's published reference implementation.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut walked = SplitMix64::new(42);
        for _ in 0..1000 {
            walked.next_u64();
        }
        assert_eq!(walked.next_u64(), SplitMix64::at(42, 1000).next_u64());
        let mut rng = SplitMix64::new(7);
        assert!((0..10_000).all(|_| rng.below(3) < 3));
    }
}
