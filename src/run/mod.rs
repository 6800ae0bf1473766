//! Run stage: start the lab's services, run every scenario concurrently against one target, collect results.

pub mod controls;
pub mod judge;
pub mod observe;

use crate::client;
use crate::lab::{self, sniff, Lab};
use crate::suite::Scenario;
use crate::target::knobs::{self, Knobs};
use crate::target::{Mta, Spec, Support, TargetError, TargetOptions};
use crate::world::{self, host::Host, Scope};
use futures::FutureExt;
use judge::{decide, waits_for_quiet, window_end, Ctx, Decision};
use observe::{ConnectSeen, DnsQuery, Observations, Recorder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
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
    #[error("{0}")]
    Tls(#[from] crate::session::tls::TlsError),
}

/// What a run tells its reporters as it goes (the report stage consumes these;
/// the run stage does not know its reporters).
#[derive(Debug)]
pub enum Event<'a> {
    Started { id: String },
    Finished(&'a ScenarioResult),
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
    /// The MTA it ran against (`postfix`, `exim`, ...).
    pub target: String,
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
            target: String::new(),
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
    /// The group of `sc` on `mta`. Names under `.test` in raw settings
    /// (`2bounce_notice_recipient = "postmaster@src.test"`) are moved into the
    /// scenario's scope like every other name it writes.
    pub fn of(sc: &Scenario, mta: &dyn Mta, scope: &Scope) -> Group {
        Group {
            knobs: sc.knobs.clone(),
            set: sc
                .target_sets
                .get(mta.name())
                .map(|set| {
                    set.iter()
                        .map(|(k, v)| (k.clone(), scope_names(v, scope)))
                        .collect()
                })
                .unwrap_or_default(),
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

/// `v` with every name under `.test` (bare or in an address) scoped.
pub fn scope_names(v: &str, scope: &Scope) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find(|c: char| is_name(c)) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        if word.to_ascii_lowercase().ends_with(".test") {
            out.push_str(&scope.name(word));
        } else {
            out.push_str(word);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether the scenario's client sessions need the target to take mail
/// from an unauthenticated client: a session names a recipient (`RCPT TO`)
/// or starts TLS, or the scenario expects what the sessions relayed.
/// Sessions that only probe replies to other commands do not.
pub fn sessions_need_relay(sc: &Scenario) -> bool {
    use crate::suite::session::{SessionExpect, StepKind};
    let names_recipient = |b: &[u8]| b.windows(7).any(|w| w.eq_ignore_ascii_case(b"RCPT TO"));
    sc.sessions.iter().any(|s| {
        s.steps.iter().any(|st| match &st.kind {
            StepKind::StartTls => true,
            StepKind::Send { bytes, .. } => names_recipient(bytes),
            _ => false,
        })
    }) || sc
        .expects
        .iter()
        .any(|e| matches!(e, crate::suite::Expect::Session(SessionExpect::Relayed(_))))
}

/// Why `mta` cannot run `sc`: a knob the scenario needs that it cannot set,
/// or raw settings the scenario needs that it gives only for other targets.
pub fn unsupported(sc: &Scenario, mta: &dyn Mta) -> Option<String> {
    let knob = sc.knobs.keys().find_map(|k| match mta.support(*k) {
        Support::Yes => None,
        Support::No(why) => Some(format!("{} cannot set `{k}`: {why}", mta.name())),
    });
    let sessions = || match mta.relays_unauthenticated() {
        Support::No(why) if sessions_need_relay(sc) => Some(format!(
            "{} cannot run the scenario's client sessions: {why}",
            mta.name()
        )),
        _ => None,
    };
    knob.or_else(sessions).or_else(|| {
        (!sc.target_sets.is_empty() && !sc.target_sets.contains_key(mta.name())).then(|| {
            let given: Vec<String> = sc
                .target_sets
                .iter()
                .map(|(t, set)| {
                    let keys: Vec<&str> = set.keys().map(String::as_str).collect();
                    format!("{t} ({})", keys.join(", "))
                })
                .collect();
            format!(
                "the scenario needs raw settings it gives only for {}; none for {}",
                given.join(", "),
                mta.name()
            )
        })
    })
}

/// One running target instance and the scenario settings it was started with.
pub struct Instance {
    pub group: Group,
    pub target: Box<dyn crate::target::Instance>,
}

/// The running instances of one MTA.
pub struct Fleet {
    pub mta: &'static dyn Mta,
    /// One instance per distinct scenario settings; the first has none.
    pub instances: Vec<Instance>,
    /// Groups whose instance could not start: their scenarios report this error.
    pub failed: Vec<(Group, String)>,
    /// Added to scenario indexes, so each fleet's scenarios get names and
    /// addresses of their own when several MTAs run at once.
    pub scope_offset: usize,
    pub startup: Duration,
}

impl Fleet {
    /// The default instance (no scenario settings).
    pub fn target(&self) -> &dyn crate::target::Instance {
        self.instances[0].target.as_ref()
    }
}

/// The lab's shared services while a run lasts.
pub struct Services {
    pub dns: fake_dns::DnsHandle,
    pub syns: broadcast::Sender<sniff::Seen>,
    /// One fleet per MTA under test (one for `run`, several for `matrix`).
    pub fleets: Vec<Fleet>,
    sniffer: tokio::task::JoinHandle<()>,
    pub startup: Duration,
    /// The targets' per-run certificate and the raw client's TLS config.
    pub tls: crate::session::tls::TlsMaterial,
    /// Scenario names carry this when the target runs in containers.
    pub nonce: Option<String>,
}

/// Address of the `n`-th instance of the `fleet`-th MTA: the lab's target
/// address, then 127.0.2.1, 127.0.2.2, ... for the first MTA; 127.0.3.1, ...
/// for the second, and so on (clear of the DNS address and the fake hosts).
pub fn instance_addr(fleet: usize, n: usize) -> Ipv4Addr {
    match (fleet, n) {
        (0, 0) => lab::TARGET_ADDR,
        (0, n) => Ipv4Addr::new(127, 0, 2, n.min(254) as u8),
        (f, n) => Ipv4Addr::new(127, 0, (2 + f).min(9) as u8, (n + 1).min(254) as u8),
    }
}

/// The first scope index of the `fleet`-th MTA's scenarios: fleets follow
/// each other without gaps, so labels stay short (`s549` for the fifth MTA
/// of a 110-scenario run) and length-limit scenarios keep their margin.
fn scope_offset(fleet: usize, scenarios: usize) -> usize {
    fleet * scenarios.max(1)
}

/// The distinct groups of the scenarios `mta` can run, the default first;
/// scenario `i` has the scope index `scope_offset + i`.
pub fn setting_groups(
    scenarios: &[Scenario],
    mta: &dyn Mta,
    scope_offset: usize,
    nonce: Option<&str>,
) -> Vec<Group> {
    let mut groups = vec![Group::default()];
    for (i, sc) in scenarios.iter().enumerate() {
        if unsupported(sc, mta).is_some() {
            continue;
        }
        let g = Group::of(sc, mta, &Scope::with_nonce(scope_offset + i, nonce));
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// Start one target instance per distinct scenario settings of `mta` (all at
/// once). The default instance must start; an instance with scenario
/// settings that fails only fails its scenarios.
async fn start_fleet(
    lab: &Lab,
    mta: &'static dyn Mta,
    fleet: usize,
    opts: &TargetOptions,
    scenarios: &[Scenario],
) -> Result<Fleet, RunError> {
    let begin = Instant::now();
    let groups = setting_groups(
        scenarios,
        mta,
        scope_offset(fleet, scenarios.len()),
        lab.scope_nonce(),
    );
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
            listen: instance_addr(fleet, n),
            defaults: knobs::lab_defaults(),
            knobs: g.knobs.clone(),
            sets: opts.sets.clone(),
            set: g.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            config_dir: opts.config_dir.clone(),
            tls: opts.tls.clone(),
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
    let mut first_error = None;
    for (n, (group, r)) in groups.into_iter().zip(started).enumerate() {
        match r {
            Ok(target) => instances.push(Instance { group, target }),
            Err(e) if n == 0 => first_error = Some(e),
            Err(e) => failed.push((group, e.to_string())),
        }
    }
    if let Some(e) = first_error {
        stop_instances(instances).await;
        return Err(RunError::Target(e));
    }
    Ok(Fleet {
        mta,
        instances,
        failed,
        scope_offset: scope_offset(fleet, scenarios.len()),
        startup: begin.elapsed(),
    })
}

async fn stop_instances(instances: Vec<Instance>) {
    // Stopping waits for processes to exit: keep it off the async workers.
    let stops = instances
        .into_iter()
        .map(|mut i| tokio::task::spawn_blocking(move || i.target.stop()));
    futures::future::join_all(stops).await;
}

impl Services {
    /// Start the fake DNS, the connection watcher and, for every MTA in
    /// `mtas`, one instance per distinct scenario settings (all at once).
    pub async fn start(
        lab: &Lab,
        mtas: &[&'static dyn Mta],
        opts: &TargetOptions,
        scenarios: &[Scenario],
    ) -> Result<Services, RunError> {
        let begin = Instant::now();
        // Every instance offers STARTTLS with a certificate made for this run.
        let tls = crate::session::tls::generate(lab.dir(), lab::TARGET_HOSTNAME)?;
        let opts = &TargetOptions {
            tls: Some(crate::target::TlsFiles {
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
            }),
            ..opts.clone()
        };
        let addr = SocketAddr::from((lab::DNS_ADDR, 53));
        let dns = fake_dns::FakeDns::start(addr)
            .await
            .map_err(|source| RunError::Dns { addr, source })?;
        // Resolvers that search the host's own domain (glibc's res_search,
        // Go) ask for `name.target.test` after an NXDOMAIN: answer NXDOMAIN
        // there too, as that domain's server would, not REFUSED (a temporary error).
        let own = lab::TARGET_HOSTNAME
            .split_once('.')
            .map_or("test", |(_, d)| d);
        dns.add_zone(fake_dns::Zone::new(own))
            .map_err(|source| RunError::Dns { addr, source })?;
        // Reverse look-ups of the lab's loopback clients (127.0.9.x) get
        // NXDOMAIN, as from a real reverse zone, not REFUSED: Sendmail turns
        // the temporary error into "450 4.4.0 Relaying temporarily denied.
        // Cannot resolve PTR record" instead of refusing the relay with 5xx.
        dns.add_zone(fake_dns::Zone::new("127.in-addr.arpa"))
            .map_err(|source| RunError::Dns { addr, source })?;
        let (syns, _) = broadcast::channel(4096);
        let sniffer = match sniff::start(syns.clone()) {
            Ok(s) => s,
            Err(e) => {
                dns.shutdown().await;
                return Err(RunError::Sniff(e));
            }
        };
        let starts = mtas
            .iter()
            .enumerate()
            .map(|(f, mta)| start_fleet(lab, *mta, f, opts, scenarios));
        let mut fleets = Vec::new();
        let mut error = None;
        for r in futures::future::join_all(starts).await {
            match r {
                Ok(f) => fleets.push(f),
                Err(e) => error = error.or(Some(e)),
            }
        }
        if let Some(e) = error {
            sniffer.abort();
            for f in fleets {
                stop_instances(f.instances).await;
            }
            dns.shutdown().await;
            return Err(e);
        }
        Ok(Services {
            dns,
            syns,
            fleets,
            sniffer,
            startup: begin.elapsed(),
            tls,
            nonce: lab.scope_nonce().map(str::to_string),
        })
    }

    /// The names and addresses of the `index`-th scenario.
    pub fn scope(&self, index: usize) -> Scope {
        Scope::with_nonce(index, self.nonce.as_deref())
    }

    pub async fn stop(self) {
        self.sniffer.abort();
        let stops = self.fleets.into_iter().map(|f| stop_instances(f.instances));
        futures::future::join_all(stops).await;
        self.dns.shutdown().await;
    }
}

/// Run all scenarios concurrently against the `fleet`-th MTA, each against
/// the instance with its settings; `events` receives progress as it happens.
pub async fn run_all(
    services: &Services,
    fleet: usize,
    scenarios: Vec<Scenario>,
    known: &crate::suite::known::Known,
    events: &(dyn Fn(Event) + Sync),
) -> Vec<ScenarioResult> {
    let services_ref = services;
    let fl = &services.fleets[fleet];
    let futures = scenarios.into_iter().enumerate().map(|(i, sc)| async move {
        let i = fl.scope_offset + i;
        events(Event::Started { id: sc.id.clone() });
        let group = Group::of(&sc, fl.mta, &services_ref.scope(i));
        let fallback = ScenarioResult::new(&sc, &services_ref.scope(i));
        let mut r = match fl.instances.iter().find(|x| x.group == group) {
            _ if unsupported(&sc, fl.mta).is_some() => {
                let mut r = ScenarioResult::new(&sc, &services_ref.scope(i));
                r.unsupported = unsupported(&sc, fl.mta);
                r
            }
            Some(inst) => {
                guarded(fallback, run_one(services_ref, inst.target.as_ref(), i, sc)).await
            }
            None => {
                let why = fl
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
        r.target = fl.mta.name().to_string();
        events(Event::Finished(&r));
        r
    });
    // Scenarios borrow the shared services, so they run as futures on this task.
    futures::future::join_all(futures).await
}

/// Run one scenario's future; a panic in it becomes that scenario's harness
/// error (on `fallback`), so one bad scenario never takes the others down.
pub async fn guarded(
    mut fallback: ScenarioResult,
    scenario: impl Future<Output = ScenarioResult>,
) -> ScenarioResult {
    match AssertUnwindSafe(scenario).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            fallback.error = Some(format!(
                "the harness failed on this scenario (a bug in mtaspec; the other scenarios ran on): {why}"
            ));
            fallback
        }
    }
}

/// Removes a scenario's DNS zone when dropped, also if the scenario panicked.
struct ZoneGuard<'a> {
    dns: &'a fake_dns::DnsHandle,
    origin: String,
}

impl Drop for ZoneGuard<'_> {
    fn drop(&mut self) {
        self.dns.remove_zone(&self.origin);
    }
}

/// Record the connection attempts to `addrs` (a scenario's hosts) from the
/// lab's SYN watcher. Attempts lost because this receiver fell behind are
/// recorded as lost: any of them may have been this scenario's.
pub async fn watch_syns(
    mut rx: broadcast::Receiver<sniff::Seen>,
    rec: Recorder,
    addrs: Arc<Vec<(Ipv4Addr, String)>>,
) {
    loop {
        match rx.recv().await {
            Ok(sniff::Seen::Dropped(n)) => rec.update(|o| {
                o.lose(format!(
                    "the kernel dropped {n} packet(s) of the connection watcher: connection attempts of the lab may be missing"
                ))
            }),
            Ok(sniff::Seen::Attempt(a)) => {
                if let Some((_, key)) = addrs.iter().find(|(ip, _)| *ip == *a.to.ip()) {
                    let at = rec.since(a.at);
                    rec.update(|o| {
                        o.connect(ConnectSeen {
                            host: key.clone(),
                            at,
                        })
                    });
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => rec.update(|o| {
                o.lose(format!(
                    "the connection watcher fell behind and lost {n} connection attempt(s) of the lab"
                ))
            }),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Record the fake DNS's queries for names at or below `origin` (a
/// scenario's); queries lost because this receiver fell behind are recorded
/// as lost.
pub async fn watch_dns(
    mut rx: broadcast::Receiver<fake_dns::QueryLogEntry>,
    rec: Recorder,
    origin: String,
) {
    loop {
        match rx.recv().await {
            Ok(q) => {
                if q.name == origin || q.name.ends_with(&format!(".{origin}")) {
                    let at = rec.since_wall(q.at);
                    rec.update(|o| {
                        o.query(DnsQuery {
                            at,
                            name: q.name.clone(),
                            qtype: q.qtype.clone(),
                            outcome: format!("{:?}", q.outcome),
                        })
                    });
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => rec.update(|o| {
                o.lose(format!(
                    "the DNS query log fell behind and lost {n} query(ies) of the lab"
                ))
            }),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Say what the harness noted with every verdict, and make lost observations
/// the scenario's harness error: a negative expectation must never pass on
/// observations that were not all seen.
pub fn conclude(result: &mut ScenarioResult, o: &Observations) {
    if !o.harness.is_empty() {
        let notes = o.harness.join("; ");
        for v in &mut result.verdicts {
            v.decision = match std::mem::replace(&mut v.decision, Decision::Pending) {
                Decision::Pass(t) => Decision::Pass(format!("{t} [harness: {notes}]")),
                Decision::Fail(t) => Decision::Fail(format!("{t} [harness: {notes}]")),
                Decision::Pending => Decision::Pending,
            };
        }
    }
    if !o.lost.is_empty() && result.error.is_none() {
        result.error = Some(format!(
            "observations were lost, so the verdicts cannot be trusted: {}",
            o.lost.join("; ")
        ));
    }
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
    let zone = ZoneGuard {
        dns: &services.dns,
        origin: origin.clone(),
    };
    let mut hosts = Vec::new();
    let mut watchers = tokio::task::JoinSet::new();
    let addrs: Arc<Vec<(std::net::Ipv4Addr, String)>> = Arc::new(
        sc.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (scope.host_addr(i), h.key.clone()))
            .collect(),
    );
    // Connection attempts to this scenario's addresses, and DNS queries for its names.
    watchers.spawn(watch_syns(services.syns.subscribe(), rec.clone(), addrs));
    watchers.spawn(watch_dns(
        services.dns.subscribe(),
        rec.clone(),
        origin.clone(),
    ));
    for (i, h) in sc.hosts.iter().enumerate() {
        let addr = SocketAddr::from((scope.host_addr(i), 25));
        // Addresses in the script are the scenario's: scope them like its names.
        let mut spec = h.clone();
        for a in &mut spec.attempts {
            a.rcpt_by = std::mem::take(&mut a.rcpt_by)
                .into_iter()
                .map(|(k, v)| (scope.address(&k).to_ascii_lowercase(), v))
                .collect();
        }
        match Host::start(spec, addr, rec.clone()).await {
            Ok(host) => hosts.push(host),
            Err(e) => {
                result.error = Some(format!("cannot start fake host `{}` on {addr}: {e}", h.key));
            }
        }
    }

    if result.error.is_none() {
        let smtp = target.smtp_addr();
        let deadline = tokio::time::Instant::from_std(rec.start + sc.deadline);
        let submission = target.submission();
        let gate = target.client_gate();
        for (n, m) in sc.messages.iter().enumerate() {
            let from = if m.from.is_empty() {
                String::new()
            } else {
                scope.address(&m.from)
            };
            let to: Vec<String> = m.to.iter().map(|t| scope.address(t)).collect();
            let header_from = m.header_from.as_ref().map(|h| scope.address(h));
            match client::compose(m, &from, header_from.as_deref(), &to) {
                Ok(out) => {
                    let inj =
                        client::inject(smtp, &out, n, &rec, deadline, submission.as_ref(), &gate)
                            .await;
                    rec.update(|o| o.injections.push(inj));
                }
                Err(e) => {
                    result.error = Some(format!("cannot compose message {}: {e}", n + 1));
                    break;
                }
            }
        }
    }
    // Inbound: the scenario's raw client sessions (src/session/).
    if result.error.is_none() && !sc.sessions.is_empty() {
        crate::session::run_all(
            &sc,
            &scope,
            target.smtp_addr(),
            Some(services.tls.client.clone()),
            &target.hostname(),
            &rec,
            &target.client_gate(),
        )
        .await;
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
    drop(zone);
    let observed = std::mem::take(&mut *rec.lock());
    conclude(&mut result, &observed);
    result.observations = observed;
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

/// Read the target's queue into the observations, for scenarios that expect
/// the message still queued (the read runs the target's own tool: blocking).
fn read_queue(sc: &Scenario, rec: &Recorder, target: &dyn crate::target::Instance) {
    if sc
        .expects
        .iter()
        .any(|e| matches!(e, crate::suite::Expect::Queued))
    {
        let q = tokio::task::block_in_place(|| target.queue()).map_err(|e| e.to_string());
        rec.update(|o| o.queue = Some(q));
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
            sc.expects.iter().zip(&decisions).all(|(e, d)| {
                d.decided()
                    || waits_for_quiet(
                        e,
                        &Ctx {
                            sc,
                            scope,
                            o: &o,
                            now: rec.now(),
                            last: false,
                            knobs: target.knobs(),
                            hostname: &hostname,
                        },
                    )
            })
        };
        let wake = if only_negatives {
            (tokio::time::Instant::now() + sc.settle).min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            _ = changed => continue,
            _ = tokio::time::sleep_until(wake) => {
                read_queue(sc, rec, target);
                decisions = decide_all(true);
                break;
            }
        }
    }
    sc.expects
        .iter()
        .zip(decisions)
        .map(|(e, decision)| Verdict {
            expect: judge::describe(e),
            decision,
        })
        .collect()
}

#[cfg(test)]
mod robust_tests;
#[cfg(test)]
mod tests;
