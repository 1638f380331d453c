//! How raw singular values are normalized, and where the bulk ends.
//!
//! **Convention** (one place): a weight matrix W with n rows (fan-out) and m columns (fan-in)
//! whose entries have variance v at initialization is divided by `scale = √(v·m)`. The result
//! has entries of variance 1/m, so an untrained matrix of the same shape has the
//! Marchenko–Pastur singular-value bulk on [|1 − √c|, 1 + √c] with c = n/m
//! ([`MarchenkoPastur::singular_edges`], the same function the theory uses): edge 2 for a
//! square matrix. For specdyn runs v comes from the parameterization table (μP/NTK: σ²; SP:
//! σ²/fan_in); for a conv kernel square-unfolded to (c_out·k) × (c_in·k), v = σ²/(c_in·k²)
//! and m = c_in·k. For external weights v is unknown: by default it is the matrix's own mean
//! squared entry (**rms**: the bulk of an unstructured matrix with that entry variance, so a
//! bulk that training shifted or reshaped shows as such); `--normalize median` instead
//! **fits** the scale so that the median of the nonzero singular values equals the MP median
//! (robust to a few outliers, but it normalizes a bulk shift away). The choice is recorded in
//! each matrix's `scale_source` attribute.
//!
//! **Outliers** are singular values above `edge + margin·σ_TW`, where
//! σ_TW = (1/√n + 1/√m)^{1/3}/(2√m) is the Tracy–Widom scale of the largest normalized singular
//! value (Johnstone 2001, moved from eigenvalues of ZZᵀ to singular values of Z/√m): about
//! 0.63·N^{-2/3} for a square N × N matrix. The default margin is 4 (P(TW₁ > 4) ≈ 2e-4), so an
//! untrained matrix almost never shows a false outlier.

use crate::theory::MarchenkoPastur;
use serde::{Deserialize, Serialize};

/// Where the normalization scale came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleSource {
    /// From the known initialization variance.
    Init,
    /// The median singular value fitted to the MP median (external weights, `--normalize median`).
    Fitted,
    /// The matrix's own RMS entry (external weights, the default): what an unstructured
    /// matrix with the same entry variance would have, so a restructured bulk shows as such.
    Rms,
}

impl ScaleSource {
    pub fn name(self) -> &'static str {
        match self {
            ScaleSource::Init => "init",
            ScaleSource::Fitted => "fitted",
            ScaleSource::Rms => "rms",
        }
    }
}

/// Normalization and bulk edge of one matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    pub rows: usize,
    pub cols: usize,
    /// Raw singular values are divided by this.
    pub scale: f64,
    pub source: ScaleSource,
    /// Upper edge of the MP singular-value bulk, 1 + √c.
    pub edge: f64,
    /// Lower edge |1 − √c|.
    pub lower_edge: f64,
    /// Tracy–Widom scale of the largest normalized singular value.
    pub tw_sigma: f64,
    /// Margin in units of σ_TW.
    pub margin: f64,
}

/// Tracy–Widom fluctuation scale of the largest singular value of an n × m matrix with
/// entries of variance 1/m.
pub fn tracy_widom_sigma(rows: usize, cols: usize) -> f64 {
    let (n, m) = (rows as f64, cols as f64);
    (1.0 / n.sqrt() + 1.0 / m.sqrt()).powf(1.0 / 3.0) / (2.0 * m.sqrt())
}

impl Normalization {
    fn with_scale(rows: usize, cols: usize, scale: f64, source: ScaleSource, margin: f64) -> Self {
        let (lower_edge, edge) = MarchenkoPastur::for_shape(rows, cols).singular_edges();
        Normalization { rows, cols, scale, source, edge, lower_edge, tw_sigma: tracy_widom_sigma(rows, cols), margin }
    }

    /// From the known variance v of the entries at initialization: scale = √(v·m).
    pub fn from_init(rows: usize, cols: usize, entry_variance: f64, margin: f64) -> Self {
        Self::with_scale(rows, cols, (entry_variance * cols as f64).sqrt(), ScaleSource::Init, margin)
    }

    /// Fit the scale so the median nonzero singular value sits at the MP median.
    pub fn fitted(raw_values: &[f64], rows: usize, cols: usize, margin: f64) -> Self {
        let mut v: Vec<f64> = raw_values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let median = if v.is_empty() { 1.0 } else { v[v.len() / 2] };
        let target = singular_value_quantile(&MarchenkoPastur::for_shape(rows, cols), 0.5);
        let scale = if median > 0.0 && target > 0.0 { median / target } else { 1.0 };
        Self::with_scale(rows, cols, scale, ScaleSource::Fitted, margin)
    }

    /// From the matrix's mean squared entry v = ‖W‖²_F/(n·m): scale = √(v·m). A matrix with
    /// i.i.d. entries of any variance then fills the MP bulk; a trained one shows how far its
    /// bulk moved.
    pub fn from_rms(data: &[f32], rows: usize, cols: usize, margin: f64) -> Self {
        let ms = data.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / (rows * cols).max(1) as f64;
        let scale = if ms > 0.0 { (ms * cols as f64).sqrt() } else { 1.0 };
        Self::with_scale(rows, cols, scale, ScaleSource::Rms, margin)
    }

    /// Values above this are outliers.
    pub fn threshold(&self) -> f64 {
        self.edge + self.margin * self.tw_sigma
    }

    pub fn aspect_ratio(&self) -> f64 {
        self.rows as f64 / self.cols as f64
    }
}

/// The q-quantile of the nonzero singular values of a matrix with the given MP law: the MP
/// eigenvalue law restricted to its continuous part, then a square root.
pub fn singular_value_quantile(law: &MarchenkoPastur, q: f64) -> f64 {
    let atom = law.atom_at_zero();
    law.quantile(atom + q * (1.0 - atom)).sqrt()
}

/// Density of the nonzero normalized singular values: 2s·ρ_MP(s²)/(1 − atom).
pub fn singular_value_density(law: &MarchenkoPastur, s: f64) -> f64 {
    2.0 * s * law.density(s * s) / (1.0 - law.atom_at_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_edges_and_scales() {
        let n = Normalization::from_init(1024, 1024, 1.0, 4.0);
        assert!((n.edge - 2.0).abs() < 1e-15 && n.lower_edge.abs() < 1e-15);
        assert_eq!(n.scale, 32.0);
        assert!((n.tw_sigma - 0.63 * 1024f64.powf(-2.0 / 3.0)).abs() < 1e-4);
        let law = MarchenkoPastur::new(0.25);
        let total = crate::theory::rmt::gauss_legendre(|s| singular_value_density(&law, s), 0.5, 1.5);
        assert!((total - 1.0).abs() < 2e-3, "{total}");
    }
}
