//! Fuzz stage: the driver — workers run mutated sessions, reply-code sequences steer the corpus, findings are deduplicated, shrunk and written.
//!
//! A session whose reply-code sequence (its state signature, AFLNet's idea
//! without instrumentation) was never seen joins the corpus; new sessions
//! are mutations of corpus entries, rarely picked ones first. Everything
//! random comes from `--seed`: session N draws from its own stream
//! `seed + N`, so a session's case depends only on the seed and on the
//! corpus at that time (with `--jobs 1`, on the seed and the target's answers).

use super::client::{self, Msg, Trace, Waits};
use super::deliver::{self, Arrived};
use super::finding::{self, Finding};
use super::gen::{self, Case, Names};
use super::oracle::{Invariant, Violation};
use super::outbound;
use super::shrink::ddmin;
use super::World;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which side of the target is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Side {
    /// The target as SMTP server: mutated client sessions.
    Inbound,
    /// The target as SMTP client: mutated fake-host replies to its deliveries.
    Outbound,
    Both,
}

/// How a fuzz run goes.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub time: Duration,
    /// Concurrent inbound sessions.
    pub jobs: usize,
    pub side: Side,
    /// Where findings are written.
    pub out: PathBuf,
    pub waits: Waits,
    /// How long an accepted message may take to reach the fake hosts.
    pub delivery_wait: Duration,
    /// Session tests one shrink may spend.
    pub shrink_budget: usize,
    /// Stop after this many sessions (tests, benches).
    pub max_sessions: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            time: Duration::from_secs(60),
            jobs: 8,
            side: Side::Inbound,
            out: PathBuf::from("fuzz-findings"),
            waits: Waits::default(),
            delivery_wait: Duration::from_secs(20),
            shrink_budget: 80,
            max_sessions: None,
        }
    }
}

/// A progress snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub elapsed: Duration,
    /// Time the workers ran (the rest of `elapsed` settled deliveries and shrank findings).
    pub fuzzing: Duration,
    pub sessions: u64,
    pub per_sec: f64,
    /// Distinct reply-code sequences seen.
    pub signatures: usize,
    pub findings: usize,
    /// Accepted or refused messages still watched at the fake hosts.
    pub pending: usize,
    pub outbound_cases: u64,
}

/// What a run came to.
#[derive(Debug)]
pub struct Report {
    pub progress: Progress,
    pub findings: Vec<(Finding, Option<PathBuf>)>,
    /// Sessions that could not reach the target.
    pub unreachable: u64,
    /// Sessions the runner lost track of (a bare-LF line a server may merge).
    pub desync: u64,
    /// Accepted messages still queued by the target when the run ended (not judged).
    pub undecided: u64,
}

struct Pending {
    msg: Msg,
    dest: String,
    deadline: Instant,
    case: Case,
    trace: Trace,
    session: u64,
}

#[derive(Default)]
struct State {
    sessions: u64,
    next: u64,
    corpus: Vec<(Case, u32)>,
    signatures: HashSet<String>,
    seen_keys: HashSet<(Invariant, String)>,
    findings: Vec<(Finding, Option<PathBuf>)>,
    pending: Vec<Pending>,
    arrived: HashMap<String, (Instant, Vec<Arrived>)>,
    recent: VecDeque<Case>,
    unreachable: u64,
    desync: u64,
    ids: u64,
    outbound_cases: u64,
    shrinking: usize,
    todo: VecDeque<Todo>,
    /// Recipients of the messages in the target's queue at the last look
    /// (lower case; `None`: cannot tell, so a late message may still come).
    backlog: Option<HashSet<String>>,
    /// Messages still neither delivered nor given up when the run had to end.
    undecided: u64,
    workers_done: Option<Instant>,
    all_done: bool,
}

struct Todo {
    v: Violation,
    sig: String,
    case: Case,
    trace: Trace,
    session: u64,
}

/// A fuzz run over `world`.
pub struct Fuzzer<'a> {
    world: &'a dyn World,
    opts: Options,
    state: Mutex<State>,
    started: Instant,
    stop_at: Instant,
    run_tag: String,
}

const CORPUS_MAX: usize = 4000;

impl<'a> Fuzzer<'a> {
    pub fn new(world: &'a dyn World, opts: Options) -> Fuzzer<'a> {
        let started = Instant::now();
        Fuzzer {
            world,
            stop_at: started + opts.time,
            run_tag: format!("{:x}", opts.seed),
            opts,
            state: Mutex::new(State::default()),
            started,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done(&self) -> bool {
        if Instant::now() >= self.stop_at {
            return true;
        }
        let st = self.lock();
        self.opts.max_sessions.is_some_and(|m| st.next >= m)
    }

    pub fn progress(&self) -> Progress {
        let st = self.lock();
        let elapsed = self.started.elapsed();
        // Sessions per second while the workers ran (not while settling).
        let fuzzing = st
            .workers_done
            .map(|t| t.duration_since(self.started))
            .unwrap_or(elapsed);
        Progress {
            elapsed,
            fuzzing,
            sessions: st.sessions,
            per_sec: st.sessions as f64 / fuzzing.as_secs_f64().max(0.001),
            signatures: st.signatures.len(),
            findings: st.findings.len(),
            pending: st.pending.len(),
            outbound_cases: st.outbound_cases,
        }
    }

    /// A fresh message id (unique in the run).
    fn id(&self) -> String {
        let mut st = self.lock();
        st.ids += 1;
        format!("{}-{}", self.run_tag, st.ids)
    }

    /// The next case's number and its random generator (from the seed).
    fn next_rng(&self) -> (u64, gen::Rng) {
        let n = {
            let mut st = self.lock();
            st.next += 1;
            st.next - 1
        };
        let r = gen::rng(
            self.opts
                .seed
                .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        (n, r)
    }

    /// The next case: a mutation of a corpus entry (rarely picked first), or a fresh one.
    fn next_case(&self, names: &Names) -> (u64, Case) {
        let (n, mut r) = self.next_rng();
        let parent = {
            let mut st = self.lock();
            let len = st.corpus.len();
            if len == 0 || gen::pick_fresh(&mut r) {
                None
            } else {
                // Two random entries; the less picked one wins, then the shorter.
                let a = gen::index(&mut r, len);
                let b = gen::index(&mut r, len);
                let key = |i: usize| (st.corpus[i].1, st.corpus[i].0.steps.len());
                let k = if key(a) <= key(b) { a } else { b };
                st.corpus[k].1 += 1;
                Some(st.corpus[k].0.clone())
            }
        };
        let mut idf = || self.id();
        let case = match parent {
            None => gen::generate(&mut r, names, &mut idf),
            Some(mut c) => {
                // Names may have moved to a new fake host since.
                retarget(&mut c, names);
                for _ in 0..1 + gen::index(&mut r, 3) {
                    gen::mutate(&mut c, &mut r, names, &mut idf);
                }
                gen::renumber(&mut c, &mut idf);
                c
            }
        };
        (n, case)
    }

    /// Run until the time is up, then settle the pending messages and the
    /// findings still to shrink; returns the report.
    pub async fn run(&self, progress: &(dyn Fn(&Progress) + Sync)) -> Report {
        type Job<'f> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'f>>;
        let inbound = matches!(self.opts.side, Side::Inbound | Side::Both);
        let outbound = matches!(self.opts.side, Side::Outbound | Side::Both);
        let jobs = self.opts.jobs.max(1);
        let mut fuzzing: Vec<Job<'_>> = Vec::new();
        for _ in 0..if inbound { jobs } else { 0 } {
            fuzzing.push(Box::pin(self.worker()));
        }
        for _ in 0..if outbound { (jobs / 2).clamp(2, 8) } else { 0 } {
            fuzzing.push(Box::pin(self.outbound_worker()));
        }
        let fuzz_phase = async {
            futures::future::join_all(fuzzing).await;
            self.lock().workers_done = Some(Instant::now());
        };
        let shrinkers = futures::future::join_all((0..2).map(|_| self.shrinker()));
        futures::future::join3(fuzz_phase, self.watcher(progress), shrinkers).await;
        let last = self.progress();
        progress(&last);
        let mut st = std::mem::take(&mut *self.lock());
        st.findings.sort_by_key(|(f, _)| f.violation.invariant);
        Report {
            progress: last,
            findings: st.findings,
            unreachable: st.unreachable,
            desync: st.desync,
            undecided: st.undecided,
        }
    }

    /// How long after the workers stop the run may settle (deliveries, shrinking).
    fn settle_limit(&self) -> Duration {
        self.opts.delivery_wait * 3 + Duration::from_secs(30)
    }

    /// Past the settle time: shrink no more, give up on queued messages.
    fn hurry(&self) -> bool {
        self.lock()
            .workers_done
            .is_some_and(|t| t.elapsed() > self.settle_limit())
    }

    async fn shrinker(&self) {
        loop {
            let next = {
                let mut st = self.lock();
                let t = st.todo.pop_front();
                if t.is_some() {
                    st.shrinking += 1;
                }
                (t, st.all_done)
            };
            match next {
                (Some(t), _) => {
                    self.process(t).await;
                    self.lock().shrinking -= 1;
                }
                (None, true) => return,
                (None, false) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn worker(&self) {
        while !self.done() {
            let names = self.world.names();
            let (n, case) = self.next_case(&names);
            let trace = client::run(
                &case,
                self.world.target(),
                self.world.from(),
                self.opts.waits,
            )
            .await;
            self.record(n, case, trace, &names).await;
        }
    }

    async fn record(&self, n: u64, case: Case, trace: Trace, names: &Names) {
        let sig = trace.signature();
        {
            let mut st = self.lock();
            st.sessions += 1;
            if trace.unreachable.is_some() {
                st.unreachable += 1;
            }
            if trace.desync {
                st.desync += 1;
            }
            if st.signatures.insert(sig.clone())
                && st.corpus.len() < CORPUS_MAX
                && trace.violations.is_empty()
            {
                st.corpus.push((case.clone(), 0));
            }
            st.recent.push_back(case.clone());
            if st.recent.len() > 32 {
                st.recent.pop_front();
            }
            let deadline = Instant::now() + self.opts.delivery_wait;
            // After a desync, or once the replies broke the protocol, the
            // runner cannot say which message the target took.
            let judged = !trace.desync && trace.violations.is_empty();
            for m in trace.messages.iter().filter(|_| judged) {
                if m.id.is_some() {
                    st.pending.push(Pending {
                        msg: m.clone(),
                        dest: names.dest.clone(),
                        deadline,
                        case: case.clone(),
                        trace: trace.clone(),
                        session: n,
                    });
                }
            }
        }
        if let Some(e) = &trace.unreachable {
            let v = Violation {
                invariant: Invariant::TargetAlive,
                step: None,
                before: true,
                reply: None,
                detail: format!("the target did not take a connection: {e}"),
            };
            self.finding(v, sig.clone(), case.clone(), trace.clone(), n)
                .await;
        }
        for v in trace.violations.clone() {
            self.finding(v, sig.clone(), case.clone(), trace.clone(), n)
                .await;
        }
    }

    /// A new finding: deduplicated by invariant + signature, then queued for shrinking.
    async fn finding(&self, v: Violation, sig: String, case: Case, trace: Trace, session: u64) {
        let mut st = self.lock();
        if st.seen_keys.insert((v.invariant, sig.clone())) {
            st.todo.push_back(Todo {
                v,
                sig,
                case,
                trace,
                session,
            });
        }
    }

    /// Shrink a finding, deduplicate again by its shrunk signature, write it.
    async fn process(&self, t: Todo) {
        let Todo {
            v,
            sig,
            case,
            trace,
            session,
        } = t;
        let original_steps = case.steps.len();
        let inv = v.invariant;
        let (case, trace, v) = match inv {
            _ if self.hurry() => (case, trace, v),
            Invariant::AcceptedIsDelivered | Invariant::RejectedNotDelivered => {
                self.shrink_delivery(case, trace, v).await
            }
            Invariant::TargetAlive => (case, trace, v),
            _ => self.shrink_session(case, trace, v).await,
        };
        let shrunk_sig = trace.signature();
        let mut st = self.lock();
        let dup = shrunk_sig != sig && !st.seen_keys.insert((inv, shrunk_sig.clone()));
        let dup = dup
            || st
                .findings
                .iter()
                .any(|(f, _)| f.key() == (inv, shrunk_sig.clone()));
        if dup {
            return;
        }
        let f = Finding {
            violation: v,
            signature: shrunk_sig,
            case,
            trace,
            original_steps,
            seed: self.opts.seed,
            session,
            outbound: None,
        };
        let n = st.findings.len() + 1;
        let path = finding::write(&f, &self.opts.out, n).ok();
        st.findings.push((f, path));
    }

    /// ddmin over the steps, each test a live session that must break the same invariant.
    async fn shrink_session(
        &self,
        case: Case,
        trace: Trace,
        v: Violation,
    ) -> (Case, Trace, Violation) {
        let inv = v.invariant;
        let test = |steps: Vec<gen::Step>| async move {
            let c = Case { steps };
            let t = client::run(&c, self.world.target(), self.world.from(), self.opts.waits).await;
            t.violations.iter().any(|x| x.invariant == inv)
        };
        let (steps, _) = ddmin(case.steps.clone(), self.opts.shrink_budget, test).await;
        let small = Case { steps };
        // Run the result once more, so trace and case belong together.
        let t = client::run(
            &small,
            self.world.target(),
            self.world.from(),
            self.opts.waits,
        )
        .await;
        match t.violations.iter().find(|x| x.invariant == inv).cloned() {
            Some(x) => (small, t, x),
            None => (case, trace, v),
        }
    }

    /// ddmin for the delivery invariants: each test waits for what reaches the fake hosts.
    async fn shrink_delivery(
        &self,
        case: Case,
        trace: Trace,
        v: Violation,
    ) -> (Case, Trace, Violation) {
        let inv = v.invariant;
        let budget = (self.opts.shrink_budget / 10).max(4);
        let test = |steps: Vec<gen::Step>| async move {
            let names = self.world.names();
            let mut c = Case { steps };
            retarget(&mut c, &names);
            gen::renumber(&mut c, &mut || self.id());
            let t = client::run(&c, self.world.target(), self.world.from(), self.opts.waits).await;
            self.judge_now(&t, &names)
                .await
                .iter()
                .any(|x| x.invariant == inv)
        };
        let (steps, _) = ddmin(case.steps.clone(), budget, test).await;
        let names = self.world.names();
        let mut small = Case { steps };
        retarget(&mut small, &names);
        gen::renumber(&mut small, &mut || self.id());
        let t = client::run(
            &small,
            self.world.target(),
            self.world.from(),
            self.opts.waits,
        )
        .await;
        match self
            .judge_now(&t, &names)
            .await
            .into_iter()
            .find(|x| x.invariant == inv)
        {
            Some(x) => (small, t, x),
            None => (case, trace, v),
        }
    }

    /// Wait until every message of `t` is decided; return the violations.
    async fn judge_now(&self, t: &Trace, names: &Names) -> Vec<Violation> {
        let deadline = Instant::now() + self.opts.delivery_wait;
        let limit = deadline + self.opts.delivery_wait * 3;
        let mut open: Vec<&Msg> = t.messages.iter().filter(|m| m.id.is_some()).collect();
        let mut out = Vec::new();
        while !open.is_empty() {
            self.pull_arrivals();
            let now = Instant::now();
            let queued = open.iter().any(|m| self.still_queued(m));
            // Still in the target's queue: wait longer (up to `limit`).
            let fin = now >= limit || (now >= deadline && !queued);
            if now >= limit && queued {
                return out;
            }
            {
                let st = self.lock();
                open.retain(|m| {
                    let id = m.id.as_deref().unwrap_or_default();
                    let got = st.arrived.get(id).map(|x| x.1.as_slice()).unwrap_or(&[]);
                    match deliver::judge(m, got, &names.dest, fin) {
                        None => true,
                        Some(Ok(())) => false,
                        Some(Err(v)) => {
                            if !(never_reached(&v) && self.world.lost()) {
                                out.push(v);
                            }
                            false
                        }
                    }
                });
            }
            if !open.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        out
    }

    fn still_queued(&self, m: &Msg) -> bool {
        queued(&self.lock().backlog, m)
    }

    fn pull_arrivals(&self) {
        let got = self.world.arrivals();
        let now = Instant::now();
        let mut st = self.lock();
        for a in got {
            st.arrived
                .entry(a.id.clone())
                .or_insert_with(|| (now, Vec::new()))
                .1
                .push(a);
        }
    }

    /// Decide pending messages whose fate is known. A message the target
    /// still holds in its queue past its deadline is waited for longer; when
    /// `give_up`, such messages are counted as undecided instead.
    async fn check_deliveries(&self, give_up: bool) {
        self.pull_arrivals();
        let now = Instant::now();
        let mut decided = Vec::new();
        {
            let mut st = self.lock();
            let pending = std::mem::take(&mut st.pending);
            let mut keep = Vec::new();
            for p in pending {
                let id = p.msg.id.clone().unwrap_or_default();
                let got = st.arrived.get(&id).map(|x| x.1.clone()).unwrap_or_default();
                let fin = now >= p.deadline;
                let waiting = deliver::judge(&p.msg, &got, &p.dest, false).is_none();
                if fin && waiting && queued(&st.backlog, &p.msg) {
                    if give_up {
                        st.undecided += 1;
                    } else {
                        keep.push(p);
                    }
                    continue;
                }
                match deliver::judge(&p.msg, &got, &p.dest, fin) {
                    None => keep.push(p),
                    Some(Ok(())) if !p.msg.accepted() || fin => {
                        st.arrived.remove(&id);
                    }
                    // Accepted and arrived: still watch for duplicates or refused recipients until the deadline.
                    Some(Ok(())) => keep.push(p),
                    // Not seen, but a fake host dropped mail: no verdict.
                    Some(Err(v)) if never_reached(&v) && self.world.lost() => {
                        st.undecided += 1;
                    }
                    Some(Err(v)) => {
                        st.arrived.remove(&id);
                        decided.push((p, v));
                    }
                }
            }
            st.pending = keep;
            // Arrivals nobody waits for (mail of finished shrink tests, bounces) age out.
            // (Kept long enough that a slow session still finds its arrivals.)
            let horizon = (self.opts.delivery_wait * 3).max(Duration::from_secs(120));
            st.arrived
                .retain(|_, (t, _)| now.duration_since(*t) < horizon);
        }
        for (p, v) in decided {
            let sig = delivery_signature(&v.detail);
            self.finding(v, sig, p.case, p.trace, p.session).await;
        }
    }

    async fn check_crashes(&self) {
        let crashes = self.world.crashes();
        if crashes.is_empty() {
            return;
        }
        let recent: Vec<Case> = self.lock().recent.iter().cloned().collect();
        let case = recent.last().cloned().unwrap_or_default();
        let sig = format!("log: {}", strip_log_prefix(&crashes[0]));
        let v = Violation {
            invariant: Invariant::TargetAlive,
            step: None,
            before: true,
            reply: None,
            detail: format!(
                "the target's log reports a crash or restart while the fuzzer ran: {} (the case below is the last session before it; {} other sessions ran in the 32 before)",
                crashes.join(" / "),
                recent.len().saturating_sub(1)
            ),
        };
        let trace = Trace::default();
        self.finding(v, sig, case, trace, 0).await;
    }

    /// Every 500 ms: fake hosts, deliveries, the target's queue and log,
    /// progress; ends when the workers have stopped and everything is settled.
    async fn watcher(&self, progress: &(dyn Fn(&Progress) + Sync)) {
        let mut last = Instant::now();
        let mut looked = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.world.maintain().await;
            if looked.elapsed() >= Duration::from_secs(2) {
                let q = self.world.queued().await;
                self.lock().backlog =
                    q.map(|v| v.into_iter().map(|r| r.to_ascii_lowercase()).collect());
                looked = Instant::now();
            }
            let hurry = self.hurry();
            self.check_deliveries(hurry).await;
            self.check_crashes().await;
            if last.elapsed() >= Duration::from_secs(5) {
                progress(&self.progress());
                last = Instant::now();
            }
            let mut st = self.lock();
            if st.workers_done.is_some()
                && st.pending.is_empty()
                && st.todo.is_empty()
                && st.shrinking == 0
            {
                st.all_done = true;
                return;
            }
        }
    }

    async fn outbound_worker(&self) {
        let Some(ob) = self.world.outbound() else {
            return;
        };
        while !self.done() {
            let (_, mut r) = self.next_rng();
            let case = outbound::mutate(&mut r);
            let res = ob.run(&case).await;
            {
                let mut st = self.lock();
                st.outbound_cases += 1;
                st.signatures.insert(format!("out {}", res.signature));
            }
            if let Some(v) = res.violation.clone() {
                let key = (v.invariant, res.signature.clone());
                if !self.lock().seen_keys.insert(key) {
                    continue;
                }
                let (case, res) =
                    outbound::shrink(ob, case, res, (self.opts.shrink_budget / 20).max(3)).await;
                let mut st = self.lock();
                let n = st.findings.len() + 1;
                let path = outbound::write(&case, &res, &self.opts.out, n, self.opts.seed).ok();
                let f = Finding {
                    violation: res.violation.clone().unwrap_or(v),
                    signature: res.signature.clone(),
                    case: Case::default(),
                    trace: Trace::default(),
                    original_steps: 0,
                    seed: self.opts.seed,
                    session: n as u64,
                    outbound: Some(case.clone()),
                };
                st.findings.push((f, path));
            }
        }
    }
}

/// Whether a delivery finding says the message never arrived.
fn never_reached(v: &Violation) -> bool {
    v.invariant == Invariant::AcceptedIsDelivered
        && delivery_signature(&v.detail) == "never reached"
}

/// The deduplication key of a delivery finding: what went wrong, without
/// message ids, numbers and names (`never reached`, `content differs at
/// a line like ...`).
fn delivery_signature(detail: &str) -> String {
    let kind = if let Some((_, rest)) = detail.split_once("content differs") {
        format!("content differs{}", rest.split(" (").next().unwrap_or(""))
    } else if detail.contains("never reached") {
        "never reached".into()
    } else if detail.contains("refused in the session") {
        "a refused recipient was delivered".into()
    } else if detail.contains("session ended inside") {
        "delivered although the session ended inside DATA".into()
    } else {
        "delivered although refused at end of data".into()
    };
    kind.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Whether a recipient of `m` is in the target's queue (never, when the queue cannot be read).
fn queued(backlog: &Option<HashSet<String>>, m: &Msg) -> bool {
    match backlog {
        None => false,
        Some(q) => m.rcpts.iter().any(|r| q.contains(&r.to_ascii_lowercase())),
    }
}

fn strip_log_prefix(line: &str) -> String {
    // "Dec  2 10:00:00 host postfix/smtpd[123]: fatal: ..." → "postfix/smtpd: fatal: ..."
    let l = line
        .split_once("postfix")
        .map(|(_, r)| format!("postfix{r}"))
        .unwrap_or_else(|| line.to_string());
    let mut out = String::new();
    let mut in_pid = false;
    for c in l.chars() {
        match c {
            '[' => in_pid = true,
            ']' => in_pid = false,
            c if !in_pid => out.push(c),
            _ => {}
        }
    }
    out
}

/// Point a corpus case at the current fake host's names.
fn retarget(c: &mut Case, names: &Names) {
    for s in &mut c.steps {
        if let gen::Step::Send(b) | gen::Step::Data(b) = s {
            let text = super::unscope(&String::from_utf8_lossy(b));
            if text.as_bytes() != b.as_slice() && String::from_utf8(b.clone()).is_ok() {
                *b = text
                    .replace("dest.test", &names.dest)
                    .replace("src.test", &names.src)
                    .into_bytes();
            }
        }
    }
}

/// The findings by invariant, for the summary.
pub fn by_invariant(r: &Report) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for (f, _) in &r.findings {
        *m.entry(f.violation.invariant.name()).or_insert(0) += 1;
    }
    m
}
