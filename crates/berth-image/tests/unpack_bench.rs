//! Unpack throughput against `tar -xzf` on a generated ~100 MB gzip layer.
//!
//! Run: `cargo test --release -p berth-image --test unpack_bench -- --ignored --nocapture`
//! (`BERTH_BENCH_DIR` picks the scratch directory, default the system temp dir; the layer is
//! generated once and kept there as `bench-layer.tar.gz`).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_image::unpack::{Snapshots, UnpackOptions};

/// Deterministic text-like content (compresses about 2-3x with gzip, like binaries and text).
fn content(seed: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "lib", "usr", "share", "python3", "locale", "the", "of", "function", "return", "0x7f", "static", "const", "include", "ELF", "\n",
        "\t", "=", "{", "}", "(", ")", "_", "-", ".so", "data",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        if matches!(*seed % 3, 0) {
            out.extend_from_slice(&seed.to_le_bytes()[..4]);
        } else {
            out.extend_from_slice(WORDS[(*seed >> 8) as usize % WORDS.len()].as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn generate(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::new(6));
    let mut b = tar::Builder::new(gz);
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut total = 0usize;
    let mut i = 0;
    while total < 180 << 20 {
        let dir = format!("usr/lib/pkg{}/", i / 200);
        if i % 200 == 0 {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            b.append_data(&mut h, &dir, &[][..]).unwrap();
        }
        // Mostly small files, one large one in every 100.
        let len = if i % 100 == 0 { 2 << 20 } else { 512 + (seed as usize % 24_000) };
        let data = content(&mut seed, len);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("{dir}file{i}"), &data[..]).unwrap();
        total += len;
        i += 1;
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture (release build)"]
fn unpack_throughput_against_tar_xzf() {
    let base = std::env::var_os("BERTH_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let layer = base.join("bench-layer.tar.gz");
    if !layer.exists() {
        generate(&layer);
    }
    let size = std::fs::metadata(&layer).unwrap().len() as f64;
    let work = tempfile::tempdir_in(&base).unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut unpacked = 0u64;
    for round in 0..3 {
        let snaps = Snapshots::open(work.path().join(format!("berth{round}"))).unwrap();
        let t = Instant::now();
        let l = snaps.unpack(std::fs::File::open(&layer).unwrap(), None, &UnpackOptions::default()).unwrap();
        ours.push(t.elapsed());
        unpacked = du(&l.path);
        let dest = work.path().join(format!("tar{round}"));
        std::fs::create_dir(&dest).unwrap();
        let t = Instant::now();
        let st = std::process::Command::new("tar").arg("-xzf").arg(&layer).arg("-C").arg(&dest).status().unwrap();
        theirs.push(t.elapsed());
        assert!(st.success());
        std::fs::remove_dir_all(work.path().join(format!("berth{round}"))).unwrap();
        std::fs::remove_dir_all(&dest).unwrap();
    }
    let (o, t) = (median(ours), median(theirs));
    let mb = size / 1e6;
    println!(
        "layer {:.1} MB gzip, {:.1} MB unpacked | berth unpack (digest + diff_id + extract): {:.2} s = {:.0} MB/s | tar -xzf: {:.2} s = {:.0} MB/s | ratio {:.2}",
        mb,
        unpacked as f64 / 1e6,
        o.as_secs_f64(),
        mb / o.as_secs_f64(),
        t.as_secs_f64(),
        mb / t.as_secs_f64(),
        o.as_secs_f64() / t.as_secs_f64()
    );
}

fn du(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}
