//! Bounce classification: the phrase tables of `data/phrases.txt`, loaded once and searched in one pass.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::classify::{Command, Reason};

/// What a phrase says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Reason(Reason),
    Command(Command),
    /// The failure is temporary and delivery is still being retried.
    Transient,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: Key,
    /// The phrase as written (lowercase, `*` for a gap).
    pub phrase: &'static str,
    /// The pieces after the first `*`, to find in order after the first.
    rest: Vec<&'static str>,
    /// The `## Name` heading the entry is under.
    pub source: &'static str,
}

/// Why the table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data/phrases.txt:{line}: {what}")]
pub struct TableError {
    pub line: usize,
    pub what: String,
}

pub(crate) struct Table {
    pub entries: Vec<Entry>,
    ac: AhoCorasick,
}

pub(crate) const DATA: &str = include_str!("../data/phrases.txt");

fn key(s: &str) -> Option<Key> {
    match s {
        "transient" => Some(Key::Transient),
        _ => match s.strip_prefix('@') {
            Some(c) => c.parse().ok().map(Key::Command),
            None => s.parse().ok().map(Key::Reason),
        },
    }
}

/// Reads the table text.
pub(crate) fn load(text: &'static str) -> Result<Table, TableError> {
    let mut entries = Vec::new();
    let mut source = "";
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("## ") {
            source = name.trim();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what: String| TableError { line: i + 1, what };
        let (k, phrase) = line
            .split_once(" | ")
            .ok_or_else(|| err(format!("{line:?} is not `key | phrase`")))?;
        let key = key(k.trim()).ok_or_else(|| {
            err(format!(
                "unknown key {:?} (a reason name, `transient` or `@command`)",
                k.trim()
            ))
        })?;
        let phrase = phrase.trim();
        if phrase.is_empty() || phrase.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(format!(
                "phrase {phrase:?} must be lowercase and not empty"
            )));
        }
        if phrase.contains("  ") {
            return Err(err(format!("phrase {phrase:?} has a run of spaces")));
        }
        let mut pieces = phrase.split('*').map(str::trim);
        let first = pieces.next().unwrap_or("");
        let rest: Vec<&str> = pieces.collect();
        if first.is_empty() || rest.iter().any(|p| p.is_empty()) {
            return Err(err(format!(
                "phrase {phrase:?}: `*` must stand between words"
            )));
        }
        entries.push(Entry {
            key,
            phrase,
            rest,
            source,
        });
    }
    let firsts: Vec<&str> = entries
        .iter()
        .map(|e| e.phrase.split('*').next().unwrap_or("").trim())
        .collect();
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&firsts)
        .map_err(|e| TableError {
            line: 0,
            what: e.to_string(),
        })?;
    Ok(Table { entries, ac })
}

pub(crate) static TABLE: LazyLock<Table> =
    LazyLock::new(|| load(DATA).unwrap_or_else(|e| panic!("built-in phrase table: {e}")));

impl Table {
    /// Every entry found in `text` (lowercase, white space collapsed), with
    /// where it starts, in the order of their ends in the text.
    pub fn matches<'s>(&'s self, text: &str) -> Vec<(usize, &'s Entry)> {
        self.ac
            .find_overlapping_iter(text)
            .filter_map(|m| {
                let e = &self.entries[m.pattern().as_usize()];
                let mut at = m.end();
                for piece in &e.rest {
                    match text.get(at..).and_then(|t| t.find(piece)) {
                        Some(p) => at += p + piece.len(),
                        None => return None,
                    }
                }
                Some((m.start(), e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn built_in_table_loads_and_is_unambiguous() {
        let t = load(DATA).unwrap();
        assert!(t.entries.len() > 300);
        let mut seen: HashMap<&str, Reason> = HashMap::new();
        for e in &t.entries {
            assert!(!e.source.is_empty(), "{:?} has no source", e.phrase);
            let Key::Reason(r) = e.key else { continue };
            if let Some(k) = seen.insert(e.phrase, r) {
                assert_eq!(k, r, "phrase {:?} names two reasons", e.phrase);
            }
        }
        // Every reason but the ones decided without text has phrases.
        for r in Reason::ALL {
            let needs = !matches!(
                r,
                Reason::Delivered | Reason::Feedback | Reason::OnHold | Reason::Undefined
            );
            let has = t.entries.iter().any(|e| e.key == Key::Reason(*r));
            assert_eq!(has, needs, "{r}");
        }
    }

    #[test]
    fn gaps_and_errors() {
        let t = load("## X\nblocked | mail from * refused due to\n").unwrap();
        assert_eq!(t.matches("mail from a.test refused due to x").len(), 1);
        assert_eq!(t.matches("x mail from a refused due to")[0].0, 2);
        assert_eq!(t.matches("refused due to mail from a.test").len(), 0);
        let e = load("## X\nblocked | ok\nnonsense | x\n").err().unwrap();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("data/phrases.txt:3: unknown key"));
        assert!(load("user-unknown | No").is_err());
        assert!(load("user-unknown no").is_err());
        assert!(load("user-unknown | a * ").is_err());
    }
}
