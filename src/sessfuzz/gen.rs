//! Fuzz stage: grammar-aware generation and mutation of inbound SMTP sessions (commands, arguments, line ends, pipelining groups, bodies, timing).
//!
//! A [`Case`] is what one connection sends, as steps: writes of command
//! lines (several lines in one write are a pipelining group), message
//! content and pauses. Everything is drawn from one seeded [`Rng`], so a
//! seed gives the same cases every time.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// The fuzzer's random source: reproducible from a seed.
pub type Rng = StdRng;

/// A random source from `seed`.
pub fn rng(seed: u64) -> Rng {
    StdRng::seed_from_u64(seed)
}

/// Whether the next session is fresh rather than a mutation of the corpus.
pub fn pick_fresh(r: &mut Rng) -> bool {
    r.random_bool(0.15)
}

/// A random index below `len` (> 0).
pub fn index(r: &mut Rng, len: usize) -> usize {
    r.random_range(0..len)
}

/// One step of an inbound session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// Bytes sent in one write: one or more command lines (a pipelining
    /// group), possibly ending in a partial line.
    Send(Vec<u8>),
    /// Message content sent in one write after `DATA`; ends with `<CRLF>.<CRLF>`.
    /// The content carries the message's `X-Fuzz-Id` (for the delivery oracles).
    Data(Vec<u8>),
    /// Wait before the next step.
    Pause(Duration),
}

/// What one connection sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Case {
    pub steps: Vec<Step>,
}

/// Names the generator uses; the lab (or a test) points `dest` at a fake host.
#[derive(Debug, Clone)]
pub struct Names {
    /// Recipient domain the target relays to our fake host (`dest.s7.test`).
    pub dest: String,
    /// Sender domain (`src.s7.test`).
    pub src: String,
}

const VERBS: &[&str] = &[
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP",
    "STARTTLS", "AUTH", "ETRN", "XCLIENT", "TURN", "SEND", "SAML", "SOML", "ehlo", "MaIl",
];

const MAIL_PARAMS: &[&str] = &[
    "BODY=8BITMIME",
    "BODY=7BIT",
    "BODY=BINARYMIME",
    "SIZE=100",
    "SIZE=0",
    "SIZE=99999999999999999999",
    "SMTPUTF8",
    "RET=FULL",
    "RET=HDRS",
    "ENVID=abc+2Bx",
    "AUTH=<>",
    "X-UNKNOWN=1",
    "SIZE",
    "BODY=",
    "=",
    "RET=NONE",
];

const RCPT_PARAMS: &[&str] = &[
    "NOTIFY=NEVER",
    "NOTIFY=SUCCESS,FAILURE,DELAY",
    "NOTIFY=BOGUS",
    "ORCPT=rfc822;a@b.test",
    "ORCPT=rfc822",
    "X-FOO",
    "NOTIFY=",
    "ORCPT=utf-8;a\\x{40}b",
];

fn pick<'a>(r: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[r.random_range(0..xs.len())]
}

/// A local part: usually plain, sometimes odd (quoted, long, 8-bit, empty).
fn local_part(r: &mut Rng) -> String {
    match r.random_range(0..12) {
        0 => "\"a b\"".into(),
        1 => "x".repeat(64),
        2 => "y".repeat(65),
        3 => "caf\u{e9}".into(),
        4 => "a+tag".into(),
        5 => "postmaster".into(),
        6 => "\"\\\"q\"".into(),
        7 => String::new(),
        _ => format!("u{}", r.random_range(0..1000)),
    }
}

fn address(r: &mut Rng, domain: &str) -> String {
    let lp = local_part(r);
    match r.random_range(0..16) {
        0 => format!("<{lp}@{domain}"),
        1 => format!("{lp}@{domain}"),
        2 => format!("<@relay.test:{lp}@{domain}>"),
        3 => "<>".into(),
        4 => format!("< {lp}@{domain}>"),
        5 => format!("<{lp}@[127.0.0.1]>"),
        6 => format!("<{lp}@{}>", "d".repeat(250)),
        7 => format!("<{lp}>"),
        _ => format!("<{lp}@{domain}>"),
    }
}

fn params(r: &mut Rng, from: &[&str]) -> String {
    let mut s = String::new();
    for _ in 0..r.random_range(0..3) {
        s.push(' ');
        s.push_str(pick(r, from));
    }
    s
}

/// One command line without its line end.
pub fn command(r: &mut Rng, n: &Names) -> Vec<u8> {
    let line = match r.random_range(0..20) {
        0..=1 => format!("EHLO client{}.test", r.random_range(0..9)),
        2 => "HELO client.test".to_string(),
        3..=5 => format!("MAIL FROM:{}{}", address(r, &n.src), params(r, MAIL_PARAMS)),
        6..=9 => format!("RCPT TO:{}{}", address(r, &n.dest), params(r, RCPT_PARAMS)),
        10..=11 => "DATA".to_string(),
        12 => "RSET".to_string(),
        13 => "NOOP".to_string(),
        14 => format!("VRFY {}", local_part(r)),
        15 => "QUIT".to_string(),
        16 => format!("{} {}", pick(r, VERBS), "x".repeat(r.random_range(0..20))),
        17 => pick(r, VERBS).to_string(),
        18 => format!("HELO {}", "h".repeat(r.random_range(0..600))),
        _ => format!(
            "MAIL FROM:<a@{}> SIZE={}",
            n.src,
            r.random_range(0..100_000)
        ),
    };
    line.into_bytes()
}

/// A line end: CRLF mostly; sometimes a bare LF, or junk before the CRLF.
fn line_end(r: &mut Rng) -> &'static [u8] {
    match r.random_range(0..40) {
        0 => b"\n",
        1 => b" \r\n",
        2 => b"\r\r\n",
        _ => b"\r\n",
    }
}

/// Message content with its `X-Fuzz-Id: {id}` first, dot-stuffed, ended by `<CRLF>.<CRLF>`.
pub fn content(r: &mut Rng, id: &str) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = vec![format!("X-Fuzz-Id: {id}").into_bytes()];
    lines.push(b"Subject: fuzz".to_vec());
    if r.random_bool(0.3) {
        lines.push(b"X-Folded: a\r\n\tb".to_vec());
    }
    lines.push(Vec::new());
    for _ in 0..r.random_range(0..6) {
        lines.push(body_line(r));
    }
    finish_content(&lines, r)
}

fn body_line(r: &mut Rng) -> Vec<u8> {
    match r.random_range(0..14) {
        0 => b".".to_vec(),
        1 => b"..leading dots".to_vec(),
        2 => b"caf\xc3\xa9 8-bit \xff".to_vec(),
        3 => vec![b'l'; r.random_range(900..998)],
        4 => b"tab\there".to_vec(),
        5 => b"a bare\rCR".to_vec(),
        6 => b"From nobody".to_vec(),
        7 => Vec::new(),
        _ => format!("line {}", r.random_range(0..1000)).into_bytes(),
    }
}

/// Join body lines with CRLF, dot-stuff them, and add the end of data.
fn finish_content(lines: &[Vec<u8>], r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, l) in lines.iter().enumerate() {
        if l.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(l);
        // A bare LF inside content now and then, never before the end of
        // data (`\n.\r\n` is an end-of-data variant of its own, which the
        // inbound-smuggling suite covers).
        if r.random_range(0..25) == 0 && !l.is_empty() && k + 1 < lines.len() {
            out.extend_from_slice(b"\n");
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A fresh session: greeting-friendly start, a transaction or two, QUIT.
pub fn generate(r: &mut Rng, n: &Names, ids: &mut dyn FnMut() -> String) -> Case {
    let mut steps = Vec::new();
    let ehlo = if r.random_bool(0.8) {
        "EHLO client.test"
    } else {
        "HELO client.test"
    };
    steps.push(Step::Send(line(ehlo.as_bytes())));
    let transactions = match r.random_range(0..10) {
        0..=2 => 0,
        3..=8 => 1,
        _ => 2,
    };
    for _ in 0..transactions {
        let mut group = Vec::new();
        group.extend(line(format!("MAIL FROM:<alice@{}>", n.src).as_bytes()));
        for k in 0..r.random_range(1..4) {
            group.extend(line(format!("RCPT TO:<rcpt{k}@{}>", n.dest).as_bytes()));
        }
        group.extend(line(b"DATA"));
        steps.push(Step::Send(group));
        steps.push(Step::Data(content(r, &ids())));
    }
    steps.push(Step::Send(line(b"QUIT")));
    let mut c = Case { steps };
    for _ in 0..r.random_range(0..4) {
        mutate(&mut c, r, n, ids);
    }
    c
}

fn line(cmd: &[u8]) -> Vec<u8> {
    let mut v = cmd.to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

/// Split a write into its lines (each with its line end; a last partial line too).
pub fn split_lines(b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in b.iter().enumerate() {
        if *c == b'\n' {
            out.push(b[start..=i].to_vec());
            start = i + 1;
        }
    }
    if start < b.len() {
        out.push(b[start..].to_vec());
    }
    out
}

/// Apply one grammar-aware mutation.
pub fn mutate(c: &mut Case, r: &mut Rng, n: &Names, ids: &mut dyn FnMut() -> String) {
    let len = c.steps.len();
    if len == 0 {
        c.steps.push(Step::Send(line(&command(r, n))));
        return;
    }
    let at = r.random_range(0..len);
    match r.random_range(0..11) {
        // Insert a new command (or a small group).
        0 | 1 => {
            let mut group = Vec::new();
            for _ in 0..r.random_range(1..3) {
                group.extend(command(r, n));
                group.extend_from_slice(line_end(r));
            }
            c.steps.insert(at, Step::Send(group));
        }
        // Delete a step.
        2 => {
            c.steps.remove(at);
        }
        // Replace a line of a write with another command.
        3 => {
            if let Step::Send(b) = &c.steps[at] {
                let mut ls = split_lines(b);
                let k = r.random_range(0..ls.len());
                let mut l = command(r, n);
                l.extend_from_slice(line_end(r));
                ls[k] = l;
                c.steps[at] = Step::Send(ls.concat());
            }
        }
        // Merge two writes (a pipelining group) or split one.
        4 => {
            if at + 1 < len {
                if let (Step::Send(a), Step::Send(b)) = (&c.steps[at], &c.steps[at + 1]) {
                    let m = [a.as_slice(), b.as_slice()].concat();
                    c.steps[at] = Step::Send(m);
                    c.steps.remove(at + 1);
                }
            }
        }
        5 => {
            if let Step::Send(b) = &c.steps[at] {
                if b.len() > 1 {
                    let cut = r.random_range(1..b.len());
                    let (x, y) = b.split_at(cut);
                    let (x, y) = (x.to_vec(), y.to_vec());
                    c.steps[at] = Step::Send(x);
                    c.steps.insert(at + 1, Step::Send(y));
                    if r.random_bool(0.5) {
                        let ms = r.random_range(1..60);
                        c.steps
                            .insert(at + 1, Step::Pause(Duration::from_millis(ms)));
                    }
                }
            }
        }
        // Change a line end.
        6 => {
            if let Step::Send(b) = &c.steps[at] {
                let mut ls = split_lines(b);
                let k = r.random_range(0..ls.len());
                let l = &mut ls[k];
                while matches!(l.last(), Some(b'\n' | b'\r')) {
                    l.pop();
                }
                l.extend_from_slice(line_end(r));
                c.steps[at] = Step::Send(ls.concat());
            }
        }
        // Byte-level damage inside a command line (kept away from line ends).
        7 => {
            if let Step::Send(b) = &mut c.steps[at] {
                if b.len() > 2 {
                    let k = r.random_range(0..b.len() - 2);
                    if b[k] != b'\r' && b[k] != b'\n' {
                        b[k] = match r.random_range(0..5) {
                            0 => 0,
                            1 => b' ',
                            2 => 0xff,
                            3 => b':',
                            _ => b'<',
                        };
                    }
                }
            }
        }
        // A new transaction with its content.
        8 => {
            let mut group = line(format!("MAIL FROM:<bob@{}>", n.src).as_bytes());
            group.extend(line(
                format!("RCPT TO:<x{}@{}>", r.random_range(0..9), n.dest).as_bytes(),
            ));
            group.extend(line(b"DATA"));
            c.steps.insert(at, Step::Data(content(r, &ids())));
            c.steps.insert(at, Step::Send(group));
        }
        // New content for a message.
        9 => {
            if let Step::Data(_) = &c.steps[at] {
                c.steps[at] = Step::Data(content(r, &ids()));
            }
        }
        // A pause (now and then a long one).
        _ => {
            let ms = if r.random_bool(0.1) {
                r.random_range(100..400)
            } else {
                r.random_range(1..40)
            };
            c.steps.insert(at, Step::Pause(Duration::from_millis(ms)));
        }
    }
    // Keep sessions bounded.
    c.steps.truncate(24);
}

/// Give every `Data` step a fresh `X-Fuzz-Id`, so a replayed or mutated
/// case never shares an id with an earlier session.
pub fn renumber(c: &mut Case, ids: &mut dyn FnMut() -> String) {
    for s in &mut c.steps {
        if let Step::Data(d) = s {
            if let Some(end) = d.iter().position(|&b| b == b'\r' || b == b'\n') {
                if d.starts_with(b"X-Fuzz-Id: ") {
                    let mut nd = format!("X-Fuzz-Id: {}", ids()).into_bytes();
                    nd.extend_from_slice(&d[end..]);
                    *d = nd;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            dest: "dest.test".into(),
            src: "src.test".into(),
        }
    }

    #[test]
    fn a_seed_gives_the_same_cases() {
        let mut ids = 0;
        let mut next = || {
            ids += 1;
            ids.to_string()
        };
        let a: Vec<Case> = {
            let mut r = rng(7);
            (0..20)
                .map(|_| generate(&mut r, &names(), &mut next))
                .collect()
        };
        let mut ids = 0;
        let mut next = || {
            ids += 1;
            ids.to_string()
        };
        let b: Vec<Case> = {
            let mut r = rng(7);
            (0..20)
                .map(|_| generate(&mut r, &names(), &mut next))
                .collect()
        };
        assert_eq!(a, b);
        let mut r = rng(8);
        let c = generate(&mut r, &names(), &mut || "1".into());
        assert_ne!(c, a[0]);
    }

    #[test]
    fn content_is_dot_stuffed_and_ends_once() {
        let mut r = rng(1);
        for i in 0..200 {
            let c = content(&mut r, &i.to_string());
            let first = format!("X-Fuzz-Id: {i}");
            assert!(c.starts_with(first.as_bytes()));
            assert!(matches!(c[first.len()], b'\r' | b'\n'));
            assert!(c.ends_with(b"\r\n.\r\n"));
            let body = &c[..c.len() - 3];
            assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"), "{body:?}");
            // No end-of-data variant (a dot line after any line end) before the real end.
            let ends: Vec<usize> = (0..c.len() - 2)
                .filter(|&i| c[i] == b'\n' && c[i + 1] == b'.' && matches!(c[i + 2], b'\r' | b'\n'))
                .collect();
            assert_eq!(ends, vec![c.len() - 4], "{c:?}");
            assert_eq!(c[c.len() - 5], b'\r');
        }
    }

    #[test]
    fn renumber_gives_fresh_ids() {
        let mut c = Case {
            steps: vec![Step::Data(b"X-Fuzz-Id: 1\r\nbody\r\n.\r\n".to_vec())],
        };
        renumber(&mut c, &mut || "99".into());
        assert_eq!(
            c.steps[0],
            Step::Data(b"X-Fuzz-Id: 99\r\nbody\r\n.\r\n".to_vec())
        );
    }
}
