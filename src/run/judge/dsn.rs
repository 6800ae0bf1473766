//! Judge stage: expectations about bounces — a DSN and its fields, no DSN, refused in session or bounced.

use super::*;

/// A DSN reached the sender with these properties.
pub struct Dsn<'a> {
    pub want: &'a DsnExpect,
}

impl Check for Dsn<'_> {
    fn describe(&self) -> String {
        let d = self.want;

        let mut parts = Vec::new();
        if let Some(st) = &d.status {
            parts.push(format!("Status {st}"));
        }
        if let Some(a) = &d.action {
            parts.push(format!("Action {a}"));
        }
        if let Some(r) = &d.rcpt {
            parts.push(format!("about {r}"));
        }
        if d.reporting_mta {
            parts.push("Reporting-MTA naming the target".into());
        }
        if let Some(h) = &d.remote_mta {
            parts.push(format!("Remote-MTA {h}"));
        }
        if let Some(x) = &d.diagnostic {
            parts.push(format!("Diagnostic-Code containing {x:?}"));
        }
        if d.multipart_report {
            parts.push("multipart/report structure".into());
        }
        match d.returned {
            Some(Returned::Headers) => parts.push("headers returned".into()),
            Some(Returned::Full) => parts.push("full message returned".into()),
            Some(Returned::Nothing) => parts.push("nothing returned".into()),
            None => {}
        }
        if let Some(x) = &d.envid {
            parts.push(format!("ENVID {x}"));
        }
        if let Some(x) = &d.orcpt {
            parts.push(format!("ORCPT {x}"));
        }
        if d.will_retry_until {
            parts.push("Will-Retry-Until".into());
        }
        if d.auto_submitted {
            parts.push("Auto-Submitted".into());
        }
        if !d.no_findings.is_empty() {
            parts.push(format!("no finding {}", d.no_findings.join(", ")));
        }
        if let Some(r) = &d.reason {
            parts.push(format!("reason {r}"));
        }
        if parts.is_empty() {
            format!("DSN to {}", d.to)
        } else {
            format!("DSN to {} with {}", d.to, parts.join(", "))
        }
    }

    fn waits_for_quiet(&self, cx: &Ctx) -> bool {
        !dsns_to(cx.o, &cx.scope.address(&self.want.to)).is_empty()
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let want = self.want;
        let (scope, o) = (cx.scope, cx.o);
        let pending_or = |why: String| cx.pending_or(why);

        let dsns = dsns_to(o, &scope.address(&want.to));
        let mut seen = Vec::new();
        for d in &dsns {
            match check_dsn(want, d, cx) {
                Ok(pass) => return Decision::Pass(pass),
                Err(why) => seen.push(why),
            }
        }
        pending_or(format!(
            "expected {}; observed: {}",
            self.describe(),
            if seen.is_empty() {
                format!("no DSN ({})", scope.unscope(&summary(o)))
            } else {
                seen.join("; ")
            }
        ))
    }
}

/// No DSN (with `action`, when given) was sent.
pub struct NoDsn<'a> {
    pub action: &'a Option<String>,
}

impl Check for NoDsn<'_> {
    fn describe(&self) -> String {
        match self.action {
            Some(a) => format!("no DSN with Action {a} sent"),
            None => "no DSN sent".into(),
        }
    }

    fn negative(&self) -> bool {
        true
    }

    fn unfailable(&self, sc: &Scenario) -> Option<String> {
        let somewhere = sc
            .messages
            .iter()
            .any(|m| !m.from.is_empty() || m.header_from.is_some());
        (!somewhere).then(|| {
            "no message has a sender address a DSN could reach (from = \"\"); give it `header_from` so a forbidden bounce has somewhere to arrive".to_string()
        })
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let (sc, scope, o, last) = (cx.sc, cx.scope, cx.o, cx.last);
        let ours: Vec<String> = sc
            .messages
            .iter()
            .flat_map(|m| &m.to)
            .map(|t| scope.address(t))
            .collect();
        // A null-sender message for anyone but the injected recipients is a
        // DSN; with an action given, only one reporting that action counts.
        let action_of = |d: &Delivery| -> Option<String> {
            let p = crate::dsn::parse(&d.data).ok()?;
            for r in p.recipients() {
                if let Some(name) = r.action.as_ref().and_then(|a| a.name()) {
                    return Some(name.to_string());
                }
            }
            None
        };
        // Where bounces go: the senders' addresses (envelope, or the From:
        // header of a null-sender message). Anything arriving there is a
        // report sent back, whatever its own envelope sender (Postfix sends
        // a double bounce from double-bounce@, not from <>).
        let watched: Vec<String> = sc
            .messages
            .iter()
            .filter_map(|m| {
                let a = if m.from.is_empty() {
                    m.header_from.as_ref()?
                } else {
                    &m.from
                };
                Some(scope.address(a))
            })
            .collect();
        let dsn = o.sessions.iter().flat_map(|s| &s.deliveries).find(|d| {
            let bounce = d.mail_from.is_empty()
                && !d
                    .rcpts
                    .iter()
                    .all(|r| ours.iter().any(|x| x.eq_ignore_ascii_case(r)));
            let sent_back = d
                .rcpts
                .iter()
                .any(|r| watched.iter().any(|w| w.eq_ignore_ascii_case(r)));
            (bounce || sent_back)
                && self
                    .action
                    .as_ref()
                    .is_none_or(|a| action_of(d).is_some_and(|x| x.eq_ignore_ascii_case(a)))
        });
        match dsn {
            Some(d) => Decision::Fail(format!(
                "expected {}; one reached {} for {} at {:.3} s",
                self.describe(),
                d.host,
                scope.unscope(&d.rcpts.join(", ")),
                d.at.as_secs_f64()
            )),
            None if last => Decision::Pass(match self.action {
                Some(a) => format!("no DSN with Action {a} was sent"),
                None => "no DSN was sent".into(),
            }),
            None => Decision::Pending,
        }
    }
}

/// Refused in session with `status`, or accepted and bounced with it.
pub struct RefusedOrDsn<'a> {
    pub status: &'a String,
}

impl Check for RefusedOrDsn<'_> {
    fn describe(&self) -> String {
        let status = self.status;

        format!("message refused in session or bounced with status {status}")
    }

    fn waits_for_quiet(&self, cx: &Ctx) -> bool {
        cx.sc
            .messages
            .first()
            .is_some_and(|m| !dsns_to(cx.o, &cx.scope.address(&m.from)).is_empty())
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let status = self.status;
        let (sc, scope, o) = (cx.sc, cx.scope, cx.o);
        let pending_or = |why: String| cx.pending_or(why);

        let Some(i) = o.injections.first() else {
            return pending_or("the message was not injected".into());
        };
        if !i.accepted {
            let reply = last_reply(i);
            let st = reply_status(&reply);
            return if st.as_deref().is_some_and(|s| status_matches(s, status)) {
                Decision::Pass(format!("refused in session: {}", scope.unscope(&reply)))
            } else {
                Decision::Fail(format!(
                        "expected status {status}; the target refused the message in session with {} (status {})",
                        scope.unscope(&reply),
                        st.as_deref().unwrap_or("none")
                    ))
            };
        }
        let want = crate::suite::DsnExpect {
            to: sc.messages[0].from.clone(),
            status: Some(status.clone()),
            ..Default::default()
        };
        let mut seen = Vec::new();
        for d in dsns_to(o, &scope.address(&want.to)) {
            match check_dsn(&want, d, cx) {
                Ok(pass) => return Decision::Pass(format!("accepted, then bounced: {pass}")),
                Err(why) => seen.push(why),
            }
        }
        pending_or(format!(
            "expected a refusal or a DSN with status {status}; the target accepted the message; {}",
            if seen.is_empty() {
                "no DSN followed".to_string()
            } else {
                seen.join("; ")
            }
        ))
    }
}

/// Check one DSN against the expectation: `Ok(description)` or `Err(what differs)`.
fn check_dsn(want: &DsnExpect, d: &Delivery, cx: &Ctx) -> Result<String, String> {
    let scope = cx.scope;
    let at = format!("DSN at {:.3} s", d.at.as_secs_f64());
    let p = crate::dsn::parse(&d.data).map_err(|e| format!("{at}: unreadable: {e}"))?;
    let findings = crate::dsn::check(&p);
    let mut bad: Vec<String> = Vec::new();
    let rcpt = match &want.rcpt {
        None => p.recipients().next(),
        Some(r) => {
            let a = scope.address(r);
            p.recipients()
                .find(|x| x.addresses().iter().any(|y| y.eq_ignore_ascii_case(&a)))
        }
    };
    if rcpt.is_none() {
        bad.push(match &want.rcpt {
            Some(r) => format!("no recipient group for {r}"),
            None => "no recipient group".into(),
        });
    }
    // The parsed code, so that comments or odd spacing in the field can
    // neither make a wrong code match nor a right one miss.
    let st = rcpt.and_then(|r| r.status.as_ref()).map(|s| match &s.code {
        Some(c) => c.to_string(),
        None => format!("unreadable ({})", s.raw.trim()),
    });
    let act = rcpt
        .and_then(|r| r.action.as_ref())
        .map(|a| a.raw().trim().to_ascii_lowercase());
    if let Some(w) = &want.status {
        if !st.as_deref().is_some_and(|s| status_matches(s, w)) {
            bad.push(format!(
                "Status {} (wanted {w})",
                st.as_deref().unwrap_or("missing")
            ));
        }
    }
    if let (Some(w), Some(r)) = (&want.reason, rcpt) {
        let all = crate::dsn::classify(&p);
        let c = p.recipients().zip(&all).find(|(x, _)| std::ptr::eq(*x, r));
        if let Some((_, c)) = c.filter(|(_, c)| c.reason.as_str() != w) {
            bad.push(format!(
                "reason {} by {} (wanted {w})",
                c.reason, c.evidence
            ));
        }
    }
    if let Some(nr) = &want.not_rcpt {
        let a = scope.address(nr);
        if p.recipients()
            .any(|x| x.addresses().iter().any(|y| y.eq_ignore_ascii_case(&a)))
        {
            bad.push(format!("reports on {nr}, which must not be in it"));
        }
    }
    if let Some(t) = &want.not_before {
        match super::resolve_timer(t, cx.knobs) {
            Ok(min) if d.at + super::GRANULARITY < min => bad.push(format!(
                "came at {:.3} s, before {t} = {:.1} s (less {:.1} s of clock granularity)",
                d.at.as_secs_f64(),
                min.as_secs_f64(),
                super::GRANULARITY.as_secs_f64()
            )),
            Ok(_) => {}
            Err(m) => bad.push(m),
        }
    }
    if let Some(w) = &want.action {
        if act.as_deref().is_none_or(|a| a != w) {
            bad.push(format!(
                "Action {} (wanted {w})",
                act.as_deref().unwrap_or("missing")
            ));
        }
    }
    let reporting = p
        .per_message()
        .and_then(|m| m.reporting_mta.as_ref())
        .map(|v| v.raw.clone());
    let reporting_name = p
        .per_message()
        .and_then(|m| m.reporting_mta.as_ref())
        .map(|v| mta_name(&v.value));
    if want.reporting_mta
        && reporting_name
            .as_deref()
            .is_none_or(|r| r != cx.hostname.trim_end_matches('.').to_ascii_lowercase())
    {
        bad.push(format!(
            "Reporting-MTA {} (wanted the target's name {})",
            reporting.as_deref().unwrap_or("missing"),
            cx.hostname
        ));
    }
    let remote = rcpt
        .and_then(|r| r.remote_mta.as_ref())
        .map(|v| mta_name(&v.value));
    if let Some(h) = &want.remote_mta {
        let idx = cx.sc.hosts.iter().position(|x| x.key == *h);
        let name = idx
            .and_then(|i| cx.sc.hosts[i].name.as_ref())
            .map(|n| scope.name(n));
        let addr = idx.map(|i| scope.host_addr(i).to_string());
        let ok = remote.as_deref().is_some_and(|r| {
            name.as_deref().is_some_and(|n| r == n.to_ascii_lowercase())
                || addr.as_deref().is_some_and(|a| r == a)
        });
        if !ok {
            bad.push(format!(
                "Remote-MTA {} (wanted {h}, {})",
                remote
                    .as_deref()
                    .map(|r| scope.unscope(r))
                    .unwrap_or_else(|| "missing".into()),
                name.as_deref()
                    .map(|n| scope.unscope(n))
                    .unwrap_or_default()
            ));
        }
    }
    let diag = rcpt
        .and_then(|r| r.diagnostic_code.as_ref())
        .map(|c| scope.unscope(&c.value.raw));
    if let Some(w) = &want.diagnostic {
        if !diag
            .as_deref()
            .is_some_and(|x| x.to_ascii_lowercase().contains(&w.to_ascii_lowercase()))
        {
            bad.push(format!(
                "Diagnostic-Code {} (wanted one containing {w:?})",
                diag.as_deref().unwrap_or("missing")
            ));
        }
    }
    if want.multipart_report {
        let mut why = Vec::new();
        if p.content_type != "multipart/report" {
            why.push(format!("content type {}", p.content_type));
        }
        if p.report_type.as_deref() != Some("delivery-status") {
            why.push(format!(
                "report-type {}",
                p.report_type.as_deref().unwrap_or("missing")
            ));
        }
        if p.legacy || p.reports.is_empty() {
            why.push("no message/delivery-status part".into());
        }
        if p.human_text.is_none() {
            why.push("no human-readable part".into());
        }
        if !why.is_empty() {
            bad.push(format!("not a multipart/report DSN: {}", why.join(", ")));
        }
    }
    if let Some(w) = want.returned {
        let got = p.returned.as_ref().map(|r| r.kind);
        let ok = match w {
            Returned::Headers => got == Some(crate::dsn::ReturnedKind::HeadersOnly),
            Returned::Full => got == Some(crate::dsn::ReturnedKind::FullMessage),
            Returned::Nothing => got.is_none(),
        };
        if !ok {
            bad.push(format!(
                "returned content {} (wanted {})",
                p.returned
                    .as_ref()
                    .map(|r| r.content_type.clone())
                    .unwrap_or_else(|| "none".into()),
                match w {
                    Returned::Headers => "headers only",
                    Returned::Full => "the full message",
                    Returned::Nothing => "none",
                }
            ));
        }
    }
    let envid = p.per_message().and_then(|m| m.original_envelope_id.clone());
    if let Some(w) = &want.envid {
        if envid.as_deref().map(str::trim) != Some(w.as_str()) {
            bad.push(format!(
                "Original-Envelope-Id {} (wanted {w})",
                envid.as_deref().unwrap_or("missing")
            ));
        }
    }
    let orcpt = rcpt.and_then(|r| r.original_recipient.as_ref());
    if let Some(w) = &want.orcpt {
        let (kind, addr) = match w.split_once(';') {
            Some((k, a)) => (Some(k.trim()), a.trim()),
            None => (None, w.trim()),
        };
        let ok = orcpt.is_some_and(|v| {
            v.address().eq_ignore_ascii_case(&scope.address(addr))
                && kind.is_none_or(|k| v.is_kind(k))
        });
        if !ok {
            bad.push(format!(
                "Original-Recipient {} (wanted {w})",
                orcpt
                    .map(|v| scope.unscope(&v.raw))
                    .unwrap_or_else(|| "missing".into())
            ));
        }
    }
    if want.will_retry_until && rcpt.is_some_and(|r| r.will_retry_until.is_none()) {
        bad.push("no Will-Retry-Until".into());
    }
    if want.auto_submitted {
        match auto_submitted(&d.data) {
            Some(v) if !v.eq_ignore_ascii_case("no") => {}
            Some(v) => bad.push(format!("Auto-Submitted: {v} (wanted auto-replied)")),
            None => bad.push("no Auto-Submitted header (wanted auto-replied)".into()),
        }
    }
    if !want.no_findings.is_empty() {
        let mut b = globset::GlobSetBuilder::new();
        for g in &want.no_findings {
            if let Ok(g) = globset::Glob::new(g) {
                b.add(g);
            }
        }
        if let Ok(set) = b.build() {
            for f in findings.iter().filter(|f| set.is_match(&f.rule)) {
                bad.push(format!(
                    "finding {} ({} {}): {}",
                    f.rule,
                    f.section,
                    f.strength,
                    scope.unscope(&f.detail)
                ));
            }
        }
    }
    let desc = format!(
        "{at} from {} with Status {}, Action {}{}{}",
        if d.mail_from.is_empty() {
            "<>"
        } else {
            &d.mail_from
        },
        st.as_deref().unwrap_or("(none)"),
        act.as_deref().unwrap_or("(none)"),
        diag.as_deref()
            .map(|x| format!(", Diagnostic-Code {x}"))
            .unwrap_or_default(),
        if findings.is_empty() {
            "; conformance findings: none".to_string()
        } else {
            format!(
                "; conformance findings: {}",
                findings
                    .iter()
                    .map(|f| format!(
                        "{} ({} {}): {}",
                        f.rule,
                        f.section,
                        f.strength,
                        scope.unscope(&f.detail)
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    );
    if bad.is_empty() {
        Ok(desc)
    } else {
        Err(format!("{desc} — differs: {}", bad.join(", ")))
    }
}

/// The value of the top-level `Auto-Submitted:` header (keyword only, no comment).
pub fn auto_submitted(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let header = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .to_string();
    header.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("auto-submitted").then(|| {
            let v = value.trim();
            v.split(|c: char| c == ';' || c == '(' || c.is_whitespace())
                .next()
                .unwrap_or(v)
                .to_string()
        })
    })
}

/// The host name (or address literal) in a Reporting-MTA / Remote-MTA value
/// (`mta.example; 127.0.0.1` style comments and brackets removed), lowercase.
pub fn mta_name(value: &str) -> String {
    let v = value.trim();
    let v = v
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or(v);
    v.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}
