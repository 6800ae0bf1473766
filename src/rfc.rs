//! RFC references: the strength of a rule (MUST / SHOULD / MAY / practice).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How binding a rule is: RFC 2119 keywords, or common operational practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strength {
    Must,
    Should,
    May,
    Practice,
}

impl fmt::Display for Strength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strength::Must => "MUST",
            Strength::Should => "SHOULD",
            Strength::May => "MAY",
            Strength::Practice => "practice",
        })
    }
}

impl FromStr for Strength {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "must" => Ok(Strength::Must),
            "should" => Ok(Strength::Should),
            "may" => Ok(Strength::May),
            "practice" => Ok(Strength::Practice),
            _ => Err(format!(
                "unknown strength `{s}`: expected MUST, SHOULD, MAY or practice"
            )),
        }
    }
}

impl Serialize for Strength {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Strength {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
