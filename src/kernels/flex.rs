//! [`Kernels`] for burn's flex CPU backend: faer GEMM on the tensors' row-major storage and
//! fused elementwise loops split across the rayon pool. Buffers that are uniquely owned are
//! updated in place. Anything that is not f32 takes the [`reference`] path.

// `Err` hands the caller's tensor back unchanged so it can take the reference path; it is
// not an error value, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::{AdamStep, Kernels, conv, fastmath::tanh_f32, reference};
use crate::model::Activation;
use burn::backend::Flex;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Shape, Tensor, TensorPrimitive};
use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 1 << 14;

fn into_flex(t: Tensor<Flex, 2>) -> FlexTensor {
    t.into_primitive().tensor()
}

fn from_flex(t: FlexTensor) -> Tensor<Flex, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn from_vec(data: Vec<f32>, rows: usize, cols: usize) -> Tensor<Flex, 2> {
    from_flex(FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::new([rows, cols])), DType::F32))
}

/// A contiguous f32 view (copied only if the tensor is a strided view); None for other dtypes.
fn readable(t: &Tensor<Flex, 2>) -> Option<FlexTensor> {
    let f = into_flex(t.clone());
    if f.dtype() != DType::F32 {
        return None;
    }
    Some(if f.as_slice::<f32>().is_some() { f } else { f.to_contiguous() })
}

/// Take ownership of a contiguous f32 buffer to write in place (copied if it is shared or
/// strided); gives the tensor back unchanged for other dtypes.
fn writable(t: Tensor<Flex, 2>) -> Result<FlexTensor, Tensor<Flex, 2>> {
    let f = into_flex(t);
    if f.dtype() != DType::F32 {
        return Err(from_flex(f));
    }
    let n = f.layout().num_elements();
    let exact = f.is_unique() && f.layout().start_offset() == 0 && f.is_contiguous() && f.bytes().len() == n * 4;
    Ok(if exact { f } else { f.to_contiguous() })
}

/// A contiguous f32 view of a 4-D tensor; None for other dtypes.
fn readable4(t: &Tensor<Flex, 4>) -> Option<FlexTensor> {
    let f: FlexTensor = t.clone().into_primitive().tensor();
    if f.dtype() != DType::F32 {
        return None;
    }
    Some(if f.as_slice::<f32>().is_some() { f } else { f.to_contiguous() })
}

fn from_vec4(data: Vec<f32>, dims: [usize; 4]) -> Tensor<Flex, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::new(dims)),
        DType::F32,
    )))
}

fn slice(f: &FlexTensor) -> &[f32] {
    let n = f.layout().num_elements();
    &f.as_slice::<f32>().expect("readable() returns contiguous f32")[..n]
}

fn slice_mut(f: &mut FlexTensor) -> &mut [f32] {
    let n = f.layout().num_elements();
    &mut f.storage_mut::<f32>()[..n]
}

/// `α · op(a) · op(b)` through faer; `ta`/`tb` transpose the operands.
fn gemm(a: &Tensor<Flex, 2>, b: &Tensor<Flex, 2>, alpha: f64, ta: bool, tb: bool) -> Option<Tensor<Flex, 2>> {
    let (fa, fb) = (readable(a)?, readable(b)?);
    let ([ar, ac], [br, bc]) = (a.dims(), b.dims());
    let av = MatRef::from_row_major_slice(slice(&fa), ar, ac);
    let bv = MatRef::from_row_major_slice(slice(&fb), br, bc);
    let av = if ta { av.transpose() } else { av };
    let bv = if tb { bv.transpose() } else { bv };
    let (m, k, n) = (av.nrows(), av.ncols(), bv.ncols());
    assert_eq!(k, bv.nrows(), "matmul shapes {:?} and {:?} (transposed: {ta}, {tb}) do not match", a.dims(), b.dims());
    let mut out = vec![0.0f32; m * n];
    let par = if m * n * k < 1 << 21 { Par::Seq } else { Par::rayon(0) };
    faer_matmul(MatMut::from_row_major_slice_mut(&mut out, m, n), Accum::Replace, av, bv, alpha as f32, par);
    Some(from_vec(out, m, n))
}

/// `p ← f(p, g)` chunk by chunk in parallel, in place; None if either is not f32.
fn zip_update(
    p: Tensor<Flex, 2>,
    g: &Tensor<Flex, 2>,
    f: impl Fn(&mut [f32], &[f32]) + Sync,
) -> Result<Tensor<Flex, 2>, Tensor<Flex, 2>> {
    if p.dims() != g.dims() {
        return Err(p);
    }
    let Some(fg) = readable(g) else { return Err(p) };
    let mut fp = writable(p)?;
    slice_mut(&mut fp).par_chunks_mut(CHUNK).zip(slice(&fg).par_chunks(CHUNK)).for_each(|(a, b)| f(a, b));
    Ok(from_flex(fp))
}

/// The shape of a 3×3 convolution of `x` by `w`, when both are f32 and fit together.
fn conv_shape(x: &Tensor<Flex, 4>, w: &Tensor<Flex, 2>) -> Option<(conv::ConvShape, FlexTensor, FlexTensor)> {
    let ([batch, c_in, height, width], [c_out, k]) = (x.dims(), w.dims());
    if k != 9 * c_in {
        return None;
    }
    Some((conv::ConvShape { batch, c_in, c_out, height, width }, readable4(x)?, readable(w)?))
}

impl Kernels for Flex {
    fn conv3x3(x: &Tensor<Self, 4>, w: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 4> {
        let Some((s, fx, fw)) = conv_shape(x, w) else { return reference::conv3x3(x, w, alpha) };
        from_vec4(conv::forward(slice(&fx), slice(&fw), s, alpha as f32), [s.batch, s.c_out, s.height, s.width])
    }

    fn conv3x3_backward(
        x: &Tensor<Self, 4>,
        w: &Tensor<Self, 2>,
        delta: &Tensor<Self, 4>,
        alpha: f64,
        input_grad: bool,
    ) -> (Option<Tensor<Self, 4>>, Tensor<Self, 2>) {
        let (Some((s, fx, fw)), Some(fd)) = (conv_shape(x, w), readable4(delta)) else {
            return reference::conv3x3_backward(x, w, delta, alpha, input_grad);
        };
        let (dx, dw) = conv::backward(slice(&fx), slice(&fw), slice(&fd), s, alpha as f32, input_grad);
        (dx.map(|d| from_vec4(d, x.dims())), from_vec(dw, s.c_out, 9 * s.c_in))
    }

    fn matmul(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 2> {
        gemm(a, b, alpha, false, false).unwrap_or_else(|| reference::matmul(a, b, alpha))
    }

    fn matmul_tn(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 2> {
        gemm(a, b, alpha, true, false).unwrap_or_else(|| reference::matmul_tn(a, b, alpha))
    }

    fn matmul_nt(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 2> {
        gemm(a, b, alpha, false, true).unwrap_or_else(|| reference::matmul_nt(a, b, alpha))
    }

    fn activate(act: Activation, h: Tensor<Self, 2>, derivative: bool) -> (Tensor<Self, 2>, Option<Tensor<Self, 2>>) {
        if act == Activation::Linear {
            return (h, None);
        }
        let [rows, cols] = h.dims();
        let mut phi = match writable(h) {
            Ok(f) => f,
            Err(h) => return reference::activate(act, h, derivative),
        };
        if !derivative {
            slice_mut(&mut phi).par_chunks_mut(CHUNK).for_each(|p| match act {
                Activation::Tanh => p.iter_mut().for_each(|x| *x = tanh_f32(*x)),
                Activation::Relu => p.iter_mut().for_each(|x| *x = if *x < 0.0 { 0.0 } else { *x }),
                _ => p.iter_mut().for_each(|x| *x = act.eval(*x as f64) as f32),
            });
            return (from_flex(phi), None);
        }
        let mut dphi = vec![0.0f32; rows * cols];
        let pairs = slice_mut(&mut phi).par_chunks_mut(CHUNK).zip(dphi.par_chunks_mut(CHUNK));
        match act {
            Activation::Tanh => pairs.for_each(|(p, d)| {
                for (x, dx) in p.iter_mut().zip(d.iter_mut()) {
                    let t = tanh_f32(*x);
                    *x = t;
                    *dx = 1.0 - t * t;
                }
            }),
            Activation::Relu => pairs.for_each(|(p, d)| {
                for (x, dx) in p.iter_mut().zip(d.iter_mut()) {
                    // NaN stays NaN, as in PyTorch.
                    *dx = if *x > 0.0 { 1.0 } else { 0.0 };
                    *x = if *x < 0.0 { 0.0 } else { *x };
                }
            }),
            _ => pairs.for_each(|(p, d)| {
                for (x, dx) in p.iter_mut().zip(d.iter_mut()) {
                    let h = *x as f64;
                    *dx = act.derivative(h) as f32;
                    *x = act.eval(h) as f32;
                }
            }),
        }
        (from_flex(phi), Some(from_vec(dphi, rows, cols)))
    }

    fn hadamard(a: Tensor<Self, 2>, b: &Tensor<Self, 2>) -> Tensor<Self, 2> {
        zip_update(a, b, |x, y| x.iter_mut().zip(y).for_each(|(x, y)| *x *= y))
            .unwrap_or_else(|a| reference::hadamard(a, b))
    }

    fn dot(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>) -> f64 {
        match (readable(a), readable(b)) {
            (Some(fa), Some(fb)) if a.dims() == b.dims() => slice(&fa)
                .par_chunks(CHUNK)
                .zip(slice(&fb).par_chunks(CHUNK))
                .map(|(x, y)| x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum::<f64>())
                .sum(),
            _ => reference::dot(a, b),
        }
    }

    fn axpy(y: Tensor<Self, 2>, alpha: f64, x: &Tensor<Self, 2>) -> Tensor<Self, 2> {
        let a = alpha as f32;
        zip_update(y, x, |ys, xs| ys.iter_mut().zip(xs).for_each(|(y, x)| *y += a * x))
            .unwrap_or_else(|y| reference::axpy(y, alpha, x))
    }

    fn sgd(p: Tensor<Self, 2>, g: &Tensor<Self, 2>, lr: f64) -> Tensor<Self, 2> {
        let lr32 = lr as f32;
        zip_update(p, g, |ps, gs| ps.iter_mut().zip(gs).for_each(|(x, d)| *x -= lr32 * d))
            .unwrap_or_else(|p| reference::sgd(p, g, lr))
    }

    fn momentum(
        p: Tensor<Self, 2>,
        g: Tensor<Self, 2>,
        buf: Option<Tensor<Self, 2>>,
        lr: f64,
        mu: f64,
        nesterov: bool,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>) {
        let mu32 = mu as f32;
        let buf = match buf {
            None => g.clone(),
            Some(b) => match zip_update(b, &g, |bs, gs| bs.iter_mut().zip(gs).for_each(|(b, d)| *b = mu32 * *b + d)) {
                Ok(b) => b,
                Err(b) => return reference::momentum(p, g, Some(b), lr, mu, nesterov),
            },
        };
        if nesterov {
            // Direction g + μb: form it in g's buffer, then step.
            let dir = zip_update(g, &buf, |gs, bs| gs.iter_mut().zip(bs).for_each(|(d, b)| *d += mu32 * b))
                .unwrap_or_else(|g| g + buf.clone().mul_scalar(mu));
            (Self::sgd(p, &dir, lr), buf)
        } else {
            (Self::sgd(p, &buf, lr), buf)
        }
    }

    fn adam(
        p: Tensor<Self, 2>,
        g: &Tensor<Self, 2>,
        m: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        s: AdamStep,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        let same = p.dims() == g.dims() && m.dims() == g.dims() && v.dims() == g.dims();
        let fg = match readable(g) {
            Some(f) if same => f,
            _ => return reference::adam(p, g, m, v, s),
        };
        let mut fp = match writable(p) {
            Ok(f) => f,
            Err(p) => return reference::adam(p, g, m, v, s),
        };
        let mut fm = match writable(m) {
            Ok(f) => f,
            Err(m) => return reference::adam(from_flex(fp), g, m, v, s),
        };
        let mut fv = match writable(v) {
            Ok(f) => f,
            Err(v) => return reference::adam(from_flex(fp), g, from_flex(fm), v, s),
        };
        let (b1, b2, eps) = (s.beta1 as f32, s.beta2 as f32, s.eps as f32);
        let step = (s.lr / s.bias1) as f32;
        let inv_sqrt_bias2 = (1.0 / s.bias2.sqrt()) as f32;
        slice_mut(&mut fp)
            .par_chunks_mut(CHUNK)
            .zip(slice_mut(&mut fm).par_chunks_mut(CHUNK))
            .zip(slice_mut(&mut fv).par_chunks_mut(CHUNK))
            .zip(slice(&fg).par_chunks(CHUNK))
            .for_each(|(((ps, ms), vs), gs)| {
                for (((x, mm), vv), d) in ps.iter_mut().zip(ms.iter_mut()).zip(vs.iter_mut()).zip(gs) {
                    *mm = b1 * *mm + (1.0 - b1) * d;
                    *vv = b2 * *vv + (1.0 - b2) * d * d;
                    *x -= step * *mm / (vv.sqrt() * inv_sqrt_bias2 + eps);
                }
            });
        (from_flex(fp), from_flex(fm), from_flex(fv))
    }
}
