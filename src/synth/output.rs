//! What a synth run writes: the classic pcap writer every capture goes through, the [`Label`]s of
//! the alerts a correct detector raises, the [`SynthReport`], and [`write_labels`] (JSON lines).

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::RequestClass;
use crate::alert::AttackClass;
use crate::key::{Key, Scope};
use crate::pcap_writer::{PcapWriter, TsResolution};
use crate::time::Timestamp;

/// The class of an expected alert, as alerts name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelClass {
    /// A class of today's alerts.
    Attack(AttackClass),
    /// A request-flood class of issue 23, which the alerts' [`AttackClass`] does not have yet.
    Request(RequestClass),
}

impl LabelClass {
    /// The name used in alerts and labels (`syn_flood`, `http_flood`, …).
    pub fn name(self) -> &'static str {
        match self {
            LabelClass::Attack(c) => c.name(),
            LabelClass::Request(c) => c.name(),
        }
    }
}

impl From<AttackClass> for LabelClass {
    fn from(c: AttackClass) -> LabelClass {
        LabelClass::Attack(c)
    }
}

impl fmt::Display for LabelClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for LabelClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An alert a correct detector raises on the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub scope: Scope,
    pub key: Key,
    pub class: LabelClass,
    /// Timestamp (as written, microsecond precision) of the first attack packet.
    pub first_packet: Timestamp,
    /// Timestamp of the last attack packet.
    pub last_packet: Timestamp,
    /// The attacking hosts, ascending, when they are real (they complete handshakes): what the
    /// alert should name. Empty for spoofed sources and for the packet-level floods.
    pub attackers: Vec<IpAddr>,
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = if self.attackers.is_empty() { 7 } else { 8 };
        let mut st = s.serialize_struct("Label", fields)?;
        st.serialize_field("scope", &self.scope)?;
        st.serialize_field("key", &self.key)?;
        st.serialize_field("class", &self.class)?;
        st.serialize_field("first_packet", &self.first_packet.to_string())?;
        st.serialize_field("first_packet_ns", &self.first_packet.as_nanos())?;
        st.serialize_field("last_packet", &self.last_packet.to_string())?;
        st.serialize_field("last_packet_ns", &self.last_packet.as_nanos())?;
        if !self.attackers.is_empty() {
            st.serialize_field("attackers", &self.attackers)?;
        }
        st.end()
    }
}

/// What [`write_pcap`](super::write_pcap) wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SynthReport {
    /// Frames written.
    pub packets: u64,
    /// Sum of frame lengths (each frame is captured whole: captured = original length).
    pub bytes: u64,
    /// Expected alerts (empty for benign scenarios).
    pub labels: Vec<Label>,
}

/// Writes `report`'s labels as JSON lines: `{"scope","key","class","first_packet","first_packet_ns",
/// "last_packet","last_packet_ns"}`, and `"attackers":["203.0.113.7",…]` when [`Label::attackers`]
/// is not empty.
pub fn write_labels<W: Write>(report: &SynthReport, mut out: W) -> io::Result<()> {
    for label in &report.labels {
        serde_json::to_writer(&mut out, label).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Bytes the capture writer buffers between writes.
const FLUSH_AT: usize = 1 << 20;

/// The classic (microsecond) pcap writer of Ethernet frames synth captures are written with.
pub(super) fn pcap_out<W: Write>(w: W) -> PcapWriter<W> {
    PcapWriter::new(
        w,
        crate::decode::LinkType::ETHERNET,
        TsResolution::Micro,
        65_535,
        FLUSH_AT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tests::*;

    #[test]
    fn labels_serialize_as_json_lines() {
        let (_, r) = gen(Scenario::UdpFlood, &short());
        let mut out = Vec::new();
        write_labels(&r, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["scope"], "dst_host");
        assert_eq!(v["key"], "198.51.100.10");
        assert_eq!(v["class"], "udp_flood");
        assert_eq!(v["first_packet"], r.labels[0].first_packet.to_string());
        assert_eq!(v["first_packet_ns"], r.labels[0].first_packet.as_nanos());
        assert!(v["last_packet"]
            .as_str()
            .unwrap()
            .starts_with("2025-11-25T14:00:03"));
        assert!(v["last_packet_ns"].is_u64());
    }
}
