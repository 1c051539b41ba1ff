//! Which socket of a fanout group gets a packet. The group runs in `PACKET_FANOUT_CBPF` mode: a
//! classic BPF program, which the first socket may replace at any time, returns the member's
//! index (the kernel takes it modulo the members). Two programs:
//!
//! - [`first_only`]: every packet to the first socket, the one whose thread also routes the
//!   others' packets. While that thread keeps up, a second thread only adds cost (its wake-ups,
//!   and summaries decoded on one core and routed on another), so by default the others wait.
//! - [`by_flow`]: packets spread by a symmetric hash of IPv4 or IPv6 addresses and TCP/UDP ports,
//!   so both directions of a flow, and every packet of it, go to the same socket between two
//!   switches. Unlike the kernel's own flow hash (`PACKET_FANOUT_HASH`) it does not look inside
//!   MPLS, PPPoE or a second VLAN tag (the kernel takes the first off): such packets, and others
//!   that are not IP, all go to the first socket.
//!
//! The [`Governor`] decides, on the first socket, when to switch: to spreading when its thread
//! falls a quarter of its ring behind, back to the first socket alone after a window in which
//! that thread, even while spreading, waited for packets at least half the time. At a switch
//! the flows that change socket may reach the router ahead of their own earlier packets still in
//! the other ring (counted as late, as packets of several capture threads already can be).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libc::sock_filter;

/// How long spreading lasts at least, and the window over which the first thread's waiting is
/// measured before it stops.
pub(super) const WINDOW: Duration = Duration::from_secs(10);

/// When packets are spread over the sockets of a fanout group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spread {
    /// Only while the first socket's thread falls behind (a quarter of its ring waiting).
    #[default]
    WhenBehind,
    /// Always, by flow.
    Always,
}

/// The first socket's decision to spread or not.
#[derive(Debug)]
pub(super) struct Governor {
    spreading: bool,
    window_start: Instant,
    waited: Duration,
}

impl Governor {
    pub fn new(now: Instant) -> Governor {
        Governor {
            spreading: false,
            window_start: now,
            waited: Duration::ZERO,
        }
    }

    /// The first socket's thread took a block at `now`, finding itself `behind` or not: the
    /// program to switch to, if any (true: spread by flow; false: the first socket alone).
    pub fn on_block(&mut self, behind: bool, now: Instant) -> Option<bool> {
        if behind && !self.spreading {
            self.spreading = true;
            self.window_start = now;
            self.waited = Duration::ZERO;
            return Some(true);
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if !self.spreading || elapsed < WINDOW {
            return None;
        }
        let idle_enough = self.waited * 2 >= elapsed;
        self.window_start = now;
        self.waited = Duration::ZERO;
        if idle_enough && !behind {
            self.spreading = false;
            return Some(false);
        }
        None
    }

    /// Whether the time the thread is about to wait counts (only while spreading).
    pub fn measures_waits(&self) -> bool {
        self.spreading
    }

    /// The thread waited `d` for packets.
    pub fn waited(&mut self, d: Duration) {
        if self.spreading {
            self.waited += d;
        }
    }

    /// Spreading has begun only now (the other sockets first made their rings): the window
    /// starts here, and the waits before it, the first still alone, do not count.
    pub fn started(&mut self, now: Instant) {
        self.window_start = now;
        self.waited = Duration::ZERO;
    }
}

/// How the first socket of a group spreading only when behind asks the others, which wait
/// without a ring (a ring of 64 MiB costs the kernel ~10 ms to clear, and its memory), to make
/// theirs; it spreads once every one has.
#[derive(Debug)]
pub(super) struct Wake {
    wanted: Mutex<bool>,
    cv: Condvar,
    /// The other sockets, each to make its ring.
    others: usize,
    rings: AtomicUsize,
    failed: AtomicBool,
}

impl Wake {
    /// For a group of the first socket and `others` waiting ones.
    pub fn new(others: usize) -> Wake {
        Wake {
            wanted: Mutex::new(false),
            cv: Condvar::new(),
            others,
            rings: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// The first socket's thread fell behind: the others are to make their rings.
    pub fn want(&self) {
        *self.wanted.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for [`Wake::want`]; true once it was called.
    pub fn wait_wanted(&self, timeout: Duration) -> bool {
        let guard = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |wanted| !*wanted)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Another socket has made its ring.
    pub fn made_ring(&self) {
        self.rings.fetch_add(1, Ordering::Release);
    }

    /// Another socket could not make its ring: the first goes on alone.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Every other socket has made its ring.
    pub fn all_made(&self) -> bool {
        self.rings.load(Ordering::Acquire) >= self.others
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// One instruction before its jumps are resolved: jump targets are labels.
enum Asm {
    Op(u16, u32),
    /// Conditional jump: to `yes` when the test holds, else to `no` (`None`: the next).
    Jump {
        code: u16,
        k: u32,
        yes: &'static str,
        no: Option<&'static str>,
    },
    Label(&'static str),
}

/// Resolves labels into the relative offsets classic BPF uses (forward only).
fn assemble(code: &[Asm]) -> Vec<sock_filter> {
    let mut at = Vec::new();
    let mut n = 0usize;
    for a in code {
        match a {
            Asm::Label(l) => at.push((*l, n)),
            _ => n += 1,
        }
    }
    let target = |label: &str, from: usize| -> u8 {
        let to = at
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("BPF label {label} undefined (a bug in this file)"));
        u8::try_from(to - from - 1).unwrap_or_else(|_| panic!("BPF jump to {label} too far"))
    };
    let mut out = Vec::with_capacity(n);
    for a in code {
        match *a {
            Asm::Label(_) => {}
            Asm::Op(code, k) => out.push(sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Asm::Jump { code, k, yes, no } => {
                let here = out.len();
                let always = u32::from(code) == libc::BPF_JMP | libc::BPF_JA;
                out.push(if always {
                    // an unconditional jump's offset is its `k`
                    sock_filter {
                        code,
                        jt: 0,
                        jf: 0,
                        k: u32::from(target(yes, here)),
                    }
                } else {
                    sock_filter {
                        code,
                        jt: target(yes, here),
                        jf: no.map_or(0, |l| target(l, here)),
                        k,
                    }
                });
            }
        }
    }
    out
}

const fn op(code: u32) -> u16 {
    code as u16
}

/// `k` of a load at `off` bytes into the network header, whatever the link header before it
/// (and for outgoing packets too, whose data starts at the link header).
const fn net(off: i32) -> u32 {
    (libc::SKF_NET_OFF + off) as u32
}

fn load_word(off: i32) -> Asm {
    Asm::Op(op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS), net(off))
}

fn load_half(off: i32) -> Asm {
    Asm::Op(op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS), net(off))
}

fn load_byte(off: i32) -> Asm {
    Asm::Op(op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS), net(off))
}

fn jeq(k: u32, yes: &'static str) -> Asm {
    Asm::Jump {
        code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
        k,
        yes,
        no: None,
    }
}

fn alu(kind: u32, k: u32) -> Asm {
    Asm::Op(op(libc::BPF_ALU | kind | libc::BPF_K), k)
}

fn add_x() -> Asm {
    Asm::Op(op(libc::BPF_ALU | libc::BPF_ADD | libc::BPF_X), 0)
}

fn tax() -> Asm {
    Asm::Op(op(libc::BPF_MISC | libc::BPF_TAX), 0)
}

fn txa() -> Asm {
    Asm::Op(op(libc::BPF_MISC | libc::BPF_TXA), 0)
}

fn store(slot: u32) -> Asm {
    Asm::Op(op(libc::BPF_ST), slot)
}

fn load_mem(slot: u32) -> Asm {
    Asm::Op(op(libc::BPF_LD | libc::BPF_MEM), slot)
}

fn jump(to: &'static str) -> Asm {
    Asm::Jump {
        code: op(libc::BPF_JMP | libc::BPF_JA),
        k: 0,
        yes: to,
        no: None,
    }
}

/// The program that gives every packet to the first socket.
pub(super) fn first_only() -> Vec<sock_filter> {
    assemble(&[Asm::Op(op(libc::BPF_RET | libc::BPF_K), 0)])
}

/// The program that spreads packets by flow: the sum of the addresses' words plus, for TCP and
/// UDP (IPv4 without options or fragments, IPv6 without extension headers), the sum of the two
/// ports: the same for both directions. Mixed by a multiplication, its upper half is the
/// member's index (modulo the members). Other packets, and any cut short, go to the first socket.
pub(super) fn by_flow() -> Vec<sock_filter> {
    const ETH_IPV4: u32 = 0x0800;
    const ETH_IPV6: u32 = 0x86dd;
    const TCP: u32 = 6;
    const UDP: u32 = 17;
    let mut code = vec![
        // the EtherType, from the socket buffer (VLAN tags already taken off)
        Asm::Op(
            op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
            (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32,
        ),
        jeq(ETH_IPV4, "v4"),
        jeq(ETH_IPV6, "v6"),
        Asm::Op(op(libc::BPF_RET | libc::BPF_K), 0),
        Asm::Label("v4"),
        // M[0] = source + destination
        load_word(12),
        tax(),
        load_word(16),
        add_x(),
        store(0),
        load_byte(9),
        jeq(TCP, "v4ports"),
        jeq(UDP, "v4ports"),
        jump("mix"),
        Asm::Label("v4ports"),
        // a fragment (more fragments, or an offset) has no ports
        load_half(6),
        Asm::Jump {
            code: op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K),
            k: 0x3fff,
            yes: "mix",
            no: None,
        },
        // version 4, header of 20 bytes: the ports follow it
        load_byte(0),
        Asm::Jump {
            code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            k: 0x45,
            yes: "v4load",
            no: Some("mix"),
        },
        Asm::Label("v4load"),
        load_word(20),
        jump("ports"),
        Asm::Label("v6"),
        // M[0] = the sum of the eight words of the two addresses
        load_word(8),
    ];
    for off in [12, 16, 20, 24, 28, 32, 36] {
        code.extend([tax(), load_word(off), add_x()]);
    }
    code.extend([
        store(0),
        load_byte(6),
        jeq(TCP, "v6ports"),
        jeq(UDP, "v6ports"),
        jump("mix"),
        Asm::Label("v6ports"),
        load_word(40),
        Asm::Label("ports"),
        // A = source port << 16 | destination port: M[0] += source port + destination port
        tax(),
        alu(libc::BPF_RSH, 16),
        store(1),
        txa(),
        alu(libc::BPF_AND, 0xffff),
        tax(),
        load_mem(1),
        add_x(),
        tax(),
        load_mem(0),
        add_x(),
        store(0),
        Asm::Label("mix"),
        load_mem(0),
        alu(libc::BPF_MUL, 0x9e37_79b1),
        alu(libc::BPF_RSH, 16),
        Asm::Op(op(libc::BPF_RET | libc::BPF_A), 0),
    ]);
    assemble(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_begins_when_behind_and_ends_after_a_window_mostly_waiting() {
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut g = Governor::new(t0);
        assert_eq!(g.on_block(false, s(1.0)), None);
        assert_eq!(g.on_block(true, s(2.0)), Some(true));
        // already spreading: falling behind again changes nothing
        assert_eq!(g.on_block(true, s(3.0)), None);
        // a busy window (waited 4 s of 10) keeps spreading
        assert!(g.measures_waits());
        g.waited(Duration::from_secs(4));
        assert_eq!(g.on_block(false, s(12.0)), None);
        // an idle one (waited 6 s of 10) ends it
        g.waited(Duration::from_secs(6));
        assert_eq!(
            g.on_block(false, s(21.0)),
            None,
            "the window is not over yet"
        );
        assert_eq!(g.on_block(false, s(22.5)), Some(false));
        assert!(!g.measures_waits());
        // waits while not spreading are not counted
        g.waited(Duration::from_secs(100));
        assert_eq!(g.on_block(true, s(23.0)), Some(true));
        assert_eq!(
            g.on_block(false, s(33.5)),
            None,
            "a window of work, not of waits"
        );
        // spreading that began late (the others making their rings) starts its window then:
        // the waits before do not count
        assert_eq!(g.on_block(false, s(40.0)), None);
        g.waited(Duration::from_secs(9));
        g.started(s(45.0));
        assert_eq!(
            g.on_block(false, s(55.5)),
            None,
            "waits before the start counted"
        );
    }

    /// Runs `prog` as the kernel would on a packet whose network header is `net` (EtherType
    /// `proto`): the subset of classic BPF these programs use. None where the kernel would stop
    /// the program (a load beyond the packet: it then returns 0).
    fn run(prog: &[sock_filter], proto: u16, net: &[u8]) -> Option<u32> {
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let load = |k: u32, size: usize| -> Option<u32> {
            if k == (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32 {
                return Some(u32::from(proto));
            }
            let off = (k as i32 - libc::SKF_NET_OFF) as usize;
            let b = net.get(off..off + size)?;
            Some(b.iter().fold(0u32, |v, byte| v << 8 | u32::from(*byte)))
        };
        let mut pc = 0;
        loop {
            let ins = prog[pc];
            let (code, k) = (u32::from(ins.code), ins.k);
            pc += 1;
            match code & 0x07 {
                libc::BPF_LD if code & 0xe0 == libc::BPF_MEM => a = mem[k as usize],
                libc::BPF_LD => {
                    let size = match code & 0x18 {
                        libc::BPF_W => 4,
                        libc::BPF_H => 2,
                        _ => 1,
                    };
                    a = load(k, size)?;
                }
                libc::BPF_ST => mem[k as usize] = a,
                libc::BPF_ALU => {
                    let v = if code & libc::BPF_X != 0 { x } else { k };
                    a = match code & 0xf0 {
                        libc::BPF_ADD => a.wrapping_add(v),
                        libc::BPF_MUL => a.wrapping_mul(v),
                        libc::BPF_AND => a & v,
                        libc::BPF_RSH => a >> v,
                        other => panic!("ALU op {other:#x} not in this interpreter"),
                    };
                }
                libc::BPF_MISC if code & 0xf8 == libc::BPF_TXA => a = x,
                libc::BPF_MISC => x = a,
                libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        libc::BPF_JA => {
                            pc += k as usize;
                            continue;
                        }
                        libc::BPF_JEQ => a == k,
                        libc::BPF_JSET => a & k != 0,
                        other => panic!("jump {other:#x} not in this interpreter"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                libc::BPF_RET if code & 0x18 == libc::BPF_A => return Some(a),
                libc::BPF_RET => return Some(k),
                other => panic!("class {other:#x} not in this interpreter"),
            }
        }
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, proto, 0, 0];
        p.extend(src);
        p.extend(dst);
        p.extend(sport.to_be_bytes());
        p.extend(dport.to_be_bytes());
        p.extend([0u8; 16]);
        p
    }

    fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 20, next, 64];
        p.extend(src);
        p.extend(dst);
        p.extend(sport.to_be_bytes());
        p.extend(dport.to_be_bytes());
        p.extend([0u8; 16]);
        p
    }

    #[test]
    fn by_flow_gives_both_directions_of_a_flow_one_socket_and_spreads_flows() {
        let prog = by_flow();
        let (a, b) = ([10, 0, 0, 1], [192, 0, 2, 7]);
        let mut seen = std::collections::BTreeSet::new();
        for sport in 1000..1064 {
            for proto in [6u8, 17] {
                let there = run(&prog, 0x0800, &ipv4(proto, a, b, sport, 80)).unwrap();
                let back = run(&prog, 0x0800, &ipv4(proto, b, a, 80, sport)).unwrap();
                assert_eq!(there, back, "port {sport}");
                seen.insert(there % 2);
            }
        }
        assert_eq!(seen.len(), 2, "64 flows all on one of two sockets");
        // the ports count: two flows between the same hosts differ somewhere
        let results: std::collections::BTreeSet<u32> = (1000..1016)
            .map(|p| run(&prog, 0x0800, &ipv4(6, a, b, p, 80)).unwrap())
            .collect();
        assert!(results.len() > 8, "{results:?}");
        // IPv6, both directions
        let (c, d) = (
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe; 16],
        );
        let mut seen6 = std::collections::BTreeSet::new();
        for sport in 2000..2032 {
            let there = run(&prog, 0x86dd, &ipv6(6, c, d, sport, 443)).unwrap();
            assert_eq!(
                there,
                run(&prog, 0x86dd, &ipv6(6, d, c, 443, sport)).unwrap()
            );
            seen6.insert(there % 2);
        }
        assert_eq!(seen6.len(), 2);
        // a fragment, a header with options, ICMP: addresses only, the same both ways
        let mut frag = ipv4(17, a, b, 5, 6);
        frag[6] = 0x20; // more fragments
        let addresses_only = run(&prog, 0x0800, &frag).unwrap();
        assert_eq!(
            addresses_only,
            run(&prog, 0x0800, &ipv4(1, b, a, 9, 9)).unwrap()
        );
        let mut options = ipv4(6, a, b, 5, 6);
        options[0] = 0x46;
        assert_eq!(run(&prog, 0x0800, &options).unwrap(), addresses_only);
        // not IP: the first socket; cut short: the kernel stops the program (0, the first)
        assert_eq!(run(&prog, 0x0806, &[0u8; 28]), Some(0));
        assert_eq!(run(&prog, 0x0800, &[0x45, 0, 0, 20]), None);
        assert_eq!(run(&first_only(), 0x0800, &ipv4(6, a, b, 1, 2)), Some(0));
    }

    #[test]
    fn a_waiting_socket_wakes_when_wanted_and_not_before() {
        let wake = std::sync::Arc::new(Wake::new(1));
        assert!(!wake.wait_wanted(Duration::from_millis(5)));
        assert!(!wake.all_made());
        let other = std::sync::Arc::clone(&wake);
        let waiter = std::thread::spawn(move || {
            // woken by `want`, long before this timeout
            let t = Instant::now();
            let woken = other.wait_wanted(Duration::from_secs(3));
            other.made_ring();
            (woken, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        wake.want();
        let (woken, waited) = waiter.join().unwrap();
        assert!(woken);
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        assert!(wake.all_made());
        assert!(!wake.failed());
        // once wanted, a later wait returns at once
        assert!(wake.wait_wanted(Duration::from_secs(30)));
    }

    #[test]
    fn the_programs_jump_only_forward_and_end_in_a_return() {
        for prog in [first_only(), by_flow()] {
            let last = prog.last().expect("a program");
            assert_eq!(u32::from(last.code) & 0x07, libc::BPF_RET);
            for (i, ins) in prog.iter().enumerate() {
                if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                    let ja = u32::from(ins.code) == libc::BPF_JMP | libc::BPF_JA;
                    let far = if ja {
                        ins.k as usize
                    } else {
                        usize::from(ins.jt.max(ins.jf))
                    };
                    assert!(i + 1 + far < prog.len(), "jump at {i} leaves the program");
                }
            }
        }
    }
}
