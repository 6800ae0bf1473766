//! Run stage (tests): lost observations and panics become a scenario's harness error, never a silent pass.

use super::judge::Decision;
use super::observe::{Observations, Recorder};
use super::{conclude, guarded, watch_dns, watch_syns, ScenarioResult, Verdict};
use crate::lab::sniff::{ConnectAttempt, Seen};
use crate::report::{junit, Status};
use crate::suite::{parse_scenario, Scenario};
use crate::world::Scope;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast;

fn scenario() -> Scenario {
    parse_scenario(
        std::path::Path::new("suites/x/0001-t.toml"),
        "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n\
         [hosts.h]\nname = \"h.dest.test\"\n\
         [[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n\
         [[expect]]\naccepted = true\n[[expect]]\nnot_contacted = \"h\"\n",
    )
    .unwrap()
}

/// A result whose verdicts all passed, the negative one included.
fn passing(sc: &Scenario) -> ScenarioResult {
    let mut r = ScenarioResult::new(sc, &Scope::new(0));
    r.verdicts = vec![
        Verdict {
            expect: "target accepts the message".into(),
            decision: Decision::Pass("250 at end of data".into()),
        },
        Verdict {
            expect: "h is never contacted".into(),
            decision: Decision::Pass("no connection attempt seen".into()),
        },
    ];
    r
}

fn attempt(to: Ipv4Addr) -> Seen {
    Seen::Attempt(ConnectAttempt {
        at: Instant::now(),
        from: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000),
        to: SocketAddrV4::new(to, 25),
    })
}

/// What the SYN watcher of a scenario whose only host `h` is at `ours`
/// records from what was sent into `tx` before it started.
async fn watched(
    tx: broadcast::Sender<Seen>,
    rx: broadcast::Receiver<Seen>,
    ours: Ipv4Addr,
) -> Observations {
    let rec = Recorder::default();
    let watcher = tokio::spawn(watch_syns(
        rx,
        rec.clone(),
        Arc::new(vec![(ours, "h".to_string())]),
    ));
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
    let o = std::mem::take(&mut *rec.lock());
    o
}

/// Packets the kernel dropped before the watcher read them may have been
/// the SYN that a verdict depends on: the scenario is a harness error.
#[tokio::test]
async fn packets_the_kernel_dropped_turn_a_passing_negative_into_a_harness_error() {
    let ours = Ipv4Addr::new(127, 10, 0, 1);
    let (tx, rx) = broadcast::channel(16);
    tx.send(attempt(ours)).unwrap();
    tx.send(Seen::Dropped(3)).unwrap();
    let o = watched(tx, rx, ours).await;
    assert_eq!(o.connects.len(), 1);
    assert!(
        o.lost.len() == 1 && o.lost[0].contains("dropped 3 packet(s)"),
        "{:?}",
        o.lost
    );
    let sc = scenario();
    let mut r = passing(&sc);
    conclude(&mut r, &o);
    assert_eq!(Status::of(&r), Status::Error);
}

#[tokio::test]
async fn a_lagged_syn_watcher_turns_a_passing_negative_into_a_harness_error() {
    let ours = Ipv4Addr::new(127, 10, 0, 1);
    let (tx, rx) = broadcast::channel(4);
    // More attempts than the channel holds arrive before the watcher reads.
    for _ in 0..10 {
        tx.send(attempt(ours)).unwrap();
    }
    let o = watched(tx, rx, ours).await;
    assert_eq!(o.connects.len(), 4, "the attempts still in the channel");
    assert_eq!(o.lost.len(), 1, "{:?}", o.lost);
    assert!(
        o.lost[0].contains("lost 6 connection attempt(s)"),
        "{:?}",
        o.lost
    );

    let sc = scenario();
    let mut r = passing(&sc);
    assert!(r.passed());
    conclude(&mut r, &o);
    assert!(!r.passed());
    assert_eq!(Status::of(&r), Status::Error);
    assert!(r.error.as_deref().unwrap().contains("cannot be trusted"));
    let xml = junit::report(&[r], "postfix", Duration::from_secs(1))
        .to_string()
        .unwrap();
    assert!(xml.contains("<error"), "{xml}");
}

#[tokio::test]
async fn a_lagged_dns_log_is_a_harness_error_too() {
    let (tx, rx) = broadcast::channel(2);
    let rec = Recorder::default();
    let query = |name: &str| fake_dns::QueryLogEntry {
        at: SystemTime::now(),
        elapsed: Duration::ZERO,
        transport: fake_dns::Transport::Udp,
        peer: "127.0.0.1:5353".parse().unwrap(),
        name: name.into(),
        qtype: "MX".into(),
        outcome: fake_dns::Outcome::NxDomain,
        fault: None,
    };
    for _ in 0..5 {
        tx.send(query("dest.s0.test")).unwrap();
    }
    let watcher = tokio::spawn(watch_dns(rx, rec.clone(), "s0.test".into()));
    tx.send(query("other.s1.test")).unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
    let o = rec.lock();
    assert_eq!(o.dns.len(), 1, "only this scenario's names: {:?}", o.dns);
    assert!(o.lost[0].contains("lost 4 query(ies)"), "{:?}", o.lost);
}

#[test]
fn harness_notes_go_with_every_verdict_without_failing_it() {
    let sc = scenario();
    let mut r = passing(&sc);
    let mut o = Observations::default();
    o.note("a session passed 2000 transcript lines");
    o.note("a session passed 2000 transcript lines");
    conclude(&mut r, &o);
    assert!(r.passed(), "a note alone does not change the outcome");
    assert!(r.error.is_none());
    for v in &r.verdicts {
        let Decision::Pass(t) = &v.decision else {
            panic!("{v:?}")
        };
        assert!(
            t.ends_with("[harness: a session passed 2000 transcript lines]"),
            "{t}"
        );
    }
    r.observations = o;
    let table = crate::report::console::summary(&[r], Duration::from_secs(1), Duration::ZERO);
    assert!(
        table.contains("1 scenario(s) carry harness notes"),
        "{table}"
    );
}

#[tokio::test]
async fn a_panicking_scenario_is_its_own_error_and_the_others_run_on() {
    let sc = scenario();
    let fallback = || ScenarioResult::new(&sc, &Scope::new(0));
    let sc2 = sc.clone();
    let results = futures::future::join_all([
        futures::future::Either::Left(guarded(fallback(), async move {
            tokio::task::yield_now().await;
            let empty: Vec<u8> = Vec::new();
            let _ = empty[0]; // what an unchecked index into no recipients did
            passing(&sc2)
        })),
        futures::future::Either::Right(guarded(fallback(), async { passing(&sc) })),
    ])
    .await;
    let e = results[0].error.as_deref().expect("the panic is an error");
    assert!(e.contains("index out of bounds"), "{e}");
    assert_eq!(Status::of(&results[0]), Status::Error);
    assert!(results[1].passed(), "{:?}", results[1].error);
}
