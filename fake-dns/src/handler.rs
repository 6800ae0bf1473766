//! Transport-independent request handling: decode, resolve, encode, log.

use std::net::SocketAddr;
use std::sync::{PoisonError, RwLock};

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::log::{Event, Outcome, QueryLog, Transport};
use crate::names;
use crate::store::{Resolution, ZoneSet};
use crate::zone::{Fault, QType};

/// Largest query accepted; real queries are a few hundred bytes at most.
pub(crate) const MAX_QUERY_LEN: usize = 4096;
/// A DNS header is twelve bytes; anything shorter is noise.
pub(crate) const HEADER_LEN: usize = 12;
/// Queries carrying more records than this in any section are refused as
/// malformed, which also bounds decoder allocations.
const MAX_SECTION_RECORDS: u16 = 8;
/// UDP size every client supports (RFC 1035).
const MIN_UDP_PAYLOAD: u16 = 512;
/// Upper bound on the client-advertised EDNS size we honour.
const MAX_UDP_PAYLOAD: u16 = 4096;
/// EDNS size we advertise in responses (DNS flag day 2020).
const ADVERTISED_PAYLOAD: u16 = 1232;
/// A TCP message cannot be longer than its 16-bit length prefix.
const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// What the transport should do after a message was handled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Send these bytes (without TCP length prefix).
    Send(Vec<u8>),
    /// Send nothing and, on TCP, hold the connection silently.
    Silent,
    /// Send nothing and carry on.
    Ignore,
}

/// State shared between the handle and the network tasks.
pub(crate) struct Shared {
    pub(crate) zones: RwLock<ZoneSet>,
    pub(crate) log: QueryLog,
}

/// What gets written to the query log for one message.
struct Noted {
    name: String,
    qtype: String,
    outcome: Outcome,
    fault: Option<Fault>,
}

impl Noted {
    fn malformed() -> Self {
        Self {
            name: String::new(),
            qtype: String::new(),
            outcome: Outcome::Malformed,
            fault: None,
        }
    }
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            zones: RwLock::new(ZoneSet::default()),
            log: QueryLog::new(),
        }
    }

    /// Handles one raw message and logs it.
    pub(crate) fn handle(&self, bytes: &[u8], transport: Transport, peer: SocketAddr) -> Reply {
        let (reply, noted) = self.answer(bytes, transport);
        self.note(transport, peer, noted);
        reply
    }

    /// Logs a message the transport discarded before handling (bad TCP length).
    pub(crate) fn note_malformed(&self, transport: Transport, peer: SocketAddr) {
        self.note(transport, peer, Noted::malformed());
    }

    fn note(&self, transport: Transport, peer: SocketAddr, noted: Noted) {
        self.log.record(Event {
            transport,
            peer,
            name: noted.name,
            qtype: noted.qtype,
            outcome: noted.outcome,
            fault: noted.fault,
        });
    }

    fn answer(&self, bytes: &[u8], transport: Transport) -> (Reply, Noted) {
        if bytes.len() < HEADER_LEN || bytes.len() > MAX_QUERY_LEN {
            return (Reply::Ignore, Noted::malformed());
        }
        let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
            return (Reply::Ignore, Noted::malformed());
        };
        let meta = header.metadata;
        if meta.message_type == MessageType::Response {
            // Never answer responses: that would allow reflection loops.
            return (Reply::Ignore, Noted::malformed());
        }
        if meta.op_code != OpCode::Query {
            let reply = error_reply(&meta, ResponseCode::NotImp);
            let noted = Noted {
                outcome: Outcome::NotImplemented,
                ..Noted::malformed()
            };
            return (reply, noted);
        }
        let counts = header.counts;
        if counts.queries != 1
            || counts.answers > MAX_SECTION_RECORDS
            || counts.authorities > MAX_SECTION_RECORDS
            || counts.additionals > MAX_SECTION_RECORDS
        {
            return (
                error_reply(&meta, ResponseCode::FormErr),
                Noted::malformed(),
            );
        }
        let request = match Message::from_vec(bytes) {
            Ok(request) => request,
            Err(_) => {
                return (
                    error_reply(&meta, ResponseCode::FormErr),
                    Noted::malformed(),
                )
            }
        };
        let Some(query) = request.queries.first() else {
            return (
                error_reply(&meta, ResponseCode::FormErr),
                Noted::malformed(),
            );
        };

        let qname = names::normalize(query.name());
        let qtype = u16::from(query.query_type());
        let mut noted = Noted {
            name: names::display(&qname),
            qtype: QType::from(qtype).to_string(),
            outcome: Outcome::Malformed,
            fault: None,
        };
        let mut response = response_skeleton(&request);

        let resolution = if query.query_class() == DNSClass::IN {
            self.zones
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .resolve(&qname, qtype, transport)
        } else {
            Resolution::NotAuthoritative
        };
        match resolution {
            Resolution::NotAuthoritative => {
                response.metadata.response_code = ResponseCode::Refused;
            }
            Resolution::Fault(fault) => {
                noted.fault = Some(fault);
                match fault {
                    Fault::Timeout => {
                        noted.outcome = Outcome::Dropped;
                        return (Reply::Silent, noted);
                    }
                    Fault::NxDomain => {
                        response.metadata.authoritative = true;
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                    Fault::ServFail => response.metadata.response_code = ResponseCode::ServFail,
                    Fault::Refused => response.metadata.response_code = ResponseCode::Refused,
                    Fault::Truncate => {
                        response.metadata.authoritative = true;
                        response.metadata.truncation = true;
                    }
                }
            }
            Resolution::Data {
                rcode,
                answers,
                authorities,
                fault,
            } => {
                noted.fault = fault;
                response.metadata.authoritative = true;
                response.metadata.response_code = rcode;
                response.answers = answers;
                response.authorities = authorities;
            }
        }

        let limit = match transport {
            Transport::Udp => usize::from(
                request
                    .max_payload()
                    .clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            ),
            Transport::Tcp => MAX_TCP_MESSAGE,
        };
        let (reply, sent) = encode(response, limit);
        noted.outcome = sent.map_or(Outcome::Dropped, |m| outcome_of(&m));
        (reply, noted)
    }
}

/// Response header and question copied from the request; RA stays clear.
fn response_skeleton(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(ADVERTISED_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// A question-less error response built from the request header alone.
fn error_reply(request: &Metadata, rcode: ResponseCode) -> Reply {
    let mut response = Message::error_msg(request.id, request.op_code, rcode);
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.checking_disabled = request.checking_disabled;
    match response.to_vec() {
        Ok(bytes) => Reply::Send(bytes),
        Err(_) => Reply::Ignore,
    }
}

/// Encodes a response, falling back to an empty TC=1 copy when it exceeds
/// `limit` and to SERVFAIL when it cannot be encoded at all. Returns the
/// message actually sent, for logging.
fn encode(response: Message, limit: usize) -> (Reply, Option<Message>) {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return (Reply::Send(bytes), Some(response)),
        Ok(_) => {
            let truncated = response.truncate();
            if let Ok(bytes) = truncated.to_vec() {
                return (Reply::Send(bytes), Some(truncated));
            }
        }
        Err(_) => {}
    }
    let mut failure = Message::error_msg(
        response.metadata.id,
        response.metadata.op_code,
        ResponseCode::ServFail,
    );
    failure.add_queries(response.queries.iter().cloned());
    match failure.to_vec() {
        Ok(bytes) => (Reply::Send(bytes), Some(failure)),
        Err(_) => (Reply::Ignore, None),
    }
}

fn outcome_of(sent: &Message) -> Outcome {
    if sent.metadata.truncation {
        return Outcome::Truncated;
    }
    match sent.metadata.response_code {
        ResponseCode::NoError if sent.answers.is_empty() => Outcome::NoData,
        ResponseCode::NoError => Outcome::Answered {
            count: sent.answers.len(),
        },
        ResponseCode::NXDomain => Outcome::NxDomain,
        ResponseCode::Refused => Outcome::Refused,
        ResponseCode::FormErr => Outcome::Malformed,
        ResponseCode::NotImp => Outcome::NotImplemented,
        _ => Outcome::ServFail,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;
    use crate::store::CompiledZone;
    use crate::zone::{FaultRule, Record, Zone};

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn shared_with(zone: Zone) -> Shared {
        let shared = Shared::new();
        shared
            .zones
            .write()
            .expect("fresh lock")
            .insert(CompiledZone::compile(&zone).expect("valid zone"))
            .expect("unique");
        shared
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).expect("valid"), qtype));
        msg.to_vec().expect("encodes")
    }

    fn sent(reply: Reply) -> Message {
        match reply {
            Reply::Send(bytes) => Message::from_vec(&bytes).expect("decodes"),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn answers_are_authoritative_and_never_recursive() {
        let shared = shared_with(
            Zone::new("example.test")
                .with_record(Record::a("example.test", Ipv4Addr::new(192, 0, 2, 9))),
        );
        let response = sent(shared.handle(
            &query("Example.TEST.", RecordType::A),
            Transport::Udp,
            peer(),
        ));
        assert!(response.metadata.authoritative);
        assert!(!response.metadata.recursion_available);
        assert!(response.metadata.recursion_desired);
        assert_eq!(
            response.answers[0].data,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 9)))
        );
        let log = shared.log.snapshot();
        assert_eq!(log[0].name, "example.test");
        assert_eq!(log[0].qtype, "A");
        assert_eq!(log[0].outcome, Outcome::Answered { count: 1 });
    }

    #[test]
    fn hostile_inputs_are_logged_and_never_answered_wrongly() {
        let shared = shared_with(Zone::new("example.test"));
        assert_eq!(shared.handle(&[], Transport::Udp, peer()), Reply::Ignore);
        assert_eq!(
            shared.handle(&[0xff; 11], Transport::Udp, peer()),
            Reply::Ignore
        );
        assert_eq!(
            shared.handle(&vec![0u8; MAX_QUERY_LEN + 1], Transport::Udp, peer()),
            Reply::Ignore
        );
        // A header claiming 65535 questions followed by garbage.
        let mut many = vec![0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        many.extend_from_slice(&[0xc0, 0x0c, 0xc0, 0x0c]);
        let response = sent(shared.handle(&many, Transport::Udp, peer()));
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(response.metadata.id, 0x1234);
        // One question whose name is a compression-pointer loop.
        let looped = [
            0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ];
        let response = sent(shared.handle(&looped, Transport::Udp, peer()));
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        // A response message must not be answered.
        let mut as_response = query("example.test.", RecordType::A);
        as_response[2] |= 0x80;
        assert_eq!(
            shared.handle(&as_response, Transport::Udp, peer()),
            Reply::Ignore
        );
        // Unknown opcode → NOTIMP.
        let mut status = query("example.test.", RecordType::A);
        status[2] = (status[2] & 0x87) | (2 << 3);
        let response = sent(shared.handle(&status, Transport::Tcp, peer()));
        assert_eq!(response.metadata.response_code, ResponseCode::NotImp);

        let outcomes: Vec<Outcome> = shared.log.snapshot().iter().map(|e| e.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::NotImplemented,
            ]
        );
    }

    #[test]
    fn non_internet_class_is_refused() {
        let shared = shared_with(Zone::new("example.test"));
        let mut msg = Message::query();
        let mut q = Query::query(
            Name::from_ascii("example.test.").expect("valid"),
            RecordType::A,
        );
        q.set_query_class(DNSClass::CH);
        msg.add_query(q);
        let response = sent(shared.handle(&msg.to_vec().expect("encodes"), Transport::Udp, peer()));
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        assert!(!response.metadata.authoritative);
    }

    #[test]
    fn oversized_udp_answers_are_truncated_but_tcp_is_not() {
        let mut zone = Zone::new("example.test");
        for i in 0..40u8 {
            zone.records
                .push(Record::a("big.example.test", Ipv4Addr::new(10, 0, 0, i)));
        }
        let shared = shared_with(zone);
        let q = query("big.example.test.", RecordType::A);
        let udp = sent(shared.handle(&q, Transport::Udp, peer()));
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let tcp = sent(shared.handle(&q, Transport::Tcp, peer()));
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 40);
        let log = shared.log.snapshot();
        assert_eq!(log[0].outcome, Outcome::Truncated);
        assert_eq!(log[1].outcome, Outcome::Answered { count: 40 });
    }

    #[test]
    fn timeout_fault_is_silent_and_logged() {
        let shared = shared_with(
            Zone::new("example.test").with_fault(FaultRule::all("example.test", Fault::Timeout)),
        );
        let reply = shared.handle(
            &query("example.test.", RecordType::MX),
            Transport::Udp,
            peer(),
        );
        assert_eq!(reply, Reply::Silent);
        let log = shared.log.snapshot();
        assert_eq!(log[0].outcome, Outcome::Dropped);
        assert_eq!(log[0].fault, Some(Fault::Timeout));
        assert_eq!(log[0].qtype, "MX");
    }
}
