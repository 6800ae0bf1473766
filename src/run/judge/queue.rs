//! Judge stage: expectations about the target's own queue — the message is still queued.

use super::*;

/// The injected message is still in the target's queue when the scenario ends.
pub struct Queued;

impl Check for Queued {
    fn describe(&self) -> String {
        "message still in the target's queue".into()
    }

    /// Only the end of the scenario can tell: the queue is read once, then.
    fn negative(&self) -> bool {
        true
    }

    fn anchor(&self) -> bool {
        true
    }

    fn decide(&self, cx: &Ctx) -> Decision {
        if !cx.last {
            return Decision::Pending;
        }
        let ours: Vec<String> = cx
            .sc
            .messages
            .iter()
            .flat_map(|m| &m.to)
            .map(|t| cx.scope.address(t))
            .collect();
        match &cx.o.queue {
            None => Decision::Fail("the target's queue could not be read".into()),
            Some(Err(e)) => Decision::Fail(format!("the target's queue could not be read: {e}")),
            Some(Ok(q)) => {
                let hit = q.iter().find(|m| {
                    m.recipients
                        .iter()
                        .any(|r| ours.iter().any(|x| x.eq_ignore_ascii_case(r)))
                });
                match hit {
                    Some(m) => Decision::Pass(format!(
                        "queued as {} for {}{}",
                        m.id,
                        cx.scope.unscope(&m.recipients.join(", ")),
                        m.reason
                            .as_ref()
                            .map(|r| format!(" ({})", cx.scope.unscope(r)))
                            .unwrap_or_default()
                    )),
                    None => Decision::Fail(format!(
                        "expected the message to be still queued; the target's queue holds {} message(s), none for {}; {}",
                        q.len(),
                        cx.scope.unscope(&ours.join(", ")),
                        cx.scope.unscope(&summary(cx.o))
                    )),
                }
            }
        }
    }
}
