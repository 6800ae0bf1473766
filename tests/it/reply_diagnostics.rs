//! SMTP reply parsing measured on real Diagnostic-Code fields of the DSN corpus.

use std::path::Path;

use mtaspec::smtp::reply::parse_diagnostic;

/// An independent reading: does the text start with a reply code followed
/// by a space, a hyphen or nothing?
fn starts_with_code(s: &str) -> bool {
    let b = s.trim_start().as_bytes();
    b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b.get(3), None | Some(b' ') | Some(b'-') | Some(b'\t'))
}

#[test]
fn smtp_diagnostic_codes_of_the_corpus() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/dsn/sisimai/dsn_fields.tsv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipping: {} not found", path.display());
        return;
    };
    let mut head = text.lines().next().unwrap_or("").split('\t');
    let col = head.position(|c| c == "diagnostic_code").expect("column");
    let (mut smtp, mut parsed, mut enhanced, mut multi) = (0, 0, 0, 0);
    for line in text.lines().skip(1) {
        let raw = line.split('\t').nth(col).unwrap_or("").trim_matches('"');
        let Some((kind, value)) = raw.split_once(';') else {
            continue;
        };
        if !kind.trim().eq_ignore_ascii_case("smtp") {
            continue;
        }
        smtp += 1;
        let reply = parse_diagnostic(value);
        assert_eq!(reply.is_some(), starts_with_code(value), "{value:?}");
        if let Some(r) = reply {
            parsed += 1;
            assert!((200..600).contains(&r.code));
            if let Some(st) = r.enhanced() {
                enhanced += 1;
                assert_eq!(st.class, r.class());
            }
            if r.lines.len() > 1 {
                multi += 1;
            }
        }
    }
    println!(
        "Diagnostic-Code smtp fields: {smtp}; with a reply code: {parsed}; \
         with an enhanced status of the same class: {enhanced}; folded multi-line: {multi}"
    );
}
