//! The fp32 ONNX file perch writes computes what burn computes: a classifier assembled from
//! the real MobileNetV2 / EfficientNet-Lite0 ImageNet weights and a freshly initialised head,
//! exported (BN folded, dropout dropped) and run in tract, gives burn's logits within 1e-4
//! on hymenoptera validation photos.
//!
//! Needs ../shared/weights (or PERCH_WEIGHTS) and ../shared/datasets (or PERCH_SHARED).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use models::{Backbone, ImageLimits, Preprocessor};
use trainer::backbone::BackboneNet;
use trainer::checkpoint::TrainedModel;
use trainer::export::calibrate::TensorProbe;
use trainer::export::onnx::{WriteOptions, to_onnx_bytes};
use trainer::head::Head;

fn shared_dir() -> PathBuf {
    std::env::var_os("PERCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn weights_dir() -> PathBuf {
    std::env::var_os("PERCH_WEIGHTS").map(PathBuf::from).unwrap_or_else(|| shared_dir().join("weights"))
}

/// The last `n` validation photos of each hymenoptera class.
fn photos(n: usize) -> Vec<PathBuf> {
    let val = shared_dir().join("datasets/hymenoptera/val");
    let mut out = Vec::new();
    for class in ["ants", "bees"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(val.join(class))
            .unwrap_or_else(|e| panic!("{}: {e}", val.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        out.extend(files.into_iter().rev().take(n));
    }
    out
}

/// burn's and tract's logits of the exported model for each photo.
fn burn_and_tract(
    model: &TrainedModel,
    kind: Backbone,
    photos: &[PathBuf],
    device: &Device,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let p = kind.preprocessing();
    let graph = trainer::export::build_graph(model, [p.height as usize, p.width as usize]);
    assert!(
        !graph.ops.iter().any(|op| matches!(op, trainer::export::graph::Op::BatchNorm { .. })),
        "every BatchNorm is folded into its conv"
    );
    let (bytes, _) = to_onnx_bytes(&graph, &WriteOptions::fp32()).unwrap();
    let probe = TensorProbe::new(&bytes, graph.input_chw, &["logits".to_string()]).unwrap();
    let mut pre = Preprocessor::new(p);
    photos
        .iter()
        .map(|photo| {
            let x = pre.tensor_from_file(photo, ImageLimits::default()).unwrap();
            let tract = probe.run(&x).unwrap().remove(0);
            let input = Tensor::<4>::from_data(TensorData::new(x, [1, 3, 224, 224]), device);
            let burn: Vec<f32> = model.logits(input).into_data().try_into_vec::<f32>().unwrap();
            (burn, tract)
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn check(kind: Backbone) {
    let device = Device::flex();
    let backbone = BackboneNet::load(kind, Some(&weights_dir()), &device).unwrap();
    let head = Head::new(kind.spec().feature_dim, 3, 0.2, &device).unwrap();
    let model = TrainedModel { backbone, head };
    for (burn, tract) in burn_and_tract(&model, kind, &photos(2), &device) {
        assert_eq!(tract.len(), 3);
        let diff = max_diff(&burn, &tract);
        eprintln!("{kind}: max |burn - tract| = {diff:.2e}");
        assert!(diff <= 1e-4, "{kind}: burn {burn:?} vs tract {tract:?}");
    }
}

#[test]
fn mobilenetv2_export_matches_burn() {
    check(Backbone::MobileNetV2);
}

#[test]
fn efficientnet_lite0_export_matches_burn() {
    check(Backbone::EfficientNetLite0);
}

/// EfficientNet-B0 (squeeze-excite, swish): no ImageNet weights here, so random init; the
/// export must still compute what burn computes.
#[test]
fn efficientnet_b0_random_init_export_matches_burn() {
    let device = Device::flex();
    let kind = Backbone::EfficientNetB0;
    let model = TrainedModel {
        backbone: BackboneNet::new(kind, &device),
        head: Head::new(kind.spec().feature_dim, 2, 0.0, &device).unwrap(),
    };
    for (burn, tract) in burn_and_tract(&model, kind, &photos(1)[..1], &device) {
        let scale = burn.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        assert!(max_diff(&burn, &tract) <= 1e-4 * scale, "burn {burn:?} vs tract {tract:?}");
    }
}
