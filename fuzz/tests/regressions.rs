//! Every input that ever crashed a loader (fuzz/regressions/TARGET/) and every seed
//! (fuzz/corpus/TARGET/) runs clean through its target: errors are fine, panics are not.
//! `scripts/fuzz.sh` adds fresh mutants on top; this test keeps what was fixed fixed.

use std::path::{Path, PathBuf};

use edge_runtime::{Classifier, Int8Mode, LoadOptions};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn fuzz_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn every_seed_and_regression_runs_without_a_panic() {
    let mut ran = 0;
    for t in perch_fuzz::TARGETS {
        let seeds = files(&fuzz_dir("corpus").join(t.name));
        assert!(!seeds.is_empty(), "no seed corpus for {}: run `perch-fuzz seeds`", t.name);
        for f in seeds.iter().chain(&files(&fuzz_dir("regressions").join(t.name))) {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| (t.run)(&data));
            assert!(r.is_ok(), "{} panics on {}", t.name, f.display());
            ran += 1;
        }
    }
    assert!(ran >= 20, "only {ran} inputs");
}

/// The seed models load and classify (the corpus is made of files the loaders accept).
#[test]
fn seed_models_load() {
    for f in files(&fuzz_dir("corpus/onnx")) {
        let mut opts = LoadOptions::new(&f);
        opts.int8 = Int8Mode::Native;
        let c = Classifier::load(&opts).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(c.manifest().labels.len(), 2);
        let top = c.classify(&vec![0.5; c.input_len()], 2).unwrap();
        assert_eq!(top.len(), 2);
    }
}

/// Models on which tract itself panicked (while parsing, while optimizing) are refused with an
/// error naming the file, not a crash.
#[test]
fn models_that_made_tract_panic_are_refused_clearly() {
    let crashers = files(&fuzz_dir("regressions/onnx"));
    assert!(crashers.len() >= 2);
    for f in crashers {
        for int8 in [Int8Mode::Native, Int8Mode::Weights] {
            let mut opts = LoadOptions::new(&f);
            opts.int8 = int8;
            let err = match Classifier::load(&opts) {
                Ok(_) => panic!("{} loads", f.display()),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(&f.display().to_string()), "{err}");
        }
    }
}

/// The checkpoint that made burn panic (a record whose tensor type was flipped) is refused
/// with an error that names the file and says what to do, not just "no panic".
#[test]
fn a_damaged_checkpoint_is_a_clear_error_naming_the_file() {
    let input = std::fs::read(fuzz_dir("regressions/checkpoint/crash-00c669081a729fb9.bin")).unwrap();
    let (&which, body) = input.split_first().unwrap();
    assert_eq!(which % 3, 0, "the kept input drives the model.bpk loader");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(trainer::checkpoint::MODEL_FILE);
    std::fs::write(&path, body).unwrap();
    let device = burn::tensor::Device::flex();
    let head = trainer::head::Head::new(
        perch_fuzz::targets::CHECKPOINT_FEATURES,
        perch_fuzz::targets::CHECKPOINT_CLASSES,
        0.2,
        &device,
    )
    .unwrap();
    let err = match trainer::checkpoint::load_module(head, &path) {
        Ok(_) => panic!("a damaged checkpoint must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&path.display().to_string()) && err.contains("is damaged"), "{err}");
    assert!(err.contains("delete it to start over"), "{err}");
}
