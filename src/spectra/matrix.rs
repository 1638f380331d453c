//! Linear algebra on one weight matrix (host, f64 accumulation, faer).

use crate::rng::{Purpose, normals, stream};
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};

/// A dense matrix in f64, copied from row-major f32 data.
pub fn to_faer(data: &[f32], rows: usize, cols: usize) -> Mat<f64> {
    Mat::from_fn(rows, cols, |i, j| data[i * cols + j] as f64)
}

/// Every singular value, largest first: square roots of the eigenvalues of the f64 Gram
/// matrix of the smaller side (AᵀA or AAᵀ). Faster than an SVD (BENCHMARKS.md) and, in f64,
/// accurate to ~1e-10 absolute for weight matrices.
pub fn singular_values_of(a: MatRef<'_, f64>) -> Vec<f64> {
    let (r, c) = (a.nrows(), a.ncols());
    let k = r.min(c);
    if k == 0 {
        return Vec::new();
    }
    let mut g = Mat::<f64>::zeros(k, k);
    let par = if r * c * k > 1 << 20 { Par::rayon(0) } else { Par::Seq };
    // Only the lower triangle is read by the eigensolver: half the flops of a full product.
    let (x, y) = if c <= r { (a.transpose(), a) } else { (a, a.transpose()) };
    let rect = BlockStructure::Rectangular;
    triangular::matmul(g.as_mut(), BlockStructure::TriangularLower, Accum::Replace, x, rect, y, rect, 1.0, par);
    let mut e = g.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_else(|_| vec![f64::NAN; k]);
    e.reverse();
    e.into_iter().map(|x| x.max(0.0).sqrt()).collect()
}

/// Every singular value of row-major f32 data, largest first.
pub fn singular_values(data: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    singular_values_of(to_faer(data, rows, cols).as_ref())
}

/// Largest singular value ‖W‖₂ (exact, from the full spectrum).
pub fn spectral_norm(data: &[f32], rows: usize, cols: usize) -> f64 {
    singular_values(data, rows, cols).first().copied().unwrap_or(0.0)
}

/// The top-k singular values with their left (columns of `u`) and right (columns of `v`)
/// singular vectors.
#[derive(Clone, Debug)]
pub struct Triplets {
    pub values: Vec<f64>,
    pub u: Mat<f64>,
    pub v: Mat<f64>,
}

/// Top-k singular triplets by block Lanczos on the Gram matrix of the smaller side (G = AᵀA
/// when A is tall), run until the top k have converged: a Gaussian start block of
/// b = clamp(k, 4, 16) vectors from stream `seed`, each new block G·X orthogonalized against
/// every earlier one (full reorthogonalization, twice), and every [`CHECK_EVERY`] blocks the
/// Rayleigh–Ritz values θ of G on the whole basis with their residuals ‖Gy − θy‖; it stops when
/// each of the top k is below [`RITZ_TOL`]·θ₁ (then |θ − λ| ≤ ‖r‖ and, away from other
/// eigenvalues, ≤ ‖r‖²/gap). Deterministic for a given seed.
///
/// Why converged and not a fixed number of iterations: at the bulk edge the spectrum is
/// clustered (gaps ~ N^(−2/3)), and a fixed-depth block Krylov (7 blocks of k + 10, the
/// version before this one) left the top value of a 4096² Gaussian matrix 0.6% low — enough
/// to hide an outlier 0.01 above the edge (`results/dmft-fig1-T300/`, step-0 vs step-1 values).
/// Here the top 8 of a 4096² Gaussian matrix come out within 1e-8 of the exact values after
/// 40 blocks of 8 (`python3 scripts/check_topk_edge.py`, its numpy twin; the unit test
/// `lanczos_triplets_reach_the_bulk_edge` checks 1024²). The tolerance can be loose because a
/// Ritz value's error is quadratic in its residual (‖r‖²/gap).
///
/// The products with A run in f32 (half the memory traffic, twice the SIMD width; the Ritz
/// values are those of G plus an f32 rounding perturbation, ~1e-7 relative); the basis, the
/// projection and the Ritz problem are f64.
pub fn top_triplets(a: MatRef<'_, f64>, k: usize, seed: u64) -> Triplets {
    let (r, c) = (a.nrows(), a.ncols());
    if r < c {
        let t = top_triplets(a.transpose(), k, seed);
        return Triplets { values: t.values, u: t.v, v: t.u };
    }
    let k = k.min(c);
    if k == 0 {
        return Triplets { values: vec![], u: Mat::zeros(r, 0), v: Mat::zeros(c, 0) };
    }
    let b = k.clamp(4, 16);
    let max_basis = (c / 2).min(MAX_BASIS);
    if c <= 64 || max_basis < 4 * b {
        // Small enough: exact thin SVD.
        return exact_triplets(a, k);
    }
    let a32 = Mat::<f32>::from_fn(r, c, |i, j| a[(i, j)] as f32);
    let g = normals(&mut stream(seed, Purpose::Analysis, 7), c * b);
    let mut x = orthonormal(&Mat::<f64>::from_fn(c, b, |i, j| g[i * b + j]));
    let (mut q, mut w) = (Mat::<f64>::zeros(c, max_basis), Mat::<f64>::zeros(c, max_basis));
    let (mut m, mut block) = (0, 0);
    loop {
        block += 1;
        let x32 = Mat::<f32>::from_fn(c, b, |i, j| x[(i, j)] as f32);
        let ax = &a32 * &x32;
        let gx = a32.transpose() * &ax;
        q.as_mut().subcols_mut(m, b).copy_from(&x);
        w.as_mut().subcols_mut(m, b).copy_from(Mat::<f64>::from_fn(c, b, |i, j| gx[(i, j)] as f64));
        m += b;
        let last = m + b > max_basis;
        if block % CHECK_EVERY == 0 || last {
            if let Some((theta, y)) = ritz(q.as_ref().subcols(0, m), w.as_ref().subcols(0, m), k)
                && (last || converged(q.as_ref().subcols(0, m), w.as_ref().subcols(0, m), &theta, &y))
            {
                let values: Vec<f64> = theta.iter().map(|t| t.max(0.0).sqrt()).collect();
                let v = q.as_ref().subcols(0, m) * &y;
                let av = a * &v;
                let u = Mat::from_fn(r, k, |i, j| if values[j] > 0.0 { av[(i, j)] / values[j] } else { 0.0 });
                return Triplets { values, u, v };
            }
            if last {
                return exact_triplets(a, k);
            }
        }
        let (basis, new) = (q.as_ref().subcols(0, m), w.as_ref().subcols(m - b, b));
        let mut next = new.to_owned();
        for _ in 0..2 {
            let coef = basis.transpose() * &next;
            next -= basis * &coef;
        }
        x = orthonormal(&next);
    }
}

/// Blocks between Rayleigh–Ritz checks in [`top_triplets`].
const CHECK_EVERY: usize = 4;
/// Residual tolerance of [`top_triplets`], relative to the top Ritz value of the Gram matrix.
const RITZ_TOL: f64 = 1e-4;
/// Largest Lanczos basis (columns) before [`top_triplets`] falls back to the full SVD.
const MAX_BASIS: usize = 1600;

/// The top k Ritz values (descending) of G on the basis Q (with W = GQ) and their coefficient
/// vectors Y (basis size × k).
fn ritz(q: MatRef<'_, f64>, w: MatRef<'_, f64>, k: usize) -> Option<(Vec<f64>, Mat<f64>)> {
    let h = q.transpose() * w;
    let m = h.nrows();
    let sym = Mat::from_fn(m, m, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
    let eig = sym.self_adjoint_eigen(faer::Side::Lower).ok()?;
    let theta = (0..k).map(|i| eig.S()[m - 1 - i]).collect();
    Some((theta, Mat::from_fn(m, k, |i, j| eig.U()[(i, m - 1 - j)])))
}

/// Whether every Ritz pair has ‖Wy − θQy‖ ≤ [`RITZ_TOL`]·θ₁.
fn converged(q: MatRef<'_, f64>, w: MatRef<'_, f64>, theta: &[f64], y: &Mat<f64>) -> bool {
    let (gy, qy) = (w * y, q * y);
    (0..theta.len()).all(|j| {
        let res = (0..gy.nrows()).map(|i| (gy[(i, j)] - theta[j] * qy[(i, j)]).powi(2)).sum::<f64>().sqrt();
        res <= RITZ_TOL * theta[0].abs()
    })
}

fn exact_triplets(a: MatRef<'_, f64>, k: usize) -> Triplets {
    match a.thin_svd() {
        Ok(svd) => Triplets {
            values: (0..k).map(|i| svd.S()[i]).collect(),
            u: svd.U().subcols(0, k).to_owned(),
            v: svd.V().subcols(0, k).to_owned(),
        },
        Err(_) => Triplets { values: vec![f64::NAN; k], u: Mat::zeros(a.nrows(), k), v: Mat::zeros(a.ncols(), k) },
    }
}

/// An orthonormal basis of the column space (thin QR).
fn orthonormal<T: faer::traits::RealField>(m: &Mat<T>) -> Mat<T> {
    m.qr().compute_thin_Q()
}

/// Square unfolding of a conv kernel `[c_out, c_in, k_h, k_w]` (paper App. G.1, eq. 413): one
/// spatial index grouped with the output channels, the other with the input channels,
/// `M[(o, a), (i, b)] = W[o, i, a, b]`, a `(c_out·k_h) × (c_in·k_w)` matrix (row-major out).
pub fn square_unfold(w: &[f32], c_out: usize, c_in: usize, kh: usize, kw: usize) -> (Vec<f32>, usize, usize) {
    let (rows, cols) = (c_out * kh, c_in * kw);
    let mut m = vec![0.0f32; rows * cols];
    for o in 0..c_out {
        for i in 0..c_in {
            for a in 0..kh {
                for b in 0..kw {
                    m[(o * kh + a) * cols + (i * kw + b)] = w[((o * c_in + i) * kh + a) * kw + b];
                }
            }
        }
    }
    (m, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_singular_values_match_an_svd() {
        let data: Vec<f32> =
            normals(&mut stream(1, Purpose::Analysis, 0), 300 * 120).iter().map(|x| *x as f32).collect();
        let a = to_faer(&data, 300, 120);
        let svd = a.singular_values().unwrap();
        let gram = singular_values(&data, 300, 120);
        let gram_t = singular_values(&crate::array::transpose(&data, 300, 120), 120, 300);
        for ((x, y), z) in svd.iter().zip(&gram).zip(&gram_t) {
            assert!((x - y).abs() < 1e-10 && (x - z).abs() < 1e-10, "{x} {y} {z}");
        }
        // [[3, 0], [4, 5]] has singular values √45 and √5.
        let s = singular_values(&[3.0, 0.0, 4.0, 5.0], 2, 2);
        assert!((s[0] - 45f64.sqrt()).abs() < 1e-12 && (s[1] - 5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn lanczos_triplets_reach_the_bulk_edge() {
        // A pure-noise 1024 × 1024 matrix: the top values sit in the clustered bulk edge, where
        // the last power iterate alone came out 1.7% low (numpy, same sizes) and a fixed-depth
        // block Krylov 0.3% low. The converged Lanczos Ritz values match the exact ones to 1e-6
        // (they are lower bounds up to the f32 products' rounding).
        let n = 1024;
        let data: Vec<f64> = normals(&mut stream(5, Purpose::Analysis, 0), n * n);
        let a = Mat::from_fn(n, n, |i, j| data[i * n + j] / (n as f64).sqrt());
        let exact = singular_values_of(a.as_ref());
        let t = top_triplets(a.as_ref(), 8, 3);
        for (i, (got, want)) in t.values.iter().zip(&exact).enumerate() {
            assert!((want - got).abs() < 1e-6 * want, "value {i}: {got} vs exact {want}");
        }
    }

    #[test]
    fn lanczos_triplets_find_planted_outliers() {
        // Noise plus two planted rank-one spikes well above the bulk edge.
        let (r, c) = (400, 300);
        let noise: Vec<f64> = normals(&mut stream(2, Purpose::Analysis, 0), r * c);
        let u1 = crate::theory::simulate::unit_vector(r, 3, 0);
        let v1 = crate::theory::simulate::unit_vector(c, 3, 1);
        let u2 = crate::theory::simulate::unit_vector(r, 3, 2);
        let v2 = crate::theory::simulate::unit_vector(c, 3, 3);
        let a =
            Mat::from_fn(r, c, |i, j| noise[i * c + j] / (c as f64).sqrt() + 5.0 * u1[i] * v1[j] + 3.0 * u2[i] * v2[j]);
        let exact = a.thin_svd().unwrap();
        let t = top_triplets(a.as_ref(), 2, 9);
        for i in 0..2 {
            assert!(
                (t.values[i] - exact.S()[i]).abs() < 1e-6 * exact.S()[i],
                "value {i}: {} vs {}",
                t.values[i],
                exact.S()[i]
            );
            let ou: f64 = (0..r).map(|j| t.u[(j, i)] * exact.U()[(j, i)]).sum();
            let ov: f64 = (0..c).map(|j| t.v[(j, i)] * exact.V()[(j, i)]).sum();
            assert!((ou.abs() - 1.0).abs() < 1e-4 && (ov.abs() - 1.0).abs() < 1e-4, "vectors {i}: {ou} {ov}");
        }
    }

    #[test]
    fn square_unfolding_matches_an_explicit_construction() {
        // W[o, i, a, b] = 1000 o + 100 i + 10 a + b, so every entry names its indices.
        let (co, ci, k) = (3, 2, 3);
        let w: Vec<f32> = (0..co * ci * k * k)
            .map(|n| {
                let (o, rest) = (n / (ci * k * k), n % (ci * k * k));
                let (i, rest) = (rest / (k * k), rest % (k * k));
                (1000 * o + 100 * i + 10 * (rest / k) + rest % k) as f32
            })
            .collect();
        let (m, rows, cols) = square_unfold(&w, co, ci, k, k);
        assert_eq!((rows, cols), (co * k, ci * k));
        for row in 0..rows {
            for col in 0..cols {
                let (o, a) = (row / k, row % k);
                let (i, b) = (col / k, col % k);
                assert_eq!(m[row * cols + col], (1000 * o + 100 * i + 10 * a + b) as f32);
            }
        }
    }
}
