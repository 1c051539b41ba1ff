//! Requests on the engine's side: the light connection state the request signals are counted from
//! ([`conn`]) and the clients they name ([`clients`]), built from packet summaries alone.
//!
//! Request floods (issue 23: HTTP floods, TLS handshake floods, slowloris) are told by the
//! requests inside the packets; recognising a request head in a payload is the decoder's
//! ([`crate::decode::request_head`], re-exported here under its old names so `requests::parse`
//! and friends keep working). This module sits above it and follows connections with it.

pub mod clients;
pub mod conn;

pub use crate::decode::request_head::*;
