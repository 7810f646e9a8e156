//! The seed corpus: small real inputs of each kind, written by `perch-fuzz seeds` into
//! `fuzz/corpus/TARGET/` (committed; a few hundred KB in all). Photos are the committed test
//! photos scaled down and re-encoded in each format the runtime reads; models and weights are
//! written by perch's own writers (the ONNX exporter, burn records, safetensors), so every seed
//! is a file the loaders accept before it is mutated. Bench reports are the committed example
//! reports; checkpoints of a real `trainer fit` run are added by `scripts/fuzz.sh --seed-run`.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::optim::AdamConfig;
use burn::tensor::Device;
use image::{DynamicImage, ImageFormat};
use models::{Backbone, Labels, Manifest, Preprocessing};
use trainer::checkpoint::{self, CheckpointState};
use trainer::export::graph::{Constant, Graph, Op};
use trainer::export::onnx::{WriteOptions, to_onnx_bytes};
use trainer::export::quantize::ActQuant;
use trainer::head::Head;

use crate::targets::{CHECKPOINT_CLASSES, CHECKPOINT_FEATURES};

/// Writes every generated seed under `corpus` (one folder per target); returns the files.
pub fn write_all(corpus: &Path, root: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |target: &str, name: &str, bytes: &[u8]| -> Result<()> {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        common::write_atomic(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };

    // Models: a tiny classifier in perch's export form, fp32 and int8 QDQ, with its manifest.
    let (fp32, int8, manifest) = tiny_models()?;
    put("onnx", "tiny-fp32.onnx", &fp32)?;
    put("onnx", "tiny-int8.onnx", &int8)?;
    put("manifest", "tiny.json", manifest.to_json().as_bytes())?;
    put("manifest", "tiny.postcard", &manifest.to_postcard())?;
    let imagenet =
        Manifest::for_preset(Backbone::EfficientNetLite0, Labels(vec!["cat".into(), "dog".into()]), "x.onnx");
    put("manifest", "preset.json", imagenet.to_json().as_bytes())?;

    // Photos, scaled down, in every format the decoder is built with.
    let photos = root.join("tests/fixtures/photos");
    let cat = image::open(photos.join("chelsea.png")).context("tests/fixtures/photos/chelsea.png")?;
    let bee = image::open(photos.join("imagenet_02_438.jpg")).context("tests/fixtures/photos/imagenet_02_438.jpg")?;
    let small = cat.thumbnail(48, 36);
    let jpegs = [encode(&small, ImageFormat::Jpeg)?, encode(&bee.thumbnail(40, 40), ImageFormat::Jpeg)?];
    put("image", "cat.jpg", &jpegs[0])?;
    put("image", "bee.jpg", &jpegs[1])?;
    put("image", "cat.png", &encode(&small, ImageFormat::Png)?)?;
    put("image", "cat-rgba.png", &encode(&DynamicImage::ImageRgba8(small.to_rgba8()), ImageFormat::Png)?)?;
    put("image", "cat-gray16.png", &encode(&DynamicImage::ImageLuma16(small.to_luma16()), ImageFormat::Png)?)?;
    put("image", "cat.bmp", &encode(&small.thumbnail(24, 18), ImageFormat::Bmp)?)?;
    put("image", "cat.gif", &encode(&small.thumbnail(24, 18), ImageFormat::Gif)?)?;
    put("image", "cat.tiff", &encode(&small.thumbnail(24, 18), ImageFormat::Tiff)?)?;
    put("image", "cat.webp", &encode(&small.thumbnail(24, 18), ImageFormat::WebP)?)?;

    // MJPEG: a chunk-size byte, then frames as a camera writes them, with junk between two.
    let mut stream = vec![17u8];
    stream.extend_from_slice(&jpegs[0]);
    stream.extend_from_slice(&jpegs[1]);
    stream.extend_from_slice(b"\x00\x00garbage\xff");
    stream.extend_from_slice(&jpegs[0]);
    put("mjpeg", "three-frames.mjpeg", &stream)?;
    let mut one = vec![3u8];
    one.extend_from_slice(&jpegs[1]);
    put("mjpeg", "one-frame.mjpeg", &one)?;

    // Weights: the first MobileNetV2 layers in the naming `BackboneNet::load_file` reads.
    put("safetensors", "mobilenetv2-stem.safetensors", &stem_safetensors()?)?;

    // Checkpoint files of a head as `trainer fit` writes them (first byte: which file).
    let device = Device::flex();
    let dir = tempfile::tempdir()?;
    let head = Head::new(CHECKPOINT_FEATURES, CHECKPOINT_CLASSES, 0.2, &device)?;
    let model = dir.path().join(checkpoint::MODEL_FILE);
    checkpoint::save_module(head, &model)?;
    put("checkpoint", "model.bpk", &tagged(0, &std::fs::read(&model)?))?;
    let optim = dir.path().join(checkpoint::OPTIM_FILE);
    AdamConfig::new().init().to_record().save(&optim).map_err(|e| anyhow::anyhow!("optimizer record: {e}"))?;
    put("checkpoint", "optim.bpk", &tagged(1, &std::fs::read(&optim)?))?;
    let state =
        CheckpointState { epoch: 2, phase: "head".into(), history: Vec::new(), best_val_acc: 0.75, best_epoch: 1 };
    put("checkpoint", "state.json", &tagged(2, &serde_json::to_vec_pretty(&state)?))?;

    // Bench reports: the committed examples.
    for name in ["x86-2core-vm-hymenoptera.json", "x86-2core-vm-reference.json"] {
        let path = root.join("docs/bench/runs").join(name);
        put("bench_report", name, &std::fs::read(&path).with_context(|| path.display().to_string())?)?;
    }
    Ok(written)
}

/// `byte` + `body`: the checkpoint target's file selector.
pub fn tagged(byte: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![byte];
    v.extend_from_slice(body);
    v
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    let img = match format {
        // JPEG, BMP and GIF writers take 8-bit RGB.
        ImageFormat::Jpeg | ImageFormat::Bmp | ImageFormat::Gif | ImageFormat::WebP => {
            DynamicImage::ImageRgb8(img.to_rgb8())
        }
        _ => img.clone(),
    };
    img.write_to(&mut out, format).with_context(|| format!("encoding {format:?}"))?;
    Ok(out.into_inner())
}

/// A 16x16 two-class classifier: conv + BN + ReLU6, pool, flatten, gemm; and its manifest.
fn tiny_models() -> Result<(Vec<u8>, Vec<u8>, Manifest)> {
    let constant = |shape: &[usize], k: f32| {
        let n: usize = shape.iter().product();
        Constant { shape: shape.to_vec(), values: (0..n).map(|i| ((i as f32 * k).sin()) * 0.5).collect() }
    };
    let t = |s: &str| s.to_string();
    let graph = Graph {
        input: t("input"),
        input_chw: [3, 16, 16],
        output: t("logits"),
        ops: vec![
            Op::Conv {
                name: t("stem"),
                input: t("input"),
                output: t("stem"),
                weight: constant(&[4, 3, 3, 3], 0.7),
                bias: Some(constant(&[4], 0.3)),
                stride: [2, 2],
                pads: [1, 1, 1, 1],
                groups: 1,
            },
            Op::Relu6 { input: t("stem"), output: t("a1") },
            Op::GlobalAveragePool { input: t("a1"), output: t("pool") },
            Op::Flatten { input: t("pool"), output: t("features") },
            Op::Gemm {
                name: t("head"),
                input: t("features"),
                output: t("logits"),
                weight: constant(&[2, 4], 1.1),
                bias: constant(&[2], 0.5),
            },
        ],
    };
    let preprocessing = Preprocessing { width: 16, height: 16, ..Backbone::MobileNetV2.preprocessing() };
    let mut manifest = Manifest::for_preset(Backbone::MobileNetV2, Labels(vec!["ants".into(), "bees".into()]), "tiny");
    manifest.name = "tiny".into();
    manifest.backbone = None;
    manifest.input = models::manifest::InputSpec::nchw_rgb("input", &preprocessing);
    manifest.preprocessing = preprocessing;
    manifest.provenance.created_unix = 0;
    let fp32_opts = WriteOptions {
        opset: 13,
        quant: None,
        weight_bits: 8,
        dynamic_batch: false,
        manifest_json: Some(manifest.to_json()),
        features: None,
    };
    let (fp32, _) = to_onnx_bytes(&graph, &fp32_opts)?;
    let plan: BTreeMap<String, ActQuant> = ["input", "a1", "features"]
        .into_iter()
        .map(|name| (name.to_string(), ActQuant::from_range(-3.0, 6.0)))
        .collect();
    let mut int8_manifest = manifest.clone();
    int8_manifest.precision.kind = models::manifest::Precision::Int8;
    let int8_opts = WriteOptions { quant: Some(&plan), manifest_json: Some(int8_manifest.to_json()), ..fp32_opts };
    let (int8, _) = to_onnx_bytes(&graph, &int8_opts)?;
    Ok((fp32, int8, manifest))
}

/// MobileNetV2's stem conv and BatchNorm in the file naming (`stem.conv.*`, its BN prefix).
fn stem_safetensors() -> Result<Vec<u8>> {
    let (conv, bn) = trainer::backbone::weights::tensor_prefixes(Backbone::MobileNetV2, "stem");
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = [
        (format!("{conv}.weight"), vec![32, 3, 3, 3]),
        (format!("{bn}.weight"), vec![32]),
        (format!("{bn}.bias"), vec![32]),
        (format!("{bn}.running_mean"), vec![32]),
        (format!("{bn}.running_var"), vec![32]),
    ]
    .into_iter()
    .map(|(name, shape)| {
        let n: usize = shape.iter().product();
        let bytes = (0..n).flat_map(|i| (0.01 * i as f32).to_le_bytes()).collect();
        (name, shape, bytes)
    })
    .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(safetensors::serialize(views, None)?)
}
