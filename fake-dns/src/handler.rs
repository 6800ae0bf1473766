//! Request handling behind hickory-server: resolve, apply faults, build the response, log.

use std::iter;
use std::net::SocketAddr;
use std::slice;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};

use crate::log::{Event, Outcome, QueryLog, Transport};
use crate::names;
use crate::server::TIMEOUT_FAULT_HOLD;
use crate::store::{Resolution, ZoneSet};
use crate::zone::{Fault, QType};

/// Largest query accepted; real queries are a few hundred bytes at most.
const MAX_QUERY_LEN: usize = 4096;
/// hickory-server reads UDP datagrams into a buffer of this size and silently
/// cuts longer ones, so a datagram that fills it may have been cut.
const UDP_RECEIVE_BUFFER: usize = hickory_server::net::udp::MAX_RECEIVE_BUFFER_SIZE;
/// Queries carrying more records than this in any section are refused as
/// malformed.
const MAX_SECTION_RECORDS: usize = 8;
/// UDP size every client supports (RFC 1035).
const MIN_UDP_PAYLOAD: u16 = 512;
/// EDNS size we advertise in responses, and the largest UDP response we send
/// (DNS flag day 2020).
const ADVERTISED_PAYLOAD: u16 = 1232;

/// State shared between the handle and the request handler.
pub(crate) struct Shared {
    pub(crate) zones: RwLock<ZoneSet>,
    pub(crate) log: QueryLog,
}

/// The [`RequestHandler`] hickory-server calls for every request it decoded.
pub(crate) struct FakeDnsHandler {
    shared: Arc<Shared>,
    /// How long a TCP request hit by the `Timeout` fault is held.
    timeout_hold: Duration,
}

impl FakeDnsHandler {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            timeout_hold: TIMEOUT_FAULT_HOLD,
        }
    }
}

/// What to do with one request.
enum Plan {
    /// Send nothing.
    Ignore,
    /// Send nothing: the `Timeout` fault.
    Silent,
    /// A question-less error response built from the request header.
    Error(ResponseCode),
    /// A full response.
    Respond(Reply),
}

/// A response before encoding; the question section comes from the request.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    edns: Option<Edns>,
}

/// The concrete [`MessageResponse`] a [`Reply`] turns into.
type ReplyMessage<'q> = MessageResponse<
    'q,
    'q,
    slice::Iter<'q, Record>,
    slice::Iter<'q, Record>,
    iter::Empty<&'q Record>,
    iter::Empty<&'q Record>,
>;

/// What gets written to the query log for one request.
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

#[async_trait::async_trait]
impl RequestHandler for FakeDnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let transport = if request.protocol().is_datagram() {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let (plan, mut noted) = self.shared.plan(request, transport);
        // Log before sending, so a client that has its answer finds the entry.
        match plan {
            Plan::Ignore => {
                self.shared.note(transport, request.src(), noted);
                unsent(request)
            }
            Plan::Silent => {
                self.shared.note(transport, request.src(), noted);
                if transport == Transport::Tcp {
                    // hickory-server handles the messages of one connection
                    // in order, so holding this request keeps the whole
                    // connection silent.
                    T::delay_for(self.timeout_hold).await;
                }
                unsent(request)
            }
            Plan::Error(rcode) => {
                self.shared.note(transport, request.src(), noted);
                let Ok(no_queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return unsent(request);
                };
                let response = MessageResponseBuilder::new(&no_queries, None)
                    .error_msg(&request.metadata, rcode);
                response_handle
                    .send_response(response)
                    .await
                    .unwrap_or_else(|_| unsent(request))
            }
            Plan::Respond(reply) => {
                let reply = reply.fit(&request.queries, size_limit(request, transport));
                noted.outcome = reply.outcome();
                self.shared.note(transport, request.src(), noted);
                response_handle
                    .send_response(reply.message(&request.queries))
                    .await
                    .unwrap_or_else(|_| unsent(request))
            }
        }
    }
}

/// What a request that got no response reports to hickory-server.
fn unsent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// Largest response for this request: the client's EDNS size on UDP (at
/// least 512, at most what we advertise), the 16-bit frame limit on TCP.
fn size_limit(request: &Request, transport: Transport) -> u16 {
    match transport {
        Transport::Udp => request
            .max_payload()
            .clamp(MIN_UDP_PAYLOAD, ADVERTISED_PAYLOAD),
        Transport::Tcp => u16::MAX,
    }
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            zones: RwLock::new(ZoneSet::default()),
            log: QueryLog::new(),
        }
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

    /// Decides the response to one request. For [`Plan::Respond`] the
    /// outcome is settled once the reply is fitted to the transport.
    fn plan(&self, request: &Request, transport: Transport) -> (Plan, Noted) {
        let len = request.as_slice().len();
        if len > MAX_QUERY_LEN || (transport == Transport::Udp && len >= UDP_RECEIVE_BUFFER) {
            return (Plan::Ignore, Noted::malformed());
        }
        let meta = &request.metadata;
        if meta.message_type == MessageType::Response {
            // Never answer responses: that would allow reflection loops.
            // (hickory-server already drops them; this guards the handler.)
            return (Plan::Ignore, Noted::malformed());
        }
        if meta.op_code != OpCode::Query {
            let noted = Noted {
                outcome: Outcome::NotImplemented,
                ..Noted::malformed()
            };
            return (Plan::Error(ResponseCode::NotImp), noted);
        }
        let too_many = |records: &[Record]| records.len() > MAX_SECTION_RECORDS;
        let query = match request.queries.queries() {
            [query]
                if !too_many(&request.answers)
                    && !too_many(&request.authorities)
                    && !too_many(&request.additionals) =>
            {
                query.original()
            }
            _ => return (Plan::Error(ResponseCode::FormErr), Noted::malformed()),
        };

        let qname = names::normalize(query.name());
        let qtype = u16::from(query.query_type());
        let mut noted = Noted {
            name: names::display(&qname),
            qtype: QType::from(qtype).to_string(),
            outcome: Outcome::Malformed,
            fault: None,
        };
        let mut reply = Reply::to(request);

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
                reply.metadata.response_code = ResponseCode::Refused;
            }
            Resolution::Fault(fault) => {
                noted.fault = Some(fault);
                match fault {
                    Fault::Timeout => {
                        noted.outcome = Outcome::Dropped;
                        return (Plan::Silent, noted);
                    }
                    Fault::NxDomain => {
                        reply.metadata.authoritative = true;
                        reply.metadata.response_code = ResponseCode::NXDomain;
                    }
                    Fault::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
                    Fault::Refused => reply.metadata.response_code = ResponseCode::Refused,
                    Fault::Truncate => {
                        reply.metadata.authoritative = true;
                        reply.metadata.truncation = true;
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
                reply.metadata.authoritative = true;
                reply.metadata.response_code = rcode;
                reply.answers = answers;
                reply.authorities = authorities;
            }
        }
        (Plan::Respond(reply), noted)
    }
}

impl Reply {
    /// An empty response to `request`: header flags copied, RA clear, and an
    /// OPT record when the request had one.
    fn to(request: &Request) -> Self {
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(ADVERTISED_PAYLOAD);
            edns
        });
        Self {
            metadata: Metadata::response_from_request(&request.metadata),
            answers: Vec::new(),
            authorities: Vec::new(),
            edns,
        }
    }

    fn message<'q>(&'q self, queries: &'q Queries) -> ReplyMessage<'q> {
        MessageResponseBuilder::new(queries, self.edns.as_ref()).build(
            self.metadata,
            &self.answers,
            &self.authorities,
            iter::empty(),
            iter::empty(),
        )
    }

    /// Makes the reply fit `limit` bytes: unchanged when it does, else an
    /// empty TC=1 copy, and a bare SERVFAIL when it cannot be encoded at all.
    fn fit(self, queries: &Queries, limit: u16) -> Self {
        let mut buffer = Vec::with_capacity(usize::from(limit.min(4096)));
        let mut encoder = BinEncoder::new(&mut buffer);
        encoder.set_max_size(limit);
        match self.message(queries).destructive_emit(&mut encoder) {
            Ok(info) if info.truncation == self.metadata.truncation => self,
            Ok(_) => {
                let mut metadata = self.metadata;
                metadata.truncation = true;
                Self {
                    metadata,
                    answers: Vec::new(),
                    authorities: Vec::new(),
                    edns: self.edns,
                }
            }
            Err(_) => {
                let mut metadata = self.metadata;
                metadata.authoritative = false;
                metadata.response_code = ResponseCode::ServFail;
                Self {
                    metadata,
                    answers: Vec::new(),
                    authorities: Vec::new(),
                    edns: None,
                }
            }
        }
    }

    fn outcome(&self) -> Outcome {
        if self.metadata.truncation {
            return Outcome::Truncated;
        }
        match self.metadata.response_code {
            ResponseCode::NoError if self.answers.is_empty() => Outcome::NoData,
            ResponseCode::NoError => Outcome::Answered {
                count: self.answers.len(),
            },
            ResponseCode::NXDomain => Outcome::NxDomain,
            ResponseCode::Refused => Outcome::Refused,
            ResponseCode::FormErr => Outcome::Malformed,
            ResponseCode::NotImp => Outcome::NotImplemented,
            _ => Outcome::ServFail,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::net::NetError;

    use super::*;
    use crate::store::CompiledZone;
    use crate::zone::{FaultRule, Record as ZoneRecord, Zone};

    /// A response handler that keeps what it was asked to send.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

    #[async_trait::async_trait]
    impl ResponseHandler for Capture {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, NetError> {
            let mut bytes = Vec::new();
            let info = response.destructive_emit(&mut BinEncoder::new(&mut bytes))?;
            self.0.lock().expect("not poisoned").push(bytes);
            Ok(info)
        }
    }

    fn handler_with(zone: Zone) -> FakeDnsHandler {
        let shared = Shared::new();
        shared
            .zones
            .write()
            .expect("fresh lock")
            .insert(CompiledZone::compile(&zone).expect("valid zone"))
            .expect("unique");
        FakeDnsHandler::new(Arc::new(shared))
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).expect("valid"), qtype));
        msg.to_vec().expect("encodes")
    }

    /// Runs one raw message through the handler; returns the decoded
    /// response, if one was sent.
    async fn ask(handler: &FakeDnsHandler, bytes: &[u8], protocol: Protocol) -> Option<Message> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let request = Request::from_bytes(bytes.to_vec(), peer, protocol).expect("decodable");
        let capture = Capture::default();
        handler
            .handle_request::<_, TokioTime>(&request, capture.clone())
            .await;
        let sent = capture.0.lock().expect("not poisoned").clone();
        assert!(sent.len() <= 1, "at most one response per request");
        sent.first()
            .map(|bytes| Message::from_vec(bytes).expect("response decodes"))
    }

    fn outcomes(handler: &FakeDnsHandler) -> Vec<Outcome> {
        handler
            .shared
            .log
            .snapshot()
            .iter()
            .map(|e| e.outcome)
            .collect()
    }

    #[tokio::test]
    async fn answers_are_authoritative_and_never_recursive() {
        let handler = handler_with(
            Zone::new("example.test")
                .with_record(ZoneRecord::a("example.test", Ipv4Addr::new(192, 0, 2, 9))),
        );
        let response = ask(
            &handler,
            &query("Example.TEST.", RecordType::A),
            Protocol::Udp,
        )
        .await
        .expect("answered");
        assert!(response.metadata.authoritative);
        assert!(!response.metadata.recursion_available);
        assert!(response.metadata.recursion_desired);
        assert_eq!(
            response.answers[0].data,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 9)))
        );
        let log = handler.shared.log.snapshot();
        assert_eq!(log[0].name, "example.test");
        assert_eq!(log[0].qtype, "A");
        assert_eq!(log[0].outcome, Outcome::Answered { count: 1 });
    }

    #[tokio::test]
    async fn decodable_but_unusable_requests_are_logged_and_never_answered_wrongly() {
        let handler = handler_with(Zone::new("example.test"));
        // A UDP datagram filling hickory-server's receive buffer may have
        // been cut: ignored.
        let full = vec![0u8; UDP_RECEIVE_BUFFER];
        assert!(ask(&handler, &full, Protocol::Udp).await.is_none());
        // Longer than any real query, over TCP: ignored.
        let mut long = query("example.test.", RecordType::A);
        long.resize(MAX_QUERY_LEN + 1, 0);
        assert!(ask(&handler, &long, Protocol::Tcp).await.is_none());
        // No question at all: FORMERR without a question section.
        let empty = [0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        let response = ask(&handler, &empty, Protocol::Udp).await.expect("formerr");
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(response.metadata.id, 0x1234);
        assert!(response.metadata.recursion_desired);
        // Two questions: FORMERR.
        let mut two = Message::query();
        for name in ["a.example.test.", "b.example.test."] {
            two.add_query(Query::query(
                Name::from_ascii(name).expect("valid"),
                RecordType::A,
            ));
        }
        let two = two.to_vec().expect("encodes");
        let response = ask(&handler, &two, Protocol::Udp).await.expect("formerr");
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert!(response.queries.is_empty());
        // A response message must not be answered.
        let mut as_response = query("example.test.", RecordType::A);
        as_response[2] |= 0x80;
        assert!(ask(&handler, &as_response, Protocol::Udp).await.is_none());
        // Unknown opcode → NOTIMP.
        let mut status = query("example.test.", RecordType::A);
        status[2] = (status[2] & 0x87) | (2 << 3);
        let response = ask(&handler, &status, Protocol::Tcp).await.expect("notimp");
        assert_eq!(response.metadata.response_code, ResponseCode::NotImp);

        assert_eq!(
            outcomes(&handler),
            vec![
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::Malformed,
                Outcome::NotImplemented,
            ]
        );
    }

    #[tokio::test]
    async fn non_internet_class_is_refused() {
        let handler = handler_with(Zone::new("example.test"));
        let mut msg = Message::query();
        let mut q = Query::query(
            Name::from_ascii("example.test.").expect("valid"),
            RecordType::A,
        );
        q.set_query_class(DNSClass::CH);
        msg.add_query(q);
        let response = ask(&handler, &msg.to_vec().expect("encodes"), Protocol::Udp)
            .await
            .expect("refused");
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        assert!(!response.metadata.authoritative);
        assert_eq!(response.queries.len(), 1);
    }

    #[tokio::test]
    async fn oversized_udp_answers_are_truncated_but_tcp_is_not() {
        let mut zone = Zone::new("example.test");
        for i in 0..40u8 {
            zone.records.push(ZoneRecord::a(
                "big.example.test",
                Ipv4Addr::new(10, 0, 0, i),
            ));
        }
        let handler = handler_with(zone);
        let q = query("big.example.test.", RecordType::A);
        let udp = ask(&handler, &q, Protocol::Udp).await.expect("udp reply");
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.queries.len(), 1);
        let tcp = ask(&handler, &q, Protocol::Tcp).await.expect("tcp reply");
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 40);
        assert_eq!(
            outcomes(&handler),
            vec![Outcome::Truncated, Outcome::Answered { count: 40 }]
        );
    }

    #[tokio::test]
    async fn udp_answers_stay_within_the_advertised_size() {
        let mut zone = Zone::new("example.test");
        // 16 bytes per record: 60 records make about 1000 bytes, 90 about 1500.
        for i in 0..90u8 {
            let addr = Ipv4Addr::new(10, 0, 1, i);
            zone.records.push(ZoneRecord::a("big.example.test", addr));
            if i < 60 {
                zone.records.push(ZoneRecord::a("mid.example.test", addr));
            }
        }
        let handler = handler_with(zone);
        let with_edns = |name: &str, size: u16| {
            let mut msg = Message::query();
            msg.add_query(Query::query(
                Name::from_ascii(name).expect("valid"),
                RecordType::A,
            ));
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            msg.set_edns(edns);
            msg.to_vec().expect("encodes")
        };
        let mid = ask(
            &handler,
            &with_edns("mid.example.test.", 4096),
            Protocol::Udp,
        )
        .await
        .expect("reply");
        assert!(!mid.metadata.truncation);
        assert_eq!(mid.answers.len(), 60);
        assert_eq!(
            mid.edns.as_ref().map(Edns::max_payload),
            Some(ADVERTISED_PAYLOAD)
        );
        let small = ask(
            &handler,
            &with_edns("mid.example.test.", 600),
            Protocol::Udp,
        )
        .await
        .expect("reply");
        assert!(small.metadata.truncation);
        assert!(small.answers.is_empty());
        let big = ask(
            &handler,
            &with_edns("big.example.test.", 4096),
            Protocol::Udp,
        )
        .await
        .expect("reply");
        assert!(big.metadata.truncation);
        assert!(big.answers.is_empty());
    }

    #[tokio::test]
    async fn timeout_fault_is_silent_and_logged() {
        let handler = handler_with(
            Zone::new("example.test").with_fault(FaultRule::all("example.test", Fault::Timeout)),
        );
        let reply = ask(
            &handler,
            &query("example.test.", RecordType::MX),
            Protocol::Udp,
        )
        .await;
        assert!(reply.is_none());
        let log = handler.shared.log.snapshot();
        assert_eq!(log[0].outcome, Outcome::Dropped);
        assert_eq!(log[0].fault, Some(Fault::Timeout));
        assert_eq!(log[0].qtype, "MX");
    }

    #[tokio::test]
    async fn timeout_fault_holds_a_tcp_request() {
        let hold = Duration::from_millis(50);
        let mut handler = handler_with(
            Zone::new("example.test").with_fault(FaultRule::all("example.test", Fault::Timeout)),
        );
        handler.timeout_hold = hold;
        let start = std::time::Instant::now();
        let reply = ask(
            &handler,
            &query("example.test.", RecordType::MX),
            Protocol::Tcp,
        )
        .await;
        assert!(reply.is_none());
        assert!(start.elapsed() >= hold);
        assert_eq!(outcomes(&handler), vec![Outcome::Dropped]);
    }
}
