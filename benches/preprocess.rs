//! Preprocessing cost per backbone (decode + crop/resize + normalize), so a regression in the
//! one preprocessing path shows up. `edge-runtime bench` reports the same quantity per device
//! as `preprocess_ms`; this bench isolates it and splits decode from resize + normalize.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_runtime::bench::ImageSource;
use models::{Backbone, ImageLimits, Preprocessor};

/// A real photo from the shared dataset when it is there (500x375-ish JPEG), else none.
fn real_photo() -> Option<PathBuf> {
    let dir = perch::dataset_dir("hymenoptera").join("val/ants");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    photos.sort();
    photos.into_iter().find(|p| models::preprocess::is_image_path(p))
}

fn preprocess(c: &mut Criterion) {
    let mut sources = vec![ImageSource::synthetic()];
    match real_photo().map(|p| ImageSource::open(Some(&p))) {
        Some(Ok(photo)) => sources.push(photo),
        Some(Err(e)) => eprintln!("skipping the real-photo case: {e}"),
        None => eprintln!("skipping the real-photo case: no shared hymenoptera dataset"),
    }
    let mut group = c.benchmark_group("preprocess");
    group.sample_size(30);
    for backbone in [Backbone::MobileNetV2, Backbone::EfficientNetLite0] {
        let mut pre = Preprocessor::new(backbone.preprocessing());
        for src in &sources {
            group.bench_function(format!("{backbone}/full/{}", src.name), |b| {
                b.iter(|| src.preprocess(&mut pre).map(|t| t.len()).unwrap_or(0))
            });
            let Ok(decoded) =
                models::preprocess::decode_image(&src.bytes, "bench.jpg".as_ref(), ImageLimits::default())
            else {
                continue;
            };
            let rgb = models::preprocess::to_rgb8(decoded);
            let mut out = vec![0f32; backbone.preprocessing().tensor_len()];
            group.bench_function(format!("{backbone}/resize+normalize/{}", src.name), |b| {
                b.iter(|| {
                    if let Ok(resized) = pre.resize_rgb(&rgb) {
                        pre.normalize_into(&resized, &mut out);
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, preprocess);
criterion_main!(benches);
