//! Benchmark: DSN parsing (and parsing + classifying) of the bounce corpus, the bounce crate against mail-parser alone.
//!
//! Reads `../shared/corpora/dsn` (third-party data outside the repository);
//! prints a message and measures nothing when it is absent. `ONLY=ds` or
//! `ONLY=legacy` keeps the files that do or do not mention delivery-status.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mail_parser::MessageParser;

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/dsn");
    let mut files = Vec::new();
    for dir in ["sisimai/bsd", "sisimai/dos", "sisimai/mac", "flufl"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml" || e == "txt"))
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(b) = std::fs::read(&p) {
                files.push(b);
            }
        }
    }
    files
}

fn bench(c: &mut Criterion) {
    let mut files = corpus();
    if let Ok(k) = std::env::var("ONLY") {
        files.retain(|f| {
            let ds = f
                .windows(15)
                .any(|w| w.eq_ignore_ascii_case(b"delivery-status"));
            (k == "ds") == ds
        });
    }
    if files.is_empty() {
        println!("skipping: DSN corpus not found at ../shared/corpora/dsn");
        return;
    }
    let bytes: u64 = files.iter().map(|f| f.len() as u64).sum();
    // Interleaved rounds, best of each: a ratio that survives a busy machine.
    let parser = MessageParser::default();
    let (mut ours, mut classified, mut theirs) = (f64::MAX, f64::MAX, f64::MAX);
    // mail-parser as bounce::parse configures it: parse's time less this
    // is the crate's own work.
    let mut inside = f64::MAX;
    for _ in 0..40 {
        let t = std::time::Instant::now();
        for f in &files {
            black_box(bounce::mail_parser().parse(black_box(f)));
        }
        inside = inside.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        for f in &files {
            black_box(bounce::parse(black_box(f)).ok());
        }
        ours = ours.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        for f in &files {
            black_box(
                bounce::parse(black_box(f))
                    .map(|d| bounce::classify(&d))
                    .ok(),
            );
        }
        classified = classified.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        for f in &files {
            black_box(parser.parse(black_box(f)));
        }
        theirs = theirs.min(t.elapsed().as_secs_f64());
    }
    println!(
        "corpus: {} files, {} bytes; best of 40 interleaved rounds: bounce::parse {:.2} ms (ratio {:.3}), parse + classify {:.2} ms (ratio {:.3}), mail-parser {:.2} ms; inside bounce::parse, mail-parser as it is configured there {:.2} ms (the rest, {:.2} ms, is the crate's own work)",
        files.len(),
        bytes,
        ours * 1e3,
        ours / theirs,
        classified * 1e3,
        classified / theirs,
        theirs * 1e3,
        inside * 1e3,
        (ours - inside) * 1e3,
    );
    let mut g = c.benchmark_group("dsn_corpus");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(20);
    g.bench_function("bounce_parse", |b| {
        b.iter(|| {
            for f in &files {
                black_box(bounce::parse(black_box(f)).ok());
            }
        })
    });
    g.bench_function("bounce_parse_classify", |b| {
        b.iter(|| {
            for f in &files {
                black_box(
                    bounce::parse(black_box(f))
                        .map(|d| bounce::classify(&d))
                        .ok(),
                );
            }
        })
    });
    g.bench_function("mail_parser_parse", |b| {
        let parser = MessageParser::default();
        b.iter(|| {
            for f in &files {
                black_box(parser.parse(black_box(f)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
