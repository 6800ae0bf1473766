//! Benchmark driver: parses (and classifies) every file named on the command line, for instruction counts under callgrind and timings.
//!
//! `corpus_run parse|classify|mail-parser|inside|none FILE...`: the first
//! word says what is run on each file (`inside`: mail-parser as
//! `bounce::parse` configures it; `none`: nothing, the baseline of the
//! counts); `MODE*N` (`classify*3`) goes over the files N times, as
//! the timed loop does, so that a cache simulation (`valgrind
//! --tool=cachegrind --cache-sim=yes`) sees the caches of a round after the
//! first. `time` prints the best of 40 interleaved rounds of each, as
//! `cargo bench --bench dsn` of mtaspec does; `per-file` times each file
//! alone, warm, and lists the files by their cost over mail-parser. Used
//! as `valgrind --tool=callgrind target/release/examples/corpus_run
//! classify ...` to compare instruction counts, which a busy machine does
//! not disturb.

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let (paths, files): (Vec<String>, Vec<Vec<u8>>) = args
        .filter_map(|p| match std::fs::read(&p) {
            Ok(b) => Some((p, b)),
            Err(e) => {
                eprintln!("corpus_run: {p}: {e} (skipped)");
                None
            }
        })
        .unzip();
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
    if mode == "per-file" {
        per_file(&paths, &files, &parser);
        return;
    }
    // `MODE*N`: N rounds over the corpus, as the timed loop makes them.
    let (mode, rounds) = match mode.split_once('*') {
        Some((m, n)) => (m.to_string(), n.parse::<usize>().ok().filter(|&n| n > 0)),
        None => (mode, Some(1)),
    };
    let (true, Some(rounds)) = (
        matches!(
            mode.as_str(),
            "parse" | "classify" | "mail-parser" | "inside" | "none"
        ),
        rounds,
    ) else {
        eprintln!(
            "usage: corpus_run (parse|classify|mail-parser|inside|none)[*ROUNDS]|time|per-file|classify-only FILE...\n\
             (ROUNDS: a whole number, 1 or more)"
        );
        std::process::exit(2);
    };
    if mode == "none" {
        // The warm-up alone: the baseline to subtract from the counts.
        return;
    }
    for f in std::iter::repeat_n(&files, rounds).flatten() {
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
            _ => unreachable!("modes are checked above"),
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
        "parse {:.2} ms ({:.3}x), parse + classify {:.2} ms ({:.3}x), mail-parser {:.2} ms; \
         inside parse, mail-parser as bounce configures it {:.2} ms",
        ours * 1e3,
        ours / theirs,
        classified * 1e3,
        classified / theirs,
        theirs * 1e3,
        inside * 1e3
    );
}

/// One file's best times in µs (`per-file` mode).
struct Row<'a> {
    path: &'a str,
    bytes: usize,
    classified: f64,
    parsed: f64,
    inside: f64,
    theirs: f64,
}

/// For each file, the best of 40 runs of each way of reading it, each file
/// read again and again (warm caches, unlike the timed loop over the whole
/// corpus): the files where parse + classify costs most over mail-parser
/// first.
fn per_file(paths: &[String], files: &[Vec<u8>], parser: &mail_parser::MessageParser) {
    let best = |f: &dyn Fn()| -> f64 {
        let mut b = f64::MAX;
        for _ in 0..40 {
            let t = std::time::Instant::now();
            f();
            b = b.min(t.elapsed().as_secs_f64());
        }
        b * 1e6
    };
    let mut rows: Vec<Row> = paths
        .iter()
        .zip(files)
        .map(|(path, b)| Row {
            path,
            bytes: b.len(),
            classified: best(&|| {
                black_box(
                    bounce::parse(black_box(b))
                        .map(|d| bounce::classify(&d))
                        .ok(),
                );
            }),
            parsed: best(&|| {
                black_box(bounce::parse(black_box(b)).ok());
            }),
            inside: best(&|| {
                black_box(bounce::mail_parser().parse(black_box(b)));
            }),
            theirs: best(&|| {
                black_box(parser.parse(black_box(b)));
            }),
        })
        .collect();
    let sum = |f: fn(&Row) -> f64| rows.iter().map(f).sum::<f64>();
    let (ours, theirs) = (sum(|r| r.classified), sum(|r| r.theirs));
    println!(
        "total (µs): parse + classify {ours:.0}, parse {:.0}, inside parse {:.0}, mail-parser {theirs:.0} ({:.3}x)",
        sum(|r| r.parsed),
        sum(|r| r.inside),
        ours / theirs
    );
    rows.sort_by(|a, b| (b.classified - b.theirs).total_cmp(&(a.classified - a.theirs)));
    println!("p+c\tparse\tinside\tmail-parser\tover\tbytes\tfile");
    for r in rows {
        println!(
            "{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:+.1}\t{}\t{}",
            r.classified,
            r.parsed,
            r.inside,
            r.theirs,
            r.classified - r.theirs,
            r.bytes,
            r.path
        );
    }
}
