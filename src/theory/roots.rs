//! Real roots of a scalar function on an interval: grid scan, bisection of sign changes, and
//! golden-section refinement of near-zero local minima of |f| (roots that touch zero without
//! crossing, e.g. double roots of a determinant).

use super::rmt::bisect;

/// Roots of `f` on [lo, hi] (lo > 0), scanning `n` geometrically spaced points, ascending.
pub fn real_roots(f: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let ratio = (hi / lo).powf(1.0 / (n - 1) as f64);
    let xs: Vec<f64> = (0..n).map(|i| lo * ratio.powi(i as i32)).collect();
    let fs: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
    let mut roots = Vec::new();
    for i in 0..n - 1 {
        if fs[i] == 0.0 {
            roots.push(xs[i]);
        } else if fs[i].signum() != fs[i + 1].signum() && fs[i + 1] != 0.0 {
            roots.push(bisect(&f, xs[i], xs[i + 1]));
        }
    }
    for i in 1..n - 1 {
        let (a, b, c) = (fs[i - 1].abs(), fs[i].abs(), fs[i + 1].abs());
        let crossing = fs[i - 1].signum() != fs[i].signum() || fs[i].signum() != fs[i + 1].signum();
        if b < a && b < c && !crossing {
            let x = golden_min(|x| f(x).abs(), xs[i - 1], xs[i + 1]);
            if f(x).abs() <= 1e-9 * a.max(c) {
                roots.push(x);
            }
        }
    }
    roots.sort_by(|a, b| a.total_cmp(b));
    roots
}

fn golden_min(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    for _ in 0..200 {
        if f(c) < f(d) {
            b = d;
        } else {
            a = c;
        }
        c = b - g * (b - a);
        d = a + g * (b - a);
        if (b - a).abs() < 1e-15 * b.abs() {
            break;
        }
    }
    0.5 * (a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_and_double_roots() {
        let r = real_roots(|x| (x - 1.5) * (x - 3.0) * (x - 3.0) * (x - 7.25), 1.0, 10.0, 500);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!((r[0] - 1.5).abs() < 1e-12 && (r[1] - 3.0).abs() < 1e-6 && (r[2] - 7.25).abs() < 1e-12);
    }
}
