//! UDP sockets for `floodwatch collect --listen`: telemetry datagrams as frames. Each datagram is
//! handed on as a raw-IP frame (a minimal IPv4 or IPv6 and UDP header written in front of the
//! payload, the sender's address as source), so the reader treats a socket exactly like a capture
//! of exported telemetry. Packet time is the wall clock at arrival. Datagrams the kernel dropped
//! because a socket's receive buffer was full are counted (SO_RXQ_OVFL) as kernel drops.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{
    getsockopt, recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};

use super::{CaptureError, CaptureStats, FrameSource, RawFrame, SourceEvent};
use crate::decode::LinkType;
use crate::time::Timestamp;

/// Room in front of the payload for the largest header written there (IPv6 40 + UDP 8).
const HEADROOM: usize = 48;
/// The largest UDP payload.
const MAX_PAYLOAD: usize = 65_535;
/// How long one wait for datagrams lasts before an idle report.
const POLL_MS: u16 = 100;

struct Listener {
    socket: UdpSocket,
    local: SocketAddr,
    /// The kernel's drop counter as last reported (it counts from the socket's creation).
    drops: u32,
}

/// One or more bound UDP sockets, read in turn.
pub struct UdpSource {
    listeners: Vec<Listener>,
    buf: Vec<u8>,
    /// Where the current frame is in `buf`.
    frame: (usize, usize),
    ts: Timestamp,
    next: usize,
    stats: CaptureStats,
    warnings: Vec<String>,
}

impl UdpSource {
    /// Binds every address with a receive buffer of `recv_buffer` bytes (the kernel may grant less:
    /// `net.core.rmem_max`).
    pub fn bind(addrs: &[SocketAddr], recv_buffer: usize) -> Result<UdpSource, CaptureError> {
        let mut listeners = Vec::with_capacity(addrs.len());
        let mut warnings = Vec::new();
        for addr in addrs {
            let setup = |detail: String| CaptureError::Setup {
                iface: format!("--listen {addr}"),
                detail,
            };
            let socket = UdpSocket::bind(addr).map_err(|e| {
                setup(format!(
                    "cannot bind: {e} (another collector on this port? ports below 1024 need root; \
                     the address must be one of this host's)"
                ))
            })?;
            socket
                .set_nonblocking(true)
                .map_err(|e| setup(format!("cannot make the socket non-blocking: {e}")))?;
            // Past net.core.rmem_max only with CAP_NET_ADMIN (SO_RCVBUFFORCE); else capped. The
            // kernel reports twice what it granted (its bookkeeping included).
            if setsockopt(&socket, sockopt::RcvBufForce, &recv_buffer).is_err() {
                let _ = setsockopt(&socket, sockopt::RcvBuf, &recv_buffer);
            }
            let granted = getsockopt(&socket, sockopt::RcvBuf).unwrap_or(0) / 2;
            if granted < recv_buffer {
                warnings.push(format!(
                    "--listen {addr}: receive buffer {granted} bytes, not the {recv_buffer} asked: \
                     net.core.rmem_max caps it without CAP_NET_ADMIN (raise it: sysctl -w \
                     net.core.rmem_max={recv_buffer}); bursts beyond it are dropped and counted"
                ));
            }
            setsockopt(&socket, sockopt::RxqOvfl, &1)
                .map_err(|e| setup(format!("cannot count receive drops (SO_RXQ_OVFL): {e}")))?;
            let local = socket.local_addr().unwrap_or(*addr);
            listeners.push(Listener {
                socket,
                local,
                drops: 0,
            });
        }
        if listeners.is_empty() {
            return Err(CaptureError::Setup {
                iface: "collect".into(),
                detail: "no --listen address given".into(),
            });
        }
        Ok(UdpSource {
            listeners,
            buf: vec![0; HEADROOM + MAX_PAYLOAD],
            frame: (0, 0),
            ts: Timestamp(0),
            next: 0,
            stats: CaptureStats::default(),
            warnings,
        })
    }

    /// What the operator should know about the sockets (e.g. a receive buffer smaller than asked).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The bound addresses, for the start-up line.
    pub fn describe(&self) -> String {
        let v: Vec<String> = self.listeners.iter().map(|l| l.local.to_string()).collect();
        v.join(", ")
    }

    /// The local addresses actually bound (port 0 becomes the port the kernel chose).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    /// Tries each socket once, starting after the last one read; true when a datagram was read.
    fn try_read(&mut self) -> Result<bool, CaptureError> {
        let n = self.listeners.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let Some(l) = self.listeners.get_mut(i) else {
                continue;
            };
            let mut cmsg = nix::cmsg_space!(u32);
            let (payload_room, _) = self.buf.split_at_mut(HEADROOM + MAX_PAYLOAD);
            let Some(room) = payload_room.get_mut(HEADROOM..) else {
                continue;
            };
            let mut iov = [IoSliceMut::new(room)];
            let got = recvmsg::<SockaddrStorage>(
                l.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            );
            let msg = match got {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(CaptureError::Setup {
                        iface: format!("--listen {}", l.local),
                        detail: format!("receive failed: {}", io::Error::from(e)),
                    })
                }
            };
            let len = msg.bytes;
            for c in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::RxqOvfl(total) = c {
                    self.stats.kernel_drops += u64::from(total.wrapping_sub(l.drops));
                    l.drops = total;
                }
            }
            let from = msg.address.as_ref().and_then(|a: &SockaddrStorage| {
                a.as_sockaddr_in()
                    .map(|s| SocketAddr::from(std::net::SocketAddrV4::from(*s)))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|s| SocketAddr::from(std::net::SocketAddrV6::from(*s)))
                    })
            });
            let Some(from) = from else {
                continue;
            };
            let local = l.local;
            self.next = (i + 1) % n;
            self.ts = Timestamp::now();
            self.frame = self.write_headers(from, local, len);
            self.stats.frames += 1;
            self.stats.captured_bytes += len as u64;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes an IP and UDP header in front of the `len` payload bytes; returns the frame's range.
    fn write_headers(&mut self, from: SocketAddr, local: SocketAddr, len: usize) -> (usize, usize) {
        let udp_len = u16::try_from(len + 8).unwrap_or(u16::MAX);
        let mut udp = [0u8; 8];
        udp[0..2].copy_from_slice(&from.port().to_be_bytes());
        udp[2..4].copy_from_slice(&local.port().to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let mut header = Vec::with_capacity(HEADROOM);
        match (from.ip().to_canonical(), local.ip().to_canonical()) {
            (IpAddr::V4(src), dst) => {
                let dst = match dst {
                    IpAddr::V4(d) => d.octets(),
                    IpAddr::V6(_) => [0; 4],
                };
                let total = u16::try_from(len + 28).unwrap_or(u16::MAX);
                header.extend_from_slice(&[0x45, 0]);
                header.extend_from_slice(&total.to_be_bytes());
                header.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
                header.extend_from_slice(&src.octets());
                header.extend_from_slice(&dst);
            }
            (IpAddr::V6(src), dst) => {
                let dst = match dst {
                    IpAddr::V6(d) => d.octets(),
                    IpAddr::V4(d) => d.to_ipv6_mapped().octets(),
                };
                header.extend_from_slice(&[0x60, 0, 0, 0]);
                header.extend_from_slice(&udp_len.to_be_bytes());
                header.extend_from_slice(&[17, 64]);
                header.extend_from_slice(&src.octets());
                header.extend_from_slice(&dst);
            }
        }
        header.extend_from_slice(&udp);
        let start = HEADROOM - header.len();
        if let Some(dst) = self.buf.get_mut(start..HEADROOM) {
            dst.copy_from_slice(&header);
        }
        (start, HEADROOM + len)
    }

    /// Waits up to [`POLL_MS`] for any socket to be readable.
    fn wait(&self) {
        let mut fds: Vec<PollFd<'_>> = self
            .listeners
            .iter()
            .map(|l| PollFd::new(l.socket.as_fd(), PollFlags::POLLIN))
            .collect();
        let _ = poll(&mut fds, POLL_MS);
    }
}

impl FrameSource for UdpSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
        loop {
            if let SourceEvent::Frame(_) = self.next_event()? {
                break;
            }
        }
        let (a, b) = self.frame;
        Ok(Some(RawFrame {
            ts: self.ts,
            link: LinkType::RAW,
            data: self.buf.get(a..b).unwrap_or_default(),
            wire_len: 0,
        }))
    }

    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        if !self.try_read()? {
            self.wait();
            if !self.try_read()? {
                return Ok(SourceEvent::Idle {
                    now: Timestamp::now(),
                });
            }
        }
        let (a, b) = self.frame;
        Ok(SourceEvent::Frame(RawFrame {
            ts: self.ts,
            link: LinkType::RAW,
            data: self.buf.get(a..b).unwrap_or_default(),
            wire_len: 0,
        }))
    }

    fn stats(&self) -> CaptureStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;

    #[test]
    fn datagrams_come_out_as_raw_ip_frames_with_the_sender_as_source() {
        let mut src = UdpSource::bind(&["127.0.0.1:0".parse().unwrap()], 1 << 20).unwrap();
        let to = src.local_addrs()[0];
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hello telemetry", to).unwrap();
        let from = tx.local_addr().unwrap();
        let mut got = None;
        for _ in 0..20 {
            if let SourceEvent::Frame(f) = src.next_event().unwrap() {
                let d = Decoder.udp_datagram(f.link, f.data).unwrap().unwrap();
                got = Some((d.src, d.sport, d.dport, d.payload.to_vec()));
                break;
            }
        }
        assert_eq!(
            got,
            Some((
                from.ip(),
                from.port(),
                to.port(),
                b"hello telemetry".to_vec()
            ))
        );
        assert_eq!(src.stats().frames, 1);
        // nothing more: an idle report
        assert!(matches!(
            src.next_event().unwrap(),
            SourceEvent::Idle { .. }
        ));
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = UdpSource::bind(&[a.local_addr().unwrap()], 1 << 20)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--listen 127.0.0.1:") && err.contains("cannot bind"),
            "{err}"
        );
    }
}
