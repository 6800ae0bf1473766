//! Domain-name normalization: parsing scenario strings and printing wire names.

use hickory_proto::rr::Name;

use crate::error::DnsError;

/// Parses an absolute name given with or without trailing dot into a
/// lowercase fully-qualified [`Name`]. `"."` is the root.
pub(crate) fn parse(text: &str) -> Result<Name, DnsError> {
    let invalid = |reason: &str| DnsError::InvalidName {
        name: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty name"));
    }
    if trimmed != text {
        return Err(invalid("surrounding whitespace"));
    }
    if !text.is_ascii() {
        return Err(invalid("non-ascii characters (use the a-label form)"));
    }
    if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid("control characters or spaces"));
    }
    if text == "." {
        return Ok(Name::root());
    }
    let mut name = Name::from_ascii(text).map_err(|e| invalid(&e.to_string()))?;
    name.set_fqdn(true);
    Ok(normalize(&name))
}

/// Lowercase, fully-qualified copy of a name (the form used for lookups).
pub(crate) fn normalize(name: &Name) -> Name {
    let mut lower = name.to_lowercase();
    lower.set_fqdn(true);
    lower
}

/// Log form: lowercase, no trailing dot, `"."` for the root; dots inside
/// labels and unusual bytes are escaped so the result stays printable.
pub(crate) fn display(name: &Name) -> String {
    if name.is_root() {
        return ".".to_owned();
    }
    let text = name.to_lowercase().to_ascii();
    match text.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => text,
    }
}

/// Splits a [`display`] string into its labels, honouring escapes; the root
/// has no labels.
pub(crate) fn split_display(display: &str) -> Vec<&str> {
    if display.is_empty() || display == "." {
        return Vec::new();
    }
    let mut labels = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, byte) in display.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' => escaped = true,
            b'.' => {
                labels.push(display.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    labels.push(display.get(start..).unwrap_or_default());
    labels
}

/// True when the log-form `name` equals `suffix` or lies below it.
pub(crate) fn display_is_at_or_below(name: &str, suffix: &Name) -> bool {
    let suffix = display(suffix);
    split_display(name).ends_with(&split_display(&suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_both_forms_and_lowercases() {
        let a = parse("MX1.Example.Test").expect("valid");
        let b = parse("mx1.example.test.").expect("valid");
        assert_eq!(a, b);
        assert!(a.is_fqdn());
        assert_eq!(display(&a), "mx1.example.test");
        assert!(parse(".").expect("root").is_root());
        assert_eq!(display(&Name::root()), ".");
    }

    #[test]
    fn parse_rejects_bad_names() {
        for bad in [
            "",
            " example.test",
            "a..b",
            "exämple.test",
            "a b.test",
            "tab\t.test",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_label = format!("{}.test", "a".repeat(64));
        assert!(parse(&long_label).is_err());
        let long_name = vec!["abcdefghi"; 30].join(".");
        assert!(parse(&long_name).is_err());
    }

    #[test]
    fn display_escapes_and_splits_label_wise() {
        let tricky = Name::from_labels(vec![&b"A.b"[..], &b"\x00x"[..], &b"test"[..]])
            .expect("valid labels");
        let shown = display(&tricky);
        assert!(shown.is_ascii());
        assert!(!shown.bytes().any(|b| b.is_ascii_control()));
        assert_eq!(split_display(&shown).len(), 3);
        assert!(split_display(&shown)[0].starts_with('a'));
        assert!(split_display(".").is_empty());
        let test = parse("TEST").expect("valid");
        assert!(display_is_at_or_below(&shown, &test));
        assert!(display_is_at_or_below("test", &test));
        assert!(display_is_at_or_below("test", &Name::root()));
        assert!(!display_is_at_or_below("contest", &test));
        assert!(!display_is_at_or_below(
            "a\\.test",
            &parse("a.test").expect("valid")
        ));
        assert!(!display_is_at_or_below("", &test));
    }
}
