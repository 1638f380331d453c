//! The spectrum of YᵀY for Y a polynomial in independent Gaussian matrices: a self-adjoint
//! linearization and its matrix Dyson equation (the static DMFT of the linearized system).
//!
//! **Input.** Y: R^{n_in} → R^{n_out} written as a straight-line [`Program`]: internal vectors
//! s₁, s₂, … defined in order, each a sum of terms c·X·(v or an earlier s_j), X ∈ {I, Z, Zᵀ} for
//! Gaussian matrices Z with i.i.d. N(0, 1/N) entries, and the output u = Yv another such sum.
//! Every space has a dimension n = r·N with its ratio r fixed as N → ∞.
//!
//! **Linearization** (Helton, Rashidi Far & Speicher 2018; Mingo & Speicher, *Free Probability
//! and Random Matrices*, ch. 10). Collect the program as Qs = Vv, u = T₀v + Us, with Q unipotent
//! lower-triangular (the statements), V the terms on v, U and T₀ the output's. Then
//! Y = T₀ + UQ⁻¹V, and the symmetric block matrix over (out, in, s, s′)
//!
//!   𝓛 = [[0, T₀, U, 0], [T₀ᵀ, 0, 0, Vᵀ], [Uᵀ, 0, 0, −Qᵀ], [0, V, −Q, 0]]
//!
//! has the Hermitization 𝓗 = [[0, Y], [Yᵀ, 0]] as its Schur complement on (out, in), so the
//! (out, in) corner of (𝓛 − Z)⁻¹, Z = z on the outer blocks, is (𝓗 − z)⁻¹, whose (in, in) block
//! is z(YᵀY − z²)⁻¹: the Stieltjes transform of YᵀY at ζ = z² is m_in(z)/z.
//!
//! **Matrix Dyson equation.** 𝓛 = Λ + 𝒳 with Λ the deterministic (identity) blocks and 𝒳 the
//! Gaussian ones. As N → ∞ the normalized block traces M_kl = (1/n_k) tr[(𝓛 − Z)⁻¹]_kl solve
//!
//!   M = (Λ − Z − Σ[M])⁻¹,  Σ[M]_ij = Σ c₁c₂ r_k M_kl
//!
//! over every pair of occurrences of one Gaussian Z with opposite orientation, c₁Z at block
//! (i, k) and c₂Zᵀ at (l, j) (E[Z G Zᵀ] = (1/N) tr G · I), the operator-valued semicircle of the
//! block algebra. Blocks of different dimension labels never couple, so the unknowns are the
//! pairs (k, l) of one label that the couplings reach (found once by the fixed point at a generic
//! z: an unreachable entry stays exactly zero). Solved by the averaged fixed point W ↦ ½[W + (Λ − Z − Σ[W])⁻¹] far
//! from the real axis (it converges for Im Z > 0: Helton et al. Thm 2.1, with the internal blocks
//! regularized by iε), then Newton on M − (Λ − Z − Σ[M])⁻¹ while Im z and ε shrink to the target
//! and to 0 (ε > 0 perturbs the answer by O(ε); the Schur complement is exact at ε = 0).

use num_complex::Complex64;

/// A dimension label (N, D, C, …) with its ratio n/N.
pub type Dim = usize;

/// A factor of a term: the identity or a Gaussian matrix (by index), possibly transposed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Factor {
    Id,
    Z(usize),
    Zt(usize),
}

/// What a term multiplies: the input v or an earlier internal vector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    Input,
    Var(usize),
}

/// One term c·X·source.
#[derive(Clone, Copy, Debug)]
pub struct Term {
    pub coef: f64,
    pub factor: Factor,
    pub src: Src,
}

/// A straight-line program for Y.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// Ratio n/N of each dimension label.
    pub ratios: Vec<f64>,
    /// (row label, column label) of each Gaussian matrix.
    pub matrices: Vec<(Dim, Dim)>,
    pub input: Dim,
    pub output: Dim,
    /// Internal vectors: (label, defining terms).
    pub vars: Vec<(Dim, Vec<Term>)>,
    /// The output u = Yv.
    pub out_terms: Vec<Term>,
}

impl Program {
    /// Adds the internal vector s = Σ terms; returns it as a source.
    pub fn var(&mut self, dim: Dim, terms: Vec<Term>) -> Src {
        self.vars.push((dim, terms));
        Src::Var(self.vars.len() - 1)
    }
}

/// c·X·src.
pub fn term(coef: f64, factor: Factor, src: Src) -> Term {
    Term { coef, factor, src }
}

/// The linearization of a [`Program`] ready for its matrix Dyson equation.
#[derive(Clone, Debug)]
pub struct Pencil {
    /// Number of blocks K (out, in, then s_i and s′_i per internal vector).
    k: usize,
    /// Deterministic part Λ (K × K, row-major; multiples of the identity).
    lambda: Vec<f64>,
    /// Σ[M]_ij += coef · M_kl: (i, j, k, l, coef).
    sigma: Vec<(usize, usize, usize, usize, f64)>,
    /// The unknown pairs (k, l) (same dimension label) and the index of each pair (K × K, or
    /// usize::MAX).
    unknowns: Vec<(usize, usize)>,
    index: Vec<usize>,
}

const OUT: usize = 0;
const IN: usize = 1;

impl Pencil {
    pub fn new(p: &Program) -> Pencil {
        let k = 2 + 2 * p.vars.len();
        let s = |i: usize| 2 + 2 * i; // s_i
        let sp = |i: usize| 3 + 2 * i; // s′_i
        let mut label = vec![p.output, p.input];
        for (d, _) in &p.vars {
            label.push(*d);
            label.push(*d);
        }
        let ratio: Vec<f64> = label.iter().map(|d| p.ratios[*d]).collect();
        // Every block entry as (row, col, coef, factor); the transpose is added with it.
        let mut entries: Vec<(usize, usize, f64, Factor)> = Vec::new();
        let mut put = |i: usize, j: usize, c: f64, f: Factor| {
            let ft = match f {
                Factor::Id => Factor::Id,
                Factor::Z(m) => Factor::Zt(m),
                Factor::Zt(m) => Factor::Z(m),
            };
            entries.push((i, j, c, f));
            entries.push((j, i, c, ft));
        };
        for t in &p.out_terms {
            match t.src {
                Src::Input => put(OUT, IN, t.coef, t.factor),    // T₀
                Src::Var(j) => put(OUT, s(j), t.coef, t.factor), // U
            }
        }
        for (i, (_, terms)) in p.vars.iter().enumerate() {
            put(sp(i), s(i), -1.0, Factor::Id); // −Q, diagonal
            for t in terms {
                match t.src {
                    Src::Input => put(sp(i), IN, t.coef, t.factor),    // V
                    Src::Var(j) => put(sp(i), s(j), t.coef, t.factor), // −Q, below the diagonal
                }
            }
        }
        let mut lambda = vec![0.0; k * k];
        for (i, j, c, f) in &entries {
            if *f == Factor::Id {
                lambda[i * k + j] += c;
            }
        }
        // Pairs c₁Z at (i, k), c₂Zᵀ at (l, j), in either orientation.
        let mut sigma = Vec::new();
        for (i, kk, c1, f1) in &entries {
            for (l, j, c2, f2) in &entries {
                let paired =
                    matches!((f1, f2), (Factor::Z(a), Factor::Zt(b)) | (Factor::Zt(a), Factor::Z(b)) if a == b);
                if paired {
                    sigma.push((*i, *j, *kk, *l, c1 * c2 * ratio[*kk]));
                }
            }
        }
        let mut pencil = Pencil { k, lambda, sigma, unknowns: Vec::new(), index: vec![usize::MAX; k * k] };
        // The unknowns: pairs of one label that are not structurally zero. The fixed point from
        // a diagonal start at a generic z fills exactly the reachable pattern (an entry no
        // coupling reaches stays exactly 0.0), and Newton keeps the rest at 0.
        let probe = pencil.iterate(Complex64::new(0.37, 0.81), 1.0, None, 4 * k + 20);
        for a in 0..k {
            for b in 0..k {
                if label[a] == label[b] && probe[a * k + b] != Complex64::new(0.0, 0.0) {
                    pencil.index[a * k + b] = pencil.unknowns.len();
                    pencil.unknowns.push((a, b));
                }
            }
        }
        pencil
    }

    /// Number of blocks of the linearization.
    pub fn blocks(&self) -> usize {
        self.k
    }

    /// Number of unknowns of the Dyson equation.
    pub fn unknowns(&self) -> usize {
        self.unknowns.len()
    }

    /// Λ − Z − Σ[M] (K × K).
    fn operator(&self, z: Complex64, eps: f64, m: &[Complex64]) -> Vec<Complex64> {
        let k = self.k;
        let mut a: Vec<Complex64> = self.lambda.iter().map(|x| Complex64::new(*x, 0.0)).collect();
        a[OUT * k + OUT] -= z;
        a[IN * k + IN] -= z;
        for i in 2..k {
            a[i * k + i] -= Complex64::new(0.0, eps);
        }
        for (i, j, kk, l, c) in &self.sigma {
            a[i * k + j] -= *c * m[kk * k + l];
        }
        a
    }

    /// The averaged fixed point from `m` (or from −i·I), `iters` times.
    fn iterate(&self, z: Complex64, eps: f64, m: Option<Vec<Complex64>>, iters: usize) -> Vec<Complex64> {
        let k = self.k;
        let mut m = m.unwrap_or_else(|| {
            let mut m = vec![Complex64::new(0.0, 0.0); k * k];
            (0..k).for_each(|i| m[i * k + i] = Complex64::new(0.0, 1.0));
            m
        });
        for _ in 0..iters {
            let inv = inverse(self.operator(z, eps, &m), k).unwrap_or_else(|| m.clone());
            m.iter_mut().zip(&inv).for_each(|(a, b)| *a = 0.5 * (*a + *b));
        }
        m
    }

    /// Newton on F(M) = M − (Λ − Z − Σ[M])⁻¹ from `m`; None without convergence in 30 steps.
    fn newton(&self, z: Complex64, eps: f64, mut m: Vec<Complex64>) -> Option<Vec<Complex64>> {
        let (k, u) = (self.k, self.unknowns.len());
        for _ in 0..30 {
            let ainv = inverse(self.operator(z, eps, &m), k)?;
            // Residual and Jacobian dF = dM − A⁻¹Σ[dM]A⁻¹ on the unknowns.
            let mut f: Vec<Complex64> = self.unknowns.iter().map(|(a, b)| m[a * k + b] - ainv[a * k + b]).collect();
            let mut jac = vec![Complex64::new(0.0, 0.0); u * u];
            (0..u).for_each(|r| jac[r * u + r] = Complex64::new(1.0, 0.0));
            for (i, j, kk, l, c) in &self.sigma {
                let col = self.index[kk * k + l];
                if col == usize::MAX {
                    continue; // M_kl is structurally zero
                }
                for (r, (a, b)) in self.unknowns.iter().enumerate() {
                    jac[r * u + col] -= *c * ainv[a * k + i] * ainv[j * k + b];
                }
            }
            let norm = f.iter().map(|x| x.norm_sqr()).sum::<f64>().sqrt();
            solve(&mut jac, u, &mut f)?;
            let step = f.iter().map(|x| x.norm_sqr()).sum::<f64>().sqrt();
            for (r, (a, b)) in self.unknowns.iter().enumerate() {
                m[a * k + b] -= f[r];
            }
            if !step.is_finite() {
                return None;
            }
            if step <= 1e-13 * (1.0 + m.iter().map(|x| x.norm()).fold(0.0, f64::max)) || norm < 1e-15 {
                return Some(m);
            }
        }
        None
    }

    /// The normalized block traces M(z) at the Hermitization's spectral parameter z: the fixed
    /// point at Im z ≥ 1 with the internal blocks' regularization ε = 1, then Newton while Im z
    /// and ε shrink tenfold a step, to `z` and ε = 0 (the linearization's exact value).
    fn solve_at(&self, z: Complex64) -> Option<Vec<Complex64>> {
        let mut im = 1.0f64.max(z.im);
        let mut eps = 1.0;
        let mut m = self.iterate(Complex64::new(z.re, im), eps, None, 150);
        while im > z.im || eps > 1e-12 {
            im = (im / 10.0).max(z.im);
            eps /= 10.0;
            let zi = Complex64::new(z.re, im);
            m = self.newton(zi, eps, m.clone()).unwrap_or_else(|| self.iterate(zi, eps, Some(m), 2000));
        }
        self.newton(z, 0.0, m)
    }

    /// The Stieltjes transform g(ζ) = (1/n_in) tr (YᵀY − ζ)⁻¹ for Im ζ > 0 (continued from far
    /// above the real axis).
    pub fn stieltjes(&self, zeta: Complex64) -> Option<Complex64> {
        let z = zeta.sqrt();
        let m = self.solve_at(z)?;
        Some(m[IN * self.k + IN] / z)
    }

    /// g(ζ) by Newton from the traces of a neighbouring point (`near`, from [`Pencil::traces`]);
    /// falls back to the full continuation.
    pub fn stieltjes_near(&self, zeta: Complex64, near: Option<&[Complex64]>) -> Option<(Complex64, Vec<Complex64>)> {
        let z = zeta.sqrt();
        let m = near.and_then(|m0| self.newton(z, 0.0, m0.to_vec())).filter(|m| m[IN * self.k + IN].im >= 0.0);
        let m = match m {
            Some(m) => m,
            None => self.solve_at(z)?,
        };
        Some((m[IN * self.k + IN] / z, m))
    }
}

/// Inverse of a K × K complex matrix (row-major) by Gauss–Jordan with partial pivoting.
pub fn inverse(mut a: Vec<Complex64>, n: usize) -> Option<Vec<Complex64>> {
    let mut inv = vec![Complex64::new(0.0, 0.0); n * n];
    (0..n).for_each(|i| inv[i * n + i] = Complex64::new(1.0, 0.0));
    for col in 0..n {
        let piv = (col..n).max_by(|x, y| a[x * n + col].norm().total_cmp(&a[y * n + col].norm()))?;
        if a[piv * n + col].norm() == 0.0 {
            return None;
        }
        for j in 0..n {
            a.swap(col * n + j, piv * n + j);
            inv.swap(col * n + j, piv * n + j);
        }
        let d = 1.0 / a[col * n + col];
        for j in 0..n {
            a[col * n + j] *= d;
            inv[col * n + j] *= d;
        }
        for r in 0..n {
            if r != col {
                let f = a[r * n + col];
                if f.norm() != 0.0 {
                    for j in 0..n {
                        let (x, y) = (a[col * n + j], inv[col * n + j]);
                        a[r * n + j] -= f * x;
                        inv[r * n + j] -= f * y;
                    }
                }
            }
        }
    }
    Some(inv)
}

/// Solves A x = b in place (A n × n row-major, destroyed; b becomes x) by Gaussian elimination
/// with partial pivoting; None if A is singular.
pub fn solve(a: &mut [Complex64], n: usize, b: &mut [Complex64]) -> Option<()> {
    for col in 0..n {
        let piv = (col..n).max_by(|x, y| a[x * n + col].norm().total_cmp(&a[y * n + col].norm()))?;
        if a[piv * n + col].norm() == 0.0 {
            return None;
        }
        if piv != col {
            for j in 0..n {
                a.swap(col * n + j, piv * n + j);
            }
            b.swap(col, piv);
        }
        let d = 1.0 / a[col * n + col];
        for r in col + 1..n {
            let f = a[r * n + col] * d;
            if f.norm() != 0.0 {
                for j in col..n {
                    let x = a[col * n + j];
                    a[r * n + j] -= f * x;
                }
                let x = b[col];
                b[r] -= f * x;
            }
        }
    }
    for col in (0..n).rev() {
        let mut s = b[col];
        for j in col + 1..n {
            s -= a[col * n + j] * b[j];
        }
        b[col] = s / a[col * n + col];
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::rmt::MarchenkoPastur;

    #[test]
    fn one_gaussian_matrix_is_marchenko_pastur() {
        // Y = Z (N × D, entries N(0, 1/N)): YᵀY is MP with ratio D/N — the closed form.
        for ratio in [0.25, 0.5] {
            let mut p =
                Program { ratios: vec![1.0, ratio], matrices: vec![(0, 1)], input: 1, output: 0, ..Default::default() };
            p.out_terms = vec![term(1.0, Factor::Z(0), Src::Input)];
            let pencil = Pencil::new(&p);
            let mp = MarchenkoPastur::new(ratio);
            let (lo, hi) = mp.edges();
            for x in [lo + 0.1, 0.5 * (lo + hi), hi - 0.1] {
                let g = pencil.stieltjes(Complex64::new(x, 1e-10)).expect("the Dyson equation converges");
                let (got, want) = (g.im / std::f64::consts::PI, mp.density(x));
                assert!((got - want).abs() < 1e-7 * want.max(1.0), "ratio {ratio} x {x}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_product_through_an_internal_vector_is_the_free_product() {
        // Y = Z₁Z₂ with square Z₁, Z₂ (N × N): the moments of YᵀY are Fuss–Catalan numbers
        // 1, 3, 12 (E tr (YᵀY)^k / N for k = 1, 2, 3), read from the large-|ζ| expansion
        // g(ζ) = −Σ m_k / ζ^{k+1}.
        let mut p =
            Program { ratios: vec![1.0], matrices: vec![(0, 0), (0, 0)], input: 0, output: 0, ..Default::default() };
        let s = p.var(0, vec![term(1.0, Factor::Z(1), Src::Input)]);
        p.out_terms = vec![term(1.0, Factor::Z(0), s)];
        let pencil = Pencil::new(&p);
        let zeta = Complex64::new(0.0, 400.0);
        let g = pencil.stieltjes(zeta).expect("the Dyson equation converges");
        let series =
            -(1.0 / zeta + 1.0 / zeta.powi(2) + 3.0 / zeta.powi(3) + 12.0 / zeta.powi(4) + 55.0 / zeta.powi(5));
        assert!((g - series).norm() < 1e-12, "{g} vs {series}");
    }
}
