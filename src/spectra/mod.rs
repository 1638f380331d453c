//! Spectra of weight matrices.
//!
//! Matrices arrive as row-major f32 (checkpoint layout); the linear algebra runs in f64 with
//! faer (pure Rust, no LAPACK to install).

use faer::Mat;

/// A dense matrix in f64, copied from row-major data.
pub fn to_faer(data: &[f32], rows: usize, cols: usize) -> Mat<f64> {
    Mat::from_fn(rows, cols, |i, j| data[i * cols + j] as f64)
}

/// All singular values, largest first.
pub fn singular_values(data: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let m = to_faer(data, rows, cols);
    m.singular_values().unwrap_or_else(|_| vec![f64::NAN; rows.min(cols)])
}

/// Largest singular value ‖W‖₂.
pub fn spectral_norm(data: &[f32], rows: usize, cols: usize) -> f64 {
    singular_values(data, rows, cols).first().copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_of_a_known_matrix() {
        // [[3, 0], [4, 5]] has singular values √45 and √5.
        let s = singular_values(&[3.0, 0.0, 4.0, 5.0], 2, 2);
        assert!((s[0] - 45f64.sqrt()).abs() < 1e-12 && (s[1] - 5f64.sqrt()).abs() < 1e-12, "{s:?}");
    }
}
