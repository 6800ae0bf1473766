//! Fuzz stage: a finding — a shrunk session that breaks one invariant — written as a replayable scenario file (suite format, `[[session]]` script).
//!
//! The script states what a conforming target answers at the place the
//! invariant broke (a reply where none came, no 354 without a recipient, a
//! 221/421 before a close, `relayed` for the delivery invariants), and the
//! replies the target actually gave everywhere before it, so that
//! `mtaspec run FILE` replays the session and fails at the same place.

use super::client::Trace;
use super::gen::{Case, Step};
use super::oracle::{Invariant, Violation};
use super::{escape, unscope};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One finding: the invariant, the shrunk case and what it did.
#[derive(Debug, Clone)]
pub struct Finding {
    pub violation: Violation,
    /// The state signature it was found at (deduplication key with the invariant).
    pub signature: String,
    pub case: Case,
    pub trace: Trace,
    /// Steps before shrinking.
    pub original_steps: usize,
    /// The seed of the run and the session number it came from.
    pub seed: u64,
    pub session: u64,
    /// For an outbound finding: the fake host's replaced steps (shrunk).
    pub outbound: Option<super::outbound::OutCase>,
}

impl Finding {
    /// `one-reply-per-command`, `accepted-is-delivered`, ...
    pub fn key(&self) -> (Invariant, String) {
        (self.violation.invariant, self.signature.clone())
    }
}

fn code_pattern(c: u16) -> String {
    c.to_string()
}

/// The scenario file for `f`, with lab names moved back under `.test`.
pub fn scenario_text(f: &Finding) -> String {
    let inv = f.violation.invariant;
    let v = &f.violation;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Found by `mtaspec fuzz --seed {}` (session {}), shrunk from {} to {} steps.",
        f.seed,
        f.session,
        f.original_steps,
        f.case.steps.len()
    );
    let _ = writeln!(
        s,
        "# Invariant `{}` broke: {}",
        inv.name(),
        unscope(&v.detail).replace('\n', " ")
    );
    let _ = writeln!(
        s,
        "title = {}",
        toml_str(&format!(
            "fuzz: {} ({})",
            inv.name(),
            short(&unscope(&v.detail))
        ))
    );
    let _ = writeln!(s, "rule = {}", toml_str(&capitalise(inv.rule())));
    let _ = writeln!(s, "rfc = {}", toml_str(inv.rfc()));
    let _ = writeln!(s, "strength = \"{}\"", inv.strength());
    s.push_str("\n[dns]\nrecords = [\"dest.test MX 10 mx.dest.test\", \"src.test MX 10 mx.dest.test\"]\n\n[hosts.mx]\nname = \"mx.dest.test\"\n\n");
    s.push_str("[[session]]\nscript = '''\n");
    let delivery = matches!(
        inv,
        Invariant::AcceptedIsDelivered | Invariant::RejectedNotDelivered | Invariant::TargetAlive
    );
    let greeting = f.trace.per_step.first().cloned().unwrap_or_default();
    let at_reply = v.reply;
    let mut reply_no = 0usize;
    let expect = |s: &mut String, code: u16, reply_no: &mut usize| {
        if Some(*reply_no) == at_reply && inv == Invariant::DataNeedsRecipient {
            s.push_str(
                "# a conforming server refuses DATA here: no recipient was accepted\n< 4xx|5xx\n",
            );
        } else {
            let _ = writeln!(s, "< {}", code_pattern(code));
        }
        *reply_no += 1;
    };
    for c in &greeting {
        expect(&mut s, *c, &mut reply_no);
    }
    if greeting.is_empty() && v.step.is_none() {
        let _ = writeln!(s, "# {}", one_line(&unscope(&v.detail)));
        if inv == Invariant::ReplySyntax {
            s.push_str(SYNTAX_STEP);
        } else {
            s.push_str("< 2xx|3xx|4xx|5xx\n");
        }
    }
    let last = if delivery {
        f.case.steps.len()
    } else {
        v.step.map(|x| x + 1).unwrap_or(0).min(f.case.steps.len())
    };
    for (i, step) in f.case.steps.iter().enumerate().take(last) {
        if v.step == Some(i) && v.before && !delivery {
            let _ = writeln!(s, "# {}", one_line(&unscope(&v.detail)));
            s.push_str("< nothing 1s\n");
        }
        match step {
            Step::Pause(d) => {
                let _ = writeln!(s, "pause {}ms", d.as_millis().max(1));
            }
            Step::Send(b) | Step::Data(b) => {
                let kind = if f.trace.content_steps.contains(&i) {
                    "data"
                } else {
                    "send"
                };
                let _ = writeln!(s, "{kind} \"{}\"", unscope(&escape(b)));
            }
        }
        let replies = f.trace.per_step.get(i + 1).cloned().unwrap_or_default();
        for c in &replies {
            expect(&mut s, *c, &mut reply_no);
        }
        if v.step == Some(i) && !v.before && !delivery {
            let step = match inv {
                Invariant::OneReplyPerCommand | Invariant::CloseAnnounced => "< 2xx|3xx|4xx|5xx\n",
                Invariant::ReplySyntax => SYNTAX_STEP,
                _ => "",
            };
            if !step.is_empty() {
                let _ = writeln!(s, "# {}", one_line(&unscope(&v.detail)));
                s.push_str(step);
            }
        }
    }
    if !delivery && v.before && v.step.is_some_and(|x| x >= last) {
        let _ = writeln!(s, "# {}", one_line(&unscope(&v.detail)));
        s.push_str("< nothing 1s\n");
    }
    s.push_str("'''\n");
    match inv {
        Invariant::AcceptedIsDelivered | Invariant::RejectedNotDelivered => {
            let accepted = f.trace.messages.iter().filter(|m| m.accepted()).count();
            let _ = writeln!(s, "\n# {} message(s) were accepted with 2xx at end of data; exactly those must arrive, as sent.", accepted);
            let _ = writeln!(
                s,
                "[[expect]]\nrelayed = {{ host = \"mx\", count = {accepted}{} }}",
                if accepted > 0 {
                    ", body = \"as-sent\""
                } else {
                    ""
                }
            );
        }
        Invariant::TargetAlive => {
            s.push_str("\n# After the session above the target must still greet a new client.\n[[session]]\nscript = '''\n< 220\n> QUIT\n< 221\n'''\n");
        }
        _ => {}
    }
    s.push_str("\n[[control]]\nnone = \"a fuzz finding: the session above is the evidence; no setting makes a conforming target break it\"\n");
    s
}

/// The reply that broke the syntax, as a script can demand it: a reply the
/// raw client can parse (one code, CRLF), an enhanced code of its class,
/// no line of 512 octets or more.
const SYNTAX_STEP: &str = "enhanced on\n< 2xx|3xx|4xx|5xx !/(?m)^.{508,}/\nenhanced off\n";

fn capitalise(t: &str) -> String {
    let mut c = t.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn one_line(t: &str) -> String {
    t.replace(['\n', '\r'], " ")
}

fn short(t: &str) -> String {
    let t = one_line(t);
    if t.chars().count() > 70 {
        format!("{}…", t.chars().take(70).collect::<String>())
    } else {
        t
    }
}

/// A TOML basic string.
pub(crate) fn toml_str(t: &str) -> String {
    let mut o = String::from("\"");
    for ch in t.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Write `f` as `DIR/NNNN-<invariant>.toml`; returns the path.
pub fn write(f: &Finding, dir: &Path, n: usize) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{:04}-{}.toml", n, f.violation.invariant.name()));
    std::fs::write(&path, scenario_text(f))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessfuzz::client::Trace;

    fn finding(inv: Invariant, reply: Option<usize>, step: Option<usize>, before: bool) -> Finding {
        Finding {
            violation: Violation {
                invariant: inv,
                step,
                before,
                reply,
                detail: "x at dest.s3001.test".into(),
            },
            signature: String::new(),
            case: Case {
                steps: vec![
                    Step::Send(b"MAIL FROM:<a@src.s3001.test>\r\nDATA\r\n".to_vec()),
                    Step::Pause(std::time::Duration::from_millis(20)),
                    Step::Send(b"QUIT\r\n".to_vec()),
                ],
            },
            trace: Trace {
                per_step: vec![vec![220], vec![250, 354], vec![], vec![221]],
                ..Trace::default()
            },
            original_steps: 9,
            seed: 5,
            session: 12,
            outbound: None,
        }
    }

    #[test]
    fn a_354_finding_demands_a_refusal_at_that_reply() {
        let t = scenario_text(&finding(
            Invariant::DataNeedsRecipient,
            Some(2),
            Some(0),
            false,
        ));
        assert!(t.contains("send \"MAIL FROM:<a@src.test>\\r\\nDATA\\r\\n\"\n< 250\n# a conforming server refuses DATA here"), "{t}");
        assert!(t.contains("< 4xx|5xx\n'''"), "{t}");
        assert!(!t.contains("s3001"), "{t}");
        assert!(t.contains("strength = \"MUST\""));
        // The script stops at the failing step.
        assert!(!t.contains("QUIT"), "{t}");
    }

    #[test]
    fn unprompted_replies_expect_silence_before_the_next_step() {
        let t = scenario_text(&finding(Invariant::OneReplyPerCommand, None, Some(2), true));
        assert!(
            t.contains(
                "pause 20ms\n# x at dest.test\n< nothing 1s\nsend \"QUIT\\r\\n\"\n< 221\n'''"
            ),
            "{t}"
        );
    }

    #[test]
    fn delivery_findings_keep_the_whole_session_and_expect_relayed() {
        let mut f = finding(Invariant::AcceptedIsDelivered, None, Some(0), false);
        f.trace.content_steps = vec![2];
        let t = scenario_text(&f);
        assert!(t.contains("data \"QUIT\\r\\n\""), "{t}");
        assert!(t.contains("relayed = { host = \"mx\", count = 0 }"), "{t}");
    }
}
