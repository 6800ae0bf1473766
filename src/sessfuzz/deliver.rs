//! Fuzz stage: the delivery oracles — what the target accepted must reach our fake hosts as sent, what it refused must not.
//!
//! Content is compared modulo the normalisation the inbound suites use:
//! lines end at LF (CRLF and a bare LF are the same line end), a bare CR
//! counts as a space, the sent side is dot-unstuffed, and the `Received:`
//! fields the target put on top (and `Message-ID:` / `Date:` it added)
//! are set aside.

use super::client::Msg;
use super::oracle::{Invariant, Violation};

/// A message one of our fake hosts received.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub id: String,
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

/// The `X-Fuzz-Id` of a message as received (`None` for other mail, e.g. bounces).
pub fn fuzz_id(data: &[u8]) -> Option<String> {
    let key = b"X-Fuzz-Id: ";
    let p = data.windows(key.len()).position(|w| w == key)?;
    // Only in the header (bounces carry the original further down).
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    if p > head_end {
        return None;
    }
    let v: Vec<u8> = data[p + key.len()..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .copied()
        .collect();
    Some(String::from_utf8_lossy(&v).to_string())
}

/// A recipient the oracle can follow: a plain local part at `dest` (odd
/// forms may be rewritten or routed elsewhere, which is no fault).
pub fn followable(addr: &str, dest: &str) -> bool {
    let Some((lp, dom)) = addr.rsplit_once('@') else {
        return false;
    };
    !lp.is_empty()
        && lp.len() <= 64
        && lp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-_".contains(&b))
        && dom.eq_ignore_ascii_case(dest)
}

fn lines(b: &[u8], unstuff: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for l in b.split(|&c| c == b'\n') {
        let mut l = l.to_vec();
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        for c in l.iter_mut() {
            if *c == b'\r' {
                *c = b' ';
            }
        }
        if unstuff && l.first() == Some(&b'.') {
            l.remove(0);
        }
        out.push(l);
    }
    // The last line end leaves an empty piece.
    if out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

fn field_name(l: &[u8]) -> Option<String> {
    let p = l.iter().position(|&b| b == b':')?;
    let n = &l[..p];
    (!n.is_empty() && n.iter().all(|b| b.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(n).to_ascii_lowercase())
}

/// `received` with what the target adds set aside, to compare with `sent`.
fn strip_added(received: Vec<Vec<u8>>, sent: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let sent_names: Vec<String> = sent
        .iter()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| field_name(l))
        .collect();
    let mut out = Vec::new();
    let mut skipping = false;
    let mut in_head = true;
    let mut top = true;
    for l in received {
        if in_head && l.is_empty() {
            in_head = false;
        }
        if in_head {
            let cont = l.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if cont && skipping {
                continue;
            }
            skipping = false;
            if let Some(n) = field_name(&l) {
                let added = (top && n == "received")
                    || (matches!(n.as_str(), "message-id" | "date" | "return-path")
                        && !sent_names.contains(&n));
                if added {
                    skipping = true;
                    continue;
                }
                if n != "received" {
                    top = false;
                }
            }
        }
        out.push(l);
    }
    out
}

/// Whether `arrived` carries `sent` (dot-stuffed content as sent) modulo normalisation.
pub fn same_content(sent: &[u8], arrived: &[u8]) -> Result<(), String> {
    let s = lines(sent, true);
    let a = strip_added(lines(arrived, false), &s);
    if s == a {
        return Ok(());
    }
    let k = s
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(s.len().min(a.len()));
    let show = |v: &[Vec<u8>]| {
        v.get(k)
            .map(|l| super::escape(&l[..l.len().min(80)]))
            .unwrap_or_else(|| "(no line)".into())
    };
    Err(format!(
        "content differs at line {}: sent `{}`, arrived `{}` ({} vs {} lines)",
        k + 1,
        show(&s),
        show(&a),
        s.len(),
        a.len()
    ))
}

/// Judge one message of a session against what arrived for its id so far.
/// `final_` is set at its deadline: what has not arrived by then never will.
pub fn judge(
    m: &Msg,
    arrived: &[Arrived],
    dest: &str,
    final_: bool,
) -> Option<Result<(), Violation>> {
    let v = |invariant, detail| {
        Err(Violation {
            invariant,
            step: Some(m.step),
            before: false,
            reply: None,
            detail,
        })
    };
    let norm = |a: &str| a.to_ascii_lowercase();
    let want: Vec<String> = m
        .rcpts
        .iter()
        .filter(|r| followable(r, dest))
        .map(|r| norm(r))
        .collect();
    let got: Vec<String> = arrived
        .iter()
        .flat_map(|a| a.rcpts.iter().map(|r| norm(r)))
        .collect();
    if !m.accepted() {
        if let Some(a) = arrived.first() {
            let how = if m.code == 0 {
                "the session ended inside its DATA".to_string()
            } else {
                format!("end of data got {}", m.code)
            };
            return Some(v(
                Invariant::RejectedNotDelivered,
                format!(
                    "message {} was not accepted ({how}) but reached the fake host for {}",
                    m.id.as_deref().unwrap_or("?"),
                    a.rcpts.join(", ")
                ),
            ));
        }
        return final_.then_some(Ok(()));
    }
    // A recipient the target refused (and did not accept otherwise) must not be among those delivered.
    let refused: Vec<String> = m
        .refused
        .iter()
        .map(|r| norm(r))
        .filter(|r| followable(r, dest) && !m.rcpts.iter().any(|a| norm(a) == *r))
        .collect();
    if let Some(extra) = got.iter().find(|g| refused.contains(g)) {
        return Some(v(Invariant::RejectedNotDelivered, format!(
            "message {} reached the fake host for {extra}, a recipient the target refused in the session",
            m.id.as_deref().unwrap_or("?")
        )));
    }
    if want.is_empty() || (m.utf8 && arrived.is_empty()) {
        // Nothing to follow, or an SMTPUTF8 message our hosts may not get.
        return if m.utf8 && !final_ && arrived.is_empty() {
            None
        } else {
            Some(Ok(()))
        };
    }
    for a in arrived {
        if let Err(e) = same_content(&m.content, &a.data) {
            return Some(v(
                Invariant::AcceptedIsDelivered,
                format!(
                    "message {} accepted with {} arrived changed: {e}",
                    m.id.as_deref().unwrap_or("?"),
                    m.code
                ),
            ));
        }
    }
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
    if missing.is_empty() {
        return Some(Ok(()));
    }
    if final_ {
        return Some(v(
            Invariant::AcceptedIsDelivered,
            format!(
                "message {} was accepted with {} but never reached the fake host for {}",
                m.id.as_deref().unwrap_or("?"),
                m.code,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_compared_modulo_normalisation() {
        let sent = b"X-Fuzz-Id: 1\r\nSubject: s\r\n\r\n..dots\r\nbare\rcr\nx\r\n";
        let arrived = b"Received: from a\r\n\tby b\r\nX-Fuzz-Id: 1\r\nSubject: s\r\nMessage-Id: <q@x>\r\nDate: now\r\n\r\n.dots\r\nbare cr\r\nx\r\n";
        assert_eq!(same_content(sent, arrived), Ok(()));
        let changed = b"Received: from a\r\nX-Fuzz-Id: 1\r\nSubject: s\r\n\r\n.dots\r\nbare cr\r\n";
        assert!(same_content(sent, changed).unwrap_err().contains("lines"));
        assert_eq!(fuzz_id(arrived).as_deref(), Some("1"));
        assert_eq!(fuzz_id(b"From: x\r\n\r\nX-Fuzz-Id: 2\r\n"), None);
    }

    #[test]
    fn only_plain_recipients_at_the_destination_are_followed() {
        assert!(followable("u1@dest.test", "dest.test"));
        assert!(!followable("\"a b\"@dest.test", "dest.test"));
        assert!(!followable("u1@other.test", "dest.test"));
        assert!(!followable("@dest.test", "dest.test"));
    }
}
