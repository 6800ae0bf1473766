//! SMTP commands: the parser the fake hosts use to read the target's client side.
//!
//! The target under test chooses these bytes, so the parser is total: any
//! input gives either a [`Command`] or a [`CommandError`], never a panic, and
//! lines longer than [`MAX_COMMAND_LINE`] are refused before they are read in
//! full by the caller.

use std::fmt;

/// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 asks for
/// 512; real clients send longer MAIL lines with parameters, so allow more).
pub const MAX_COMMAND_LINE: usize = 4096;

/// One SMTP command as sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// `MAIL FROM:<path> params`; the path is without angle brackets (empty for `<>`).
    Mail {
        path: String,
        params: Vec<String>,
    },
    /// `RCPT TO:<path> params`.
    Rcpt {
        path: String,
        params: Vec<String>,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    StartTls,
    /// A verb we do not model, kept verbatim (upper-cased verb, raw argument).
    Other {
        verb: String,
        arg: String,
    },
}

/// Why a command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command line is empty")]
    Empty,
    #[error("command line is longer than {MAX_COMMAND_LINE} octets")]
    TooLong,
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    /// A line feed before the line's own end: two lines were passed as one.
    #[error("command line has a line feed before its end")]
    StrayLineFeed,
    #[error("{verb} needs {what}")]
    Syntax {
        verb: &'static str,
        what: &'static str,
    },
}

impl Command {
    /// Parse one line, with or without its trailing CRLF / LF.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        if line.len() > MAX_COMMAND_LINE {
            return Err(CommandError::TooLong);
        }
        let line = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if line.contains(&b'\n') {
            return Err(CommandError::StrayLineFeed);
        }
        let line = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
        if line.trim().is_empty() {
            return Err(CommandError::Empty);
        }
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let upper = verb.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "HELO" => Command::Helo(arg.trim().to_string()),
            "EHLO" => Command::Ehlo(arg.trim().to_string()),
            "MAIL" => {
                let (path, params) = path_arg(arg, "FROM:").ok_or(CommandError::Syntax {
                    verb: "MAIL",
                    what: "FROM:<reverse-path>",
                })?;
                Command::Mail { path, params }
            }
            "RCPT" => {
                let (path, params) = path_arg(arg, "TO:").ok_or(CommandError::Syntax {
                    verb: "RCPT",
                    what: "TO:<forward-path>",
                })?;
                Command::Rcpt { path, params }
            }
            "DATA" => Command::Data,
            "BDAT" => {
                let mut words = arg.split_ascii_whitespace();
                let size = words.next().and_then(|w| w.parse::<u64>().ok()).ok_or(
                    CommandError::Syntax {
                        verb: "BDAT",
                        what: "a chunk size",
                    },
                )?;
                let last = match words.next() {
                    None => false,
                    Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                    Some(_) => {
                        return Err(CommandError::Syntax {
                            verb: "BDAT",
                            what: "nothing or LAST after the size",
                        })
                    }
                };
                Command::Bdat { size, last }
            }
            "RSET" => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" => Command::Quit,
            "VRFY" => Command::Vrfy(arg.trim().to_string()),
            "STARTTLS" => Command::StartTls,
            _ => Command::Other {
                verb: upper,
                arg: arg.to_string(),
            },
        })
    }

    /// The command's verb as a script key (`"mail"`, `"rcpt"`, ...).
    pub fn verb(&self) -> &str {
        match self {
            Command::Helo(_) => "HELO",
            Command::Ehlo(_) => "EHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::StartTls => "STARTTLS",
            Command::Other { verb, .. } => verb,
        }
    }
}

/// Read `FROM:<path> params` / `TO:<path> params` (prefix matched without case,
/// a space after the colon tolerated as many clients send it).
fn path_arg(arg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let path = rest[..end].to_string();
    let params = rest[end + 1..]
        .split_ascii_whitespace()
        .map(str::to_string)
        .collect();
    Some((path, params))
}

impl fmt::Display for Command {
    /// The command as it goes on the wire, without CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_params =
            |f: &mut fmt::Formatter<'_>, head: &str, path: &str, params: &[String]| {
                write!(f, "{head}<{path}>")?;
                for p in params {
                    write!(f, " {p}")?;
                }
                Ok(())
            };
        match self {
            Command::Helo(d) => write!(f, "HELO {d}"),
            Command::Ehlo(d) => write!(f, "EHLO {d}"),
            Command::Mail { path, params } => with_params(f, "MAIL FROM:", path, params),
            Command::Rcpt { path, params } => with_params(f, "RCPT TO:", path, params),
            Command::Data => f.write_str("DATA"),
            Command::Bdat { size, last } => {
                write!(f, "BDAT {size}{}", if *last { " LAST" } else { "" })
            }
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
            Command::Vrfy(a) => write!(f, "VRFY {a}"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Other { verb, arg } if arg.is_empty() => f.write_str(verb),
            Command::Other { verb, arg } => write!(f, "{verb} {arg}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_envelope_commands() {
        assert_eq!(
            Command::parse(b"MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME\r\n").unwrap(),
            Command::Mail {
                path: "a@b.test".into(),
                params: vec!["SIZE=10".into(), "BODY=8BITMIME".into()]
            }
        );
        assert_eq!(
            Command::parse(b"mail from: <>").unwrap(),
            Command::Mail {
                path: String::new(),
                params: vec![]
            }
        );
        assert_eq!(
            Command::parse(b"RCPT TO:<x@y.test> NOTIFY=NEVER\n").unwrap(),
            Command::Rcpt {
                path: "x@y.test".into(),
                params: vec!["NOTIFY=NEVER".into()]
            }
        );
        assert_eq!(
            Command::parse(b"ehlo mta.test\r\n").unwrap(),
            Command::Ehlo("mta.test".into())
        );
        assert_eq!(Command::parse(b"DATA\r\n").unwrap(), Command::Data);
        assert_eq!(
            Command::parse(b"BDAT 100 LAST").unwrap(),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(Command::parse(b"\r\n"), Err(CommandError::Empty));
        assert!(matches!(
            Command::parse(b"MAIL TO:<a>"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            Command::parse(b"RCPT TO:a@b"),
            Err(CommandError::Syntax { .. })
        ));
        assert!(matches!(
            Command::parse(b"BDAT x"),
            Err(CommandError::Syntax { .. })
        ));
        assert_eq!(Command::parse(&[0xff, 0xfe]), Err(CommandError::NotUtf8));
        assert_eq!(
            Command::parse(&vec![b'A'; MAX_COMMAND_LINE + 1]),
            Err(CommandError::TooLong)
        );
    }

    #[test]
    fn display_round_trips() {
        for line in [
            "MAIL FROM:<a@b.test> RET=HDRS ENVID=x1",
            "RCPT TO:<c@d.test>",
            "EHLO mta.test",
            "BDAT 5",
            "XCLIENT NAME=x",
        ] {
            let c = Command::parse(line.as_bytes()).unwrap();
            assert_eq!(c.to_string(), line);
            assert_eq!(Command::parse(c.to_string().as_bytes()).unwrap(), c);
        }
    }

    /// A HELO/EHLO/VRFY argument: trimmed by the parser, so no surrounding
    /// whitespace (possibly empty).
    fn arb_word() -> impl Strategy<Value = String> {
        // Ends are neither ASCII nor Unicode whitespace (U+1680 is the first
        // non-ASCII one above U+00A0).
        "([!-~\u{c0}-\u{167f}]([ -~\u{a1}-\u{10ffff}]{0,30}[!-~\u{c0}-\u{167f}])?)?"
    }

    /// A path between angle brackets: anything but `>` and line ends.
    fn arb_path() -> impl Strategy<Value = String> {
        "[^>\r\n]{0,40}"
    }

    /// ESMTP parameters: no ASCII whitespace inside.
    fn arb_params() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[!-~\u{a1}-\u{10ffff}]{1,16}", 0..5)
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            arb_word().prop_map(Command::Helo),
            arb_word().prop_map(Command::Ehlo),
            (arb_path(), arb_params()).prop_map(|(path, params)| Command::Mail { path, params }),
            (arb_path(), arb_params()).prop_map(|(path, params)| Command::Rcpt { path, params }),
            Just(Command::Data),
            (any::<u64>(), any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
            Just(Command::Rset),
            Just(Command::Noop),
            Just(Command::Quit),
            arb_word().prop_map(Command::Vrfy),
            Just(Command::StartTls),
            // Verbs the parser does not model: upper case, no space, and
            // never one of the modelled verbs (they all start with another letter).
            ("X[A-Z0-9-]{0,12}", "([^\r\n][^\n]{0,40})?")
                .prop_map(|(verb, arg)| Command::Other { verb, arg }),
        ]
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_the_command(cmd in arb_command()) {
            let line = cmd.to_string();
            prop_assert_eq!(Command::parse(line.as_bytes()), Ok(cmd.clone()));
            prop_assert_eq!(Command::parse(format!("{line}\r\n").as_bytes()), Ok(cmd.clone()));
            if !line.ends_with('\r') {
                // A bare LF ends the line too (a CR before it would be eaten).
                prop_assert_eq!(Command::parse(format!("{line}\n").as_bytes()), Ok(cmd.clone()));
            }
            // Case of the verb does not matter.
            let lower = match line.split_once(' ') {
                Some((v, rest)) => format!("{} {rest}", v.to_ascii_lowercase()),
                None => line.to_ascii_lowercase(),
            };
            prop_assert_eq!(Command::parse(lower.as_bytes()), Ok(cmd));
        }

        #[test]
        fn never_panics_on_any_bytes(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(cmd) = Command::parse(&line) {
                // Whatever was read formats to a line that reads back the same.
                let text = cmd.to_string();
                prop_assert!(text.len() <= line.len() + 1);
                prop_assert_eq!(Command::parse(text.as_bytes()), Ok(cmd));
            }
        }

        #[test]
        fn never_panics_on_command_like_lines(line in "((HELO|EHLO|MAIL|RCPT|BDAT|VRFY|mail|rcpt|XFOO)( |  |\t)?(FROM:|TO:|from: )?<?[a-z@.]{0,8}>?( [A-Z]+=[a-z0-9]+| LAST| [0-9]{1,22})*(\r?\n)?)") {
            if let Ok(cmd) = Command::parse(line.as_bytes()) {
                prop_assert_eq!(Command::parse(cmd.to_string().as_bytes()), Ok(cmd));
            }
        }

        #[test]
        fn oversized_line_is_too_long(cmd in arb_command(), extra in 1usize..300, crlf in any::<bool>()) {
            // A valid command padded past the limit is refused whatever it says.
            let mut line = cmd.to_string().into_bytes();
            let end: &[u8] = if crlf { b"\r\n" } else { b"" };
            let pad = (MAX_COMMAND_LINE + extra).saturating_sub(line.len() + end.len());
            line.extend(std::iter::repeat_n(b'a', pad));
            line.extend_from_slice(end);
            prop_assert!(line.len() > MAX_COMMAND_LINE);
            prop_assert_eq!(Command::parse(&line), Err(CommandError::TooLong));
        }

        #[test]
        fn oversized_bytes_are_too_long(len in MAX_COMMAND_LINE + 1..MAX_COMMAND_LINE + 2000, fill in any::<u8>()) {
            prop_assert_eq!(Command::parse(&vec![fill; len]), Err(CommandError::TooLong));
        }
    }

    #[test]
    fn formatting_may_grow_a_line_past_the_limit() {
        // The parser accepts a parameter glued to the path; formatting adds
        // the space, so a line at the limit formats to one octet more.
        let mut line = b"MAIL FROM:<a@b.test>".to_vec();
        line.resize(MAX_COMMAND_LINE, b'x');
        let cmd = Command::parse(&line).unwrap();
        assert_eq!(cmd.to_string().len(), MAX_COMMAND_LINE + 1);
        assert_eq!(
            Command::parse(cmd.to_string().as_bytes()),
            Err(CommandError::TooLong)
        );
    }
}
