//! Following singular directions across snapshots, so that "outlier 1 of layer 2" is one
//! object over time even when values cross or new outliers appear.
//!
//! At each snapshot the top-k singular triplets (u_i, s_i, v_i) are matched to the previous
//! snapshot's by the overlap score |u_i·u'_j|·|v_i·v'_j|: the best-scoring pair is matched
//! first, then the next among the unmatched, as long as the score exceeds 1/2. A triplet left
//! unmatched starts a new track. A track's BBP time is the first snapshot at which its value
//! exceeds the outlier threshold.

use super::matrix::Triplets;

/// Track identities of one matrix.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    next_id: i32,
    previous: Option<(Vec<i32>, Triplets)>,
}

/// Minimum overlap score for two triplets to be the same track.
pub const MATCH_SCORE: f64 = 0.5;

impl Tracker {
    /// A tracker that has just assigned `ids` to `triplets`, with `next_id` the next fresh id.
    pub fn restored(ids: Vec<i32>, triplets: Triplets, next_id: i32) -> Self {
        Tracker { next_id, previous: Some((ids, triplets)) }
    }

    /// The id of every triplet of this snapshot (and remember it for the next).
    pub fn assign(&mut self, current: &Triplets) -> Vec<i32> {
        let k = current.values.len();
        let mut ids = vec![-1i32; k];
        if let Some((prev_ids, prev)) = &self.previous {
            let mut pairs = Vec::new();
            for i in 0..k {
                for j in 0..prev.values.len() {
                    let ou: f64 = (0..current.u.nrows()).map(|r| current.u[(r, i)] * prev.u[(r, j)]).sum();
                    let ov: f64 = (0..current.v.nrows()).map(|r| current.v[(r, i)] * prev.v[(r, j)]).sum();
                    pairs.push((ou.abs() * ov.abs(), i, j));
                }
            }
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut used_prev = vec![false; prev.values.len()];
            for (score, i, j) in pairs {
                if score < MATCH_SCORE {
                    break;
                }
                if ids[i] < 0 && !used_prev[j] {
                    ids[i] = prev_ids[j];
                    used_prev[j] = true;
                }
            }
        }
        for id in ids.iter_mut().filter(|id| **id < 0) {
            *id = self.next_id;
            self.next_id += 1;
        }
        self.previous = Some((ids.clone(), current.clone()));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    fn triplets(values: &[f64], order: &[usize]) -> Triplets {
        // Directions are coordinate axes, listed in `order`.
        let k = values.len();
        Triplets {
            values: values.to_vec(),
            u: Mat::from_fn(6, k, |r, i| f64::from(u8::from(r == order[i]))),
            v: Mat::from_fn(5, k, |r, i| f64::from(u8::from(r == order[i]))),
        }
    }

    #[test]
    fn crossing_values_keep_their_identity() {
        let mut t = Tracker::default();
        assert_eq!(t.assign(&triplets(&[3.0, 2.0], &[0, 1])), vec![0, 1]);
        // Direction 1 overtakes direction 0, and a new direction 2 appears.
        assert_eq!(t.assign(&triplets(&[3.5, 3.2, 2.1], &[1, 0, 2])), vec![1, 0, 2]);
    }
}
