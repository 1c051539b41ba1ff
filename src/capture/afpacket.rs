//! Live capture on Linux: an AF_PACKET socket with a TPACKET_V3 memory-mapped receive ring.
//!
//! The kernel fills blocks of the ring with frames and hands a block over (status `TP_STATUS_USER`)
//! when it is full or its retire timeout expires; we read its frames in place (no copy, no system call
//! per packet) and give the block back when its last frame has been used. `poll()` waits for the
//! next block with a timeout, so the source can report [`SourceEvent::Idle`] during silence. Kernel
//! drops come from `PACKET_STATISTICS` (which resets on every read, so they are accumulated here).
//!
//! Every `unsafe` block of the AF_PACKET backend lives in this file, each with a `// SAFETY:`
//! comment. Several sockets form a fanout group; `spread.rs` decides which of them gets a packet.

use std::cell::Cell;
use std::ffi::c_void;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    no_such_interface, permission_denied, CaptureError, CaptureStats, FrameSource, RawFrame,
    SourceEvent,
};
use crate::decode::LinkType;
use crate::time::Timestamp;

mod spread;
pub use spread::Spread;

/// Size and timing of the receive ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a power of two, at least 4096 (one page).
    pub block_size: usize,
    /// Blocks in the ring; the ring holds `block_size × block_count` bytes of frames.
    pub block_count: usize,
    /// A block that is not full is handed over after this long (TPACKET_V3 retire timeout).
    pub block_timeout: Duration,
    /// How long one wait for a block lasts before the source reports itself idle.
    pub poll_timeout: Duration,
    /// Put the interface in promiscuous mode while capturing.
    pub promiscuous: bool,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 20,
            block_count: 64,
            block_timeout: Duration::from_millis(10),
            poll_timeout: Duration::from_millis(100),
            promiscuous: true,
        }
    }
}

impl RingConfig {
    /// Checks the sizes before any system call, naming the option to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_size < 4096 || !self.block_size.is_power_of_two() {
            return Err(format!(
                "--ring-block-size {} must be a power of two of at least 4096 bytes",
                self.block_size
            ));
        }
        if self.block_size > 1 << 30 {
            return Err("--ring-block-size must be at most 1 GiB".into());
        }
        if self.block_count < 2 || self.block_count > 1 << 16 {
            return Err(format!(
                "--ring-blocks {} must be between 2 and 65536",
                self.block_count
            ));
        }
        if self
            .block_size
            .checked_mul(self.block_count)
            .is_none_or(|n| n > 1 << 34)
        {
            return Err(
                "the ring (--ring-block-size × --ring-blocks) must be at most 16 GiB".into(),
            );
        }
        Ok(())
    }

    /// Ring size in bytes.
    pub fn bytes(&self) -> usize {
        self.block_size * self.block_count
    }
}

/// Frame slot size told to the kernel; TPACKET_V3 packs frames tightly, but the request must still
/// divide blocks into slots of this size.
const FRAME_SLOT: usize = 2048;

/// How the interface frames what it delivers.
fn link_of(iface: &str) -> Result<(LinkType, libc::c_int), CaptureError> {
    let kind = read_sys(iface, "type")?;
    Ok(match kind.parse::<u32>().unwrap_or(u32::MAX) {
        // Ethernet, and loopback (Ethernet-framed with zero addresses on Linux): the whole frame.
        1 | 772 => (LinkType::ETHERNET, libc::SOCK_RAW),
        // Everything else (tun: ARPHRD_NONE, tunnels, ...): ask the kernel for the network layer
        // only, which the decoder reads as raw IP.
        _ => (LinkType::RAW, libc::SOCK_DGRAM),
    })
}

/// A file of `/sys/class/net/IFACE/`, trimmed; a missing interface lists the available ones.
fn read_sys(iface: &str, file: &str) -> Result<String, CaptureError> {
    let valid = !iface.is_empty()
        && iface.len() < libc::IFNAMSIZ
        && iface != "."
        && iface != ".."
        && !iface.contains(['/', '\0'])
        && !iface.chars().any(char::is_whitespace);
    if !valid {
        return Err(no_such_interface(iface));
    }
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}"))
        .map(|s| s.trim().to_string())
        .map_err(|_| no_such_interface(iface))
}

/// The position of the reader inside the block it holds.
#[derive(Clone, Copy, Debug)]
struct BlockCursor {
    /// Frames of the block not yet handed out.
    remaining: u32,
    /// Offset of the next frame's header from the block start.
    next: usize,
}

/// The frame handed out last, as offsets into the held block.
#[derive(Clone, Copy, Debug)]
struct Current {
    start: usize,
    len: usize,
    wire_len: u32,
    ts: Timestamp,
}

/// What [`AfPacketSource::advance`] found.
enum Step {
    Frame,
    Idle(Timestamp),
}

/// A live AF_PACKET source on one interface.
pub struct AfPacketSource {
    iface: String,
    fd: OwnedFd,
    /// The receive ring's mapping: `None` for a socket of a group that waits, unmapped, until the
    /// first falls behind (its ring is made then).
    ring: Option<NonNull<u8>>,
    cfg: RingConfig,
    link: LinkType,
    /// Index of the block being read or waited for.
    block: usize,
    /// Set while we hold `block` (its status is `TP_STATUS_USER`).
    cursor: Option<BlockCursor>,
    current: Option<Current>,
    /// An idle report was given since the last frame: the next empty ring waits in `poll`.
    idle_reported: bool,
    stats: CaptureStats,
    /// Accumulated `tp_drops` (the kernel resets its counters on every read).
    kernel_drops: Cell<u64>,
    /// The first socket of a group spreading only when behind: when to switch.
    governor: Option<spread::Governor>,
    /// A group spreading only when behind: how the first socket asks the others for their rings
    /// (the first and every waiting socket hold it).
    wake: Option<Arc<spread::Wake>>,
    /// The first socket: it waits for the others' rings before spreading.
    spread_pending: bool,
    /// Times the first socket fell behind and packets spread (kept if it gives up spreading).
    spreads: u64,
}

// SAFETY: the source owns its socket and its ring mapping outright (nothing else holds the pointer),
// and every access to the ring goes through `&self`/`&mut self`; moving the whole source to another
// thread (one capture thread per socket of a fanout group) moves that ownership with it. `Cell` is
// `Send`; the source is not `Sync` and is never shared between threads.
unsafe impl Send for AfPacketSource {}

impl std::fmt::Debug for AfPacketSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketSource")
            .field("iface", &self.iface)
            .field("cfg", &self.cfg)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl AfPacketSource {
    /// Opens `iface` with a ring sized by `cfg`. Errors name the missing privilege, the unknown
    /// interface (listing the available ones) or the failing step.
    pub fn open(iface: &str, cfg: RingConfig) -> Result<AfPacketSource, CaptureError> {
        AfPacketSource::open_with(iface, cfg, true)
    }

    /// Opens `iface`, with its ring now or (`ring_now` false: a socket of a group that waits until
    /// the first falls behind) later, in [`AfPacketSource::make_ring`].
    fn open_with(
        iface: &str,
        cfg: RingConfig,
        ring_now: bool,
    ) -> Result<AfPacketSource, CaptureError> {
        cfg.validate().map_err(|detail| CaptureError::Setup {
            iface: iface.to_string(),
            detail,
        })?;
        let ifindex: i32 = read_sys(iface, "ifindex")?
            .parse()
            .map_err(|_| no_such_interface(iface))?;
        let (link, sock_type) = link_of(iface)?;
        let fd = open_socket(iface, sock_type)?;
        let live = |what: &'static str, hint: &'static str| {
            move |cause| CaptureError::Live {
                iface: iface.to_string(),
                what,
                cause,
                hint,
            }
        };
        set_opt(
            &fd,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
        )
        .map_err(live(
            "selecting TPACKET_V3",
            "; this needs Linux 3.2 or later",
        ))?;
        // From here `Drop` unmaps the ring (once there is one) and closes the socket, whatever
        // fails next.
        let mut source = AfPacketSource {
            iface: iface.to_string(),
            fd,
            ring: None,
            cfg,
            link,
            block: 0,
            cursor: None,
            current: None,
            idle_reported: false,
            stats: CaptureStats::default(),
            kernel_drops: Cell::new(0),
            governor: None,
            wake: None,
            spread_pending: false,
            spreads: 0,
        };
        if ring_now {
            source.make_ring()?;
        }
        source.bind(ifindex)?;
        Ok(source)
    }

    /// An error of this socket's capture: what failed, and a hint (starting with "; ") or "".
    fn live(
        &self,
        what: &'static str,
        hint: &'static str,
    ) -> impl FnOnce(io::Error) -> CaptureError {
        let iface = self.iface.clone();
        move |cause| CaptureError::Live {
            iface,
            what,
            cause,
            hint,
        }
    }

    /// The socket reported an error or hang-up: usually its interface went down.
    fn interface_down(&self) -> CaptureError {
        self.live("capture", "; is the interface still up?")(socket_error(&self.fd))
    }

    /// Creates and maps the receive ring. On a socket already bound (one that waited in a group)
    /// the kernel takes it out of the group for the moment and puts it back, and drops what it had
    /// queued without a ring: copies of packets from the moment between its bind and joining the
    /// group, which the first socket received too (the group gave it none since).
    fn make_ring(&mut self) -> Result<(), CaptureError> {
        let cfg = self.cfg;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size as u32,
            tp_block_nr: cfg.block_count as u32,
            tp_frame_size: FRAME_SLOT as u32,
            tp_frame_nr: (cfg.bytes() / FRAME_SLOT) as u32,
            tp_retire_blk_tov: cfg.block_timeout.as_millis().clamp(1, 60_000) as u32,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_opt(&self.fd, libc::PACKET_RX_RING, &req).map_err(self.live(
            "creating the receive ring",
            "; try a smaller ring (--ring-blocks, --ring-block-size)",
        ))?;
        let ring = map_ring(&self.fd, cfg.bytes()).map_err(self.live(
            "mapping the receive ring",
            "; try a smaller ring (--ring-blocks, --ring-block-size)",
        ))?;
        self.ring = Some(ring);
        Ok(())
    }

    /// Starts receiving: promiscuous mode if asked, then bind to the interface for every protocol.
    /// The socket was created for no protocol, so nothing from other interfaces enters the ring
    /// before this.
    fn bind(&mut self, ifindex: i32) -> Result<(), CaptureError> {
        if self.cfg.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            set_opt(&self.fd, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(self.live(
                "entering promiscuous mode",
                "; --no-promisc captures only this host's traffic",
            ))?;
        }
        bind_to(&self.fd, ifindex).map_err(self.live("binding to the interface", ""))?;
        // Whatever the kernel counted before the bind is not ours.
        let _ = read_kernel_stats(&self.fd);
        Ok(())
    }

    /// Opens `n` sockets on `iface`, each with a ring sized by `cfg`, in one new PACKET_FANOUT group
    /// whose members a classic BPF program chooses (`PACKET_FANOUT_CBPF`, see `afpacket/spread.rs`): with
    /// [`Spread::Always`] by flow (both directions of a flow, same addresses and ports, to the same
    /// socket), with [`Spread::WhenBehind`] every packet to the first socket until its thread falls
    /// a quarter of its ring behind, then by flow until it keeps up again. IP fragments are
    /// reassembled first (`PACKET_FANOUT_FLAG_DEFRAG`) so the pieces of a datagram stay together.
    /// The kernel picks the group's id (`PACKET_FANOUT_FLAG_UNIQUEID`, Linux 4.19+), so each run
    /// has its own group and never joins another process's. With `n` ≤ 1 this is
    /// [`AfPacketSource::open`]. Each socket receives every packet for the moment between its bind
    /// and joining the group (the kernel only lets a bound socket join).
    ///
    /// The first socket's wait for a block lasts at most the block retire timeout: the thread
    /// that reads it also takes the other sockets' packets between its own, so it must not sleep
    /// long while only they have traffic.
    pub fn open_fanout(
        iface: &str,
        cfg: RingConfig,
        n: usize,
        spread: Spread,
    ) -> Result<Vec<AfPacketSource>, CaptureError> {
        if n <= 1 {
            return Ok(vec![AfPacketSource::open(iface, cfg)?]);
        }
        let mut first = AfPacketSource::open(
            iface,
            RingConfig {
                poll_timeout: cfg.poll_timeout.min(cfg.block_timeout),
                ..cfg
            },
        )?;
        let fanout_err = |cause| {
            CaptureError::Live {
            iface: iface.to_string(),
            what: "joining a PACKET_FANOUT group",
            cause,
            hint: "; fanout with a kernel-chosen group id needs Linux 4.19 or later: use --capture-threads 1",
        }
        };
        let mode = libc::PACKET_FANOUT_CBPF | libc::PACKET_FANOUT_FLAG_DEFRAG;
        join_fanout(&first.fd, 0, mode | libc::PACKET_FANOUT_FLAG_UNIQUEID).map_err(fanout_err)?;
        let id = fanout_id(&first.fd).map_err(fanout_err)?;
        // Alone in the group the first gets every packet whatever the program, so the kernel
        // checks the spreading program here, not first during an overload.
        first.set_spreading(true)?;
        let wake = (spread == Spread::WhenBehind).then(|| Arc::new(spread::Wake::new(n - 1)));
        if wake.is_some() {
            first.set_spreading(false)?;
            first.governor = Some(spread::Governor::new(Instant::now()));
            first.wake.clone_from(&wake);
        }
        let mut group = Vec::with_capacity(n);
        group.push(first);
        for _ in 1..n {
            // spreading only when behind, the others wait without a ring until then
            let mut source = AfPacketSource::open_with(iface, cfg, wake.is_none())?;
            source.wake.clone_from(&wake);
            join_fanout(&source.fd, id, mode).map_err(fanout_err)?;
            group.push(source);
        }
        Ok(group)
    }

    /// Sets the group's program: by flow over every socket, or every packet to this one.
    fn set_spreading(&self, by_flow: bool) -> Result<(), CaptureError> {
        let program = if by_flow {
            spread::by_flow()
        } else {
            spread::first_only()
        };
        set_fanout_program(&self.fd, &program).map_err(self.live(
            "setting which socket of the fanout group gets a packet",
            "; use --capture-threads 1",
        ))
    }

    /// With a governor (the first socket of a group spreading when behind): whether this thread
    /// is a quarter of the ring behind the kernel, and so whether to switch. Behind means the
    /// block a quarter of the ring ahead is already handed over *full*: blocks the retire timeout
    /// handed over part-empty say the thread paused, not that the traffic outruns it.
    fn govern(&mut self) {
        if self.governor.is_none() {
            return;
        }
        let quarter = (self.cfg.block_count / 4).max(1);
        let ahead = (self.block + quarter) % self.cfg.block_count;
        let status = self
            .block_status(ahead)
            .map_or(0, |s| s.load(Ordering::Acquire));
        let behind = status & libc::TP_STATUS_USER != 0 && status & libc::TP_STATUS_BLK_TMO == 0;
        let switch = self
            .governor
            .as_mut()
            .and_then(|g| g.on_block(behind, Instant::now()));
        match switch {
            Some(true) => self.request_spread(),
            Some(false) => {
                self.spread_pending = false;
                self.switch_or_give_up(false);
            }
            None => {}
        }
        self.spread_when_ready();
    }

    /// Asks the other sockets to make their rings; spreading begins once all have one.
    fn request_spread(&mut self) {
        self.spread_pending = true;
        if let Some(wake) = &self.wake {
            wake.want();
        }
    }

    /// Spreads if it was asked for and every other socket has its ring by now.
    fn spread_when_ready(&mut self) {
        if !self.spread_pending {
            return;
        }
        let (ready, failed) = self
            .wake
            .as_ref()
            .map_or((true, false), |w| (w.all_made(), w.failed()));
        if failed {
            eprintln!(
                "floodwatch: warning: {}: another capture thread could not make its ring; \
                 the first socket goes on alone",
                self.iface
            );
            self.governor = None;
            self.spread_pending = false;
        } else if ready {
            self.spread_pending = false;
            self.switch_or_give_up(true);
            if let Some(g) = self.governor.as_mut() {
                g.started(Instant::now());
                self.spreads += 1;
            }
        }
    }

    /// Sets the program; if the kernel refuses (it accepted it at start, so it is short of
    /// memory), the capture goes on as it is rather than end in the middle of a flood.
    fn switch_or_give_up(&mut self, by_flow: bool) {
        if let Err(e) = self.set_spreading(by_flow) {
            eprintln!("floodwatch: warning: {e}; packets are no longer spread or gathered");
            self.governor = None;
        }
    }

    /// A socket waiting without a ring: waits (up to the poll timeout) for the first to fall
    /// behind, then makes its ring. True once it has one. An error once the socket reports one
    /// (its interface went down), as a socket with a ring finds when it polls.
    fn unpark(&mut self) -> Result<bool, CaptureError> {
        let wanted = match self.wake.clone() {
            Some(wake) => wake.wait_wanted(self.cfg.poll_timeout).then_some(wake),
            None => {
                std::thread::sleep(self.cfg.poll_timeout);
                None
            }
        };
        let Some(wake) = wanted else {
            return match has_failed(self.fd.as_fd()) {
                Ok(false) => Ok(false),
                Ok(true) => Err(self.interface_down()),
                Err(cause) => Err(self.live("waiting for frames", "")(cause)),
            };
        };
        match self.make_ring() {
            Ok(()) => {
                // what the kernel counted before the ring is not ours
                let _ = read_kernel_stats(&self.fd);
                wake.made_ring();
                Ok(true)
            }
            Err(e) => {
                eprintln!("floodwatch: warning: {e}; this capture thread stays idle");
                wake.fail();
                self.wake = None;
                Ok(false)
            }
        }
    }

    /// The link type of the frames.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The ring settings.
    pub fn ring(&self) -> RingConfig {
        self.cfg
    }

    /// Status word of block `i`, shared with the kernel (`None` without a ring).
    fn block_status(&self, i: usize) -> Option<&AtomicU32> {
        let ring = self.ring?;
        let off = i * self.cfg.block_size
            + offset_of!(libc::tpacket_block_desc, hdr)
            + offset_of!(libc::tpacket_hdr_v1, block_status);
        // SAFETY: `off` lies inside the mapping (i < block_count, and the descriptor is at the start
        // of a block); blocks start at page-aligned offsets, so the u32 is 4-byte aligned. The kernel
        // and we both access this word only atomically (it is the ownership flag of the block), and
        // the mapping outlives `&self` (it is unmapped only in `Drop`).
        Some(unsafe { AtomicU32::from_ptr(ring.as_ptr().add(off).cast::<u32>()) })
    }

    /// The bytes of the held block. Only valid while we own it (status `TP_STATUS_USER`).
    fn held_block(&self) -> &[u8] {
        debug_assert!(self.cursor.is_some());
        let Some(ring) = self.ring else {
            return &[];
        };
        // SAFETY: the block lies inside the mapping, and we own it: the kernel set
        // TP_STATUS_USER (observed with Acquire in `take_block`) and does not write to it until
        // `release_block` stores TP_STATUS_KERNEL, which happens only through `&mut self`, so no
        // write can happen while this borrow of `self` lives.
        unsafe {
            std::slice::from_raw_parts(
                ring.as_ptr().add(self.block * self.cfg.block_size),
                self.cfg.block_size,
            )
        }
    }

    /// Takes the current block if the kernel has handed it over.
    fn take_block(&mut self) -> Result<bool, CaptureError> {
        let Some(status) = self.block_status(self.block) else {
            return Ok(false);
        };
        let status = status.load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return Ok(false);
        }
        self.cursor = Some(BlockCursor {
            remaining: 0,
            next: 0,
        });
        let hdr_off = offset_of!(libc::tpacket_block_desc, hdr);
        let block = self.held_block();
        let num_pkts = read_u32(block, hdr_off + offset_of!(libc::tpacket_hdr_v1, num_pkts));
        let first = read_u32(
            block,
            hdr_off + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt),
        );
        self.cursor = Some(BlockCursor {
            remaining: num_pkts.unwrap_or(0),
            next: first.unwrap_or(0) as usize,
        });
        self.govern();
        Ok(true)
    }

    /// Gives the held block back to the kernel and moves to the next one.
    fn release_block(&mut self) {
        self.cursor = None;
        self.current = None;
        if let Some(status) = self.block_status(self.block) {
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.block = (self.block + 1) % self.cfg.block_count;
        self.refresh_drops();
    }

    /// Reads the next frame header of the held block into `current`; false when the block is done
    /// (or its layout is not what the kernel promised, which ends the block rather than trusting it).
    fn next_in_block(&mut self) -> bool {
        let Some(mut cur) = self.cursor else {
            return false;
        };
        if cur.remaining == 0 {
            return false;
        }
        let block = self.held_block();
        let at = cur.next;
        let field = |o: usize| read_u32(block, at + o);
        let parsed = (|| {
            let next = field(offset_of!(libc::tpacket3_hdr, tp_next_offset))?;
            let sec = field(offset_of!(libc::tpacket3_hdr, tp_sec))?;
            let nsec = field(offset_of!(libc::tpacket3_hdr, tp_nsec))?;
            let snaplen = field(offset_of!(libc::tpacket3_hdr, tp_snaplen))? as usize;
            let wire_len = field(offset_of!(libc::tpacket3_hdr, tp_len))?;
            let mac = read_u16(block, at + offset_of!(libc::tpacket3_hdr, tp_mac))? as usize;
            let start = at.checked_add(mac)?;
            (start.checked_add(snaplen)? <= block.len()).then_some(())?;
            Some((
                next as usize,
                Current {
                    start,
                    len: snaplen,
                    wire_len,
                    ts: Timestamp::from_secs_nanos(u64::from(sec), u64::from(nsec)),
                },
            ))
        })();
        let Some((next, frame)) = parsed else {
            return false;
        };
        cur.remaining -= 1;
        cur.next = at + next;
        self.cursor = Some(cur);
        self.current = Some(frame);
        true
    }

    /// Moves to the next frame, or reports idleness after waiting up to the poll timeout.
    fn advance(&mut self) -> Result<Step, CaptureError> {
        loop {
            if self.cursor.is_some() {
                if self.next_in_block() {
                    self.idle_reported = false;
                    return Ok(Step::Frame);
                }
                self.release_block();
            }
            if self.take_block()? {
                continue;
            }
            if self.ring.is_none() {
                // waiting in a group without a ring: idle until the first falls behind
                if !self.idle_reported {
                    self.idle_reported = true;
                    return Ok(Step::Idle(self.idle_now()));
                }
                if self.unpark()? {
                    continue;
                }
                return Ok(Step::Idle(self.idle_now()));
            }
            if !self.idle_reported {
                // The ring just ran dry: say so at once so the pipeline flushes what it holds.
                self.idle_reported = true;
                return Ok(Step::Idle(self.idle_now()));
            }
            if !self.wait()? {
                self.refresh_drops();
                return Ok(Step::Idle(self.idle_now()));
            }
        }
    }

    /// Packet time that no frame still to come can precede: now, less twice the block retire timeout
    /// (a block is handed over at most that long after its first frame arrived).
    fn idle_now(&self) -> Timestamp {
        let now = Timestamp::now().0;
        Timestamp(now.saturating_sub(2 * self.cfg.block_timeout.as_nanos() as u64))
    }

    /// Waits for the kernel to hand over a block; false on timeout or a signal.
    fn wait(&mut self) -> Result<bool, CaptureError> {
        let since = self
            .governor
            .as_ref()
            .is_some_and(|g| g.measures_waits())
            .then(Instant::now);
        let polled = poll_readable(self.fd.as_fd(), self.cfg.poll_timeout);
        if let (Some(g), Some(t)) = (self.governor.as_mut(), since) {
            g.waited(t.elapsed());
        }
        match polled {
            Ok(PollResult::Ready) => Ok(true),
            Ok(PollResult::TimedOut) => Ok(false),
            Ok(PollResult::Error) => Err(self.interface_down()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(cause) => Err(self.live("waiting for frames", "")(cause)),
        }
    }

    /// Adds the kernel's drops since the last read. A socket waiting without a ring counts none:
    /// what its kernel counters hold are copies of packets the first socket also received,
    /// queued or dropped in the moment before it joined the group.
    fn refresh_drops(&self) {
        if self.ring.is_none() {
            let _ = read_kernel_stats(&self.fd);
            return;
        }
        if let Ok(st) = read_kernel_stats(&self.fd) {
            self.kernel_drops
                .set(self.kernel_drops.get() + u64::from(st.tp_drops));
        }
    }

    fn frame(&self) -> Option<RawFrame<'_>> {
        let c = self.current?;
        let data = self.held_block().get(c.start..c.start + c.len)?;
        Some(RawFrame {
            ts: c.ts,
            link: self.link,
            data,
            wire_len: c.wire_len,
        })
    }

    fn count_current(&mut self) {
        if let Some(c) = self.current {
            self.stats.frames += 1;
            self.stats.captured_bytes += c.len as u64;
        }
    }
}

impl FrameSource for AfPacketSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
        loop {
            if let Step::Frame = self.advance()? {
                break;
            }
        }
        self.count_current();
        Ok(self.frame())
    }

    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        match self.advance()? {
            Step::Frame => {
                self.count_current();
                Ok(self
                    .frame()
                    .map_or(SourceEvent::Idle { now: Timestamp(0) }, SourceEvent::Frame))
            }
            Step::Idle(now) => Ok(SourceEvent::Idle { now }),
        }
    }

    fn stats(&self) -> CaptureStats {
        self.refresh_drops();
        CaptureStats {
            kernel_drops: self.kernel_drops.get(),
            spreads: self.spreads,
            ..self.stats
        }
    }
}

impl Drop for AfPacketSource {
    fn drop(&mut self) {
        if let Some(ring) = self.ring {
            // SAFETY: `ring` is the start of a mapping of exactly `cfg.bytes()` bytes made by
            // `map_ring` and not unmapped before; nothing borrowed from it outlives `self` (frames
            // borrow `self`). The socket is closed afterwards by `OwnedFd`'s own drop.
            unsafe {
                libc::munmap(ring.as_ptr().cast::<c_void>(), self.cfg.bytes());
            }
        }
    }
}

/// `u32` at `off` of `block`, little or big endian as the host (the kernel writes host order).
fn read_u32(block: &[u8], off: usize) -> Option<u32> {
    let b = block.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

fn read_u16(block: &[u8], off: usize) -> Option<u16> {
    let b = block.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(b.try_into().ok()?))
}

/// An AF_PACKET socket for no protocol yet (so it receives nothing until bound).
fn open_socket(iface: &str, sock_type: libc::c_int) -> Result<OwnedFd, CaptureError> {
    // SAFETY: plain system call with constant arguments; no memory is passed.
    let fd: RawFd = unsafe { libc::socket(libc::AF_PACKET, sock_type | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => permission_denied(iface, err),
            _ => CaptureError::Live {
                iface: iface.to_string(),
                what: "opening an AF_PACKET socket",
                cause: err,
                hint: "",
            },
        });
    }
    // SAFETY: `fd` is a descriptor we just opened and own exclusively.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(SOL_PACKET, name, value)`.
fn set_opt<T>(fd: &OwnedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised `T` of `size_of::<T>()` bytes, which the kernel
    // only reads during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            (value as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Joins the socket to fanout group `id` with `mode` (type and flags).
fn join_fanout(fd: &OwnedFd, id: u16, mode: libc::c_uint) -> io::Result<()> {
    let arg: u32 = u32::from(id) | (mode << 16);
    set_opt(fd, libc::PACKET_FANOUT, &arg)
}

/// Sets the classic BPF program that picks the member of the socket's fanout group
/// (`PACKET_FANOUT_DATA`; the group must be in `PACKET_FANOUT_CBPF` mode). The kernel copies and
/// checks the program; it replaces the group's previous one for every member.
fn set_fanout_program(fd: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::other("BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` is a live, initialised sock_fprog whose `filter` points to `len` live
    // instructions borrowed for the call; the kernel only reads both (it copies the program)
    // during the call, and never writes through the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT_DATA,
            (&fprog as *const libc::sock_fprog).cast::<c_void>(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The id of the fanout group the socket is in (the kernel chose it for `PACKET_FANOUT_FLAG_UNIQUEID`).
fn fanout_id(fd: &OwnedFd) -> io::Result<u16> {
    let mut arg: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `arg` and `len` are live locals; the kernel writes at most `len` (4) bytes to `arg`
    // and the written length to `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&mut arg as *mut u32).cast::<c_void>(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok((arg & 0xffff) as u16)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads (and thereby resets) the kernel's counters of the socket.
fn read_kernel_stats(fd: &OwnedFd) -> io::Result<libc::tpacket_stats_v3> {
    let zero = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    socket_option(fd, (libc::SOL_PACKET, libc::PACKET_STATISTICS), zero)
}

/// The pending error of the socket (`SO_ERROR`).
fn socket_error(fd: &OwnedFd) -> io::Error {
    let code: libc::c_int = 0;
    match socket_option(fd, (libc::SOL_SOCKET, libc::SO_ERROR), code) {
        Err(e) => e,
        Ok(0) => io::Error::other("the socket reported an error condition"),
        Ok(code) => io::Error::from_raw_os_error(code),
    }
}

/// Plain C values the kernel may fill in from `getsockopt`: any bytes are a valid value.
trait PlainOption: Copy {}
impl PlainOption for libc::c_int {}
impl PlainOption for libc::tpacket_stats_v3 {}

/// The socket option (`level`, `name`), read into `value`.
fn socket_option<T: PlainOption>(
    fd: &OwnedFd,
    (level, name): (libc::c_int, libc::c_int),
    mut value: T,
) -> io::Result<T> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals and `len` is `value`'s size: the kernel writes at
    // most that many bytes into `value` (a plain C type, valid whatever they are) and updates
    // `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Maps the socket's receive ring.
fn map_ring(fd: &OwnedFd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping of the ring the kernel just allocated for this socket; the
    // kernel checks `len` against the ring size, and the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Binds the socket to `ifindex` for every protocol.
fn bind_to(fd: &OwnedFd, ifindex: i32) -> io::Result<()> {
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `addr` is a live, initialised sockaddr_ll and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `fd` reports an error or hang-up now (without waiting, and whatever it has to read).
fn has_failed(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // errors and hang-ups are reported whatever events are asked for
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: `pfd` is one live pollfd and the count passed is 1; `fd` is open for the call's
    // duration (it is borrowed); a timeout of 0 returns at once.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
}

/// What one wait on a descriptor found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollResult {
    /// Data to read.
    Ready,
    /// Nothing within the timeout.
    TimedOut,
    /// The descriptor reports an error or hang-up.
    Error,
}

/// Waits up to `timeout` for `fd` to become readable (also used by the libpcap backend, whose
/// own timeout never fires on an idle Linux interface). A signal gives `ErrorKind::Interrupted`.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<PollResult> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one live pollfd and the count passed is 1; `fd` is open for the call's
    // duration (it is borrowed).
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if rc == 0 {
        PollResult::TimedOut
    } else if pfd.revents & libc::POLLIN != 0 {
        PollResult::Ready
    } else if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        PollResult::Error
    } else {
        PollResult::TimedOut
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_are_checked_before_any_system_call() {
        assert!(RingConfig::default().validate().is_ok());
        let bad = |block_size, block_count| {
            RingConfig {
                block_size,
                block_count,
                ..RingConfig::default()
            }
            .validate()
            .unwrap_err()
        };
        assert!(bad(3000, 8).contains("power of two"));
        assert!(bad(1 << 20, 1).contains("--ring-blocks"));
        assert!(bad(1 << 30, 1 << 16).contains("16 GiB"));
    }

    #[test]
    fn unknown_interface_lists_the_available_ones() {
        let err = AfPacketSource::open("no-such-if0", RingConfig::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no network interface named `no-such-if0`"),
            "{msg}"
        );
        if std::path::Path::new("/sys/class/net/lo").exists() {
            assert!(msg.contains("lo"), "{msg}");
        }
        let err = AfPacketSource::open("../etc", RingConfig::default()).unwrap_err();
        assert!(matches!(err, CaptureError::NoSuchInterface { .. }), "{err}");
    }

    #[test]
    fn header_fields_read_in_host_order_and_out_of_range_is_none() {
        let mut b = vec![0u8; 8];
        b[2..6].copy_from_slice(&0xdead_beef_u32.to_ne_bytes());
        assert_eq!(read_u32(&b, 2), Some(0xdead_beef));
        assert_eq!(read_u32(&b, 6), None);
        assert_eq!(read_u16(&b, usize::MAX), None);
    }

    #[test]
    fn poll_reports_a_timeout_on_a_quiet_descriptor() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let r = poll_readable(a.as_fd(), Duration::from_millis(1)).unwrap();
        assert_eq!(r, PollResult::TimedOut);
    }

    /// A ring of 8 blocks of 64 KiB on loopback.
    const SMALL: RingConfig = RingConfig {
        block_size: 1 << 16,
        block_count: 8,
        block_timeout: Duration::from_millis(10),
        poll_timeout: Duration::from_millis(100),
        promiscuous: false,
    };

    /// A group of `n` sockets with small rings on loopback; `None` (skipped) without the
    /// privilege to open them.
    fn group_on_lo(n: usize, spread: Spread) -> Option<Vec<AfPacketSource>> {
        match AfPacketSource::open_fanout("lo", SMALL, n, spread) {
            Ok(g) => Some(g),
            Err(CaptureError::Permission { .. }) => {
                eprintln!("skipped: opening AF_PACKET sockets needs root or CAP_NET_RAW");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_fanout_group_gets_one_kernel_chosen_id_per_run() {
        let Some(group) = group_on_lo(3, Spread::Always) else {
            return;
        };
        assert_eq!(group.len(), 3);
        let ids: Vec<u16> = group.iter().map(|s| fanout_id(&s.fd).unwrap()).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        // a second group of the same run gets an id of its own
        let other = AfPacketSource::open_fanout("lo", SMALL, 2, Spread::WhenBehind).unwrap();
        assert_ne!(fanout_id(&other[0].fd).unwrap(), ids[0]);
        // one socket is no group at all
        let one = AfPacketSource::open_fanout("lo", SMALL, 1, Spread::Always).unwrap();
        assert_eq!(one.len(), 1);
    }

    /// The UDP flows between `ports` and `server` (unordered port pairs) each socket of `group`
    /// read, after the last datagrams had time to be handed over.
    fn flows_per_socket(
        group: &mut [AfPacketSource],
        server: u16,
    ) -> Vec<std::collections::BTreeSet<(u16, u16)>> {
        std::thread::sleep(Duration::from_millis(100));
        let mut seen = Vec::new();
        for socket in group.iter_mut() {
            let mut flows = std::collections::BTreeSet::new();
            while let Ok(SourceEvent::Frame(f)) = socket.next_event() {
                let d = f.data;
                // Ethernet (lo's link), IPv4, UDP, header of 20 bytes
                if d.len() >= 38 && d[12..14] == [8, 0] && d[14] == 0x45 && d[23] == 17 {
                    let sport = u16::from_be_bytes([d[34], d[35]]);
                    let dport = u16::from_be_bytes([d[36], d[37]]);
                    if sport == server || dport == server {
                        flows.insert((sport.min(dport), sport.max(dport)));
                    }
                }
            }
            seen.push(flows);
        }
        seen
    }

    /// Datagrams from `n` new client sockets to `server` on loopback, and a reply to each. The
    /// clients live until all have sent, so their ports (the flows) are `n` different ones.
    fn exchange(server: &std::net::UdpSocket, n: usize) {
        let to = server.local_addr().unwrap();
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(b"floodwatch fanout test", to).unwrap();
            let mut buf = [0u8; 64];
            let (_, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(b"reply", from).unwrap();
            client.recv_from(&mut buf).unwrap();
            clients.push(client);
        }
    }

    /// 16 flows with `server`, every one read by the first socket of `group` and none by others.
    fn assert_first_alone(group: &mut [AfPacketSource], server: &std::net::UdpSocket) {
        exchange(server, 16);
        let seen = flows_per_socket(group, server.local_addr().unwrap().port());
        assert_eq!(seen[0].len(), 16, "{seen:?}");
        assert!(seen[1..].iter().all(|s| s.is_empty()), "{seen:?}");
    }

    #[test]
    fn a_group_gives_the_first_socket_everything_until_it_spreads_by_flow() {
        let Some(mut group) = group_on_lo(3, Spread::WhenBehind) else {
            return;
        };
        // asked to spread by hand below: loopback traffic of other tests must not switch it
        group[0].governor = None;
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        // not behind: the first socket alone; the others wait without a ring
        exchange(&server, 32);
        let seen = flows_per_socket(&mut group, port);
        assert_eq!(seen[0].len(), 32, "{seen:?}");
        assert!(seen[1].is_empty() && seen[2].is_empty(), "{seen:?}");
        assert!(group[1].ring.is_none() && group[2].ring.is_none());
        // falling behind: the first asks, and spreads only once every other has its ring
        group[0].request_spread();
        group[0].spread_when_ready();
        assert!(group[0].spread_pending);
        // one wakes and makes its ring (the kernel relinks it in the group): still the first alone
        let t = Instant::now();
        assert!(matches!(
            group[1].next_event(),
            Ok(SourceEvent::Idle { .. })
        ));
        assert!(group[1].ring.is_some());
        assert!(t.elapsed() < Duration::from_secs(5));
        group[0].spread_when_ready();
        assert!(
            group[0].spread_pending,
            "spread before every socket had a ring"
        );
        assert_first_alone(&mut group, &server);
        // the last makes its ring; then packets spread by flow, both directions of a flow on the
        // same socket, and "member 0" is still the first socket after the relinks
        assert!(matches!(
            group[2].next_event(),
            Ok(SourceEvent::Idle { .. })
        ));
        group[0].spread_when_ready();
        assert!(!group[0].spread_pending);
        exchange(&server, 96);
        let seen = flows_per_socket(&mut group, port);
        assert_eq!(seen.iter().map(|s| s.len()).sum::<usize>(), 96, "{seen:?}");
        for (i, a) in seen.iter().enumerate() {
            assert!(!a.is_empty(), "96 flows, none on socket {i}: {seen:?}");
            for b in &seen[i + 1..] {
                assert!(a.is_disjoint(b), "a flow on two sockets: {seen:?}");
            }
        }
        // and back to the first alone
        group[0].set_spreading(false).unwrap();
        assert_first_alone(&mut group, &server);
    }
}
