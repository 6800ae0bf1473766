//! Lab stage: every TCP connection attempt on the lab's loopback, seen as its SYN.
//!
//! A refused connection never reaches a fake host, so the hosts alone cannot
//! tell that the target tried them. A packet socket on `lo` sees the SYN of
//! every attempt, refused or not; only the namespace's own traffic is visible.
//! A retransmitted SYN (same 4-tuple, same initial sequence number) is the
//! same attempt and is not reported again.

use nix::libc;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;

/// A TCP connection attempt (first SYN of a 4-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectAttempt {
    pub at: Instant,
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
}

/// What the watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A connection attempt.
    Attempt(ConnectAttempt),
    /// The kernel dropped this many packets meant for the watcher (its
    /// buffer was full): attempts made meanwhile may be missing.
    Dropped(u32),
}

/// Kernel-side filter: keep only TCP SYNs without ACK (unfragmented IPv4;
/// a packet socket of type `SOCK_DGRAM` sees the IP header at offset 0),
/// and of those only the first 96 bytes. Everything else on `lo` is never
/// queued, so a busy loopback cannot fill the watcher's buffer.
const SYN_FILTER: [libc::sock_filter; 10] = {
    const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }
    [
        op(0x30, 0, 0, 9),      // A = ip[9] (protocol)
        op(0x15, 0, 7, 6),      // TCP? else drop
        op(0x28, 0, 0, 6),      // A = ip[6..8] (flags, fragment offset)
        op(0x45, 5, 0, 0x1fff), // a later fragment: drop
        op(0xb1, 0, 0, 0),      // X = IP header length
        op(0x50, 0, 0, 13),     // A = tcp[13] (flags)
        op(0x54, 0, 0, 0x12),   // A &= SYN | ACK
        op(0x15, 0, 1, 0x02),   // SYN alone? else drop
        op(0x06, 0, 0, 96),     // keep 96 bytes
        op(0x06, 0, 0, 0),      // drop
    ]
};

/// The watcher's receive buffer (bytes).
const RCVBUF: libc::c_int = 4 << 20;

/// Parse an IPv4 packet; return (source, destination, sequence number) when
/// it is a TCP SYN without ACK. Total: any byte string gives a value or `None`.
pub fn parse_syn(pkt: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, u32)> {
    let first = *pkt.first()?;
    if first >> 4 != 4 || *pkt.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let ip = |o: usize| -> Option<Ipv4Addr> {
        let b = pkt.get(o..o + 4)?;
        Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let tcp = pkt.get(ihl..ihl + 14)?;
    let flags = tcp[13];
    if flags & 0x02 == 0 || flags & 0x10 != 0 {
        return None;
    }
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((
        SocketAddrV4::new(ip(12)?, sport),
        SocketAddrV4::new(ip(16)?, dport),
        seq,
    ))
}

/// How long a SYN is remembered: longer than Linux retransmits an
/// unanswered SYN (about 127 s with the default `tcp_syn_retries = 6`).
pub const SYN_MEMORY: Duration = Duration::from_secs(300);
/// Most SYNs remembered; older ones are forgotten first.
pub const SYN_MEMORY_SIZE: usize = 65_536;

/// Tells a new connection attempt from a retransmission of one already seen.
#[derive(Debug, Default)]
pub struct SynDedup {
    seen: HashMap<(SocketAddrV4, SocketAddrV4), (u32, Instant)>,
}

impl SynDedup {
    /// `true` when this SYN starts an attempt; `false` for a retransmission
    /// (same 4-tuple and initial sequence number within [`SYN_MEMORY`]). A
    /// reused 4-tuple with a new sequence number is a new attempt.
    pub fn first(&mut self, from: SocketAddrV4, to: SocketAddrV4, seq: u32, now: Instant) -> bool {
        if let Some(&(old, at)) = self.seen.get(&(from, to)) {
            if old == seq && now.saturating_duration_since(at) < SYN_MEMORY {
                return false;
            }
        }
        if self.seen.len() >= SYN_MEMORY_SIZE {
            self.seen
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < SYN_MEMORY);
            if self.seen.len() >= SYN_MEMORY_SIZE {
                self.seen.clear();
            }
        }
        self.seen.insert((from, to), (seq, now));
        true
    }
}

/// Start watching; attempts are broadcast until the returned task is aborted.
pub fn start(tx: broadcast::Sender<Seen>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: if_nametoindex takes a NUL-terminated string; bind gets a sockaddr_ll of the right size.
    unsafe {
        let index = libc::if_nametoindex(c"lo".as_ptr());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        if libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: setsockopt with a filter program and an int that live across
    // the calls, and their sizes.
    unsafe {
        let prog = libc::sock_fprog {
            len: SYN_FILTER.len() as u16,
            filter: SYN_FILTER.as_ptr().cast_mut(),
        };
        if libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        let size = RCVBUF;
        let p = (&size as *const libc::c_int).cast();
        let n = std::mem::size_of::<libc::c_int>() as u32;
        // Past the system's limit when allowed (root), else up to it.
        if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, n) != 0 {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, n);
        }
    }
    // SAFETY: the AsyncFd owns the descriptor and deregisters it before closing.
    let afd = unsafe { AsyncFd::register(fd)? };
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 256];
        let mut dedup = SynDedup::default();
        loop {
            let Ok(mut guard) = afd.readable().await else {
                return;
            };
            loop {
                // SAFETY: recvfrom into a local buffer and sockaddr_ll of the sizes given.
                let (n, pkttype) = unsafe {
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    let n = libc::recvfrom(
                        afd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_TRUNC,
                        &mut sll as *mut _ as *mut libc::sockaddr,
                        &mut len,
                    );
                    (n, sll.sll_pkttype)
                };
                if n < 0 {
                    guard.clear_ready();
                    if let Some(d) = dropped(afd.get_ref().as_raw_fd()) {
                        let _ = tx.send(Seen::Dropped(d));
                    }
                    break;
                }
                // Loopback shows each packet twice (outgoing, then incoming): keep one.
                if pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                let len = (n as usize).min(buf.len());
                if let Some((from, to, seq)) = parse_syn(&buf[..len]) {
                    let at = Instant::now();
                    if dedup.first(from, to, seq, at) {
                        let _ = tx.send(Seen::Attempt(ConnectAttempt { at, from, to }));
                    }
                }
            }
        }
    }))
}

/// Packets the kernel dropped for the socket since the last call (the
/// count is reset by reading it), if any.
fn dropped(fd: std::os::fd::RawFd) -> Option<u32> {
    // SAFETY: getsockopt into a local tpacket_stats of the size given.
    let stats = unsafe {
        let mut st: libc::tpacket_stats = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as u32;
        let r = libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        );
        (r == 0).then_some(st)
    }?;
    (stats.tp_drops > 0).then_some(stats.tp_drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[127, 0, 0, 1]);
        p[16..20].copy_from_slice(&[127, 10, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&25u16.to_be_bytes());
        p[33] = flags;
        p
    }

    #[test]
    fn finds_syns_only() {
        let mut p = packet(0x02);
        p[24..28].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let (from, to, seq) = parse_syn(&p).unwrap();
        assert_eq!(from, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(to, "127.10.0.2:25".parse().unwrap());
        assert_eq!(seq, 0xdead_beef);
        assert_eq!(parse_syn(&packet(0x12)), None, "SYN+ACK is an answer");
        assert_eq!(parse_syn(&packet(0x10)), None);
        let mut udp = packet(0x02);
        udp[9] = 17;
        assert_eq!(parse_syn(&udp), None);
    }

    #[test]
    fn a_retransmitted_syn_is_the_same_attempt() {
        let a: SocketAddrV4 = "127.0.0.1:40000".parse().unwrap();
        let b: SocketAddrV4 = "127.0.0.1:40001".parse().unwrap();
        let to: SocketAddrV4 = "127.10.0.2:25".parse().unwrap();
        let t0 = Instant::now();
        let mut d = SynDedup::default();
        assert!(d.first(a, to, 7, t0));
        assert!(
            !d.first(a, to, 7, t0 + Duration::from_secs(1)),
            "retransmission"
        );
        assert!(
            !d.first(a, to, 7, t0 + Duration::from_secs(63)),
            "late retransmission"
        );
        assert!(
            d.first(b, to, 7, t0 + Duration::from_secs(2)),
            "another source port"
        );
        assert!(
            d.first(a, to, 8, t0 + Duration::from_secs(3)),
            "4-tuple reused, new ISN"
        );
        assert!(d.first(a, to, 8, t0 + SYN_MEMORY * 3), "long forgotten");
        // Memory stays bounded under a flood of distinct attempts.
        for port in 0..(SYN_MEMORY_SIZE as u32 + 10) {
            let from = SocketAddrV4::new(Ipv4Addr::new(127, 0, (port >> 16) as u8, 1), port as u16);
            d.first(from, to, 1, t0);
        }
        assert!(d.seen.len() <= SYN_MEMORY_SIZE);
    }

    #[test]
    fn short_or_odd_packets_are_ignored() {
        for n in 0..40 {
            let _ = parse_syn(&packet(0x02)[..n]);
        }
        let mut p = packet(0x02);
        p[0] = 0x4f; // header length past the end
        assert_eq!(parse_syn(&p), None);
        assert_eq!(parse_syn(&[0x60; 60]), None, "IPv6 is not read");
    }
}
