//! Requirement levels: RFC 2119 strengths attached to conformance rules.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use bounce::{ParseStrengthError, Strength};

/// A reference to the specification text a rule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleRef {
    /// Document and section, e.g. `RFC 3464 §2.3.3`.
    pub section: String,
    pub strength: Strength,
}

impl RuleRef {
    pub fn new(section: impl Into<String>, strength: Strength) -> Self {
        RuleRef {
            section: section.into(),
            strength,
        }
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.section, self.strength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling() {
        assert_eq!(serde_json::to_string(&Strength::Must).unwrap(), "\"MUST\"");
        assert_eq!(
            serde_json::to_string(&Strength::Practice).unwrap(),
            "\"practice\""
        );
        let s: Strength = serde_json::from_str("\"Should\"").unwrap();
        assert_eq!(s, Strength::Should);
        let r = RuleRef::new("RFC 3464 §2.3.3", Strength::Must);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"section":"RFC 3464 §2.3.3","strength":"MUST"}"#);
        assert_eq!(serde_json::from_str::<RuleRef>(&j).unwrap(), r);
    }
}
