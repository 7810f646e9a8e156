//! `edge-runtime classify` end to end on real photos with the reference ImageNet models:
//! agreement with onnxruntime (fixtures made once by tests/fixtures/make_reference.py),
//! perch's preprocessing against PIL's, the cat photo, and every kind of bad input.

mod runtime_support;

use std::path::Path;

use models::preprocess::{load_image, to_rgb8};
use models::{ImageLimits, Preprocessor};
use runtime_support::*;
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(perch::fixture("reference_outputs.json")).expect("reference_outputs.json");
    serde_json::from_str(&text).expect("reference JSON")
}

fn backbone(preset: &str) -> models::Backbone {
    preset.parse().expect("catalog preset")
}

#[test]
fn classify_json_matches_onnxruntime_on_the_same_inputs() {
    let reference = reference();
    for model in [MOBILENET, LITE0] {
        let expected = &reference["models"][model.file]["images"];
        let mut args = vec!["classify".to_string(), "--json".into(), "--top-k".into(), "5".into()];
        args.extend(model.args());
        args.push(s(&photos_dir()));
        let out = edge_runtime(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines = json_lines(&out);
        assert_eq!(lines.len(), expected.as_object().unwrap().len(), "one line per photo");
        let mut pre = Preprocessor::new(backbone(model.preset).preprocessing());
        for line in lines {
            let path = line["path"].as_str().unwrap();
            let name = Path::new(path).file_name().unwrap().to_str().unwrap();
            let want = &expected[name];
            // The fixture was made from perch's tensor: make sure it is still the same tensor,
            // so a failure below means inference differs, not preprocessing.
            let tensor = pre.tensor_from_file(Path::new(path), ImageLimits::default()).unwrap();
            let sum: f64 = tensor.iter().map(|v| *v as f64).sum();
            let want_sum = want["perch_input_sum"].as_f64().unwrap();
            assert!(
                (sum - want_sum).abs() < 1e-2,
                "{name}: preprocessing changed ({sum} vs {want_sum}); rerun make_reference.py"
            );
            let got = line["top"].as_array().unwrap();
            let want_top = want["top5"].as_array().unwrap();
            assert_eq!(got.len(), 5);
            for (g, w) in got.iter().zip(want_top) {
                assert_eq!(
                    g["index"], w["index"],
                    "{} {name}: top-5 order differs: {got:?} vs {want_top:?}",
                    model.file
                );
                let (gs, ws) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
                assert!((gs - ws).abs() < 1e-4, "{} {name}: score {gs} vs onnxruntime {ws}", model.file);
                assert!(g["label"].as_str().is_some_and(|l| !l.is_empty()));
            }
            assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
        }
    }
}

/// Largest per-pixel difference (0..255 scale) allowed between perch's crop+resize and PIL's
/// on the sampled pixels, and the largest mean. Measured when the fixture was made: JPEG
/// decoders (zune-jpeg vs libjpeg-turbo) and the resamplers' fixed-point rounding differ by
/// a level or two on a few pixels.
const PIL_MAX_LEVELS: i32 = 4;
const PIL_MEAN_LEVELS: f64 = 0.5;

#[test]
fn preprocessing_matches_pil_within_a_few_levels() {
    let reference = reference();
    let positions: Vec<[usize; 3]> = serde_json::from_value(reference["positions"].clone()).unwrap();
    for model in [MOBILENET, LITE0] {
        let mut pre = Preprocessor::new(backbone(model.preset).preprocessing());
        for (name, want) in reference["models"][model.file]["images"].as_object().unwrap() {
            let img = to_rgb8(load_image(&photos_dir().join(name), ImageLimits::default()).unwrap());
            let ours = pre.resize_rgb(&img).unwrap();
            let pil: Vec<i32> = serde_json::from_value(want["pil_u8_samples"].clone()).unwrap();
            let diffs: Vec<i32> = positions
                .iter()
                .zip(&pil)
                .map(|(&[c, y, x], &p)| (ours.get_pixel(x as u32, y as u32)[c] as i32 - p).abs())
                .collect();
            let max = *diffs.iter().max().unwrap();
            let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
            assert!(
                max <= PIL_MAX_LEVELS && mean <= PIL_MEAN_LEVELS,
                "{} {name}: max {max} mean {mean:.3} levels vs PIL",
                model.file
            );
        }
    }
}

#[test]
fn chelsea_the_cat_is_a_cat_for_both_reference_models() {
    let chelsea = s(&photos_dir().join("chelsea.png"));
    for model in [MOBILENET, LITE0] {
        let mut args = vec!["classify".to_string(), "--json".into()];
        args.extend(model.args());
        args.push(chelsea.clone());
        let out = edge_runtime(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let line = &json_lines(&out)[0];
        let top1 = &line["top"][0];
        // MobileNetV2's output 0 is `background`: ImageNet class = output index - 1.
        let offset = if model.preset == "mobilenetv2" { 1 } else { 0 };
        let class = top1["index"].as_i64().unwrap() - offset;
        assert!(is_cat(class), "{}: top-1 {top1}", model.file);
        assert!(top1["label"].as_str().unwrap().contains("cat"), "{top1}");
    }
    // The human table names the class too.
    let mut args = vec!["classify".to_string()];
    args.extend(LITE0.args());
    args.push(chelsea);
    let out = edge_runtime(&args);
    assert!(out.status.success());
    assert!(stdout(&out).contains("chelsea.png") && stdout(&out).contains("cat"), "{}", stdout(&out));
}

/// The EfficientNet-B0 reference ONNX under `--preset efficientnet-b0` (ImageNet mean/std on
/// 0-255, bicubic 87.5 % crop): the fixture photos named after their ImageNet class
/// (`imagenet_NN_<class>.jpg`) get that class as top-1, and Chelsea is a cat.
#[test]
fn efficientnet_b0_reference_classifies_the_fixture_photos_under_its_preset() {
    let mut args = vec!["classify".to_string(), "--json".into()];
    args.extend(B0.args());
    args.push(s(&photos_dir()));
    let out = edge_runtime(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("efficientnet-b0-imagenet, 1000 classes"), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6);
    for line in &lines {
        let path = line["path"].as_str().unwrap();
        let top1 = line["top"][0]["index"].as_i64().unwrap();
        match path.rsplit('_').next().and_then(|t| t.strip_suffix(".jpg")) {
            Some(class) => assert_eq!(top1, class.parse::<i64>().unwrap(), "{path}: {line}"),
            None => assert!(is_cat(top1), "{path}: {line}"),
        }
    }
}

#[test]
fn grayscale_alpha_and_16_bit_images_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let chelsea = image::open(photos_dir().join("chelsea.png")).unwrap();
    chelsea.to_luma8().save(dir.path().join("gray.png")).unwrap();
    chelsea.to_rgba8().save(dir.path().join("rgba.png")).unwrap();
    chelsea.to_rgb16().save(dir.path().join("rgb16.png")).unwrap();
    let mut args = vec!["classify".to_string(), "--json".into()];
    args.extend(LITE0.args());
    args.push(s(dir.path()));
    let out = edge_runtime(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    for line in lines.iter().filter(|l| !l["path"].as_str().unwrap().ends_with("gray.png")) {
        assert!(is_cat(line["top"][0]["index"].as_i64().unwrap()), "{line}");
    }
}

/// A TIFF-format EXIF block holding only the Orientation tag (0x0112) with value `v`.
fn exif_orientation(v: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes()); // first IFD right after the header
    t.extend(1u16.to_le_bytes()); // one entry
    t.extend(0x0112u16.to_le_bytes()); // Orientation
    t.extend(3u16.to_le_bytes()); // SHORT
    t.extend(1u32.to_le_bytes()); // one value
    t.extend(u32::from(v).to_le_bytes()); // the value, padded to 4 bytes
    t.extend(0u32.to_le_bytes()); // no next IFD
    t
}

/// `img` written as `format` with the EXIF orientation `v` attached.
fn save_with_orientation(img: &image::DynamicImage, path: &Path, format: image::ImageFormat, v: u16) {
    fn write(mut encoder: impl image::ImageEncoder, rgb: &image::RgbImage, v: u16) {
        encoder.set_exif_metadata(exif_orientation(v)).unwrap();
        encoder.write_image(rgb.as_raw(), rgb.width(), rgb.height(), image::ExtendedColorType::Rgb8).unwrap();
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let rgb = img.to_rgb8();
    match format {
        image::ImageFormat::Png => write(image::codecs::png::PngEncoder::new(file), &rgb, v),
        _ => write(image::codecs::jpeg::JpegEncoder::new_with_quality(file, 95), &rgb, v),
    }
}

/// Phone photos are stored as the sensor saw them plus an EXIF Orientation tag that viewers
/// apply: perch must classify what the user sees. Chelsea stored turned (or mirrored) by the
/// inverse of each tag scores exactly as the upright PNG; as JPEGs, the same top-1.
#[test]
fn exif_orientation_is_applied_before_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let chelsea = image::open(photos_dir().join("chelsea.png")).unwrap();
    let stored = [
        (2, chelsea.fliph()),
        (3, chelsea.rotate180()),
        (4, chelsea.flipv()),
        (6, chelsea.rotate270()),
        (8, chelsea.rotate90()),
    ];
    for (v, img) in &stored {
        save_with_orientation(img, &dir.path().join(format!("o{v}.png")), image::ImageFormat::Png, *v);
        save_with_orientation(img, &dir.path().join(format!("o{v}.jpg")), image::ImageFormat::Jpeg, *v);
    }
    // Sideways without the tag: what the model would see if the tag were ignored.
    image::DynamicImage::ImageRgb8(chelsea.rotate270().to_rgb8()).save(dir.path().join("sideways.png")).unwrap();
    let mut args = vec!["classify".to_string(), "--json".into(), "--top-k".into(), "5".into()];
    args.extend(MOBILENET.args());
    args.push(s(&photos_dir().join("chelsea.png")));
    args.push(s(dir.path()));
    let out = edge_runtime(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 12, "{}", stderr(&out));
    let by_name = |name: &str| {
        let line = lines.iter().find(|l| l["path"].as_str().unwrap().ends_with(name)).unwrap();
        line["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["index"].as_i64().unwrap(), t["score"].as_f64().unwrap()))
            .collect::<Vec<_>>()
    };
    let upright = by_name("chelsea.png");
    assert!(is_cat(upright[0].0 - 1), "{upright:?}");
    for (v, _) in &stored {
        let png = by_name(&format!("o{v}.png"));
        let same = png.iter().zip(&upright).all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-5);
        assert!(same, "orientation {v}: {png:?} vs upright {upright:?}");
        assert_eq!(by_name(&format!("o{v}.jpg"))[0].0, upright[0].0, "orientation {v} as JPEG");
    }
    // The check above can fail: turned pixels without the tag score differently.
    let sideways = by_name("sideways.png");
    assert!(sideways.iter().zip(&upright).any(|(a, b)| a.0 != b.0 || (a.1 - b.1).abs() > 1e-3), "{sideways:?}");
}

/// A PNG whose header claims `w`x`h` pixels over a few bytes of data: a decompression bomb's
/// shape (the real ones compress gigapixels of one colour into kilobytes).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[0x78, 0x9c, 0, 0, 0, 0]), (b"IEND", &[])] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn bad_images_are_skipped_counted_and_reported_while_good_ones_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let chelsea = std::fs::read(photos_dir().join("chelsea.png")).unwrap();
    std::fs::write(d.join("a_good.png"), &chelsea).unwrap();
    std::fs::write(d.join("b_truncated.png"), &chelsea[..chelsea.len() / 2]).unwrap();
    std::fs::write(d.join("c_empty.jpg"), b"").unwrap();
    std::fs::write(d.join("d_corrupt.jpg"), b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();
    std::fs::write(d.join("e_text.png"), b"hello, I am a text file").unwrap();
    std::fs::write(d.join("f_huge.png"), png_header_only(60_000, 60_000)).unwrap();
    std::fs::write(d.join("notes.txt"), b"not an image extension: ignored").unwrap();
    let mut args = vec!["classify".to_string(), "--json".into()];
    args.extend(LITE0.args());
    args.push(s(d));
    args.push(s(&d.join("missing.jpg")));
    let out = edge_runtime(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "exit 3 = some inputs skipped\n{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "only the good image is classified");
    assert!(lines[0]["path"].as_str().unwrap().ends_with("a_good.png"));
    assert!(err.contains("classified 1, skipped 6"), "{err}");
    for (file, why) in [
        ("b_truncated.png", "cannot decode"),
        ("c_empty.jpg", "empty"),
        ("d_corrupt.jpg", "cannot decode"),
        ("e_text.png", "cannot decode"),
        ("f_huge.png", "60000x60000, larger than the limit"),
        ("missing.jpg", "does not exist"),
    ] {
        let line = err.lines().find(|l| l.contains(file)).unwrap_or_else(|| panic!("{file} not reported:\n{err}"));
        assert!(line.starts_with("skipped") && line.contains(why), "{line}");
    }
    assert!(!err.contains("notes.txt"));
    assert!(!err.contains("panicked"));
}

#[test]
fn a_huge_image_is_refused_under_max_pixels() {
    let mut args = vec!["classify".to_string(), "--max-pixels".into(), "10000".into()];
    args.extend(LITE0.args());
    args.push(s(&photos_dir().join("chelsea.png")));
    let out = edge_runtime(&args);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("451x300, larger than the limit of 10000 pixels (raise it with --max-pixels)"),
        "{}",
        stderr(&out)
    );
}

/// Runs classify on one photo with a model file and extra args, expecting failure (exit 1).
fn model_error(model: &Path, extra: &[&str]) -> String {
    let mut args = vec!["classify".to_string(), "--model".into(), s(model)];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(s(&photos_dir().join("chelsea.png")));
    let out = edge_runtime(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn bad_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let labels = s(&perch::weights_dir().join("imagenet_labels.txt"));
    let preset = ["--preset", "mobilenetv2", "--labels", labels.as_str()];

    let err = model_error(&d.join("nope.onnx"), &preset);
    assert!(err.contains("nope.onnx does not exist"), "{err}");

    std::fs::write(d.join("empty.onnx"), b"").unwrap();
    assert!(model_error(&d.join("empty.onnx"), &preset).contains("is empty (0 bytes)"));

    std::fs::write(d.join("text.onnx"), "name,score\nfoo,1\n".repeat(50)).unwrap();
    let err = model_error(&d.join("text.onnx"), &preset);
    assert!(err.contains("text.onnx is not a readable ONNX model"), "{err}");

    let full = std::fs::read(MOBILENET.path()).unwrap();
    std::fs::write(d.join("truncated.onnx"), &full[..full.len() / 3]).unwrap();
    let err = model_error(&d.join("truncated.onnx"), &preset);
    assert!(err.contains("truncated.onnx is not a readable ONNX model") && err.contains("copy it again"), "{err}");

    // The reference models carry no perch manifest.
    let err = model_error(&MOBILENET.path(), &[]);
    assert!(err.contains("no perch manifest") && err.contains("--preset") && err.contains("--labels"), "{err}");
    let err = model_error(&MOBILENET.path(), &["--preset", "mobilenetv2"]);
    assert!(err.contains("--preset mobilenetv2 needs --labels"), "{err}");

    std::fs::write(d.join("ten.txt"), (0..10).map(|i| format!("class{i}\n")).collect::<String>()).unwrap();
    let ten = s(&d.join("ten.txt"));
    let err = model_error(&MOBILENET.path(), &["--preset", "mobilenetv2", "--labels", &ten]);
    assert!(err.contains("has 1001 outputs but 10 labels"), "{err}");
    let err = model_error(&LITE0.path(), &["--preset", "efficientnet-lite0", "--labels", &ten]);
    assert!(err.contains("has 1000 outputs but 10 labels"), "{err}");
}

#[test]
fn no_images_at_all_is_an_error_and_bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.md"), b"no images here").unwrap();
    let mut args = vec!["classify".to_string()];
    args.extend(LITE0.args());
    args.push(s(dir.path()));
    let out = edge_runtime(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no image files found"), "{}", stderr(&out));

    let out = edge_runtime(&["classify", "--model", "m.onnx", "--preset", "resnet50", "x.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("resnet50"), "{}", stderr(&out));
}
