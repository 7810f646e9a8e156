//! The int8 arithmetic of the QDQ export: per-channel symmetric int8 weights, int32 biases,
//! per-tensor asymmetric uint8 activations, and which tensors get quantized.

use super::graph::{Constant, Graph, Op};

/// uint8 activation quantization: `x ≈ (q - zero_point) * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActQuant {
    pub scale: f32,
    pub zero_point: u8,
}

impl ActQuant {
    /// Parameters covering `[min, max]`, widened to include 0 so that zero (padding, ReLU
    /// output) is exact. A degenerate range gets scale 1 (every value then quantizes to 0).
    pub fn from_range(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let span = max - min;
        if !span.is_finite() || span <= f32::EPSILON {
            return ActQuant { scale: 1.0, zero_point: 0 };
        }
        let scale = span / 255.0;
        let zero_point = (-min / scale).round().clamp(0.0, 255.0) as u8;
        ActQuant { scale, zero_point }
    }

    /// Round trip through the quantized grid (what a QuantizeLinear→DequantizeLinear pair does).
    pub fn fake_quant(&self, x: f32) -> f32 {
        let q = ((x / self.scale).round_ties_even() + self.zero_point as f32).clamp(0.0, 255.0);
        (q - self.zero_point as f32) * self.scale
    }
}

/// A Conv/Gemm layer in int8: weights per output channel (axis 0), symmetric, zero point 0.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedLayer {
    pub weight: Vec<i8>,
    pub weight_scales: Vec<f32>,
    /// int32 with scale `input_scale * weight_scales[o]` (zero point 0).
    pub bias: Option<Vec<i32>>,
}

/// Quantizes a layer whose input has activation scale `input_scale`. Weights use [-127, 127]
/// (symmetric, so int8 x uint8 products never saturate VNNI-style accumulators). A channel
/// whose bias would not fit int32 at `input_scale * weight_scale` gets a larger weight scale.
pub fn quantize_layer(weight: &Constant, bias: Option<&Constant>, input_scale: f32, weight_bits: u8) -> QuantizedLayer {
    // 8 bits: [-127, 127]; 7 bits: [-63, 63].
    let q_max = ((1u32 << (weight_bits.clamp(2, 8) - 1)) - 1) as f32;
    let out = weight.shape.first().copied().unwrap_or(1).max(1);
    let per_out = weight.values.len() / out;
    let mut scales: Vec<f32> = weight
        .values
        .chunks(per_out.max(1))
        .map(|ch| {
            let max_abs = ch.iter().fold(0f32, |m, v| m.max(v.abs()));
            if max_abs > 0.0 { max_abs / q_max } else { 1.0 }
        })
        .collect();
    if let Some(b) = bias {
        let limit = i32::MAX as f64;
        for (s, bv) in scales.iter_mut().zip(&b.values) {
            let needed = (bv.abs() as f64 / (input_scale as f64 * limit)) as f32;
            if needed > *s {
                *s = needed * 1.01;
            }
        }
    }
    let weight_q = weight
        .values
        .iter()
        .enumerate()
        .map(|(i, w)| (w / scales[i / per_out.max(1)]).round_ties_even().clamp(-q_max, q_max) as i8)
        .collect();
    let bias_q = bias.map(|b| {
        b.values
            .iter()
            .zip(&scales)
            .map(|(bv, s)| {
                let q = (*bv as f64 / (input_scale as f64 * *s as f64)).round();
                q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
            })
            .collect()
    });
    QuantizedLayer { weight: weight_q, weight_scales: scales, bias: bias_q }
}

/// The activation tensors the QDQ form quantizes: the graph input and every tensor a
/// Conv, Gemm, Add or GlobalAveragePool reads (onnxruntime's quantizer convention; Mul,
/// Sigmoid and Flatten stay float between them). In graph order, without duplicates.
pub fn quantized_tensors(graph: &Graph) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |t: &str| {
        if !out.iter().any(|o| o == t) && t != graph.output {
            out.push(t.to_string());
        }
    };
    for op in &graph.ops {
        if matches!(op, Op::Conv { .. } | Op::Gemm { .. } | Op::Add { .. } | Op::GlobalAveragePool { .. }) {
            op.inputs().into_iter().for_each(&mut push);
        }
    }
    // The graph input first: writers emit its Q/DQ before any op.
    if let Some(i) = out.iter().position(|t| *t == graph.input) {
        let input = out.remove(i);
        out.insert(0, input);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_range_keeps_zero_exact_and_covers_the_range() {
        let q = ActQuant::from_range(-1.0, 3.0);
        assert_eq!(q.fake_quant(0.0), 0.0);
        assert!((q.fake_quant(3.0) - 3.0).abs() <= q.scale / 2.0 + 1e-6);
        assert!((q.fake_quant(-1.0) + 1.0).abs() <= q.scale / 2.0 + 1e-6);
        assert!((q.fake_quant(10.0) - q.fake_quant(3.0)).abs() < 1e-6, "saturates above the range");
        let relu = ActQuant::from_range(0.0, 6.0);
        assert_eq!(relu.zero_point, 0);
        assert_eq!(ActQuant::from_range(0.0, 0.0), ActQuant { scale: 1.0, zero_point: 0 });
    }

    #[test]
    fn per_channel_weights_and_bias_round_trip_within_half_a_step() {
        let w = Constant { shape: vec![2, 3], values: vec![0.5, -1.0, 0.25, 0.001, 0.002, -0.003] };
        let b = Constant { shape: vec![2], values: vec![0.3, -0.01] };
        let q = quantize_layer(&w, Some(&b), 0.02, 8);
        assert_eq!(q.weight[1], -127, "largest magnitude maps to the end of the range");
        assert_eq!(q.weight[5], -127, "each channel has its own scale");
        for (i, wv) in w.values.iter().enumerate() {
            let back = q.weight[i] as f32 * q.weight_scales[i / 3];
            assert!((back - wv).abs() <= q.weight_scales[i / 3] / 2.0 + 1e-9, "{i}: {back} vs {wv}");
        }
        let bq = q.bias.unwrap();
        for (o, bv) in bq.iter().enumerate() {
            let back = *bv as f32 * 0.02 * q.weight_scales[o];
            assert!((back - b.values[o]).abs() < 1e-6);
        }
    }

    #[test]
    fn huge_bias_raises_the_weight_scale_instead_of_overflowing() {
        let w = Constant { shape: vec![1, 1], values: vec![1e-9] };
        let b = Constant { shape: vec![1], values: vec![1e6] };
        let q = quantize_layer(&w, Some(&b), 1e-3, 8);
        let back = q.bias.unwrap()[0] as f64 * 1e-3 * q.weight_scales[0] as f64;
        assert!((back - 1e6).abs() / 1e6 < 1e-3, "{back}");
    }
}
