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
            macro_f1: macro_f1(&per_class, &confusion),
            per_class,
            confusion,
        }
    }

    /// Images predicted as class `c` (a column of the confusion matrix).
    pub fn predicted(&self, c: usize) -> usize {
        self.confusion.iter().map(|row| row.get(c).copied().unwrap_or(0)).sum()
    }

    /// One line per class for the terminal: precision, recall, F1 and support, or why a class
    /// with no images in this split has none.
    pub fn class_lines(&self) -> Vec<String> {
        self.per_class
            .iter()
            .enumerate()
            .map(|(c, m)| {
                let name = &m.label;
                match (m.support, self.predicted(c)) {
                    (0, 0) => format!("{name:<20} no images of this class here: not scored"),
                    (0, p) => format!("{name:<20} no images of this class here, but {p} others were called it"),
                    (n, _) => {
                        format!("{name:<20} precision {:.3} recall {:.3} f1 {:.3} (n={n})", m.precision, m.recall, m.f1)
                    }
                }
            })
            .collect()
    }

    pub fn write(&self, path: &Path) -> Result<(), TrainerError> {
        common::write_atomic(path, &serde_json::to_vec_pretty(self).unwrap_or_default()).map_err(TrainerError::io(path))
    }
}

/// The mean F1 over the classes that occur: in the truth or among the predictions (what
/// scikit-learn averages over). A class with no images in the split and never predicted has no
/// defined F1; counting it as 0 would make a perfect model on the other classes look bad.
fn macro_f1(per_class: &[ClassMetrics], confusion: &[Vec<usize>]) -> f64 {
    let occurring: Vec<f64> = per_class
        .iter()
        .enumerate()
        .filter(|(c, m)| m.support > 0 || confusion.iter().any(|row| row[*c] > 0))
        .map(|(_, m)| m.f1)
        .collect();
    if occurring.is_empty() { 0.0 } else { occurring.iter().sum::<f64>() / occurring.len() as f64 }
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
        assert!((m.macro_f1 - (0.8 + 0.8) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_class_without_images_is_not_scored_unless_it_is_predicted() {
        let labels = Labels(vec!["ants".into(), "bees".into(), "wasps".into()]);
        // No wasps in the split and none predicted: macro F1 is over ants and bees only.
        let m = Metrics::compute(&labels, &[0, 0, 1], &[0, 0, 1]);
        assert!((m.macro_f1 - 1.0).abs() < 1e-12, "{}", m.macro_f1);
        assert_eq!(m.predicted(2), 0);
        assert!(m.class_lines()[2].contains("not scored"), "{:?}", m.class_lines());
        assert!(m.class_lines()[0].contains("precision 1.000 recall 1.000 f1 1.000 (n=2)"));
        // A bee called a wasp: wasps now occur (a false positive), F1 0 counts.
        let m = Metrics::compute(&labels, &[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert_eq!(m.predicted(2), 1);
        let bees_f1 = 2.0 * 1.0 * 0.5 / 1.5;
        assert!((m.macro_f1 - (1.0 + bees_f1 + 0.0) / 3.0).abs() < 1e-12, "{}", m.macro_f1);
        assert!(m.class_lines()[2].contains("1 others were called it"), "{:?}", m.class_lines());
    }
}
