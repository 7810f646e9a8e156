//! burn forward cost of the frozen backbone pass (`BackboneNet::features`) per backbone at
//! batch 1 and 16 on the device the trainer uses by default (flex, pure-Rust CPU), to compare
//! with tract on the same models (benches/inference.rs at the workspace root). Random weights:
//! the cost does not depend on the values.

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use models::Backbone;
use trainer::backbone::BackboneNet;

fn backbone_forward(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("backbone_features");
    group.sample_size(10);
    for kind in [Backbone::MobileNetV2, Backbone::EfficientNetLite0] {
        let net = BackboneNet::new(kind, &device);
        for batch in [1usize, 16] {
            let x = Tensor::<4>::random([batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{kind}/flex/batch{batch}"), |b| {
                b.iter(|| net.features(x.clone()).into_data().num_elements())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, backbone_forward);
criterion_main!(benches);
