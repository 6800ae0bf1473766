//! DSN parsing: legacy plain-text bounces (qmail, Exim, Postfix, Sendmail prose).
//!
//! These bounces carry no RFC 3464 fields. The reader cuts the prose at the
//! start of the returned message, then looks for recipient addresses in the
//! layouts MTAs use (an address alone on a line, `<addr>:` as qmail writes,
//! `RCPT TO:<addr>` in transcripts) and for the remote server's reply near
//! each address. When nothing better is found, any address in the prose
//! (other than the bounce's own parties) is taken, and as a last resort the
//! recipients of the returned message.

use mail_parser::{Address, HeaderName, Message};

use super::structure::{address_field, raw_fields, raw_value};
use memchr::{memchr, memchr2};

use super::{find_byte, Recipient};
use crate::reply::{parse_diagnostic, EnhancedStatus, Reply};

pub(crate) struct Found {
    pub recipients: Vec<Recipient>,
    pub format: Option<&'static str>,
    /// Where the returned message starts in the prose, if it is inline.
    pub returned_at: Option<usize>,
}

/// Known first sentences of legacy bounces, lowercase.
const SIGNATURES: &[(&str, &str)] = &[
    ("this is the qmail-send program", "qmail"),
    (
        "this message was created automatically by mail delivery software",
        "exim",
    ),
    ("this is the mail system at host", "postfix"),
    (
        "the following addresses had permanent fatal errors",
        "sendmail",
    ),
    ("transcript of session follows", "sendmail"),
    ("delivery to the following recipient failed", "gmail"),
    ("delivery to the following recipients failed", "gmail"),
    ("sorry, we were unable to deliver your message", "yahoo"),
    ("did not reach the following recipient", "exchange"),
    ("delivery has failed to these recipients", "exchange"),
    ("your message did not reach some or all", "exchange"),
    ("failure notice", "failure-notice"),
    ("undelivered mail returned to sender", "postfix"),
    ("mail delivery subsystem", "sendmail"),
];

/// The legacy layout, from the opening lines of the prose, the subject or
/// the sender's name.
fn detect_format(prose: &str, subject: &str, from: &str) -> Option<&'static str> {
    for line in prose.lines().filter(|l| !l.trim().is_empty()).take(10) {
        let t = line.trim_start_matches([' ', '\t', '-', '>']);
        let Some(lead) = t.as_bytes().first().map(u8::to_ascii_lowercase) else {
            continue;
        };
        let found = SIGNATURES
            .iter()
            .find(|(sig, _)| sig.as_bytes().first() == Some(&lead) && starts_ci(t, sig));
        if let Some((_, f)) = found {
            return Some(f);
        }
        if memchr(b'q', line.as_bytes()).is_some() && find_ci(line, "qmail-send").is_some() {
            return Some("qmail");
        }
    }
    // Subject or sender name of the common prose bounces.
    [
        ("failure notice", "failure-notice"),
        ("undelivered mail returned to sender", "postfix"),
        ("mail delivery subsystem", "sendmail"),
    ]
    .iter()
    .find(|(sig, _)| find_ci(subject, sig).is_some() || find_ci(from, sig).is_some())
    .map(|(_, f)| *f)
}

/// Lines (lowercase, trimmed) that start the returned message.
const CUT_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message",
    "------ this is a copy of the message",
    "------ this is a copy of your message",
    "----- original message -----",
    "--- original message follows",
    "original message follows",
    "----- original message follows",
    "------ original message ------",
    "-----original message-----",
    "--- original message",
    "----- the original message",
    "---------- original message",
    "--- message header follows",
    "----- the header of the original message",
    "----- message header follows",
    "------ message header follows",
    "unsent message below",
    "--- the header of the original message is following",
    "the header of the original message",
    "content-type: message/rfc822",
    "content-type: text/rfc822-headers",
    "----- returned message follows",
    "------- returned message",
    "--- returned message",
];

const HEADER_NAMES: &[&str] = &[
    "return-path:",
    "received:",
    "message-id:",
    "dkim-signature:",
    "from:",
    "to:",
    "subject:",
    "date:",
    "mime-version:",
    "content-type:",
    "delivered-to:",
    "reply-to:",
    "x-",
];

fn starts_ci(s: &str, p: &str) -> bool {
    s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
}

fn is_header_line(l: &str) -> bool {
    matches!(
        l.as_bytes().first().map(u8::to_ascii_lowercase),
        Some(b'r' | b'm' | b'd' | b'f' | b't' | b's' | b'c' | b'x')
    ) && memchr(b':', l.as_bytes()).is_some()
        && HEADER_NAMES.iter().any(|h| starts_ci(l, h))
}

/// Byte offset where the returned message starts, or the text length.
/// Finds where the returned message starts, fed one line at a time.
#[derive(Default)]
struct Cutter {
    /// Where the run of header lines began, and whether it has a field
    /// other than `Subject:` and `Date:` (which bounces also use to sum up
    /// the message in their own text).
    prev_header: Option<(usize, bool)>,
}

impl Cutter {
    /// Returns the cut offset once `line` (starting at `start`) shows that
    /// the returned message has begun.
    fn feed(&mut self, start: usize, line: &str) -> Option<usize> {
        let t = line.trim().trim_start_matches(['>', ' ', '|']);
        let lead = t.as_bytes().first().map(u8::to_ascii_lowercase);
        if t.len() >= 12
            && matches!(lead, Some(b'-' | b'o' | b't' | b'u' | b'c'))
            && CUT_MARKERS.iter().any(|m| starts_ci(t, m))
        {
            return Some(start);
        }
        // Two header lines in a row, one of them more than a summary's
        // `Subject:` or `Date:`: the returned header has begun.
        let folded = line.starts_with([' ', '\t']);
        if !folded && is_header_line(line) {
            let strong = !starts_ci(line, "subject:") && !starts_ci(line, "date:");
            match self.prev_header {
                Some((p, prev_strong)) if prev_strong || strong => return Some(p),
                Some(_) => {}
                None => self.prev_header = Some((start, strong)),
            }
        } else if !(folded && self.prev_header.is_some()) {
            self.prev_header = None;
        }
        None
    }
}

/// Byte offset where the returned message starts, or the text length.
#[cfg(test)]
fn cut_point(text: &str) -> usize {
    let mut cutter = Cutter::default();
    let mut offset = 0;
    for line in text.split('\n') {
        if let Some(c) = cutter.feed(offset, line) {
            return c;
        }
        offset += line.len() + 1;
    }
    text.len()
}

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&c)
}

fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// The lines of `text` split at LF, as `str::split('\n')` gives them.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr(b'\n', r.as_bytes()) {
            Some(p) => {
                rest = Some(&r[p + 1..]);
                Some(&r[..p])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Addresses in `s` with their byte ranges.
fn addresses(s: &str) -> Vec<(usize, usize, String)> {
    address_spans(s)
        .map(|(l, r)| (l, r, s[l..r].to_string()))
        .collect()
}

/// The byte ranges of the addresses in `s`, in order.
fn address_spans(s: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || loop {
        let at = i + memchr(b'@', b.get(i..)?)?;
        let mut l = at;
        while l > 0 && is_local_char(b[l - 1]) {
            l -= 1;
        }
        let mut r = at + 1;
        while r < b.len() && is_domain_char(b[r]) && !(b[r] == b'.' && b[r - 1] == b'.') {
            r += 1;
        }
        // Trim trailing dots/hyphens from the domain and leading dots from the local part.
        while r > at + 1 && matches!(b[r - 1], b'.' | b'-') {
            r -= 1;
        }
        while l < at && matches!(b[l], b'.' | b'\'' | b'`') {
            l += 1;
        }
        // X.400-style prefixes such as `SMTP=user@host`.
        if let Some(eq) = s[l..at].find('=') {
            let kind = &s[l..l + eq];
            if kind.eq_ignore_ascii_case("smtp") || kind.eq_ignore_ascii_case("rfc822") {
                l += eq + 1;
            }
        }
        let domain = &s[at + 1..r];
        i = r.max(at + 1);
        if l < at && !domain.is_empty() && domain.contains('.') {
            return Some((l, r));
        }
    })
}

fn is_role(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("");
    [
        "mailer-daemon",
        "postmaster",
        "mail-daemon",
        "maildaemon",
        "daemon",
    ]
    .iter()
    .any(|r| local.eq_ignore_ascii_case(r))
}

/// Whether a line is "an address on its own": optional quoting and bullets,
/// the address (maybe in angle brackets), then nothing or a short tail such
/// as `:`, ` (expanded from ...)`, ` on <date>`, `... reason`.
fn line_address(line: &str) -> Option<(String, bool)> {
    let t = line.trim_start_matches(['>', ' ', '\t', '*', '-', '"', '\'']);
    let t = t.trim_end();
    if t.is_empty() {
        return None;
    }
    let mut rest = t;
    let bracket = rest.starts_with('<');
    if bracket {
        rest = &rest[1..];
    }
    let (s, e) = address_spans(rest).next()?;
    if s != 0 {
        // Allow `Recipient address: x@y` / `Failed address: x@y` style labels.
        let before = rest[..s].trim().to_ascii_lowercase();
        let labelled = before.ends_with("address:")
            || before.ends_with("recipient:")
            || before.ends_with("address(es):")
            || before.ends_with("user:")
            || before.ends_with("failed:")
            || before.ends_with("unknown user:")
            || before.ends_with("mailbox:");
        if !labelled {
            return None;
        }
    }
    let mut tail = &rest[e..];
    if bracket || tail.starts_with('>') {
        tail = tail.strip_prefix('>').unwrap_or(tail);
    }
    let tail = tail.trim_start_matches(['"', '\'']);
    let ok = tail.is_empty()
        || tail.starts_with(':')
        || tail.starts_with(',')
        || tail.starts_with(' ')
        || tail.starts_with('.')
        || tail.starts_with(';')
        || tail.starts_with('\t');
    if !ok {
        return None;
    }
    // A long sentence starting with an address is not an address line,
    // except for the `addr: reason` and `addr (expanded from ...)` forms.
    let tl = tail.trim_start();
    let sentence = tl.len() > 60
        && !tail.starts_with(':')
        && !tl.starts_with('(')
        && !tl.starts_with("...")
        && !starts_ci(tl, "on ");
    if sentence {
        return None;
    }
    let listed = bracket || tail.starts_with(':');
    Some((rest[s..e].to_string(), listed))
}

/// `NNN <addr>... text` (or `NNN NNN <addr>...`), as Sendmail writes per
/// recipient in its transcript.
fn coded_address(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let coded = b.len() > 4
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && b[3] == b' ';
    if !coded {
        return None;
    }
    let mut rest = line.get(4..)?.trim_start();
    // An enhanced status may sit between the code and the address.
    if let Some((_, after)) = EnhancedStatus::parse_prefix(rest) {
        rest = after.trim_start();
    }
    let inner = rest.strip_prefix('<')?;
    let close = inner.find('>')?;
    if !inner[close + 1..].starts_with("...") {
        return None;
    }
    let addrs = addresses(&inner[..close]);
    let (s, e, a) = addrs.first()?;
    (*s == 0 && *e == close).then(|| a.clone())
}

/// Most bytes of a line read as one reply.
const MAX_REPLY_LINE: usize = 2048;

/// The first failure reply (4xx, 5xx) in `text`, else its first SMTP
/// reply: a code 200..=599 at the start of a line or after `said:`, `:`,
/// `<<<`, `reason:` or whitespace, followed by space or `-`. A transcript
/// shows the replies that went well before the one that failed.
fn find_reply(text: &str) -> Option<Reply> {
    let mut positive = None;
    let b = text.as_bytes();
    // The start of the line of a candidate, found looking back no further
    // than the last candidate: every byte is looked at once.
    let mut line_start = 0;
    let mut seen = 0;
    let mut i = 0;
    while i + 3 <= b.len() {
        if !(b'2'..=b'5').contains(&b[i]) {
            // Eight bytes at a time past text without a digit 0 to 5.
            if i + 8 <= b.len() && !has_low_digit(&b[i..i + 8]) {
                i += 8;
            } else {
                i += 1;
            }
            continue;
        }
        if b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && (i == 0
                || matches!(
                    b[i - 1],
                    b' ' | b'\t' | b'\n' | b':' | b'(' | b'\'' | b'"' | b'<' | b'>'
                ))
            && matches!(b.get(i + 3), Some(b' ') | Some(b'-'))
        {
            if let Some(nl) = b[seen..i].iter().rposition(|&c| c == b'\n') {
                line_start = seen + nl + 1;
            }
            seen = i;
            // Not a part of a date, IP address or size: next must be text or a status.
            let after = text.get(i + 4..).unwrap_or("");
            let next = after.chars().next().unwrap_or(' ');
            let prefix = text.get(line_start..i).unwrap_or("").trim_end();
            let prev_word = prefix
                .rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("");
            let looks_number_list =
                prev_word.ends_with(',') || prev_word.eq_ignore_ascii_case("port");
            if (next.is_alphabetic()
                || next.is_ascii_digit()
                || matches!(next, '<' | '\'' | '"' | '[' | '#'))
                && !looks_number_list
                && !after.starts_with("bytes")
            {
                // A reply is read from at most MAX_REPLY_LINE bytes, so a
                // long line of candidates costs linear time, not quadratic.
                let window = &b[i..b.len().min(i + MAX_REPLY_LINE)];
                let mut end = i + window
                    .iter()
                    .position(|&c| c == b'\n')
                    .unwrap_or(window.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let line = &text[i..end];
                if let Some(r) = parse_diagnostic(line) {
                    if r.enhanced().is_some() || reply_context(prefix) {
                        if r.code >= 400 {
                            return Some(r);
                        }
                        positive.get_or_insert(r);
                    }
                }
            }
        }
        i += 1;
    }
    positive
}

/// Whether eight bytes hold an ASCII digit from 0 to 5.
fn has_low_digit(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    // Those digits become the bytes 0 to 5; a byte below 6 sets its high
    // bit in `(x - 6) & !x` (a false hit only above a true one).
    let x = u64::from_le_bytes(w) ^ (ONES * u64::from(b'0'));
    x.wrapping_sub(ONES * 6) & !x & (ONES * 0x80) != 0
}

fn ends_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether the line text just before a code suggests an SMTP reply follows.
fn reply_context(prefix: &str) -> bool {
    let p = prefix.trim();
    p.is_empty()
        || [
            "said:",
            "said",
            ":",
            "<<<",
            "reason:",
            "error:",
            "response:",
            "'",
        ]
        .iter()
        .any(|s| ends_ci(p, s))
}

/// Byte offset of `needle` (lowercase ASCII) in `hay`, ignoring ASCII case.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    let last = h.len() - n.len();
    let mut i = 0;
    // Only where the first letter stands, in either case.
    while let Some(p) = memchr2(n[0], n[0].to_ascii_uppercase(), &h[i..=last]) {
        let at = i + p;
        if h[at + 1..at + n.len()].eq_ignore_ascii_case(&n[1..]) {
            return Some(at);
        }
        i = at + 1;
        if i > last {
            break;
        }
    }
    None
}

/// A standalone enhanced status such as `(#5.1.1)` or `5.1.1` in `text`.
fn find_status(text: &str) -> Option<EnhancedStatus> {
    let b = text.as_bytes();
    let mut i = 0;
    // Candidates: a class digit right before a dot, not inside a number.
    while let Some(p) = find_byte(&b[i..], b'.') {
        let dot = i + p;
        i = dot + 1;
        if dot == 0 || !matches!(b[dot - 1], b'2' | b'4' | b'5') {
            continue;
        }
        let start = dot - 1;
        if start > 0 && (b[start - 1].is_ascii_digit() || b[start - 1] == b'.') {
            continue;
        }
        let end = b[start..]
            .iter()
            .position(|&c| !(c.is_ascii_digit() || c == b'.'))
            .map_or(b.len(), |e| start + e);
        let tok = text[start..end].trim_end_matches('.');
        if let Ok(s) = tok.parse::<EnhancedStatus>() {
            return Some(s);
        }
    }
    None
}

fn recipient(addr: &str, section: &str) -> Recipient {
    let reply = find_reply(section);
    let status = reply
        .as_ref()
        .and_then(Reply::enhanced)
        .or_else(|| find_status(section));
    Recipient {
        text_address: Some(addr.to_string()),
        text_reply: reply,
        text_status: status,
        ..Default::default()
    }
}

/// Most candidate addresses kept from one bounce's prose (bounds the
/// quadratic de-duplication on hostile input).
const MAX_CANDIDATES: usize = 1000;

fn push_unique(list: &mut Vec<(usize, String)>, pos: usize, a: String) {
    if list.len() < MAX_CANDIDATES && !list.iter().any(|(_, x)| x.eq_ignore_ascii_case(&a)) {
        list.push((pos, a));
    }
}

/// Reads recipients from bounce prose.
/// `subject` and `from` are the bounce's own Subject and From fields, which
/// the caller has read already.
pub(crate) fn extract(
    prose: &str,
    msg: &Message<'_>,
    subject: Option<&str>,
    from: Option<&Address<'_>>,
) -> Found {
    let subject = subject.unwrap_or("");
    let from_addr = from;
    let from = from_addr
        .and_then(|a| a.first())
        .and_then(|a| a.name())
        .unwrap_or("");
    let mut format = detect_format(prose, subject, from);

    // The bounce's own parties are rarely the failed recipients.
    let own_from: Vec<String> = from_addr
        .into_iter()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(str::to_ascii_lowercase)
        .collect();
    // The To field is parsed only once an address is to be weighed.
    let own_to = std::cell::OnceCell::new();
    let is_from = |a: &str| own_from.iter().any(|o| o.eq_ignore_ascii_case(a));
    let is_to = |a: &str| {
        own_to
            .get_or_init(|| address_field(msg, HeaderName::To))
            .iter()
            .any(|o| o.eq_ignore_ascii_case(a))
    };
    let excluded = |a: &str| is_role(a) || is_from(a) || is_to(a);

    // One pass over the prose up to the returned message: addresses on
    // their own line (strong), RCPT TO and transcript lines (rcpt).
    let mut strong: Vec<(usize, String)> = Vec::new();
    let mut rcpt: Vec<(usize, String)> = Vec::new();
    let mut expanded_from: Vec<String> = Vec::new();
    let mut cutter = Cutter::default();
    let mut cut = prose.len();
    let mut offset = 0;
    for line in lines(prose) {
        let start = offset;
        offset += line.len() + 1;
        if let Some(c) = cutter.feed(start, line) {
            cut = c;
            break;
        }
        if memchr(b'@', line.as_bytes()).is_none() {
            continue;
        }
        let lb = line.as_bytes();
        let may_expand = memchr2(b'x', b'X', lb).is_some();
        if let Some(p) = may_expand.then(|| find_ci(line, "expanded from")).flatten() {
            for (_, _, a) in addresses(&line[p..]) {
                if expanded_from.len() < MAX_CANDIDATES {
                    expanded_from.push(a);
                }
            }
        }
        let bare = line.trim_start_matches(['>', ' ', '\t']);
        if ["message-id:", "in-reply-to:", "references:"]
            .iter()
            .any(|h| starts_ci(bare, h))
        {
            continue;
        }
        if let Some((a, listed)) = line_address(line) {
            // An address alone on a line names a failed recipient, even a
            // role account; the bounce's addressee only in the listed
            // `<addr>:` form.
            if !is_from(&a) && (listed || !is_to(&a)) {
                push_unique(&mut strong, start, a);
            }
            continue;
        }
        // Sendmail transcripts: `550 <addr>... User unknown`.
        if let Some(a) = coded_address(bare) {
            if !excluded(&a) {
                push_unique(&mut rcpt, start, a);
            }
            continue;
        }
        if let Some(p) = lb
            .contains(&b':')
            .then(|| find_ci(line, "rcpt to:"))
            .flatten()
        {
            if let Some((_, _, a)) = addresses(&line[p..]).into_iter().next() {
                if !excluded(&a) {
                    push_unique(&mut rcpt, start, a);
                }
            }
        }
    }
    let text = &prose[..cut];
    // A header line taken before the cut was found belongs to the return.
    strong.retain(|(p, a)| *p < cut && !expanded_from.iter().any(|x| x.eq_ignore_ascii_case(a)));
    rcpt.retain(|(p, _)| *p < cut);
    // Exim and Gmail name the failed recipients in a header field.
    let mut failed_hdr: Vec<(usize, String)> = Vec::new();
    for t in raw_fields(msg, "X-Failed-Recipients") {
        for (_, _, a) in addresses(&t) {
            let pos = text.find(&a).unwrap_or(text.len());
            push_unique(&mut failed_hdr, pos, a);
        }
    }
    // An RFC 3834 auto-reply (not a bounce) comes from the recipient itself.
    // Apple Mail's unsubscribe request is a complaint from the recipient
    // itself, sent as an auto-reply.
    let unsubscribe = apple_unsubscribe(msg).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let auto_reply = format.is_none() && (unsubscribe || is_auto_reply(msg, subject));
    let mut chosen = if auto_reply {
        own_from
            .iter()
            .filter(|a| !is_role(a))
            .map(|a| (0, a.clone()))
            .collect()
    } else if !failed_hdr.is_empty() {
        failed_hdr
    } else if !strong.is_empty() {
        strong
    } else if !rcpt.is_empty() {
        rcpt
    } else {
        let mut any = Vec::new();
        for (s, _, a) in addresses(text) {
            if !excluded(&a) && !expanded_from.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
                push_unique(&mut any, s, a);
            }
        }
        any
    };
    if chosen.is_empty() {
        let mut returned_to = super::structure::returned_recipients(msg);
        if returned_to.is_empty() {
            returned_to = inline_returned_to(&prose[cut..]);
        }
        for a in &returned_to {
            // The returned message's own addressee is the recipient, even
            // a role account (`postmaster@...`).
            if !is_from(a) && !is_to(a) {
                push_unique(&mut chosen, text.len(), a.clone());
            }
        }
    }
    chosen.sort_by_key(|(p, _)| *p);
    if auto_reply && !chosen.is_empty() {
        format = Some(if unsubscribe {
            "complaint"
        } else {
            "auto-reply"
        });
    } else if format.is_none() && !chosen.is_empty() && is_complaint(subject, &own_from, text) {
        format = Some("complaint");
    }

    let mut recipients = Vec::with_capacity(chosen.len());
    // A reply or status not next to any address is shared by all of them.
    let mut shared: Option<(Option<Reply>, Option<EnhancedStatus>)> = None;
    for (k, (pos, addr)) in chosen.iter().enumerate() {
        let end = chosen
            .get(k + 1)
            .map(|(p, _)| *p)
            .filter(|p| *p > *pos)
            .unwrap_or(text.len());
        let start = (*pos).min(text.len());
        let section = text.get(start..end).unwrap_or("");
        let mut r = recipient(addr, section);
        if r.text_reply.is_none() {
            let (reply, status) = shared.get_or_insert_with(|| {
                let reply = find_reply(text);
                let status = reply
                    .as_ref()
                    .and_then(Reply::enhanced)
                    .or_else(|| find_status(text));
                (reply, status)
            });
            r.text_reply = reply.clone();
            if r.text_status.is_none() {
                r.text_status = *status;
            }
        }
        recipients.push(r);
    }
    Found {
        recipients,
        format,
        returned_at: (cut < prose.len()).then_some(cut),
    }
}

/// A complaint report in a feedback loop's own format rather than ARF
/// (RFC 5965; Apple Mail's unsubscribe request is read with the
/// auto-replies): `Subject: complaint about message from 192.0.2.1` from
/// Microsoft's JMRP (`staff@hotmail.com`) or Amazon SES's abuse desk
/// (`complaints@email-abuse.amazonses.com`), and Amazon SES's notices in
/// JSON (`{"notificationType":"Complaint", ...}` as the whole text).
/// `from` holds the message's sender addresses, lowercase.
fn is_complaint(subject: &str, from: &[String], text: &str) -> bool {
    let by_subject = find_ci(subject, "complaint about message from ").is_some()
        && ["staff@hotmail.com", "complaints@email-abuse.amazonses.com"]
            .iter()
            .any(|f| from.iter().any(|a| a == f));
    by_subject || json_complaint(text)
}

/// Whether `text` is a JSON notice whose `notificationType` is `Complaint`
/// (white space allowed around the colon). Only a text that is JSON from
/// its start counts: a bounce may quote such a notice.
fn json_complaint(text: &str) -> bool {
    if !text.trim_start().starts_with('{') {
        return false;
    }
    let key = "\"notificationType\"";
    text.match_indices(key).any(|(p, _)| {
        let rest = text[p + key.len()..].trim_start();
        rest.strip_prefix(':')
            .is_some_and(|r| r.trim_start().starts_with("\"Complaint\""))
    })
}

/// The raw value of the message's `X-Apple-Unsubscribe` field (the last
/// one), when it is UTF-8, as mail-parser's `header_raw` gives it; the
/// names are compared without parsing the name into a `HeaderName` first.
fn apple_unsubscribe<'m>(msg: &'m Message<'_>) -> Option<&'m str> {
    const NAME: HeaderName<'static> =
        HeaderName::Other(std::borrow::Cow::Borrowed("X-Apple-Unsubscribe"));
    let raw = raw_value(msg, msg.parts.first()?, &NAME)?;
    std::str::from_utf8(raw).ok()
}

/// RFC 3834 §5 `Auto-Submitted: auto-replied`, or the subject prefixes
/// common vacation responders use.
fn is_auto_reply(msg: &Message<'_>, subject: &str) -> bool {
    let auto = raw_fields(msg, "Auto-Submitted").any(|v| starts_ci(v.trim(), "auto-replied"));
    let subject = subject.trim_start();
    // Some MTAs mark their failure notices `auto-replied` too; their
    // subjects say what they are (a reply's `Re: ...` quotes the original).
    let reply = ["re:", "aw:", "sv:", "fw:", "fwd:"]
        .iter()
        .any(|p| starts_ci(subject, p));
    let failure = !reply
        && [
            "fail",
            "error",
            "undeliver",
            "not delivered",
            "returned",
            "delivery status",
        ]
        .iter()
        .any(|w| find_ci(subject, w).is_some());
    (auto && !failure)
        || [
            "automatic reply:",
            "auto reply:",
            "auto:",
            "out of office",
            "autoreply:",
            "auto-reply:",
        ]
        .iter()
        .any(|p| starts_ci(subject, p))
}

/// Offset of the first header line of a returned message that follows the
/// prose inline (looked for in its first 4 KiB).
pub(crate) fn inline_header_start(rest: &str) -> Option<usize> {
    let mut offset = 0;
    for line in rest.split('\n') {
        if is_header_line(line) {
            return Some(offset);
        }
        offset += line.len() + 1;
        if offset > 4096 {
            break;
        }
    }
    None
}

/// To/Cc of a returned header block that follows the prose inline.
fn inline_returned_to(rest: &str) -> Vec<String> {
    let Some(start) = inline_header_start(rest) else {
        return Vec::new();
    };
    let Some(m) = super::structure::parser().parse_headers(&rest.as_bytes()[start..]) else {
        return Vec::new();
    };
    let mut out = address_field(&m, HeaderName::To);
    out.extend(address_field(&m, HeaderName::Cc));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn low_digits_are_seen_in_any_eight_bytes(b in proptest::collection::vec(any::<u8>(), 8)) {
            prop_assert_eq!(has_low_digit(&b), b.iter().any(|c| (b'0'..=b'5').contains(c)));
        }

        #[test]
        fn case_blind_search_agrees(hay in "[aAbB@ é]{0,24}", needle in "[ab@]{1,3}") {
            let slow = (0..=hay.len().saturating_sub(needle.len()))
                .find(|&i| hay.as_bytes().get(i..i + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle.as_bytes())));
            prop_assert_eq!(find_ci(&hay, &needle), slow.filter(|_| hay.len() >= needle.len()));
        }

        #[test]
        fn lines_are_what_a_split_at_lf_gives(text in "[a\n\r]{0,12}") {
            prop_assert_eq!(lines(&text).collect::<Vec<_>>(), text.split('\n').collect::<Vec<_>>());
        }
    }

    /// `apple_unsubscribe` gives what mail-parser's `header_raw` gives:
    /// the last such field, in any case, only when UTF-8.
    #[test]
    fn apple_unsubscribe_is_header_raw() {
        let name = "X-Apple-Unsubscribe";
        for head in [
            &b"From: a@b.test\r\n\r\nhi\r\n"[..],
            b"X-Apple-Unsubscribe: true\r\n\r\nhi\r\n",
            b"x-apple-unsubscribe:  TRUE \r\nSubject: s\r\n\r\nhi\r\n",
            b"X-Apple-Unsubscribe: false\r\nX-APPLE-UNSUBSCRIBE: true\r\n\r\nhi\r\n",
            b"X-Apple-Unsubscribe: true\r\nX-Apple-Unsubscribe: \xff\r\n\r\nhi\r\n",
            b"X-Apple-Unsubscribed: true\r\n\r\nhi\r\n",
        ] {
            let msg = crate::structure::parser().parse(head).unwrap();
            assert_eq!(apple_unsubscribe(&msg), msg.header_raw(name), "{head:?}");
        }
    }

    #[test]
    fn address_scan() {
        let a = addresses("to <a.b@example.com>, c@d.org. and x@localhost");
        let v: Vec<_> = a.into_iter().map(|x| x.2).collect();
        assert_eq!(v, ["a.b@example.com", "c@d.org"]);
    }

    #[test]
    fn address_lines() {
        let la = |l: &str| line_address(l).map(|x| x.0);
        assert_eq!(la("<a@example.com>:").as_deref(), Some("a@example.com"));
        assert_eq!(
            line_address("  a@example.com"),
            Some(("a@example.com".into(), false))
        );
        assert_eq!(
            la("<r@x.example> (expanded from <k@example.org>): user").as_deref(),
            Some("r@x.example")
        );
        assert_eq!(la("Please contact a@example.com for help"), None);
        assert_eq!(
            la("> bbbsss@example.com").as_deref(),
            Some("bbbsss@example.com")
        );
    }

    #[test]
    fn replies() {
        let r = find_reply("remote host 192.0.2.32 said: 550 Unknown user k@example\n").unwrap();
        assert_eq!(r.code, 550);
        let r = find_reply("    host mx [192.0.2.20]: 550 5.7.0 <s@example.jp>... no\n").unwrap();
        assert_eq!(r.enhanced().unwrap().to_string(), "5.7.0");
        assert!(find_reply("Received 250 messages today").is_none());
        // In a transcript the failure is the reply, not those before it.
        let t = " In:  RCPT TO:<k@example>\n Out: 250 2.1.5 Ok\n In:  DATA\n \
                 Out: 354 End data with <CR><LF>.<CR><LF>\n \
                 Out: 451 4.3.0 Error: queue file write error\n";
        assert_eq!(find_reply(t).unwrap().code, 451);
        let ok = find_reply(" Out: 250 2.1.5 Ok\n").unwrap();
        assert_eq!(ok.code, 250);
        // A transcript flattened onto one line: the failure still decides.
        let flat = "250 2.1.5 Ok 354 go ahead 554 5.7.1 refused\n";
        assert_eq!(find_reply(flat).unwrap().code, 554);
        // A long line of candidates is read in linear time (this would take
        // minutes if every candidate read the rest of the line).
        let hostile = "a 250 a ".repeat(8 * 1024);
        assert_eq!(find_reply(&hostile).map(|r| r.code), None);
        let positives = "250 2.1.5 ok ".repeat(5 * 1024);
        assert_eq!(find_reply(&positives).map(|r| r.code), Some(250));
    }

    #[test]
    fn cut() {
        let t = "Hi.\n<a@b.c>:\nno\n--- Below this line is a copy of the message.\nTo: x@y.z\n";
        assert_eq!(&t[..cut_point(t)], "Hi.\n<a@b.c>:\nno\n");
        let t = "text\nReturn-Path: <x@y.z>\nReceived: from a\n  by b\n";
        assert_eq!(&t[..cut_point(t)], "text\n");
    }
}
