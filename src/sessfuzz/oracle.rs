//! Fuzz stage: the protocol invariants every session is judged by, each named, with its RFC section and strength.

use crate::rfc::Strength;
use serde::Serialize;

/// One invariant a conforming MTA keeps, whatever it is sent or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Invariant {
    /// Every command gets exactly one complete reply, in order (also when
    /// pipelined); nothing is sent unprompted.
    OneReplyPerCommand,
    /// Reply syntax: three digits 2–5, one code for every line of a reply,
    /// lines ≤ 512 octets ending in CRLF, enhanced class = the code's class.
    ReplySyntax,
    /// The server closes only after 221, 421 or its own timeout.
    CloseAnnounced,
    /// No 354 unless a RCPT of the transaction got 2xx.
    DataNeedsRecipient,
    /// A message accepted with 2xx at end of data reaches its recipients
    /// (our fake hosts), with the content as sent (modulo normalisation).
    AcceptedIsDelivered,
    /// A rejected message (or one whose session ended inside DATA) is never delivered.
    RejectedNotDelivered,
    /// The target process does not crash or restart.
    TargetAlive,
    /// A transient failure (4xx, a dropped connection) is retried.
    DeferralRetried,
    /// A permanent failure (5xx) is not retried.
    PermanentNotRetried,
}

impl Invariant {
    pub const ALL: [Invariant; 9] = [
        Invariant::OneReplyPerCommand,
        Invariant::ReplySyntax,
        Invariant::CloseAnnounced,
        Invariant::DataNeedsRecipient,
        Invariant::AcceptedIsDelivered,
        Invariant::RejectedNotDelivered,
        Invariant::TargetAlive,
        Invariant::DeferralRetried,
        Invariant::PermanentNotRetried,
    ];

    /// Short name, as in finding file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::OneReplyPerCommand => "one-reply-per-command",
            Invariant::ReplySyntax => "reply-syntax",
            Invariant::CloseAnnounced => "close-announced",
            Invariant::DataNeedsRecipient => "data-needs-recipient",
            Invariant::AcceptedIsDelivered => "accepted-is-delivered",
            Invariant::RejectedNotDelivered => "rejected-not-delivered",
            Invariant::TargetAlive => "target-alive",
            Invariant::DeferralRetried => "deferral-retried",
            Invariant::PermanentNotRetried => "permanent-not-retried",
        }
    }

    /// The rule, in one sentence.
    pub fn rule(self) -> &'static str {
        match self {
            Invariant::OneReplyPerCommand => "every command gets exactly one complete reply, in order under pipelining, and nothing is sent unprompted",
            Invariant::ReplySyntax => "a reply is three digits (first 2-5), the same code on every line, lines of at most 512 octets ended by CRLF, an enhanced status code of the reply's class",
            Invariant::CloseAnnounced => "the server closes the connection only after 221, 421 or its own timeout",
            Invariant::DataNeedsRecipient => "DATA gets 354 only when a RCPT of the transaction was accepted",
            Invariant::AcceptedIsDelivered => "a message accepted with 250 at end of data is delivered to its recipients with the content as sent",
            Invariant::RejectedNotDelivered => "a rejected message, or one whose session ended inside DATA, is never delivered",
            Invariant::TargetAlive => "the target does not crash or restart on any input",
            Invariant::DeferralRetried => "a delivery that failed with 4xx or a dropped connection is retried",
            Invariant::PermanentNotRetried => "a delivery refused with 5xx is not retried",
        }
    }

    /// Where the rule is written.
    pub fn rfc(self) -> &'static str {
        match self {
            Invariant::OneReplyPerCommand => "RFC 5321 §4.2, §4.3.1; RFC 2920 §3.1",
            Invariant::ReplySyntax => "RFC 5321 §4.2, §4.2.1, §4.5.3.1.5; RFC 2034 §4",
            Invariant::CloseAnnounced => "RFC 5321 §3.8, §4.1.1.10",
            Invariant::DataNeedsRecipient => "RFC 5321 §3.3, §4.1.1.4",
            Invariant::AcceptedIsDelivered => "RFC 5321 §4.1.1.4, §6.1",
            Invariant::RejectedNotDelivered => "RFC 5321 §3.3, §4.1.1.4",
            Invariant::TargetAlive => "RFC 5321 §4.1.4 (robustness); practice",
            Invariant::DeferralRetried => "RFC 5321 §4.5.4.1",
            Invariant::PermanentNotRetried => "RFC 5321 §4.2.1, §4.5.4.1",
        }
    }

    pub fn strength(self) -> Strength {
        match self {
            Invariant::TargetAlive => Strength::Practice,
            Invariant::DeferralRetried => Strength::Should,
            _ => Strength::Must,
        }
    }

    pub fn from_name(name: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// One invariant broken once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// The step of the case it was seen at (`None`: the greeting or after the case).
    pub step: Option<usize>,
    /// Seen before the step was sent (something unprompted, a close between commands).
    pub before: bool,
    /// The number (0-based, the greeting first) of the reply that broke it, if one did.
    pub reply: Option<usize>,
    pub detail: String,
}

/// Check one reply line (with its line end) as RFC 5321 §4.2 writes it.
/// `first` is the code of the reply's first line, if this is a later line.
pub fn check_reply_line(line: &[u8], first: Option<u16>) -> Result<(u16, bool), String> {
    let shown = crate::sessfuzz::escape(&line[..line.len().min(80)]);
    if !line.ends_with(b"\r\n") {
        return Err(format!("reply line `{shown}` does not end with CRLF"));
    }
    if line.len() > 512 {
        return Err(format!(
            "reply line of {} octets (CRLF included) is longer than 512: `{shown}…`",
            line.len()
        ));
    }
    let body = &line[..line.len() - 2];
    if body.len() < 3 || !body[..3].iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "reply line `{shown}` does not start with a three-digit code"
        ));
    }
    if !(b'2'..=b'5').contains(&body[0]) || body[1] > b'5' {
        return Err(format!(
            "reply code `{}` is outside 2xx-5xx / x0x-x5x",
            String::from_utf8_lossy(&body[..3])
        ));
    }
    let code =
        (body[0] - b'0') as u16 * 100 + (body[1] - b'0') as u16 * 10 + (body[2] - b'0') as u16;
    if let Some(f) = first {
        if f != code {
            return Err(format!(
                "a reply's lines carry different codes: {f} then {code}"
            ));
        }
    }
    let more = match body.get(3) {
        None | Some(b' ') => false,
        Some(b'-') => true,
        Some(_) => {
            return Err(format!(
                "reply line `{shown}`: the code is followed by neither a space nor `-`"
            ))
        }
    };
    // An enhanced status code (RFC 3463) must be of the reply's class (RFC 2034 §4).
    let text = body.get(4..).unwrap_or_default();
    if let Some(class) = enhanced_class(text) {
        if class != body[0] {
            return Err(format!(
                "reply {code} carries the enhanced status code `{}` of another class",
                String::from_utf8_lossy(
                    &text[..text.iter().position(|&b| b == b' ').unwrap_or(text.len())]
                )
            ));
        }
    }
    Ok((code, more))
}

/// The class digit of an enhanced status code at the start of `text` (`2.1.0 ok`).
fn enhanced_class(text: &[u8]) -> Option<u8> {
    let word = text.split(|&b| b == b' ').next()?;
    let parts: Vec<&[u8]> = word.split(|&b| b == b'.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.iter().all(u8::is_ascii_digit))
        && parts[0].len() == 1
        && matches!(parts[0][0], b'2' | b'4' | b'5');
    ok.then(|| parts[0][0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_are_checked() {
        assert_eq!(check_reply_line(b"250-a\r\n", None), Ok((250, true)));
        assert_eq!(check_reply_line(b"250\r\n", None), Ok((250, false)));
        assert_eq!(
            check_reply_line(b"250 2.1.0 ok\r\n", Some(250)),
            Ok((250, false))
        );
        assert!(check_reply_line(b"250 ok\n", None)
            .unwrap_err()
            .contains("CRLF"));
        assert!(check_reply_line(b"251 ok\r\n", Some(250))
            .unwrap_err()
            .contains("different codes"));
        assert!(check_reply_line(b"650 x\r\n", None).is_err());
        assert!(check_reply_line(b"2x0 x\r\n", None).is_err());
        assert!(check_reply_line(b"250_x\r\n", None).is_err());
        assert!(check_reply_line(b"550 2.1.0 x\r\n", None)
            .unwrap_err()
            .contains("another class"));
        assert!(check_reply_line(b"550 5.1.1 x\r\n", None).is_ok());
        let long = [b"250 ".as_slice(), &[b'x'; 600], b"\r\n"].concat();
        assert!(check_reply_line(&long, None).unwrap_err().contains("512"));
    }

    proptest::proptest! {
        /// Whatever the target sends, judging it never panics.
        #[test]
        fn any_line_is_judged_without_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700), first in proptest::option::of(200u16..600)) {
            let _ = check_reply_line(&b, first);
            let mut l = b.clone();
            l.extend_from_slice(b"\r\n");
            let _ = check_reply_line(&l, first);
        }
    }

    #[test]
    fn names_round_trip() {
        for i in Invariant::ALL {
            assert_eq!(Invariant::from_name(i.name()), Some(i));
            assert!(i.rfc().starts_with("RFC"));
        }
    }
}
