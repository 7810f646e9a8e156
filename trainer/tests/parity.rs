//! Parity: burn's backbones with the reference ImageNet weights compute the same logits as the
//! reference ONNX models run through tract, on real photos preprocessed by perch's one
//! preprocessing. This pins down architecture, weight naming/layout, TF-SAME padding, BN
//! epsilon and the classifier transpose all at once.
//!
//! Needs ../shared/weights (or PERCH_WEIGHTS) and ../shared/datasets (or PERCH_SHARED).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, TensorData};
use models::{Backbone, ImageLimits, Preprocessor};
use tract_onnx::prelude::*;
use trainer::backbone::BackboneNet;

fn shared_dir() -> PathBuf {
    std::env::var_os("PERCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn weights_dir() -> PathBuf {
    std::env::var_os("PERCH_WEIGHTS").map(PathBuf::from).unwrap_or_else(|| shared_dir().join("weights"))
}

/// A few real photos: ImageNet photos from the committed fixtures (if present) and the first
/// images of both hymenoptera validation classes.
fn photos() -> Vec<PathBuf> {
    let mut photos = Vec::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/photos");
    let mut first_images = |dir: &Path, n: usize| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| models::preprocess::is_image_path(p)).collect()
            })
            .unwrap_or_default();
        files.sort();
        photos.extend(files.into_iter().take(n));
    };
    first_images(&fixtures, 3);
    let hymenoptera = shared_dir().join("datasets/hymenoptera/val");
    first_images(&hymenoptera.join("ants"), 1);
    first_images(&hymenoptera.join("bees"), 1);
    assert!(photos.len() >= 2, "no test photos found under {} or {}", fixtures.display(), hymenoptera.display());
    photos
}

fn top5(logits: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.truncate(5);
    idx
}

fn tract_logits(onnx: &Path, input: &[f32]) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_path(onnx)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot load {}: {e}", onnx.display()));
    let input = tract_ndarray::Array4::from_shape_vec((1, 3, 224, 224), input.to_vec()).unwrap();
    let out = plan.run(tvec!(Tensor::from(input).into_tvalue())).unwrap();
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

fn check_parity(kind: Backbone) {
    let spec = kind.spec();
    let dir = weights_dir();
    let device = Device::flex();
    let net = BackboneNet::load(kind, Some(&dir), &device).unwrap();
    assert_eq!(net.weights_sha256().as_deref(), spec.safetensors_sha256, "{kind}: weights sha256");

    let photos = photos();
    let mut pre = Preprocessor::new(kind.preprocessing());
    let inputs: Vec<Vec<f32>> =
        photos.iter().map(|p| pre.tensor_from_file(p, ImageLimits::default()).unwrap()).collect();

    // burn: all photos in one batch (the batched path the trainer uses).
    let batch: Vec<f32> = inputs.concat();
    let x = burn::tensor::Tensor::<4>::from_data(TensorData::new(batch, [inputs.len(), 3, 224, 224]), &device);
    let logits = net.imagenet_logits(x).unwrap();
    assert_eq!(logits.dims(), [inputs.len(), spec.imagenet_classes]);
    let burn_logits: Vec<f32> = logits.into_data().try_into_vec::<f32>().unwrap();

    let onnx = dir.join(spec.reference_onnx.unwrap());
    for (i, (photo, input)) in photos.iter().zip(&inputs).enumerate() {
        let reference = tract_logits(&onnx, input);
        let ours = &burn_logits[i * spec.imagenet_classes..(i + 1) * spec.imagenet_classes];
        let max_diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("{kind} {}: max |burn - tract| = {max_diff:.2e}, top-1 {}", photo.display(), top5(ours)[0]);
        assert!(max_diff <= 1e-3, "{kind} {}: max abs logit diff {max_diff}", photo.display());
        assert_eq!(top5(ours), top5(&reference), "{kind} {}: top-5 differ", photo.display());
    }
}

#[test]
fn mobilenetv2_matches_the_reference_onnx() {
    check_parity(Backbone::MobileNetV2);
}

#[test]
fn efficientnet_lite0_matches_the_reference_onnx() {
    check_parity(Backbone::EfficientNetLite0);
}

#[test]
fn efficientnet_b0_matches_the_reference_onnx() {
    check_parity(Backbone::EfficientNetB0);
}

/// The ImageNet head really classifies: a committed photo of a known class comes out on top
/// (fixture names carry the ImageNet index, e.g. imagenet_14_129.jpg = spoonbill).
#[test]
fn known_photos_get_their_imagenet_class() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/photos");
    let device = Device::flex();
    let net = BackboneNet::load(Backbone::EfficientNetLite0, Some(&weights_dir()), &device).unwrap();
    let mut pre = Preprocessor::new(Backbone::EfficientNetLite0.preprocessing());
    for name in ["imagenet_14_129.jpg", "imagenet_18_317.jpg"] {
        let path = fixtures.join(name);
        let input = pre.tensor_from_file(&path, ImageLimits::default()).unwrap();
        let x = burn::tensor::Tensor::<4>::from_data(TensorData::new(input, [1, 3, 224, 224]), &device);
        let logits: Vec<f32> = net.imagenet_logits(x).unwrap().into_data().try_into_vec::<f32>().unwrap();
        let label: usize = name.trim_end_matches(".jpg").rsplit('_').next().unwrap().parse().unwrap();
        assert_eq!(top5(&logits)[0], label, "{name}");
    }
}

/// The frozen pass's engines agree: burn, tract and (when its library is there) onnxruntime
/// give the same pooled features and the same activations at a fine-tuning boundary, on real
/// photos, for every backbone. The ONNX engines run the exporter's graph of the same weights
/// (BatchNorm folded), two workers at a time.
#[test]
fn frozen_pass_engines_agree_on_features_and_boundary_activations() {
    use trainer::frozen::{FrozenEngine, FrozenRequest, select};
    use trainer::run::DeviceKind;
    let device = Device::flex();
    let photos = photos();
    let ort_found = edge_runtime::engine::find_ort_library(None).is_ok();
    for kind in [Backbone::MobileNetV2, Backbone::EfficientNetLite0, Backbone::EfficientNetB0] {
        let net = BackboneNet::load(kind, Some(&weights_dir()), &device).unwrap().without_imagenet_classifier();
        let mut pre = Preprocessor::new(kind.preprocessing());
        let input: Vec<f32> =
            photos.iter().flat_map(|p| pre.tensor_from_file(p, ImageLimits::default()).unwrap()).collect();
        let n = photos.len();
        let boundary = Some(net.num_stages() - 2);
        let run = |engine: FrozenEngine| {
            let req = FrozenRequest { engine, device: DeviceKind::Flex, ort_lib: None, workers: 2 };
            let (runner, line) =
                select(&req, &net, &device, boundary).unwrap_or_else(|e| panic!("{kind} {engine}: {e}"));
            assert_eq!(runner.engine(), engine, "{line}");
            runner.run(&input, n, boundary).unwrap()
        };
        let reference = run(FrozenEngine::Burn);
        assert_eq!(reference.features.len(), n * net.feature_dim());
        let mut engines = vec![FrozenEngine::Tract];
        if ort_found {
            engines.push(FrozenEngine::Ort);
        } else {
            eprintln!("onnxruntime not found: the ort engine is not compared (set ORT_DYLIB_PATH)");
        }
        for engine in engines {
            let got = run(engine);
            assert_eq!(got.act_shape, reference.act_shape, "{kind} {engine}");
            let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert_eq!(got.features.len(), reference.features.len());
            assert_eq!(got.activations.len(), reference.activations.len());
            let (df, da) = (diff(&got.features, &reference.features), diff(&got.activations, &reference.activations));
            eprintln!("{kind} {engine}: max |diff| features {df:.2e}, boundary activations {da:.2e}");
            assert!(df < 1e-3 && da < 1e-3, "{kind} {engine}: features {df}, activations {da}");
        }
    }
}
