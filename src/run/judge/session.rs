//! Judge stage: inbound expectations — a raw session's replies against its script, what the target relayed (decided in `session::judge`).

use super::*;
use crate::session::judge::Judged;
use crate::suite::session::SessionExpect;

/// A raw client session's expectation.
pub struct Session<'a> {
    pub x: &'a SessionExpect,
}

impl Check for Session<'_> {
    fn describe(&self) -> String {
        self.x.describe()
    }

    fn negative(&self) -> bool {
        crate::session::judge::waits_for_quiet(self.x)
    }

    /// A session's replies show the target acted; what was relayed is
    /// judged against what the sessions sent, so it anchors too.
    fn anchor(&self) -> bool {
        true
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        match crate::session::judge::decide(self.x, cx.sc, cx.scope, cx.o, cx.last) {
            Judged::Pending => Decision::Pending,
            Judged::Pass(s) => Decision::Pass(s),
            Judged::Fail(s) => Decision::Fail(s),
        }
    }
}
