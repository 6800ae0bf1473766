//! Fuzz stage: live-session fuzzing of the target (`mtaspec fuzz`) — mutated SMTP sessions against it, protocol invariants on every reply, findings shrunk and written as scenario files.
//!
//! [`gen`] makes and mutates sessions, [`client`] runs one against the
//! target and judges its replies, [`deliver`] judges what reached our fake
//! hosts, [`outbound`] mutates the fake hosts' own replies, [`shrink`]
//! reduces a failing session, [`finding`] writes it as a scenario, and
//! [`drive`] steers it all by reply-code sequences. [`lab`] is the world in
//! the lab (fake hosts, DNS, the target's log); tests give their own.
//! (The top-level `fuzz/` folder is something else: cargo-fuzz targets for
//! our own parsers.)

pub mod client;
pub mod deliver;
pub mod drive;
pub mod finding;
pub mod gen;
pub mod lab;
pub mod oracle;
pub mod outbound;
pub mod shrink;

use std::net::{Ipv4Addr, SocketAddr};

/// What the fuzzer needs from around the target: where it is, the names it
/// relays to our hosts, what reached them, and the target's own crash reports.
pub trait World: Sync {
    /// The target's SMTP address.
    fn target(&self) -> SocketAddr;
    /// The address sessions connect from (`None`: any).
    fn from(&self) -> Option<Ipv4Addr>;
    /// The names for the next session (may change as fake hosts are rotated).
    fn names(&self) -> gen::Names;
    /// Messages that reached the fake hosts since the last call.
    fn arrivals(&self) -> Vec<deliver::Arrived>;
    /// New crash or restart reports in the target's log since the last call.
    fn crashes(&self) -> Vec<String>;
    /// Outbound side: run one case (a mutated fake-host script), if supported.
    fn outbound(&self) -> Option<&dyn outbound::Outbound> {
        None
    }
    /// The recipients of the messages the target still holds in its queue (`None`: cannot tell).
    fn queued(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<String>>> + '_>> {
        Box::pin(async { None })
    }
    /// Whether a fake host dropped mail it received (one of the harness's
    /// limits was reached): mail not seen may then have arrived, and is not
    /// judged lost.
    fn lost(&self) -> bool {
        false
    }
    /// Called every half second (the lab rotates its fake hosts here).
    fn maintain(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
        Box::pin(async {})
    }
}

/// Bytes as a script string body: printable ASCII as is, `\r \n \t \0 \\ \" \{ \}` and `\xNN` otherwise.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0 => s.push_str("\\0"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'{' => s.push_str("\\{"),
            b'}' => s.push_str("\\}"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02X}")),
        }
    }
    s
}

/// Move lab names back under `.test` (`dest.s2001.test` → `dest.test`), as a scenario writes them.
pub fn unscope(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(p) = rest.find(".s") {
        out.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(".test") {
            rest = &after[digits..];
        } else {
            out.push_str(".s");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unscopes() {
        assert_eq!(
            escape(b"A\r\n\0\"{x}\xff\\"),
            "A\\r\\n\\0\\\"\\{x\\}\\xFF\\\\"
        );
        assert_eq!(
            unscope("<u@dest.s2001.test> mx.s7.test x.sy.test"),
            "<u@dest.test> mx.test x.sy.test"
        );
    }
}
