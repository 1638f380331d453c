//! Sharpness and NTK top eigenvalues against independent computations, within 1%:
//! - a two-layer linear network at zero residual, where H = JᵀJ/B and the NTK has the closed
//!   form Θ = m₀²m₁²[|w₁|² XXᵀ + (XW₀)(XW₀)ᵀ] computed directly from the weights;
//! - a small tanh network with nonzero residual: the NTK from a finite-difference Jacobian of
//!   the forward pass, the sharpness from the dense finite-difference Hessian.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use faer::Mat;
use specdyn::config::RunConfig;
use specdyn::model::{Activation, Loss, MlpSpec, Model, tensor_to_vec};
use specdyn::spectra::curvature::{top_hessian_eigenvalue, top_ntk_eigenvalue};

fn top(m: &Mat<f64>) -> f64 {
    *m.self_adjoint_eigenvalues(faer::Side::Lower).unwrap().last().unwrap()
}

fn tensor(data: Vec<f32>, shape: [usize; 2]) -> Tensor<Flex, 2> {
    Tensor::from_data(TensorData::new(data, shape), &Default::default())
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 0.01 * b.abs(), "{what}: {a} vs {b}");
    eprintln!("{what}: {a:.6e} vs {b:.6e} ({:.2e} relative)", (a - b).abs() / b.abs());
}

#[test]
fn two_layer_linear_network_at_zero_residual() {
    let (d, n, batch) = (8, 64, 10);
    let mut cfg = RunConfig::default();
    cfg.model.depth = 1;
    cfg.model.width = n;
    cfg.model.activation = Activation::Linear;
    cfg.model.gamma0 = 0.7;
    let model = Model::<Flex>::init(MlpSpec::from_config(&cfg, d, 1), 3, &Default::default());
    let xs: Vec<f32> = (0..batch * d).map(|i| ((i * 7919) % 23) as f32 / 11.5 - 1.0).collect();
    let x = tensor(xs.clone(), [batch, d]);
    let y = model.forward(x.clone()); // zero residual: H = JᵀJ/B exactly
    let rates: Vec<f64> = vec![0.3, 0.05];

    // Closed form from the weights (in-memory layout W₀: [D, N], W₁: [N, 1]).
    let host = model.to_host();
    let (m0, m1) = (model.info[0].rule.multiplier, model.info[1].rule.multiplier);
    let xm = Mat::<f64>::from_fn(batch, d, |i, j| xs[i * d + j] as f64);
    let w0 = Mat::<f64>::from_fn(d, n, |i, j| host[0][i * n + j] as f64);
    let w1_sq: f64 = host[1].iter().map(|v| (*v as f64).powi(2)).sum();
    let xxt = &xm * xm.transpose();
    let h = &xm * &w0;
    let hht = &h * h.transpose();
    let c = m0 * m0 * m1 * m1 / batch as f64;
    let ntk = Mat::<f64>::from_fn(batch, batch, |i, j| c * (w1_sq * xxt[(i, j)] + hht[(i, j)]));
    let lr_ntk =
        Mat::<f64>::from_fn(batch, batch, |i, j| c * (rates[0] * w1_sq * xxt[(i, j)] + rates[1] * hht[(i, j)]));

    close(top_ntk_eigenvalue(&model, &x, None, 20), top(&ntk), "NTK top eigenvalue");
    close(top_ntk_eigenvalue(&model, &x, Some(&rates), 20), top(&lr_ntk), "LR-weighted NTK");
    close(top_hessian_eigenvalue(&model, &x, &y, Loss::Mse, None, 20, 1), top(&ntk), "sharpness");
    close(top_hessian_eigenvalue(&model, &x, &y, Loss::Mse, Some(&rates), 20, 1), top(&lr_ntk), "LR-scaled sharpness");
}

#[test]
fn small_tanh_network_with_residual() {
    let (d, n, batch) = (3, 6, 5);
    let mut cfg = RunConfig::default();
    cfg.model.depth = 2;
    cfg.model.width = n;
    cfg.model.bias = true;
    let model = Model::<Flex>::init(MlpSpec::from_config(&cfg, d, 1), 4, &Default::default());
    let xs: Vec<f32> = (0..batch * d).map(|i| ((i * 31) % 13) as f32 / 6.0 - 1.0).collect();
    let x = tensor(xs, [batch, d]);
    let y = tensor((0..batch).map(|i| i as f32 * 0.3 - 0.6).collect(), [batch, 1]);
    let host = model.to_host();
    let sizes: Vec<usize> = host.iter().map(Vec::len).collect();
    let total: usize = sizes.iter().sum();
    // Perturb the flat parameter p by h.
    let with = |p: usize, h: f32| -> Model<Flex> {
        let mut hst = host.clone();
        let (mut t, mut k) = (0, p);
        while k >= sizes[t] {
            k -= sizes[t];
            t += 1;
        }
        hst[t][k] += h;
        Model::<Flex>::from_host((*model.spec).clone(), hst, &Default::default())
    };
    // Finite-difference Jacobian of the forward pass → NTK.
    let h = 1e-2f32;
    let mut jac = Mat::<f64>::zeros(batch, total);
    for p in 0..total {
        let fp = tensor_to_vec(with(p, h).forward(x.clone()));
        let fm = tensor_to_vec(with(p, -h).forward(x.clone()));
        for i in 0..batch {
            jac[(i, p)] = (fp[i] as f64 - fm[i] as f64) / (2.0 * h as f64);
        }
    }
    let ntk = &jac * jac.transpose() * faer::Scale(1.0 / batch as f64);
    close(top_ntk_eigenvalue(&model, &x, None, 20), top(&ntk), "NTK vs finite-difference Jacobian");
    // Dense finite-difference Hessian from gradients → sharpness.
    let flat = |g: Vec<Tensor<Flex, 2>>| g.into_iter().flat_map(tensor_to_vec).map(|v| v as f64).collect::<Vec<f64>>();
    let mut hess = Mat::<f64>::zeros(total, total);
    for p in 0..total {
        let gp = flat(with(p, h).gradients(x.clone(), y.clone(), Loss::Mse).2);
        let gm = flat(with(p, -h).gradients(x.clone(), y.clone(), Loss::Mse).2);
        for q in 0..total {
            hess[(q, p)] = (gp[q] - gm[q]) / (2.0 * h as f64);
        }
    }
    let sym = Mat::<f64>::from_fn(total, total, |i, j| 0.5 * (hess[(i, j)] + hess[(j, i)]));
    close(top_hessian_eigenvalue(&model, &x, &y, Loss::Mse, None, 30, 2), top(&sym), "sharpness vs dense Hessian");
}
