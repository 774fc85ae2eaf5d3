//! A small counter-based random source. Every random decision of the data
//! pipeline (order, clip position, jitter, crop, flip, replacements for bad
//! videos) is a pure function of the seed and *where* it is made (epoch,
//! position, attempt), so a resumed run and a run with another number of
//! workers draw exactly the same numbers without any state to checkpoint.

/// SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one u64 of state.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for the place named by `keys` under `seed`.
    pub fn at(seed: u64, keys: &[u64]) -> Self {
        let mut h = mix(seed ^ 0x5851_f42d_4c95_7f2d);
        for &k in keys {
            h = mix(h ^ mix(k.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        }
        Rng(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.uniform() * n as f64) as usize % n }
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Fisher-Yates permutation of 0..n.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
        v
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_independent_and_repeatable() {
        let a: Vec<u64> = (0..4).map(|_| Rng::at(7, &[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::at(7, &[1, 2]).next_u64(), Rng::at(7, &[2, 1]).next_u64());
        let mut p = Rng::new(3).permutation(100);
        p.sort();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }
}
