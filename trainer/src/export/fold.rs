//! Graph rewrites that turn the training-shaped graph into the inference-shaped one before
//! it is written: BatchNorm folded into the preceding Conv (one Conv with bias), so the file
//! carries no BN and runtimes do one op per layer.

use super::graph::{Constant, Graph, Op};

/// Inference-mode BatchNorm parameters (per output channel).
#[derive(Debug, Clone, Copy)]
pub struct BatchNormParams<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub eps: f32,
}

/// Folds `BN(conv(x, w) + b)` into `conv(x, w') + b'` (w: OIHW, one BN channel per O):
/// `s = gamma / sqrt(var + eps)`, `w' = w * s`, `b' = (b - mean) * s + beta`.
/// Computed in f64 so the folded layer matches the unfolded one to f32 rounding.
pub fn fold_conv_bn(weight: &Constant, bias: Option<&Constant>, bn: BatchNormParams<'_>) -> (Constant, Constant) {
    let out = weight.shape[0];
    let per_out = weight.values.len() / out.max(1);
    let scale: Vec<f64> = (0..out).map(|o| bn.gamma[o] as f64 / (bn.var[o] as f64 + bn.eps as f64).sqrt()).collect();
    let values = weight.values.iter().enumerate().map(|(i, w)| (*w as f64 * scale[i / per_out]) as f32).collect();
    let bias_values = (0..out)
        .map(|o| {
            let b = bias.map_or(0.0, |b| b.values[o] as f64);
            ((b - bn.mean[o] as f64) * scale[o] + bn.beta[o] as f64) as f32
        })
        .collect();
    (Constant { shape: weight.shape.clone(), values }, Constant { shape: vec![out], values: bias_values })
}

/// Folds every BatchNorm that directly follows a Conv whose output nothing else reads.
/// The folded Conv takes over the BatchNorm's output name, so later ops are unchanged.
/// A BatchNorm with any other producer is left in place (written as ONNX BatchNormalization).
pub fn fold_batchnorms(graph: &Graph) -> Graph {
    let readers = |tensor: &str| graph.ops.iter().filter(|op| op.inputs().contains(&tensor)).count();
    let mut ops: Vec<Op> = Vec::with_capacity(graph.ops.len());
    for op in &graph.ops {
        if let Op::BatchNorm { input, output, gamma, beta, mean, var, eps, .. } = op {
            let foldable = matches!(ops.last(), Some(Op::Conv { output: conv_out, .. }) if conv_out == input)
                && readers(input) == 1
                && graph.output != *input;
            if foldable && let Some(Op::Conv { weight, bias, output: conv_out, .. }) = ops.last_mut() {
                let bn = BatchNormParams { gamma, beta, mean, var, eps: *eps };
                let (w, b) = fold_conv_bn(weight, bias.as_ref(), bn);
                *weight = w;
                *bias = Some(b);
                *conv_out = output.clone();
                continue;
            }
        }
        ops.push(op.clone());
    }
    Graph { ops, ..graph.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::reference;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn conv2d(x: &[f32], chw: [usize; 3], weight: &Constant, bias: Option<&Constant>, pad: usize) -> Vec<f32> {
        let x = reference::Chw { shape: chw, values: x.to_vec() };
        reference::conv2d(&x, weight, bias, [1, 1], [pad; 4], 1).values
    }

    fn random(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    #[test]
    fn folded_conv_equals_conv_then_batchnorm_on_random_data() {
        let mut rng = StdRng::seed_from_u64(7);
        let (c, o, k, h, w) = (3, 5, 3, 9, 8);
        let x = random(&mut rng, c * h * w, -2.0, 2.0);
        let weight = Constant { shape: vec![o, c, k, k], values: random(&mut rng, o * c * k * k, -1.0, 1.0) };
        let bias = Constant { shape: vec![o], values: random(&mut rng, o, -0.5, 0.5) };
        let (gamma, beta) = (random(&mut rng, o, 0.2, 2.0), random(&mut rng, o, -1.0, 1.0));
        let (mean, var) = (random(&mut rng, o, -1.0, 1.0), random(&mut rng, o, 0.01, 3.0));
        let eps = 1e-3;

        let plane = (h + 2 - k + 1) * (w + 2 - k + 1);
        let conv_then_bn = |b: Option<&Constant>| -> Vec<f32> {
            let y = conv2d(&x, [c, h, w], &weight, b, 1);
            y.iter()
                .enumerate()
                .map(|(i, v)| {
                    let ch = i / plane;
                    (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
                })
                .collect()
        };
        for with_bias in [true, false] {
            let b = with_bias.then_some(&bias);
            let expected = conv_then_bn(b);
            let bn = BatchNormParams { gamma: &gamma, beta: &beta, mean: &mean, var: &var, eps };
            let (fw, fb) = fold_conv_bn(&weight, b, bn);
            let folded = conv2d(&x, [c, h, w], &fw, Some(&fb), 1);
            let max_diff = folded.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(max_diff < 1e-4, "with_bias={with_bias}: max diff {max_diff}");
            // The BN really changed the numbers: the test would catch a no-op fold.
            let plain = conv2d(&x, [c, h, w], &weight, b, 1);
            assert!(plain.iter().zip(&expected).any(|(a, b)| (a - b).abs() > 0.1));
        }
    }

    #[test]
    fn fold_pass_removes_batchnorm_after_conv_and_keeps_names() {
        let conv = |input: &str, output: &str| Op::Conv {
            name: format!("c_{output}"),
            input: input.into(),
            output: output.into(),
            weight: Constant { shape: vec![2, 2, 1, 1], values: vec![1.0, 0.0, 0.0, 1.0] },
            bias: None,
            stride: [1, 1],
            pads: [0; 4],
            groups: 1,
        };
        let bn = |input: &str, output: &str| Op::BatchNorm {
            name: format!("bn_{output}"),
            input: input.into(),
            output: output.into(),
            gamma: vec![2.0, 2.0],
            beta: vec![1.0, 1.0],
            mean: vec![0.0, 0.0],
            var: vec![1.0, 1.0],
            eps: 0.0,
        };
        let g = Graph {
            input: "input".into(),
            input_chw: [2, 4, 4],
            output: "y".into(),
            ops: vec![
                conv("input", "a"),
                bn("a", "b"),
                Op::Relu6 { input: "b".into(), output: "c".into() },
                // This conv output is also read by the Add: folding would change the Add's input.
                conv("c", "d"),
                bn("d", "e"),
                Op::Add { a: "d".into(), b: "e".into(), output: "y".into() },
            ],
        };
        let f = fold_batchnorms(&g);
        assert_eq!(f.ops.len(), 5);
        match &f.ops[0] {
            Op::Conv { output, weight, bias, .. } => {
                assert_eq!(output, "b");
                assert_eq!(weight.values, vec![2.0, 0.0, 0.0, 2.0]);
                assert_eq!(bias.as_ref().map(|b| b.values.clone()), Some(vec![1.0, 1.0]));
            }
            other => panic!("expected the folded conv, got {other:?}"),
        }
        assert!(matches!(&f.ops[3], Op::BatchNorm { .. }), "shared conv output keeps its BN");
    }
}
