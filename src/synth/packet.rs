//! Frame building: Ethernet, IPv4/IPv6, TCP, UDP, ICMP echo and IPv4 fragments written into one
//! reusable [`Frame`] buffer, with their checksums; [`Ends`], the two addresses of a packet.

/// Ones-complement sum of big-endian 16-bit words, added to `acc` (not folded).
pub(super) fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds a sum into a 16-bit ones-complement checksum.
pub(super) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Source and destination of one packet, one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ends {
    V4 { src: u32, dst: u32 },
    V6 { src: u128, dst: u128 },
}

impl Ends {
    pub(super) fn swap(self) -> Ends {
        match self {
            Ends::V4 { src, dst } => Ends::V4 { src: dst, dst: src },
            Ends::V6 { src, dst } => Ends::V6 { src: dst, dst: src },
        }
    }

    /// Sum of the transport pseudo-header.
    fn pseudo_sum(self, proto: u8, len: usize) -> u64 {
        let mut acc = u64::from(proto) + len as u64;
        match self {
            Ends::V4 { src, dst } => {
                for a in [src, dst] {
                    acc += u64::from(a >> 16) + u64::from(a & 0xffff);
                }
            }
            Ends::V6 { src, dst } => {
                for a in [src, dst] {
                    for i in 0..8 {
                        acc += ((a >> (16 * i)) & 0xffff) as u64;
                    }
                }
            }
        }
        acc
    }
}

pub(super) const ETH: usize = 14;
const MIN_FRAME: usize = 60;
const FRAME_CAP: usize = 1536;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
pub(super) const SYN: u8 = 0x02;
pub(super) const FIN: u8 = 0x01;
pub(super) const PSH: u8 = 0x08;
pub(super) const ACK: u8 = 0x10;

/// Printable filler for payloads.
pub(super) static FILLER: [u8; 1500] = filler();

const fn filler() -> [u8; 1500] {
    let mut a = [0u8; 1500];
    let mut i = 0;
    while i < a.len() {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
}

/// The per-packet IPv4 header fields a sender's stack chooses (IPv6 uses `ttl` as the hop limit).
#[derive(Clone, Copy, Debug)]
pub(super) struct IpFields {
    pub(super) id: u16,
    pub(super) ttl: u8,
    /// Don't Fragment.
    pub(super) df: bool,
}

impl IpFields {
    pub(super) fn frag(self) -> u16 {
        if self.df {
            IP_DF
        } else {
            0
        }
    }
}

/// The TCP header of one segment, and how many filler bytes follow it.
#[derive(Clone, Copy, Debug)]
pub(super) struct TcpSeg<'a> {
    pub(super) ports: (u16, u16),
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) flags: u8,
    pub(super) win: u16,
    pub(super) opts: &'a [u8],
    pub(super) payload: usize,
}

/// The reusable frame buffer; MACs are written once.
pub(super) struct Frame {
    pub(super) buf: [u8; FRAME_CAP],
}

impl Frame {
    pub(super) fn new(src_mac: [u8; 6], dst_mac: [u8; 6]) -> Frame {
        let mut buf = [0u8; FRAME_CAP];
        buf[0..6].copy_from_slice(&dst_mac);
        buf[6..12].copy_from_slice(&src_mac);
        Frame { buf }
    }

    /// Writes the ethertype and IP header for an IP payload of `l4_len` bytes; returns its offset.
    pub(super) fn ip(
        &mut self,
        ends: Ends,
        proto: u8,
        l4_len: usize,
        id: u16,
        frag: u16,
        ttl: u8,
    ) -> usize {
        match ends {
            Ends::V4 { src, dst } => {
                self.buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let h = &mut self.buf[ETH..ETH + 20];
                h[0] = 0x45;
                h[1] = 0;
                h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = ttl;
                h[9] = proto;
                h[10] = 0;
                h[11] = 0;
                h[12..16].copy_from_slice(&src.to_be_bytes());
                h[16..20].copy_from_slice(&dst.to_be_bytes());
                let c = fold(sum16(h, 0));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                ETH + 20
            }
            Ends::V6 { src, dst } => {
                self.buf[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
                let h = &mut self.buf[ETH..ETH + 40];
                h[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
                h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                h[6] = proto;
                h[7] = ttl;
                h[8..24].copy_from_slice(&src.to_be_bytes());
                h[24..40].copy_from_slice(&dst.to_be_bytes());
                ETH + 40
            }
        }
    }

    /// Zero-pads to the Ethernet minimum; returns the frame length.
    pub(super) fn finish(&mut self, end: usize) -> usize {
        if end < MIN_FRAME {
            self.buf[end..MIN_FRAME].fill(0);
            MIN_FRAME
        } else {
            end
        }
    }

    /// A TCP segment with `payload` filler bytes (at most 1440), an optional MSS option and DF set.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tcp(
        &mut self,
        ends: Ends,
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        flags: u8,
        win: u16,
        mss: Option<u16>,
        payload: usize,
        id: u16,
        ttl: u8,
    ) -> usize {
        let mss_opt = mss.map(|m| {
            let [hi, lo] = m.to_be_bytes();
            [2, 4, hi, lo]
        });
        let seg = TcpSeg {
            ports,
            seq,
            ack,
            flags,
            win,
            opts: mss_opt.as_ref().map_or(&[][..], |o| &o[..]),
            payload: payload.min(1440),
        };
        self.tcp_seg(ends, IpFields { id, ttl, df: true }, &seg)
    }

    /// A TCP segment with any options (at most 40 bytes, zero-padded to a multiple of 4) and
    /// `seg.payload` filler bytes, clamped so that an IPv4 packet fits a 1500-byte MTU.
    pub(super) fn tcp_seg(&mut self, ends: Ends, ip: IpFields, seg: &TcpSeg<'_>) -> usize {
        self.tcp_data(ends, ip, seg, &FILLER)
    }

    /// [`Frame::tcp_seg`] with the first `seg.payload` bytes of `data` as the payload (as many as
    /// `data` has and an IPv4 packet of 1500 bytes holds).
    pub(super) fn tcp_data(
        &mut self,
        ends: Ends,
        ip: IpFields,
        seg: &TcpSeg<'_>,
        data: &[u8],
    ) -> usize {
        let opts = &seg.opts[..seg.opts.len().min(40)];
        let hl = 20 + opts.len().div_ceil(4) * 4;
        let payload = seg.payload.min(1480 - hl).min(data.len());
        let l4_len = hl + payload;
        let o = self.ip(ends, 6, l4_len, ip.id, ip.frag(), ip.ttl);
        let t = &mut self.buf[o..o + l4_len];
        t[0..2].copy_from_slice(&seg.ports.0.to_be_bytes());
        t[2..4].copy_from_slice(&seg.ports.1.to_be_bytes());
        t[4..8].copy_from_slice(&seg.seq.to_be_bytes());
        t[8..12].copy_from_slice(&seg.ack.to_be_bytes());
        t[12] = ((hl / 4) as u8) << 4;
        t[13] = seg.flags;
        t[14..16].copy_from_slice(&seg.win.to_be_bytes());
        t[16..20].fill(0);
        t[20..20 + opts.len()].copy_from_slice(opts);
        t[20 + opts.len()..hl].fill(0);
        t[hl..].copy_from_slice(&data[..payload]);
        let c = fold(sum16(t, ends.pseudo_sum(6, l4_len)));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        self.finish(o + l4_len)
    }

    /// A UDP datagram carrying `payload` (at most 1472 bytes), with its checksum; DF clear.
    pub(super) fn udp(
        &mut self,
        ends: Ends,
        ports: (u16, u16),
        payload: &[u8],
        id: u16,
        ttl: u8,
    ) -> usize {
        self.udp_ip(ends, ports, payload, IpFields { id, ttl, df: false })
    }

    /// A UDP datagram carrying `payload` (at most 1472 bytes), with its checksum.
    pub(super) fn udp_ip(
        &mut self,
        ends: Ends,
        ports: (u16, u16),
        payload: &[u8],
        ip: IpFields,
    ) -> usize {
        let payload = &payload[..payload.len().min(1472)];
        let l4_len = 8 + payload.len();
        let o = self.ip(ends, 17, l4_len, ip.id, ip.frag(), ip.ttl);
        let u = &mut self.buf[o..o + l4_len];
        u[0..2].copy_from_slice(&ports.0.to_be_bytes());
        u[2..4].copy_from_slice(&ports.1.to_be_bytes());
        u[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        u[6..8].fill(0);
        u[8..].copy_from_slice(payload);
        let c = match fold(sum16(u, ends.pseudo_sum(17, l4_len))) {
            0 => 0xffff,
            c => c,
        };
        u[6..8].copy_from_slice(&c.to_be_bytes());
        self.finish(o + l4_len)
    }

    /// An ICMPv4 echo request (type 8) or reply (type 0) with `payload` filler bytes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp_echo(
        &mut self,
        ends: Ends,
        icmp_type: u8,
        ident: u16,
        seq: u16,
        payload: usize,
        id: u16,
        ttl: u8,
    ) -> usize {
        let payload = payload.min(1472);
        let l4_len = 8 + payload;
        let o = self.ip(ends, 1, l4_len, id, 0, ttl);
        let m = &mut self.buf[o..o + l4_len];
        m[0] = icmp_type;
        m[1] = 0;
        m[2..4].fill(0);
        m[4..6].copy_from_slice(&ident.to_be_bytes());
        m[6..8].copy_from_slice(&seq.to_be_bytes());
        m[8..].copy_from_slice(&FILLER[..payload]);
        let c = fold(sum16(m, 0));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.finish(o + l4_len)
    }

    /// One IPv4 fragment of a UDP datagram: `data` at byte `offset` (a multiple of 8).
    pub(super) fn fragment(
        &mut self,
        ends: Ends,
        id: u16,
        offset: usize,
        more: bool,
        data: &[u8],
        ttl: u8,
    ) -> usize {
        let data = &data[..data.len().min(1480)];
        let frag = ((offset / 8) as u16 & 0x1fff) | if more { IP_MF } else { 0 };
        let o = self.ip(ends, 17, data.len(), id, frag, ttl);
        self.buf[o..o + data.len()].copy_from_slice(data);
        self.finish(o + data.len())
    }
}
