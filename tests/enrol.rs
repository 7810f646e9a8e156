//! `edge-runtime enrol` end to end through the built binary, on real data: few-shot classes on
//! top of the MobileNetV2 reference model (hymenoptera, flowers12), a third class added to a
//! two-class model, classes kept beside ImageNet's, and bad inputs that must fail clearly and
//! leave the input model untouched. The 5-shot model, preprocessed validation tensors and
//! tract's logits are left in `target/perch-exports/enrolled/` for `tests/python/run_checks.sh`
//! (ONNX checker, onnxruntime top-1 agreement).
//!
//! `cargo test --test enrol -- --ignored shots_table` measures the shots -> accuracy table of
//! docs/enrol.md (every backbone, both heads, both datasets).

mod runtime_support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use edge_runtime::enrol::{self, Embedder, ModelInput};
use edge_runtime::model::{Classifier, LoadOptions, embedded_manifest, read_proto};
use models::enrolment::{EnrolmentTable, HeadKind};
use models::{Backbone, ImageLimits, Manifest, Preprocessor};
use runtime_support::*;

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "command failed: {}\n{}", o.status, text(&o));
    text(&o)
}

fn hymenoptera(split: &str) -> PathBuf {
    perch::dataset_dir("hymenoptera").join(split)
}

fn flowers(split: &str, class: &str) -> PathBuf {
    perch::dataset_dir("flowers12").join(split).join(class)
}

fn mobilenet_args() -> Vec<String> {
    vec!["--model".into(), s(&MOBILENET.path()), "--preset".into(), MOBILENET.preset.into()]
}

/// `edge-runtime enrol --model M ARGS...`
fn enrol_cmd(base: &[String], args: &[&str]) -> Output {
    let mut all: Vec<String> = vec!["enrol".into()];
    all.extend_from_slice(base);
    all.extend(args.iter().map(|a| a.to_string()));
    edge_runtime(&all)
}

fn model_args(model: &Path) -> Vec<String> {
    vec!["--model".into(), s(model)]
}

/// (path, top-1 label) of every image under `paths`, by `classify --json`.
fn classify(model: &Path, paths: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let mut args =
        vec!["classify".to_string(), "--json".into(), "--top-k".into(), "1".into(), "--model".into(), s(model)];
    args.extend(paths.iter().map(|p| s(p)));
    let out = edge_runtime(&args);
    assert!(out.status.success(), "{}", text(&out));
    json_lines(&out)
        .iter()
        .map(|r| (PathBuf::from(r["path"].as_str().unwrap()), r["top"][0]["label"].as_str().unwrap().to_string()))
        .collect()
}

/// Accuracy (0..1) on `dir/<class>/*` for the given classes, the class being the folder name.
fn accuracy(model: &Path, dir: &Path, classes: &[&str]) -> f64 {
    let paths: Vec<PathBuf> = classes.iter().map(|c| dir.join(c)).collect();
    let results = classify(model, &paths);
    let correct = results
        .iter()
        .filter(|(p, label)| p.parent().and_then(|d| d.file_name()).is_some_and(|d| d.to_str() == Some(label)))
        .count();
    correct as f64 / results.len() as f64
}

fn manifest_of(path: &Path) -> Manifest {
    let proto = read_proto(path).unwrap();
    Manifest::from_json(embedded_manifest(&proto).expect("perch.manifest")).unwrap()
}

/// ants/bees, 5 training images per class, on the MobileNetV2 reference model; enrolled once
/// per test binary.
fn two_class_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = dir.join("hymenoptera-5shot.onnx");
        let train = hymenoptera("train");
        let o = ok(enrol_cmd(
            &mobilenet_args(),
            &["--out", &s(&out), "--from-folder", &s(&train), "--limit-per-class", "5"],
        ));
        assert!(o.contains("ants (5), bees (5)"), "{o}");
        out
    })
}

#[test]
fn five_shots_on_hymenoptera_reach_85_percent_and_feed_the_python_checks() {
    let model = two_class_model();
    let m = manifest_of(model);
    assert_eq!(m.labels.0, ["ants", "bees"]);
    assert_eq!(m.backbone, Some(Backbone::MobileNetV2));
    assert_eq!(m.preprocessing, Backbone::MobileNetV2.preprocessing());
    let f = m.features.as_ref().expect("feature output recorded");
    assert_eq!((f.output.as_str(), f.dim), ("features", 1280));
    let e = m.enrolment.as_ref().expect("enrolment summary");
    assert_eq!(e.classes.iter().map(|c| c.examples).collect::<Vec<_>>(), [5, 5]);
    let proto = read_proto(model).unwrap();
    let outputs: Vec<&str> = proto.graph.as_ref().unwrap().output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["logits", "features"]);
    // The embeddings travel inside the file.
    let table = proto.metadata_props.iter().find(|p| p.key == models::enrolment::ENROLMENT_KEY).unwrap();
    let table = EnrolmentTable::from_json(&table.value).unwrap();
    assert_eq!((table.dim, table.classes.len(), table.classes[0].embeddings.len()), (1280, 2, 5));

    let acc = accuracy(model, &hymenoptera("val"), &["ants", "bees"]);
    eprintln!("hymenoptera val accuracy, 5 shots per class, mobilenetv2 prototypes: {:.1}%", acc * 100.0);
    assert!(acc >= 0.85, "5-shot accuracy {acc:.3} < 0.85");

    // Material for tests/python/check_exports.py: the model, inputs, tract's logits.
    let dir = perch::workspace_root().join("target/perch-exports/enrolled");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(model, dir.join("hymenoptera-5shot.onnx")).unwrap();
    let mut pre = Preprocessor::new(m.preprocessing);
    let mut inputs = Vec::new();
    for class in ["ants", "bees"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(hymenoptera("val").join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.iter().take(8) {
            inputs.push(pre.tensor_from_file(f, ImageLimits::default()).unwrap());
        }
    }
    let raw: Vec<u8> = inputs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("inputs.f32"), raw).unwrap();
    let c = Classifier::load(&LoadOptions::new(model)).unwrap();
    let logits: Vec<Vec<f32>> = inputs.iter().map(|x| c.infer(x).unwrap()).collect();
    let spec = serde_json::json!({
        "inputs": "inputs.f32",
        "shape": [inputs.len(), 3, 224, 224],
        "models": [{ "file": "hymenoptera-5shot.onnx", "precision": "fp32", "tract_logits": logits }],
    });
    std::fs::write(dir.join("cases.json"), spec.to_string()).unwrap();
}

#[test]
fn a_third_class_from_a_dir_source_keeps_the_first_two_and_can_be_removed_again() {
    let two = two_class_model();
    let tmp = tempfile::tempdir().unwrap();
    let three = tmp.path().join("three.onnx");
    let source = format!("dir:{}", s(&flowers("train", "sunflower")));
    let o = ok(enrol_cmd(
        &model_args(two),
        &["--out", &s(&three), "--class", "sunflower", "--source", &source, "--frames", "5"],
    ));
    assert!(o.contains("ants (5), bees (5), sunflower (5)"), "{o}");
    assert_eq!(manifest_of(&three).labels.0, ["ants", "bees", "sunflower"]);

    let val = hymenoptera("val");
    let (before, after) = (accuracy(two, &val, &["ants", "bees"]), accuracy(&three, &val, &["ants", "bees"]));
    let flowers_test = perch::dataset_dir("flowers12").join("test");
    let sunflower = accuracy(&three, &flowers_test, &["sunflower"]);
    eprintln!(
        "ants/bees val: {:.1}% with 2 classes, {:.1}% with sunflower added; sunflower test {:.1}%",
        before * 100.0,
        after * 100.0,
        sunflower * 100.0
    );
    assert!(after >= before - 0.03, "adding a class cost {:.1} points", (before - after) * 100.0);
    assert!(sunflower >= 0.9, "sunflower test accuracy {sunflower:.2}");

    let list = ok(enrol_cmd(&model_args(&three), &["--list"]));
    assert!(list.contains("sunflower") && list.contains("3 classes"), "{list}");

    // Removing it rebuilds exactly the two-class head.
    let back = tmp.path().join("back.onnx");
    ok(enrol_cmd(&model_args(&three), &["--out", &s(&back), "--remove", "sunflower"]));
    assert_eq!(manifest_of(&back).labels.0, ["ants", "bees"]);
    let x = Preprocessor::new(Backbone::MobileNetV2.preprocessing())
        .tensor_from_file(&val.join("bees").read_dir().unwrap().next().unwrap().unwrap().path(), ImageLimits::default())
        .unwrap();
    let (a, b) =
        (Classifier::load(&LoadOptions::new(two)).unwrap(), Classifier::load(&LoadOptions::new(&back)).unwrap());
    let (la, lb) = (a.infer(&x).unwrap(), b.infer(&x).unwrap());
    assert!(la.iter().zip(&lb).all(|(p, q)| (p - q).abs() < 1e-4), "{la:?} vs {lb:?}");

    // --replace swaps a class's examples; without it the name clashes.
    let o = enrol_cmd(&model_args(&three), &["--out", &s(&back), "--class", "bees", "--source", &source]);
    assert!(!o.status.success() && text(&o).contains("--replace"), "{}", text(&o));
    let bees = format!("dir:{}", s(&hymenoptera("train").join("bees")));
    let o = ok(enrol_cmd(
        &model_args(&three),
        &["--out", &s(&back), "--class", "bees", "--source", &bees, "--frames", "3", "--replace"],
    ));
    assert!(o.contains("bees (3)"), "{o}");
}

#[test]
fn keep_classes_adds_a_class_beside_imagenet_and_imagenet_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("imagenet-plus.onnx");
    let labels = perch::weights_dir().join("imagenet_labels.txt");
    let mut base = mobilenet_args();
    base.extend(["--labels".into(), s(&labels)]);
    let source = format!("dir:{}", s(&flowers("train", "sunflower")));
    let o = ok(enrol_cmd(
        &base,
        &["--out", &s(&out), "--class", "sunflower", "--source", &source, "--frames", "10", "--keep-classes"],
    ));
    assert!(o.contains("1001 kept trained classes"), "{o}");
    let m = manifest_of(&out);
    assert_eq!((m.labels.len(), m.labels.get(1002 - 1)), (1002, "sunflower"));

    // ImageNet's own classes still answer: the committed photos and the bee photos keep the
    // reference model's top-1.
    let mut args = vec!["classify".to_string(), "--json".into(), "--top-k".into(), "1".into()];
    args.extend(MOBILENET.args());
    args.push(s(&photos_dir()));
    let bees = hymenoptera("val").join("bees");
    args.push(s(&bees));
    let reference: Vec<String> =
        json_lines(&edge_runtime(&args)).iter().map(|r| r["top"][0]["label"].as_str().unwrap().to_string()).collect();
    let kept: Vec<String> = classify(&out, &[photos_dir(), bees]).into_iter().map(|(_, l)| l).collect();
    assert_eq!(reference.len(), kept.len());
    let same = reference.iter().zip(&kept).filter(|(a, b)| a == b).count();
    eprintln!("keep-classes: {same}/{} photos keep the reference model's ImageNet top-1", kept.len());
    assert!(same * 10 >= kept.len() * 9, "reference {reference:?}\nkept {kept:?}");
    let flowers_test = perch::dataset_dir("flowers12").join("test");
    let sunflower = accuracy(&out, &flowers_test, &["sunflower"]);
    eprintln!("keep-classes: sunflower test accuracy {:.1}% among 1002 classes", sunflower * 100.0);
    assert!(sunflower >= 0.7, "{sunflower}");
}

fn fails_with(base: &[String], args: &[&str], expect: &[&str]) {
    let o = enrol_cmd(base, args);
    let msg = text(&o);
    assert!(!o.status.success(), "should fail: {args:?}\n{msg}");
    assert!(!msg.contains("panicked"), "no panic: {msg}");
    for e in expect {
        assert!(msg.contains(e), "message should mention '{e}': {msg}");
    }
}

#[test]
fn bad_inputs_are_clear_errors_and_leave_the_model_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.onnx");
    std::fs::copy(two_class_model(), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = s(&out_dir.join("new.onnx"));
    let base = model_args(&input);
    let bees = format!("dir:{}", s(&hymenoptera("train").join("bees")));

    fails_with(&base, &["--out", &out, "--class", "wasps", "--source", &bees, "--frames", "1"], &["at least 2"]);
    fails_with(&base, &["--out", &out, "--class", "  ", "--source", &bees], &["empty"]);
    fails_with(
        &base,
        &["--out", &out, "--class", "ants", "--source", &bees],
        &["'ants' is already enrolled", "--replace"],
    );
    fails_with(&base, &["--out", &out, "--remove", "wasps"], &["'wasps' is not enrolled", "ants, bees"]);
    fails_with(&base, &["--out", &out, "--class", "x", "--source", "webcam"], &["invalid --source"]);
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(&base, &["--out", &out, "--from-folder", &s(&empty)], &["no class subfolders"]);

    // Frames that fail to decode: two broken files and one good one are too few usable frames.
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::write(frames.join("a.jpg"), b"not a jpeg").unwrap();
    std::fs::write(frames.join("b.png"), b"").unwrap();
    let good = files_of(&hymenoptera("train"), "bees", Some(1)).remove(0);
    std::fs::copy(&good, frames.join("c.jpg")).unwrap();
    let dir_source = format!("dir:{}", s(&frames));
    fails_with(
        &base,
        &["--out", &out, "--class", "wasps", "--source", &dir_source],
        &["only 1 usable frame", "2 could not be decoded", "a.jpg"],
    );

    // A model without a feature output: the reference file without --preset, and a perch
    // manifest without `features` (as written before it existed).
    fails_with(
        &model_args(&MOBILENET.path()),
        &["--out", &out, "--class", "x", "--source", &bees],
        &["--preset", "trainer export"],
    );
    let old = tmp.path().join("old.onnx");
    let needle = br#""features":{"output":"features","dim":1280},"#;
    let at = original.windows(needle.len()).position(|w| w == needle).expect("features in the manifest");
    let mut bytes = original.clone();
    bytes[at..at + needle.len()].fill(b' ');
    std::fs::write(&old, &bytes).unwrap();
    fails_with(
        &model_args(&old),
        &["--out", &out, "--class", "x", "--source", &bees],
        &["no feature output", "Re-export", "trainer export"],
    );

    // An --out that cannot be written: its parent is a file.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    fails_with(
        &base,
        &["--out", &s(&blocker.join("new.onnx")), "--class", "wasps", "--source", &bees, "--frames", "2"],
        &["cannot write", "new.onnx", "unchanged"],
    );

    assert_eq!(std::fs::read(&input).unwrap(), original, "the input model must never change");
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "failed enrolments left files: {left:?}");
}

/// Embeddings of `files`, and the ms one embedding took on average (decode + preprocess + run).
fn embed_all(embedder: &mut Embedder, files: &[PathBuf]) -> (Vec<Vec<f32>>, f64) {
    let t = std::time::Instant::now();
    let e: Vec<Vec<f32>> = files.iter().map(|f| embedder.embed_file(f, ImageLimits::default()).unwrap()).collect();
    (e, t.elapsed().as_secs_f64() * 1000.0 / files.len().max(1) as f64)
}

/// Sorted image files of `dir/<class>`, the first `limit` when set.
fn files_of(dir: &Path, class: &str, limit: Option<usize>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.truncate(limit.unwrap_or(usize::MAX));
    files
}

/// A deterministic shuffle (xorshift64*), so every draw of the table can be reproduced.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let j = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

fn top1(f: &enrol::head::Fitted, x: &[f32]) -> usize {
    let u = enrol::head::normalize(x);
    let scores: Vec<f32> =
        f.weight.iter().zip(&f.bias).map(|(w, b)| w.iter().zip(&u).map(|(p, q)| p * q).sum::<f32>() + b).collect();
    common_argmax(&scores)
}

fn common_argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best })
}

/// Shots -> accuracy for every backbone, head and dataset (mean over 5 seeded draws of the
/// shots from the first 30 (hymenoptera) / 20 (flowers12) training images of each class),
/// written to target/enrol-shots.md. Minutes of CPU: run on demand.
#[test]
#[ignore]
fn shots_table() {
    const SHOTS: [usize; 4] = [1, 3, 5, 10];
    const DRAWS: u64 = 5;
    let datasets: [(&str, &str, &str, usize); 2] =
        [("hymenoptera", "train", "val", 30), ("flowers12", "train", "test", 20)];
    let files = [
        ("mobilenet_v2_1.0_224.onnx", Backbone::MobileNetV2),
        ("efficientnet_lite0.onnx", Backbone::EfficientNetLite0),
        ("efficientnet_b0.onnx", Backbone::EfficientNetB0),
    ];
    let mut md = String::from(
        "| backbone | dataset | head | 1 shot | 3 shots | 5 shots | 10 shots |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut timing = String::new();
    for (file, backbone) in files {
        let input = ModelInput { preset: Some(backbone), ..ModelInput::new(perch::weights_dir().join(file)) };
        let opened = enrol::open(&input).unwrap();
        let mut embedder = Embedder::new(&opened, None).unwrap();
        for (name, train_split, eval_split, pool) in datasets {
            let root = perch::dataset_dir(name);
            let mut classes: Vec<String> = std::fs::read_dir(root.join(train_split))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            classes.sort();
            let mut train = Vec::new();
            let mut eval = Vec::new();
            let mut ms = 0.0;
            for (c, class) in classes.iter().enumerate() {
                let (e, t) = embed_all(&mut embedder, &files_of(&root.join(train_split), class, Some(pool)));
                ms = t;
                train.push(e);
                let (e, _) = embed_all(&mut embedder, &files_of(&root.join(eval_split), class, None));
                eval.extend(e.into_iter().map(|x| (x, c)));
            }
            for head in [HeadKind::Prototype, HeadKind::Logistic] {
                let mut row = format!("| {backbone} | {name} | {head} |");
                for shots in SHOTS {
                    let mut accs = Vec::new();
                    for draw in 0..DRAWS {
                        let examples: Vec<Vec<Vec<f32>>> = train
                            .iter()
                            .enumerate()
                            .map(|(c, pool)| {
                                let order = shuffled(pool.len(), draw * 1000 + c as u64 + 1);
                                order.iter().take(shots).map(|i| pool[*i].clone()).collect()
                            })
                            .collect();
                        let t = std::time::Instant::now();
                        let fitted = enrol::head::fit(head, &examples, opened.features.dim);
                        let fit_ms = t.elapsed().as_secs_f64() * 1000.0;
                        if shots == 10 && draw == 0 {
                            timing.push_str(&format!(
                                "| {backbone} | {name} | {head} | {} | {ms:.0} | {fit_ms:.1} | {:.0} |\n",
                                classes.len() * 10,
                                ms * (classes.len() * 10) as f64 + fit_ms
                            ));
                        }
                        let correct = eval.iter().filter(|(x, c)| top1(&fitted, x) == *c).count();
                        accs.push(correct as f64 / eval.len() as f64 * 100.0);
                    }
                    let mean = accs.iter().sum::<f64>() / accs.len() as f64;
                    let (lo, hi) = accs.iter().fold((f64::MAX, f64::MIN), |(l, h), a| (l.min(*a), h.max(*a)));
                    row.push_str(&format!(" {mean:.1} ({lo:.0}–{hi:.0}) |"));
                }
                eprintln!("{row}");
                md.push_str(&row);
                md.push('\n');
            }
        }
    }
    md.push_str(
        "\n| backbone | dataset | head | examples | embed ms/image | fit ms | enrol total ms |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    md.push_str(&timing);
    eprintln!("{md}");
    std::fs::write(perch::workspace_root().join("target/enrol-shots.md"), md).unwrap();
}
