//! Counter-based random streams.
//!
//! Every random draw in specdyn comes from a stream that is a pure function of
//! `(seed, purpose, index)`: the initial weights of layer ℓ, the teacher, the training set, the
//! test set, the online batch of step t, the minibatch order of epoch e. Nothing carries hidden
//! generator state across steps, so a run resumed from a checkpoint at step s draws exactly
//! what the uninterrupted run drew, on any backend, and the checkpoint's "RNG state" is just
//! the seeds and the step.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What a stream is used for; part of its seed, so streams never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Initial weights; index = parameter index.
    Init = 1,
    /// Teacher directions.
    Teacher = 2,
    /// Fixed training set.
    TrainSet = 3,
    /// Held-out test set.
    TestSet = 4,
    /// Fresh batch of online training; index = step.
    Online = 5,
    /// Minibatch permutation; index = epoch.
    Order = 6,
    /// Probes and anything else an analysis needs.
    Analysis = 7,
    /// Image augmentation (flips, crops); index = step.
    Augment = 8,
    /// Sweep cells and other bookkeeping; never used for weights or data.
    Misc = 9,
}

/// SplitMix64 finalizer: a bijective mixer with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for `(seed, purpose, index)`.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let a = mix(seed);
    let b = mix(a ^ mix(purpose as u64));
    let c = mix(b ^ mix(index.wrapping_add(0x5851_F42D_4C95_7F2D)));
    let d = mix(c ^ 0xD1B5_4A32_D192_ED03);
    let mut bytes = [0u8; 32];
    for (chunk, word) in bytes.chunks_mut(8).zip([a, b, c, d]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(bytes)
}

/// `n` independent standard normal draws.
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// A uniformly random permutation of 0..n (Fisher–Yates).
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    use rand::Rng;
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = normals(&mut stream(3, Purpose::Init, 0), 4);
        assert_eq!(a, normals(&mut stream(3, Purpose::Init, 0), 4));
        assert_ne!(a, normals(&mut stream(3, Purpose::Init, 1), 4));
        assert_ne!(a, normals(&mut stream(3, Purpose::Teacher, 0), 4));
        assert_ne!(a, normals(&mut stream(4, Purpose::Init, 0), 4));
    }

    #[test]
    fn normals_have_unit_variance() {
        let x = normals(&mut stream(0, Purpose::Analysis, 0), 200_000);
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "mean {mean} var {var}");
    }
}
