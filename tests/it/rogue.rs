//! Rogue peers: a broken or hostile SMTP peer ends in a clear verdict or error within its deadline and bounded memory.
//!
//! Each case runs in a process of its own (this test binary, re-run with
//! `MTASPEC_ROGUE_CASE` set), so its peak resident memory (`VmHWM`) is its
//! own. The client cases run the injecting client against a rogue listener
//! on 127.0.0.1; the host cases attack a fake host on 127.0.0.x. No lab and
//! no root are needed. `cargo test --test it rogue -- --nocapture` prints
//! the figures.

use futures::StreamExt;
use mtaspec::client::{inject, Outgoing};
use mtaspec::run::observe::{limits, Recorder};
use mtaspec::run::{conclude, ScenarioResult};
use mtaspec::suite::parse_scenario;
use mtaspec::world::host::Host;
use mtaspec::world::Scope;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Peak resident memory any case may reach, test binary included. The
/// fake host's old stall path alone kept all 256 MiB the stall case sends.
const RSS_BOUND_KIB: u64 = 128 * 1024;
/// The scenario deadline given to every client case.
const DEADLINE: Duration = Duration::from_secs(5);
/// What a case may take beyond its deadline (start-up, a loaded machine).
const SLACK: Duration = Duration::from_secs(5);

const CASES: &[&str] = &[
    "reply-1mb-line",
    "reply-endless-multiline",
    "reply-drip",
    "reply-garbage",
    "reply-nuls",
    "reply-never-reads-the-message",
    "connect-never-answered",
    "host-connection-flood",
    "host-endless-commands",
    "host-garbage-nuls-long-line",
    "host-stall-256mib",
    "host-accept-out-of-descriptors",
];

/// Peak resident set size of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn rogue_peers_end_in_time_with_bounded_memory() {
    if std::env::var_os("MTASPEC_ROGUE_CASE").is_some() {
        return; // this is a case's own process
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = CASES
        .iter()
        .map(|case| {
            let child = Command::new(&exe)
                .args([
                    "rogue::rogue_case_in_its_own_process",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("MTASPEC_ROGUE_CASE", case)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (case, child)
        })
        .collect();
    let mut table = String::new();
    let mut bad = Vec::new();
    for (case, child) in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.find("ROGUE ").map(|i| &l[i..]));
        match (out.status.success(), line) {
            (true, Some(l)) => {
                let peak: u64 = field(l, "peak_rss_kib").parse().unwrap();
                if peak > RSS_BOUND_KIB {
                    bad.push(format!("{case}: peak RSS {peak} KiB > {RSS_BOUND_KIB} KiB"));
                }
                table.push_str(l);
                table.push('\n');
            }
            _ => bad.push(format!(
                "{case}: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
    println!("{table}");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

/// One case, when `MTASPEC_ROGUE_CASE` names it (see the module doc);
/// without it this does nothing.
#[test]
fn rogue_case_in_its_own_process() {
    let Ok(case) = std::env::var("MTASPEC_ROGUE_CASE") else {
        return;
    };
    let base = peak_rss_kib();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let begin = Instant::now();
    let (outcome, deadline) = rt.block_on(async {
        match case.as_str() {
            "reply-1mb-line" => client_case(Rogue::LongLine).await,
            "reply-endless-multiline" => client_case(Rogue::EndlessMultiline).await,
            "reply-drip" => client_case(Rogue::Drip).await,
            "reply-garbage" => client_case(Rogue::Garbage).await,
            "reply-nuls" => client_case(Rogue::Nuls).await,
            "reply-never-reads-the-message" => client_case(Rogue::NoRead).await,
            "connect-never-answered" => connect_never_answered().await,
            "host-connection-flood" => flood().await,
            "host-endless-commands" => endless_commands().await,
            "host-garbage-nuls-long-line" => garbage_commands().await,
            "host-stall-256mib" => stall().await,
            "host-accept-out-of-descriptors" => out_of_descriptors().await,
            other => panic!("unknown case {other}"),
        }
    });
    let took = begin.elapsed();
    rt.shutdown_timeout(Duration::from_secs(1));
    assert!(
        took <= deadline + SLACK,
        "{case} took {took:?}, deadline {deadline:?}"
    );
    println!(
        "ROGUE case={case} took_ms={} deadline_ms={} base_rss_kib={base} peak_rss_kib={} outcome={outcome:?}",
        took.as_millis(),
        deadline.as_millis(),
        peak_rss_kib()
    );
}

#[derive(Clone, Copy, Debug)]
enum Rogue {
    /// A 1 MiB greeting line.
    LongLine,
    /// `220-` continuation lines that never end.
    EndlessMultiline,
    /// One byte a second, never a whole reply.
    Drip,
    /// A greeting, then pseudo-random bytes as the EHLO reply.
    Garbage,
    /// A greeting, then NUL bytes without end as the EHLO reply.
    Nuls,
    /// Answers every command well, then never reads the message.
    NoRead,
}

/// Serve one connection as `how` until the client goes away.
async fn rogue(stream: TcpStream, how: Rogue) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut ehlo = async |w: &mut tokio::net::tcp::OwnedWriteHalf| {
        w.write_all(b"220 rogue ready\r\n").await?;
        r.read_line(&mut line).await
    };
    match how {
        Rogue::LongLine => {
            let mut l = b"220 ".to_vec();
            l.resize(1 << 20, b'x');
            l.extend_from_slice(b"\r\n");
            w.write_all(&l).await?;
        }
        Rogue::EndlessMultiline => loop {
            w.write_all(b"220-still greeting\r\n").await?;
        },
        Rogue::Drip => {
            w.write_all(b"220-").await?;
            loop {
                w.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Rogue::Garbage => {
            ehlo(&mut w).await?;
            let mut x: u32 = 0x9e37_79b9;
            loop {
                let mut chunk = [0u8; 1024];
                for b in &mut chunk {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x as u8;
                }
                w.write_all(&chunk).await?;
            }
        }
        Rogue::Nuls => {
            ehlo(&mut w).await?;
            loop {
                w.write_all(&[0u8; 4096]).await?;
            }
        }
        Rogue::NoRead => {
            ehlo(&mut w).await?;
            w.write_all(b"250 ok\r\n").await?;
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line.starts_with("DATA") {
                    w.write_all(b"354 go on\r\n").await?;
                    std::future::pending::<()>().await;
                }
                w.write_all(b"250 ok\r\n").await?;
            }
        }
    }
    // Keep the connection open until the client gives up.
    let mut sink = [0u8; 1024];
    while r.read(&mut sink).await? > 0 {}
    Ok(())
}

/// The injecting client against a rogue listener: the injection must end
/// with an error that says what went wrong, by the scenario's deadline.
async fn client_case(how: Rogue) -> (String, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(rogue(s, how));
        }
    });
    let mut data = b"Subject: hi\r\n\r\n".to_vec();
    if matches!(how, Rogue::NoRead) {
        // Far more than the socket buffers hold, so the write blocks.
        for _ in 0..(32 << 20) / 64 {
            data.extend_from_slice(&[b'y'; 62]);
            data.extend_from_slice(b"\r\n");
        }
    }
    let inj = inject_into(addr, data).await;
    assert!(!inj.accepted);
    let err = inj.error.expect("a rogue peer is an injection error");
    let want = match how {
        Rogue::LongLine => "longer than 4096 bytes",
        Rogue::EndlessMultiline => "more than 256 lines",
        Rogue::Drip | Rogue::NoRead => "had not ended at the scenario's deadline",
        Rogue::Garbage => "bad reply from the target",
        Rogue::Nuls => "does not start with a three-digit code",
    };
    assert!(err.contains(want), "{how:?}: {err}");
    (err, DEADLINE)
}

/// Inject a message with `data` into `addr` within [`DEADLINE`].
async fn inject_into(
    addr: std::net::SocketAddr,
    data: Vec<u8>,
) -> mtaspec::run::observe::Injection {
    let msg = Outgoing {
        from: "a@src.test".into(),
        to: vec!["b@dest.test".into()],
        mail_params: Vec::new(),
        rcpt_params: Vec::new(),
        data,
    };
    let rec = Recorder::default();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    inject(
        addr,
        &msg,
        0,
        &rec,
        deadline,
        None,
        &mtaspec::target::ClientGate::open(),
    )
    .await
}

/// A listener that never accepts, its queue full: the kernel drops the
/// client's SYN, so connecting hangs until the scenario's deadline.
async fn connect_never_answered() -> (String, Duration) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let c = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
        if let Ok(Ok(c)) = c {
            fillers.push(c);
        }
    }
    let inj = inject_into(addr, b"Subject: hi\r\n\r\nhello\r\n".to_vec()).await;
    let err = inj
        .error
        .expect("an unanswered connect is an injection error");
    assert!(err.contains("deadline passed while connecting"), "{err}");
    drop(listener);
    (err, DEADLINE)
}

/// A fake host `h` on `addr` with the given attempt script.
async fn host(addr: &str, attempt: &str) -> (Host, Recorder) {
    let sc = parse_scenario(
        std::path::Path::new("suites/rogue/0001-rogue.toml"),
        &format!(
            "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n\
             [hosts.h]\nname = \"h.dest.test\"\n[[hosts.h.attempt]]\n{attempt}\n\
             [[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n\
             [[expect]]\ndelivered = {{ host = \"h\" }}\n"
        ),
    )
    .unwrap();
    let spec = sc.hosts.into_iter().find(|h| h.key == "h").unwrap();
    let rec = Recorder::default();
    let h = Host::start(spec, addr.parse().unwrap(), rec.clone())
        .await
        .unwrap();
    (h, rec)
}

/// What the scenario's result says about these observations (error or harness notes).
fn verdict(rec: &Recorder) -> String {
    let sc = parse_scenario(
        std::path::Path::new("suites/rogue/0001-rogue.toml"),
        "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n\
         [[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n[[expect]]\naccepted = true\n",
    )
    .unwrap();
    let mut r = ScenarioResult::new(&sc, &Scope::new(0));
    let o = std::mem::take(&mut *rec.lock());
    conclude(&mut r, &o);
    match r.error {
        Some(e) => format!("error: {e}"),
        None => format!("notes: {}", o.harness.join("; ")),
    }
}

/// Read one reply (all its lines) from a fake host.
async fn reply(s: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        if s.read_line(&mut l).await.unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&l);
        if l.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Three times the session limit in connections at once: the first
/// `limits::SESSIONS` are served, the rest closed at once, and the scenario
/// is a harness error that says so.
async fn flood() -> (String, Duration) {
    let deadline = Duration::from_secs(20);
    let (h, rec) = host("127.0.0.21:0", "").await;
    let addr = h.addr;
    let n = 3 * limits::SESSIONS;
    // 256 connection attempts in flight at a time (more would only overflow
    // the listen queue and wait for SYN retransmissions); each stays open.
    let conns: Vec<_> = futures::stream::iter(0..n)
        .map(|_| async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            let mut buf = [0u8; 64];
            let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
            Some((s, matches!(got, Ok(Ok(n)) if n > 0)))
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let greeted = conns.iter().flatten().filter(|(_, g)| *g).count();
    let closed = conns.iter().flatten().filter(|(_, g)| !*g).count();
    assert_eq!(greeted, limits::SESSIONS, "served up to the limit");
    assert_eq!(closed, n - limits::SESSIONS, "the rest closed at once");
    assert_eq!(rec.lock().sessions.len(), limits::SESSIONS);
    drop(conns);
    h.stop();
    let v = verdict(&rec);
    assert!(v.contains("more than 1000 sessions"), "{v}");
    (format!("{greeted} served, {closed} closed; {v}"), deadline)
}

/// Commands without end in one session: 421 after `limits::COMMANDS`, the
/// transcript kept to `limits::TRANSCRIPT_LINES`, both noted.
async fn endless_commands() -> (String, Duration) {
    let deadline = Duration::from_secs(20);
    let (h, rec) = host("127.0.0.22:0", "").await;
    let mut s = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
    reply(&mut s).await;
    let mut last = String::new();
    for _ in 0..=limits::COMMANDS {
        if s.get_mut().write_all(b"NOOP\r\n").await.is_err() {
            break;
        }
        last = reply(&mut s).await;
        if last.is_empty() || last.starts_with("421") {
            break;
        }
    }
    assert!(last.starts_with("421 4.7.0 too many commands"), "{last:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    {
        let o = rec.lock();
        assert!(o.sessions[0].transcript.len() <= limits::TRANSCRIPT_LINES);
        assert!(
            o.harness.iter().any(|n| n.contains("commands")),
            "{:?}",
            o.harness
        );
        assert!(
            o.harness.iter().any(|n| n.contains("transcript lines")),
            "{:?}",
            o.harness
        );
    }
    h.stop();
    (format!("{}; {}", last.trim_end(), verdict(&rec)), deadline)
}

/// Garbage (not UTF-8), NULs (an unknown verb) and a 1 MiB line without a
/// line end: each answered, the long line ends the session.
async fn garbage_commands() -> (String, Duration) {
    let deadline = Duration::from_secs(10);
    let (h, rec) = host("127.0.0.23:0", "").await;
    let mut s = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
    reply(&mut s).await;
    s.get_mut()
        .write_all(b"\xff\xfe\x01garbage\r\n")
        .await
        .unwrap();
    let r1 = reply(&mut s).await;
    assert!(r1.starts_with("500"), "{r1:?}");
    s.get_mut().write_all(b"\0\0\0\0\0\0\r\n").await.unwrap();
    let r2 = reply(&mut s).await;
    assert!(r2.starts_with("502"), "an unknown verb: {r2:?}");
    let long = vec![b'A'; 1 << 20];
    let _ = s.get_mut().write_all(&long).await;
    let r3 = reply(&mut s).await;
    assert!(
        r3.starts_with("500 5.5.2 line too long"),
        "{r1:?} {r2:?} {r3:?}"
    );
    h.stop();
    let _ = rec;
    (
        format!("{} | {} | {}", r1.trim_end(), r2.trim_end(), r3.trim_end()),
        deadline,
    )
}

/// A host that stalls at connect while the peer sends 256 MiB: it is read
/// and thrown away, not kept.
async fn stall() -> (String, Duration) {
    let deadline = Duration::from_secs(30);
    let (h, rec) = host("127.0.0.24:0", "connect = \"stall\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..256 {
        s.write_all(&chunk).await.unwrap();
    }
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let line = {
        let o = rec.lock();
        o.sessions[0].transcript.last().map(|l| l.text.clone())
    };
    assert_eq!(
        line.as_deref(),
        Some("[closed after 268435456 octets ignored]")
    );
    h.stop();
    (line.unwrap(), deadline)
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t =
        |v: nix::sys::time::TimeVal| Duration::new(v.tv_sec() as u64, v.tv_usec() as u32 * 1000);
    t(u.user_time()) + t(u.system_time())
}

/// `accept` failing (no descriptor left) pauses instead of spinning, is
/// noted, and the queued connections are served once descriptors are back.
async fn out_of_descriptors() -> (String, Duration) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let deadline = Duration::from_secs(15);
    let (h, rec) = host("127.0.0.25:0", "").await;
    // Connections wait in the listener's queue until accepted.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(std::net::TcpStream::connect(h.addr).unwrap());
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, open + 16, hard).unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time() - before;
    let noted = rec.lock().harness.clone();
    drop(hog);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(
        noted.iter().any(|n| n.contains("could not accept")),
        "{noted:?}"
    );
    // Spinning on accept would burn about one core for the 2 s.
    assert!(spent < Duration::from_millis(500), "CPU {spent:?} in 2 s");
    let until = Instant::now() + Duration::from_secs(5);
    while rec.lock().sessions.len() < clients.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = rec.lock().sessions.len();
    assert_eq!(
        served,
        clients.len(),
        "queued connections served afterwards"
    );
    h.stop();
    (
        format!(
            "CPU {} ms in 2 s without descriptors; {served} served afterwards; {}",
            spent.as_millis(),
            verdict(&rec)
        ),
        deadline,
    )
}
