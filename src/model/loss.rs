//! Losses on a batch of B outputs f ([B, C]) and targets y ([B, C]), and the output error
//! δ = ∂L/∂f that back-propagation starts from.
//!
//! - **MSE** (the DMFT papers' loss): L = (1/2B) Σ_μ Σ_c (f_μc − y_μc)², δ = (f − y)/B, so
//!   −δ is the tutorial's Δ_μ = (y_μ − f_μ)/B (eq. 78).
//! - **Cross-entropy** on one-hot (or soft) targets: L = −(1/B) Σ_μ Σ_c y_μc log softmax(f_μ)_c,
//!   δ = (softmax(f) − y)/B (for targets that are not probabilities, (softmax(f)·Σ_c y_c − y)/B).

use crate::kernels::Kernels;
use burn::tensor::{Tensor, activation};
use serde::{Deserialize, Serialize};

/// Which loss `train.loss` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Half the squared error (regression, or one-hot classification as in the DMFT papers).
    #[default]
    Mse,
    /// Softmax cross-entropy (classification).
    CrossEntropy,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross-entropy",
        }
    }

    /// The batch loss (a one-element tensor).
    pub fn value<B: Kernels>(self, f: &Tensor<B, 2>, y: &Tensor<B, 2>) -> Tensor<B, 1> {
        let batch = f.dims()[0] as f64;
        match self {
            Loss::Mse => (f.clone() - y.clone()).powi_scalar(2).sum().mul_scalar(0.5 / batch),
            Loss::CrossEntropy => (activation::log_softmax(f.clone(), 1) * y.clone()).sum().mul_scalar(-1.0 / batch),
        }
    }

    /// The batch loss and δ = ∂L/∂f.
    pub fn value_and_error<B: Kernels>(self, f: &Tensor<B, 2>, y: &Tensor<B, 2>) -> (Tensor<B, 1>, Tensor<B, 2>) {
        let batch = f.dims()[0] as f64;
        match self {
            Loss::Mse => {
                let err = f.clone() - y.clone();
                (err.clone().powi_scalar(2).sum().mul_scalar(0.5 / batch), err.mul_scalar(1.0 / batch))
            }
            Loss::CrossEntropy => {
                let log_p = activation::log_softmax(f.clone(), 1);
                let value = (log_p.clone() * y.clone()).sum().mul_scalar(-1.0 / batch);
                // ∂/∂f of −Σ_c y_c log softmax(f)_c is softmax(f)·Σ_c y_c − y (= softmax − y
                // for one-hot or probability targets).
                let mass = y.clone().sum_dim(1); // [B, 1]
                (value, (log_p.exp() * mass - y.clone()).mul_scalar(1.0 / batch))
            }
        }
    }
}

/// Fraction of rows whose largest output is at the largest target (one-hot labels).
pub fn accuracy(f: &[f32], y: &[f32], outputs: usize) -> f64 {
    if outputs == 0 || f.is_empty() {
        return f64::NAN;
    }
    let argmax = |row: &[f32]| {
        row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, v)| if *v > best.1 { (i, *v) } else { best }).0
    };
    let rows = f.len() / outputs;
    let hits = f.chunks(outputs).zip(y.chunks(outputs)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    hits as f64 / rows as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn cross_entropy_matches_a_hand_computation() {
        let f =
            Tensor::<Flex, 2>::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0], [2, 2]), &Default::default());
        let y = Tensor::<Flex, 2>::from_data(TensorData::new(vec![0.0f32, 1.0, 1.0, 0.0], [2, 2]), &Default::default());
        let (v, d) = Loss::CrossEntropy.value_and_error(&f, &y);
        let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
        let want = (-(2.0 - lse(1.0, 2.0)) - (0.5 - lse(0.5, -1.0))) / 2.0;
        assert!((crate::model::scalar(v) - want).abs() < 1e-6);
        let d = crate::model::tensor_to_vec(d);
        let p01 = (2.0f64).exp() / ((1.0f64).exp() + (2.0f64).exp());
        assert!((d[1] as f64 - (p01 - 1.0) / 2.0).abs() < 1e-6);
        assert_eq!(accuracy(&[1.0, 2.0, 0.5, -1.0], &[0.0, 1.0, 1.0, 0.0], 2), 1.0);
    }
}
