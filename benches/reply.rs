//! Benchmark: SMTP reply parsing, mtaspec's `parse_reply` against lettre's `Response` parser.

use std::hint::black_box;
use std::str::FromStr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lettre::transport::smtp::response::Response;
use mtaspec::smtp::reply::{parse_reply, ReplyLimits};

/// Typical replies: greetings, EHLO capability lists, rejections, and a
/// long multi-line rejection as large providers send it.
fn replies() -> Vec<String> {
    let mut v = vec![
        "220 mx.example.org ESMTP ready\r\n".to_string(),
        "250 OK\r\n".to_string(),
        "250 2.1.0 Sender OK\r\n".to_string(),
        "354 End data with <CR><LF>.<CR><LF>\r\n".to_string(),
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table\r\n".to_string(),
        "421 4.7.0 Try again later, closing connection.\r\n".to_string(),
        "250-mx.example.org Hello client.example.com [192.0.2.1]\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250 HELP\r\n".to_string(),
        "550-5.7.26 This mail is unauthenticated, which poses a security risk to the\r\n550-5.7.26 sender and Gmail users, and has been blocked. The sender must\r\n550-5.7.26 authenticate with at least one of SPF or DKIM. For this message,\r\n550-5.7.26 DKIM checks did not pass and SPF check for [example.com] did not\r\n550 5.7.26 pass with ip: [192.0.2.1]. To best protect our users from spam. - gsmtp\r\n".to_string(),
    ];
    let long: String = (0..40)
        .map(|i| format!("250-EXTENSION-{i} some parameters here\r\n"))
        .collect::<String>()
        + "250 LAST\r\n";
    v.push(long);
    v
}

fn bench(c: &mut Criterion) {
    let set = replies();
    let bytes: u64 = set.iter().map(|s| s.len() as u64).sum();
    let limits = ReplyLimits::default();
    // Both parsers accept every reply of the set.
    for r in &set {
        assert!(matches!(parse_reply(r.as_bytes(), &limits), Ok(Some(_))));
        assert!(Response::from_str(r).is_ok(), "lettre rejects {r:?}");
    }
    // Interleaved rounds, best of each: a ratio that survives a busy machine.
    let (mut ours, mut theirs) = (f64::MAX, f64::MAX);
    for _ in 0..200 {
        let t = std::time::Instant::now();
        for _ in 0..50 {
            for r in &set {
                black_box(parse_reply(black_box(r.as_bytes()), &limits).ok());
            }
        }
        ours = ours.min(t.elapsed().as_secs_f64() / 50.0);
        let t = std::time::Instant::now();
        for _ in 0..50 {
            for r in &set {
                black_box(Response::from_str(black_box(r)).ok());
            }
        }
        theirs = theirs.min(t.elapsed().as_secs_f64() / 50.0);
    }
    println!(
        "replies: {} ({bytes} bytes); best of 200 interleaved rounds: mtaspec {:.2} µs, lettre {:.2} µs, lettre/mtaspec {:.2}",
        set.len(),
        ours * 1e6,
        theirs * 1e6,
        theirs / ours
    );
    let mut g = c.benchmark_group("smtp_reply");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("mtaspec_parse_reply", |b| {
        b.iter(|| {
            for r in &set {
                black_box(parse_reply(black_box(r.as_bytes()), &limits).ok());
            }
        })
    });
    g.bench_function("lettre_response_from_str", |b| {
        b.iter(|| {
            for r in &set {
                black_box(Response::from_str(black_box(r)).ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
