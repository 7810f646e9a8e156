//! One pass over cached rows: a training epoch (seeded shuffle and view choice, forward, loss,
//! backward, step) and an evaluation (view 0 of each image, inference mode). Generic over the
//! module being trained: the head alone, or the top backbone stages with the head.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::math::argmax_rows;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::backbone::BackboneNet;
use crate::cache::Extracted;
use crate::checkpoint::TrainedModel;
use crate::head::{Head, tensor_values};

/// Cached inputs of one split for the trainable part: pooled features (head phase) or boundary
/// activations (fine-tune phase), `views` rows per image.
pub(super) struct Rows<'a> {
    data: &'a [f32],
    row_len: usize,
    views: usize,
    labels: Vec<usize>,
}

impl<'a> Rows<'a> {
    pub(super) fn features(e: &'a Extracted) -> Self {
        Rows {
            data: &e.features,
            row_len: e.feat_dim,
            views: e.views,
            labels: e.samples.iter().map(|s| s.label).collect(),
        }
    }

    pub(super) fn activations(e: &'a Extracted) -> Self {
        Rows {
            data: &e.activations,
            row_len: e.act_len(),
            views: e.views,
            labels: e.samples.iter().map(|s| s.label).collect(),
        }
    }

    /// Images (not rows: an image has `views` rows).
    pub(super) fn images(&self) -> usize {
        self.labels.len()
    }

    fn row(&self, image: usize, view: usize) -> &[f32] {
        let r = image * self.views + view;
        &self.data[r * self.row_len..(r + 1) * self.row_len]
    }
}

/// How a batch of cached rows becomes logits for the module being trained.
pub(super) type Forward<'f, M> = &'f dyn Fn(&M, Vec<f32>, usize, &Device) -> Tensor<2>;

/// How a pass runs its batches: forward, loss, device, batch size.
pub(super) struct Pass<'a, M> {
    pub forward: Forward<'a, M>,
    pub loss: &'a CrossEntropyLoss,
    pub device: &'a Device,
    pub batch: usize,
}

pub(super) struct EpochStats {
    pub loss: f64,
    pub acc: f64,
}

fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(v, [labels.len()]), device)
}

/// One training epoch: seeded shuffle and view choice, forward, loss, backward, step.
pub(super) fn train_epoch<M: Module>(
    mut model: M,
    optim: &mut ModuleOptimizer,
    lr: f64,
    rows: &Rows,
    pass: &Pass<M>,
    rng: &mut StdRng,
    pb: &ProgressBar,
) -> (M, EpochStats) {
    let mut order: Vec<(usize, usize)> = (0..rows.images()).map(|i| (i, rng.random_range(0..rows.views))).collect();
    order.shuffle(rng);
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
    let start = Instant::now();
    for chunk in order.chunks(pass.batch) {
        let mut x = Vec::with_capacity(chunk.len() * rows.row_len);
        let labels: Vec<usize> = chunk.iter().map(|&(i, _)| rows.labels[i]).collect();
        for &(i, v) in chunk {
            x.extend_from_slice(rows.row(i, v));
        }
        let logits = (pass.forward)(&model, x, chunk.len(), pass.device);
        let classes = logits.dims()[1];
        let loss = pass.loss.forward(logits.clone(), labels_tensor(&labels, pass.device));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        loss_sum += loss.into_scalar::<f32>() as f64 * chunk.len() as f64;
        let preds = argmax_rows(&tensor_values(logits.detach()), classes);
        correct += preds.iter().zip(&labels).filter(|(p, l)| p == l).count();
        seen += chunk.len();
        pb.inc(chunk.len() as u64);
        pb.set_message(format!(
            "loss {:.4} acc {:.3} {:.0} img/s",
            loss_sum / seen as f64,
            correct as f64 / seen as f64,
            seen as f64 / start.elapsed().as_secs_f64().max(1e-9)
        ));
    }
    (model, EpochStats { loss: loss_sum / seen.max(1) as f64, acc: correct as f64 / seen.max(1) as f64 })
}

/// Loss, accuracy and logits over a split (view 0 of each image), in inference mode.
pub(super) fn evaluate<M: Module>(model: &M, rows: &Rows, pass: &Pass<M>) -> (EpochStats, Vec<f32>) {
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let mut all = Vec::new();
    let n = rows.images();
    let batch = pass.batch.max(1);
    for start in (0..n).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
        let mut x = Vec::with_capacity(idx.len() * rows.row_len);
        for &i in &idx {
            x.extend_from_slice(rows.row(i, 0));
        }
        let labels: Vec<usize> = idx.iter().map(|&i| rows.labels[i]).collect();
        let logits = (pass.forward)(model, x, idx.len(), pass.device);
        let classes = logits.dims()[1];
        let loss = pass.loss.forward(logits.clone(), labels_tensor(&labels, pass.device));
        loss_sum += loss.into_scalar::<f32>() as f64 * idx.len() as f64;
        let values = tensor_values(logits);
        correct += argmax_rows(&values, classes).iter().zip(&labels).filter(|(p, l)| p == l).count();
        all.extend(values);
    }
    (EpochStats { loss: loss_sum / n.max(1) as f64, acc: correct as f64 / n.max(1) as f64 }, all)
}

/// The epoch's own random stream (shuffle, view choice): a resumed run draws the same numbers.
pub(super) fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

pub(super) fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Head phase forward from pooled features.
pub(super) fn head_forward(head: &Head, x: Vec<f32>, n: usize, device: &Device) -> Tensor<2> {
    let d = x.len() / n.max(1);
    head.forward(Tensor::<2>::from_data(TensorData::new(x, [n, d]), device))
}

/// Fine-tune phase forward from boundary activations: top stages, pool, head.
pub(super) fn top_forward(
    model: &TrainedModel,
    boundary: usize,
    shape: &[usize],
    x: Vec<f32>,
    n: usize,
    device: &Device,
) -> Tensor<2> {
    let t = Tensor::<4>::from_data(TensorData::new(x, [n, shape[0], shape[1], shape[2]]), device);
    let top = model.backbone.forward_stages(t, boundary..model.backbone.num_stages());
    model.head.forward(BackboneNet::pool(top))
}
