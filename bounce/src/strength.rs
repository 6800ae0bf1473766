//! Requirement levels: RFC 2119 strengths attached to conformance findings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How strongly a specification demands a behaviour.
///
/// `Must`, `Should` and `May` are the RFC 2119 keywords; `Practice` marks
/// widely expected behaviour that no RFC mandates (interoperability advice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strength {
    Must,
    Should,
    May,
    Practice,
}

impl Strength {
    /// Canonical spelling: `MUST`, `SHOULD`, `MAY`, `practice`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Must => "MUST",
            Strength::Should => "SHOULD",
            Strength::May => "MAY",
            Strength::Practice => "practice",
        }
    }
}

impl fmt::Display for Strength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that is not a known strength.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown requirement strength {0:?} (expected MUST, SHOULD, MAY or practice)")]
pub struct ParseStrengthError(pub String);

impl FromStr for Strength {
    type Err = ParseStrengthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("must") {
            Ok(Strength::Must)
        } else if t.eq_ignore_ascii_case("should") {
            Ok(Strength::Should)
        } else if t.eq_ignore_ascii_case("may") {
            Ok(Strength::May)
        } else if t.eq_ignore_ascii_case("practice") {
            Ok(Strength::Practice)
        } else {
            Err(ParseStrengthError(s.to_string()))
        }
    }
}

impl Serialize for Strength {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Strength {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for s in [
            Strength::Must,
            Strength::Should,
            Strength::May,
            Strength::Practice,
        ] {
            assert_eq!(s.to_string().parse::<Strength>(), Ok(s));
        }
        assert_eq!("must".parse::<Strength>(), Ok(Strength::Must));
        assert_eq!("PRACTICE".parse::<Strength>(), Ok(Strength::Practice));
        assert!("required".parse::<Strength>().is_err());
    }
}
