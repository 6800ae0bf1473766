//! Load stage: known deviations of a target — scenario id patterns mapped to the reason.
//!
//! The file (`suites/known-deviations/<target>.toml`) holds one table:
//!
//! ```toml
//! [deviations]
//! "loop-detection/0005-*" = "Postfix answers 5.4.0, not 5.4.6, for too many hops"
//! ```
//!
//! A scenario whose id matches a pattern and fails is reported as KNOWN; one
//! that matches and passes is reported as "known deviation no longer seen".

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A known-deviations file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KnownError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownFile {
    deviations: BTreeMap<String, toml::Spanned<String>>,
}

/// Known deviations, in file order of patterns (sorted).
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub path: Option<PathBuf>,
    entries: Vec<(String, GlobMatcher, String)>,
}

impl Known {
    /// Parse the text of a known-deviations file.
    pub fn parse(path: &Path, text: &str) -> Result<Known, KnownError> {
        let line_of = |pos: usize| text[..pos.min(text.len())].matches('\n').count() + 1;
        let raw: KnownFile = toml::from_str(text).map_err(|e| KnownError::Invalid {
            path: path.to_path_buf(),
            line: line_of(e.span().map(|s| s.start).unwrap_or(0)),
            message: e.message().trim().to_string(),
        })?;
        let mut entries = Vec::new();
        for (pattern, reason) in raw.deviations {
            let line = line_of(reason.span().start);
            if reason.get_ref().trim().is_empty() {
                return Err(KnownError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    message: format!("`{pattern}`: give the reason the target deviates"),
                });
            }
            let glob = Glob::new(&pattern).map_err(|e| KnownError::Invalid {
                path: path.to_path_buf(),
                line,
                message: format!("bad pattern `{pattern}`: {e}"),
            })?;
            entries.push((pattern, glob.compile_matcher(), reason.into_inner()));
        }
        Ok(Known {
            path: Some(path.to_path_buf()),
            entries,
        })
    }

    /// Read a known-deviations file.
    pub fn load(path: &Path) -> Result<Known, KnownError> {
        let text = std::fs::read_to_string(path).map_err(|source| KnownError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Known::parse(path, &text)
    }

    /// Look for `known-deviations/<target>.toml` in the given suite folders
    /// (and in the folder above a scenario file's suite folder).
    pub fn find(paths: &[PathBuf], target: &str) -> Option<PathBuf> {
        let file = format!("known-deviations/{target}.toml");
        paths
            .iter()
            .flat_map(|p| {
                let mut c = vec![p.join(&file)];
                if let Some(parent) = p.parent() {
                    c.push(parent.join(&file));
                    if let Some(pp) = parent.parent() {
                        c.push(pp.join(&file));
                    }
                }
                c
            })
            .find(|c| c.is_file())
    }

    /// The reason a scenario id is a known deviation, if it is one.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, g, _)| g.is_match(id))
            .map(|(_, _, r)| r.as_str())
    }

    /// Patterns that matched none of these ids (likely stale or misspelt).
    pub fn unmatched<'a>(&'a self, ids: &[&str]) -> Vec<&'a str> {
        self.entries
            .iter()
            .filter(|(_, g, _)| !ids.iter().any(|id| g.is_match(id)))
            .map(|(p, _, _)| p.as_str())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_ids_and_give_the_reason() {
        let k = Known::parse(
            Path::new("k.toml"),
            "[deviations]\n\"loop-detection/0005-*\" = \"5.4.0 not 5.4.6\"\n",
        )
        .unwrap();
        assert_eq!(
            k.reason("loop-detection/0005-status"),
            Some("5.4.0 not 5.4.6")
        );
        assert_eq!(k.reason("loop-detection/0006-status"), None);
        assert_eq!(
            k.unmatched(&["mx-fallback/0001-x"]),
            vec!["loop-detection/0005-*"]
        );
    }

    #[test]
    fn bad_patterns_and_empty_reasons_name_the_line() {
        let e = Known::parse(Path::new("k.toml"), "[deviations]\n\"a/[\" = \"x\"\n").unwrap_err();
        assert!(
            matches!(e, KnownError::Invalid { line: 2, ref message, .. } if message.contains("bad pattern"))
        );
        let e = Known::parse(Path::new("k.toml"), "[deviations]\n\n\"a/*\" = \" \"\n").unwrap_err();
        assert!(
            matches!(e, KnownError::Invalid { line: 3, ref message, .. } if message.contains("reason"))
        );
        let e = Known::parse(Path::new("k.toml"), "[other]\n").unwrap_err();
        assert!(matches!(e, KnownError::Invalid { .. }));
    }
}
