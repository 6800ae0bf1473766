//! SMTP reply parser: bounded, incremental, never panics; an accepted reply
//! re-serialised with `to_wire()` parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use bounce::reply::{parse_diagnostic, parse_reply, EnhancedStatus, Reply, ReplyLimits};

/// Pieces of reply lines: codes, separators, line ends, enhanced codes, text.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"250", b"220", b"354", b"421", b"450", b"451", b"452", b"550", b"552", b"554", b"199",
    b"600", b"-", b" ", b"\r\n", b"\n", b"\r", b"2", b"4", b"5", b"0", b"1", b"9", b".",
    b"2.0.0", b"2.1.5", b"4.4.7", b"4.7.1", b"5.1.1", b"5.7.1", b"5.01.1", b"5.1.1000",
    b"OK", b" mx.test ESMTP", b"PIPELINING", b"SIZE 1000", b"user unknown", b"\t", b";",
    b"'", b"\"", b"(", b"<a@b.test>", b"\xc3\xa9", b"\xff", b"\x00",
];

fn input(data: &[u8]) -> (ReplyLimits, Vec<u8>) {
    let (head, rest) = data.split_at(data.len().min(2));
    let limits = match head {
        [l, n] if l & 0x80 != 0 => ReplyLimits {
            max_line: usize::from(l & 0x7f) + 1,
            max_lines: usize::from(n & 15) + 1,
        },
        _ => ReplyLimits::default(),
    };
    if head.get(1).is_some_and(|m| m & 0x40 == 0) {
        return (limits, rest.to_vec());
    }
    let mut out = Vec::new();
    for &b in rest {
        let t = TOKENS[usize::from(b) % TOKENS.len()];
        if usize::from(b) < TOKENS.len() * 4 {
            out.extend_from_slice(t);
        } else {
            out.push(b);
        }
    }
    (limits, out)
}

fn wire_form(r: &Reply) -> Reply {
    Reply {
        bare_lf: false,
        ..r.clone()
    }
}

fuzz_target!(|data: &[u8]| {
    let (limits, buf) = input(data);
    if let Ok(Some((r, used))) = parse_reply(&buf, &limits) {
        assert!(used > 0 && used <= buf.len());
        assert_eq!(buf[used - 1], b'\n');
        assert!((200..600).contains(&r.code), "{r:?}");
        assert!(!r.lines.is_empty() && r.lines.len() <= limits.max_lines);
        if let Some(st) = r.enhanced() {
            assert_eq!(u16::from(st.class), r.code / 100, "{r:?}");
        }
        // What follows the reply does not change it, and a reply cut short
        // of its last line end asks for more.
        assert_eq!(
            parse_reply(&buf[..used], &limits),
            Ok(Some((r.clone(), used)))
        );
        assert_eq!(parse_reply(&buf[..used - 1], &limits), Ok(None));
        // Re-serialised, the reply reads back the same (CRLF line ends).
        let wire = r.to_wire();
        let big = ReplyLimits {
            max_line: usize::MAX / 4,
            max_lines: usize::MAX / 4,
        };
        assert_eq!(
            parse_reply(wire.as_bytes(), &big),
            Ok(Some((wire_form(&r), wire.len()))),
            "{wire:?}"
        );
        assert_eq!(wire.parse::<Reply>(), Ok(wire_form(&r)), "{wire:?}");
    }
    let text = String::from_utf8_lossy(&buf);
    if let Ok(r) = text.parse::<Reply>() {
        assert!((200..600).contains(&r.code));
        assert_eq!(r.to_wire().parse::<Reply>(), Ok(r));
    }
    if let Some(r) = parse_diagnostic(&text) {
        assert!((200..600).contains(&r.code), "{r:?}");
        assert!(!r.lines.is_empty());
    }
    if let Some((st, rest)) = EnhancedStatus::parse_prefix(&text) {
        assert!(matches!(st.class, 2 | 4 | 5));
        assert!(st.subject <= 999 && st.detail <= 999);
        assert!(text.ends_with(rest));
        assert_eq!(st.to_string().parse::<EnhancedStatus>(), Ok(st));
    }
    if let Ok(st) = text.parse::<EnhancedStatus>() {
        assert_eq!(st.to_string(), text);
    }
});
