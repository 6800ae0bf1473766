//! DSN corpus measurement: the parser against real third-party bounces.
//!
//! The corpora live outside the repository (`../shared/corpora/dsn`, read
//! only); every test prints a clear message and passes when they are absent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mtaspec::dsn::{self, Dsn, Source};
use mtaspec::smtp::reply::EnhancedStatus;

pub(crate) fn corpus_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/dsn");
    if root.join("sisimai/bsd").is_dir() {
        Some(root)
    } else {
        println!(
            "skipping: DSN corpus not found at {} (tests need ../shared/corpora/dsn)",
            root.display()
        );
        None
    }
}

/// One cell: CSV-style quoting (`"a ""b"""`) removed.
fn cell(s: &str) -> String {
    match s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => inner.replace("\"\"", "\""),
        _ => s.to_string(),
    }
}

/// Whitespace runs as one space, trimmed: the table stores header values
/// with folds joined and runs of blanks collapsed.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rows of a tab-separated table as column-name → value maps.
pub(crate) fn table(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("read table");
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split('\t')
        .map(str::to_string)
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            head.iter()
                .cloned()
                .zip(
                    l.split('\t')
                        .map(cell)
                        .chain(std::iter::repeat(String::new())),
                )
                .collect()
        })
        .collect()
}

/// Parse a sample; a sample that is an mbox of several bounces gives one
/// value carrying the reports of all of them.
pub(crate) fn parse_file(path: &Path) -> Option<Dsn> {
    let bytes = std::fs::read(path).expect("read sample");
    let mut merged: Option<Dsn> = None;
    for msg in dsn::split_mbox(&bytes) {
        match dsn::parse(msg) {
            Ok(d) => match merged.as_mut() {
                None => merged = Some(d),
                Some(m) => m.reports.extend(d.reports),
            },
            Err(e) => {
                println!("  {}: error: {e}", path.display());
                return None;
            }
        }
    }
    merged
}

pub(crate) fn pct(ok: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        100.0 * ok as f64 / total as f64
    }
}

/// Whether the recipients found are exactly the expected set. The tables
/// name a recipient either by its Final-Recipient (sisimai) or by its
/// Original-Recipient (flufl), so a recipient matches through any address
/// the parser knows for it; every expected address must be matched and
/// every recipient found must match one.
fn same_recipients(d: &Dsn, want: &BTreeSet<String>) -> bool {
    let rcpts: Vec<Vec<String>> = d
        .recipients()
        .map(|r| {
            r.addresses()
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect()
        })
        .collect();
    !rcpts.is_empty()
        && want
            .iter()
            .all(|w| rcpts.iter().any(|r| r.iter().any(|a| a == w)))
        && rcpts.iter().all(|r| r.iter().any(|a| want.contains(a)))
}

fn found_set(d: &Dsn) -> BTreeSet<String> {
    d.recipients()
        .filter_map(|r| r.address())
        .map(|a| a.to_ascii_lowercase())
        .collect()
}

/// Machine-readable reports only (what `dsn_fields.tsv` describes).
fn status_reports(d: &Dsn) -> Vec<&dsn::DeliveryStatus> {
    d.reports
        .iter()
        .filter(|r| {
            matches!(
                r.source,
                Source::DeliveryStatus | Source::GlobalDeliveryStatus
            )
        })
        .collect()
}

#[test]
fn dsn_fields_match_the_table() {
    let Some(root) = corpus_root() else { return };
    let rows = table(&root.join("sisimai/dsn_fields.tsv"));
    let mut cache: HashMap<String, Option<Dsn>> = HashMap::new();
    const COLS: [&str; 9] = [
        "reporting_mta",
        "arrival_date",
        "final_recipient",
        "original_recipient",
        "action",
        "status",
        "remote_mta",
        "diagnostic_code",
        "last_attempt_date",
    ];
    let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
    let mut misses: Vec<String> = Vec::new();
    for row in &rows {
        let sample = &row["sample"];
        let d = cache
            .entry(sample.clone())
            .or_insert_with(|| parse_file(&root.join("sisimai/bsd").join(sample)));
        let ds: usize = row["ds_part"].parse().unwrap_or(1);
        let block: usize = row["rcpt_block"].parse().unwrap_or(0);
        let report = d
            .as_ref()
            .and_then(|d| status_reports(d).get(ds.wrapping_sub(1)).copied());
        let rcpt = report.and_then(|r| r.recipients.get(block.wrapping_sub(1)));
        for col in COLS {
            let want = squash(&row[col]);
            let got: Option<String> = match col {
                "reporting_mta" => report
                    .and_then(|r| r.per_message.reporting_mta.as_ref())
                    .map(|t| t.raw.clone()),
                "arrival_date" => report.and_then(|r| r.per_message.arrival_date.clone()),
                _ if block == 0 => None,
                "final_recipient" => rcpt
                    .and_then(|r| r.final_recipient.as_ref())
                    .map(|t| t.raw.clone()),
                "original_recipient" => rcpt
                    .and_then(|r| r.original_recipient.as_ref())
                    .map(|t| t.raw.clone()),
                "action" => rcpt
                    .and_then(|r| r.action.as_ref())
                    .map(|a| a.raw().to_string()),
                "status" => rcpt.and_then(|r| r.status.as_ref()).map(|s| s.raw.clone()),
                "remote_mta" => rcpt
                    .and_then(|r| r.remote_mta.as_ref())
                    .map(|t| t.raw.clone()),
                "diagnostic_code" => rcpt
                    .and_then(|r| r.diagnostic_code.as_ref())
                    .map(|t| t.value.raw.clone()),
                "last_attempt_date" => rcpt.and_then(|r| r.last_attempt_date.clone()),
                _ => None,
            };
            let got = got.unwrap_or_default();
            if squash(&got) == want {
                *ok.entry(col).or_default() += 1;
            } else {
                misses.push(format!(
                    "{sample} #{ds}/{block} {col}: want {want:?} got {got:?}"
                ));
            }
        }
    }
    println!("dsn_fields.tsv: {} rows", rows.len());
    for col in COLS {
        let n = ok.get(col).copied().unwrap_or(0);
        println!(
            "  {col:<18} {n:>4}/{} = {:.1}%",
            rows.len(),
            pct(n, rows.len())
        );
    }
    for m in misses.iter().take(30) {
        println!("  miss: {m}");
    }
    for col in COLS {
        let n = ok.get(col).copied().unwrap_or(0);
        assert!(
            pct(n, rows.len()) >= 99.0,
            "{col}: only {n}/{} rows match",
            rows.len()
        );
    }
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
}

pub(crate) fn rfc3463(s: &str) -> Option<EnhancedStatus> {
    let st: EnhancedStatus = s.trim().parse().ok()?;
    // sisimai's private codes (5.0.9xx) never appear in mail.
    (!(st.subject == 0 && st.detail >= 900)).then_some(st)
}

/// Recipient sets and status classes against the hand-checked tables.
///
/// A sisimai sample "carries a delivery-status part" when `formats.tsv`
/// counts one; the other sisimai samples, feedback reports (ARF) aside, are
/// the legacy ones. A flufl sample counts as delivery-status when its
/// detector is `dsn`; flufl samples without expected addresses are skipped.
/// The status class is compared where sisimai's hand-written status is an
/// RFC 3463 code (its private 5.0.9xx codes excluded).
#[test]
fn recipients_and_status_classes() {
    let Some(root) = corpus_root() else { return };
    let formats = table(&root.join("sisimai/formats.tsv"));
    let class_of: HashMap<String, (String, bool)> = formats
        .iter()
        .map(|r| {
            let ds = r["n_delivery_status_parts"].parse::<usize>().unwrap_or(0) > 0;
            (r["sample"].clone(), (r["format_class"].clone(), ds))
        })
        .collect();
    let expected = table(&root.join("sisimai/expected.tsv"));
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &expected {
        want.entry(r["sample"].clone())
            .or_default()
            .insert(r["recipient"].trim().to_ascii_lowercase());
    }
    let mut parsed: HashMap<String, Option<Dsn>> = HashMap::new();
    for s in want.keys() {
        parsed.insert(s.clone(), parse_file(&root.join("sisimai/bsd").join(s)));
    }

    let mut by_class: BTreeMap<String, Tally> = BTreeMap::new();
    let mut ds = Tally::default();
    let mut legacy = Tally::default();
    let mut misses = Vec::new();
    for (sample, set) in &want {
        let (fclass, has_ds) = class_of.get(sample).cloned().unwrap_or_default();
        if fclass == "arf_rfc5965" {
            continue; // feedback reports, not bounces
        }
        let got = parsed[sample].as_ref().map(found_set).unwrap_or_default();
        let good = parsed[sample]
            .as_ref()
            .is_some_and(|d| same_recipients(d, set));
        if !good {
            misses.push(format!("{sample} [{fclass}] want {set:?} got {got:?}"));
        }
        by_class.entry(fclass).or_default().add(good);
        if has_ds {
            ds.add(good)
        } else {
            legacy.add(good)
        }
    }

    // flufl: samples with expected addresses; detector "dsn" marks RFC 3464 ones.
    let mut fl_ds = Tally::default();
    let mut fl_legacy = Tally::default();
    let mut fl_skipped = 0;
    let mut fl_by_detector: BTreeMap<String, Tally> = BTreeMap::new();
    for r in table(&root.join("flufl/expected.tsv")) {
        let set: BTreeSet<String> = r["expected_addresses"]
            .split_whitespace()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        if set.is_empty() {
            fl_skipped += 1;
            continue;
        }
        let d = parse_file(&root.join("flufl").join(&r["sample"]));
        let got = d.as_ref().map(found_set).unwrap_or_default();
        let good = d.as_ref().is_some_and(|d| same_recipients(d, &set));
        if !good {
            misses.push(format!(
                "flufl/{} [{}] want {set:?} got {got:?}",
                r["sample"], r["detector"]
            ));
        }
        fl_by_detector
            .entry(r["detector"].clone())
            .or_default()
            .add(good);
        if r["detector"] == "dsn" {
            fl_ds.add(good)
        } else {
            fl_legacy.add(good)
        }
    }

    // Status class against sisimai's hand-written expectations.
    let mut cls_ds = Tally::default();
    let mut cls_legacy = Tally::default();
    for r in &expected {
        let Some(st) = rfc3463(&r["t_status"]) else {
            continue;
        };
        let sample = &r["sample"];
        let (fclass, has_ds) = class_of.get(sample).cloned().unwrap_or_default();
        if fclass == "arf_rfc5965" {
            continue;
        }
        let addr = r["recipient"].trim().to_ascii_lowercase();
        let got = parsed[sample].as_ref().and_then(|d| {
            d.recipients()
                .find(|x| x.addresses().iter().any(|a| a.eq_ignore_ascii_case(&addr)))
                .and_then(|x| x.class())
        });
        let good = got == Some(st.class);
        if has_ds {
            if !good {
                misses.push(format!("{sample} class want {} got {got:?}", st.class));
            }
            cls_ds.add(good)
        } else {
            cls_legacy.add(good)
        }
    }

    println!("recipient set found (sisimai, by format class):");
    for (c, t) in &by_class {
        println!("  {c:<40} {:>3}/{:<3} = {:.1}%", t.ok, t.total, t.pct());
    }
    println!(
        "  with delivery-status part:   {}/{} = {:.1}%",
        ds.ok,
        ds.total,
        ds.pct()
    );
    println!(
        "  legacy (no such part):       {}/{} = {:.1}%",
        legacy.ok,
        legacy.total,
        legacy.pct()
    );
    println!(
        "recipient set found (flufl, {fl_skipped} samples without expected addresses skipped):"
    );
    for (c, t) in &fl_by_detector {
        println!("  {c:<40} {:>3}/{:<3} = {:.1}%", t.ok, t.total, t.pct());
    }
    println!(
        "  dsn:    {}/{} = {:.1}%",
        fl_ds.ok,
        fl_ds.total,
        fl_ds.pct()
    );
    println!(
        "  legacy: {}/{} = {:.1}%",
        fl_legacy.ok,
        fl_legacy.total,
        fl_legacy.pct()
    );
    println!("status class right (t_status is an RFC 3463 code):");
    println!(
        "  delivery-status samples: {}/{} = {:.1}%",
        cls_ds.ok,
        cls_ds.total,
        cls_ds.pct()
    );
    println!(
        "  legacy samples:          {}/{} = {:.1}%",
        cls_legacy.ok,
        cls_legacy.total,
        cls_legacy.pct()
    );
    for m in misses.iter().take(200) {
        println!("  miss: {m}");
    }
    let all_ds = Tally {
        ok: ds.ok + fl_ds.ok,
        total: ds.total + fl_ds.total,
    };
    let all_legacy = Tally {
        ok: legacy.ok + fl_legacy.ok,
        total: legacy.total + fl_legacy.total,
    };
    println!(
        "  overall: delivery-status {:.1}%, legacy {:.1}%",
        all_ds.pct(),
        all_legacy.pct()
    );
    assert!(
        all_legacy.pct() >= 85.0,
        "legacy recipients {:.1}% < 85%",
        all_legacy.pct()
    );
    assert!(
        cls_ds.pct() >= 95.0,
        "status class {:.1}% < 95%",
        cls_ds.pct()
    );
    assert!(
        all_ds.pct() >= 99.0,
        "delivery-status recipients {:.1}% < 99% ({} of {} samples differ; see the misses above)",
        all_ds.pct(),
        all_ds.total - all_ds.ok,
        all_ds.total
    );
}

fn projection(d: &Dsn) -> String {
    serde_json::to_string(&(
        &d.content_type,
        &d.report_type,
        &d.reports,
        &d.returned,
        d.legacy,
        found_set(d),
    ))
    .unwrap_or_default()
}

#[test]
fn line_ending_twins_agree() {
    let Some(root) = corpus_root() else { return };
    let sis = root.join("sisimai");
    let mut n = 0;
    let mut bad = Vec::new();
    for dir in ["dos", "mac"] {
        let Ok(entries) = std::fs::read_dir(sis.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            // Compare with the LF original; the few CRLF/CR files without
            // one (renamed upstream) are compared with each other.
            let mut orig = sis.join("bsd").join(&name);
            if !orig.is_file() {
                if dir == "mac" {
                    continue;
                }
                orig = sis.join("mac").join(&name);
                if !orig.is_file() {
                    continue;
                }
            }
            let (Some(a), Some(b)) = (parse_file(&orig), parse_file(&e.path())) else {
                bad.push(format!("{dir}/{}: unreadable", name.to_string_lossy()));
                continue;
            };
            n += 1;
            if projection(&a) != projection(&b) {
                bad.push(format!("{dir}/{}", name.to_string_lossy()));
            }
        }
    }
    println!("line-ending twins compared: {n}, differing: {}", bad.len());
    for b in &bad {
        println!("  differs: {b}");
    }
    assert!(bad.is_empty());
}

#[test]
fn no_sample_panics() {
    let Some(root) = corpus_root() else { return };
    let mut files = Vec::new();
    for dir in ["sisimai/bsd", "sisimai/dos", "sisimai/mac", "flufl"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                let p = e.path();
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if name.ends_with(".eml") || name.ends_with(".txt") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut slowest = (Duration::ZERO, PathBuf::new());
    let mut total = Duration::ZERO;
    let mut panics = Vec::new();
    for p in &files {
        let bytes = std::fs::read(p).expect("read");
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| {
            if let Ok(d) = dsn::parse(&bytes) {
                let _ = dsn::check(&d);
                let _ = dsn::render_text(&d);
            }
        });
        let el = t.elapsed();
        total += el;
        if el > slowest.0 {
            slowest = (el, p.clone());
        }
        if r.is_err() {
            panics.push(p.display().to_string());
        }
        // Truncated copies (a transfer cut short) must not panic either.
        for k in 1..6 {
            let cut = &bytes[..bytes.len() * k / 6];
            if std::panic::catch_unwind(|| dsn::parse(cut).map(|d| dsn::check(&d))).is_err() {
                panics.push(format!("{} cut at {}", p.display(), cut.len()));
            }
        }
    }
    println!(
        "parsed {} samples in {:?}; slowest {:?} ({}) [{} build]",
        files.len(),
        total,
        slowest.0,
        slowest.1.display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    assert!(panics.is_empty(), "panicked on {panics:?}");
}
