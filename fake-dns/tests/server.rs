//! End-to-end tests: a running server queried over real UDP and TCP sockets.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use fake_dns::{
    DnsError, DnsHandle, FakeDns, Fault, FaultRule, Outcome, QType, Record, Transport, Zone,
};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

const ANSWER_WAIT: Duration = Duration::from_secs(3);
const SILENCE_WAIT: Duration = Duration::from_millis(500);

async fn start() -> DnsHandle {
    FakeDns::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("server starts")
}

fn query_bytes(name: &str, qtype: RecordType, edns: bool) -> (u16, Vec<u8>) {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(
        Name::from_ascii(name).expect("valid name"),
        qtype,
    ));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        msg.set_edns(opt);
    }
    (msg.metadata.id, msg.to_vec().expect("query encodes"))
}

/// Sends raw bytes over UDP and returns the raw reply, if one comes in time.
async fn udp_raw(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("client binds");
    socket.send_to(bytes, server).await.expect("datagram sent");
    let mut buf = vec![0u8; 65_536];
    match timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((len, _))) => Some(buf[..len].to_vec()),
        _ => None,
    }
}

async fn udp_query_wait(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    wait: Duration,
) -> Option<Message> {
    let (id, bytes) = query_bytes(name, qtype, false);
    let reply = udp_raw(server, &bytes, wait).await?;
    let msg = Message::from_vec(&reply).expect("reply decodes");
    assert_eq!(msg.metadata.id, id, "reply id matches query id");
    Some(msg)
}

async fn udp_query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_query_wait(server, name, qtype, ANSWER_WAIT)
        .await
        .expect("udp reply")
}

async fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("fits a tcp frame");
    stream
        .write_all(&len.to_be_bytes())
        .await
        .expect("prefix sent");
    stream.write_all(bytes).await.expect("body sent");
}

async fn tcp_recv(stream: &mut TcpStream, wait: Duration) -> Option<Message> {
    let read = async {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.ok()?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    };
    let body = timeout(wait, read).await.ok()??;
    Some(Message::from_vec(&body).expect("reply decodes"))
}

async fn tcp_query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("tcp connects");
    let (id, bytes) = query_bytes(name, qtype, false);
    tcp_send(&mut stream, &bytes).await;
    let msg = tcp_recv(&mut stream, ANSWER_WAIT).await.expect("tcp reply");
    assert_eq!(msg.metadata.id, id);
    msg
}

fn mail_zone() -> Zone {
    Zone::new("example.test")
        .with_record(Record::mx("example.test", 10, "mx1.example.test"))
        .with_record(Record::mx("example.test", 20, "mx2.example.test"))
        .with_record(Record::mx("example.test", 5, "backup.other.test"))
        .with_record(Record::a("mx1.example.test", Ipv4Addr::new(192, 0, 2, 1)))
        .with_record(Record::a("mx1.example.test", Ipv4Addr::new(192, 0, 2, 2)).with_ttl(60))
        .with_record(Record::aaaa(
            "mx1.example.test",
            "2001:db8::25".parse::<Ipv6Addr>().expect("v6"),
        ))
        .with_record(Record::cname("smtp.example.test", "mx1.example.test"))
        .with_record(Record::cname("far.example.test", "mail.other.test"))
        .with_record(Record::txt("example.test", "v=spf1 ip4:192.0.2.0/24 -all"))
        .with_record(Record::a(
            "host.deep.sub.example.test",
            Ipv4Addr::new(192, 0, 2, 9),
        ))
        .with_record(Record::null_mx("nomail.example.test"))
}

fn other_zone() -> Zone {
    Zone::new("other.test").with_record(Record::a(
        "mail.other.test",
        Ipv4Addr::new(198, 51, 100, 25),
    ))
}

fn soa_owner(msg: &Message) -> Option<String> {
    msg.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(_) => Some(r.name.to_ascii()),
        _ => None,
    })
}

#[tokio::test]
async fn serves_a_and_aaaa_authoritatively() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let addr = dns.local_addr();

    let a = udp_query(addr, "MX1.Example.Test.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert!(!a.metadata.recursion_available);
    assert!(!a.metadata.truncation);
    let values: Vec<(RData, u32)> = a.answers.iter().map(|r| (r.data.clone(), r.ttl)).collect();
    assert_eq!(
        values,
        vec![
            (RData::A(A(Ipv4Addr::new(192, 0, 2, 1))), 300),
            (RData::A(A(Ipv4Addr::new(192, 0, 2, 2))), 60),
        ]
    );

    let aaaa = tcp_query(addr, "mx1.example.test.", RecordType::AAAA).await;
    assert_eq!(aaaa.answers.len(), 1);
    assert_eq!(
        aaaa.answers[0].data,
        RData::AAAA(AAAA("2001:db8::25".parse().expect("v6")))
    );
}

#[tokio::test]
async fn edns_queries_get_an_opt_record_back() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let (_, bytes) = query_bytes("mx1.example.test.", RecordType::A, true);
    let reply = udp_raw(dns.local_addr(), &bytes, ANSWER_WAIT)
        .await
        .expect("reply");
    let msg = Message::from_vec(&reply).expect("decodes");
    assert!(msg.edns.is_some());
    assert_eq!(msg.answers.len(), 2);
    let (_, plain) = query_bytes("mx1.example.test.", RecordType::A, false);
    let reply = udp_raw(dns.local_addr(), &plain, ANSWER_WAIT)
        .await
        .expect("reply");
    assert!(Message::from_vec(&reply).expect("decodes").edns.is_none());
}

#[tokio::test]
async fn mx_set_keeps_preferences_and_order() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let msg = udp_query(dns.local_addr(), "example.test.", RecordType::MX).await;
    let mx: Vec<(u16, String)> = msg
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::MX(mx) => (mx.preference, mx.exchange.to_ascii()),
            other => panic!("not an MX: {other:?}"),
        })
        .collect();
    assert_eq!(
        mx,
        vec![
            (10, "mx1.example.test.".to_owned()),
            (20, "mx2.example.test.".to_owned()),
            (5, "backup.other.test.".to_owned()),
        ]
    );
}

#[tokio::test]
async fn null_mx_goes_out_as_root_name() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let (_, bytes) = query_bytes("nomail.example.test.", RecordType::MX, false);
    let reply = udp_raw(dns.local_addr(), &bytes, ANSWER_WAIT)
        .await
        .expect("reply");
    // The MX is the last record: RDLENGTH 3, preference 0, root label.
    assert!(
        reply.ends_with(&[0x00, 0x03, 0x00, 0x00, 0x00]),
        "{reply:02x?}"
    );
    let msg = Message::from_vec(&reply).expect("decodes");
    assert_eq!(msg.answers.len(), 1);
    assert_eq!(msg.answers[0].data, RData::MX(MX::new(0, Name::root())));
}

#[tokio::test]
async fn cname_is_chased_within_and_across_zones() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let addr = dns.local_addr();

    let msg = udp_query(addr, "smtp.example.test.", RecordType::A).await;
    assert_eq!(msg.answers.len(), 3);
    assert_eq!(
        msg.answers[0].data,
        RData::CNAME(CNAME(Name::from_ascii("mx1.example.test.").expect("name")))
    );
    assert_eq!(msg.answers[1].name.to_ascii(), "mx1.example.test.");

    // Target in a zone we do not serve yet: only the CNAME.
    let msg = udp_query(addr, "far.example.test.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(msg.answers.len(), 1);

    dns.add_zone(other_zone()).expect("zone loads");
    let msg = udp_query(addr, "far.example.test.", RecordType::A).await;
    assert_eq!(msg.answers.len(), 2);
    assert_eq!(
        msg.answers[1].data,
        RData::A(A(Ipv4Addr::new(198, 51, 100, 25)))
    );
}

#[tokio::test]
async fn serves_txt() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let msg = udp_query(dns.local_addr(), "example.test.", RecordType::TXT).await;
    assert_eq!(msg.answers.len(), 1);
    match &msg.answers[0].data {
        RData::TXT(TXT { txt_data, .. }) => {
            assert_eq!(&*txt_data[0], b"v=spf1 ip4:192.0.2.0/24 -all");
        }
        other => panic!("not a TXT: {other:?}"),
    }
}

#[tokio::test]
async fn nodata_and_nxdomain_carry_the_soa() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let addr = dns.local_addr();

    let nodata = udp_query(addr, "mx1.example.test.", RecordType::MX).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.metadata.authoritative);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_owner(&nodata).as_deref(), Some("example.test."));

    let empty_non_terminal = udp_query(addr, "sub.example.test.", RecordType::A).await;
    assert_eq!(
        empty_non_terminal.metadata.response_code,
        ResponseCode::NoError
    );
    assert!(empty_non_terminal.answers.is_empty());

    let nx = udp_query(addr, "missing.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert_eq!(soa_owner(&nx).as_deref(), Some("example.test."));

    let soa = udp_query(addr, "example.test.", RecordType::SOA).await;
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
}

#[tokio::test]
async fn refuses_names_outside_every_zone() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    for name in ["example.org.", "test.", "badexample.test."] {
        let msg = udp_query(dns.local_addr(), name, RecordType::A).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!msg.metadata.authoritative);
        assert!(msg.answers.is_empty());
    }
    assert!(dns
        .queries()
        .iter()
        .all(|e| e.outcome == Outcome::Refused && e.fault.is_none()));
}

#[tokio::test]
async fn rcode_faults_apply_per_name_and_type() {
    let dns = start().await;
    dns.add_zone(
        mail_zone()
            .with_fault(FaultRule::all("mx1.example.test", Fault::NxDomain))
            .with_fault(FaultRule::for_qtype(
                "example.test",
                QType::Mx,
                Fault::ServFail,
            ))
            .with_fault(FaultRule::all("refuse.example.test", Fault::Refused)),
    )
    .expect("zone loads");
    let addr = dns.local_addr();

    let nx = udp_query(addr, "mx1.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());

    let servfail = tcp_query(addr, "example.test.", RecordType::MX).await;
    assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
    // Only MX is faulted at the apex.
    let txt = udp_query(addr, "example.test.", RecordType::TXT).await;
    assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
    assert_eq!(txt.answers.len(), 1);

    let refused = udp_query(addr, "refuse.example.test.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    let faults: Vec<(String, Option<Fault>, Outcome)> = dns
        .queries()
        .into_iter()
        .map(|e| (e.name, e.fault, e.outcome))
        .collect();
    assert_eq!(
        faults,
        vec![
            (
                "mx1.example.test".into(),
                Some(Fault::NxDomain),
                Outcome::NxDomain
            ),
            (
                "example.test".into(),
                Some(Fault::ServFail),
                Outcome::ServFail
            ),
            ("example.test".into(), None, Outcome::Answered { count: 1 }),
            (
                "refuse.example.test".into(),
                Some(Fault::Refused),
                Outcome::Refused
            ),
        ]
    );
}

#[tokio::test]
async fn timeout_fault_never_answers_on_udp_or_tcp() {
    let dns = start().await;
    dns.add_zone(mail_zone().with_fault(FaultRule::for_qtype(
        "example.test",
        QType::Mx,
        Fault::Timeout,
    )))
    .expect("zone loads");
    let addr = dns.local_addr();

    let udp = udp_query_wait(addr, "example.test.", RecordType::MX, SILENCE_WAIT).await;
    assert!(udp.is_none(), "udp got {udp:?}");

    let mut stream = TcpStream::connect(addr).await.expect("tcp connects");
    let (_, bytes) = query_bytes("example.test.", RecordType::MX, false);
    tcp_send(&mut stream, &bytes).await;
    let mut probe = [0u8; 1];
    let read = timeout(SILENCE_WAIT, stream.read(&mut probe)).await;
    assert!(
        read.is_err(),
        "tcp connection must stay open and silent: {read:?}"
    );
    // The held connection answers nothing else either.
    let (_, other) = query_bytes("mx1.example.test.", RecordType::A, false);
    tcp_send(&mut stream, &other).await;
    let read = timeout(SILENCE_WAIT, stream.read(&mut probe)).await;
    assert!(read.is_err(), "held connection answered: {read:?}");
    drop(stream);

    // Other types at the same name and other clients are unaffected.
    let txt = udp_query(addr, "example.test.", RecordType::TXT).await;
    assert_eq!(txt.answers.len(), 1);
    let dropped: Vec<Transport> = dns
        .queries()
        .iter()
        .filter(|e| e.outcome == Outcome::Dropped)
        .map(|e| e.transport)
        .collect();
    assert_eq!(dropped, vec![Transport::Udp, Transport::Tcp]);
}

#[tokio::test]
async fn truncate_fault_sets_tc_on_udp_and_answers_on_tcp() {
    let dns = start().await;
    dns.add_zone(mail_zone().with_fault(FaultRule::all("example.test", Fault::Truncate)))
        .expect("zone loads");
    let addr = dns.local_addr();

    let udp = udp_query(addr, "example.test.", RecordType::MX).await;
    assert!(udp.metadata.truncation);
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries.len(), 1);

    let tcp = tcp_query(addr, "example.test.", RecordType::MX).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 3);

    let outcomes: Vec<(Transport, Outcome)> = dns
        .queries()
        .iter()
        .map(|e| (e.transport, e.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (Transport::Udp, Outcome::Truncated),
            (Transport::Tcp, Outcome::Answered { count: 3 }),
        ]
    );
}

#[tokio::test]
async fn zones_come_and_go_while_running() {
    let dns = start().await;
    let addr = dns.local_addr();
    let before = udp_query(addr, "mail.other.test.", RecordType::A).await;
    assert_eq!(before.metadata.response_code, ResponseCode::Refused);

    dns.add_zone(other_zone()).expect("zone loads");
    assert!(matches!(
        dns.add_zone(Zone::new("OTHER.test.")),
        Err(DnsError::DuplicateZone(_))
    ));
    assert!(matches!(
        dns.add_zone(Zone::new("x.test").with_record(Record::a("y.test", Ipv4Addr::LOCALHOST))),
        Err(DnsError::OutOfZone { .. })
    ));
    assert!(matches!(
        dns.add_zone(Zone::new("bad..test")),
        Err(DnsError::InvalidName { .. })
    ));
    assert_eq!(dns.zones(), vec!["other.test".to_owned()]);

    let during = udp_query(addr, "mail.other.test.", RecordType::A).await;
    assert_eq!(during.answers.len(), 1);

    assert!(dns.remove_zone("Other.Test."));
    assert!(!dns.remove_zone("other.test"));
    let after = udp_query(addr, "mail.other.test.", RecordType::A).await;
    assert_eq!(after.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn query_log_records_what_was_asked() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    dns.add_zone(other_zone()).expect("zone loads");
    let addr = dns.local_addr();
    let t0 = SystemTime::now();

    udp_query(addr, "MX1.EXAMPLE.TEST.", RecordType::A).await;
    tcp_query(addr, "example.test.", RecordType::MX).await;
    udp_query(addr, "mail.other.test.", RecordType::AAAA).await;
    udp_query(addr, "nope.example.test.", RecordType::TXT).await;
    let t1 = SystemTime::now();

    let log = dns.queries();
    let seen: Vec<(&str, &str, Transport, Outcome)> = log
        .iter()
        .map(|e| (e.name.as_str(), e.qtype.as_str(), e.transport, e.outcome))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "mx1.example.test",
                "A",
                Transport::Udp,
                Outcome::Answered { count: 2 }
            ),
            (
                "example.test",
                "MX",
                Transport::Tcp,
                Outcome::Answered { count: 3 }
            ),
            ("mail.other.test", "AAAA", Transport::Udp, Outcome::NoData),
            (
                "nope.example.test",
                "TXT",
                Transport::Udp,
                Outcome::NxDomain
            ),
        ]
    );
    for pair in log.windows(2) {
        assert!(pair[0].elapsed <= pair[1].elapsed);
        assert!(pair[0].at <= pair[1].at);
    }
    assert!(log.iter().all(|e| e.at >= t0 && e.at <= t1));
    assert!(log.iter().all(|e| e.peer.ip() == Ipv4Addr::LOCALHOST));

    let example: Vec<String> = dns
        .queries_for("Example.Test.")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        example,
        vec!["mx1.example.test", "example.test", "nope.example.test"]
    );
    assert_eq!(dns.queries_for("other.test").len(), 1);
    assert!(dns.queries_for("ample.test").is_empty());
    assert!(dns.queries_for("not a name..").is_empty());

    dns.clear_queries();
    assert!(dns.queries().is_empty());
}

#[tokio::test]
async fn subscribers_see_live_events() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let addr = dns.local_addr();
    let mut events = dns.subscribe();

    udp_query(addr, "example.test.", RecordType::MX).await;
    let event = timeout(ANSWER_WAIT, events.recv())
        .await
        .expect("event in time")
        .expect("channel open");
    assert_eq!(event.name, "example.test");
    assert_eq!(event.qtype, "MX");
    assert_eq!(event.outcome, Outcome::Answered { count: 3 });
    assert_eq!(event, dns.queries()[0]);

    // wait_for_query finds past entries and future ones.
    let past = dns
        .wait_for_query(Duration::ZERO, |e| e.qtype == "MX")
        .await;
    assert!(past.is_some());
    let waiter = dns.wait_for_query(ANSWER_WAIT, |e| e.name == "mx2.example.test");
    let (found, _) = tokio::join!(waiter, udp_query(addr, "mx2.example.test.", RecordType::A));
    assert_eq!(found.map(|e| e.outcome), Some(Outcome::NxDomain));
    let missing = dns
        .wait_for_query(Duration::from_millis(50), |e| {
            e.name == "never.example.test"
        })
        .await;
    assert!(missing.is_none());
}

#[tokio::test]
async fn malformed_input_never_stops_the_server() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let addr = dns.local_addr();

    // Too short for a header: hickory-server drops it before the handler.
    assert!(udp_raw(addr, b"\x01\x02\x03", SILENCE_WAIT).await.is_none());
    // Header claiming one question, followed by garbage: hickory-server
    // answers FORMERR itself.
    let garbage = [
        0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x61,
    ];
    let reply = udp_raw(addr, &garbage, ANSWER_WAIT).await.expect("formerr");
    let formerr = Message::from_vec(&reply).expect("decodes");
    assert_eq!(formerr.metadata.id, 0xbeef);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    // A DNS response sent to the server is never answered.
    let (_, mut as_response) = query_bytes("mx1.example.test.", RecordType::A, false);
    as_response[2] |= 0x80;
    assert!(udp_raw(addr, &as_response, SILENCE_WAIT).await.is_none());
    // Oversized datagram: cut to hickory-server's receive buffer, then
    // dropped and logged by the handler.
    assert!(udp_raw(addr, &vec![0u8; 9000], SILENCE_WAIT)
        .await
        .is_none());
    // A query without a question reaches the handler: FORMERR, logged.
    let no_question = [0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let reply = udp_raw(addr, &no_question, ANSWER_WAIT)
        .await
        .expect("formerr");
    let formerr = Message::from_vec(&reply).expect("decodes");
    assert_eq!(formerr.metadata.id, 0x1234);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);

    // TCP: a frame too short for a header is dropped without an answer and
    // the connection stays usable.
    let mut stream = TcpStream::connect(addr).await.expect("tcp connects");
    stream
        .write_all(&[0x00, 0x02, 0xff, 0xff])
        .await
        .expect("sent");
    assert!(tcp_recv(&mut stream, SILENCE_WAIT).await.is_none());
    // A frame with a readable header and a garbage body: FORMERR.
    tcp_send(&mut stream, &garbage).await;
    let formerr = tcp_recv(&mut stream, ANSWER_WAIT).await.expect("formerr");
    assert_eq!(formerr.metadata.id, 0xbeef);
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    let (id, bytes) = query_bytes("mx1.example.test.", RecordType::A, false);
    tcp_send(&mut stream, &bytes).await;
    let ok = tcp_recv(&mut stream, ANSWER_WAIT).await.expect("answer");
    assert_eq!(ok.metadata.id, id);
    assert_eq!(ok.answers.len(), 2);

    let ok = udp_query(addr, "mx1.example.test.", RecordType::A).await;
    assert_eq!(ok.answers.len(), 2);
    let ok = tcp_query(addr, "mx1.example.test.", RecordType::A).await;
    assert_eq!(ok.answers.len(), 2);

    // Only what hickory-server passes on to the handler is logged.
    let malformed: Vec<Transport> = dns
        .queries()
        .iter()
        .filter(|e| e.outcome == Outcome::Malformed)
        .map(|e| e.transport)
        .collect();
    assert_eq!(malformed, vec![Transport::Udp, Transport::Udp]);
    assert_eq!(dns.queries().len(), 5);
}

#[tokio::test]
async fn several_tcp_queries_share_one_connection() {
    let dns = start().await;
    dns.add_zone(mail_zone()).expect("zone loads");
    let mut stream = TcpStream::connect(dns.local_addr())
        .await
        .expect("tcp connects");
    for (name, qtype, expected) in [
        ("mx1.example.test.", RecordType::A, 2),
        ("example.test.", RecordType::MX, 3),
        ("mx1.example.test.", RecordType::AAAA, 1),
    ] {
        let (id, bytes) = query_bytes(name, qtype, false);
        tcp_send(&mut stream, &bytes).await;
        let msg = tcp_recv(&mut stream, ANSWER_WAIT).await.expect("reply");
        assert_eq!(msg.metadata.id, id);
        assert_eq!(msg.answers.len(), expected, "{name} {qtype}");
    }
}

#[tokio::test]
async fn shutdown_and_drop_release_the_port() {
    let dns = start().await;
    dns.add_zone(mail_zone().with_fault(FaultRule::all("example.test", Fault::Timeout)))
        .expect("zone loads");
    let addr = dns.local_addr();
    // A connection held by the Timeout fault does not delay shutdown.
    let mut held = TcpStream::connect(addr).await.expect("tcp connects");
    let (_, bytes) = query_bytes("example.test.", RecordType::MX, false);
    tcp_send(&mut held, &bytes).await;
    dns.wait_for_query(ANSWER_WAIT, |e| e.outcome == Outcome::Dropped)
        .await
        .expect("query reached the server");
    timeout(ANSWER_WAIT, dns.shutdown())
        .await
        .expect("shutdown does not wait for held connections");
    let mut buf = [0u8; 16];
    let closed = timeout(ANSWER_WAIT, held.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    TcpListener::bind(addr)
        .await
        .expect("tcp port free after shutdown");
    UdpSocket::bind(addr)
        .await
        .expect("udp port free after shutdown");

    let dns = start().await;
    let addr = dns.local_addr();
    drop(dns);
    let mut freed = false;
    for _ in 0..100 {
        if UdpSocket::bind(addr).await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "udp port still bound after drop");
}

#[tokio::test]
async fn start_reports_a_bind_error() {
    let first = start().await;
    let taken = FakeDns::start(first.local_addr()).await;
    assert!(matches!(taken, Err(DnsError::Bind { .. })));
}

#[test]
fn handle_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<DnsHandle>();
    assert_send_sync::<fake_dns::QueryLogEntry>();
    assert_send_sync::<DnsError>();
}
