//! DSN parsing properties: generated reports round-trip, hostile bytes never panic, limits hold.

use mtaspec::dsn::{self, Action, DsnError, DsnLimits};
use mtaspec::smtp::reply::EnhancedStatus;
use proptest::prelude::*;

/// One generated recipient group.
#[derive(Debug, Clone)]
struct Rcpt {
    final_addr: String,
    original: Option<String>,
    action: &'static str,
    status: (u8, u16, u16),
    /// Reply code and text for `Diagnostic-Code: smtp; ...`.
    diag: Option<(u16, String)>,
    remote: Option<String>,
}

#[derive(Debug, Clone)]
struct Report {
    mta: String,
    envid: Option<String>,
    rcpts: Vec<Rcpt>,
    crlf: bool,
    fold: bool,
    headers_only: bool,
}

fn host() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,8}){1,3}"
}

fn addr() -> impl Strategy<Value = String> {
    ("[a-z0-9][a-z0-9._+-]{0,12}", host()).prop_map(|(l, h)| format!("{l}@{h}"))
}

fn rcpt() -> impl Strategy<Value = Rcpt> {
    (
        addr(),
        proptest::option::of(addr()),
        prop_oneof![
            Just("failed"),
            Just("delayed"),
            Just("delivered"),
            Just("relayed"),
            Just("expanded")
        ],
        (prop_oneof![Just(2u8), Just(4), Just(5)], 0u16..8, 0u16..30),
        proptest::option::of((200u16..600, "[A-Za-z][A-Za-z0-9 .,<>@-]{0,60}")),
        proptest::option::of(host()),
    )
        .prop_map(
            |(final_addr, original, action, status, diag, remote)| Rcpt {
                final_addr,
                original,
                action,
                status,
                diag,
                remote,
            },
        )
}

fn report() -> impl Strategy<Value = Report> {
    (
        host(),
        proptest::option::of("[A-Za-z0-9]{1,20}"),
        proptest::collection::vec(rcpt(), 1..5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mta, envid, rcpts, crlf, fold, headers_only)| Report {
            mta,
            envid,
            rcpts,
            crlf,
            fold,
            headers_only,
        })
}

/// Writes a report as a multipart/report message (RFC 6522, RFC 3464).
fn format(r: &Report) -> String {
    let mut ds = format!("Reporting-MTA: dns; {}\n", r.mta);
    if let Some(e) = &r.envid {
        ds.push_str(&format!("Original-Envelope-Id: {e}\n"));
    }
    for x in &r.rcpts {
        ds.push('\n');
        if let Some(o) = &x.original {
            ds.push_str(&format!("Original-Recipient: rfc822;{o}\n"));
        }
        ds.push_str(&format!("Final-Recipient: rfc822; {}\n", x.final_addr));
        ds.push_str(&format!("Action: {}\n", x.action));
        let (c, s, d) = x.status;
        ds.push_str(&format!("Status: {c}.{s}.{d}\n"));
        if let Some(h) = &x.remote {
            ds.push_str(&format!("Remote-MTA: dns; {h}\n"));
        }
        if let Some((code, text)) = &x.diag {
            let text = text.trim();
            if r.fold {
                ds.push_str(&format!("Diagnostic-Code: smtp;\n    {code} {text}\n"));
            } else {
                ds.push_str(&format!("Diagnostic-Code: smtp; {code} {text}\n"));
            }
        }
    }
    let returned = if r.headers_only {
        "Content-Type: text/rfc822-headers\n\nMessage-ID: <x@example.com>\nSubject: hi\n"
    } else {
        "Content-Type: message/rfc822\n\nMessage-ID: <x@example.com>\nSubject: hi\n\nbody\n"
    };
    let msg = format!(
        "From: MAILER-DAEMON@{mta}\nTo: sender@example.org\nSubject: Delivery Status Notification\n\
MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n boundary=\"=b=\"\n\n\
--=b=\nContent-Type: text/plain\n\nThe message could not be delivered.\n\n\
--=b=\nContent-Type: message/delivery-status\n\n{ds}\n\
--=b=\n{returned}\n--=b=--\n",
        mta = r.mta
    );
    if r.crlf {
        msg.replace('\n', "\r\n")
    } else {
        msg
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn generated_reports_round_trip(r in report()) {
        let bytes = format(&r);
        let d = dsn::parse(bytes.as_bytes()).expect("parses");
        prop_assert!(!d.legacy);
        prop_assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        prop_assert_eq!(d.report_type.as_deref(), Some("delivery-status"));
        let pm = d.per_message().expect("per-message fields");
        let mta = pm.reporting_mta.as_ref().expect("Reporting-MTA");
        prop_assert_eq!(mta.kind.as_deref(), Some("dns"));
        prop_assert_eq!(&mta.value, &r.mta);
        prop_assert_eq!(pm.original_envelope_id.as_ref(), r.envid.as_ref());
        let got: Vec<_> = d.recipients().collect();
        prop_assert_eq!(got.len(), r.rcpts.len());
        for (g, w) in got.iter().zip(&r.rcpts) {
            prop_assert_eq!(g.final_recipient.as_ref().map(|t| t.value.as_str()), Some(w.final_addr.as_str()));
            prop_assert_eq!(g.original_recipient.as_ref().map(|t| t.address()), w.original.clone());
            prop_assert_eq!(g.action.as_ref().and_then(Action::name), Some(w.action));
            let (c, s, dd) = w.status;
            prop_assert_eq!(g.status.as_ref().and_then(|s| s.code), Some(EnhancedStatus::new(c, s, dd)));
            prop_assert_eq!(g.remote_mta.as_ref().map(|t| t.value.clone()), w.remote.clone());
            match &w.diag {
                Some((code, text)) => {
                    let dc = g.diagnostic_code.as_ref().expect("Diagnostic-Code");
                    prop_assert!(dc.value.is_kind("smtp"));
                    prop_assert_eq!(&dc.value.value, &format!("{code} {}", text.trim()));
                    prop_assert_eq!(dc.reply.as_ref().map(|r| r.code), Some(*code));
                }
                None => prop_assert!(g.diagnostic_code.is_none()),
            }
        }
        let ret = d.returned.as_ref().expect("returned part");
        prop_assert_eq!(ret.kind == dsn::ReturnedKind::HeadersOnly, r.headers_only);
        prop_assert_eq!(ret.message_id.as_deref(), Some("x@example.com"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        if let Ok(d) = dsn::parse(&bytes) {
            let _ = dsn::check(&d);
            let _ = dsn::render_text(&d);
        }
    }

    #[test]
    fn damaged_reports_never_panic(
        r in report(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..20),
    ) {
        let mut bytes = format(&r).into_bytes();
        for (at, b, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        if let Ok(d) = dsn::parse(&bytes) {
            let _ = dsn::check(&d);
            let _ = dsn::render_text(&d);
        }
    }

    #[test]
    fn input_over_the_limit_is_refused(extra in 1usize..4096, limit in 16usize..8192) {
        let lim = DsnLimits { max_size: limit, ..DsnLimits::default() };
        let bytes = vec![b'a'; limit + extra];
        prop_assert_eq!(
            dsn::parse_with(&bytes, &lim),
            Err(DsnError::TooLarge { size: limit + extra, limit })
        );
    }
}

#[test]
fn default_limit_is_ten_mebibytes() {
    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    assert_eq!(
        dsn::parse(&big),
        Err(DsnError::TooLarge {
            size: big.len(),
            limit: 10 * 1024 * 1024
        })
    );
}

#[test]
fn field_line_limit_is_enforced() {
    let r = Report {
        mta: "mx.example.org".into(),
        envid: None,
        rcpts: vec![],
        crlf: false,
        fold: false,
        headers_only: true,
    };
    let many: String = (0..50).map(|i| format!("X-Line-{i}: v\n")).collect();
    let msg = format(&r).replace(
        "Reporting-MTA: dns; mx.example.org\n",
        &format!("Reporting-MTA: dns; mx.example.org\n{many}"),
    );
    let lim = DsnLimits {
        max_field_lines: 20,
        ..DsnLimits::default()
    };
    assert_eq!(
        dsn::parse_with(msg.as_bytes(), &lim),
        Err(DsnError::TooManyFieldLines { limit: 20 })
    );
}
