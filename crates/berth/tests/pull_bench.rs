//! Pull time of a ~100 MB, four-layer image from a loopback registry (ignored by default):
//! `cargo test -p berth --release --test pull_bench -- --ignored --nocapture`

#[path = "../../berth-image/tests/registry_support/mod.rs"]
mod registry_support;
mod support;

use std::time::Instant;

use registry_support::{random_bytes, registry_available, RegistryOptions, RegistryProcess};
use support::*;

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn pull_of_a_100_mb_four_layer_image() {
    if !registry_available() {
        return;
    }
    let many = |seed: u64, count: usize, size: usize| -> Vec<(String, Vec<u8>)> {
        (0..count).map(|i| (format!("d{seed}/{}/f{i}", i % 100), random_bytes(seed * 1_000_000 + i as u64, size))).collect()
    };
    let as_layer = |files: &[(String, Vec<u8>)], extra: &[(&str, Option<&[u8]>)]| {
        let mut entries: Vec<(&str, Option<&[u8]>)> = files.iter().map(|(n, d)| (n.as_str(), Some(d.as_slice()))).collect();
        entries.extend_from_slice(extra);
        layer(&entries)
    };
    let big = random_bytes(7, 40 << 20);
    let tail = random_bytes(8, 20 << 20);
    let l1 = many(1, 2000, 10_000);
    let l3 = many(3, 20_000, 1_000);
    let image = GenImage::new(
        vec![
            as_layer(&l1, &[]),
            layer(&[("big/blob", Some(&big))]),
            as_layer(&l3, &[("d1/0/f0", None)]),
            layer(&[("tail/blob", Some(&tail))]),
        ],
        host_arch(),
    );
    let total: usize = image.layers.iter().map(|l| l.blob.len()).sum();
    let registry = RegistryProcess::start(RegistryOptions::default());
    image.push(&client(&registry.host), "bench", "v1");
    let name = format!("{}/bench:v1", registry.host);
    for run in 0..3 {
        let berth = Berth::new();
        let started = Instant::now();
        berth.ok(&["pull", "-q", &name]);
        let elapsed = started.elapsed();
        println!(
            "run {run}: pulled {:.1} MB in {} layers in {:.2} s ({:.0} MB/s)",
            total as f64 / 1e6,
            image.layers.len(),
            elapsed.as_secs_f64(),
            total as f64 / 1e6 / elapsed.as_secs_f64()
        );
    }
}
