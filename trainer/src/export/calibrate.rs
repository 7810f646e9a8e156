//! Post-training calibration: activation ranges for the int8 QDQ export, measured by running
//! the exported fp32 ONNX file in tract with the tensors to quantize exposed as extra
//! outputs (so the ranges are those of the exact graph that is shipped, BN already folded).
//!
//! minmax uses the observed range; percentile clips at the 99.99th percentile of |x|;
//! entropy picks the clipping threshold minimising the KL divergence between the histogram
//! and its quantized version (TensorRT's method). The last two need a second pass, since
//! the histogram bins are laid out from the first pass's ranges.

use std::collections::BTreeMap;
use std::sync::Arc;

use models::manifest::CalibrationMethod;
use tract_onnx::prelude::*;

use super::onnx::QuantPlan;
use super::quantize::ActQuant;
use crate::error::TrainerError;

/// Percentile of |x| kept by the percentile method.
pub const PERCENTILE: f64 = 99.99;
const HISTOGRAM_BINS: usize = 2048;

/// Runs an ONNX model in tract with chosen tensors as outputs.
pub struct TensorProbe {
    plan: Arc<TypedRunnableModel>,
    shape: [usize; 4],
}

fn tract_err(what: &str) -> impl Fn(TractError) -> TrainerError + '_ {
    move |e| TrainerError::ExportTract { what: what.to_string(), reason: format!("{e:#}") }
}

impl TensorProbe {
    /// `outputs`: tensor names of the ONNX graph (the input's name is allowed too).
    pub fn new(onnx: &[u8], chw: [usize; 3], outputs: &[String]) -> Result<Self, TrainerError> {
        let err = tract_err("calibration");
        let shape = [1, chw[0], chw[1], chw[2]];
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
            .and_then(|m| m.with_outputs_by_name(outputs))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(TensorProbe { plan, shape })
    }

    /// The output tensors for one image, flattened, in the order given to `new`.
    pub fn run(&self, image: &[f32]) -> Result<Vec<Vec<f32>>, TrainerError> {
        let err = tract_err("calibration");
        let input = Tensor::from_shape(&self.shape, image).map_err(&err)?;
        let outputs = self.plan.run(tvec!(input.into_tvalue())).map_err(&err)?;
        outputs
            .iter()
            .map(|t| t.to_plain_array_view::<f32>().map(|v| v.iter().copied().collect()).map_err(&err))
            .collect()
    }
}

/// Observed statistics of one tensor.
#[derive(Debug, Clone)]
struct Stats {
    min: f32,
    max: f32,
    /// Counts of |x| over [0, max(|min|, |max|)] (second pass only).
    hist: Vec<u64>,
}

impl Stats {
    fn max_abs(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }
}

/// Computes the activation quantization of `tensors` from the calibration images.
pub fn calibrate(
    onnx: &[u8],
    chw: [usize; 3],
    tensors: &[String],
    images: &[Vec<f32>],
    method: CalibrationMethod,
) -> Result<QuantPlan, TrainerError> {
    if images.is_empty() {
        return Err(TrainerError::ExportInvalid("calibration needs at least one image".into()));
    }
    let probe = TensorProbe::new(onnx, chw, tensors)?;
    let mut stats: Vec<Stats> =
        tensors.iter().map(|_| Stats { min: f32::INFINITY, max: f32::NEG_INFINITY, hist: Vec::new() }).collect();
    for image in images {
        for (s, values) in stats.iter_mut().zip(probe.run(image)?) {
            for v in values {
                s.min = s.min.min(v);
                s.max = s.max.max(v);
            }
        }
    }
    if method != CalibrationMethod::Minmax {
        for s in &mut stats {
            s.hist = vec![0; HISTOGRAM_BINS];
        }
        for image in images {
            for (s, values) in stats.iter_mut().zip(probe.run(image)?) {
                let width = s.max_abs() / HISTOGRAM_BINS as f32;
                if width > 0.0 {
                    for v in values {
                        let bin = ((v.abs() / width) as usize).min(HISTOGRAM_BINS - 1);
                        s.hist[bin] += 1;
                    }
                }
            }
        }
    }
    let mut plan = BTreeMap::new();
    for (name, s) in tensors.iter().zip(&stats) {
        let (lo, hi) = clipped_range(s, method);
        plan.insert(name.clone(), ActQuant::from_range(lo, hi));
    }
    Ok(plan)
}

/// The range to quantize a tensor over: observed, or clipped symmetrically at a threshold
/// on |x| chosen from the histogram.
fn clipped_range(s: &Stats, method: CalibrationMethod) -> (f32, f32) {
    let max_abs = s.max_abs();
    let signed = s.min < 0.0;
    let threshold_bins = match method {
        CalibrationMethod::Minmax => return (s.min, s.max),
        CalibrationMethod::Percentile => percentile_bins(&s.hist, PERCENTILE),
        // uint8 spends all 256 levels on a non-negative tensor, about half per side otherwise.
        CalibrationMethod::Entropy => entropy_bins(&s.hist, if signed { 128 } else { 256 }),
    };
    let t = max_abs * threshold_bins as f32 / s.hist.len().max(1) as f32;
    (s.min.max(-t), s.max.min(t))
}

/// Number of leading bins that hold `pct` percent of the counts.
fn percentile_bins(hist: &[u64], pct: f64) -> usize {
    let total: u64 = hist.iter().sum();
    let target = (total as f64 * pct / 100.0).ceil() as u64;
    let mut acc = 0;
    for (i, c) in hist.iter().enumerate() {
        acc += c;
        if acc >= target {
            return i + 1;
        }
    }
    hist.len()
}

/// TensorRT's entropy calibration: for each candidate threshold (in bins), the reference
/// distribution P is the histogram up to it with the outliers added to its last bin; Q is
/// P's in-range part merged into `levels` bins and spread back over P's non-empty bins.
/// Returns the threshold with the smallest KL(P || Q).
fn entropy_bins(hist: &[u64], levels: usize) -> usize {
    // Zero is exactly representable whatever the threshold, and after ReLU/ReLU6 it holds a
    // large share of all values: left in, that one bin dominates the divergence and drives
    // the threshold far too low (measured: 45% accuracy on a mobilenetv2 export). Leave it
    // out of the comparison.
    let mut owned = hist.to_vec();
    if let Some(first) = owned.first_mut() {
        *first = 0;
    }
    let hist = &owned[..];
    let n = hist.len();
    if n <= levels || hist.iter().all(|c| *c == 0) {
        return n;
    }
    let mut best = (f64::INFINITY, n);
    let mut p = vec![0f64; n];
    let mut q = vec![0f64; n];
    for i in levels..=n {
        let outliers: u64 = hist[i..].iter().sum();
        for (pj, h) in p[..i].iter_mut().zip(hist) {
            *pj = *h as f64;
        }
        p[i - 1] += outliers as f64;
        let merged = i as f64 / levels as f64;
        for j in 0..levels {
            let start = (j as f64 * merged) as usize;
            let end = if j + 1 == levels { i } else { ((j + 1) as f64 * merged) as usize };
            let sum: f64 = hist[start..end].iter().map(|c| *c as f64).sum();
            let nonzero = hist[start..end].iter().filter(|c| **c > 0).count();
            for k in start..end {
                q[k] = if hist[k] > 0 { sum / nonzero as f64 } else { 0.0 };
            }
        }
        let kl = kl_divergence(&p[..i], &q[..i]);
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1
}

/// KL(P || Q) of two unnormalised histograms; empty Q bins where P has mass are smoothed
/// (as MXNet/TensorRT do) instead of making the divergence infinite.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    const EPS: f64 = 1e-4;
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(q)
        .filter(|(pv, _)| **pv > 0.0)
        .map(|(pv, qv)| {
            let (pn, qn) = (pv / sp, (qv / sq).max(EPS / q.len() as f64));
            pn * (pn / qn).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(values: &[f32]) -> Stats {
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let max_abs = min.abs().max(max.abs());
        let mut hist = vec![0; HISTOGRAM_BINS];
        for v in values {
            hist[((v.abs() / (max_abs / HISTOGRAM_BINS as f32)) as usize).min(HISTOGRAM_BINS - 1)] += 1;
        }
        Stats { min, max, hist }
    }

    /// A bell-shaped sample with a few far outliers, like a real activation.
    fn with_outliers() -> Vec<f32> {
        let mut v: Vec<f32> =
            (0..100_000).map(|i| ((i % 1000) as f32 / 1000.0 - 0.5) * ((i % 7) as f32 / 7.0)).collect();
        v.extend([40.0, -35.0]);
        v
    }

    #[test]
    fn minmax_keeps_outliers_percentile_and_entropy_clip_them() {
        let s = stats_of(&with_outliers());
        assert_eq!(clipped_range(&s, CalibrationMethod::Minmax), (-35.0, 40.0));
        let (lo, hi) = clipped_range(&s, CalibrationMethod::Percentile);
        assert!(hi < 2.0 && lo > -2.0 && hi > 0.4, "percentile range {lo}..{hi}");
        let (lo, hi) = clipped_range(&s, CalibrationMethod::Entropy);
        assert!(hi < 5.0 && lo > -5.0 && hi > 0.2, "entropy range {lo}..{hi}");
    }

    #[test]
    fn entropy_keeps_the_whole_range_of_a_uniform_distribution() {
        let v: Vec<f32> = (0..50_000).map(|i| i as f32 / 50_000.0 * 6.0).collect();
        let (lo, hi) = clipped_range(&stats_of(&v), CalibrationMethod::Entropy);
        assert_eq!(lo, 0.0);
        assert!(hi > 5.5, "uniform data should not be clipped much: {hi}");
    }
}
