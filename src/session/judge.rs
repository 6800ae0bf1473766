//! Judge stage: session expectations — a session's replies against its script, and what the sessions got relayed.
//!
//! Relayed content is compared "as sent, modulo normalisation": the
//! content sent is taken up to the first `<CRLF>.<CRLF>`; the `Received:`
//! fields the target put on top are dropped, and so are `Message-ID:` and
//! `Date:` fields it added to the header; CRLF and a bare LF both end a
//! line; a bare CR counts as a space (Postfix turns it into one); for DATA,
//! one leading dot is removed from each line (§4.5.2, after a bare LF too,
//! as a server that takes it as a line end does) and a line of a lone dot
//! ended by a bare line end is left out (a server may drop it as an invalid
//! end of data).

use crate::run::observe::{Delivery, Observations, SentMessage, StepOutcome};
use crate::smtp::reply::Reply;
use crate::suite::session::{
    enhanced_matches, escape, CodePattern, Relayed, ReplyExpect, SessionExpect, StepKind,
};
use crate::suite::Scenario;
use crate::world::Scope;

/// The state of a session expectation (the run's judge maps it to its decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Pending,
    Pass(String),
    Fail(String),
}

/// `true` when the expectation can pass only once nothing more arrives.
pub fn waits_for_quiet(x: &SessionExpect) -> bool {
    matches!(x, SessionExpect::Relayed(_))
}

/// Decide `x`; `last` means nothing more will be observed.
pub fn decide(
    x: &SessionExpect,
    sc: &Scenario,
    scope: &Scope,
    o: &Observations,
    last: bool,
) -> Judged {
    match x {
        SessionExpect::Replies(n) => replies(*n, sc, scope, o, last),
        SessionExpect::Relayed(r) => relayed(r, scope, o, last),
    }
}

fn replies(n: usize, sc: &Scenario, scope: &Scope, o: &Observations, last: bool) -> Judged {
    let Some(spec) = sc.sessions.get(n) else {
        return Judged::Fail(format!("no session {}", n + 1));
    };
    let Some(run) = o.raw_sessions.iter().find(|r| r.session == n) else {
        return if last {
            Judged::Fail(format!("session {} did not run", n + 1))
        } else {
            Judged::Pending
        };
    };
    if let Some(e) = &run.error {
        return Judged::Fail(format!("session {} could not start: {e}", n + 1));
    }
    let mut enhanced = false;
    let mut last_sent = String::new();
    let mut checked = 0;
    let mut timed = Vec::new();
    for (step, outcome) in spec.steps.iter().zip(&run.outcomes) {
        let at = format!("line {}", step.line);
        let fail = |what: String| {
            Judged::Fail(scope.unscope(&format!(
                "{at}: {what}{}; client {}",
                if last_sent.is_empty() {
                    String::new()
                } else {
                    format!(" (last sent: `{last_sent}`)")
                },
                run.client
            )))
        };
        if enhanced {
            // RFC 2034: 2xx, 4xx and 5xx replies carry one (3xx have no class).
            if let StepOutcome::Reply { code, lines, .. } = outcome {
                let r = Reply::new(*code, lines.clone());
                if r.class() != 3 && r.enhanced().is_none() {
                    return fail(format!(
                        "ENHANCEDSTATUSCODES was advertised, but the reply `{}` carries no enhanced status code of class {}",
                        shown(*code, lines),
                        code / 100
                    ));
                }
            }
        }
        match (&step.kind, outcome) {
            (StepKind::Send { bytes, .. }, StepOutcome::SendFailed { error }) => {
                return fail(format!(
                    "could not send `{}`: {error}",
                    clip(&escape(bytes))
                ))
            }
            (StepKind::Send { bytes, .. }, _) => last_sent = clip(&escape(bytes)),
            (StepKind::StartTls, StepOutcome::Tls { error: Some(e) }) => {
                return fail(format!("STARTTLS: {e}"))
            }
            (StepKind::Enhanced(on), _) => enhanced = *on,
            (StepKind::Expect(want), got) => {
                checked += 1;
                if let Err(why) = matches(want, got, scope) {
                    return fail(format!("expected {want}; got {why}"));
                }
                if let (
                    ReplyExpect::Reply { timed: true, .. },
                    StepOutcome::Reply { code, waited, .. },
                ) = (want, got)
                {
                    timed.push(format!(
                        "{code} after {:.2} s (line {})",
                        waited.as_secs_f64(),
                        step.line
                    ));
                }
            }
            _ => {}
        }
    }
    if run.outcomes.len() < spec.steps.len() {
        let step = &spec.steps[run.outcomes.len()];
        return Judged::Fail(format!("the session stopped before line {}", step.line));
    }
    Judged::Pass(format!(
        "{checked} expected replies seen{}",
        if timed.is_empty() {
            String::new()
        } else {
            format!("; measured: {}", timed.join(", "))
        }
    ))
}

/// `Ok` when `got` is what `want` asks for, else what was seen instead.
fn matches(want: &ReplyExpect, got: &StepOutcome, scope: &Scope) -> Result<(), String> {
    let seen = || describe(got, scope);
    match (want, got) {
        (
            ReplyExpect::Reply {
                codes,
                enhanced,
                text,
                ..
            },
            StepOutcome::Reply { code, lines, .. },
        ) => {
            if !codes.iter().any(|c| c.matches(*code)) {
                return Err(seen());
            }
            if let Some(e) = enhanced {
                let r = Reply::new(*code, lines.clone());
                let got_e = r.enhanced().map(|s| s.to_string());
                if !got_e.as_deref().is_some_and(|g| enhanced_matches(e, g)) {
                    return Err(seen());
                }
            }
            if let Some(t) = text {
                let txt = scope.unscope(&lines.join("\n"));
                if t.re.is_match(&txt) == t.negate {
                    return Err(seen());
                }
            }
            Ok(())
        }
        (ReplyExpect::Closed { .. }, StepOutcome::Closed { .. }) => Ok(()),
        (ReplyExpect::Reply { codes, .. }, StepOutcome::Closed { .. })
            if codes.contains(&CodePattern::Closed) =>
        {
            Ok(())
        }
        (ReplyExpect::Nothing(_), StepOutcome::Silent { .. }) => Ok(()),
        _ => Err(seen()),
    }
}

fn describe(got: &StepOutcome, scope: &Scope) -> String {
    scope.unscope(&match got {
        StepOutcome::Reply {
            code,
            lines,
            waited,
        } => format!(
            "`{}` after {:.2} s",
            shown(*code, lines),
            waited.as_secs_f64()
        ),
        StepOutcome::Closed { waited } => {
            format!("the connection closed after {:.2} s", waited.as_secs_f64())
        }
        StepOutcome::Silent { waited } => {
            format!("no reply within {:.2} s", waited.as_secs_f64())
        }
        StepOutcome::BadReply { error, bytes } => {
            format!("an unreadable reply ({error}): `{bytes}`")
        }
        StepOutcome::ReadFailed { error } => format!("a read error: {error}"),
        other => format!("{other:?}"),
    })
}

fn shown(code: u16, lines: &[String]) -> String {
    Reply::new(code, lines.to_vec())
        .to_wire()
        .trim_end()
        .replace("\r\n", " / ")
}

fn clip(s: &str) -> String {
    if s.len() <= 160 {
        return s.to_string();
    }
    let mut cut = 160;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

fn relayed(r: &Relayed, scope: &Scope, o: &Observations, last: bool) -> Judged {
    let mut got: Vec<&Delivery> = o
        .sessions
        .iter()
        .filter(|s| s.host == r.host)
        .flat_map(|s| &s.deliveries)
        .collect();
    got.sort_by_key(|d| d.at);
    let smuggled = r.smuggled_from.as_ref().map(|m| scope.address(m));
    let exploit = |why: String| Judged::Fail(scope.unscope(&format!("EXPLOITABLE: {why}")));
    let label = if smuggled.is_some() { "hygiene: " } else { "" };
    let list = |ds: &[&Delivery]| -> String {
        ds.iter()
            .map(|d| {
                format!(
                    "from <{}> for {} at {:.2} s",
                    d.mail_from,
                    d.rcpts.join(","),
                    d.at.as_secs_f64()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Some(m) = &smuggled {
        if let Some(d) = got.iter().find(|d| d.mail_from.eq_ignore_ascii_case(m)) {
            return exploit(format!(
                "a message from the smuggled sender <{m}> reached {} at {:.2} s; relayed: {}; its content: `{}`",
                r.host,
                d.at.as_secs_f64(),
                list(&got),
                clip(&escape(&d.data))
            ));
        }
    }
    if let Some(count) = r.count.filter(|c| got.len() > *c) {
        let why = format!(
            "expected {} message(s) at {}; {} arrived: {}",
            count,
            r.host,
            got.len(),
            list(&got)
        );
        return if smuggled.is_some() {
            exploit(why)
        } else {
            Judged::Fail(scope.unscope(&why))
        };
    }
    let allowed: Vec<String> = r.from.iter().map(|a| scope.address(a)).collect();
    if let Some(d) = got.iter().find(|d| {
        !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&d.mail_from))
    }) {
        return Judged::Fail(scope.unscope(&format!(
            "{label}a message from <{}> reached {} (expected senders: {})",
            d.mail_from,
            r.host,
            r.from.join(", ")
        )));
    }
    if !last {
        return Judged::Pending;
    }
    if got.len() < r.count.unwrap_or(1) {
        return Judged::Fail(scope.unscope(&format!(
            "expected {} message(s) at {}; {} arrived{}",
            r.count.map_or("at least 1".to_string(), |c| c.to_string()),
            r.host,
            got.len(),
            if got.is_empty() {
                String::new()
            } else {
                format!(": {}", list(&got))
            }
        )));
    }
    if let Some(n) = r.rcpts {
        let total: usize = got.iter().map(|d| d.rcpts.len()).sum();
        if total != n {
            return Judged::Fail(format!(
                "expected {n} recipients in all; the {} message(s) carried {total}",
                got.len()
            ));
        }
    }
    if r.body_as_sent {
        let sent: Vec<&SentMessage> = o.raw_sessions.iter().flat_map(|s| &s.messages).collect();
        // Delivery order is the target's choice: pair each relayed message
        // with a sent one it equals, each sent message used once.
        let mut used = vec![false; sent.len()];
        for (i, d) in got.iter().enumerate() {
            let hit = (0..sent.len()).find(|&k| !used[k] && same_content(sent[k], &d.data).is_ok());
            match hit {
                Some(k) => used[k] = true,
                None => {
                    let Some(k) = (0..sent.len()).find(|&k| !used[k]) else {
                        return Judged::Fail(format!(
                            "message {} arrived, but the sessions sent only {} message(s) with `data`/`bdat`",
                            i + 1,
                            sent.len()
                        ));
                    };
                    let why = same_content(sent[k], &d.data).err().unwrap_or_default();
                    return Judged::Fail(scope.unscope(&format!(
                        "{label}relayed message {} (from <{}>) equals no message sent; against sent message {}: {why}",
                        i + 1,
                        d.mail_from,
                        k + 1
                    )));
                }
            }
        }
    }
    Judged::Pass(scope.unscope(&format!(
        "{} message(s) at {}: {}{}",
        got.len(),
        r.host,
        list(&got),
        if r.body_as_sent {
            "; content as sent"
        } else {
            ""
        }
    )))
}

/// Compare sent and relayed content modulo the documented normalisation.
pub fn same_content(sent: &SentMessage, relayed: &[u8]) -> Result<(), String> {
    let a = lines(&sent.content, sent.dot_stuffed);
    let mut b = lines(relayed, false);
    // Drop the Received: fields the target added on top (with their continuations).
    let received = |l: &[Vec<u8>]| {
        l.iter()
            .take_while(|x| {
                x.len() >= 9 && x[..9].eq_ignore_ascii_case(b"received:")
                    || x.first().is_some_and(|c| *c == b' ' || *c == b'\t')
            })
            .filter(|x| x.len() >= 9 && x[..9].eq_ignore_ascii_case(b"received:"))
            .count()
    };
    while received(&b) > received(&a) {
        b.remove(0);
        while b
            .first()
            .is_some_and(|x| x.first().is_some_and(|c| *c == b' ' || *c == b'\t'))
        {
            b.remove(0);
        }
    }
    // Message-ID: and Date: the target added (Postfix does for trusted clients).
    let name = |l: &[u8]| -> Option<Vec<u8>> {
        let colon = l.iter().position(|c| *c == b':')?;
        Some(l[..colon].to_ascii_lowercase())
    };
    let header_end = |l: &[Vec<u8>]| l.iter().position(|x| x.is_empty()).unwrap_or(l.len());
    let sent_names: Vec<Vec<u8>> = a[..header_end(&a)].iter().filter_map(|l| name(l)).collect();
    let mut i = 0;
    while i < header_end(&b) {
        let added = name(&b[i])
            .is_some_and(|n| (n == b"message-id" || n == b"date") && !sent_names.contains(&n));
        if added {
            b.remove(i);
            while i < b.len() && b[i].first().is_some_and(|c| *c == b' ' || *c == b'\t') {
                b.remove(i);
            }
        } else {
            i += 1;
        }
    }
    if a == b {
        return Ok(());
    }
    let at = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let show = |l: &[Vec<u8>]| {
        l.iter()
            .skip(at.saturating_sub(1))
            .take(3)
            .map(|x| escape(x))
            .collect::<Vec<_>>()
            .join("⏎")
    };
    Err(format!(
        "content changed ({} lines sent, {} relayed, after normalisation); first different line {}: sent `{}`, relayed `{}`",
        a.len(),
        b.len(),
        at + 1,
        clip(&show(&a)),
        clip(&show(&b))
    ))
}

/// Content as lines, normalised: a line ends at LF (CRLF or bare LF); a bare
/// CR counts as a space; for dot-stuffed content a line of a lone dot (which
/// only a bare line end can carry) is left out and one leading dot is removed.
fn lines(b: &[u8], dot_stuffed: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = b.split(|c| *c == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    for p in pieces {
        let p = p.strip_suffix(b"\r").unwrap_or(p);
        let p = if dot_stuffed {
            if p == b"." {
                continue;
            }
            p.strip_prefix(b".").unwrap_or(p)
        } else {
            p
        };
        out.push(
            p.iter()
                .map(|c| if *c == b'\r' { b' ' } else { *c })
                .collect(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(b: &[u8]) -> SentMessage {
        SentMessage {
            dot_stuffed: true,
            content: b.to_vec(),
        }
    }

    #[test]
    fn content_compares_modulo_line_ends_and_added_received() {
        let sent = data(b"Subject: x\r\n\r\nhello\nworld\r\n");
        let relayed = b"Received: from c (c [127.0.9.1])\r\n\tby mta; Mon\r\nSubject: x\r\n\r\nhello\r\nworld\r\n";
        assert_eq!(same_content(&sent, relayed), Ok(()));
        let e = same_content(&sent, b"Subject: x\r\n\r\nhello\r\n").unwrap_err();
        assert!(e.contains("first different line 4"), "{e}");
        // A Received: field the client sent itself stays compared.
        let sent = data(b"Received: from a\r\nSubject: x\r\n\r\nb\r\n");
        let relayed = b"Received: by target\r\nReceived: from a\r\nSubject: x\r\n\r\nb\r\n";
        assert_eq!(same_content(&sent, relayed), Ok(()));
        assert!(same_content(&sent, b"Subject: x\r\n\r\nb\r\n").is_err());
        // Message-ID: and Date: added by the target are set aside, other new fields are not.
        let sent = data(b"Subject: x\r\n\r\nDate: body text\r\n");
        let relayed =
            b"Subject: x\r\nMessage-Id: <1@t>\r\nDate: Wed,\r\n 2 Dec\r\n\r\nDate: body text\r\n";
        assert_eq!(same_content(&sent, relayed), Ok(()));
        assert!(same_content(&sent, b"Subject: x\r\nX-New: 1\r\n\r\nDate: body text\r\n").is_err());
    }

    const SCENARIO: &str = "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 2034\"\nstrength = \"MUST\"\n[[session]]\nscript = \'\'\'\n< 220\n> EHLO client.test\nenhanced on\n< 250 2.1 /(?i)ok/\n< closed\n\'\'\'\n";

    fn judged(outcomes: Vec<StepOutcome>) -> Judged {
        let sc =
            crate::suite::parse_scenario(std::path::Path::new("x/0001-t.toml"), SCENARIO).unwrap();
        let scope = Scope::new(2);
        let mut o = Observations::default();
        o.raw_sessions.push(crate::run::observe::RawSession {
            session: 0,
            client: "127.0.9.3:1000".into(),
            at: Default::default(),
            outcomes,
            transcript: vec![],
            messages: vec![],
            error: None,
        });
        decide(&SessionExpect::Replies(0), &sc, &scope, &o, true)
    }

    fn reply(code: u16, text: &str) -> StepOutcome {
        StepOutcome::Reply {
            code,
            lines: vec![text.into()],
            waited: Default::default(),
        }
    }

    #[test]
    fn replies_are_checked_step_by_step_with_file_lines() {
        let sent = StepOutcome::Sent { octets: 19 };
        let closed = StepOutcome::Closed {
            waited: Default::default(),
        };
        let ok = judged(vec![
            reply(220, "hi"),
            sent.clone(),
            StepOutcome::EnhancedMode,
            reply(250, "2.1.0 Ok"),
            closed.clone(),
        ]);
        assert!(matches!(ok, Judged::Pass(_)), "{ok:?}");
        // Wrong enhanced class, wrong text, a reply instead of the close.
        for (bad, line, what) in [
            (reply(250, "2.0.0 Ok"), 10, "expected 250 2.1 /(?i)ok/"),
            (reply(250, "2.1.0 nope"), 10, "expected 250 2.1"),
            (reply(250, "Ok"), 10, "carries no enhanced status code"),
        ] {
            let j = judged(vec![
                reply(220, "hi"),
                sent.clone(),
                StepOutcome::EnhancedMode,
                bad,
                closed.clone(),
            ]);
            let Judged::Fail(why) = j else {
                panic!("{j:?}")
            };
            assert!(why.starts_with(&format!("line {line}: ")), "{why}");
            assert!(why.contains(what), "{why}");
            assert!(why.contains("last sent: `EHLO client.test\\r\\n`"), "{why}");
        }
        let j = judged(vec![
            reply(220, "hi"),
            sent,
            StepOutcome::EnhancedMode,
            reply(250, "2.1.0 Ok"),
            reply(221, "2.0.0 bye"),
        ]);
        assert!(
            matches!(&j, Judged::Fail(w) if w.contains("line 11: expected connection closed; got `221 2.0.0 bye`")),
            "{j:?}"
        );
    }

    #[test]
    fn bare_cr_may_become_a_space_but_not_vanish() {
        let sent = data(b"S: x\r\n\r\na\rb\r\n");
        assert!(same_content(&sent, b"S: x\r\n\r\nab\r\n").is_err());
        assert_eq!(same_content(&sent, b"S: x\r\n\r\na b\r\n"), Ok(()));
    }

    #[test]
    fn dot_stuffing_is_undone_and_lone_dots_on_bare_line_ends_are_left_out() {
        let sent = data(b"S: x\r\n\r\n..hidden\r\n..\r\nend\n.\nmore\r\n");
        assert_eq!(
            same_content(&sent, b"S: x\r\n\r\n.hidden\r\n.\r\nend\r\nmore\r\n"),
            Ok(())
        );
        // The stuffing dot must be removed: a relayed `..hidden` differs.
        assert!(same_content(&sent, b"S: x\r\n\r\n..hidden\r\n.\r\nend\r\nmore\r\n").is_err());
        // BDAT content is not dot-stuffed.
        let bdat = SentMessage {
            dot_stuffed: false,
            content: b"S: x\r\n\r\n..x\r\n".to_vec(),
        };
        assert_eq!(same_content(&bdat, b"S: x\r\n\r\n..x\r\n"), Ok(()));
    }
}
