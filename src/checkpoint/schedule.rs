//! Log-spaced checkpoint steps.

/// Steps 0, then `per_decade` log-spaced steps per decade up to `total`, then `total`.
///
/// `per_decade = 3` gives the familiar 1-2-5 series (0, 1, 2, 5, 10, 20, 50, …); other
/// densities round 10^(j/k) to two significant digits (k = 10: 1, 2, 3, 4, 5, 6, 8, 10, 13,
/// 16, 20, 25, 32, 40, 50, 63, 79, 100, …). `per_decade = 0` gives only 0 and `total`.
pub fn log_spaced_steps(total: u64, per_decade: u32) -> Vec<u64> {
    let mut steps = vec![0, total];
    if per_decade > 0 {
        let mantissas: Vec<f64> = match per_decade {
            1 => vec![1.0],
            2 => vec![1.0, 3.0],
            3 => vec![1.0, 2.0, 5.0],
            k => (0..k).map(|j| round_2_significant(10f64.powf(j as f64 / k as f64))).collect(),
        };
        let mut decade = 1u64;
        'outer: loop {
            for m in &mantissas {
                let s = (m * decade as f64).round() as u64;
                if s > total {
                    break 'outer;
                }
                steps.push(s);
            }
            decade = match decade.checked_mul(10) {
                Some(d) => d,
                None => break,
            };
        }
    }
    steps.sort_unstable();
    steps.dedup();
    steps
}

fn round_2_significant(x: f64) -> f64 {
    let e = x.log10().floor();
    let scale = 10f64.powf(e - 1.0);
    (x / scale).round() * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five() {
        assert_eq!(log_spaced_steps(120, 3), vec![0, 1, 2, 5, 10, 20, 50, 100, 120]);
        assert_eq!(log_spaced_steps(100, 3), vec![0, 1, 2, 5, 10, 20, 50, 100]);
        assert_eq!(log_spaced_steps(7, 0), vec![0, 7]);
    }

    #[test]
    fn dense_grid() {
        let s = log_spaced_steps(100, 10);
        assert_eq!(s, vec![0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100]);
    }
}
