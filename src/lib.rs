//! floodwatch: a network flood (DoS/DDoS) detector.
//!
//! The library holds the whole engine so the binary, the tests and the benches run the same code:
//! [`capture`] reads frames, [`decode`] turns each into a [`decode::PacketSummary`], [`detect::Engine`]
//! keeps sliding windows and learned baselines per (scope, key) and emits [`alert::AlertEvent`]s, and
//! [`pipeline`] wires those stages into threads joined by bounded channels.

pub mod aggregate;
pub mod alert;
pub mod alert_output;
pub mod atomic_file;
pub mod attack_class;
pub mod attribution;
pub mod baseline;
pub mod bus;
pub mod capture;
pub mod clock;
pub mod config;
pub mod decode;
pub mod detect;
pub mod engine_state;
pub mod evidence_pcap;
pub mod hook;
pub mod key;
pub mod key_trace;
pub mod metrics;
pub mod mitigation;
pub mod pcap_writer;
pub mod pipeline;
pub mod population;
pub mod prefetch;
pub mod privileges;
pub mod reload;
pub mod report;
pub mod requests;
pub mod signature;
pub mod state;
pub mod synth;
pub mod table;
pub mod telemetry;
pub mod threads;
pub mod time;
pub mod window;

/// Fixtures the unit tests share with the integration tests and the benches (one file, plain std).
#[cfg(test)]
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
