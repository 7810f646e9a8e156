//! Classification metrics: accuracy, per-class precision/recall/F1 and the confusion matrix
//! (rows = true class, columns = predicted), written as `metrics.json`.

use std::path::Path;

use models::Labels;
use serde::{Deserialize, Serialize};

use crate::error::TrainerError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// True images of this class.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub images: usize,
    pub labels: Vec<String>,
    pub per_class: Vec<ClassMetrics>,
    pub macro_f1: f64,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Metrics {
    pub fn compute(labels: &Labels, truth: &[usize], predicted: &[usize]) -> Self {
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            if t < k && p < k {
                confusion[t][p] += 1;
            }
        }
        let per_class: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: usize = confusion[c].iter().sum();
                let predicted_c: usize = confusion.iter().map(|r| r[c]).sum();
                let (precision, recall) = (ratio(tp, predicted_c), ratio(tp, support));
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                ClassMetrics { label: labels.get(c).to_string(), precision, recall, f1, support }
            })
            .collect();
        let correct = (0..k).map(|c| confusion[c][c]).sum();
        Metrics {
            accuracy: ratio(correct, truth.len()),
            images: truth.len(),
            labels: labels.0.clone(),
            macro_f1: per_class.iter().map(|c| c.f1).sum::<f64>() / k.max(1) as f64,
            per_class,
            confusion,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), TrainerError> {
        common::write_atomic(path, &serde_json::to_vec_pretty(self).unwrap_or_default()).map_err(TrainerError::io(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_a_hand_worked_example() {
        let labels = Labels(vec!["ants".into(), "bees".into()]);
        // 3 ants: 2 right, 1 called bee; 2 bees: both right.
        let m = Metrics::compute(&labels, &[0, 0, 0, 1, 1], &[0, 0, 1, 1, 1]);
        assert_eq!(m.confusion, vec![vec![2, 1], vec![0, 2]]);
        assert!((m.accuracy - 0.8).abs() < 1e-12);
        assert!((m.per_class[0].precision - 1.0).abs() < 1e-12);
        assert!((m.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].f1 - 0.8).abs() < 1e-12);
        assert_eq!(m.per_class[1].support, 2);
    }
}
