//! The fake hosts' SMTP command parser: any line gives a command or an error,
//! and every parsed command formats back to a line that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtaspec::smtp::command::{Command, CommandError, MAX_COMMAND_LINE};

/// Pieces of SMTP command lines, so the fuzzer reaches the verbs and the
/// path syntax without having to guess them byte by byte.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"HELO ", b"EHLO ", b"MAIL FROM:", b"RCPT TO:", b"mail from: ", b"rcpt to:",
    b"DATA", b"BDAT ", b" LAST", b"RSET", b"NOOP", b"QUIT", b"VRFY ", b"STARTTLS",
    b"XCLIENT ", b"AUTH ", b"<", b">", b"<>", b"@", b"a@b.test", b"mx.test",
    b" SIZE=10", b" BODY=8BITMIME", b" NOTIFY=NEVER", b" RET=HDRS", b" ENVID=x1",
    b" ", b"  ", b"\t", b"\r\n", b"\n", b"\r", b"0", b"1", b"42", b"18446744073709551616",
    b"+", b"-", b":", b"\xc3\xa9", b"\xe3\x80\x80", b"\xff", b"\x00",
];

/// Bytes to a command line: the first byte chooses raw bytes, tokens, or
/// tokens padded to around the length limit.
fn line(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode & 3 == 0 {
        return rest.to_vec();
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
    if mode & 3 == 3 {
        // Pad in the middle so the line lands within a few bytes of the limit.
        let target = MAX_COMMAND_LINE - 8 + usize::from(mode >> 4);
        let at = out.len().min(usize::from(mode >> 2 & 3) * 6);
        let pad = target.saturating_sub(out.len());
        out.splice(at..at, std::iter::repeat_n(b'x', pad));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let input = line(data);
    let parsed = Command::parse(&input);
    if input.len() > MAX_COMMAND_LINE {
        assert_eq!(parsed, Err(CommandError::TooLong));
        return;
    }
    let Ok(cmd) = parsed else { return };
    let text = cmd.to_string();
    assert!(
        text.starts_with(cmd.verb()),
        "{text:?} vs verb {:?}",
        cmd.verb()
    );
    // Formatting normalises (one space before parameters, upper-case verb),
    // so the line may grow by one octet and then no longer fit.
    assert!(
        text.len() <= input.len() + 1,
        "{input:?} formatted as {text:?}"
    );
    if text.len() > MAX_COMMAND_LINE {
        assert_eq!(Command::parse(text.as_bytes()), Err(CommandError::TooLong));
        return;
    }
    assert_eq!(
        Command::parse(text.as_bytes()).as_ref(),
        Ok(&cmd),
        "input {input:?} formatted as {text:?}"
    );
    if text.len() + 2 <= MAX_COMMAND_LINE {
        assert_eq!(Command::parse(format!("{text}\r\n").as_bytes()), Ok(cmd));
    }
});
