//! 3×3 convolutions (stride 1, zero padding 1) on the CPU as shifted matrix products, with
//! their two backward passes — the CPU kernel behind [`Kernels::conv3x3`](super::Kernels).
//!
//! **The layout trick**: pad each image to (H+2) × (W+2), flatten it, and compute the output
//! on the padded width, i.e. at grid index i·(W+2) + j for rows i < H and all W+2 columns.
//! Output (i, j) then reads padded input (i+a, j+b) at flat index i·(W+2) + j + [a·(W+2) + b],
//! so tap (a, b) sees a *contiguous* window of each padded channel. Stacking the nine windows
//! of every channel gives the im2col matrix [C·9, H(W+2)] by plain copies, and the
//! convolution is one GEMM `W [N, C·9] × cols` (K = 9C, the kernel's native column order); the
//! backward passes are `δ × colsᵀ` (weights) and `Wᵀ δ` scattered back window by window
//! (input). The two junk columns per row are dropped on the way out (forward) or zeroed on
//! the way in (backward); two floats of slack at the end keep the last window in the buffer.
//! Images are spread over the rayon pool, each with its own buffers and sequential faer GEMMs.
//!
//! Layouts: `x` [B, C, H, W], `w` [N, C·9] (the row-major data of a `[N, C, 3, 3]` kernel),
//! output and `delta` [B, N, H, W]; all row-major.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub height: usize,
    pub width: usize,
}

impl ConvShape {
    fn padded_width(&self) -> usize {
        self.width + 2
    }
    /// Length of one padded channel, with the slack.
    fn padded_len(&self) -> usize {
        (self.height + 2) * self.padded_width() + 2
    }
    /// Output positions on the padded grid: H rows of W+2.
    fn grid(&self) -> usize {
        self.height * self.padded_width()
    }
    fn pixels(&self) -> usize {
        self.height * self.width
    }
    fn offset(&self, tap: usize) -> usize {
        (tap / 3) * self.padded_width() + tap % 3
    }
}

/// One image padded to [C, padded_len].
fn pad_image(x: &[f32], s: &ConvShape, out: &mut [f32]) {
    let (pw, plen) = (s.padded_width(), s.padded_len());
    out.fill(0.0);
    for c in 0..s.c_in {
        for i in 0..s.height {
            let src = &x[(c * s.height + i) * s.width..][..s.width];
            out[c * plen + (i + 1) * pw + 1..][..s.width].copy_from_slice(src);
        }
    }
}

/// The nine shifted windows of a padded image as the rows of a [C·9, grid] matrix, row
/// c·9 + t holding channel c shifted by tap t — the order of the kernel's columns, so the
/// convolution is one product `W [N, C·9] × cols`.
fn windows(xp: &[f32], s: &ConvShape, cols: &mut [f32]) {
    let (plen, grid) = (s.padded_len(), s.grid());
    for c in 0..s.c_in {
        for t in 0..9 {
            cols[(c * 9 + t) * grid..][..grid].copy_from_slice(&xp[c * plen + s.offset(t)..][..grid]);
        }
    }
}

/// `out = α · conv(x, w)`.
pub fn forward(x: &[f32], w: &[f32], s: ConvShape, alpha: f32) -> Vec<f32> {
    let (plen, grid, pixels, k) = (s.padded_len(), s.grid(), s.pixels(), 9 * s.c_in);
    let w_m = MatRef::from_row_major_slice(w, s.c_out, k);
    let mut out = vec![0f32; s.batch * s.c_out * pixels];
    out.par_chunks_mut(s.c_out * pixels).enumerate().for_each_init(
        || (vec![0f32; s.c_in * plen], vec![0f32; k * grid], vec![0f32; s.c_out * grid]),
        |(xp, cols, acc), (b, out_b)| {
            pad_image(&x[b * s.c_in * pixels..][..s.c_in * pixels], &s, xp);
            windows(xp, &s, cols);
            let cols_m = MatRef::from_row_major_slice(cols, k, grid);
            let acc_m = MatMut::from_row_major_slice_mut(acc, s.c_out, grid);
            matmul(acc_m, Accum::Replace, w_m, cols_m, alpha, Par::Seq);
            for o in 0..s.c_out {
                for i in 0..s.height {
                    out_b[(o * s.height + i) * s.width..][..s.width]
                        .copy_from_slice(&acc[o * grid + i * s.padded_width()..][..s.width]);
                }
            }
        },
    );
    out
}

/// Per-image work buffers of the backward pass.
struct Buffers {
    xp: Vec<f32>,
    cols: Vec<f32>,
    dgrid: Vec<f32>,
    dcols: Vec<f32>,
    dw: Vec<f32>,
}

/// Gradients of `Σ δ ⊙ α·conv(x, w)`: with respect to `x` (when `input_grad`) and to `w`
/// ([N, C·9]).
pub fn backward(
    x: &[f32],
    w: &[f32],
    delta: &[f32],
    s: ConvShape,
    alpha: f32,
    input_grad: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (plen, grid, pixels, pw, k) = (s.padded_len(), s.grid(), s.pixels(), s.padded_width(), 9 * s.c_in);
    let w_m = MatRef::from_row_major_slice(w, s.c_out, k);
    // One image: δ on the padded grid (junk columns zero), its windows, and the products.
    let work = |b: usize, dxb: Option<&mut [f32]>, buf: &mut Buffers| {
        pad_image(&x[b * s.c_in * pixels..][..s.c_in * pixels], &s, &mut buf.xp);
        windows(&buf.xp, &s, &mut buf.cols);
        let db = &delta[b * s.c_out * pixels..][..s.c_out * pixels];
        buf.dgrid.fill(0.0);
        for o in 0..s.c_out {
            for i in 0..s.height {
                buf.dgrid[o * grid + i * pw..][..s.width]
                    .copy_from_slice(&db[(o * s.height + i) * s.width..][..s.width]);
            }
        }
        let d_m = MatRef::from_row_major_slice(&buf.dgrid, s.c_out, grid);
        // dW [N, C·9] += α δ [N, grid] × colsᵀ [grid, C·9]
        let cols_m = MatRef::from_row_major_slice(&buf.cols, k, grid);
        let dw_m = MatMut::from_row_major_slice_mut(&mut buf.dw, s.c_out, k);
        matmul(dw_m, Accum::Add, d_m, cols_m.transpose(), alpha, Par::Seq);
        if let Some(dxb) = dxb {
            // dcols [C·9, grid] = α Wᵀ δ, then every window adds back into the padded image.
            let dcols_m = MatMut::from_row_major_slice_mut(&mut buf.dcols, k, grid);
            matmul(dcols_m, Accum::Replace, w_m.transpose(), d_m, alpha, Par::Seq);
            buf.xp.fill(0.0);
            for c in 0..s.c_in {
                for t in 0..9 {
                    let dst = &mut buf.xp[c * plen + s.offset(t)..][..grid];
                    let src = &buf.dcols[(c * 9 + t) * grid..][..grid];
                    dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
                }
            }
            for c in 0..s.c_in {
                for i in 0..s.height {
                    dxb[(c * s.height + i) * s.width..][..s.width]
                        .copy_from_slice(&buf.xp[c * plen + (i + 1) * pw + 1..][..s.width]);
                }
            }
        }
    };
    let buffers = || Buffers {
        xp: vec![0f32; s.c_in * plen],
        cols: vec![0f32; k * grid],
        dgrid: vec![0f32; s.c_out * grid],
        dcols: vec![0f32; if input_grad { k * grid } else { 0 }],
        dw: vec![0f32; s.c_out * k],
    };
    // Fixed chunks of images, each accumulated in image order, summed in chunk order: the
    // result does not depend on the thread count or on scheduling (exact resume needs that).
    let chunk = s.batch.div_ceil(16).max(4);
    let mut dx = input_grad.then(|| vec![0f32; s.batch * s.c_in * pixels]);
    let partial: Vec<Vec<f32>> = match dx.as_mut() {
        Some(dx) => dx
            .par_chunks_mut(chunk * s.c_in * pixels)
            .enumerate()
            .map(|(ci, dxc)| {
                let mut buf = buffers();
                for (j, dxb) in dxc.chunks_mut(s.c_in * pixels).enumerate() {
                    work(ci * chunk + j, Some(dxb), &mut buf);
                }
                buf.dw
            })
            .collect(),
        None => (0..s.batch.div_ceil(chunk))
            .into_par_iter()
            .map(|ci| {
                let mut buf = buffers();
                for b in ci * chunk..((ci + 1) * chunk).min(s.batch) {
                    work(b, None, &mut buf);
                }
                buf.dw
            })
            .collect(),
    };
    let mut dw = vec![0f32; s.c_out * k];
    for p in partial {
        dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution by the definition.
    fn direct(x: &[f32], w: &[f32], s: ConvShape) -> Vec<f64> {
        let mut out = vec![0f64; s.batch * s.c_out * s.height * s.width];
        for b in 0..s.batch {
            for o in 0..s.c_out {
                for i in 0..s.height {
                    for j in 0..s.width {
                        let mut acc = 0f64;
                        for c in 0..s.c_in {
                            for a in 0..3 {
                                for bb in 0..3 {
                                    let (ii, jj) = (i as isize + a as isize - 1, j as isize + bb as isize - 1);
                                    if ii < 0 || jj < 0 || ii >= s.height as isize || jj >= s.width as isize {
                                        continue;
                                    }
                                    let xv = x[((b * s.c_in + c) * s.height + ii as usize) * s.width + jj as usize];
                                    acc += f64::from(xv) * f64::from(w[((o * s.c_in + c) * 3 + a) * 3 + bb]);
                                }
                            }
                        }
                        out[((b * s.c_out + o) * s.height + i) * s.width + j] = acc;
                    }
                }
            }
        }
        out
    }

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    #[test]
    fn forward_and_backward_match_the_definition() {
        let s = ConvShape { batch: 3, c_in: 4, c_out: 5, height: 6, width: 7 };
        let x = data(s.batch * s.c_in * 42, 1);
        let w = data(s.c_out * s.c_in * 9, 2);
        let d = data(s.batch * s.c_out * 42, 3);
        let out = forward(&x, &w, s, 0.5);
        let want = direct(&x, &w, s);
        for (a, b) in out.iter().zip(&want) {
            assert!((f64::from(*a) - 0.5 * b).abs() < 1e-4, "{a} vs {}", 0.5 * b);
        }
        // Backward by linearity: ⟨δ, conv(x, w)⟩ differentiated entry by entry.
        let (dx, dw) = backward(&x, &w, &d, s, 0.5, true);
        let dx = dx.unwrap();
        let loss =
            |x: &[f32], w: &[f32]| direct(x, w, s).iter().zip(&d).map(|(a, b)| 0.5 * a * f64::from(*b)).sum::<f64>();
        for k in [0, 7, 40, w.len() - 1] {
            let mut e = w.clone();
            e.iter_mut().for_each(|v| *v = 0.0);
            e[k] = 1.0;
            let want = loss(&x, &e); // linear in w
            assert!((f64::from(dw[k]) - want).abs() < 1e-3, "dw[{k}] {} vs {want}", dw[k]);
        }
        for k in [0, 13, 99, x.len() - 1] {
            let mut e = vec![0f32; x.len()];
            e[k] = 1.0;
            let want = loss(&e, &w); // linear in x
            assert!((f64::from(dx[k]) - want).abs() < 1e-3, "dx[{k}] {} vs {want}", dx[k]);
        }
        let (none, dw2) = backward(&x, &w, &d, s, 0.5, false);
        assert!(none.is_none() && dw2 == dw);
    }
}
