//! Explicit back-propagation (the MLP's eq.-79 recursion and the ResNet's convolutions, run
//! through the flex fast kernels) against burn's autodiff on the reference burn-op forward
//! pass (independent computation): every activation, parameterization, bias setting, both
//! losses, a multi-output readout, and the ResNet with each normalization and branch scale.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use specdyn::config::RunConfig;
use specdyn::model::{
    Activation, Loss, MlpSpec, Model, Network, Norm, Parameterization, ResNetSpec, ResidualScale, scalar, tensor_to_vec,
};

type AD = Autodiff<Flex>;

/// Compare loss and every gradient of `spec` on (x, y) with burn's autodiff.
fn compare(spec: Network, host: Vec<Vec<f32>>, xs: Vec<f32>, ys: Vec<f32>, batch: usize, loss: Loss, what: &str) {
    let dev = Default::default();
    let (d, outputs) = (xs.len() / batch, ys.len() / batch);
    let fast = Model::<Flex>::from_host(spec.clone(), host.clone(), &dev);
    let x = |dev| Tensor::<Flex, 2>::from_data(TensorData::new(xs.clone(), [batch, d]), dev);
    let y = |dev| Tensor::<Flex, 2>::from_data(TensorData::new(ys.clone(), [batch, outputs]), dev);
    let (value, _, grads) = fast.gradients(x(&dev), y(&dev), loss);
    let got_loss = scalar(value);

    // Reference: burn autodiff through the default (burn-op) kernels of Autodiff<Flex>.
    let mut reference = Model::<AD>::from_host(spec, host, &dev);
    reference.params = reference.params.into_iter().map(|t| t.require_grad()).collect();
    let xa = Tensor::<AD, 2>::from_inner(x(&dev));
    let ya = Tensor::<AD, 2>::from_inner(y(&dev));
    let l = loss.value(&reference.forward(xa), &ya);
    let g = l.backward();
    let want_loss = tensor_to_vec(l.inner())[0] as f64;
    assert!((got_loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1e-6), "{what}: loss {got_loss} vs {want_loss}");
    for (i, info) in reference.info.iter().enumerate() {
        let want = tensor_to_vec(reference.params[i].grad(&g).expect("gradient"));
        let got = tensor_to_vec(grads[i].clone());
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 2e-4 * scale, "{what}: {} max error {err} vs scale {scale}", info.name);
    }
}

fn inputs(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i + seed) * 37 % 23) as f32 - 11.0) / 6.0).collect()
}

fn check(act: Activation, p: Parameterization, bias: bool, outputs: usize, loss: Loss) {
    let mut cfg = RunConfig::default();
    cfg.model.depth = 3;
    cfg.model.width = 48;
    cfg.model.activation = act;
    cfg.model.parameterization = p;
    cfg.model.bias = bias;
    cfg.model.gamma0 = 1.7;
    let (d, batch) = (7, 11);
    let spec = MlpSpec::from_config(&cfg, d, outputs);
    let init = Model::<Flex>::init(spec.clone(), 5, &Default::default());
    // Give biases non-zero values so their gradients matter downstream.
    let mut host = init.to_host();
    for (info, h) in init.info.iter().zip(host.iter_mut()) {
        if info.is_bias() {
            h.iter_mut().enumerate().for_each(|(i, v)| *v = 0.1 * ((i % 7) as f32 - 3.0));
        }
    }
    let ys: Vec<f32> = (0..batch * outputs).map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0).collect();
    let what = format!("MLP {act:?} {p:?} bias={bias} C={outputs} {loss:?}");
    compare(spec.into(), host, inputs(batch * d, 0), ys, batch, loss, &what);
}

#[test]
fn backprop_matches_autodiff_for_every_activation() {
    for act in [Activation::Linear, Activation::Tanh, Activation::Relu, Activation::Gelu, Activation::Erf] {
        check(act, Parameterization::Mup, false, 1, Loss::Mse);
    }
}

#[test]
fn backprop_matches_autodiff_for_every_parameterization_with_biases() {
    for p in [Parameterization::Mup, Parameterization::Ntk, Parameterization::Sp] {
        check(Activation::Tanh, p, true, 3, Loss::Mse);
    }
}

#[test]
fn cross_entropy_backprop_matches_autodiff() {
    check(Activation::Relu, Parameterization::Mup, true, 4, Loss::CrossEntropy);
}

/// One-hot targets for `batch` samples of `classes` classes.
fn one_hot(batch: usize, classes: usize) -> Vec<f32> {
    (0..batch * classes).map(|i| f32::from(u8::from(i % classes == (i / classes * 3) % classes))).collect()
}

#[test]
fn resnet_backprop_matches_autodiff() {
    let cases = [
        (Activation::Tanh, Norm::None, ResidualScale::One, Parameterization::Mup, Loss::Mse, [3, 6, 7], 0),
        (
            Activation::Relu,
            Norm::Layer,
            ResidualScale::InvSqrtDepth,
            Parameterization::Ntk,
            Loss::CrossEntropy,
            [3, 6, 7],
            0,
        ),
        (Activation::Gelu, Norm::Group, ResidualScale::DepthMup, Parameterization::Sp, Loss::Mse, [3, 6, 7], 0),
        (Activation::Relu, Norm::None, ResidualScale::InvSqrtDepth, Parameterization::Mup, Loss::Mse, [3, 8, 8], 1),
    ];
    for (act, norm, residual, p, loss, image, downsample) in cases {
        let mut cfg = RunConfig::default();
        cfg.model.width = 8;
        cfg.model.depth = 2;
        cfg.model.activation = act;
        cfg.model.norm = norm;
        cfg.model.group_channels = 4;
        cfg.model.residual_scale = residual;
        cfg.model.parameterization = p;
        cfg.model.gamma0 = 1.3;
        cfg.model.downsample_every = downsample;
        let (batch, classes) = (5, 4);
        let spec = ResNetSpec::from_config(&cfg, image, classes);
        let host = Model::<Flex>::init(spec.clone(), 3, &Default::default()).to_host();
        let what = format!("ResNet {act:?} {norm:?} {residual:?} {p:?} {loss:?} {image:?} pool every {downsample}");
        let pixels = image.iter().product::<usize>();
        compare(spec.into(), host, inputs(batch * pixels, 1), one_hot(batch, classes), batch, loss, &what);
    }
}
