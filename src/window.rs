//! Sliding-window counters: per key, how many packets of each [`Signal`] arrived in the current and the
//! previous window, read as a sliding rate.
//!
//! A window is `window` long and aligned on multiples of it in packet time (its *epoch*). The rate at
//! time `t` is `cur + prev × (1 − f)` over one window, where `f` is how far `t` is into the current
//! window: the two-bucket sliding-window estimate. It needs two counter sets per key instead of a ring
//! of sub-buckets, and windows roll lazily, so a key costs the same whether it is busy or idle.

use crate::decode::{proto, tcp_flags, Fragment, PacketSummary};

/// What a key counts. The first [`Signal::THRESHOLDED`] have thresholds; the rest feed classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Every IP packet.
    Packets,
    /// Bytes on the wire.
    Bytes,
    /// TCP SYN without ACK (connection attempts).
    Syn,
    /// TCP with any other flags (SYN-ACK, ACK, RST, PSH, …).
    TcpOther,
    /// UDP packets that carry a UDP header.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    /// IP fragments, first and later.
    Fragment,
    /// Reflection traffic: UDP from a known amplifier port, plus non-first fragments (which is how large
    /// reflected responses arrive).
    Reflection,
    /// TCP SYN-ACK (reflection of spoofed SYNs shows up here).
    SynAck,
    /// Requests: HTTP/1.x request heads, HTTP/2 prefaces and, inside TLS, the client's bursts of
    /// application data after the server last spoke (estimated requests), on connections whose
    /// handshake completed ([`crate::requests`]).
    HttpRequests,
    /// Connections whose TCP handshake completed (the client acknowledged the server's SYN-ACK),
    /// counted at the client's ACK.
    Handshakes,
    /// Connections holding a request head open (started, never finished, the server silent) for
    /// longer than the slowloris grace: each adds one per second it stays so, so the rate of this
    /// signal is the number of such connections.
    IncompleteHeads,
    /// UDP from a known amplifier source port only (header present).
    AmpPort,
    /// Non-first fragments only (no transport header).
    LaterFragment,
}

/// Number of counters per window.
pub const COUNTERS: usize = 14;

impl Signal {
    /// Every counter, in index order.
    pub const ALL: [Signal; COUNTERS] = [
        Signal::Packets,
        Signal::Bytes,
        Signal::Syn,
        Signal::TcpOther,
        Signal::Udp,
        Signal::Icmp,
        Signal::Fragment,
        Signal::Reflection,
        Signal::SynAck,
        Signal::HttpRequests,
        Signal::Handshakes,
        Signal::IncompleteHeads,
        Signal::AmpPort,
        Signal::LaterFragment,
    ];
    /// How many leading signals carry a threshold.
    pub const THRESHOLDED: usize = 12;
    /// The signals counted from connections, not packets: what [`crate::requests`] tracks.
    pub const REQUEST_SIGNALS: [Signal; 3] = [
        Signal::HttpRequests,
        Signal::Handshakes,
        Signal::IncompleteHeads,
    ];

    /// True for the signals counted from connections ([`Signal::REQUEST_SIGNALS`]).
    pub fn is_request_signal(self) -> bool {
        matches!(
            self,
            Signal::HttpRequests | Signal::Handshakes | Signal::IncompleteHeads
        )
    }

    /// Index into [`Counts::n`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Name used in alerts and config (`syn`, `udp`, …).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Packets => "packets",
            Signal::Bytes => "bytes",
            Signal::Syn => "syn",
            Signal::TcpOther => "tcp_other",
            Signal::Udp => "udp",
            Signal::Icmp => "icmp",
            Signal::Fragment => "fragment",
            Signal::Reflection => "reflection",
            Signal::AmpPort => "amp_port",
            Signal::LaterFragment => "later_fragment",
            Signal::SynAck => "syn_ack",
            Signal::HttpRequests => "http_requests",
            Signal::Handshakes => "handshakes",
            Signal::IncompleteHeads => "incomplete_heads",
        }
    }
}

/// What a packet counts as, besides packets and bytes: its kind, and whether it is a fragment
/// (every later fragment is; a first fragment keeps its transport kind). Tallying packets by class
/// and expanding the tallies into [`Counts`] once gives the counts of adding each packet's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketClass(u8);

/// The kind part of a [`PacketClass`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    Other,
    Syn,
    SynAck,
    TcpOther,
    Udp,
    /// UDP from a known amplifier source port.
    UdpAmp,
    Icmp,
    /// A non-first fragment (no transport header).
    LaterFragment,
}

impl PacketClass {
    /// Classes: eight kinds, each whole or first fragment.
    pub const COUNT: usize = 16;

    /// The class of `p`.
    #[inline]
    pub fn of(p: &PacketSummary) -> PacketClass {
        let kind = match p.fragment {
            Fragment::Later { .. } => PacketKind::LaterFragment,
            // TCP first, its kind by SYN and ACK from a table (most of a flood's packets)
            _ if p.proto == proto::TCP => {
                const KINDS: [PacketKind; 4] = [
                    PacketKind::TcpOther, // neither
                    PacketKind::Syn,      // SYN alone
                    PacketKind::TcpOther, // ACK alone
                    PacketKind::SynAck,
                ];
                let syn = usize::from(p.tcp_flags & tcp_flags::SYN != 0);
                let ack = usize::from(p.tcp_flags & tcp_flags::ACK != 0);
                KINDS[syn | ack << 1]
            }
            _ => match p.proto {
                proto::UDP
                    if crate::attack_class::AttackClass::reflection_of_port(p.sport).is_some() =>
                {
                    PacketKind::UdpAmp
                }
                proto::UDP => PacketKind::Udp,
                proto::ICMP | proto::ICMPV6 => PacketKind::Icmp,
                _ => PacketKind::Other,
            },
        };
        PacketClass(((kind as u8) << 1) | u8::from(p.fragment != Fragment::None))
    }

    /// Index into a tally of [`PacketClass::COUNT`].
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0) & (Self::COUNT - 1)
    }

    /// The kind.
    pub fn kind(self) -> PacketKind {
        match self.0 >> 1 {
            1 => PacketKind::Syn,
            2 => PacketKind::SynAck,
            3 => PacketKind::TcpOther,
            4 => PacketKind::Udp,
            5 => PacketKind::UdpAmp,
            6 => PacketKind::Icmp,
            7 => PacketKind::LaterFragment,
            _ => PacketKind::Other,
        }
    }

    /// True for TCP with a header that is not a bare SYN: a SYN-ACK or any later segment (what
    /// connection state is made of).
    #[inline]
    pub fn is_tcp_after_syn(self) -> bool {
        matches!(self.0 >> 1, 2 | 3)
    }

    /// True for fragments, first or later.
    pub fn is_fragment(self) -> bool {
        self.0 & 1 != 0
    }

    /// True for UDP from an amplifier port (what the amplifier-port vote counts).
    #[inline]
    pub fn is_amp(self) -> bool {
        self.0 >> 1 == PacketKind::UdpAmp as u8
    }
}

/// One window's counts, indexed by [`Signal::index`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub n: [u64; COUNTERS],
}

impl Counts {
    /// The increments one packet summary contributes (times its weight).
    pub fn of_packet(p: &PacketSummary) -> Counts {
        let mut c = Counts::default();
        let w = u64::from(p.weight);
        c.add_class(PacketClass::of(p), w);
        c.n[Signal::Bytes.index()] = u64::from(p.wire_len) * w;
        c
    }

    /// Adds `packets` packets of `class` to every signal but bytes.
    #[inline]
    pub fn add_class(&mut self, class: PacketClass, packets: u64) {
        let mut add = |s: Signal| self.n[s.index()] = self.n[s.index()].wrapping_add(packets);
        add(Signal::Packets);
        match class.kind() {
            PacketKind::Syn => add(Signal::Syn),
            PacketKind::SynAck => {
                add(Signal::TcpOther);
                add(Signal::SynAck);
            }
            PacketKind::TcpOther => add(Signal::TcpOther),
            PacketKind::Udp => add(Signal::Udp),
            PacketKind::UdpAmp => {
                add(Signal::Udp);
                add(Signal::AmpPort);
                add(Signal::Reflection);
            }
            PacketKind::Icmp => add(Signal::Icmp),
            PacketKind::LaterFragment => {
                add(Signal::LaterFragment);
                add(Signal::Reflection);
            }
            PacketKind::Other => {}
        }
        if class.is_fragment() {
            add(Signal::Fragment);
        }
    }

    /// The counts of packets tallied by class ([`PacketClass`]), with their bytes.
    pub fn of_classes(classes: &[u64; PacketClass::COUNT], bytes: u64) -> Counts {
        let mut c = Counts::default();
        for (i, n) in classes.iter().enumerate() {
            if *n != 0 {
                c.add_class(PacketClass(i as u8), *n);
            }
        }
        c.n[Signal::Bytes.index()] = bytes;
        c
    }

    /// Adds `other` into `self`.
    #[inline]
    pub fn add(&mut self, other: &Counts) {
        // Wrapping (not saturating) so this vectorises: 2^64 packets or bytes never fit in a window.
        for (a, b) in self.n.iter_mut().zip(other.n.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// The count of one signal.
    pub fn get(&self, s: Signal) -> u64 {
        self.n[s.index()]
    }
}

/// The two-bucket sliding window of one key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sliding {
    /// Epoch (window number) of `cur`.
    epoch: u64,
    cur: Counts,
    prev: Counts,
}

/// What rolling a window forward found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rolled {
    /// The window that just completed, if it was the one right before the new epoch.
    pub completed: Option<Counts>,
    /// Whole windows that passed with no packet at all (besides `completed`).
    pub empty_windows: u64,
}

impl Sliding {
    /// A window starting at `epoch`.
    pub fn new(epoch: u64) -> Sliding {
        Sliding {
            epoch,
            ..Sliding::default()
        }
    }

    /// Moves the window to `epoch` (no-op when already there or when `epoch` is older).
    pub fn roll(&mut self, epoch: u64) -> Rolled {
        if epoch <= self.epoch {
            return Rolled {
                completed: None,
                empty_windows: 0,
            };
        }
        let gap = epoch - self.epoch;
        let completed = self.cur;
        self.prev = if gap == 1 {
            completed
        } else {
            Counts::default()
        };
        self.cur = Counts::default();
        self.epoch = epoch;
        if gap == 1 {
            Rolled {
                completed: Some(completed),
                empty_windows: 0,
            }
        } else {
            // The window at self.epoch completed long ago; the ones after it were empty.
            Rolled {
                completed: Some(completed),
                empty_windows: gap - 1,
            }
        }
    }

    /// Records one packet's increments at `epoch`; true when the packet ends a silence of at least a
    /// whole window (neither the current nor the previous window held a packet before it).
    #[inline]
    pub fn record(&mut self, epoch: u64, inc: &Counts) -> bool {
        if epoch != self.epoch {
            self.roll(epoch);
        }
        let fresh = self.cur.n[0] == 0 && self.prev.n[0] == 0;
        self.cur.add(inc);
        fresh
    }

    /// Both buckets together: every packet since a silence, when the silence ended less than a
    /// window ago (the buckets then hold nothing older).
    pub fn both(&self) -> Counts {
        let mut c = self.cur;
        c.add(&self.prev);
        c
    }

    /// The sliding estimate of each counter over one window ending at `epoch` + `frac` of a window.
    pub fn estimate(&self, epoch: u64, frac: f64) -> [f64; COUNTERS] {
        let mut out = [0.0; COUNTERS];
        if epoch == self.epoch {
            let keep = (1.0 - frac).clamp(0.0, 1.0);
            for (o, (c, p)) in out
                .iter_mut()
                .zip(self.cur.n.iter().zip(self.prev.n.iter()))
            {
                *o = *c as f64 + *p as f64 * keep;
            }
        } else if epoch == self.epoch + 1 {
            let keep = (1.0 - frac).clamp(0.0, 1.0);
            for (o, c) in out.iter_mut().zip(self.cur.n.iter()) {
                *o = *c as f64 * keep;
            }
        }
        out
    }

    /// Counts of the current window so far.
    pub fn current(&self) -> &Counts {
        &self.cur
    }

    /// True when neither bucket holds a packet.
    pub fn is_idle(&self) -> bool {
        self.cur.n[0] == 0 && self.prev.n[0] == 0
    }

    /// True when neither bucket holds anything: no packet, and no request signal either (those
    /// are counted from connections, so a window may hold them without packets).
    pub fn is_empty(&self) -> bool {
        self.cur.n.iter().chain(self.prev.n.iter()).all(|n| *n == 0)
    }

    /// The epoch of the current bucket.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// The short window: a key's counts in its last two ticks, kept while the key is hot (gathering
/// evidence or alerting) so a burst far above its threshold is judged on a fraction of a second.
/// Counts are per signal, with the number of summaries (a sampled packet or a flow
/// record stands for many packets, so the evidence is also counted in summaries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Burst {
    /// Tick of `cur`.
    tick: u64,
    cur: Counts,
    prev: Counts,
    cur_summaries: u64,
    prev_summaries: u64,
}

impl Burst {
    /// A short window whose current tick `tick` already holds `seed` (estimated counts of the packets
    /// seen in it before the key became hot) from `summaries` summaries.
    pub fn seeded(tick: u64, seed: [u64; COUNTERS], summaries: u64) -> Burst {
        Burst {
            tick,
            cur: Counts { n: seed },
            prev: Counts::default(),
            cur_summaries: summaries,
            prev_summaries: 0,
        }
    }

    /// Counts one summary's increments at `tick`.
    #[inline]
    pub fn add(&mut self, tick: u64, inc: &Counts) {
        if tick != self.tick {
            self.next_tick(tick);
        }
        self.cur.add(inc);
        self.cur_summaries += 1;
    }

    /// Counts the increments of `summaries` summaries at `tick` (an aggregate).
    #[inline]
    pub fn add_many(&mut self, tick: u64, inc: &Counts, summaries: u64) {
        if tick != self.tick {
            self.next_tick(tick);
        }
        self.cur.add(inc);
        self.cur_summaries += summaries;
    }

    #[cold]
    fn next_tick(&mut self, tick: u64) {
        if tick < self.tick {
            // never older than the clock's time; counted in the current tick if it were
            return;
        }
        let adjacent = tick == self.tick + 1;
        self.prev = if adjacent {
            self.cur
        } else {
            Counts::default()
        };
        self.prev_summaries = if adjacent { self.cur_summaries } else { 0 };
        self.cur = Counts::default();
        self.cur_summaries = 0;
        self.tick = tick;
    }

    /// Counts and summaries of the two ticks before `tick` (an evaluation at a tick boundary), or of
    /// `tick` and the one before (the last evaluation, inside a tick).
    pub fn read(&self, tick: u64) -> ([u64; COUNTERS], u64) {
        if self.tick + 1 == tick || self.tick == tick {
            let mut c = self.cur;
            c.add(&self.prev);
            (c.n, self.cur_summaries + self.prev_summaries)
        } else if self.tick + 2 == tick {
            (self.cur.n, self.cur_summaries)
        } else {
            ([0; COUNTERS], 0)
        }
    }
}

/// Engine state ([`crate::engine_state`]).
mod persist {
    use super::*;
    use crate::engine_state::{Dec, Enc, EngineStateError};

    type R<T> = Result<T, EngineStateError>;

    impl Counts {
        pub(crate) fn save(&self, e: &mut Enc) {
            for n in &self.n {
                e.var(*n);
            }
        }

        pub(crate) fn load(d: &mut Dec) -> R<Counts> {
            let mut c = Counts::default();
            for n in c.n.iter_mut() {
                // window counts add wrapping: any value is safe
                *n = d.var("a window count")?;
            }
            Ok(c)
        }
    }

    impl Sliding {
        pub(crate) fn save(&self, e: &mut Enc) {
            e.var(self.epoch);
            self.cur.save(e);
            self.prev.save(e);
        }

        pub(crate) fn load(d: &mut Dec) -> R<Sliding> {
            Ok(Sliding {
                epoch: d.count("a window's epoch")?,
                cur: Counts::load(d)?,
                prev: Counts::load(d)?,
            })
        }
    }

    impl Burst {
        pub(crate) fn save(&self, e: &mut Enc) {
            e.var(self.tick);
            self.cur.save(e);
            self.prev.save(e);
            e.var(self.cur_summaries);
            e.var(self.prev_summaries);
        }

        pub(crate) fn load(d: &mut Dec) -> R<Burst> {
            Ok(Burst {
                tick: d.count("a short window's tick")?,
                cur: Counts::load(d)?,
                prev: Counts::load(d)?,
                cur_summaries: d.count("a short window's summaries")?,
                prev_summaries: d.count("a short window's summaries")?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_by_class_expand_to_the_sum_of_each_packets_counts() {
        let mut tally = [0u64; PacketClass::COUNT];
        let mut bytes = 0;
        let mut sum = Counts::default();
        let frags = [
            Fragment::None,
            Fragment::First,
            Fragment::Later { offset: 1480 },
        ];
        for (i, proto_) in [proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6, 47]
            .into_iter()
            .enumerate()
        {
            for flags in [
                0u8,
                tcp_flags::SYN,
                tcp_flags::SYN | tcp_flags::ACK,
                tcp_flags::ACK,
            ] {
                for sport in [53u16, 1234, 11211] {
                    for fragment in frags {
                        let mut p = PacketSummary {
                            proto: proto_,
                            tcp_flags: flags,
                            sport,
                            fragment,
                            wire_len: 60 + i as u32,
                            ..PacketSummary::default()
                        };
                        p.weight = 1 + (sport % 3) as u32;
                        sum.add(&Counts::of_packet(&p));
                        tally[PacketClass::of(&p).index()] += u64::from(p.weight);
                        bytes += u64::from(p.wire_len) * u64::from(p.weight);
                    }
                }
            }
        }
        assert_eq!(Counts::of_classes(&tally, bytes), sum);
    }
    use crate::time::Timestamp;
    use std::net::IpAddr;

    fn pkt(proto: u8, flags: u8, sport: u16, fragment: Fragment) -> PacketSummary {
        PacketSummary {
            ts: Timestamp(0),
            src: IpAddr::from([192, 0, 2, 1]),
            dst: IpAddr::from([198, 51, 100, 1]),
            proto,
            sport,
            dport: 80,
            tcp_flags: flags,
            tcp_num: 0,
            wire_len: 60,
            fragment,
            weight: 1,
            hdr: crate::decode::HeaderFields::UNKNOWN,
        }
    }

    #[test]
    fn tcp_kinds_follow_syn_and_ack_whatever_the_other_flags() {
        use tcp_flags::{ACK, SYN};
        for other in [0, 0x01, 0x04, 0x08, 0x20, 0xe5] {
            for (flags, want) in [
                (0, PacketKind::TcpOther),
                (SYN, PacketKind::Syn),
                (ACK, PacketKind::TcpOther),
                (SYN | ACK, PacketKind::SynAck),
            ] {
                let flags = flags | (other & !(SYN | ACK));
                for (fragment, want, frag) in [
                    (Fragment::None, want, false),
                    (Fragment::First, want, true),
                    (
                        Fragment::Later { offset: 8 },
                        PacketKind::LaterFragment,
                        true,
                    ),
                ] {
                    let c = PacketClass::of(&pkt(proto::TCP, flags, 1234, fragment));
                    assert_eq!((c.kind(), c.is_fragment()), (want, frag), "{flags:#x}");
                }
            }
        }
        let udp = PacketClass::of(&pkt(proto::UDP, SYN, 53, Fragment::None));
        assert_eq!(udp.kind(), PacketKind::UdpAmp);
    }

    #[test]
    fn classifies_packets_into_signals() {
        let syn = Counts::of_packet(&pkt(proto::TCP, tcp_flags::SYN, 1234, Fragment::None));
        assert_eq!(syn.get(Signal::Syn), 1);
        assert_eq!(syn.get(Signal::TcpOther), 0);
        let synack = Counts::of_packet(&pkt(
            proto::TCP,
            tcp_flags::SYN | tcp_flags::ACK,
            80,
            Fragment::None,
        ));
        assert_eq!(
            (synack.get(Signal::Syn), synack.get(Signal::SynAck)),
            (0, 1)
        );
        let dns = Counts::of_packet(&pkt(proto::UDP, 0, 53, Fragment::First));
        assert_eq!(dns.get(Signal::AmpPort), 1);
        assert_eq!(dns.get(Signal::Fragment), 1);
        let later = Counts::of_packet(&pkt(proto::UDP, 0, 0, Fragment::Later { offset: 1480 }));
        assert_eq!(later.get(Signal::Udp), 0);
        assert_eq!(later.get(Signal::Reflection), 1);
        assert_eq!(later.get(Signal::Bytes), 60);
    }

    #[test]
    fn sliding_estimate_weights_previous_window() {
        let one = Counts::of_packet(&pkt(proto::UDP, 0, 9, Fragment::None));
        let mut w = Sliding::new(10);
        for _ in 0..100 {
            w.record(10, &one);
        }
        assert_eq!(w.estimate(10, 0.5)[0], 100.0);
        let r = w.roll(11);
        assert_eq!(r.completed.map(|c| c.n[0]), Some(100));
        for _ in 0..10 {
            w.record(11, &one);
        }
        // 10 now + 100 × (1 − 0.25)
        assert_eq!(w.estimate(11, 0.25)[0], 85.0);
        // Read one window later without a roll: only the fading current bucket counts.
        assert_eq!(w.estimate(12, 0.5)[0], 5.0);
        assert_eq!(w.estimate(13, 0.0)[0], 0.0);
        let r = w.roll(15);
        assert_eq!(r.empty_windows, 3);
        assert!(w.is_idle());
    }

    #[test]
    fn the_short_window_holds_the_last_two_ticks() {
        let one = Counts::of_packet(&pkt(proto::TCP, tcp_flags::SYN, 1234, Fragment::None));
        let mut b = Burst::seeded(10, [0; COUNTERS], 0);
        for _ in 0..5 {
            b.add(10, &one);
        }
        for _ in 0..7 {
            b.add(11, &one);
        }
        let syn = |b: &Burst, t| b.read(t).0[Signal::Syn.index()];
        assert_eq!(
            syn(&b, 12),
            12,
            "at the boundary after tick 11: ticks 10 and 11"
        );
        assert_eq!(b.read(12).1, 12);
        assert_eq!(syn(&b, 11), 12, "inside tick 11 (the last evaluation)");
        assert_eq!(syn(&b, 13), 7, "tick 10 has left the window");
        assert_eq!(syn(&b, 14), 0);
        b.add(14, &one);
        assert_eq!(syn(&b, 15), 1, "a gap empties the previous tick");
    }

    #[test]
    fn record_tells_when_a_silence_ends() {
        let one = Counts::of_packet(&pkt(proto::UDP, 0, 9, Fragment::None));
        let mut w = Sliding::new(0);
        assert!(w.record(0, &one));
        assert!(!w.record(0, &one));
        assert!(!w.record(1, &one), "the previous window held packets");
        assert!(!w.record(2, &one));
        assert!(w.record(4, &one), "window 3 was empty");
        assert_eq!(w.both().n[0], 1);
    }

    #[test]
    fn window_total_equals_recorded() {
        let one = Counts::of_packet(&pkt(proto::ICMP, 0, 0, Fragment::None));
        let mut w = Sliding::new(0);
        let mut seen = 0;
        for i in 0..1000u64 {
            w.record(i / 100, &one);
            if i % 100 == 99 {
                seen += w.current().n[0];
            }
        }
        assert_eq!(seen, 1000);
    }
}
