//! One flow of the web scenarios, packet by packet. A [`ConnPlan`] says what a client does — open a
//! connection, say hello in TLS, make requests, trickle header lines, close — and [`Conn`] plays it
//! out as the segments a real exchange is made of:
//!
//! - the handshake: client SYN (ISN c), server SYN-ACK (ISN s, ack c+1), client ACK (c+1, s+1);
//! - each write in segments of at most [`MSS`] bytes, ACK on all, PSH on the last, every segment
//!   acknowledging all the peer has sent; the receiver's ACKs, every second segment and the last;
//! - a FIN exchange (FIN|ACK, FIN|ACK, ACK) or an RST|ACK.
//!
//! The capture point sits in front of the server: what the server sends is stamped when it leaves,
//! what the client sends a round trip after the server packet it answers. Linux-like clients (and the
//! server with them) carry TCP timestamps on every segment; Windows-like ones carry none. Spoofed SYNs
//! and pings are flows too ([`Opening`]). The bytes of one step are made when the step starts, so a
//! flow holds at most one exchange's payloads.

use std::collections::VecDeque;

use super::super::attack::SYN_WINDOWS;
use super::super::clients::{syn_options, ts_option, SERVER_TTL};
use super::super::packet::{Ends, Frame, IpFields, TcpSeg, ACK, FIN, PSH, SYN};
use super::super::rng::Rng;
use super::http::{self, Agent, Ask};
use super::tls::{self, APPLICATION_DATA};

pub(super) const RST: u8 = 0x04;
/// Payload bytes per segment (MSS 1460 less the 12-byte timestamps option).
const MSS: usize = 1448;
/// The server's delayed-ACK timeout: a request not answered by then gets a bare ACK.
const DELAYED_ACK: u64 = 40_000_000;
/// Bytes of the site's certificate record (an ECDSA leaf and its intermediate).
const CERT_RECORD: usize = 2_160;
/// A Windows client's SYN options: MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted.
const WINDOWS_SYN: [u8; 12] = [2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];
/// The server's SYN-ACK options to a client without timestamps: MSS, NOP, NOP, SACK permitted,
/// NOP, window scale 7.
const SYN_ACK_NO_TS: [u8; 12] = [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7];
/// The SYN-ACK options to a SYN without options but MSS.
const MSS_ONLY: [u8; 4] = [2, 4, 5, 0xb4];

/// Which end sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

/// A client's address and stack.
#[derive(Clone, Copy, Debug)]
pub(super) struct Client {
    pub(super) addr: u32,
    pub(super) port: u16,
    /// TTL as captured.
    pub(super) ttl: u8,
    /// Linux-like (TCP timestamps) rather than Windows-like.
    pub(super) linux: bool,
    /// Round-trip time to the capture point, ns.
    pub(super) rtt: u64,
}

/// How a flow starts.
#[derive(Clone, Copy, Debug)]
pub(super) enum Opening {
    /// The three-way handshake, then the plan's steps.
    Handshake,
    /// A SYN from a spoofed source; the server answers it or not (then retransmits its SYN-ACK at
    /// 1 s and 3 s), and the real owner of the address may reset. Nothing follows.
    Spoofed { answered: bool, reset: bool },
    /// An ICMP echo request and its reply.
    Ping { ident: u16, seq: u16 },
}

/// What a step does.
#[derive(Clone, Copy, Debug)]
pub(super) enum What {
    /// The client's ClientHello and the server's first flight. `finish`: the client completes the
    /// handshake (its Finished goes with its first request); else it only takes the flight.
    Hello { finish: bool },
    /// One request and its response.
    Request(Ask),
    /// slowloris: the request line and two header lines, never the blank line.
    PartialHead,
    /// slowloris: one more header line.
    HeaderLine,
    /// `by` ends the connection: a FIN exchange, or an RST|ACK when `reset`.
    Close { by: Side, reset: bool },
}

impl What {
    /// `by` ends the connection with a FIN.
    pub(super) fn close(by: Side) -> What {
        What::Close { by, reset: false }
    }
}

/// A step starts at `at`, and at least `gap` after the flow's previous packet.
#[derive(Clone, Copy, Debug)]
pub(super) struct Step {
    pub(super) at: u64,
    pub(super) gap: u64,
    pub(super) what: What,
}

impl Step {
    pub(super) fn new(at: u64, gap: u64, what: What) -> Step {
        Step { at, gap, what }
    }

    /// `what`, `gap` after the flow's previous packet.
    pub(super) fn after(gap: u64, what: What) -> Step {
        Step { at: 0, gap, what }
    }
}

/// A flow, as planned: who, to where, when, and what it does.
#[derive(Clone, Debug)]
pub(super) struct ConnPlan {
    pub(super) open_at: u64,
    pub(super) client: Client,
    pub(super) server: u32,
    pub(super) port: u16,
    pub(super) agent: Agent,
    pub(super) tls: bool,
    pub(super) opening: Opening,
    pub(super) steps: Vec<Step>,
    /// An attacker's flow: what its client sends is attack traffic.
    pub(super) attack: bool,
    /// Seed of the flow's own random stream (ISNs, payloads, timing).
    pub(super) seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SegKind {
    Tcp,
    EchoRequest,
    EchoReply,
}

/// One packet, ready to write: `len` bytes from `off` of its side's buffer.
#[derive(Clone, Copy, Debug)]
struct Seg {
    ts: u64,
    side: Side,
    kind: SegKind,
    flags: u8,
    seq: u32,
    ack: u32,
    off: u32,
    len: u16,
}

/// A flow being played: its plan, sequence state and the packets of the current step.
pub(super) struct Conn {
    plan: ConnPlan,
    next_step: usize,
    rng: Rng,
    /// Next sequence number of each side.
    cnxt: u32,
    snxt: u32,
    /// TCP timestamp clocks at `open_at`.
    tsc: u32,
    tss: u32,
    /// IP identification counters.
    cid: u16,
    sid: u16,
    cwin: u16,
    swin: u16,
    session_id: [u8; 32],
    /// The client's Finished goes with its next request.
    finish_pending: bool,
    /// The server's session tickets go before its next response.
    tickets_pending: bool,
    established_tls: bool,
    first_request: bool,
    closed: bool,
    segs: VecDeque<Seg>,
    cbuf: Vec<u8>,
    sbuf: Vec<u8>,
    /// Time of the last packet queued.
    t_free: u64,
    host: &'static str,
}

impl Conn {
    /// Starts the flow: its opening packets are queued.
    pub(super) fn new(plan: ConnPlan, host: &'static str) -> Conn {
        let mut rng = Rng::new(plan.seed, 0x77);
        let mut c = Conn {
            next_step: 0,
            cnxt: rng.next_u32(),
            snxt: rng.next_u32(),
            tsc: rng.next_u32(),
            tss: rng.next_u32(),
            cid: rng.next_u16(),
            sid: rng.next_u16(),
            cwin: rng.range(500, 2100) as u16,
            swin: rng.range(500, 520) as u16,
            session_id: [0; 32],
            finish_pending: false,
            tickets_pending: false,
            established_tls: false,
            first_request: true,
            closed: false,
            segs: VecDeque::new(),
            cbuf: Vec::new(),
            sbuf: Vec::new(),
            t_free: plan.open_at,
            host,
            rng,
            plan,
        };
        c.open();
        c.advance();
        c
    }

    /// Time of the next packet, if any.
    pub(super) fn peek(&self) -> Option<u64> {
        self.segs.front().map(|s| s.ts)
    }

    /// Writes the next packet into `frame`: its time, length, and whether an attacker sent it.
    pub(super) fn emit(&mut self, frame: &mut Frame) -> Option<(u64, usize, bool)> {
        let seg = self.segs.pop_front()?;
        let len = self.write(&seg, frame);
        let backscatter =
            matches!(self.plan.opening, Opening::Spoofed { .. }) && seg.flags & RST != 0;
        let attack = self.plan.attack && seg.side == Side::Client && !backscatter;
        self.advance();
        Some((seg.ts, len, attack))
    }

    /// Queues the next steps' packets once the current ones are out.
    fn advance(&mut self) {
        while self.segs.is_empty() && !self.closed {
            let Some(&step) = self.plan.steps.get(self.next_step) else {
                return;
            };
            self.next_step += 1;
            self.cbuf.clear();
            self.sbuf.clear();
            let t = step.at.max(self.t_free.saturating_add(step.gap));
            match step.what {
                What::Hello { finish } => self.hello(t, finish),
                What::Request(ask) => self.request(t, &ask),
                What::PartialHead => {
                    let n = self.rng.next_u32();
                    http::slowloris_head(self.plan.agent, n, &mut self.cbuf);
                    self.trickle(t);
                }
                What::HeaderLine => {
                    http::slowloris_line(self.rng.next_u32(), &mut self.cbuf);
                    self.trickle(t);
                }
                What::Close { by, reset } => self.close(t, by, reset),
            }
            self.segs.make_contiguous().sort_by_key(|s| s.ts);
        }
    }

    fn push(&mut self, ts: u64, side: Side, flags: u8, seq: u32, ack: u32) {
        self.push_data(ts, side, flags, seq, ack, 0, 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_data(
        &mut self,
        ts: u64,
        side: Side,
        flags: u8,
        seq: u32,
        ack: u32,
        off: usize,
        len: usize,
    ) {
        self.t_free = self.t_free.max(ts);
        self.segs.push_back(Seg {
            ts,
            side,
            kind: SegKind::Tcp,
            flags,
            seq,
            ack,
            off: off as u32,
            len: len as u16,
        });
    }

    fn open(&mut self) {
        let t = self.plan.open_at;
        let rtt = self.plan.client.rtt;
        let (c, s) = (self.cnxt, self.snxt);
        match self.plan.opening {
            Opening::Ping { .. } => {
                for (dt, side, kind) in [
                    (0, Side::Client, SegKind::EchoRequest),
                    (
                        self.rng.range(20_000, 80_000),
                        Side::Server,
                        SegKind::EchoReply,
                    ),
                ] {
                    self.segs.push_back(Seg {
                        ts: t + dt,
                        side,
                        kind,
                        flags: 0,
                        seq: 0,
                        ack: 0,
                        off: 0,
                        len: 0,
                    });
                }
                self.closed = true;
            }
            Opening::Spoofed { answered, reset } => {
                self.push(t, Side::Client, SYN, c, 0);
                if answered {
                    let t1 = t + self.rng.range(20_000, 90_000);
                    self.push(t1, Side::Server, SYN | ACK, s, c.wrapping_add(1));
                    if reset {
                        self.push(t1 + rtt, Side::Client, RST, c.wrapping_add(1), 0);
                    } else {
                        for retry in [1_000_000_000, 3_000_000_000] {
                            self.push(t1 + retry, Side::Server, SYN | ACK, s, c.wrapping_add(1));
                        }
                    }
                }
                self.closed = true;
            }
            Opening::Handshake => {
                self.push(t, Side::Client, SYN, c, 0);
                let t1 = t + self.rng.range(20_000, 90_000);
                self.push(t1, Side::Server, SYN | ACK, s, c.wrapping_add(1));
                self.cnxt = c.wrapping_add(1);
                self.snxt = s.wrapping_add(1);
                self.push(t1 + rtt, Side::Client, ACK, self.cnxt, self.snxt);
            }
        }
    }

    /// Queues `side`'s bytes `from..to` of its buffer from `t`, 12–30 µs apart; returns the time and
    /// end sequence number of each segment.
    fn send(&mut self, side: Side, t: u64, from: usize, to: usize) -> Vec<(u64, u32)> {
        let mut sent = Vec::with_capacity((to - from).div_ceil(MSS));
        let mut off = from;
        let mut ts = t;
        while off < to {
            let len = (to - off).min(MSS);
            let last = off + len == to;
            let flags = if last { PSH | ACK } else { ACK };
            let (seq, ack) = match side {
                Side::Client => (self.cnxt, self.snxt),
                Side::Server => (self.snxt, self.cnxt),
            };
            self.push_data(ts, side, flags, seq, ack, off, len);
            let end = seq.wrapping_add(len as u32);
            match side {
                Side::Client => self.cnxt = end,
                Side::Server => self.snxt = end,
            }
            sent.push((ts, end));
            off += len;
            ts += self.rng.range(12_000, 30_000);
        }
        sent
    }

    /// The client acknowledges the server's `segs`: every second one and the last, a round trip
    /// after each.
    fn client_acks(&mut self, segs: &[(u64, u32)]) {
        let mut last = 0;
        for (i, &(ts, end)) in segs.iter().enumerate() {
            if i % 2 == 1 || i + 1 == segs.len() {
                // In order: a later ACK never acknowledges less.
                let at = (ts + self.plan.client.rtt + self.rng.range(0, 200_000)).max(last + 1_000);
                last = at;
                self.push(at, Side::Client, ACK, self.cnxt, end);
            }
        }
    }

    fn hello(&mut self, t: u64, finish: bool) {
        let profile = self.plan.agent.hello();
        self.session_id = tls::client_hello(profile, self.host, &mut self.rng, &mut self.cbuf);
        let sent = self.send(Side::Client, t, 0, self.cbuf.len());
        let arrived = sent.last().map_or(t, |s| s.0);
        // The key exchange and the certificate's signature: 0.4–2.5 ms.
        let work = self.rng.range(400_000, 2_500_000);
        tls::server_flight(&self.session_id, CERT_RECORD, &mut self.rng, &mut self.sbuf);
        let flight = self.send(Side::Server, arrived + work, 0, self.sbuf.len());
        self.client_acks(&flight);
        self.finish_pending = finish;
        self.tickets_pending = finish;
    }

    /// The client's bytes of a request: a head, or TLS records (its Finished first after the
    /// handshake).
    fn request_bytes(&mut self, ask: &Ask) {
        let agent = self.plan.agent;
        if !self.plan.tls {
            http::request_head(agent, ask, self.host, &mut self.cbuf);
            return;
        }
        if self.finish_pending {
            tls::client_finished(&mut self.rng, &mut self.cbuf);
            self.finish_pending = false;
            self.established_tls = true;
        }
        let mut head = Vec::new();
        http::request_head(agent, ask, self.host, &mut head);
        let len = http::tls_request_len(agent, self.first_request, head.len(), &mut self.rng);
        tls::record(
            APPLICATION_DATA,
            len + tls::SEAL,
            &mut self.rng,
            &mut self.cbuf,
        );
    }

    fn request(&mut self, t: u64, ask: &Ask) {
        self.request_bytes(ask);
        self.first_request = false;
        let sent = self.send(Side::Client, t, 0, self.cbuf.len());
        let arrived = sent.last().map_or(t, |s| s.0);
        let think = http::think_ns(ask.what, &mut self.rng);
        let tickets = self.response_bytes(ask, arrived + think);
        let mut server_at = arrived + self.rng.range(30_000, 120_000);
        let mut acked = Vec::new();
        if tickets > 0 {
            acked = self.send(Side::Server, server_at, 0, tickets);
            server_at = self.t_free + self.rng.range(12_000, 30_000);
        } else if think > DELAYED_ACK {
            let (seq, ack) = (self.snxt, self.cnxt);
            self.push(arrived + DELAYED_ACK, Side::Server, ACK, seq, ack);
        }
        let at = server_at.max(arrived + think);
        acked.extend(self.send(Side::Server, at, tickets, self.sbuf.len()));
        self.client_acks(&acked);
    }

    /// The server's bytes answering `ask` at `at` (ns): the session tickets first after a TLS
    /// handshake, then the response, in a TLS record where it applies. Returns where the response
    /// starts.
    fn response_bytes(&mut self, ask: &Ask, at: u64) -> usize {
        if self.tickets_pending {
            tls::session_tickets(&mut self.rng, &mut self.sbuf);
            self.tickets_pending = false;
        }
        let tickets = self.sbuf.len();
        let sizes = http::response(ask, at / 1_000_000_000, &mut self.rng, &mut self.sbuf);
        if self.plan.tls {
            let len = http::tls_response_len(self.plan.agent, sizes) + tls::SEAL;
            self.sbuf.truncate(tickets);
            tls::record(APPLICATION_DATA, len, &mut self.rng, &mut self.sbuf);
        }
        tickets
    }

    /// slowloris: the client's bytes go out; the server acknowledges them and says nothing.
    fn trickle(&mut self, t: u64) {
        let sent = self.send(Side::Client, t, 0, self.cbuf.len());
        let arrived = sent.last().map_or(t, |s| s.0);
        let delay = self.rng.range(200_000, DELAYED_ACK);
        self.push(arrived + delay, Side::Server, ACK, self.snxt, self.cnxt);
    }

    fn close(&mut self, t: u64, by: Side, reset: bool) {
        self.closed = true;
        let rtt = self.plan.client.rtt;
        let mut t = t;
        if reset {
            let (seq, ack) = match by {
                Side::Client => (self.cnxt, self.snxt),
                Side::Server => (self.snxt, self.cnxt),
            };
            self.push(t, by, RST | ACK, seq, ack);
            return;
        }
        if self.established_tls && by == Side::Client {
            tls::close_notify(&mut self.rng, &mut self.cbuf);
            let sent = self.send(Side::Client, t, 0, self.cbuf.len());
            t = sent.last().map_or(t, |s| s.0) + self.rng.range(5_000, 50_000);
        }
        let (fin_seq, peer_seq) = match by {
            Side::Client => (self.cnxt, self.snxt),
            Side::Server => (self.snxt, self.cnxt),
        };
        let peer = match by {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let (fin_end, peer_end) = (fin_seq.wrapping_add(1), peer_seq.wrapping_add(1));
        self.push(t, by, FIN | ACK, fin_seq, peer_seq);
        // The server closes as soon as it reads the client's FIN; the client's answer to the
        // server's FIN comes a round trip later, and so does the client's last ACK.
        let (t1, t2) = match by {
            Side::Client => {
                let t1 = t + self.rng.range(30_000, 300_000);
                (t1, t1 + rtt)
            }
            Side::Server => {
                let t1 = t + rtt + self.rng.range(0, 500_000);
                (t1, t1 + self.rng.range(10_000, 60_000))
            }
        };
        self.push(t1, peer, FIN | ACK, peer_seq, fin_end);
        self.push(t2, by, ACK, fin_end, peer_end);
        match by {
            Side::Client => (self.cnxt, self.snxt) = (fin_end, peer_end),
            Side::Server => (self.snxt, self.cnxt) = (fin_end, peer_end),
        }
    }

    /// Writes `seg` into `frame`; returns the frame length.
    fn write(&mut self, seg: &Seg, frame: &mut Frame) -> usize {
        let (ends, ip) = self.ip(seg);
        let c = self.plan.client;
        if let Opening::Ping { ident, seq } = self.plan.opening {
            let icmp_type = if seg.kind == SegKind::EchoRequest {
                8
            } else {
                0
            };
            return frame.icmp_echo(ends, icmp_type, ident, seq, 56, ip.id, ip.ttl);
        }
        let ports = match seg.side {
            Side::Client => (c.port, self.plan.port),
            Side::Server => (self.plan.port, c.port),
        };
        let (opts, n) = self.options(seg);
        let tcp = TcpSeg {
            ports,
            seq: seg.seq,
            ack: seg.ack,
            flags: seg.flags,
            win: self.window(seg),
            opts: &opts[..n],
            payload: usize::from(seg.len),
        };
        let buf = match seg.side {
            Side::Client => &self.cbuf,
            Side::Server => &self.sbuf,
        };
        let data = &buf[seg.off as usize..seg.off as usize + usize::from(seg.len)];
        frame.tcp_data(ends, ip, &tcp, data)
    }

    fn spoofed(&self) -> bool {
        matches!(self.plan.opening, Opening::Spoofed { .. })
    }

    /// The addresses and IP fields of `seg`: each side counts its IP IDs up from a random start,
    /// with DF; a spoofing tool draws them at random, without DF.
    fn ip(&mut self, seg: &Seg) -> (Ends, IpFields) {
        let up = Ends::V4 {
            src: self.plan.client.addr,
            dst: self.plan.server,
        };
        match seg.side {
            Side::Client if self.spoofed() => {
                let id = self.rng.next_u16();
                let ttl = self.plan.client.ttl;
                (up, IpFields { id, ttl, df: false })
            }
            Side::Client => {
                self.cid = self.cid.wrapping_add(1);
                let (id, ttl) = (self.cid, self.plan.client.ttl);
                (up, IpFields { id, ttl, df: true })
            }
            Side::Server => {
                self.sid = self.sid.wrapping_add(1);
                let (id, ttl) = (self.sid, SERVER_TTL);
                (up.swap(), IpFields { id, ttl, df: true })
            }
        }
    }

    /// The TCP options of `seg` and their length, as its sender's stack writes them: Linux SYN
    /// options and timestamps on every later segment for a Linux-like client (and the server
    /// answering it); Windows SYN options and nothing later for a Windows-like one; MSS or nothing
    /// in a spoofed SYN, MSS alone in the SYN-ACK answering it.
    fn options(&self, seg: &Seg) -> ([u8; 20], usize) {
        let linux = self.plan.client.linux && !self.spoofed();
        let syn = seg.flags & SYN != 0;
        let (val, ecr) = self.clocks(seg);
        let (syn_opts, ts_opts) = (syn_options(val, ecr), ts_option(val, ecr));
        let chosen: &[u8] = match (syn, seg.side) {
            (true, Side::Client) if self.spoofed() && self.plan.seed & 1 == 1 => &[],
            (true, _) if self.spoofed() => &MSS_ONLY,
            (true, Side::Client) if !linux => &WINDOWS_SYN,
            (true, Side::Server) if !linux => &SYN_ACK_NO_TS,
            (true, _) => &syn_opts,
            (false, _) if linux => &ts_opts,
            (false, _) => &[],
        };
        let mut opts = [0u8; 20];
        opts[..chosen.len()].copy_from_slice(chosen);
        (opts, chosen.len())
    }

    /// The sender's millisecond clock, and the peer's as last heard (half a round trip ago; 0 in
    /// the first SYN).
    fn clocks(&self, seg: &Seg) -> (u32, u32) {
        let elapsed = |at: u64| (at.saturating_sub(self.plan.open_at) / 1_000_000) as u32;
        let heard = seg.ts.saturating_sub(self.plan.client.rtt / 2);
        let (mine, peer) = match seg.side {
            Side::Client => (self.tsc, self.tss),
            Side::Server => (self.tss, self.tsc),
        };
        let val = mine.wrapping_add(elapsed(seg.ts));
        let ecr = if seg.flags == SYN {
            0
        } else {
            peer.wrapping_add(elapsed(heard))
        };
        (val, ecr)
    }

    /// The window of `seg`: Linux's and Windows' SYN windows, a spoofing tool's, and after the
    /// handshake each side's own scaled window (0 in a reset from a spoofed address).
    fn window(&self, seg: &Seg) -> u16 {
        let spoofed = self.spoofed();
        match (seg.flags & SYN != 0, seg.side) {
            (true, Side::Client) if spoofed => {
                SYN_WINDOWS[(self.plan.seed >> 8) as usize % SYN_WINDOWS.len()]
            }
            (true, Side::Client) => 64240,
            (true, Side::Server) if self.plan.client.linux && !spoofed => 65160,
            (true, Side::Server) => 64240,
            (false, Side::Client) if spoofed => 0,
            (false, Side::Client) => self.cwin,
            (false, Side::Server) => self.swin,
        }
    }
}
