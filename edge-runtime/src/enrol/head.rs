//! Fitting the enrolled head on the device: pure Rust on a few hundred vectors, no engine.
//!
//! Both heads score L2-normalised embeddings with one linear layer, so they share the graph:
//! - [`HeadKind::Prototype`]: each class is the normalised mean of its normalised examples;
//!   logits are `temperature * cosine`. The temperature is the one of a small grid with the best
//!   leave-one-out likelihood on the enrolled examples themselves (so the probabilities a
//!   `--threshold` reads are calibrated), 10 when that cannot be measured.
//! - [`HeadKind::Logistic`]: multinomial logistic regression started from the prototype head
//!   and refined by full-batch gradient descent with L2 weight decay.

use models::enrolment::HeadKind;

/// Temperatures tried by the leave-one-out calibration.
const TEMPERATURES: [f32; 8] = [2.0, 4.0, 6.0, 8.0, 11.0, 16.0, 23.0, 32.0];
const DEFAULT_TEMPERATURE: f32 = 10.0;
const LOGISTIC_STEPS: usize = 150;
const LOGISTIC_RATE: f32 = 1.0;
const LOGISTIC_DECAY: f32 = 1e-3;

/// A fitted head on normalised embeddings: `logits = weight · unit(f) + bias`.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub weight: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    pub temperature: f32,
    /// Leave-one-out top-1 accuracy of the prototype rule on the enrolled examples (None with
    /// one class or a class with a single example).
    pub loo_accuracy: Option<f64>,
}

pub fn normalize(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn add_into(acc: &mut [f32], v: &[f32], scale: f32) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += scale * x;
    }
}

/// Normalised mean direction of already normalised vectors.
fn prototype(units: &[&[f32]], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    for u in units {
        add_into(&mut sum, u, 1.0);
    }
    normalize(&sum)
}

/// Fits `kind` on `classes[c]` = the raw embeddings of class c (each `dim` long, every class
/// with at least one example).
pub fn fit(kind: HeadKind, classes: &[Vec<Vec<f32>>], dim: usize) -> Fitted {
    let units: Vec<Vec<Vec<f32>>> = classes.iter().map(|c| c.iter().map(|e| normalize(e)).collect()).collect();
    let protos: Vec<Vec<f32>> =
        units.iter().map(|c| prototype(&c.iter().map(Vec::as_slice).collect::<Vec<_>>(), dim)).collect();
    let (temperature, loo_accuracy) = calibrate(&units, dim);
    let weight: Vec<Vec<f32>> = protos.iter().map(|p| p.iter().map(|v| v * temperature).collect()).collect();
    let bias = vec![0f32; classes.len()];
    let mut fitted = Fitted { weight, bias, temperature, loo_accuracy };
    if kind == HeadKind::Logistic && classes.len() > 1 {
        logistic(&mut fitted, &units);
    }
    fitted
}

/// Leave-one-out over the enrolled examples: the temperature with the smallest mean negative
/// log-likelihood, and the prototype rule's accuracy.
fn calibrate(units: &[Vec<Vec<f32>>], dim: usize) -> (f32, Option<f64>) {
    if units.len() < 2 || units.iter().any(|c| c.len() < 2) {
        return (DEFAULT_TEMPERATURE, None);
    }
    let sums: Vec<Vec<f32>> = units
        .iter()
        .map(|c| {
            let mut s = vec![0f32; dim];
            c.iter().for_each(|u| add_into(&mut s, u, 1.0));
            s
        })
        .collect();
    // Cosines of every example to every class prototype, its own class without it.
    let mut rows: Vec<(Vec<f32>, usize)> = Vec::new();
    for (c, class) in units.iter().enumerate() {
        for u in class {
            let cos = sums
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let mut s = s.clone();
                    if k == c {
                        add_into(&mut s, u, -1.0);
                    }
                    dot(u, &normalize(&s))
                })
                .collect();
            rows.push((cos, c));
        }
    }
    let correct = rows.iter().filter(|(cos, c)| common::argmax(cos) == *c).count();
    let nll = |t: f32| {
        rows.iter()
            .map(|(cos, c)| {
                let m = cos.iter().fold(f32::MIN, |m, v| m.max(*v));
                let lse = cos.iter().map(|v| ((v - m) * t).exp()).sum::<f32>().ln() + m * t;
                (lse - cos[*c] * t) as f64
            })
            .sum::<f64>()
    };
    let best = TEMPERATURES.into_iter().min_by(|a, b| nll(*a).total_cmp(&nll(*b))).unwrap_or(DEFAULT_TEMPERATURE);
    (best, Some(correct as f64 / rows.len() as f64))
}

/// Softmax regression by gradient descent from the prototype head, classes weighted equally.
fn logistic(fitted: &mut Fitted, units: &[Vec<Vec<f32>>]) {
    let classes = units.len();
    let dim = fitted.weight[0].len();
    let total_classes = classes as f32;
    for _ in 0..LOGISTIC_STEPS {
        let mut grad_w = vec![vec![0f32; dim]; classes];
        let mut grad_b = vec![0f32; classes];
        for (c, class) in units.iter().enumerate() {
            // Each class contributes 1/classes of the loss, whatever its example count.
            let weight = 1.0 / (total_classes * class.len() as f32);
            for u in class {
                let logits: Vec<f32> = (0..classes).map(|k| dot(&fitted.weight[k], u) + fitted.bias[k]).collect();
                let p = common::softmax(&logits);
                for k in 0..classes {
                    let g = (p[k] - f32::from(k == c)) * weight;
                    add_into(&mut grad_w[k], u, g);
                    grad_b[k] += g;
                }
            }
        }
        for k in 0..classes {
            for (w, g) in fitted.weight[k].iter_mut().zip(&grad_w[k]) {
                *w -= LOGISTIC_RATE * (g + LOGISTIC_DECAY * *w);
            }
            fitted.bias[k] -= LOGISTIC_RATE * grad_b[k];
        }
    }
}

/// Share of a class's enrolled examples on which its kept-head row must outscore the trained
/// classes (leave-one-out), and the margin on top.
const KEEP_QUANTILE: f64 = 0.9;
const KEEP_MARGIN: f32 = 1.05;

/// The enrolled classes as rows of a kept trained head (`--keep-classes`). The trained rows read
/// raw embeddings: `w·f + b`. A new row is the class prototype direction `p` (normalised mean
/// of the normalised examples) with the trained rows' mean bias, so its logit is
/// `a |f| cos(f, p) + b`, a linear logit in the same softmax as the trained ones. Its scale `a`
/// is calibrated against the trained head itself: the smallest scale at which the new class
/// beats the trained head's top logit on 90 % of its own examples (each scored against the
/// prototype of the others, as an unseen image would be), plus 5 %. Weight imprinting (Qi,
/// Brown & Lowe, CVPR 2018) scales to the trained rows' mean norm instead; measured here that
/// let a new class take over unrelated ImageNet photos, since an embedding is far closer in
/// angle to a class mean than to any trained weight row.
pub fn imprint(
    kept: &[Vec<f32>],
    kept_bias: &[f32],
    classes: &[Vec<Vec<f32>>],
    dim: usize,
) -> (Vec<Vec<f32>>, Vec<f32>) {
    let mean_norm = kept.iter().map(|w| dot(w, w).sqrt()).sum::<f32>() / kept.len().max(1) as f32;
    let bias = kept_bias.iter().sum::<f32>() / kept_bias.len().max(1) as f32;
    let rows = classes
        .iter()
        .map(|c| {
            let units: Vec<Vec<f32>> = c.iter().map(|e| normalize(e)).collect();
            let proto = prototype(&units.iter().map(Vec::as_slice).collect::<Vec<_>>(), dim);
            let mut sum = vec![0f32; dim];
            units.iter().for_each(|u| add_into(&mut sum, u, 1.0));
            let mut needed: Vec<f32> = c
                .iter()
                .zip(&units)
                .map(|(f, u)| {
                    let mut others = sum.clone();
                    if units.len() > 1 {
                        add_into(&mut others, u, -1.0);
                    }
                    let cos = dot(u, &normalize(&others)).max(1e-3);
                    let top = kept.iter().zip(kept_bias).map(|(w, b)| dot(w, f) + b).fold(f32::MIN, f32::max);
                    (top - bias) / (dot(f, f).sqrt() * cos)
                })
                .collect();
            needed.sort_by(f32::total_cmp);
            let at = ((needed.len() as f64 * KEEP_QUANTILE).ceil() as usize).clamp(1, needed.len()) - 1;
            let scale = (needed[at] * KEEP_MARGIN).max(0.05 * mean_norm);
            proto.iter().map(|v| v * scale).collect()
        })
        .collect();
    (rows, vec![bias; classes.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well separated clusters in 4-D with a little spread.
    fn clusters() -> Vec<Vec<Vec<f32>>> {
        vec![
            vec![vec![5.0, 0.3, 0.0, 0.1], vec![4.0, -0.2, 0.1, 0.0], vec![6.0, 0.0, -0.3, 0.2]],
            vec![vec![0.2, 3.0, 0.0, 0.1], vec![-0.1, 2.0, 0.2, 0.0], vec![0.0, 4.0, 0.1, -0.2]],
        ]
    }

    fn scores(f: &Fitted, x: &[f32]) -> Vec<f32> {
        let u = normalize(x);
        f.weight.iter().zip(&f.bias).map(|(w, b)| dot(w, &u) + b).collect()
    }

    #[test]
    fn both_heads_separate_clusters_and_prototypes_are_scaled_cosines() {
        for kind in [HeadKind::Prototype, HeadKind::Logistic] {
            let f = fit(kind, &clusters(), 4);
            assert_eq!(f.loo_accuracy, Some(1.0));
            assert_eq!(common::argmax(&scores(&f, &[3.0, 0.5, 0.0, 0.0])), 0, "{kind}");
            assert_eq!(common::argmax(&scores(&f, &[0.5, 3.0, 0.0, 0.0])), 1, "{kind}");
        }
        let f = fit(HeadKind::Prototype, &clusters(), 4);
        for row in &f.weight {
            assert!((dot(row, row).sqrt() - f.temperature).abs() < 1e-4, "row norm is the temperature");
        }
        // Separable examples want a sharp softmax.
        assert!(f.temperature >= 8.0, "{}", f.temperature);
    }

    #[test]
    fn one_class_or_one_example_falls_back_to_the_default_temperature() {
        let one = fit(HeadKind::Logistic, &clusters()[..1], 4);
        assert_eq!((one.temperature, one.loo_accuracy, one.weight.len()), (DEFAULT_TEMPERATURE, None, 1));
        let single = vec![vec![vec![1.0, 0.0]], vec![vec![0.0, 1.0], vec![0.1, 1.0]]];
        assert_eq!(fit(HeadKind::Prototype, &single, 2).temperature, DEFAULT_TEMPERATURE);
    }

    #[test]
    fn kept_head_rows_win_on_their_examples_and_not_on_the_trained_classes() {
        // Trained classes along axes 2 and 3; the enrolled clusters along axes 0 and 1.
        let kept = vec![vec![0.0, 0.0, 3.0, 0.0], vec![0.0, 0.0, 0.0, 3.0]];
        let kept_bias = [1.0, 3.0];
        let (rows, bias) = imprint(&kept, &kept_bias, &clusters(), 4);
        assert_eq!(bias, [2.0, 2.0]);
        let logits = |f: &[f32]| -> Vec<f32> {
            let mut z: Vec<f32> = kept.iter().zip(&kept_bias).map(|(w, b)| dot(w, f) + b).collect();
            z.extend(rows.iter().map(|w| dot(w, f) + 2.0));
            z
        };
        for (c, class) in clusters().iter().enumerate() {
            for f in class {
                assert_eq!(common::argmax(&logits(f)), 2 + c, "{f:?}: {:?}", logits(f));
            }
        }
        // Images of the trained classes keep their class.
        assert_eq!(common::argmax(&logits(&[0.5, 0.5, 4.0, 0.0])), 0);
        assert_eq!(common::argmax(&logits(&[0.5, 0.2, 0.0, 4.0])), 1);
    }
}
