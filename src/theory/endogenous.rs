//! Endogenously spiked Wigner matrix: the two-level DMFT (theory map T5; tutorial §11.1,
//! eqs. 98–107).
//!
//! ```text
//! M_{n+1} = M_n + (γ/N) v_n v_nᵀ,   v_{n+1} = v_n − η M_n v_n,   M₀ GOE,  v₀ ~ N(0, σ₀² I)
//! ```
//!
//! After S steps M_S = M₀ + (γ/N) Σ_{n<S} v_n v_nᵀ has spikes that M₀ itself generated.
//!
//! **Level 1** (eq. 103): the single-site process
//! `v_{n+1} = v_n − ηχ_n − η Σ_m Rᵛ_{nm} v_m − ηγ Σ_{m<n} Σᵛ_{nm} v_m`, χ Gaussian with covariance
//! Σᵛ, `Rᵛ_{nm} = ⟨∂v_n/∂χ_m⟩` (strictly causal). The process is linear and Gaussian, so the
//! order parameters close exactly. Differentiating gives the response recursion
//!
//! ```text
//! Rᵛ_{n+1,k} = Rᵛ_{nk} − η δ_{nk} − η Σ_m Rᵛ_{nm} Rᵛ_{mk} − ηγ Σ_{m<n} Σᵛ_{nm} Rᵛ_{mk}
//! ```
//!
//! and multiplying by v_k, with Stein's lemma ⟨χ_n v_k⟩ = Σ_m Σᵛ_{nm} Rᵛ_{km},
//!
//! ```text
//! Σᵛ_{n+1,k} = Σᵛ_{nk} − η Σ_m Σᵛ_{nm} Rᵛ_{km} − η Σ_m Rᵛ_{nm} Σᵛ_{mk} − ηγ Σ_{m<n} Σᵛ_{nm} Σᵛ_{mk}
//! ```
//!
//! for every k ≤ n + 1 (k = n + 1 last, after row n + 1 of Rᵛ), from Σᵛ₀₀ = σ₀².
//!
//! **Level 2** (eq. 107): outliers z of M_S solve
//! `det[[z − R(z) − Rᵛ − γΣᵛ, −Σᵛ], [−γRᵛᵀ, z − R(z) − Rᵛᵀ]] = 0` with R the GOE resolvent.
//! z enters only through z − R(z) = 1/R(z), so the roots are the real eigenvalues κ, |κ| > 1, of
//! `K = [[Rᵛ + γΣᵛ, Σᵛ], [γRᵛᵀ, Rᵛᵀ]]`, mapped by z = κ + 1/κ (theory map, "A reduction"): one
//! eigenvalue problem of size 2S, no scan over z, every outlier (above and below the bulk).
//!
//! **Naive rule** (eq. 102): pretend the spikes are independent of M₀; outliers γλ + 1/(γλ)
//! for the eigenvalues λ of Σᵛ with γλ > 1. It is wrong, and `tests/theory_wigner.rs` shows it.
//!
//! **Independent exact route** (used as a check): given the deterministic Σᵛ, v_n = p_n(M₀)v₀
//! for scalar polynomials p₀ = 1, p_{n+1}(λ) = (1 − ηλ)p_n(λ) − ηγ Σ_{m<n} Σᵛ_{nm} p_m(λ), so
//! Σᵛ_{nm} = σ₀² ∫ρ_sc p_n p_m and, by the secular equation of a rank-S update, the outliers are
//! the roots of det(I − γ G(z)) with G_{nm}(z) = σ₀² ∫ρ_sc(λ) p_n(λ) p_m(λ)/(z − λ) dλ. This
//! never uses the single-site process or eq. (107).

use super::rmt::Semicircle;
use faer::Mat;

/// Parameters of the endogenous model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EndogenousWigner {
    /// Spike strength γ.
    pub gamma: f64,
    /// Step size η of the spike dynamics.
    pub eta: f64,
    /// Variance σ₀² of the entries of v₀.
    pub init_variance: f64,
}

/// Level-1 order parameters for spike steps 0..steps (row-major steps × steps).
#[derive(Clone, Debug, PartialEq)]
pub struct LevelOne {
    pub steps: usize,
    /// Σᵛ_{nm} = ⟨v_n v_m⟩.
    pub sigma: Vec<f64>,
    /// Rᵛ_{nm} = ⟨∂v_n/∂χ_m⟩, zero for n ≤ m.
    pub response: Vec<f64>,
}

impl LevelOne {
    pub fn sigma(&self, n: usize, m: usize) -> f64 {
        self.sigma[n * self.steps + m]
    }
    pub fn response(&self, n: usize, m: usize) -> f64 {
        self.response[n * self.steps + m]
    }
    /// The leading s × s block of Σᵛ (the order parameters of M_s; causality makes the
    /// solution for s steps a block of the solution for more).
    pub fn sigma_block(&self, s: usize) -> Mat<f64> {
        Mat::from_fn(s, s, |i, j| self.sigma(i, j))
    }
    pub fn response_block(&self, s: usize) -> Mat<f64> {
        Mat::from_fn(s, s, |i, j| self.response(i, j))
    }
}

/// Outliers of one matrix, largest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outliers {
    /// Above the bulk (z > 2).
    pub upper: Vec<f64>,
    /// Below the bulk (z < −2), most negative first.
    pub lower: Vec<f64>,
}

impl EndogenousWigner {
    /// Solve the level-1 recursion for `steps` spike steps (O(steps³)).
    pub fn level_one(&self, steps: usize) -> LevelOne {
        let (eta, gamma) = (self.eta, self.gamma);
        let s = steps.max(1);
        let mut sig = vec![0.0; s * s];
        let mut res = vec![0.0; s * s];
        let at = |n: usize, m: usize| n * s + m;
        sig[0] = self.init_variance;
        for n in 0..s - 1 {
            // Row n + 1 of Rᵛ (columns k ≤ n).
            for k in 0..=n {
                let mut r = res[at(n, k)] - if n == k { eta } else { 0.0 };
                let mut rr = 0.0;
                for m in (k + 1)..n {
                    rr += res[at(n, m)] * res[at(m, k)];
                }
                let mut sr = 0.0;
                for m in (k + 1)..n {
                    sr += sig[at(n, m)] * res[at(m, k)];
                }
                r -= eta * rr + eta * gamma * sr;
                res[at(n + 1, k)] = r;
            }
            // Row n + 1 of Σᵛ for k ≤ n + 1, the diagonal last.
            for k in 0..=(n + 1) {
                let sig_nk = if k <= n { sig[at(n, k)] } else { sig[at(n + 1, n)] };
                let stein: f64 = (0..k).map(|m| sig[at(n, m)] * res[at(k, m)]).sum();
                let react: f64 = (0..n).map(|m| res[at(n, m)] * sig[at(m, k)]).sum();
                let spike: f64 = (0..n).map(|m| sig[at(n, m)] * sig[at(m, k)]).sum();
                let v = sig_nk - eta * stein - eta * react - eta * gamma * spike;
                sig[at(n + 1, k)] = v;
                sig[at(k, n + 1)] = v;
            }
        }
        LevelOne { steps: s, sigma: sig, response: res }
    }

    /// The 2S × 2S matrix K = [[Rᵛ + γΣᵛ, Σᵛ], [γRᵛᵀ, Rᵛᵀ]] of the reduction of eq. (107).
    pub fn k_matrix(&self, lvl: &LevelOne, s: usize) -> Mat<f64> {
        let g = self.gamma;
        Mat::from_fn(2 * s, 2 * s, |i, j| match (i < s, j < s) {
            (true, true) => lvl.response(i, j) + g * lvl.sigma(i, j),
            (true, false) => lvl.sigma(i, j - s),
            (false, true) => g * lvl.response(j, i - s),
            (false, false) => lvl.response(j - s, i - s),
        })
    }

    /// Every outlier of M_S from eq. (107): real eigenvalues |κ| > 1 of K, z = κ + 1/κ.
    pub fn outliers(&self, lvl: &LevelOne, s: usize) -> Outliers {
        let k = self.k_matrix(lvl, s);
        let eig = k.eigenvalues().unwrap_or_default();
        let scale = eig.iter().map(|e| e.norm()).fold(1.0, f64::max);
        let mut out = Outliers::default();
        for e in eig {
            if e.im.abs() <= 1e-9 * scale && e.re.abs() > 1.0 {
                let z = e.re + 1.0 / e.re;
                if z > 0.0 { out.upper.push(z) } else { out.lower.push(z) }
            }
        }
        out.upper.sort_by(|a, b| b.total_cmp(a));
        out.lower.sort_by(|a, b| a.total_cmp(b));
        out
    }

    /// Outliers of M_S for every S = 1..=steps (one level-1 solve, one 2S eigenproblem per S).
    pub fn trajectory(&self, steps: usize) -> Vec<Outliers> {
        let lvl = self.level_one(steps);
        (1..=steps).map(|s| self.outliers(&lvl, s)).collect()
    }

    /// The naive rule of eq. (102): spikes treated as independent of M₀.
    pub fn naive_outliers(&self, lvl: &LevelOne, s: usize) -> Vec<f64> {
        let sigma = lvl.sigma_block(s);
        let eig = sigma.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
        super::rmt::spiked_wigner_outliers(self.gamma, &eig)
    }

    /// The matrix of eq. (107) at a real z outside [−2, 2].
    pub fn matrix_107(&self, lvl: &LevelOne, s: usize, z: f64) -> Mat<f64> {
        let shift = z - Semicircle.stieltjes_real(z);
        let k = self.k_matrix(lvl, s);
        Mat::from_fn(2 * s, 2 * s, |i, j| if i == j { shift } else { 0.0 } - k[(i, j)])
    }

    /// The outliers by the exact polynomial-resolvent route (see the module docs): roots of
    /// det(I − γG(z)) found by scanning z = κ + 1/κ and bisecting sign changes of the
    /// determinant; minima of the smallest singular value catch roots that touch zero.
    pub fn outliers_by_resolvent(&self, s: usize) -> Outliers {
        let lvl = self.level_one(s);
        let poly = SpikePolynomials::new(self, &lvl, s);
        let f = |z: f64| {
            let g = poly.resolvent(z);
            let a = Mat::<f64>::from_fn(s, s, |i, j| if i == j { 1.0 } else { 0.0 } - self.gamma * g[(i, j)]);
            det(&a)
        };
        // Every eigenvalue of M_S lies within 2 + γ‖Σᵛ‖ of 0.
        let sigma_norm = lvl.sigma_block(s).self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
        let zmax = 2.0 + self.gamma * sigma_norm.last().copied().unwrap_or(0.0).max(0.0) + 1e-9;
        let kmax = zmax / 2.0 + (zmax * zmax / 4.0 - 1.0).sqrt();
        // Roots closer to the edge than z − 2 ≈ 1e-4 (κ < 1.01) are not resolved.
        let scan = |sign: f64| -> Vec<f64> {
            super::roots::real_roots(|k: f64| f(sign * (k + 1.0 / k)), 1.01, kmax.max(1.02), 600)
                .into_iter()
                .map(|k| sign * (k + 1.0 / k))
                .rev()
                .collect()
        };
        let (upper, lower) = (scan(1.0), scan(-1.0));
        Outliers { upper, lower }
    }
}

/// Determinant by LU with partial pivoting.
pub fn det(a: &Mat<f64>) -> f64 {
    let n = a.nrows();
    let mut m: Vec<f64> = (0..n * n).map(|k| a[(k / n, k % n)]).collect();
    let mut d = 1.0;
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs())).unwrap_or(c);
        if m[p * n + c] == 0.0 {
            return 0.0;
        }
        if p != c {
            for j in 0..n {
                m.swap(p * n + j, c * n + j);
            }
            d = -d;
        }
        let piv = m[c * n + c];
        d *= piv;
        for i in (c + 1)..n {
            let f = m[i * n + c] / piv;
            for j in c..n {
                m[i * n + j] -= f * m[c * n + j];
            }
        }
    }
    d
}

/// The polynomials p_n with v_n = p_n(M₀)v₀, integrated against the semicircle with
/// Gauss–Chebyshev (second kind) quadrature: nodes λ_i = 2cos(iπ/(K+1)), exact for polynomials
/// of degree ≤ 2K − 1.
struct SpikePolynomials {
    coeffs: Vec<Vec<f64>>, // Σᵛ_{nm} for m < n: the recursion's spike terms
    model: EndogenousWigner,
    /// (nodes, weights, p_n at every node), by number of nodes K.
    rules: std::cell::RefCell<std::collections::BTreeMap<usize, QuadratureRule>>,
}

type QuadratureRule = (Vec<f64>, Vec<f64>, Vec<Vec<f64>>);

impl SpikePolynomials {
    fn new(model: &EndogenousWigner, lvl: &LevelOne, s: usize) -> Self {
        let coeffs: Vec<Vec<f64>> = (0..s).map(|n| (0..n).map(|m| lvl.sigma(n, m)).collect()).collect();
        SpikePolynomials { coeffs, model: *model, rules: Default::default() }
    }

    /// p_0(x) … p_{S−1}(x) by the recursion.
    fn eval(&self, x: f64) -> Vec<f64> {
        let (eta, gamma) = (self.model.eta, self.model.gamma);
        let s = self.coeffs.len();
        let mut p = Vec::with_capacity(s);
        p.push(1.0);
        for n in 0..s.saturating_sub(1) {
            let spike: f64 = (0..n).map(|m| self.coeffs[n][m] * p[m]).sum();
            p.push((1.0 - eta * x) * p[n] - eta * gamma * spike);
        }
        p
    }

    /// Σ_i w_i f(λ_i, p(λ_i)) with a K-node rule (built once per K).
    fn integrate<T>(&self, k: usize, f: impl Fn(&[(f64, f64, Vec<f64>)]) -> T) -> T {
        let mut rules = self.rules.borrow_mut();
        let rule = rules.entry(k).or_insert_with(|| {
            let t = |i: usize| i as f64 * std::f64::consts::PI / (k as f64 + 1.0);
            let nodes: Vec<f64> = (1..=k).map(|i| 2.0 * t(i).cos()).collect();
            let weights: Vec<f64> = (1..=k).map(|i| 2.0 / (k as f64 + 1.0) * t(i).sin().powi(2)).collect();
            let values = nodes.iter().map(|&l| self.eval(l)).collect();
            (nodes, weights, values)
        });
        let pts: Vec<(f64, f64, Vec<f64>)> =
            rule.0.iter().zip(&rule.1).zip(&rule.2).map(|((l, w), p)| (*l, *w, p.clone())).collect();
        f(&pts)
    }

    /// G(z) = σ₀² ∫ρ_sc p pᵀ/(z − λ) for real |z| > 2, by Gauss quadrature with enough nodes
    /// for the pole's distance: the error decays like ρ^(−2K) with ρ = |z|/2 + √(z²/4 − 1).
    fn resolvent(&self, z: f64) -> Mat<f64> {
        let s = self.coeffs.len();
        let rho = z.abs() / 2.0 + (z * z / 4.0 - 1.0).max(0.0).sqrt();
        let need = (40.0 / rho.ln().max(1e-6)).ceil() as usize;
        let k = (s + 16).max(need.next_power_of_two()).min(1 << 14);
        let var = self.model.init_variance;
        self.integrate(k, |pts| {
            Mat::from_fn(s, s, |n, m| var * pts.iter().map(|(l, w, p)| w * p[n] * p[m] / (z - l)).sum::<f64>())
        })
    }

    /// Σᵛ from the polynomials (for checking the level-1 recursion).
    #[cfg(test)]
    fn sigma(&self, n: usize, m: usize) -> f64 {
        let k = self.coeffs.len() + 8;
        self.model.init_variance * self.integrate(k, |pts| pts.iter().map(|(_, w, p)| w * p[n] * p[m]).sum::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> EndogenousWigner {
        EndogenousWigner { gamma: 0.2, eta: 0.2, init_variance: 1.0 }
    }

    #[test]
    fn level_one_sigma_matches_the_polynomial_representation() {
        let m = model();
        let lvl = m.level_one(25);
        let poly = SpikePolynomials::new(&m, &lvl, 25);
        for n in 0..25 {
            for k in 0..=n {
                let (a, b) = (lvl.sigma(n, k), poly.sigma(n, k));
                assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "Σ[{n},{k}]: recursion {a} vs polynomials {b}");
            }
        }
        // The response is causal and starts at −η.
        assert_eq!(lvl.response(3, 3), 0.0);
        assert!((lvl.response(1, 0) + 0.2).abs() < 1e-15);
    }

    #[test]
    fn reduction_of_eq_107_matches_the_exact_resolvent_route() {
        for (s, gamma, eta) in [(30, 0.2, 0.2), (12, 0.5, 0.1), (20, 0.3, 0.3)] {
            let m = EndogenousWigner { gamma, eta, init_variance: 1.0 };
            let lvl = m.level_one(s);
            let fast = m.outliers(&lvl, s);
            let exact = m.outliers_by_resolvent(s);
            // The scan resolves roots with κ > 1.01, i.e. |z| > 2.0000990.
            let edge = 1.01 + 1.0 / 1.01;
            let resolved = |v: &[f64]| v.iter().copied().filter(|z| z.abs() > edge).collect::<Vec<_>>();
            for (a, b) in [(resolved(&fast.upper), exact.upper.clone()), (resolved(&fast.lower), exact.lower.clone())] {
                assert_eq!(a.len(), b.len(), "S={s} γ={gamma} η={eta}: {fast:?} vs {exact:?}");
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-6, "S={s}: {x} vs {y}");
                }
            }
            // And each is a root of the determinant of eq. (107) itself.
            for z in &fast.upper {
                let a = m.matrix_107(&lvl, s, *z);
                let smin = a.singular_values().unwrap().last().copied().unwrap();
                assert!(smin < 1e-8, "σ_min(A({z})) = {smin}");
            }
        }
    }

    #[test]
    fn theory_map_reference_values() {
        // theory-map.md: S = 30, γ = 0.2, η = 0.2 gives 2.4645, 2.3204, 2.0222.
        let m = model();
        let out = m.outliers(&m.level_one(30), 30);
        let want = [2.4645, 2.3204, 2.0222];
        assert!(out.upper.len() >= 3, "{out:?}");
        for (a, b) in out.upper.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
