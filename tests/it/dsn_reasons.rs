//! Bounce reasons measured: `bounce::classify` against sisimai's hand-written labels.
//!
//! Reads `../shared/corpora/dsn/sisimai/expected.tsv` (outside the
//! repository): `t_reason`, `t_hardbounce` and `t_status` are the labels of
//! sisimai's own test suite. Feedback reports (format class `arf_rfc5965`)
//! are not bounces and are left out; every other labelled recipient counts,
//! found or not. Every 5th sample by sorted name is a held-out check set:
//! its figures are printed beside the tuning set's, its misses are not.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mtaspec::dsn::{self, Classification, Dsn};

use super::dsn_corpus::{corpus_root, parse_file, pct, rfc3463, table};

/// Whether `sample` belongs to the held-out check set: every 5th sample
/// name in sorted order. The phrase tables and rules are tuned on the
/// other four fifths only; the held-out figure shows how far they carry.
fn held_out(sorted: &[String], sample: &str) -> bool {
    sorted
        .binary_search_by(|s| s.as_str().cmp(sample))
        .is_ok_and(|i| i % 5 == 4)
}

/// The classification of the recipient with address `addr`.
fn find<'a>(d: &Dsn, cs: &'a [Classification], addr: &str) -> Option<&'a Classification> {
    d.recipients()
        .zip(cs)
        .find(|(r, _)| r.addresses().iter().any(|a| a.eq_ignore_ascii_case(addr)))
        .map(|(_, c)| c)
}

#[derive(Default)]
struct Tally {
    ok: usize,
    total: usize,
}

impl Tally {
    fn add(&mut self, good: bool) {
        self.total += 1;
        self.ok += usize::from(good);
    }
    fn pct(&self) -> f64 {
        pct(self.ok, self.total)
    }
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<40} {:>4}/{:<4} = {:.1}%",
            self.ok,
            self.total,
            self.pct()
        )
    }
}

/// How many samples of each confusion cell are printed (`MISS_SAMPLES`
/// in the environment shows more).
static MISS_SAMPLES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("MISS_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
});

#[test]
fn reasons_match_sisimai_labels() {
    let Some(root) = corpus_root() else { return };
    let sis = root.join("sisimai");
    let formats = table(&sis.join("formats.tsv"));
    let has_ds: HashMap<String, bool> = formats
        .iter()
        .map(|r| {
            let n = r["n_delivery_status_parts"].parse::<usize>().unwrap_or(0);
            (r["sample"].clone(), n > 0)
        })
        .collect();
    let rows = table(&sis.join("expected.tsv"));
    let mut samples: Vec<String> = rows.iter().map(|r| r["sample"].clone()).collect();
    samples.sort();
    samples.dedup();
    let mut parsed: HashMap<String, Option<(Dsn, Vec<Classification>)>> = HashMap::new();
    let (mut reason, mut hard) = (Tally::default(), Tally::default());
    let (mut reason_ho, mut hard_ho) = (Tally::default(), Tally::default());
    let (mut cls_ds, mut cls_legacy) = (Tally::default(), Tally::default());
    let mut by_reason: BTreeMap<String, Tally> = BTreeMap::new();
    let mut confusion: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut by_evidence: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in &rows {
        if row["format_class"] == "arf_rfc5965" || row["t_reason"].is_empty() {
            continue;
        }
        let sample = &row["sample"];
        let entry = parsed.entry(sample.clone()).or_insert_with(|| {
            parse_file(&sis.join("bsd").join(sample)).map(|d| {
                let c = dsn::classify(&d);
                (d, c)
            })
        });
        let addr = row["recipient"].trim();
        let c = entry.as_ref().and_then(|(d, cs)| find(d, cs, addr));
        let got = c.map_or("(recipient not found)", |c| c.reason.sisimai());
        let want = row["t_reason"].as_str();
        let good = got == want;
        let good_hard = c.is_some_and(|c| c.hard == (row["t_hardbounce"] == "1"));
        if let Some(st) = rfc3463(&row["t_status"]) {
            let good_class = c.and_then(|c| c.status).map(|s| s.class) == Some(st.class);
            if has_ds.get(sample).copied().unwrap_or(false) {
                cls_ds.add(good_class)
            } else {
                cls_legacy.add(good_class)
            }
        }
        if held_out(&samples, sample) {
            // Figures only: the misses of the check set are not shown.
            reason_ho.add(good);
            hard_ho.add(good_hard);
            continue;
        }
        reason.add(good);
        by_reason.entry(want.to_string()).or_default().add(good);
        if !good {
            let why = c.map(|c| c.evidence.to_string()).unwrap_or_default();
            confusion
                .entry((want.to_string(), got.to_string()))
                .or_default()
                .push(format!("{sample} [{why}]"));
        }
        if let Some(c) = c {
            let kind = match c.evidence {
                dsn::Evidence::Status { .. } => "status",
                dsn::Evidence::Phrase { .. } => "phrase",
                dsn::Evidence::Action { .. } => "action",
                dsn::Evidence::ReplyCode { .. } => "reply code",
                dsn::Evidence::DiagnosticType { .. } => "diagnostic type",
                dsn::Evidence::Command { .. } => "command",
                dsn::Evidence::AutoReply => "auto-reply",
                dsn::Evidence::FeedbackReport => "feedback report",
                dsn::Evidence::None => "none",
            };
            *by_evidence.entry(kind).or_default() += 1;
        }
        hard.add(good_hard);
    }
    let cls_all = Tally {
        ok: cls_ds.ok + cls_legacy.ok,
        total: cls_ds.total + cls_legacy.total,
    };
    println!("bounce reasons against sisimai's labels (expected.tsv, feedback reports left out):");
    println!("  tuning set (4/5 of the samples; goals: reason 90%, hard/soft 95%):");
    println!("  {}", reason.line("  reason = t_reason"));
    println!("  {}", hard.line("  hard/soft = t_hardbounce"));
    println!("  held-out check set (every 5th sample by name, never tuned on):");
    println!("  {}", reason_ho.line("  reason = t_reason"));
    println!("  {}", hard_ho.line("  hard/soft = t_hardbounce"));
    let all = |a: &Tally, b: &Tally| Tally {
        ok: a.ok + b.ok,
        total: a.total + b.total,
    };
    println!("  all labelled recipients (both sets):");
    println!("  {}", all(&reason, &reason_ho).line("  reason = t_reason"));
    println!(
        "  {}",
        all(&hard, &hard_ho).line("  hard/soft = t_hardbounce")
    );
    println!("  status class, all samples (goal 95%):");
    println!("  {}", cls_all.line("status class = t_status class"));
    println!("  {}", cls_ds.line("  with delivery-status part"));
    println!("  {}", cls_legacy.line("  legacy (no such part)"));
    println!("  deciding evidence: {by_evidence:?}");
    println!("per labelled reason:");
    for (r, t) in &by_reason {
        println!("  {}", t.line(r));
    }
    println!("confusion of the misses (label -> classified: count, samples):");
    let mut misses: Vec<_> = confusion.iter().collect();
    misses.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    for ((want, got), samples) in misses {
        println!("  {want} -> {got}: {}", samples.len());
        for s in samples.iter().take(*MISS_SAMPLES) {
            println!("      {s}");
        }
    }
    // Floors just under today's figures, so that a regression fails. The
    // goals (reason 90%, hard/soft 95%) are met on the tuning set and on
    // all labelled recipients; the held-out set trails (83% and 92%):
    // most of the misses left are sisimai's vendor-specific conventions
    // (its per-vendor decoders and remote-host tables, e.g. "user unknown"
    // as filtered or not, network error vs expired), see the matrix above.
    for (what, t, floor) in [
        ("tuning reason", &reason, 91.0),
        ("tuning hard/soft", &hard, 96.5),
        ("held-out reason", &reason_ho, 82.0),
        ("held-out hard/soft", &hard_ho, 91.0),
        ("all reason", &all(&reason, &reason_ho), 90.0),
        ("all hard/soft", &all(&hard, &hard_ho), 95.5),
    ] {
        assert!(t.pct() >= floor, "{what} {:.1}% < {floor}%", t.pct());
    }
    assert!(
        cls_all.pct() >= 95.0,
        "status class {:.1}% < 95%",
        cls_all.pct()
    );
    assert!(
        cls_legacy.pct() >= 95.0,
        "legacy status class {:.1}% < 95%",
        cls_legacy.pct()
    );
}

/// CRLF and CR copies of a sample are classified like the LF original.
#[test]
fn line_ending_twins_classify_alike() {
    let Some(root) = corpus_root() else { return };
    let sis = root.join("sisimai");
    let classes = |p: &Path| {
        parse_file(p).map(|d| serde_json::to_string(&dsn::classify(&d)).unwrap_or_default())
    };
    let (mut n, mut bad) = (0, Vec::new());
    for dir in ["dos", "mac"] {
        let Ok(entries) = std::fs::read_dir(sis.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let orig = sis.join("bsd").join(e.file_name());
            if !orig.is_file() {
                continue;
            }
            n += 1;
            let (a, b) = (classes(&orig), classes(&e.path()));
            if a.is_none() || a != b {
                bad.push(format!(
                    "{dir}/{}: {a:?} vs {b:?}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    println!(
        "line-ending twins classified: {n}, differing: {}",
        bad.len()
    );
    for b in &bad {
        println!("  differs: {b}");
    }
    assert!(n > 0 && bad.is_empty());
}
