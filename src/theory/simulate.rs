//! Direct finite-N simulations of the random systems the theory describes: the ground truth
//! every prediction is compared with (`--simulate N --seeds k` on the command line).

use super::endogenous::EndogenousWigner;
use crate::rng::{Purpose, normals, stream};
use faer::Mat;

/// A GOE matrix with off-diagonal variance 1/N (diagonal 2/N): semicircle on [−2, 2].
pub fn goe(n: usize, seed: u64) -> Mat<f64> {
    let a = normals(&mut stream(seed, Purpose::Analysis, 1), n * n);
    let scale = 1.0 / (2.0 * n as f64).sqrt();
    Mat::from_fn(n, n, |i, j| (a[i * n + j] + a[j * n + i]) * scale)
}

/// An n × m matrix with iid N(0, 1/m) entries (MP ratio c = n/m).
pub fn gaussian(n: usize, m: usize, seed: u64) -> Mat<f64> {
    let a = normals(&mut stream(seed, Purpose::Analysis, 2), n * m);
    let scale = 1.0 / (m as f64).sqrt();
    Mat::from_fn(n, m, |i, j| a[i * m + j] * scale)
}

/// A uniformly random unit vector (as an N × 1 column).
pub fn unit_vector(n: usize, seed: u64, index: u64) -> Vec<f64> {
    let v = normals(&mut stream(seed, Purpose::Analysis, 100 + index), n);
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// Eigenvalues of a symmetric matrix, descending.
pub fn eigenvalues_desc(m: &Mat<f64>) -> Vec<f64> {
    let mut e = m.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
    e.reverse();
    e
}

/// Run the endogenous dynamics at size n and return the eigenvalues of M_S (descending) for
/// every S in `s_values` (ascending), from one trajectory. v₀ ~ N(0, σ₀² I); M_n v_n is formed
/// as M₀v_n + (γ/N) V(Vᵀv_n).
pub fn endogenous_wigner(model: &EndogenousWigner, n: usize, s_values: &[usize], seed: u64) -> Vec<Vec<f64>> {
    let m0 = goe(n, seed);
    let s_max = s_values.iter().copied().max().unwrap_or(0);
    let v0 = normals(&mut stream(seed, Purpose::Analysis, 3), n);
    let mut v = Mat::<f64>::from_fn(n, 1, |i, _| v0[i] * model.init_variance.sqrt());
    let mut spikes = Mat::<f64>::zeros(n, s_max); // columns v_0 … v_{S−1}
    let mut out = Vec::with_capacity(s_values.len());
    let g = model.gamma / n as f64;
    for step in 0..=s_max {
        if s_values.contains(&step) {
            let vs = spikes.as_ref().subcols(0, step);
            let ms = &m0 + (vs * vs.transpose()) * faer::Scale(g);
            out.push(eigenvalues_desc(&ms));
        }
        if step == s_max {
            break;
        }
        let vs = spikes.as_ref().subcols(0, step);
        let mv = &m0 * &v + vs * (vs.transpose() * &v) * faer::Scale(g);
        spikes.col_mut(step).copy_from(v.col(0));
        v = &v - mv * faer::Scale(model.eta);
    }
    out
}
