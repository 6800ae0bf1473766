//! Run stage: start the lab's services, run every scenario concurrently against one target, collect results.

pub mod judge;
pub mod observe;

use crate::client;
use crate::lab::{self, sniff, Lab};
use crate::report::Event;
use crate::suite::Scenario;
use crate::target::knobs::{self, Knobs};
use crate::target::{Mta, Spec, Support, TargetError, TargetOptions};
use crate::world::{self, host::Host, Scope};
use judge::{decide, waits_for_quiet, window_end, Ctx, Decision};
use observe::{ConnectSeen, DnsQuery, Observations, Recorder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
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
    #[error("{0} distinct [target] settings need as many target instances; at most 200 fit the lab's addresses")]
    TooManyInstances(usize),
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
    /// The scenario's names and addresses in the lab, to read transcripts.
    pub scope: Scope,
    /// The address of the target instance that ran the scenario.
    pub instance: String,
    /// Set when the scenario is a known deviation of the target: the reason.
    pub known: Option<String>,
    /// Set when the target cannot honour a knob the scenario needs: why.
    pub unsupported: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub expect: String,
    pub decision: Decision,
}

impl ScenarioResult {
    /// An empty result for `sc`, before it runs.
    pub fn new(sc: &Scenario, scope: &Scope) -> ScenarioResult {
        ScenarioResult {
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
            scope: scope.clone(),
            instance: String::new(),
            known: None,
            unsupported: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.unsupported.is_none()
            && self
                .verdicts
                .iter()
                .all(|v| matches!(v.decision, Decision::Pass(_)))
    }
}

/// What makes scenarios need their own target instance: their knobs and
/// their raw settings for the MTA under test. The default instance has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub knobs: Knobs,
    pub set: BTreeMap<String, String>,
}

impl Group {
    pub fn of(sc: &Scenario, mta: &dyn Mta) -> Group {
        Group {
            knobs: sc.knobs.clone(),
            set: sc.target_sets.get(mta.name()).cloned().unwrap_or_default(),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .knobs
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        parts.extend(self.set.iter().map(|(k, v)| format!("{k} = {v}")));
        if parts.is_empty() {
            "defaults".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Why `mta` cannot run `sc`: a knob the scenario needs that it cannot set.
pub fn unsupported(sc: &Scenario, mta: &dyn Mta) -> Option<String> {
    sc.knobs.keys().find_map(|k| match mta.support(*k) {
        Support::Yes => None,
        Support::No(why) => Some(format!("{} cannot set `{k}`: {why}", mta.name())),
    })
}

/// One running target instance and the scenario settings it was started with.
pub struct Instance {
    pub group: Group,
    pub target: Box<dyn crate::target::Instance>,
}

/// The lab's shared services while a run lasts.
pub struct Services {
    pub mta: &'static dyn Mta,
    pub dns: fake_dns::DnsHandle,
    pub syns: broadcast::Sender<sniff::ConnectAttempt>,
    /// One instance per distinct scenario settings; the first has none.
    pub instances: Vec<Instance>,
    /// Groups whose instance could not start: their scenarios report this error.
    pub failed: Vec<(Group, String)>,
    sniffer: tokio::task::JoinHandle<()>,
    pub startup: Duration,
    /// Scenario names carry this when the target runs in containers.
    pub nonce: Option<String>,
}

/// Address of the `n`-th target instance: the lab's target address, then
/// 127.0.2.1, 127.0.2.2, ... (clear of the DNS address and the fake hosts).
pub fn instance_addr(n: usize) -> Ipv4Addr {
    if n == 0 {
        lab::TARGET_ADDR
    } else {
        Ipv4Addr::new(127, 0, 2, n.min(254) as u8)
    }
}

/// The distinct groups of the scenarios `mta` can run, the default first.
pub fn setting_groups(scenarios: &[Scenario], mta: &dyn Mta) -> Vec<Group> {
    let mut groups = vec![Group::default()];
    for sc in scenarios.iter().filter(|sc| unsupported(sc, mta).is_none()) {
        let g = Group::of(sc, mta);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

impl Services {
    /// Start the fake DNS, the connection watcher and one target instance per
    /// distinct scenario settings (all at once). The default instance must
    /// start; an instance with scenario settings that fails only fails its scenarios.
    pub async fn start(
        lab: &Lab,
        mta: &'static dyn Mta,
        opts: &TargetOptions,
        scenarios: &[Scenario],
    ) -> Result<Services, RunError> {
        let begin = Instant::now();
        let addr = SocketAddr::from((lab::DNS_ADDR, 53));
        let dns = fake_dns::FakeDns::start(addr)
            .await
            .map_err(|source| RunError::Dns { addr, source })?;
        let (syns, _) = broadcast::channel(4096);
        let sniffer = sniff::start(syns.clone()).map_err(RunError::Sniff)?;
        let groups = setting_groups(scenarios, mta);
        if groups.len() > 200 {
            return Err(RunError::TooManyInstances(groups.len()));
        }
        let starts = groups.iter().enumerate().map(|(n, g)| {
            let spec = Spec {
                lab_dir: lab.dir().to_path_buf(),
                instance: if n == 0 {
                    mta.name().to_string()
                } else {
                    format!("{}-{n}", mta.name())
                },
                listen: instance_addr(n),
                defaults: knobs::lab_defaults(),
                knobs: g.knobs.clone(),
                sets: opts.sets.clone(),
                set: g.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                config_dir: opts.config_dir.clone(),
                container: opts.image.as_ref().map(|i| crate::target::ContainerSpec {
                    engine: i.engine.clone(),
                    image: i.image.clone(),
                    network: lab.container_network(),
                    resolv_conf: lab.resolv_conf(),
                    name_prefix: format!("mtaspec-{}", lab.nonce()),
                    image_command: i.command.clone(),
                }),
            };
            // Each start runs blocking commands and waits for the greeting:
            // its own thread lets instances start side by side.
            tokio::task::spawn_blocking(move || mta.start(&spec))
        });
        let started: Vec<Result<Box<dyn crate::target::Instance>, TargetError>> =
            futures::future::join_all(starts)
                .await
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|e| {
                        Err(TargetError::io(
                            "start the target",
                            std::io::Error::other(e.to_string()),
                        ))
                    })
                })
                .collect();
        let mut instances = Vec::new();
        let mut failed = Vec::new();
        for (n, (group, r)) in groups.into_iter().zip(started).enumerate() {
            match r {
                Ok(target) => instances.push(Instance { group, target }),
                Err(e) if n == 0 => {
                    sniffer.abort();
                    dns.shutdown().await;
                    for mut i in instances {
                        i.target.stop();
                    }
                    return Err(RunError::Target(e));
                }
                Err(e) => failed.push((group, e.to_string())),
            }
        }
        Ok(Services {
            mta,
            dns,
            syns,
            instances,
            failed,
            sniffer,
            startup: begin.elapsed(),
            nonce: lab.scope_nonce().map(str::to_string),
        })
    }

    /// The names and addresses of the `index`-th scenario.
    pub fn scope(&self, index: usize) -> Scope {
        Scope::with_nonce(index, self.nonce.as_deref())
    }

    /// The default instance (no scenario settings).
    pub fn target(&self) -> &dyn crate::target::Instance {
        self.instances[0].target.as_ref()
    }

    pub async fn stop(self) {
        self.sniffer.abort();
        // Stopping waits for processes to exit: keep it off the async workers.
        let stops = self
            .instances
            .into_iter()
            .map(|mut i| tokio::task::spawn_blocking(move || i.target.stop()));
        futures::future::join_all(stops).await;
        self.dns.shutdown().await;
    }
}

/// Run all scenarios concurrently, each against the instance with its settings;
/// `events` receives progress as it happens.
pub async fn run_all(
    services: &Services,
    scenarios: Vec<Scenario>,
    known: &crate::suite::known::Known,
    events: &(dyn Fn(Event) + Sync),
) -> Vec<ScenarioResult> {
    let services_ref = services;
    let futures = scenarios.into_iter().enumerate().map(|(i, sc)| async move {
        events(Event::Started { id: sc.id.clone() });
        let group = Group::of(&sc, services_ref.mta);
        let mut r = match services_ref.instances.iter().find(|x| x.group == group) {
            _ if unsupported(&sc, services_ref.mta).is_some() => {
                let mut r = ScenarioResult::new(&sc, &services_ref.scope(i));
                r.unsupported = unsupported(&sc, services_ref.mta);
                r
            }
            Some(inst) => run_one(services_ref, inst.target.as_ref(), i, sc).await,
            None => {
                let why = services_ref
                    .failed
                    .iter()
                    .find(|(g, _)| *g == group)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_else(|| "no instance was started for these settings".into());
                let mut r = ScenarioResult::new(&sc, &services_ref.scope(i));
                r.error = Some(format!(
                    "the target instance with this scenario's [target] settings could not start: {why}"
                ));
                r
            }
        };
        r.known = known.reason(&r.id).map(str::to_string);
        events(Event::Finished(&r));
        r
    });
    // Scenarios borrow the shared services, so they run as futures on this task.
    futures::future::join_all(futures).await
}

/// One scenario: world up, inject, judge on every event, world down.
pub async fn run_one(
    services: &Services,
    target: &dyn crate::target::Instance,
    index: usize,
    sc: Scenario,
) -> ScenarioResult {
    let scope = services.scope(index);
    let rec = Recorder::default();
    let mut result = ScenarioResult::new(&sc, &scope);
    result.instance = target.smtp_addr().ip().to_string();

    let origin = scope.origin();
    let target_ip = match target.smtp_addr().ip() {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => lab::TARGET_ADDR,
    };
    if let Err(e) = services.dns.add_zone(world::zone(&sc, &scope, target_ip)) {
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
        watchers.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(q) => {
                        if q.name == origin || q.name.ends_with(&format!(".{origin}")) {
                            let at = rec.since_wall(q.at);
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
        let smtp = target.smtp_addr();
        for (n, m) in sc.messages.iter().enumerate() {
            let from = if m.from.is_empty() {
                String::new()
            } else {
                scope.address(&m.from)
            };
            let to: Vec<String> = m.to.iter().map(|t| scope.address(t)).collect();
            match client::compose(m, &from, &to) {
                Ok(out) => {
                    let inj = client::inject(smtp, &out, n, &rec).await;
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
        result.verdicts = judge_loop(&sc, &scope, &rec, target).await;
    }
    result.duration = rec.now();
    finish_sessions(&rec).await;

    for h in hosts {
        h.stop();
    }
    watchers.abort_all();
    services.dns.remove_zone(&origin);
    result.observations = std::mem::take(&mut *rec.lock());
    result
}

/// Decide expectations on every observation until all are decided or the deadline passes.
/// How long open sessions may take to finish once the verdicts are in.
const SESSION_GRACE: Duration = Duration::from_secs(1);

/// Let sessions still open finish (the target's QUIT after a delivery), so
/// transcripts are whole; a stalled session is cut after [`SESSION_GRACE`].
async fn finish_sessions(rec: &Recorder) {
    let until = tokio::time::Instant::now() + SESSION_GRACE;
    loop {
        let changed = rec.changed();
        if rec.lock().sessions.iter().all(|s| s.closed) {
            return;
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(until) => return,
        }
    }
}

async fn judge_loop(
    sc: &Scenario,
    scope: &Scope,
    rec: &Recorder,
    target: &dyn crate::target::Instance,
) -> Vec<Verdict> {
    let deadline = tokio::time::Instant::from_std(rec.start + sc.deadline);
    let hostname = target.hostname();
    let decide_all = |last: bool| -> Vec<Decision> {
        let o = rec.lock();
        let cx = Ctx {
            sc,
            scope,
            o: &o,
            now: rec.now(),
            last,
            knobs: target.knobs(),
            hostname: &hostname,
        };
        sc.expects.iter().map(|e| decide(e, &cx)).collect()
    };
    let mut decisions;
    loop {
        let changed = rec.changed();
        decisions = decide_all(false);
        if decisions.iter().all(Decision::decided) {
            break;
        }
        // A time window still open decides by itself when it closes.
        let now = rec.now();
        let window = sc
            .expects
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| !d.decided())
            .filter_map(|(e, _)| window_end(e))
            .filter(|w| *w > now)
            .min()
            .map(|w| tokio::time::Instant::from_std(rec.start + w + Duration::from_millis(5)));
        if let Some(w) = window.filter(|w| *w < deadline) {
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(w) => {}
            }
            continue;
        }
        let only_negatives = {
            let o = rec.lock();
            sc.expects
                .iter()
                .zip(&decisions)
                .all(|(e, d)| d.decided() || waits_for_quiet(e, sc, scope, &o))
        };
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

#[cfg(test)]
mod tests;
