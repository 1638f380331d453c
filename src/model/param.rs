//! The parameterization table: μP (mean-field), NTK and standard parameterization (SP), in
//! Yang & Hu's abc form, as explicit numbers per layer kind.
//!
//! Every weight is stored as an O(1)-or-scaled matrix `w` with entries N(0, init_std²); the
//! network uses `multiplier · w`; the optimizer updates `w` with rate `η₀ · lr_scale`.
//!
//! μP follows the DMFT tutorial, eqs. (75)–(77) (N = width, D = input dim, σ² = init variance):
//! `h¹ = W⁰x/√D`, `h^{ℓ+1} = W^ℓ φ(h^ℓ)/√N`, `f = w·φ(h^L)/(γN)`, all weights N(0, σ²), and SGD
//! rate `η = η₀γ²N` for every layer, with `γ = γ₀`. NTK is the same network with
//! `γ = γ₀/√N`: readout `1/(γ₀√N)`, SGD rate `η₀γ₀²`; γ → 0 is the lazy limit.
//! SP is PyTorch-style: weights N(0, σ²/fan_in), multipliers 1 (readout 1/γ₀), one global rate
//! η₀γ₀² that does not change with width.
//!
//! Adam normalizes gradient scale away, so its rates follow Tensor Programs V (Yang et al. 2022,
//! Table 3) translated to this mean-field form with the abc-symmetry (a, b, c) → (a+θ, b−θ, c−θ):
//! input `η₀γ/√D`, hidden `η₀γ/√N`, readout `η₀γ`, bias `η₀γ` (μP: γ = γ₀; NTK: γ = γ₀/√N);
//! SP uses η₀ everywhere. Each rule makes the per-step change of every pre-activation
//! O(η₀γ) whatever the width (checked by the coord-check test).

use serde::{Deserialize, Serialize};

/// How weights scale with width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Parameterization {
    /// Maximal update / mean-field parameterization: features move O(1) at every width.
    Mup,
    /// Neural tangent parameterization: lazy as N → ∞ (features move O(1/√N)).
    Ntk,
    /// Standard parameterization (PyTorch default init, one global learning rate).
    Sp,
}

impl Parameterization {
    /// Short lowercase name, as used in configs and file names.
    pub fn name(self) -> &'static str {
        match self {
            Parameterization::Mup => "mup",
            Parameterization::Ntk => "ntk",
            Parameterization::Sp => "sp",
        }
    }
}

/// Which role a parameter plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    /// W⁰: D → N.
    Input,
    /// W^ℓ, 1 ≤ ℓ < L: N → N.
    Hidden,
    /// W^L: N → C.
    Readout,
    /// A bias added to a hidden pre-activation.
    Bias,
}

impl LayerKind {
    /// Lowercase name used in metrics column names.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Input => "input",
            LayerKind::Hidden => "hidden",
            LayerKind::Readout => "readout",
            LayerKind::Bias => "bias",
        }
    }
}

/// Which update rule the learning rates are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateRule {
    Sgd,
    Adam,
}

/// One row of the table: how a parameter of one kind is initialized, used and trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerRule {
    /// Standard deviation of the stored parameter's entries at initialization.
    pub init_std: f64,
    /// Constant the stored parameter is multiplied by in the forward pass.
    pub multiplier: f64,
    /// The layer's learning rate divided by the base rate η₀.
    pub lr_scale: f64,
}

/// The table for one network: parameterization, widths, γ₀ and σ² fixed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamTable {
    pub parameterization: Parameterization,
    /// Hidden width N.
    pub width: usize,
    /// Input dimension D.
    pub input_dim: usize,
    /// Richness γ₀.
    pub gamma0: f64,
    /// Initial variance σ².
    pub init_variance: f64,
    pub rule: UpdateRule,
    /// Extra factor on the Adam rate of hidden layers (depth-μP residual networks: 1/√depth);
    /// 1 otherwise.
    pub depth_lr_scale: f64,
    /// The proportional-limit convention (`model.proportional`): μP's γ is γ₀/√D and the SGD
    /// rate is multiplied by D, which makes the network f = wᵀ⋯W⁰x/(gN⋯) without the input's
    /// 1/√D, trained at η₀g²N (g = γ₀ in μP, γ₀√(D/N) in NTK; see `theory::linear`).
    pub proportional: bool,
}

impl ParamTable {
    /// The effective richness γ: γ₀ in μP and SP, γ₀/√N in NTK (tutorial, below eq. 77); in
    /// the proportional convention μP's is γ₀/√D (then 1/(γN)·W⁰x/√D = W⁰x/(γ₀N)).
    pub fn gamma(&self) -> f64 {
        match self.parameterization {
            Parameterization::Ntk => self.gamma0 / (self.width as f64).sqrt(),
            Parameterization::Mup if self.proportional => self.gamma0 / (self.input_dim as f64).sqrt(),
            Parameterization::Mup | Parameterization::Sp => self.gamma0,
        }
    }

    /// The rule for one kind of MLP parameter (fan-in D for the input layer, N otherwise).
    pub fn layer(&self, kind: LayerKind) -> LayerRule {
        let fan_in = if kind == LayerKind::Input { self.input_dim } else { self.width };
        self.layer_with_fan_in(kind, fan_in)
    }

    /// The rule for a parameter with `fan_in` inputs per output unit: D or N in an MLP, c_in·k²
    /// for a conv kernel. The readout multiplier 1/(γN) and the SGD rate η₀γ²N use the
    /// width N whatever the fan-in.
    pub fn layer_with_fan_in(&self, kind: LayerKind, fan_in: usize) -> LayerRule {
        let n = self.width as f64;
        let fan_in = fan_in as f64;
        let sigma = self.init_variance.sqrt();
        match self.parameterization {
            Parameterization::Mup | Parameterization::Ntk => {
                let g = self.gamma();
                let (init_std, multiplier) = match kind {
                    LayerKind::Input | LayerKind::Hidden => (sigma, 1.0 / fan_in.sqrt()),
                    LayerKind::Readout => (sigma, 1.0 / (g * n)),
                    LayerKind::Bias => (0.0, 1.0),
                };
                let lr_scale = match self.rule {
                    // Eq. (76): one rate η₀γ²N for every layer (×D in the proportional
                    // convention: η₀g²N with g = γ√D).
                    UpdateRule::Sgd if self.proportional => g * g * n * self.input_dim as f64,
                    UpdateRule::Sgd => g * g * n,
                    UpdateRule::Adam => match kind {
                        LayerKind::Input => g / fan_in.sqrt(),
                        LayerKind::Hidden => self.depth_lr_scale * g / fan_in.sqrt(),
                        LayerKind::Readout | LayerKind::Bias => g,
                    },
                };
                LayerRule { init_std, multiplier, lr_scale }
            }
            Parameterization::Sp => {
                let g0 = self.gamma0;
                let (init_std, multiplier) = match kind {
                    LayerKind::Input | LayerKind::Hidden => (sigma / fan_in.sqrt(), 1.0),
                    LayerKind::Readout => (sigma / n.sqrt(), 1.0 / g0),
                    LayerKind::Bias => (0.0, 1.0),
                };
                let lr_scale = match self.rule {
                    UpdateRule::Sgd => g0 * g0,
                    UpdateRule::Adam => 1.0,
                };
                LayerRule { init_std, multiplier, lr_scale }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(p: Parameterization, rule: UpdateRule, n: usize) -> ParamTable {
        ParamTable {
            parameterization: p,
            width: n,
            input_dim: 16,
            gamma0: 2.0,
            init_variance: 1.0,
            rule,
            depth_lr_scale: 1.0,
            proportional: false,
        }
    }

    #[test]
    fn the_proportional_convention_drops_the_inputs_root_d() {
        // μP: readout 1/(γN) with γ = γ₀/√D and input 1/√D give wᵀW⁰x/(γ₀N); the rate is η₀γ₀²N.
        // NTK: readout 1/(γ₀√N)·(1/√D) = 1/(gN) with g = γ₀√(D/N); the rate is η₀g²N = η₀γ₀²D.
        let (n, d) = (400.0, 16.0);
        let mup = ParamTable { proportional: true, ..table(Parameterization::Mup, UpdateRule::Sgd, 400) };
        let (input, readout) = (mup.layer(LayerKind::Input), mup.layer(LayerKind::Readout));
        assert!((input.multiplier * readout.multiplier - 1.0 / (2.0 * n)).abs() < 1e-15);
        assert!((readout.lr_scale - 4.0 * n).abs() < 1e-9);
        let ntk = ParamTable { proportional: true, ..table(Parameterization::Ntk, UpdateRule::Sgd, 400) };
        let g = 2.0 * (d / n).sqrt();
        let (input, readout) = (ntk.layer(LayerKind::Input), ntk.layer(LayerKind::Readout));
        assert!((input.multiplier * readout.multiplier - 1.0 / (g * n)).abs() < 1e-15);
        for k in [LayerKind::Input, LayerKind::Hidden, LayerKind::Readout] {
            assert!((ntk.layer(k).lr_scale - g * g * n).abs() < 1e-9);
        }
    }

    #[test]
    fn mup_is_tutorial_eqs_75_76() {
        let t = table(Parameterization::Mup, UpdateRule::Sgd, 400);
        assert_eq!(t.layer(LayerKind::Hidden).multiplier, 1.0 / 20.0);
        assert_eq!(t.layer(LayerKind::Readout).multiplier, 1.0 / (2.0 * 400.0));
        assert_eq!(t.layer(LayerKind::Input).multiplier, 0.25);
        for k in [LayerKind::Input, LayerKind::Hidden, LayerKind::Readout] {
            assert_eq!(t.layer(k).lr_scale, 4.0 * 400.0); // η₀γ₀²N
            assert_eq!(t.layer(k).init_std, 1.0);
        }
    }

    #[test]
    fn ntk_is_mup_with_gamma_over_sqrt_n() {
        let t = table(Parameterization::Ntk, UpdateRule::Sgd, 400);
        assert!((t.layer(LayerKind::Readout).multiplier - 1.0 / (2.0 * 20.0)).abs() < 1e-15);
        assert!((t.layer(LayerKind::Hidden).lr_scale - 4.0).abs() < 1e-12); // η₀γ₀²
    }

    #[test]
    fn conv_layers_use_their_fan_in() {
        // A 3×3 conv with N = 64 input channels: fan-in 9N, multiplier 1/√(9N); the readout
        // and the SGD rate still use the width N.
        let t = table(Parameterization::Mup, UpdateRule::Sgd, 64);
        let conv = t.layer_with_fan_in(LayerKind::Hidden, 9 * 64);
        assert!((conv.multiplier - 1.0 / 24.0).abs() < 1e-15);
        assert_eq!(conv.lr_scale, 4.0 * 64.0);
        assert_eq!(t.layer_with_fan_in(LayerKind::Hidden, 64), t.layer(LayerKind::Hidden));
        let sp = table(Parameterization::Sp, UpdateRule::Sgd, 64).layer_with_fan_in(LayerKind::Input, 27);
        assert!((sp.init_std - 1.0 / 27f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn sp_and_ntk_agree_at_init_but_not_in_rate() {
        // Same effective weights (multiplier × init_std) at initialization…
        for k in [LayerKind::Input, LayerKind::Hidden, LayerKind::Readout] {
            let sp = table(Parameterization::Sp, UpdateRule::Sgd, 256).layer(k);
            let ntk = table(Parameterization::Ntk, UpdateRule::Sgd, 256).layer(k);
            assert!((sp.init_std * sp.multiplier - ntk.init_std * ntk.multiplier).abs() < 1e-12, "{k:?}");
        }
        // …but SP's rate on the effective hidden weight does not shrink with width.
        let sp = table(Parameterization::Sp, UpdateRule::Sgd, 256).layer(LayerKind::Hidden);
        assert_eq!(sp.lr_scale * sp.multiplier.powi(2), 4.0);
    }
}
