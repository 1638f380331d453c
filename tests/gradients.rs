//! The explicit back-propagation of `Mlp::gradients`, run through the flex fast kernels,
//! against burn's autodiff on the reference burn-op forward pass (independent computation),
//! for every activation, parameterization, bias setting and a multi-output readout.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use specdyn::config::RunConfig;
use specdyn::model::{Activation, Mlp, MlpSpec, Parameterization, tensor_to_vec};
use specdyn::train::mse_loss;

type AD = Autodiff<Flex>;

fn check(act: Activation, p: Parameterization, bias: bool, outputs: usize) {
    let mut cfg = RunConfig::default();
    cfg.model.depth = 3;
    cfg.model.width = 48;
    cfg.model.activation = act;
    cfg.model.parameterization = p;
    cfg.model.bias = bias;
    cfg.model.gamma0 = 1.7;
    let (d, batch) = (7, 11);
    let spec = MlpSpec::from_config(&cfg, d, outputs);
    let dev = Default::default();
    let mut fast = Mlp::<Flex>::init(spec.clone(), 5, &dev);
    // Give biases non-zero values so their gradients matter downstream.
    let mut host = fast.to_host();
    for (info, h) in fast.info.iter().zip(host.iter_mut()) {
        if info.is_bias() {
            h.iter_mut().enumerate().for_each(|(i, v)| *v = 0.1 * ((i % 7) as f32 - 3.0));
        }
    }
    fast = Mlp::<Flex>::from_host(spec.clone(), host.clone(), &dev);
    let xs: Vec<f32> = (0..batch * d).map(|i| ((i * 37 % 23) as f32 - 11.0) / 6.0).collect();
    let ys: Vec<f32> = (0..batch * outputs).map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0).collect();
    let x = |dev| Tensor::<Flex, 2>::from_data(TensorData::new(xs.clone(), [batch, d]), dev);
    let y = |dev| Tensor::<Flex, 2>::from_data(TensorData::new(ys.clone(), [batch, outputs]), dev);
    let (loss, grads) = fast.gradients(x(&dev), y(&dev));

    // Reference: burn autodiff through the default (burn-op) kernels of Autodiff<Flex>.
    let mut reference = Mlp::<AD>::from_host(spec, host, &dev);
    reference.params = reference.params.into_iter().map(|t| t.require_grad()).collect();
    let xa = Tensor::<AD, 2>::from_inner(x(&dev));
    let ya = Tensor::<AD, 2>::from_inner(y(&dev));
    let l = mse_loss(reference.forward(xa), ya);
    let g = l.backward();
    let want_loss = tensor_to_vec(l.inner())[0] as f64;
    assert!((loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1e-6), "{act:?} {p:?}: loss {loss} vs {want_loss}");
    for (i, info) in reference.info.iter().enumerate() {
        let want = tensor_to_vec(reference.params[i].grad(&g).expect("gradient"));
        let got = tensor_to_vec(grads[i].clone());
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 2e-4 * scale, "{act:?} {p:?} bias={bias}: {} max error {err} vs scale {scale}", info.name);
    }
}

#[test]
fn backprop_matches_autodiff_for_every_activation() {
    for act in [Activation::Linear, Activation::Tanh, Activation::Relu, Activation::Gelu, Activation::Erf] {
        check(act, Parameterization::Mup, false, 1);
    }
}

#[test]
fn backprop_matches_autodiff_for_every_parameterization_with_biases() {
    for p in [Parameterization::Mup, Parameterization::Ntk, Parameterization::Sp] {
        check(Activation::Tanh, p, true, 3);
    }
}
