//! Bounce classification: the phrase tables of `data/phrases.txt`, loaded once and searched in one pass.

use std::sync::LazyLock;

use daachorse::DoubleArrayAhoCorasick;
use mail_parser::HeaderName;

use crate::classify::{find, Command, Reason};

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
    /// Length of the first piece.
    pub first_len: usize,
    /// The `## Name` heading the entry is under.
    pub source: &'static str,
    /// The heading ends in `[generic]`: wording that many MTAs quote for
    /// more than one cause, so the command and status must back it up.
    pub generic: bool,
    /// The heading ends in `[vendor]`: the wording of one vendor's bounces,
    /// read only in bounces that carry that vendor's marks (`= header |
    /// text` lines), where it decides as stated.
    pub vendor: bool,
}

/// A vendor's marks: header fields its bounces carry.
#[derive(Debug, Clone)]
pub(crate) struct Vendor {
    /// The `## Name` heading.
    pub name: &'static str,
    /// (lowercase header name, lowercase text its value contains).
    marks: Vec<(&'static str, &'static str)>,
}

impl Vendor {
    /// The field's name is compared first: the value is read only for a
    /// field a mark names.
    fn matches(&self, name: &str, value: &[u8]) -> bool {
        self.marks.iter().any(|(h, t)| {
            h.eq_ignore_ascii_case(name) && (t.is_empty() || contains_lower(value, t))
        })
    }
}

/// `hay` contains `needle` (lowercase ASCII), ignoring ASCII case.
fn contains_lower(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    if hay.len() < n.len() {
        return false;
    }
    // Only where the first byte stands, in either case, is the rest compared.
    memchr::memchr2_iter(
        first,
        first.to_ascii_uppercase(),
        &hay[..=hay.len() - n.len()],
    )
    .any(|i| hay[i + 1..i + n.len()].eq_ignore_ascii_case(rest))
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
    /// For each pattern of `ac`, the range of `members` listing the
    /// entries whose first piece it is.
    groups: Vec<(u32, u32)>,
    members: Vec<u32>,
    /// Per-recipient `X-` fields some phrase names (`x-powermta-bouncecategory`):
    /// the classifier reads these fields as text too.
    pub fields: Vec<&'static str>,
    /// The first pieces of [`SHORT_PIECE`] bytes or more, their group's
    /// index as value: a candidate for one of them is eight bytes of text
    /// its prefilter must see (few places do), so most text is skipped.
    long: DoubleArrayAhoCorasick<u32>,
    /// The shorter first pieces (`spf`, `dnsbl`, `as spam`): an automaton
    /// small enough to stay in the processor's first cache.
    short: DoubleArrayAhoCorasick<u32>,
}

/// Shortest first piece the `long` automaton holds.
const SHORT_PIECE: usize = 8;

/// The vendors' marks of `data/phrases.txt`, read without building the
/// phrase automaton (the parser needs only these).
pub(crate) static VENDORS: LazyLock<Vec<Vendor>> =
    LazyLock::new(|| load_vendors(DATA).unwrap_or_else(|e| panic!("built-in phrase table: {e}")));

/// The vendor whose marks a message's header fields (name, raw value)
/// carry, if any: the first vendor of the table that one field matches.
/// The fields are gone through once, and no copy is made.
pub(crate) fn vendor_of<'a>(
    headers: impl Iterator<Item = (&'a HeaderName<'a>, &'a [u8])>,
) -> Option<&'static str> {
    // The fields some mark names; most of a message's fields are none of
    // them, which mail-parser's number for a known field name (one bit of
    // `known`) or a comparison of another name tells at once.
    static NAMED: LazyLock<(u64, Vec<&'static str>)> = LazyLock::new(|| {
        let (mut known, mut other) = (0u64, Vec::new());
        for (h, _) in VENDORS.iter().flat_map(|v| v.marks.iter()) {
            match HeaderName::from(*h) {
                HeaderName::Other(_) => other.push(*h),
                n => known |= 1 << (n.id() % 64),
            }
        }
        (known, other)
    });
    let (known, other) = &*NAMED;
    let mut best: Option<usize> = None;
    for (name, value) in headers {
        let named = match name {
            HeaderName::Other(n) => other.iter().any(|o| o.eq_ignore_ascii_case(n)),
            n => known & (1 << (n.id() % 64)) != 0,
        };
        if !named {
            continue;
        }
        let name = name.as_str();
        let before = best.unwrap_or(VENDORS.len());
        if let Some(i) = VENDORS[..before]
            .iter()
            .position(|v| v.matches(name, value))
        {
            best = Some(i);
        }
    }
    best.map(|i| VENDORS[i].name)
}

/// Reads the `[vendor]` headings and their `= header | text` lines.
fn load_vendors(text: &'static str) -> Result<Vec<Vendor>, TableError> {
    let mut vendors: Vec<Vendor> = Vec::new();
    let mut in_vendor = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("## ") {
            let (name, vendor, _) = heading(name);
            in_vendor = vendor;
            if vendor {
                vendors.push(Vendor {
                    name,
                    marks: Vec::new(),
                });
            }
            continue;
        }
        let Some(mark) = line.strip_prefix("= ") else {
            continue;
        };
        let err = |what: String| TableError { line: i + 1, what };
        let v = vendors
            .last_mut()
            .filter(|_| in_vendor)
            .ok_or_else(|| err("a `= header | text` mark outside a `[vendor]` section".into()))?;
        let (h, t) = mark
            .split_once('|')
            .ok_or_else(|| err(format!("{line:?} is not `= header | text`")))?;
        let (h, t) = (h.trim(), t.trim());
        if h.is_empty()
            || h.contains(' ')
            || (h, t) != (&*h.to_ascii_lowercase(), &*t.to_ascii_lowercase())
        {
            return Err(err(format!(
                "mark {line:?}: the header name is one lowercase word, the text lowercase"
            )));
        }
        v.marks.push((h, t));
    }
    if let Some(v) = vendors.iter().find(|v| v.marks.is_empty()) {
        return Err(TableError {
            line: 0,
            what: format!("vendor section {:?} has no `= header | text` mark", v.name),
        });
    }
    Ok(vendors)
}

/// A heading's name and its `[vendor]` and `[generic]` flags.
fn heading(h: &'static str) -> (&'static str, bool, bool) {
    let h = h.trim();
    if let Some(n) = h.strip_suffix("[vendor]") {
        (n.trim_end(), true, false)
    } else if let Some(n) = h.strip_suffix("[generic]") {
        (n.trim_end(), false, true)
    } else {
        (h, false, false)
    }
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
    let mut generic = false;
    let mut vendor = false;
    load_vendors(text)?;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("## ") {
            (source, vendor, generic) = heading(name);
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with("= ") {
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
            first_len: first.len(),
            rest,
            source,
            generic,
            vendor,
        });
    }
    // One pattern for each distinct first piece; `groups` lists the
    // entries that start with it.
    let mut firsts: Vec<&str> = Vec::new();
    let mut lists: Vec<Vec<u32>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let first = &e.phrase[..e.first_len];
        let g = *index.entry(first).or_insert_with(|| {
            firsts.push(first);
            lists.push(Vec::new());
            firsts.len() - 1
        });
        lists[g].push(i as u32);
    }
    // The lists one after another: a match reads one small array.
    let mut groups = Vec::with_capacity(lists.len());
    let mut members = Vec::with_capacity(entries.len());
    for l in lists {
        groups.push((members.len() as u32, (members.len() + l.len()) as u32));
        members.extend(l);
    }
    // Double-array Aho-Corasick automata: a step through one is one array
    // lookup per byte of text; their states fit in 0.2 MB.
    let automaton = |long: bool| {
        let patterns = firsts
            .iter()
            .enumerate()
            .filter(|(_, f)| (f.len() >= SHORT_PIECE) == long)
            .map(|(g, f)| (*f, g as u32));
        DoubleArrayAhoCorasick::with_values(patterns).map_err(|e| TableError {
            line: 0,
            what: e.to_string(),
        })
    };
    let (long, short) = (automaton(true)?, automaton(false)?);
    let mut fields: Vec<&'static str> = entries
        .iter()
        .filter(|e| e.phrase.starts_with("x-"))
        .filter_map(|e| e.phrase.split_once(": ").map(|(f, _)| f))
        .filter(|f| !f.contains(' '))
        .collect();
    fields.sort_unstable();
    fields.dedup();
    Ok(Table {
        entries,
        groups,
        members,
        fields,
        long,
        short,
    })
}

pub(crate) static TABLE: LazyLock<Table> =
    LazyLock::new(|| load(DATA).unwrap_or_else(|e| panic!("built-in phrase table: {e}")));

impl Table {
    /// Every entry found in `text` (lowercase, white space collapsed), with
    /// where it starts and where its last piece ends, in the order of the
    /// ends of their first pieces.
    pub fn matches<'s: 't, 't>(
        &'s self,
        text: &'t str,
    ) -> impl Iterator<Item = (usize, usize, &'s Entry)> + 't {
        let mut long = self.long.find_overlapping_iter(text).peekable();
        let mut short = self.short.find_overlapping_iter(text).peekable();
        // In the order one automaton of all the pieces reports them: by
        // where they end; at one end, the longer first (every piece of
        // `long` is longer than every piece of `short`).
        std::iter::from_fn(move || match (long.peek(), short.peek()) {
            (Some(l), Some(s)) if s.end() < l.end() => short.next(),
            (Some(_), _) => long.next(),
            (None, _) => short.next(),
        })
        .flat_map(move |m| {
            let (a, b) = self.groups[m.value() as usize];
            self.members[a as usize..b as usize]
                .iter()
                .map(move |&i| (m, &self.entries[i as usize]))
        })
        .filter_map(move |(m, e)| Some((m.start(), e.rest_follows(text, m.end())?, e)))
    }
}

impl Entry {
    /// Where the last piece ends when the pieces after the first follow, in
    /// order, from `at` of `text` (where the first piece ended).
    fn rest_follows(&self, text: &str, mut at: usize) -> Option<usize> {
        for piece in &self.rest {
            at += text.get(at..).and_then(|t| find(t, piece))? + piece.len();
        }
        Some(at)
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

    /// The vendor listed first in the table wins, whatever the order of the
    /// header fields; values need not be UTF-8; other fields are skipped.
    #[test]
    fn the_first_vendor_of_the_table_is_named() {
        let mcafee = VENDORS
            .iter()
            .find(|v| v.marks.iter().any(|(h, _)| *h == "x-nai-header"))
            .unwrap();
        let labs = VENDORS
            .iter()
            .find(|v| v.marks.iter().any(|(_, t)| t.contains("messagelabs")))
            .unwrap();
        let first = VENDORS
            .iter()
            .find(|v| v.name == mcafee.name || v.name == labs.name)
            .unwrap();
        let names = [
            HeaderName::from("Received"),
            HeaderName::from("From"),
            HeaderName::from("X-NAI-Header"),
        ];
        let fields: [(&HeaderName, &[u8]); 3] = [
            (&names[0], b"from mx.messagelabs.com"),
            (&names[1], b"MAILER-DAEMON@messagelabs.com"),
            (&names[2], b"\xff Modified by McAfee"),
        ];
        assert_eq!(vendor_of(fields.iter().copied()), Some(first.name));
        assert_eq!(vendor_of(fields.iter().rev().copied()), Some(first.name));
        assert_eq!(vendor_of(fields[..2].iter().copied()), Some(labs.name));
        assert_eq!(vendor_of(fields[2..].iter().copied()), Some(mcafee.name));
        assert_eq!(vendor_of(fields[..1].iter().copied()), None);
    }

    #[test]
    fn marks_are_found_in_any_case_anywhere() {
        assert!(contains_lower(b"Mailer <DAEMON@v.test>", "daemon@v.test"));
        assert!(contains_lower(b"daemon@v.test", "daemon@v.test"));
        assert!(contains_lower(b"x", ""));
        assert!(!contains_lower(b"daemon@v.tes", "daemon@v.test"));
        assert!(!contains_lower(b"ddaemon@v.tesT.", "daemon@w.test"));
        assert!(!contains_lower(b"", "d"));
        assert!(contains_lower(b"\xff\xfeDD", "dd"));
    }

    /// The built-in phrases' first pieces as one automaton over all of them lists
    /// its matches (start, entry): what the two automata of [`Table`] must give.
    fn one_automaton(text: &str) -> Vec<(usize, usize)> {
        static ONE: LazyLock<DoubleArrayAhoCorasick<u32>> = LazyLock::new(|| {
            let t = &*TABLE;
            let firsts: Vec<&str> = t
                .groups
                .iter()
                .map(|&(a, _)| {
                    let e = &t.entries[t.members[a as usize] as usize];
                    &e.phrase[..e.first_len]
                })
                .collect();
            DoubleArrayAhoCorasick::new(&firsts).unwrap()
        });
        let t = &*TABLE;
        let mut out = Vec::new();
        for m in ONE.find_overlapping_iter(text) {
            let (a, b) = t.groups[m.value() as usize];
            for &i in &t.members[a as usize..b as usize] {
                if t.entries[i as usize].rest_follows(text, m.end()).is_some() {
                    out.push((m.start(), i as usize));
                }
            }
        }
        out
    }

    proptest::proptest! {
        /// Short and long first pieces in two automata: the matches, and
        /// their order, are those of one automaton over all of them.
        #[test]
        fn the_two_automata_find_what_one_finds(
            picks in proptest::collection::vec((0usize..2000, 0usize..4, 0usize..6), 0..40)
        ) {
            let t = &*TABLE;
            let filler = ["", " ", "x", " the ", "5.1.1 ", "> "];
            let mut text = String::new();
            for (k, cut, f) in picks {
                let p = t.entries[k % t.entries.len()].phrase.replace('*', "a");
                // Whole phrases, and phrases cut short or run together.
                let mut keep = p.len() - p.len() * cut / 8;
                while !p.is_char_boundary(keep) {
                    keep -= 1;
                }
                text.push_str(&p[..keep]);
                text.push_str(filler[f]);
            }
            let ours: Vec<(usize, usize)> = t
                .matches(&text)
                .map(|(s, _, e)| (s, t.entries.iter().position(|x| std::ptr::eq(x, e)).unwrap()))
                .collect();
            proptest::prop_assert_eq!(ours, one_automaton(&text));
        }
    }

    #[test]
    fn gaps_and_errors() {
        let t = load("## X\nblocked | mail from * refused due to\n").unwrap();
        assert_eq!(t.matches("mail from a.test refused due to x").count(), 1);
        // Where it starts, and where its last piece ends.
        let m = t.matches("x mail from a refused due to it").next().unwrap();
        assert_eq!((m.0, m.1), (2, 28));
        assert_eq!(t.matches("refused due to mail from a.test").count(), 0);
        let e = load("## X\nblocked | ok\nnonsense | x\n").err().unwrap();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("data/phrases.txt:3: unknown key"));
        let t = load("## A [generic]\nblocked | a\n## B\nblocked | b\n").unwrap();
        assert_eq!((t.entries[0].source, t.entries[0].generic), ("A", true));
        assert_eq!((t.entries[1].source, t.entries[1].generic), ("B", false));
        let v = load_vendors("## V [vendor]\n= x-mark |\n= from | daemon@v.test\nfiltered | a\n")
            .unwrap();
        assert_eq!(v[0].name, "V");
        assert!(v[0].matches("X-Mark", b"anything"));
        assert!(v[0].matches("From", b"Mailer <DAEMON@v.test>"));
        assert!(!v[0].matches("From", b"daemon@other.test"));
        let t = load("## V [vendor]\n= x-mark |\nfiltered | a\n").unwrap();
        assert!(t.entries[0].vendor && !t.entries[0].generic);
        assert!(load_vendors("## V [vendor]\nfiltered | a\n").is_err());
        assert_eq!(load("## V\n= x-mark |\n").err().unwrap().line, 2);
        assert!(load_vendors("## V [vendor]\n= X-Mark |\n").is_err());
        assert!(load("user-unknown | No").is_err());
        assert!(load("user-unknown no").is_err());
        assert!(load("user-unknown | a * ").is_err());
    }
}
