//! Run stage: start the lab's services, run every scenario concurrently against one target, collect results.

pub mod judge;
pub mod observe;

use crate::client;
use crate::lab::{self, sniff, Lab};
use crate::report::Event;
use crate::suite::Scenario;
use crate::target::postfix::Postfix;
use crate::target::{TargetError, TargetOptions};
use crate::world::{self, host::Host, Scope};
use judge::{decide, is_negative, Decision};
use observe::{ConnectSeen, DnsQuery, Observations, Recorder};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// The harness could not run (as opposed to a scenario failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the fake DNS on {addr}: {source}")]
    Dns {
        addr: SocketAddr,
        #[source]
        source: fake_dns::DnsError,
    },
    #[error("cannot watch connection attempts in the lab: {0}")]
    Sniff(#[source] std::io::Error),
    #[error("target: {0}")]
    Target(#[from] TargetError),
}

/// What one scenario came to.
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub suite: String,
    pub title: String,
    pub rule: String,
    pub rfc: String,
    pub strength: crate::rfc::Strength,
    pub file: String,
    pub verdicts: Vec<Verdict>,
    /// Set when the scenario could not run (a harness problem).
    pub error: Option<String>,
    pub duration: Duration,
    pub observations: Observations,
    /// The scope label, to read transcripts.
    pub scope: String,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub expect: String,
    pub decision: Decision,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .verdicts
                .iter()
                .all(|v| matches!(v.decision, Decision::Pass(_)))
    }
}

/// The lab's shared services while a run lasts.
pub struct Services {
    pub dns: fake_dns::DnsHandle,
    pub syns: broadcast::Sender<sniff::ConnectAttempt>,
    pub target: Postfix,
    sniffer: tokio::task::JoinHandle<()>,
    pub startup: Duration,
}

impl Services {
    /// Start the fake DNS, the connection watcher and the target.
    pub async fn start(lab: &Lab, opts: &TargetOptions) -> Result<Services, RunError> {
        let begin = Instant::now();
        let addr = SocketAddr::from((lab::DNS_ADDR, 53));
        let dns = fake_dns::FakeDns::start(addr)
            .await
            .map_err(|source| RunError::Dns { addr, source })?;
        let (syns, _) = broadcast::channel(4096);
        let sniffer = sniff::start(syns.clone()).map_err(RunError::Sniff)?;
        let target = Postfix::start(lab.dir(), opts).await?;
        Ok(Services {
            dns,
            syns,
            target,
            sniffer,
            startup: begin.elapsed(),
        })
    }

    pub async fn stop(self) {
        self.sniffer.abort();
        self.target.stop().await;
        self.dns.shutdown().await;
    }
}

/// Run all scenarios concurrently; `events` receives progress as it happens.
pub async fn run_all(
    services: &Services,
    scenarios: Vec<Scenario>,
    events: &(dyn Fn(Event) + Sync),
) -> Vec<ScenarioResult> {
    let services_ref = services;
    let futures = scenarios.into_iter().enumerate().map(|(i, sc)| async move {
        events(Event::Started { id: sc.id.clone() });
        let r = run_one(services_ref, i, sc).await;
        events(Event::Finished(&r));
        r
    });
    // Scenarios borrow the shared services, so they run as futures on this task.
    futures::future::join_all(futures).await
}

/// One scenario: world up, inject, judge on every event, world down.
pub async fn run_one(services: &Services, index: usize, sc: Scenario) -> ScenarioResult {
    let scope = Scope::new(index);
    let rec = Recorder::default();
    let mut result = ScenarioResult {
        id: sc.id.clone(),
        suite: sc.suite.clone(),
        title: sc.title.clone(),
        rule: sc.rule.clone(),
        rfc: sc.rfc.clone(),
        strength: sc.strength,
        file: sc.path.display().to_string(),
        verdicts: Vec::new(),
        error: None,
        duration: Duration::ZERO,
        observations: Observations::default(),
        scope: scope.label.clone(),
    };

    let origin = scope.origin();
    if let Err(e) = services.dns.add_zone(world::zone(&sc, &scope)) {
        result.error = Some(format!("cannot build the scenario's DNS zone: {e}"));
        return result;
    }
    let mut hosts = Vec::new();
    let mut watchers = tokio::task::JoinSet::new();
    let addrs: Arc<Vec<(std::net::Ipv4Addr, String)>> = Arc::new(
        sc.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (scope.host_addr(i), h.key.clone()))
            .collect(),
    );
    // Connection attempts to this scenario's addresses.
    {
        let mut rx = services.syns.subscribe();
        let rec = rec.clone();
        let addrs = addrs.clone();
        watchers.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(a) => {
                        if let Some((_, key)) = addrs.iter().find(|(ip, _)| *ip == *a.to.ip()) {
                            let at = rec.since(a.at);
                            rec.update(|o| {
                                o.connects.push(ConnectSeen {
                                    host: key.clone(),
                                    at,
                                })
                            });
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
    }
    // DNS queries for this scenario's names.
    {
        let mut rx = services.dns.subscribe();
        let rec = rec.clone();
        let origin = origin.clone();
        let start = std::time::SystemTime::now();
        watchers.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(q) => {
                        if q.name == origin || q.name.ends_with(&format!(".{origin}")) {
                            let at = q.at.duration_since(start).unwrap_or_default();
                            rec.update(|o| {
                                o.dns.push(DnsQuery {
                                    at,
                                    name: q.name.clone(),
                                    qtype: q.qtype.clone(),
                                    outcome: format!("{:?}", q.outcome),
                                })
                            });
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
    }
    for (i, h) in sc.hosts.iter().enumerate() {
        let addr = SocketAddr::from((scope.host_addr(i), 25));
        match Host::start(h.clone(), addr, rec.clone()).await {
            Ok(host) => hosts.push(host),
            Err(e) => {
                result.error = Some(format!("cannot start fake host `{}` on {addr}: {e}", h.key));
            }
        }
    }

    if result.error.is_none() {
        let target = services.target.smtp_addr();
        for (n, m) in sc.messages.iter().enumerate() {
            let from = if m.from.is_empty() {
                String::new()
            } else {
                scope.address(&m.from)
            };
            let to: Vec<String> = m.to.iter().map(|t| scope.address(t)).collect();
            match client::compose(m, &from, &to) {
                Ok(out) => {
                    let inj = client::inject(target, &out, n, &rec).await;
                    rec.update(|o| o.injections.push(inj));
                }
                Err(e) => {
                    result.error = Some(format!("cannot compose message {}: {e}", n + 1));
                    break;
                }
            }
        }
    }
    if result.error.is_none() {
        result.verdicts = judge_loop(&sc, &scope, &rec).await;
    }

    for h in hosts {
        h.stop();
    }
    watchers.abort_all();
    services.dns.remove_zone(&origin);
    result.duration = rec.now();
    result.observations = std::mem::take(&mut *rec.lock());
    result
}

/// Decide expectations on every observation until all are decided or the deadline passes.
async fn judge_loop(sc: &Scenario, scope: &Scope, rec: &Recorder) -> Vec<Verdict> {
    let deadline = tokio::time::Instant::from_std(rec.start + sc.deadline);
    let decide_all = |last: bool| -> Vec<Decision> {
        let o = rec.lock();
        sc.expects
            .iter()
            .map(|e| decide(e, sc, scope, &o, last))
            .collect()
    };
    let mut decisions;
    loop {
        let changed = rec.changed();
        decisions = decide_all(false);
        if decisions.iter().all(Decision::decided) {
            break;
        }
        let only_negatives = sc
            .expects
            .iter()
            .zip(&decisions)
            .all(|(e, d)| d.decided() || is_negative(e));
        let wake = if only_negatives {
            (tokio::time::Instant::now() + sc.settle).min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            _ = changed => continue,
            _ = tokio::time::sleep_until(wake) => {
                decisions = decide_all(true);
                break;
            }
        }
    }
    sc.expects
        .iter()
        .zip(decisions)
        .map(|(e, decision)| Verdict {
            expect: e.describe(),
            decision,
        })
        .collect()
}
