//! Scores: softmax, top-k and argmax, one definition each for the trainer and the runtime.

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices and values of the `k` largest entries, best first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, values[i])).collect()
}

/// Index of the largest entry (ties: lower index; 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

/// [`argmax`] of each row of a row-major `rows × classes` matrix.
pub fn argmax_rows(values: &[f32], classes: usize) -> Vec<usize> {
    values.chunks_exact(classes.max(1)).map(argmax).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0, 5.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(top_k(&p, 2).iter().map(|t| t.0).collect::<Vec<_>>(), vec![3, 1]);
        let big = softmax(&[1000.0, 999.0]);
        assert!(big.iter().all(|v| v.is_finite()));
        assert!(big[0] > big[1]);
    }

    #[test]
    fn top_k_handles_k_larger_than_len_and_ties() {
        assert_eq!(top_k(&[0.5, 0.5, 0.1], 10), vec![(0, 0.5), (1, 0.5), (2, 0.1)]);
        assert!(top_k(&[], 3).is_empty());
    }

    #[test]
    fn argmax_agrees_with_top_1() {
        let rows = [0.1, 0.7, 0.2, 0.9, 0.05, 0.05, 0.3, 0.3, 0.4];
        assert_eq!(argmax_rows(&rows, 3), vec![1, 0, 2]);
        for r in rows.chunks(3) {
            assert_eq!(argmax(r), top_k(r, 1)[0].0);
        }
        assert_eq!(argmax(&[]), 0);
    }
}
