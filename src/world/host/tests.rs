//! Unit tests of the fake host: scripts per attempt and per command, bounds.

use super::*;
use crate::suite::{parse_scenario, Scenario};
use tokio::io::AsyncReadExt;

fn scenario(hosts: &str) -> Scenario {
    let text = format!(
        "title = \"t\"\nrule = \"r\"\nrfc = \"RFC 5321\"\nstrength = \"MUST\"\n{hosts}\n\
         [[message]]\nfrom = \"a@src.test\"\nto = [\"b@dest.test\"]\n[[expect]]\ncontacted = \"h\"\n"
    );
    parse_scenario(std::path::Path::new("x/0001-h.toml"), &text).unwrap()
}

async fn start(hosts: &str) -> (Host, Recorder) {
    let sc = scenario(hosts);
    let spec = sc.hosts.into_iter().find(|h| h.key == "h").unwrap();
    let rec = Recorder::default();
    let host = Host::start(spec, "127.0.0.1:0".parse().unwrap(), rec.clone())
        .await
        .unwrap();
    (host, rec)
}

async fn read_reply(s: &mut BufReader<TcpStream>, out: &mut Vec<String>) {
    loop {
        let mut l = Vec::new();
        if read_line(s, &mut l, 4096).await.unwrap_or(0) == 0 {
            return;
        }
        let l = String::from_utf8_lossy(&l).trim_end().to_string();
        let last = l.as_bytes().get(3) != Some(&b'-');
        out.push(l);
        if last {
            return;
        }
    }
}

/// Send lines one by one; return every reply line the host sent.
async fn talk(addr: SocketAddr, lines: &[&str]) -> Vec<String> {
    let mut s = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), read_reply(&mut s, &mut out))
        .await
        .unwrap();
    let mut in_data = false;
    for l in lines {
        s.get_mut()
            .write_all(format!("{l}\r\n").as_bytes())
            .await
            .unwrap();
        if !in_data || *l == "." {
            tokio::time::timeout(Duration::from_secs(5), read_reply(&mut s, &mut out))
                .await
                .unwrap();
            in_data = *l == "DATA" && out.last().is_some_and(|r| r.starts_with("354"));
        }
    }
    out
}

const ENVELOPE: &[&str] = &[
    "EHLO t",
    "MAIL FROM:<a@x.test>",
    "RCPT TO:<b@y.test>",
    "RCPT TO:<c@y.test>",
    "DATA",
];

#[tokio::test]
async fn scripts_apply_per_attempt_and_per_rcpt() {
    let (host, rec) = start(
        "[hosts.h]\nname = \"h.dest.test\"\n\
         [[hosts.h.attempt]]\nrcpt = [\"250 ok\", \"451 4.2.0 later\"]\n\
         [[hosts.h.attempt]]\ngreeting = \"421 4.3.2 busy\"\n",
    )
    .await;
    let mut lines = ENVELOPE.to_vec();
    lines.extend(["Subject: hi", "", "..dot", "."]);
    let r = talk(host.addr, &lines).await;
    assert_eq!(r[0], "220 fake host ready");
    assert!(r.contains(&"451 4.2.0 later".to_string()), "{r:?}");
    assert_eq!(r.last().unwrap(), "250 2.0.0 queued");
    // Second and later attempts: 421 at the greeting.
    let r = talk(host.addr, &[]).await;
    assert_eq!(r, vec!["421 4.3.2 busy".to_string()]);
    let r = talk(host.addr, &[]).await;
    assert_eq!(r, vec!["421 4.3.2 busy".to_string()]);

    let o = rec.lock();
    assert_eq!(o.sessions.len(), 3);
    assert_eq!(o.sessions[0].attempt, 0);
    let d = &o.sessions[0].deliveries[0];
    assert_eq!(d.mail_from, "a@x.test");
    assert_eq!(
        d.rcpts,
        vec!["b@y.test".to_string()],
        "only the accepted recipient"
    );
    assert_eq!(
        d.data, b"Subject: hi\r\n\r\n.dot\r\n",
        "dot-stuffing undone"
    );
    assert_eq!(o.sessions[1].attempt, 1);
    assert!(o.sessions[1].deliveries.is_empty());
}

#[tokio::test]
async fn refuse_ends_the_script() {
    let (host, _rec) = start(
        "[hosts.h]\nname = \"h.dest.test\"\n[[hosts.h.attempt]]\n[[hosts.h.attempt]]\nconnect = \"refuse\"\n",
    )
    .await;
    let r = talk(host.addr, &["QUIT"]).await;
    assert_eq!(r.last().unwrap(), "221 2.0.0 bye");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = TcpStream::connect(host.addr).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn data_without_recipients_and_overlong_lines_are_answered() {
    let (host, rec) = start("[hosts.h]\nname = \"h.dest.test\"\n[[hosts.h.attempt]]\nrcpt = \"550 5.1.1 no such user\"\n").await;
    let r = talk(host.addr, ENVELOPE).await;
    assert_eq!(r.last().unwrap(), "554 5.5.1 no valid recipients");
    let long = "NOOP ".to_string() + &"x".repeat(MAX_COMMAND_LINE);
    let r = talk(host.addr, &[long.as_str()]).await;
    assert_eq!(r.last().unwrap(), "500 5.5.2 line too long");
    assert!(rec.lock().sessions.iter().all(|s| s.deliveries.is_empty()));
}

#[tokio::test]
async fn reset_and_drop_close_at_once() {
    let (host, _rec) =
        start("[hosts.h]\nname = \"h.dest.test\"\n[[hosts.h.attempt]]\nconnect = \"drop\"\n").await;
    let mut s = TcpStream::connect(host.addr).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "closed without a greeting");
}

#[test]
fn kept_messages_are_capped_per_scenario_and_the_loss_is_recorded() {
    use crate::run::observe::{limits, Observations};
    let mut o = Observations::default();
    for host in ["a", "b"] {
        o.sessions.push(Session::opened(host, 0, Duration::ZERO));
    }
    let d = |octets: usize| Delivery {
        host: "a".into(),
        attempt: 0,
        at: Duration::ZERO,
        mail_from: "x@y.test".into(),
        mail_params: Vec::new(),
        rcpts: vec!["r@y.test".into()],
        data: vec![b'x'; octets],
    };
    // The count limit spans every session of the scenario.
    for i in 0..limits::MESSAGES + 5 {
        keep(&mut o, i % 2, d(10));
    }
    let kept: usize = o.sessions.iter().map(|s| s.deliveries.len()).sum();
    assert_eq!(kept, limits::MESSAGES);
    assert_eq!(o.lost.len(), 1, "said once: {:?}", o.lost);
    // So does the octet limit.
    let mut o2 = Observations {
        sessions: o.sessions.clone(),
        ..Default::default()
    };
    o2.sessions.iter_mut().for_each(|s| s.deliveries.clear());
    keep(&mut o2, 0, d(limits::MESSAGE_OCTETS - 100));
    keep(&mut o2, 1, d(100));
    assert!(o2.lost.is_empty());
    keep(&mut o2, 1, d(1));
    assert_eq!(o2.sessions[1].deliveries.len(), 1);
    assert!(
        o2.lost[0].contains("later messages were not kept"),
        "{:?}",
        o2.lost
    );
}
