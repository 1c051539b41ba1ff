//! Synthetic captures (stub).
// TEMP stub API
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;
pub enum Scenario { A }
impl std::str::FromStr for Scenario { type Err = String; fn from_str(_: &str) -> Result<Self, String> { Err("stub".into()) } }
pub struct SynthOptions { pub seed: u64, pub duration: Duration, pub attack_start: Duration, pub attack_duration: Duration, pub attack_pps: u64, pub background_pps: u64, pub victim: Option<IpAddr>, pub sources: u64, pub src_mac: [u8;6], pub dst_mac: [u8;6], pub min_size: bool, pub start: crate::time::Timestamp }
impl Default for SynthOptions { fn default() -> Self { SynthOptions { seed: 1, duration: Duration::ZERO, attack_start: Duration::ZERO, attack_duration: Duration::ZERO, attack_pps: 0, background_pps: 0, victim: None, sources: 0, src_mac: [0;6], dst_mac: [0;6], min_size: false, start: crate::time::Timestamp(0) } } }
pub struct SynthReport { pub packets: u64, pub bytes: u64, pub labels: Vec<u8> }
pub fn write_pcap<W: Write>(_s: Scenario, _o: &SynthOptions, _w: W) -> std::io::Result<SynthReport> { Ok(SynthReport { packets: 0, bytes: 0, labels: vec![] }) }
pub fn write_labels<W: Write>(_r: &SynthReport, _w: W) -> std::io::Result<()> { Ok(()) }
