//! Fuzz stage: the fuzzer's world in the lab — fake hosts the target relays to (rotated before their caps), their DNS, the target's log followed for crashes, outbound cases run as scenarios.

use super::deliver::{fuzz_id, Arrived};
use super::gen::Names;
use super::outbound::{self, OutCase, OutResult, Outbound};
use super::World;
use crate::run::observe::Recorder;
use crate::run::{self, Services};
use crate::suite::{Attempt, HostSpec};
use crate::world::host::Host;
use crate::world::Scope;
use std::collections::HashSet;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Raw settings laid on the fuzzed Postfix before the user's `--set`:
/// its defences against misbehaving clients would otherwise slow every
/// session after a few errors (RFC-neutral; reported at the start).
pub fn relaxed_settings(mta: &str) -> Vec<(String, String)> {
    if mta != "postfix" {
        return Vec::new();
    }
    [
        ("smtpd_error_sleep_time", "0"),
        ("smtpd_soft_error_limit", "1000"),
        ("smtpd_hard_error_limit", "1000"),
        ("smtpd_junk_command_limit", "100000"),
        ("smtpd_client_connection_count_limit", "0"),
        ("smtpd_client_connection_rate_limit", "0"),
        ("smtpd_client_message_rate_limit", "0"),
        ("smtpd_client_recipient_rate_limit", "0"),
        ("smtpd_client_new_tls_session_rate_limit", "0"),
        ("default_process_limit", "200"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Where the fuzzer's scope indexes start (clear of `run`'s scenarios).
const SINK_SCOPES: usize = 10_000;
const OUTBOUND_SCOPES: usize = 40_000;
/// Fuzz sessions sent to one fake host before the next one takes over: a
/// session has at most a few messages, so the host's caps (`run::observe::limits`) are never reached.
const SINK_SESSIONS: usize = 40;
/// Fake hosts kept (older ones are stopped and their names removed).
const SINKS_KEPT: usize = 600;
/// Fake hosts started ahead, so that taking the next one never waits.
const SPARES: usize = 3;

struct Sink {
    names: Names,
    origin: String,
    host: Option<Host>,
    rec: Recorder,
    /// Fuzz sessions given its names.
    used: usize,
}

/// The lab as the fuzzer sees it.
pub struct LabWorld<'a> {
    services: &'a Services,
    target: &'a dyn crate::target::Instance,
    from: Ipv4Addr,
    /// Fake hosts in the order they were started; `current` is the one in use.
    sinks: Mutex<Vec<Sink>>,
    current: AtomicUsize,
    next_scope: AtomicUsize,
    next_out: AtomicUsize,
    log: Mutex<Vec<(PathBuf, u64)>>,
    seen: Mutex<HashSet<String>>,
    /// A fake host noted mail it did not keep.
    lost: AtomicBool,
}

fn spec() -> HostSpec {
    HostSpec {
        key: "mx".into(),
        name: Some("mx.dest.test".into()),
        address_record: true,
        attempts: vec![Attempt::default()],
    }
}

impl<'a> LabWorld<'a> {
    /// The world around `target`; starts the first fake host.
    pub async fn new(
        services: &'a Services,
        target: &'a dyn crate::target::Instance,
    ) -> std::io::Result<LabWorld<'a>> {
        // Follow the log from its current end: earlier lines are not this run's.
        let log = target
            .log_files()
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                (p, len)
            })
            .collect();
        let w = LabWorld {
            services,
            target,
            from: Ipv4Addr::new(127, 0, 9, 1),
            sinks: Mutex::new(Vec::new()),
            current: AtomicUsize::new(0),
            next_scope: AtomicUsize::new(SINK_SCOPES),
            next_out: AtomicUsize::new(OUTBOUND_SCOPES),
            log: Mutex::new(log),
            seen: Mutex::new(HashSet::new()),
            lost: AtomicBool::new(false),
        };
        if w.log.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            // Reports from before the run are not this run's.
            let before = target.log_tail(500);
            let mut seen = w.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.extend(before.lines().filter(|l| crash_line(l)).map(str::to_string));
        }
        for _ in 0..=SPARES {
            w.add_sink().await?;
        }
        Ok(w)
    }

    async fn add_sink(&self) -> std::io::Result<()> {
        let i = self.next_scope.fetch_add(1, Ordering::SeqCst);
        let scope = Scope::new(i);
        let addr = scope.host_addr(0);
        let rec = Recorder::default();
        let host = Host::start(spec(), SocketAddr::from((addr, 25)), rec.clone()).await?;
        let mx = scope.name("mx.dest.test");
        let zone = fake_dns::Zone::new(scope.origin())
            .with_record(fake_dns::Record::mx(
                scope.name("dest.test"),
                10,
                mx.clone(),
            ))
            .with_record(fake_dns::Record::mx(scope.name("src.test"), 10, mx.clone()))
            .with_record(fake_dns::Record::a(mx, addr));
        self.services
            .dns
            .add_zone(zone)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let names = Names {
            dest: scope.name("dest.test"),
            src: scope.name("src.test"),
        };
        self.lock_sinks().push(Sink {
            names,
            origin: scope.origin(),
            host: Some(host),
            rec,
            used: 0,
        });
        Ok(())
    }

    fn lock_sinks(&self) -> std::sync::MutexGuard<'_, Vec<Sink>> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep spare fake hosts ready; stop the oldest ones.
    async fn rotate(&self) {
        let (spares, len) = {
            let sinks = self.lock_sinks();
            (
                sinks.len() - 1 - self.current.load(Ordering::SeqCst).min(sinks.len() - 1),
                sinks.len(),
            )
        };
        for _ in spares..SPARES {
            let _ = self.add_sink().await;
        }
        if len > SINKS_KEPT {
            let mut sinks = self.lock_sinks();
            let cur = self.current.load(Ordering::SeqCst);
            for s in sinks.iter_mut().take(len - SINKS_KEPT).take(cur) {
                if let Some(h) = s.host.take() {
                    h.stop();
                    self.services.dns.remove_zone(&s.origin);
                }
            }
        }
    }
}

impl World for LabWorld<'_> {
    fn target(&self) -> SocketAddr {
        self.target.smtp_addr()
    }

    fn from(&self) -> Option<Ipv4Addr> {
        Some(self.from)
    }

    fn names(&self) -> Names {
        let mut sinks = self.lock_sinks();
        let mut cur = self.current.load(Ordering::SeqCst);
        if sinks[cur].used >= SINK_SESSIONS && cur + 1 < sinks.len() {
            cur += 1;
            self.current.store(cur, Ordering::SeqCst);
        }
        sinks[cur].used += 1;
        sinks[cur].names.clone()
    }

    fn arrivals(&self) -> Vec<Arrived> {
        let mut out = Vec::new();
        for s in self.lock_sinks().iter_mut().filter(|s| s.host.is_some()) {
            let mut o = s.rec.lock();
            if !o.lost.is_empty() {
                self.lost.store(true, Ordering::SeqCst);
            }
            out.extend(take_arrivals(&mut o));
        }
        out
    }

    fn crashes(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (path, offset) in self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
        {
            let Ok(mut f) = std::fs::File::open(&*path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < *offset {
                *offset = 0; // rotated or truncated
            }
            if f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            // At most 16 MiB per call; the rest is read next time.
            let mut buf = Vec::new();
            let n = f.by_ref().take(16 << 20).read_to_end(&mut buf).unwrap_or(0);
            // Only whole lines.
            let whole = buf
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0);
            *offset += whole.min(n) as u64;
            for line in String::from_utf8_lossy(&buf[..whole]).lines() {
                if crash_line(line) {
                    found.push(line.to_string());
                }
            }
        }
        // A target whose log is not in files here (an image): its last lines.
        if self
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            found.extend(
                self.target
                    .log_tail(500)
                    .lines()
                    .filter(|l| crash_line(l))
                    .map(str::to_string),
            );
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        found.retain(|l| seen.insert(l.clone()));
        found
    }

    fn outbound(&self) -> Option<&dyn Outbound> {
        Some(self)
    }

    fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn maintain(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(self.rotate())
    }

    fn queued(&self) -> Pin<Box<dyn Future<Output = Option<Vec<String>>> + '_>> {
        // `postqueue` is a blocking command: keep it off the async workers.
        Box::pin(async move {
            tokio::task::block_in_place(|| {
                let q = self.target.queue().ok()?;
                Some(q.into_iter().flat_map(|m| m.recipients).collect())
            })
        })
    }
}

/// The fuzz messages a fake host received since the last call, taken out
/// of it with everything else it received (bounces carry our id below
/// their own header: not ours). The host's limit on the messages it keeps
/// (`run::observe::limits::MESSAGES`) then counts what arrived since the
/// last look, not all the mail of the run, which a busy run once passed:
/// mail accepted later was dropped and judged never delivered.
fn take_arrivals(o: &mut crate::run::observe::Observations) -> Vec<Arrived> {
    let mut out = Vec::new();
    for sess in o.sessions.iter_mut() {
        for d in sess.deliveries.drain(..) {
            if let Some(id) = fuzz_id(&d.data) {
                out.push(Arrived {
                    id,
                    mail_from: d.mail_from,
                    rcpts: d.rcpts,
                    data: d.data,
                });
            }
        }
    }
    out
}

/// A log line that reports a crash, a fatal error or a restart.
pub fn crash_line(line: &str) -> bool {
    line.contains("panic:") || line.contains("fatal:") || line.contains("killed by signal")
}

impl Outbound for LabWorld<'_> {
    fn run<'b>(&'b self, case: &'b OutCase) -> Pin<Box<dyn Future<Output = OutResult> + 'b>> {
        Box::pin(async move {
            let i = self.next_out.fetch_add(1, Ordering::SeqCst);
            let text = outbound::scenario_text(case, "");
            let path = PathBuf::from(format!("fuzz-outbound/{i:05}-case.toml"));
            let sc = match crate::suite::parse_scenario(&path, &text) {
                Ok(sc) => sc,
                Err(e) => {
                    return OutResult {
                        signature: format!("unloadable: {e}"),
                        violation: None,
                    }
                }
            };
            let r = run::run_one(self.services, self.target, i, sc).await;
            let sig = signature(&r);
            let failed = r.verdicts.iter().find_map(|v| match &v.decision {
                crate::run::judge::Decision::Fail(why) => Some(format!("{}: {why}", v.expect)),
                _ => None,
            });
            let violation = failed.map(|detail| outbound::violation(case, detail));
            OutResult {
                signature: sig,
                violation,
            }
        })
    }
}

/// The target's commands per attempt at the fake host, e.g. `EHLO MAIL RCPT DATA . QUIT | EHLO ...`.
fn signature(r: &run::ScenarioResult) -> String {
    let mut parts = Vec::new();
    for s in r
        .observations
        .sessions
        .iter()
        .filter(|s| s.host == "mx")
        .take(6)
    {
        let cmds: Vec<String> = s
            .transcript
            .iter()
            .filter(|l| l.from_peer)
            .take(12)
            .map(|l| {
                if l.text.starts_with("[message") {
                    ".".to_string()
                } else {
                    l.text.split(' ').next().unwrap_or("").to_ascii_uppercase()
                }
            })
            .collect();
        parts.push(cmds.join(" "));
    }
    if parts.is_empty() {
        "no connection".into()
    } else {
        parts.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::observe::{limits, Delivery, Observations, Session};
    use std::time::Duration;

    fn delivery(id: Option<usize>) -> Delivery {
        let data = match id {
            Some(i) => format!("X-Fuzz-Id: 1-{i}\r\nSubject: s\r\n\r\nhi\r\n"),
            None => "Subject: bounce\r\n\r\nX-Fuzz-Id: 1-0\r\n".to_string(),
        };
        Delivery {
            host: "mx".into(),
            attempt: 0,
            at: Duration::ZERO,
            mail_from: "a@src.test".into(),
            mail_params: Vec::new(),
            rcpts: vec!["b@dest.test".into()],
            data: data.into_bytes(),
        }
    }

    /// A fake host that takes many times its message limit over a run, a
    /// few at a time between looks, hands over every fuzz message and
    /// drops none; bounces are taken out too, and not handed over.
    #[test]
    fn a_busy_fake_host_hands_over_more_than_its_limit() {
        let mut o = Observations::default();
        o.sessions.push(Session::opened("mx", 0, Duration::ZERO));
        let mut got = Vec::new();
        let mut next = 0;
        for _ in 0..10 {
            for _ in 0..limits::MESSAGES / 2 {
                crate::world::host::keep(&mut o, 0, delivery(Some(next)));
                crate::world::host::keep(&mut o, 0, delivery(None));
                next += 1;
            }
            got.extend(take_arrivals(&mut o).into_iter().map(|a| a.id));
        }
        assert!(o.lost.is_empty(), "{:?}", o.lost);
        assert_eq!(got.len(), next);
        assert_eq!(
            got.last().map(String::as_str),
            Some(&*format!("1-{}", next - 1))
        );
        assert!(o.sessions[0].deliveries.is_empty());
    }
}
