//! Benchmark driver: parses (and classifies) every file named on the command line once, for instruction counts under callgrind.
//!
//! `corpus_run parse|classify|mail-parser|inside FILE...`: the first word
//! says what is run on each file (`inside`: mail-parser as `bounce::parse`
//! configures it); `time` prints the best of 40 interleaved
//! rounds of each, as `cargo bench --bench dsn` of mtaspec does. Used as
//! `valgrind --tool=callgrind target/release/examples/corpus_run classify ...`
//! to compare instruction counts, which a busy machine does not disturb.

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let files: Vec<Vec<u8>> = args.filter_map(|p| std::fs::read(p).ok()).collect();
    let parser = mail_parser::MessageParser::default();
    // Build the phrase tables outside the measured work.
    let warm = b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail\r\n\r\n\
        <bob@example.org>: host mx.example.org said: 550 5.1.1 user unknown\r\n";
    black_box(bounce::parse(warm).map(|d| bounce::classify(&d)).ok());
    if mode == "classify-only" {
        // Parsed once, classified many times: a profile of classify alone.
        let dsns: Vec<_> = files.iter().filter_map(|f| bounce::parse(f).ok()).collect();
        for _ in 0..100 {
            for d in &dsns {
                black_box(bounce::classify(black_box(d)));
            }
        }
        return;
    }
    if mode == "time" {
        time(&files, &parser);
        return;
    }
    for f in &files {
        match mode.as_str() {
            "parse" => {
                black_box(bounce::parse(black_box(f)).ok());
            }
            "classify" => {
                black_box(
                    bounce::parse(black_box(f))
                        .map(|d| bounce::classify(&d))
                        .ok(),
                );
            }
            "mail-parser" => {
                black_box(parser.parse(black_box(f)));
            }
            "inside" => {
                black_box(bounce::mail_parser().parse(black_box(f)));
            }
            _ => {
                eprintln!("usage: corpus_run parse|classify|mail-parser|inside|time FILE...");
                std::process::exit(2);
            }
        }
    }
}

fn time(files: &[Vec<u8>], parser: &mail_parser::MessageParser) {
    let best = |f: &dyn Fn(&[u8])| -> f64 {
        let t = std::time::Instant::now();
        for b in files {
            f(b);
        }
        t.elapsed().as_secs_f64()
    };
    let (mut ours, mut classified, mut theirs) = (f64::MAX, f64::MAX, f64::MAX);
    let mut inside = f64::MAX;
    for _ in 0..40 {
        inside = inside.min(best(&|b| {
            black_box(bounce::mail_parser().parse(black_box(b)));
        }));
        ours = ours.min(best(&|b| {
            black_box(bounce::parse(black_box(b)).ok());
        }));
        classified = classified.min(best(&|b| {
            black_box(
                bounce::parse(black_box(b))
                    .map(|d| bounce::classify(&d))
                    .ok(),
            );
        }));
        theirs = theirs.min(best(&|b| {
            black_box(parser.parse(black_box(b)));
        }));
    }
    println!(
        "parse {:.2} ms ({:.2}x), parse + classify {:.2} ms ({:.2}x), mail-parser {:.2} ms; \
         inside parse, mail-parser as bounce configures it {:.2} ms",
        ours * 1e3,
        ours / theirs,
        classified * 1e3,
        classified / theirs,
        theirs * 1e3,
        inside * 1e3
    );
}
