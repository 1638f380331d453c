//! Random-matrix laws (theory map T1–T4).
//!
//! - Marchenko–Pastur: tutorial §6.2, eqs. (67)–(69).
//! - Wigner semicircle and the GOE resolvent: tutorial §4, eqs. (42)–(44).
//! - Spiked Wigner (classical BBP): tutorial §9, eqs. (87)–(94); paper App. A.
//! - Rectangular spiked matrices (Benaych-Georges & Nadakuditi 2012): paper §1.1.
//! - Spiked sample covariance (Baik & Silverstein 2006): the finite-N step of the first-layer
//!   outliers (`weight_outliers`).
//!
//! **Convention.** For a matrix X with n rows and m columns and iid entries of variance 1/m,
//! the aspect ratio is c = n/m. The eigenvalues of XXᵀ (n of them) follow MP with ratio c:
//! support [(1 − √c)², (1 + √c)²] and an atom of mass 1 − 1/c at 0 when c > 1; the singular
//! values of X fill [|1 − √c|, 1 + √c]. The tutorial's Wishart matrix (1/P)ΨᵀΨ with α = P/N is
//! the case c = 1/α. A square matrix (c = 1) has singular-value edge 2 and eigenvalue edge 4 for
//! XᵀX, as in the tutorial's eq. (111).
//!
//! Stieltjes transforms use g(z) = ∫ρ(λ)/(z − λ) dλ, so g(z) ~ 1/z at large |z|, and
//! ρ(λ) = −Im g(λ + i0)/π. The physical branch is taken everywhere off the support by writing
//! √((z − a)(z − b)) as √(z − a)·√(z − b) with principal square roots.

use num_complex::Complex64;

/// Marchenko–Pastur law of the eigenvalues of XXᵀ for aspect ratio c = n/m.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarchenkoPastur {
    pub c: f64,
}

impl MarchenkoPastur {
    pub fn new(c: f64) -> Self {
        assert!(c > 0.0 && c.is_finite(), "aspect ratio must be positive");
        MarchenkoPastur { c }
    }

    /// Aspect ratio of an n × m matrix.
    pub fn for_shape(rows: usize, cols: usize) -> Self {
        Self::new(rows as f64 / cols as f64)
    }

    /// Eigenvalue support [(1 − √c)², (1 + √c)²] (eq. 69 with c = 1/α).
    pub fn edges(&self) -> (f64, f64) {
        let s = self.c.sqrt();
        ((1.0 - s).powi(2), (1.0 + s).powi(2))
    }

    /// Singular-value support [|1 − √c|, 1 + √c].
    pub fn singular_edges(&self) -> (f64, f64) {
        let s = self.c.sqrt();
        ((1.0 - s).abs(), 1.0 + s)
    }

    /// Mass of the atom at 0, (1 − 1/c)₊.
    pub fn atom_at_zero(&self) -> f64 {
        (1.0 - 1.0 / self.c).max(0.0)
    }

    /// Density of the continuous part, eq. (68): √((b − λ)(λ − a)) / (2πcλ) on [a, b].
    pub fn density(&self, lambda: f64) -> f64 {
        let (a, b) = self.edges();
        if lambda <= a || lambda >= b || lambda <= 0.0 {
            return 0.0;
        }
        ((b - lambda) * (lambda - a)).sqrt() / (2.0 * std::f64::consts::PI * self.c * lambda)
    }

    /// Stieltjes transform: the root of c z g² − (z + c − 1) g + 1 = 0 with g ~ 1/z (eq. 67).
    pub fn stieltjes(&self, z: Complex64) -> Complex64 {
        let (a, b) = self.edges();
        let c = self.c;
        let root = (z - a).sqrt() * (z - b).sqrt();
        (z + c - 1.0 - root) / (2.0 * c * z)
    }

    /// Stieltjes transform at a real point outside the support (z > b, or z < a).
    pub fn stieltjes_real(&self, z: f64) -> f64 {
        self.stieltjes(Complex64::new(z, 0.0)).re
    }

    /// Cumulative distribution function (atom included).
    pub fn cdf(&self, lambda: f64) -> f64 {
        let (a, b) = self.edges();
        if lambda < 0.0 {
            return 0.0;
        }
        if lambda >= b {
            return 1.0;
        }
        let atom = self.atom_at_zero();
        if lambda <= a {
            return atom;
        }
        // λ = a + (b − a)(1 − cos θ)/2 turns the square-root edges into a smooth integrand.
        let theta_x = (1.0 - 2.0 * (lambda - a) / (b - a)).clamp(-1.0, 1.0).acos();
        let integrand = |theta: f64| {
            let l = a + (b - a) * (1.0 - theta.cos()) / 2.0;
            let s = theta.sin();
            (b - a).powi(2) * s * s / (8.0 * std::f64::consts::PI * self.c * l)
        };
        atom + gauss_legendre(integrand, 0.0, theta_x)
    }

    /// The p-quantile of the eigenvalue distribution (bisection on the CDF).
    pub fn quantile(&self, p: f64) -> f64 {
        let (a, b) = self.edges();
        if p <= self.atom_at_zero() {
            return 0.0;
        }
        bisect(|x| self.cdf(x) - p, a, b)
    }
}

/// Wigner's semicircle on [−2, 2]: the GOE with off-diagonal variance 1/N (eq. 44).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Semicircle;

impl Semicircle {
    pub fn edges(&self) -> (f64, f64) {
        (-2.0, 2.0)
    }

    /// ρ(λ) = √(4 − λ²)/(2π), eq. (44).
    pub fn density(&self, lambda: f64) -> f64 {
        (4.0 - lambda * lambda).max(0.0).sqrt() / (2.0 * std::f64::consts::PI)
    }

    /// The GOE resolvent R(z) = (z − √(z² − 4))/2, eq. (43) with iω = z: zR = 1 + R².
    pub fn stieltjes(&self, z: Complex64) -> Complex64 {
        (z - (z - 2.0).sqrt() * (z + 2.0).sqrt()) / 2.0
    }

    /// R(z) at a real point outside [−2, 2].
    pub fn stieltjes_real(&self, z: f64) -> f64 {
        self.stieltjes(Complex64::new(z, 0.0)).re
    }

    /// Closed-form CDF: 1/2 + λ√(4 − λ²)/(4π) + arcsin(λ/2)/π.
    pub fn cdf(&self, lambda: f64) -> f64 {
        let x = lambda.clamp(-2.0, 2.0);
        0.5 + x * (4.0 - x * x).sqrt() / (4.0 * std::f64::consts::PI) + (x / 2.0).asin() / std::f64::consts::PI
    }

    pub fn quantile(&self, p: f64) -> f64 {
        bisect(|x| self.cdf(x) - p, -2.0, 2.0)
    }
}

/// Outliers of the spiked Wigner matrix M = M₀ + (γ/N) Σ_a v_a v_aᵀ for spikes independent of
/// M₀ with overlap matrix Σᵛ_ab = v_a·v_b/N: each eigenvalue λ_a of Σᵛ with θ = γλ_a > 1 gives
/// an outlier θ + 1/θ (eqs. 92–94). Returned largest first.
pub fn spiked_wigner_outliers(gamma: f64, sigma_eigenvalues: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> =
        sigma_eigenvalues.iter().map(|l| gamma * l).filter(|t| *t > 1.0).map(|t| t + 1.0 / t).collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out
}

/// Largest singular value of X + θ u vᵀ for X with aspect ratio c (rows/cols, entries of
/// variance 1/cols) and unit vectors u, v independent of X (Benaych-Georges & Nadakuditi 2012,
/// §3.1): √((1 + θ²)(c + θ²))/θ when θ > c^{1/4}; otherwise None (it sticks to the edge 1 + √c).
/// For c = 1 this is θ + 1/θ above θ = 1, the square case.
pub fn rectangular_spike_outlier(theta: f64, c: f64) -> Option<f64> {
    (theta > c.powf(0.25)).then(|| ((1.0 + theta * theta) * (c + theta * theta)).sqrt() / theta)
}

/// Largest eigenvalue of the sample covariance of n i.i.d. Gaussian rows in dimension d whose
/// population covariance is the identity except one eigenvalue θ (Baik & Silverstein 2006; the
/// Baik–Ben Arous–Péché transition), ratio γ = d/n: θ(θ − 1 + γ)/(θ − 1) when θ > 1 + √γ;
/// otherwise None (it sticks to the MP edge (1 + √γ)²). The same law as
/// [`rectangular_spike_outlier`] squared at strength √(θ − 1): the rows are a Gaussian matrix
/// whose spike direction is stretched to variance θ = 1 + (strength)².
pub fn sample_covariance_spike(theta: f64, gamma: f64) -> Option<f64> {
    if theta <= 1.0 {
        return None;
    }
    rectangular_spike_outlier((theta - 1.0).sqrt(), gamma).map(|s| s * s)
}

/// Root of a continuous `f` with a sign change on [lo, hi], to machine precision.
pub fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    let mut flo = f(lo);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        let fm = f(mid);
        if (fm < 0.0) == (flo < 0.0) {
            lo = mid;
            flo = fm;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// ∫_a^b f with 64-point Gauss–Legendre on 16 panels (smooth integrands: ~1e-14 relative).
pub fn gauss_legendre(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    let (nodes, weights) = legendre_nodes(16);
    let panels = 16;
    let h = (b - a) / panels as f64;
    let mut total = 0.0;
    for p in 0..panels {
        let (lo, hi) = (a + p as f64 * h, a + (p + 1) as f64 * h);
        let (mid, half) = (0.5 * (lo + hi), 0.5 * (hi - lo));
        total += nodes.iter().zip(&weights).map(|(x, w)| w * f(mid + half * x)).sum::<f64>() * half;
    }
    total
}

/// Gauss–Legendre nodes and weights on [−1, 1] (Newton on P_n from Chebyshev guesses).
pub fn legendre_nodes(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        nodes.push(x);
        weights.push(2.0 / ((1.0 - x * x) * dp * dp));
    }
    (nodes, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densities_integrate_to_one_and_match_stieltjes_inversion() {
        for c in [0.25, 0.5, 1.0, 2.0, 4.0] {
            let mp = MarchenkoPastur::new(c);
            let (a, b) = mp.edges();
            assert!((mp.cdf(b - 1e-12) - 1.0).abs() < 1e-9, "c = {c}: total mass {}", mp.cdf(b - 1e-12));
            if c != 1.0 {
                // (At c = 1 the density diverges like 1/√λ at 0; the CDF's substitution handles it.)
                let direct = gauss_legendre(|x| mp.density(x), a, b) + mp.atom_at_zero();
                assert!((direct - 1.0).abs() < 2e-3, "c = {c}: direct integral {direct}");
            }
            for t in [0.1, 0.4, 0.8] {
                let l = a + t * (b - a);
                let inv = -mp.stieltjes(Complex64::new(l, 1e-9)).im / std::f64::consts::PI;
                assert!((inv - mp.density(l)).abs() < 1e-6 * mp.density(l).max(1.0), "c = {c} at {l}");
            }
            // g(z) ~ 1/z at infinity.
            let z = Complex64::new(1e6, 3.0);
            assert!(((mp.stieltjes(z) * z) - 1.0).norm() < 1e-5);
        }
        let sc = Semicircle;
        assert!((gauss_legendre(|x| sc.density(x), -2.0, 2.0) - 1.0).abs() < 1e-3);
        assert!((sc.cdf(2.0) - 1.0).abs() < 1e-15 && sc.cdf(0.0) == 0.5);
        let z = Complex64::new(0.7, 1e-9);
        assert!((-sc.stieltjes(z).im / std::f64::consts::PI - sc.density(0.7)).abs() < 1e-7);
        // Eq. (42): zR = 1 + R², off the real axis and on both sides of the cut.
        for z in [Complex64::new(3.0, 0.0), Complex64::new(-2.5, 0.1), Complex64::new(0.3, -1.0)] {
            let r = sc.stieltjes(z);
            assert!((z * r - 1.0 - r * r).norm() < 1e-12);
        }
    }

    #[test]
    fn classical_bbp_formulas() {
        assert_eq!(spiked_wigner_outliers(1.0, &[0.5, 2.0]), vec![2.5]);
        assert_eq!(rectangular_spike_outlier(0.9, 1.0), None);
        assert!((rectangular_spike_outlier(2.0, 1.0).unwrap() - 2.5).abs() < 1e-15);
        // The outlier meets the bulk edge 1 + √c exactly at the threshold θ = c^{1/4}.
        for c in [0.2f64, 1.0, 3.0] {
            let t = c.powf(0.25) * (1.0 + 1e-9);
            assert!((rectangular_spike_outlier(t, c).unwrap() - (1.0 + c.sqrt())).abs() < 1e-6);
        }
    }
}
