//! `mtaspec fuzz` against scripted misbehaving peers: each breaks one invariant, and the fuzzer must report it, shrunk.
//!
//! The peer is an in-process SMTP server (inbound) or SMTP client (outbound)
//! with one fault; everything else about it is conforming, so the finding
//! must name exactly that invariant.

use mtaspec::run::observe::Recorder;
use mtaspec::sessfuzz::client::Trace;
use mtaspec::sessfuzz::deliver::{fuzz_id, Arrived};
use mtaspec::sessfuzz::drive::{Fuzzer, Options, Side};
use mtaspec::sessfuzz::gen::{Case, Names, Step};
use mtaspec::sessfuzz::oracle::Invariant;
use mtaspec::sessfuzz::outbound::{self, OutCase, OutResult, Outbound};
use mtaspec::sessfuzz::{client::Waits, World};
use mtaspec::world::host::Host;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The one thing a peer does wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Answers EHLO twice.
    ExtraReply,
    /// Answers MAIL with a two-line reply whose lines carry different codes.
    MixedCodes,
    /// Closes the connection instead of answering RSET... or a second RCPT.
    SilentClose,
    /// Refuses every RCPT, then answers DATA with 354 all the same.
    DataWithoutRcpt,
    /// Accepts messages and loses them.
    LosesMail,
    /// Refuses messages at end of data and delivers them anyway.
    DeliversRefused,
    /// Logs a panic when a client says QUIT.
    Panics,
    /// Nothing: the control — the fuzzer must report no finding.
    Conforming,
}

#[derive(Default)]
struct Shared {
    delivered: Vec<Arrived>,
    log: Vec<String>,
}

async fn peer(listener: TcpListener, fault: Fault, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), session(s, fault, shared)).await;
        });
    }
}

async fn session(s: TcpStream, fault: Fault, shared: Arc<Mutex<Shared>>) -> std::io::Result<()> {
    let mut s = BufReader::new(s);
    s.get_mut().write_all(b"220 peer ready\r\n").await?;
    let (mut mail, mut rcpts): (bool, Vec<String>) = (false, Vec::new());
    let mut rcpt_count = 0;
    loop {
        let mut line = Vec::new();
        if s.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).to_string();
        // Like Postfix, white space (C's `isspace`) before the command
        // word is skipped.
        let verb = text
            .trim_start_matches([' ', '\t', '\r', '\x0b', '\x0c'])
            .split([' ', '\t', '\r', '\n', '\x0b', '\x0c'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => {
                mail = false;
                rcpts.clear();
                if fault == Fault::ExtraReply {
                    b"250 peer\r\n250 peer again\r\n"
                } else {
                    b"250-peer\r\n250 PIPELINING\r\n"
                }
            }
            "MAIL" => {
                mail = true;
                rcpts.clear();
                rcpt_count = 0;
                if fault == Fault::MixedCodes {
                    b"250-sender ok\r\n251 sender ok\r\n"
                } else {
                    b"250 2.1.0 ok\r\n"
                }
            }
            "RCPT" => {
                rcpt_count += 1;
                if fault == Fault::SilentClose && rcpt_count == 2 {
                    return Ok(());
                }
                if !mail {
                    b"503 5.5.1 need MAIL\r\n"
                } else if fault == Fault::DataWithoutRcpt {
                    b"550 5.1.1 no such user\r\n"
                } else {
                    rcpts.push(envelope_address(&text));
                    b"250 2.1.5 ok\r\n"
                }
            }
            "DATA" if !(mail && (!rcpts.is_empty() || fault == Fault::DataWithoutRcpt)) => {
                b"554 5.5.1 no valid recipients\r\n"
            }
            "DATA" => {
                s.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if s.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.first() == Some(&b'.') {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                }
                let refuse = fault == Fault::DeliversRefused;
                if fault != Fault::LosesMail && !rcpts.is_empty() {
                    let mut stamped = b"Received: from client by peer\r\n".to_vec();
                    stamped.extend_from_slice(&data);
                    if let Some(id) = fuzz_id(&stamped) {
                        shared.lock().unwrap().delivered.push(Arrived {
                            id,
                            mail_from: "a@src.test".into(),
                            rcpts: rcpts.clone(),
                            data: stamped,
                        });
                    }
                }
                mail = false;
                rcpts.clear();
                if refuse {
                    b"554 5.7.1 refused\r\n"
                } else {
                    b"250 2.0.0 queued\r\n"
                }
            }
            "RSET" => {
                mail = false;
                rcpts.clear();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                if fault == Fault::Panics {
                    shared
                        .lock()
                        .unwrap()
                        .log
                        .push("peer/smtpd[42]: panic: QUIT handler".into());
                }
                s.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 not implemented\r\n",
        };
        s.get_mut().write_all(reply).await?;
    }
}

/// The address of a MAIL or RCPT line as Postfix reads it: inside angle
/// brackets white space is dropped (`< a@b.test>` is `a@b.test`); without
/// them the address ends at the first space, before any parameters, or at a
/// stray `>` (`RCPT TO: a@b.test>` is `a@b.test`).
fn envelope_address(line: &str) -> String {
    let rest = line.split_once(':').map(|x| x.1).unwrap_or("").trim();
    match rest.strip_prefix('<') {
        Some(r) => r
            .split('>')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect(),
        None => rest.split([' ', '>']).next().unwrap_or("").to_string(),
    }
}

struct PeerWorld {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    outbound: Option<BrokenClient>,
    /// Say that a fake host dropped mail past one of its limits.
    lost: bool,
}

impl World for PeerWorld {
    fn target(&self) -> SocketAddr {
        self.addr
    }
    fn lost(&self) -> bool {
        self.lost
    }
    fn from(&self) -> Option<Ipv4Addr> {
        None
    }
    fn names(&self) -> Names {
        Names {
            dest: "dest.test".into(),
            src: "src.test".into(),
        }
    }
    fn arrivals(&self) -> Vec<Arrived> {
        std::mem::take(&mut self.shared.lock().unwrap().delivered)
    }
    fn crashes(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().unwrap().log)
    }
    fn outbound(&self) -> Option<&dyn Outbound> {
        self.outbound.as_ref().map(|o| o as &dyn Outbound)
    }
}

fn options(out: &std::path::Path, side: Side) -> Options {
    Options {
        seed: 7,
        time: Duration::from_secs(20),
        jobs: 4,
        side,
        out: out.to_path_buf(),
        waits: Waits {
            reply: Duration::from_secs(3),
            drain: Duration::from_millis(100),
            connect: Duration::from_secs(2),
        },
        delivery_wait: Duration::from_millis(800),
        shrink_budget: 60,
        max_sessions: Some(300),
    }
}

fn fuzz_peer(fault: Fault) -> (mtaspec::sessfuzz::drive::Report, tempfile::TempDir) {
    fuzz_peer_in(fault, false)
}

/// As [`fuzz_peer`]; `lost`: the world says a fake host dropped mail.
fn fuzz_peer_in(fault: Fault, lost: bool) -> (mtaspec::sessfuzz::drive::Report, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        tokio::spawn(peer(l, fault, shared.clone()));
        let world = PeerWorld {
            addr,
            shared,
            outbound: None,
            lost,
        };
        let f = Fuzzer::new(&world, options(dir.path(), Side::Inbound));
        f.run(&|_| {}).await
    });
    (report, dir)
}

/// The findings of a report as the fuzzer wrote them: what a failed
/// assertion shows.
fn written(report: &mtaspec::sessfuzz::drive::Report) -> String {
    report
        .findings
        .iter()
        .map(|(f, path)| match path {
            Some(p) => std::fs::read_to_string(p).unwrap_or_else(|e| format!("{p:?}: {e}")),
            None => format!("{:#?}", f.violation),
        })
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// The peer's fault is found, named by its invariant, shrunk, and written.
fn assert_found(fault: Fault, inv: Invariant, max_steps: usize) {
    let (report, dir) = fuzz_peer(fault);
    let names: Vec<&str> = report
        .findings
        .iter()
        .map(|(f, _)| f.violation.invariant.name())
        .collect();
    assert!(
        names.contains(&inv.name()),
        "{fault:?}: expected {} among {names:?}",
        inv.name()
    );
    // One fault, one invariant: nothing else is reported about this peer.
    assert!(
        names.iter().all(|n| *n == inv.name()),
        "{fault:?}: {names:?}\n{}",
        written(&report)
    );
    let (f, path) = report
        .findings
        .iter()
        .find(|(f, _)| f.violation.invariant == inv)
        .unwrap();
    if inv != Invariant::TargetAlive {
        assert!(
            f.case.steps.len() <= max_steps,
            "{fault:?}: shrunk to {} steps (from {}): {:?}",
            f.case.steps.len(),
            f.original_steps,
            f.case
        );
    }
    let path = path.as_ref().expect("finding written");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(inv.rfc()), "{text}");
    assert!(text.contains("[[session]]"), "{text}");
    assert!(path.starts_with(dir.path()));
}

#[test]
fn a_conforming_peer_gives_no_finding() {
    let (report, _dir) = fuzz_peer(Fault::Conforming);
    assert!(report.findings.is_empty(), "{}", written(&report));
    assert!(report.progress.sessions >= 300, "{:?}", report.progress);
    // The corpus grew: different sessions drew different reply sequences.
    assert!(report.progress.signatures > 20, "{:?}", report.progress);
}

/// A command line that starts in one write and ends in the next is one
/// command, with white space before its word: a server that accepts
/// ` MAIL FROM:` or `\rMAIL FROM:` took it as MAIL, so its 354 after an
/// accepted RCPT is no violation (false findings once seen against
/// Postfix, which skips what C's `isspace` calls white space).
#[test]
fn a_command_split_across_writes_after_white_space_is_one_command() {
    for lead in [&b" "[..], b"\r", b"\t\x0b\x0c"] {
        command_after(lead);
    }
}

/// Runs one case of `steps` through the fuzz client against the server
/// `serve` starts on a fresh loopback listener.
fn one_case<F>(steps: Vec<Step>, serve: impl FnOnce(TcpListener) -> F) -> Trace
where
    F: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l));
        mtaspec::sessfuzz::client::run(&Case { steps }, addr, None, Waits::default()).await
    })
}

/// Sends `lead`, then a whole transaction in the next write, to the
/// conforming peer: no violation, and the replies of a transaction.
fn command_after(lead: &[u8]) {
    let steps = vec![
        Step::Send(lead.to_vec()),
        Step::Send(b"MAIL FROM:<bob@src.test>\r\nRCPT TO:<x3@dest.test>\r\nDATA\r\n".to_vec()),
        Step::Data(b"X-Fuzz-Id: split-1\r\n\r\nhi\r\n.\r\n".to_vec()),
        Step::Send(b"QUIT\r\n".to_vec()),
    ];
    let shared = Arc::new(Mutex::new(Shared::default()));
    let trace = one_case(steps, |l| peer(l, Fault::Conforming, shared));
    assert!(trace.violations.is_empty(), "{:#?}", trace.violations);
    assert_eq!(
        trace.codes,
        vec![220, 250, 250, 354, 250, 221],
        "{trace:#?}"
    );
}

/// A server that reads `STARTTLS\0x` as STARTTLS (a NUL ends a C string)
/// answers 220 and then expects a TLS handshake; plain text after it is no
/// command, and its closing the connection then no violation (a false
/// `close-announced` finding once seen against Postfix).
#[test]
fn starttls_with_a_nul_behind_its_word_ends_the_session_at_220() {
    let steps = vec![
        Step::Send(b"STARTTLS\0x\r\n".to_vec()),
        Step::Send(b" CPT TO:<u427@dest.test NOTIFY=NEVER NOTIFY=\r\n".to_vec()),
    ];
    let trace = one_case(steps, |l| async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        s.get_mut().write_all(b"220 peer ready\r\n").await.unwrap();
        let mut line = Vec::new();
        s.read_until(b'\n', &mut line).await.unwrap();
        let word = line.split(|&b| b == 0 || b == b'\r').next().unwrap_or(&[]);
        if word.eq_ignore_ascii_case(b"STARTTLS") {
            s.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
        }
        // No TLS handshake follows: the connection is dropped.
        let mut rest = Vec::new();
        let _ = s.read_until(b'\n', &mut rest).await;
    });
    assert!(trace.violations.is_empty(), "{:#?}", trace.violations);
    assert_eq!(trace.codes, vec![220, 220], "{trace:#?}");
}

/// The odd address forms the generator draws (a space after `<`, no
/// brackets and parameters behind, a lost `<`) name the same recipient to the oracle
/// and to a conforming peer, so delivered mail is judged delivered (a false
/// `accepted-is-delivered` finding once came from the fake reading them
/// otherwise).
#[test]
fn odd_recipient_forms_are_read_alike_by_oracle_and_peer() {
    use mtaspec::sessfuzz::deliver::judge;
    let forms = [
        "< cpt0@dest.test>",
        "cpt1@dest.test NOTIFY=NEVER",
        "<cpt2 @dest.test> ORCPT=rfc822;a@b.test",
        "cpt3@dest.test",
        " cpt4@dest.test>",
    ];
    for (k, form) in forms.iter().enumerate() {
        let steps = vec![
            Step::Send(
                format!("MAIL FROM:<bob@src.test>\r\nRCPT TO:{form}\r\nDATA\r\n").into_bytes(),
            ),
            Step::Data(format!("X-Fuzz-Id: odd-{k}\r\n\r\nhi\r\n.\r\n").into_bytes()),
            Step::Send(b"QUIT\r\n".to_vec()),
        ];
        let shared = Arc::new(Mutex::new(Shared::default()));
        let trace = one_case(steps, |l| peer(l, Fault::Conforming, shared.clone()));
        let delivered = std::mem::take(&mut shared.lock().unwrap().delivered);
        assert!(
            trace.violations.is_empty(),
            "{form}: {:#?}",
            trace.violations
        );
        let [m] = trace.messages.as_slice() else {
            panic!("{form}: one message expected: {trace:#?}");
        };
        assert_eq!(m.rcpts.len(), 1, "{form}: {m:?}");
        assert_eq!(delivered.len(), 1, "{form}");
        assert!(
            matches!(judge(m, &delivered, "dest.test", true), Some(Ok(()))),
            "{form}: {:?} against {:?}",
            judge(m, &delivered, "dest.test", true),
            delivered[0].rcpts
        );
    }
}

#[test]
fn an_extra_reply_is_found_and_shrunk() {
    assert_found(Fault::ExtraReply, Invariant::OneReplyPerCommand, 1);
}

#[test]
fn mixed_reply_codes_are_found_and_shrunk() {
    assert_found(Fault::MixedCodes, Invariant::ReplySyntax, 1);
}

#[test]
fn a_silent_close_is_found_and_shrunk() {
    assert_found(Fault::SilentClose, Invariant::CloseAnnounced, 2);
}

#[test]
fn a_354_without_recipient_is_found_and_shrunk() {
    // The peer needs MAIL, then DATA: one step when the case sends them in
    // one write, two when it sends them apart (which case the parallel
    // jobs find first depends on timing). Either is 1-minimal.
    assert_found(Fault::DataWithoutRcpt, Invariant::DataNeedsRecipient, 2);
}

#[test]
fn lost_mail_is_found_and_shrunk() {
    // MAIL, RCPT, DATA and the content: four steps at most, when each is
    // sent apart.
    assert_found(Fault::LosesMail, Invariant::AcceptedIsDelivered, 4);
}

/// When a fake host dropped mail past one of its limits, mail that was not
/// seen may have arrived: it is counted as not judged, never reported lost.
#[test]
fn mail_not_seen_is_no_finding_when_a_fake_host_dropped_mail() {
    let (report, _dir) = fuzz_peer_in(Fault::LosesMail, true);
    let lost: Vec<_> = report
        .findings
        .iter()
        .filter(|(f, _)| f.violation.invariant == Invariant::AcceptedIsDelivered)
        .map(|(f, _)| &f.violation.detail)
        .collect();
    assert!(lost.is_empty(), "{lost:#?}");
    assert!(report.undecided > 0, "{:?}", report.progress);
}

#[test]
fn refused_mail_delivered_is_found_and_shrunk() {
    assert_found(Fault::DeliversRefused, Invariant::RejectedNotDelivered, 4);
}

#[test]
fn a_panic_in_the_log_is_found() {
    assert_found(Fault::Panics, Invariant::TargetAlive, usize::MAX);
}

/// An SMTP client that delivers to a fake host and either never retries or always does.
struct BrokenClient {
    retries: bool,
}

async fn read_reply(s: &mut BufReader<TcpStream>) -> Option<u16> {
    loop {
        let mut l = String::new();
        if tokio::time::timeout(Duration::from_secs(2), s.read_line(&mut l))
            .await
            .ok()?
            .ok()?
            == 0
        {
            return None;
        }
        if l.as_bytes().get(3) != Some(&b'-') {
            return l.get(..3)?.parse().ok();
        }
    }
}

/// One delivery attempt; `true` when the host took the message.
async fn attempt(addr: SocketAddr) -> bool {
    let Ok(s) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut s = BufReader::new(s);
    let steps: [(&[u8], u16); 5] = [
        (b"", 2),
        (b"EHLO client.test\r\n", 2),
        (b"MAIL FROM:<a@src.test>\r\n", 2),
        (b"RCPT TO:<b@dest.test>\r\n", 2),
        (b"DATA\r\n", 3),
    ];
    for (cmd, class) in steps {
        if s.get_mut().write_all(cmd).await.is_err() {
            return false;
        }
        match read_reply(&mut s).await {
            Some(c) if c / 100 == class => {}
            _ => {
                let _ = s.get_mut().write_all(b"QUIT\r\n").await;
                return false;
            }
        }
    }
    let _ = s
        .get_mut()
        .write_all(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        .await;
    let ok = read_reply(&mut s).await.is_some_and(|c| c / 100 == 2);
    let _ = s.get_mut().write_all(b"QUIT\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(200), s.read_to_end(&mut rest)).await;
    ok
}

impl Outbound for BrokenClient {
    fn run<'a>(&'a self, case: &'a OutCase) -> Pin<Box<dyn Future<Output = OutResult> + 'a>> {
        Box::pin(async move {
            let text = outbound::scenario_text(case, "");
            let sc = mtaspec::suite::parse_scenario(std::path::Path::new("t/0001-x.toml"), &text)
                .unwrap();
            let rec = Recorder::default();
            let host = Host::start(
                sc.hosts[0].clone(),
                "127.0.0.1:0".parse().unwrap(),
                rec.clone(),
            )
            .await
            .unwrap();
            let delivered = attempt(host.addr).await;
            if !delivered && self.retries {
                attempt(host.addr).await;
            }
            if delivered && self.retries {
                attempt(host.addr).await; // a duplicate, for good measure
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let sessions = rec.lock().sessions.len();
            host.stop();
            let violation = outbound::judge_attempts(case, sessions)
                .map(|detail| outbound::violation(case, detail));
            OutResult {
                signature: format!("{:?} {sessions}", case.expected()),
                violation,
            }
        })
    }
}

fn fuzz_client(retries: bool) -> (mtaspec::sessfuzz::drive::Report, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = rt.block_on(async {
        let world = PeerWorld {
            addr: "127.0.0.1:9".parse().unwrap(),
            shared: Arc::default(),
            outbound: Some(BrokenClient { retries }),
            lost: false,
        };
        let mut o = options(dir.path(), Side::Outbound);
        o.max_sessions = Some(60);
        let f = Fuzzer::new(&world, o);
        f.run(&|_| {}).await
    });
    (report, dir)
}

#[test]
fn a_client_that_never_retries_breaks_deferral_retried() {
    let (r, _dir) = fuzz_client(false);
    let (f, path) = r
        .findings
        .iter()
        .find(|(f, _)| f.violation.invariant == Invariant::DeferralRetried)
        .expect("deferral-retried reported");
    assert!(
        r.findings
            .iter()
            .all(|(f, _)| f.violation.invariant == Invariant::DeferralRetried),
        "{:?}",
        r.findings
            .iter()
            .map(|x| &x.0.violation)
            .collect::<Vec<_>>()
    );
    let text = std::fs::read_to_string(path.as_ref().unwrap()).unwrap();
    assert!(text.contains("at_least = 2"), "{text}");
    // Shrunk: one replaced step is enough to make the point.
    let steps = &f.outbound.as_ref().unwrap().steps;
    assert_eq!(steps.len(), 1, "{steps:?}");
}

#[test]
fn a_client_that_retries_a_5xx_breaks_permanent_not_retried() {
    let (r, _dir) = fuzz_client(true);
    assert!(r
        .findings
        .iter()
        .any(|(f, _)| f.violation.invariant == Invariant::PermanentNotRetried));
    assert!(r.findings.iter().all(|(f, _)| matches!(
        f.violation.invariant,
        Invariant::PermanentNotRetried | Invariant::AcceptedIsDelivered
    )));
}

fn fuzz_lab(args: &[&str], out: &std::path::Path) -> (Option<i32>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mtaspec"))
        .arg("fuzz")
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run mtaspec fuzz");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// Against the lab Postfix: a setting that discards accepted mail is found
/// as `accepted-is-delivered`, shrunk to a scenario with a `relayed` expectation.
#[test]
fn the_lab_postfix_discarding_mail_is_found() {
    // The lab lock: the other lab tests count what runs on the machine.
    let Some(_g) = crate::lab::lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = fuzz_lab(
        &[
            "--time",
            "10s",
            "--seed",
            "3",
            "--jobs",
            "8",
            "--set",
            "header_checks=regexp:{ {/^X-Fuzz-Id:/ DISCARD} }",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("accepted-is-delivered"), "{text}");
    assert!(text.contains("sessions/s") || text.contains("/s"), "{text}");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let f = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-accepted-is-delivered.toml"))
        .unwrap_or_else(|| panic!("{files:?}\n{text}"));
    let scenario = std::fs::read_to_string(f).unwrap();
    assert!(
        scenario.contains("relayed = { host = \"mx\", count = 1, body = \"as-sent\" }"),
        "{scenario}"
    );
    assert!(scenario.contains("data \"X-Fuzz-Id: "), "{scenario}");
    assert!(
        !scenario.contains(".s1"),
        "lab names are moved back under .test: {scenario}"
    );
}

/// Against stock Postfix a few hundred sessions give no finding (the
/// oracles raise no false alarm on a conforming server), and the lab is gone afterwards.
#[test]
fn the_stock_lab_postfix_gives_no_finding() {
    let Some(_g) = crate::lab::lab() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = fuzz_lab(
        &[
            "--time",
            "30s",
            "--max-sessions",
            "400",
            "--seed",
            "11",
            "--jobs",
            "8",
        ],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("400 sessions") || text.contains("sessions in"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "{text}"
    );
}
