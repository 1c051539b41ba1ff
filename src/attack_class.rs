//! What kind of flood an alert is about ([`AttackClass`]), with the UDP source ports that name a
//! reflection: vocabulary the windows (which count amplifier-port packets apart), the engine and the
//! alerts share, so it sits below all of them.

use std::fmt;

use serde::{Serialize, Serializer};

/// What kind of flood an alert is about, from what dominates the key's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackClass {
    SynFlood,
    TcpFlood,
    UdpFlood,
    IcmpFlood,
    FragmentFlood,
    DnsAmplification,
    NtpAmplification,
    SsdpAmplification,
    MemcachedAmplification,
    ChargenAmplification,
    CldapAmplification,
    SnmpAmplification,
    TrafficFlood,
    /// Many real clients at once: the SYN rate is far over its threshold but the clients complete
    /// their handshakes (other TCP grows with it). Reported so the overload is seen, under its own name
    /// so it is not mistaken for an attack.
    FlashCrowd,
    /// Requests far over the key's normal (HTTP request heads, estimated requests inside TLS) from
    /// clients that completed their handshakes.
    HttpFlood,
    /// Completed TCP handshakes (connections, TLS hellos) far over the key's normal.
    ConnectionFlood,
    /// Many connections holding a request head open without finishing it.
    Slowloris,
}

impl AttackClass {
    /// Every class, in a fixed order.
    pub const ALL: [AttackClass; 17] = [
        AttackClass::SynFlood,
        AttackClass::TcpFlood,
        AttackClass::UdpFlood,
        AttackClass::IcmpFlood,
        AttackClass::FragmentFlood,
        AttackClass::DnsAmplification,
        AttackClass::NtpAmplification,
        AttackClass::SsdpAmplification,
        AttackClass::MemcachedAmplification,
        AttackClass::ChargenAmplification,
        AttackClass::CldapAmplification,
        AttackClass::SnmpAmplification,
        AttackClass::TrafficFlood,
        AttackClass::FlashCrowd,
        AttackClass::HttpFlood,
        AttackClass::ConnectionFlood,
        AttackClass::Slowloris,
    ];

    /// Reflection services recognised by their UDP source port.
    pub const REFLECTION_PORTS: [(u16, AttackClass); 7] = [
        (53, AttackClass::DnsAmplification),
        (123, AttackClass::NtpAmplification),
        (1900, AttackClass::SsdpAmplification),
        (11211, AttackClass::MemcachedAmplification),
        (19, AttackClass::ChargenAmplification),
        (389, AttackClass::CldapAmplification),
        (161, AttackClass::SnmpAmplification),
    ];

    /// The name used in alerts (`syn_flood`, …).
    pub fn name(self) -> &'static str {
        match self {
            AttackClass::SynFlood => "syn_flood",
            AttackClass::TcpFlood => "tcp_flood",
            AttackClass::UdpFlood => "udp_flood",
            AttackClass::IcmpFlood => "icmp_flood",
            AttackClass::FragmentFlood => "fragment_flood",
            AttackClass::DnsAmplification => "dns_amplification",
            AttackClass::NtpAmplification => "ntp_amplification",
            AttackClass::SsdpAmplification => "ssdp_amplification",
            AttackClass::MemcachedAmplification => "memcached_amplification",
            AttackClass::ChargenAmplification => "chargen_amplification",
            AttackClass::CldapAmplification => "cldap_amplification",
            AttackClass::SnmpAmplification => "snmp_amplification",
            AttackClass::TrafficFlood => "traffic_flood",
            AttackClass::FlashCrowd => "flash_crowd",
            AttackClass::HttpFlood => "http_flood",
            AttackClass::ConnectionFlood => "connection_flood",
            AttackClass::Slowloris => "slowloris",
        }
    }

    /// The reflection class of a UDP source port, if it is a known amplifier port.
    pub fn reflection_of_port(port: u16) -> Option<AttackClass> {
        Self::REFLECTION_PORTS
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, c)| *c)
    }

    /// The amplifier source port of a reflection class.
    pub fn reflection_port(self) -> Option<u16> {
        Self::REFLECTION_PORTS
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(p, _)| *p)
    }
}

impl fmt::Display for AttackClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttackClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown attack class `{s}`"))
    }
}

impl Serialize for AttackClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
