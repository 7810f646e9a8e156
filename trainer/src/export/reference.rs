//! A slow, obviously-correct interpreter of [`Graph`] (batch 1, f64 accumulation). Tests
//! compare tract running the written ONNX file against it, which checks the writer's
//! attribute conventions (pads order, groups, Gemm transpose) independently of burn.

use std::collections::HashMap;

use super::graph::{Constant, Graph, Op};

/// A tensor of one image: shape [C, H, W] (or [C] after Flatten/Gemm, stored as [C, 1, 1]).
#[derive(Debug, Clone)]
pub struct Chw {
    pub shape: [usize; 3],
    pub values: Vec<f32>,
}

/// Runs the graph on one image (`input.len() == C*H*W` of `graph.input_chw`).
pub fn eval(graph: &Graph, input: &[f32]) -> Vec<f32> {
    let mut env: HashMap<String, Chw> = HashMap::new();
    env.insert(graph.input.clone(), Chw { shape: graph.input_chw, values: input.to_vec() });
    for op in &graph.ops {
        let get = |t: &str| env.get(t).cloned().unwrap_or_else(|| panic!("tensor {t} not computed yet"));
        let map = |t: &str, f: &dyn Fn(f32) -> f32| {
            let x = get(t);
            Chw { shape: x.shape, values: x.values.iter().map(|v| f(*v)).collect() }
        };
        let y = match op {
            Op::Conv { input, weight, bias, stride, pads, groups, .. } => {
                conv2d(&get(input), weight, bias.as_ref(), *stride, *pads, *groups)
            }
            Op::BatchNorm { input, gamma, beta, mean, var, eps, .. } => {
                let x = get(input);
                let plane = x.shape[1] * x.shape[2];
                let values = x
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let c = i / plane;
                        (v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c]
                    })
                    .collect();
                Chw { shape: x.shape, values }
            }
            Op::Relu6 { input, .. } => map(input, &|v| v.clamp(0.0, 6.0)),
            Op::Relu { input, .. } => map(input, &|v| v.max(0.0)),
            Op::Sigmoid { input, .. } => map(input, &|v| 1.0 / (1.0 + (-v).exp())),
            Op::Swish { input, .. } => map(input, &|v| v / (1.0 + (-v).exp())),
            Op::Add { a, b, .. } => binary(&get(a), &get(b), |x, y| x + y),
            Op::Mul { a, b, .. } => binary(&get(a), &get(b), |x, y| x * y),
            Op::GlobalAveragePool { input, .. } => {
                let x = get(input);
                let plane = x.shape[1] * x.shape[2];
                let values = x
                    .values
                    .chunks(plane)
                    .map(|c| (c.iter().map(|v| *v as f64).sum::<f64>() / plane as f64) as f32)
                    .collect();
                Chw { shape: [x.shape[0], 1, 1], values }
            }
            Op::Flatten { input, .. } => {
                let x = get(input);
                Chw { shape: [x.values.len(), 1, 1], values: x.values }
            }
            Op::Gemm { input, weight, bias, .. } => {
                let x = get(input);
                let (out, inp) = (weight.shape[0], weight.shape[1]);
                let values = (0..out)
                    .map(|o| {
                        let dot: f64 = (0..inp).map(|i| weight.values[o * inp + i] as f64 * x.values[i] as f64).sum();
                        (dot + bias.values[o] as f64) as f32
                    })
                    .collect();
                Chw { shape: [out, 1, 1], values }
            }
        };
        env.insert(op.output().to_string(), y);
    }
    env.remove(&graph.output).map(|t| t.values).unwrap_or_default()
}

/// Element-wise with [C,1,1] broadcast over [C,H,W] (either side).
fn binary(a: &Chw, b: &Chw, f: fn(f32, f32) -> f32) -> Chw {
    let (big, small, swapped) = if a.values.len() >= b.values.len() { (a, b, false) } else { (b, a, true) };
    let plane = big.shape[1] * big.shape[2];
    let values = big
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = if small.values.len() == big.values.len() { small.values[i] } else { small.values[i / plane] };
            if swapped { f(s, *v) } else { f(*v, s) }
        })
        .collect();
    Chw { shape: big.shape, values }
}

/// NCHW convolution with groups, strides and [top, left, bottom, right] zero padding.
pub fn conv2d(
    x: &Chw,
    weight: &Constant,
    bias: Option<&Constant>,
    stride: [usize; 2],
    pads: [usize; 4],
    groups: usize,
) -> Chw {
    let [c, h, w] = x.shape;
    let (o, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3]);
    let oh = (h + pads[0] + pads[2] - kh) / stride[0] + 1;
    let ow = (w + pads[1] + pads[3] - kw) / stride[1] + 1;
    let og = o / groups;
    debug_assert_eq!(cg * groups, c);
    let mut y = vec![0f32; o * oh * ow];
    for oc in 0..o {
        let g = oc / og;
        for yy in 0..oh {
            for xx in 0..ow {
                let mut acc = bias.map_or(0.0, |b| b.values[oc] as f64);
                for icg in 0..cg {
                    let ic = g * cg + icg;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (yy * stride[0] + ky) as isize - pads[0] as isize;
                            let ix = (xx * stride[1] + kx) as isize - pads[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xv = x.values[(ic * h + iy as usize) * w + ix as usize] as f64;
                            acc += xv * weight.values[((oc * cg + icg) * kh + ky) * kw + kx] as f64;
                        }
                    }
                }
                y[(oc * oh + yy) * ow + xx] = acc as f32;
            }
        }
    }
    Chw { shape: [o, oh, ow], values: y }
}
