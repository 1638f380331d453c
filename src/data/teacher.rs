//! Gaussian-input teachers: y_c = Σ_k c_k He_k(β_c·x/√D) + noise, x ~ N(0, I_D).
//!
//! One direction gives the single-index model (paper Fig. 1 uses a polynomial single-index
//! target); coefficients [0, 1] give the linear teacher; C directions give the multi-output
//! teacher (C fixed, or C ∝ N for the extensive-output regime of paper §5).

use super::HostData;
use crate::rng::{Purpose, normals, stream};
use rand_chacha::ChaCha8Rng;

/// Probabilists' Hermite polynomial He_k(z): He₀ = 1, He₁ = z, He_{k+1} = z He_k − k He_{k−1}.
/// They are orthogonal under N(0, 1) with E[He_j He_k] = k! δ_jk.
pub fn hermite(k: usize, z: f64) -> f64 {
    let (mut prev, mut cur) = (1.0, z);
    if k == 0 {
        return prev;
    }
    for j in 1..k {
        let next = z * cur - j as f64 * prev;
        prev = cur;
        cur = next;
    }
    cur
}

/// Σ_k c_k He_k(z).
pub fn hermite_series(coefficients: &[f64], z: f64) -> f64 {
    coefficients.iter().enumerate().map(|(k, c)| c * hermite(k, z)).sum()
}

/// A teacher with C directions in D dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Teacher {
    /// Row-major [C, D]; each row normalized to |β_c|² = D, so z_c = β_c·x/√D ~ N(0, 1).
    pub directions: Vec<f64>,
    pub input_dim: usize,
    pub output_dim: usize,
    pub hermite: Vec<f64>,
    pub noise: f64,
}

impl Teacher {
    /// Directions drawn from stream `(seed, Teacher, 0)`.
    pub fn new(seed: u64, input_dim: usize, output_dim: usize, hermite: Vec<f64>, noise: f64) -> Self {
        let mut directions = normals(&mut stream(seed, Purpose::Teacher, 0), output_dim * input_dim);
        for row in directions.chunks_mut(input_dim) {
            let norm = (row.iter().map(|v| v * v).sum::<f64>() / input_dim as f64).sqrt();
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Teacher { directions, input_dim, output_dim, hermite, noise }
    }

    /// `n` fresh samples: all inputs first, then the label noise, from one stream.
    pub fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> HostData {
        let (d, c) = (self.input_dim, self.output_dim);
        let x = normals(rng, n * d);
        let noise = if self.noise > 0.0 { normals(rng, n * c) } else { vec![0.0; n * c] };
        let scale = 1.0 / (d as f64).sqrt();
        let mut y = Vec::with_capacity(n * c);
        for (i, xi) in x.chunks(d).enumerate() {
            for (k, beta) in self.directions.chunks(d).enumerate() {
                let z = beta.iter().zip(xi).map(|(b, v)| b * v).sum::<f64>() * scale;
                y.push((hermite_series(&self.hermite, z) + self.noise * noise[i * c + k]) as f32);
            }
        }
        HostData { x: x.into_iter().map(|v| v as f32).collect(), y, n, d, c }
    }

    /// Sample `n` points from stream `(seed, purpose, index)`.
    pub fn sample_stream(&self, seed: u64, purpose: Purpose, index: u64, n: usize) -> HostData {
        self.sample(&mut stream(seed, purpose, index), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coefficients (in powers of z) of He_k, built independently of `hermite` from the
    /// derivative form He_{k+1} = z He_k − He_k'.
    fn monomial_coefficients(k: usize) -> Vec<f64> {
        let mut p = vec![1.0];
        for _ in 0..k {
            let mut next = vec![0.0; p.len() + 1];
            for (i, c) in p.iter().enumerate() {
                next[i + 1] += c;
                if i > 0 {
                    next[i - 1] -= i as f64 * c;
                }
            }
            p = next;
        }
        p
    }

    #[test]
    fn hermite_polynomials_are_orthogonal_with_factorial_norms() {
        // E[z^{2m}] = (2m − 1)!! under N(0, 1); odd moments vanish.
        let moment = |n: usize| if n % 2 == 1 { 0.0 } else { (1..n).step_by(2).map(|v| v as f64).product::<f64>() };
        for j in 0..7 {
            let pj = monomial_coefficients(j);
            for z in [-2.3, -0.7, 0.0, 0.4, 1.9] {
                let direct: f64 = pj.iter().enumerate().map(|(i, c)| c * f64::powi(z, i as i32)).sum();
                assert!((direct - hermite(j, z)).abs() < 1e-9 * direct.abs().max(1.0));
            }
            for k in 0..7 {
                let pk = monomial_coefficients(k);
                let mut e = 0.0;
                for (a, ca) in pj.iter().enumerate() {
                    for (b, cb) in pk.iter().enumerate() {
                        e += ca * cb * moment(a + b);
                    }
                }
                let want = if j == k { (1..=k).product::<usize>() as f64 } else { 0.0 };
                assert!((e - want).abs() < 1e-9, "E[He{j} He{k}] = {e}, want {want}");
            }
        }
        assert_eq!(hermite(3, 2.0), 8.0 - 6.0); // He₃ = z³ − 3z
    }

    #[test]
    fn single_index_labels_follow_the_link() {
        let t = Teacher::new(0, 16, 1, vec![0.0, 1.0, 0.5], 0.0);
        let data = t.sample_stream(0, Purpose::TrainSet, 0, 50);
        for i in 0..50 {
            let z: f64 = (0..16).map(|j| t.directions[j] * data.x[i * 16 + j] as f64).sum::<f64>() / 4.0;
            let want = z + 0.5 * (z * z - 1.0);
            assert!((data.y[i] as f64 - want).abs() < 1e-5);
        }
    }
}
