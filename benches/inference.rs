//! Inference latency of each reference model (fp32, one thread, batch 1) through the same
//! `Classifier` the CLI uses, so a regression in tract or in how perch drives it shows up.
//! Needs the shared weights (`PERCH_WEIGHTS` or ../shared/weights); skips without them.

use criterion::{Criterion, criterion_group, criterion_main};
use edge_runtime::bench::ImageSource;
use edge_runtime::model::{Classifier, LoadOptions};
use models::{Backbone, Preprocessor};

fn inference(c: &mut Criterion) {
    let weights = perch::weights_dir();
    let labels = weights.join("imagenet_labels.txt");
    let mut group = c.benchmark_group("inference");
    group.sample_size(20);
    for backbone in Backbone::ALL {
        let Some(file) = backbone.spec().reference_onnx else { continue };
        let model = weights.join(file);
        if !model.is_file() {
            eprintln!("skipping {backbone}: {} not found (set PERCH_WEIGHTS)", model.display());
            continue;
        }
        let opts = LoadOptions {
            preset: Some(backbone),
            labels: Some(labels.clone()),
            threads: Some(1),
            ..LoadOptions::new(&model)
        };
        let classifier = match Classifier::load(&opts) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping {backbone}: {e}");
                continue;
            }
        };
        let mut pre = Preprocessor::new(classifier.manifest().preprocessing);
        let input = match ImageSource::synthetic().preprocess(&mut pre) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping {backbone}: {e}");
                continue;
            }
        };
        group.bench_function(format!("{file}/fp32/1-thread"), |b| {
            b.iter(|| classifier.infer(&input).map(|l| l.len()).unwrap_or(0))
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
