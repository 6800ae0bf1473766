//! Judge stage: expectations about the DNS query log — queried, not queried.

use super::*;

/// A DNS query for `name` `qtype` was (`want`) or was not made.
pub struct Query<'a> {
    pub name: &'a String,
    pub qtype: &'a String,
    pub want: bool,
}

impl Check for Query<'_> {
    fn describe(&self) -> String {
        let Self { name, qtype, .. } = *self;
        if self.want {
            format!("DNS query {name} {qtype}")
        } else {
            format!("no DNS query {name} {qtype}")
        }
    }

    fn negative(&self) -> bool {
        !self.want
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        let Self { name, qtype, .. } = *self;
        let (scope, o, last) = (cx.scope, cx.o, cx.last);
        let pending_or = |why: String| cx.pending_or(why);

        let scoped = scope.name(name);
        let hit = o
            .dns
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(&scoped) && q.qtype.eq_ignore_ascii_case(qtype));
        let want = self.want;
        match (hit, want) {
            (Some(q), true) => Decision::Pass(format!(
                "queried at {:.3} s ({})",
                q.at.as_secs_f64(),
                q.outcome
            )),
            (Some(q), false) => Decision::Fail(format!(
                "expected no DNS query for {name} {qtype}; the target asked at {:.3} s",
                q.at.as_secs_f64()
            )),
            (None, true) => pending_or(format!(
                "expected a DNS query for {name} {qtype}; none was seen"
            )),
            (None, false) if last => Decision::Pass(format!("{name} {qtype} was never queried")),
            (None, false) => Decision::Pending,
        }
    }
}
