//! Activation functions φ as functions of a number, with their derivatives: what the DMFT
//! integrates over and what the training kernels apply elementwise
//! ([`reference::activate`](crate::kernels::reference::activate) on tensors).

use serde::{Deserialize, Serialize};

/// The nonlinearity φ applied to every hidden pre-activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// φ(h) = h: a deep linear network.
    Linear,
    Tanh,
    Relu,
    /// Exact (erf-based) GELU.
    Gelu,
    /// φ(h) = erf(h), a smooth odd saturating nonlinearity with closed-form Gaussian integrals.
    Erf,
}

impl Activation {
    /// φ(h) for one number.
    pub fn eval(self, h: f64) -> f64 {
        match self {
            Activation::Linear => h,
            Activation::Tanh => h.tanh(),
            Activation::Relu => h.max(0.0),
            Activation::Gelu => 0.5 * h * (1.0 + erf(h / std::f64::consts::SQRT_2)),
            Activation::Erf => erf(h),
        }
    }

    /// (φ(h), φ'(h), φ''(h)) from one evaluation of the transcendental part.
    pub fn eval_with_derivatives(self, h: f64) -> (f64, f64, f64) {
        use std::f64::consts::PI;
        match self {
            Activation::Linear => (h, 1.0, 0.0),
            Activation::Tanh => {
                let t = h.tanh();
                let d = 1.0 - t * t;
                (t, d, -2.0 * t * d)
            }
            Activation::Relu => (h.max(0.0), f64::from(u8::from(h > 0.0)), 0.0),
            Activation::Erf => {
                let e = (-h * h).exp();
                (erf(h), 2.0 / PI.sqrt() * e, -4.0 * h / PI.sqrt() * e)
            }
            Activation::Gelu => {
                let pdf = (-0.5 * h * h).exp() / (2.0 * PI).sqrt();
                let cdf = 0.5 * (1.0 + erf(h / std::f64::consts::SQRT_2));
                (h * cdf, cdf + h * pdf, 2.0 * pdf - h * h * pdf)
            }
        }
    }

    /// φ'(h) for one number.
    pub fn derivative(self, h: f64) -> f64 {
        let gauss = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        match self {
            Activation::Linear => 1.0,
            Activation::Tanh => 1.0 - h.tanh().powi(2),
            Activation::Relu => f64::from(u8::from(h > 0.0)),
            Activation::Gelu => 0.5 * (1.0 + erf(h / std::f64::consts::SQRT_2)) + h * gauss(h),
            Activation::Erf => 2.0 / std::f64::consts::PI.sqrt() * (-h * h).exp(),
        }
    }
}

/// The error function (libm's, correctly rounded to about 1 ulp).
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Abramowitz & Stegun table 7.1.
        for (x, want) in [
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (5.0, 0.999_999_999_998_462_5),
        ] {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {} vs {want}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-13);
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in [Activation::Linear, Activation::Tanh, Activation::Gelu, Activation::Erf] {
            for h in [-1.7, -0.3, 0.4, 2.2] {
                let fd = (act.eval(h + 1e-6) - act.eval(h - 1e-6)) / 2e-6;
                assert!((fd - act.derivative(h)).abs() < 1e-7, "{act:?} at {h}");
                let (f, d1, d2) = act.eval_with_derivatives(h);
                let fd2 = (act.derivative(h + 1e-6) - act.derivative(h - 1e-6)) / 2e-6;
                assert!((f - act.eval(h)).abs() < 1e-15 && (d1 - act.derivative(h)).abs() < 1e-15, "{act:?}");
                assert!((fd2 - d2).abs() < 1e-6, "{act:?} φ'' at {h}: {d2} vs {fd2}");
            }
        }
    }
}
