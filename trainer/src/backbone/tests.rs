//! Unit tests of the backbones: structure vs the block tables, stage-wise forward, export
//! ops, BatchNorm freezing, and the safetensors round trip / bad-weights errors.
//! (Parity with the reference ONNX on real photos is in trainer/tests/parity.rs.)

use std::collections::{BTreeMap, HashMap, HashSet};

use burn::tensor::{Device, Distribution, Tensor};
use models::Backbone;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::*;

fn small_input(device: &Device, n: usize) -> Tensor<4> {
    // 64x64 keeps the tests fast; every stride-2 stage still sees an even size.
    Tensor::random([n, 3, 64, 64], Distribution::Normal(0.0, 1.0), device)
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    a.sub(b).abs().max().into_scalar::<f32>()
}

fn op_counts(ops: &[Op]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for op in ops {
        let kind = match op {
            Op::Conv { .. } => "conv",
            Op::BatchNorm { .. } => "bn",
            Op::Relu6 { .. } => "relu6",
            Op::Swish { .. } => "swish",
            Op::Sigmoid { .. } => "sigmoid",
            Op::Add { .. } => "add",
            Op::Mul { .. } => "mul",
            Op::GlobalAveragePool { .. } => "gap",
            _ => "other",
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

/// Convs per block from the table: expand (unless ratio 1) + depthwise + project (+ 2 SE).
fn expected_convs(kind: Backbone) -> usize {
    let arch = Arch::of(kind);
    let per_block: usize = arch
        .blocks
        .iter()
        .map(|b| usize::from(b.expand != 1) + 2 + if arch.options.se_ratio.is_some() { 2 } else { 0 })
        .sum();
    1 + per_block + 1
}

#[test]
fn stage_counts_follow_the_agreed_layout() {
    let device = Device::flex();
    assert_eq!(BackboneNet::new(Backbone::MobileNetV2, &device).num_stages(), 19);
    assert_eq!(BackboneNet::new(Backbone::EfficientNetLite0, &device).num_stages(), 18);
    assert_eq!(BackboneNet::new(Backbone::EfficientNetB0, &device).num_stages(), 18);
}

#[test]
fn export_ops_cover_every_stage_with_unique_chained_names() {
    let device = Device::flex();
    for kind in Backbone::ALL {
        let net = BackboneNet::new(kind, &device);
        let (ops, output) = net.export_ops(0..net.num_stages(), "input", [224, 224]);
        assert_eq!(output, "head");
        let counts = op_counts(&ops);
        let convs = expected_convs(kind);
        assert_eq!(counts["conv"], convs, "{kind}: {counts:?}");
        let residuals = Arch::of(kind).blocks.iter().filter(|b| b.residual()).count();
        assert_eq!(counts["add"], residuals, "{kind}");
        match kind {
            Backbone::MobileNetV2 => {
                // BN folded: no BatchNorm ops; ReLU6 after every conv but the 17 projects.
                assert!(!counts.contains_key("bn"));
                assert_eq!(counts["relu6"], convs - 17);
            }
            Backbone::EfficientNetLite0 => {
                assert_eq!(counts["bn"], convs);
                assert_eq!(counts["relu6"], convs - 16);
            }
            Backbone::EfficientNetB0 => {
                // BN folded like the shared weights: every conv carries a bias.
                assert!(!counts.contains_key("bn"));
                assert_eq!((counts["mul"], counts["gap"], counts["sigmoid"]), (16, 16, 16));
                assert_eq!(counts["swish"], convs - 16 - 16);
            }
        }
        // Topological order, every input defined, every output written once.
        let mut defined: HashSet<&str> = HashSet::from(["input"]);
        for op in &ops {
            for input in op.inputs() {
                assert!(defined.contains(input), "{kind}: {input} read before written");
            }
            assert!(defined.insert(op.output()), "{kind}: {} written twice", op.output());
        }
        // Conv weights are OIHW with the table's strides and TF-SAME pads at 224.
        let stem = ops.iter().find_map(|op| match op {
            Op::Conv { name, weight, stride, pads, .. } if name == "stem" => {
                Some((weight.shape.clone(), *stride, *pads))
            }
            _ => None,
        });
        assert_eq!(stem, Some((vec![32, 3, 3, 3], [2, 2], [0, 0, 1, 1])));
    }
}

#[test]
fn export_of_top_stages_starts_at_the_right_resolution() {
    let device = Device::flex();
    let net = BackboneNet::new(Backbone::EfficientNetLite0, &device);
    // Stage 12 is block 11: 5x5 stride 2 on 14x14 (PROVENANCE.md pads 1,1,2,2).
    let (ops, output) = net.export_ops(12..18, "cached", [224, 224]);
    assert_eq!(output, "head");
    assert_eq!(ops[0].inputs(), vec!["cached"]);
    let pads = ops.iter().find_map(|op| match op {
        Op::Conv { name, pads, .. } if name == "blocks.11.depthwise" => Some(*pads),
        _ => None,
    });
    assert_eq!(pads, Some([1, 1, 2, 2]));
    let (none, same) = net.export_ops(3..3, "x", [224, 224]);
    assert!(none.is_empty());
    assert_eq!(same, "x");
}

#[test]
fn stagewise_forward_equals_the_full_forward() {
    let device = Device::flex();
    for kind in Backbone::ALL {
        let net = BackboneNet::new(kind, &device);
        let x = small_input(&device, 2);
        let full = net.features(x.clone());
        assert_eq!(full.dims(), [2, 1280]);
        let split = 7;
        let mid = net.forward_stages(x, 0..split);
        let rest = BackboneNet::pool(net.forward_stages(mid, split..net.num_stages()));
        assert!(max_abs_diff(full, rest) < 1e-5, "{kind}");
    }
}

#[test]
fn frozen_batchnorm_uses_running_stats_on_an_autodiff_device() {
    let plain = Device::flex();
    let autodiff = Device::flex().autodiff();
    let x = small_input(&plain, 4);
    // Built on the autodiff device (as fit does): `to_device` onto it does not make a tensor
    // autodiff, and BatchNorm picks its path from the input's device.
    let on_ad = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), &autodiff);
    let back = |t: Tensor<2>| Tensor::<2>::from_data(t.to_data(), &plain);
    let max_abs = |t: &Tensor<2>| t.clone().abs().max().into_scalar::<f32>();
    let net = BackboneNet::new(Backbone::EfficientNetLite0, &plain);
    let reference = net.features(x.clone());

    let frozen = net.clone().with_frozen_batchnorm(true).to_device(&autodiff);
    let on_autodiff = back(frozen.features(on_ad(&x)));
    assert!(max_abs_diff(reference.clone(), on_autodiff) <= 1e-5 * max_abs(&reference).max(1e-30));

    // Unfrozen (from scratch): batch statistics. A random net's running statistics (0, 1) let
    // the activations shrink layer after layer; batch statistics renormalise every layer.
    let training = net.with_frozen_batchnorm(false).to_device(&autodiff);
    let batch_stats = back(training.features(on_ad(&x)));
    assert!(
        max_abs(&batch_stats) > 1e3 * max_abs(&reference),
        "batch stats {} vs running stats {}",
        max_abs(&batch_stats),
        max_abs(&reference)
    );
}

#[test]
fn b0_weights_round_trip_through_the_documented_naming() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("efficientnet_b0.safetensors");
    let net = BackboneNet::new(Backbone::EfficientNetB0, &device);
    net.save_weights(&path).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: HashSet<String> = st.names().into_iter().map(String::from).collect();
    for name in ["_conv_stem.bias", "_blocks.0._se_reduce.bias", "_blocks.15._se_expand.weight", "_conv_head.bias"] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("_bn")), "B0 is saved BN-folded, as the shared file");
    assert!(!names.contains("_blocks.0._expand_conv.weight"), "block 0 has expand ratio 1");
    assert!(B0_WEIGHTS_HELP.contains("_se_reduce") && B0_WEIGHTS_HELP.contains("_bn2"));

    let loaded = BackboneNet::load_file(Backbone::EfficientNetB0, &path, &device).unwrap();
    assert_eq!(loaded.weights_sha256(), Some(weights::sha256_hex(&bytes)));
    let x = small_input(&device, 1);
    assert_eq!(max_abs_diff(net.features(x.clone()), loaded.features(x)), 0.0);
    assert!(loaded.imagenet_logits(small_input(&device, 1)).is_err(), "no classifier in a random net");
}

/// A B0 file in efficientnet_pytorch's naming (convs without bias + BatchNorm tensors) loads by
/// folding the BN into the convs: the same features as the folded file it was made from.
#[test]
fn a_b0_file_with_batchnorm_tensors_is_folded_at_load() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("folded.safetensors");
    let net = BackboneNet::new(Backbone::EfficientNetB0, &device);
    net.save_weights(&folded).unwrap();
    let bytes = std::fs::read(&folded).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |d: &[u8]| d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>();
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut raw: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    let eps = super::efficientnet::BN_EPS as f32;
    for (name, view) in st.tensors() {
        raw.insert(name.clone(), (view.shape().to_vec(), view.data().to_vec()));
    }
    // Every conv that has a BN slot in the naming: weight / 2, no bias, BN with scale 2 and a
    // mean of 0.5, so folding gives back the original weight and bias.
    let mut copy = net.clone();
    let logicals: Vec<String> = copy.layers_mut().into_iter().map(|(l, _)| l).collect();
    for logical in logicals {
        let (conv, bn) = weights::tensor_prefixes(Backbone::EfficientNetB0, &logical);
        if bn.is_empty() {
            continue;
        }
        let (shape, w) = raw.remove(&format!("{conv}.weight")).unwrap();
        let (_, b) = raw.remove(&format!("{conv}.bias")).unwrap();
        let halved: Vec<f32> = f32s(&w).iter().map(|v| v / 2.0).collect();
        raw.insert(format!("{conv}.weight"), (shape, le(&halved)));
        let bias = f32s(&b);
        let n = bias.len();
        let beta: Vec<f32> = bias.iter().map(|b| b + 1.0).collect();
        for (suffix, values) in [
            ("weight", vec![2.0 * (1.0 + eps).sqrt(); n]),
            ("bias", beta),
            ("running_mean", vec![0.5; n]),
            ("running_var", vec![1.0; n]),
        ] {
            raw.insert(format!("{bn}.{suffix}"), (vec![n], le(&values)));
        }
    }
    let views: Vec<(String, TensorView)> =
        raw.iter().map(|(n, (s, d))| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap())).collect();
    let with_bn = dir.path().join("with-bn.safetensors");
    std::fs::write(&with_bn, safetensors::serialize(views, None).unwrap()).unwrap();
    let loaded = BackboneNet::load_file(Backbone::EfficientNetB0, &with_bn, &device).unwrap();
    let x = small_input(&device, 1);
    let (a, b) = (net.features(x.clone()), loaded.features(x));
    let scale = a.clone().abs().max().into_scalar::<f32>().max(1e-6);
    assert!(max_abs_diff(a, b) <= 1e-4 * scale);
}

/// A real-looking file for `kind` with one tensor replaced or dropped.
fn write_edited(kind: Backbone, path: &std::path::Path, edit: &str, replacement: Option<Vec<usize>>) {
    let device = Device::flex();
    let full = path.with_extension("full");
    BackboneNet::new(kind, &device).save_weights(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut raw: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for (name, view) in st.tensors() {
        raw.insert(name, (view.shape().to_vec(), view.data().to_vec()));
    }
    match replacement {
        Some(shape) => {
            let len: usize = shape.iter().product();
            raw.insert(edit.to_string(), (shape, vec![0u8; len * 4]));
        }
        None => {
            raw.remove(edit);
        }
    }
    let views: Vec<(String, TensorView)> =
        raw.iter().map(|(n, (s, d))| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn a_wrong_shaped_tensor_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("efficientnet_lite0.safetensors");
    write_edited(Backbone::EfficientNetLite0, &path, "_blocks.3._depthwise_conv.weight", Some(vec![144, 1, 3, 3]));
    let err = BackboneNet::load_file(Backbone::EfficientNetLite0, &path, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("_blocks.3._depthwise_conv.weight"), "{err}");
    assert!(err.contains("[144, 1, 3, 3]") && err.contains("[144, 1, 5, 5]"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn a_missing_tensor_and_a_non_safetensors_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mobilenet_v2_1.0_224.safetensors");
    write_edited(Backbone::MobileNetV2, &path, "blocks.7.expand.bias", None);
    let err = BackboneNet::load_file(Backbone::MobileNetV2, &path, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("blocks.7.expand.bias") && err.contains("missing"), "{err}");

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    let err = BackboneNet::load_file(Backbone::MobileNetV2, &junk, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("junk.safetensors") && err.contains("not a safetensors file"), "{err}");

    let absent = dir.path().join("nope.safetensors");
    let err = BackboneNet::load_file(Backbone::MobileNetV2, &absent, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("nope.safetensors") && err.contains("--weights-dir"), "{err}");
}

#[test]
fn unknown_backbone_names_are_rejected_by_the_catalog() {
    let err = "mobilenetv3".parse::<Backbone>().unwrap_err().to_string();
    assert!(err.contains("mobilenetv3") && err.contains("efficientnet-lite0"), "{err}");
}

#[test]
fn classifier_shapes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_fc.safetensors");
    write_edited(Backbone::EfficientNetB0, &path, "_fc.weight", Some(vec![10, 640]));
    let err = BackboneNet::load_file(Backbone::EfficientNetB0, &path, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("_fc.weight") && err.contains("[10, 640]") && err.contains("1280"), "{err}");
}
