//! Detection partitioned across machines over a message bus (issue 15): ingest nodes publish
//! batches of packet summaries per partition, detector nodes consume their partitions.
//!
//! - [`wire`]: the versioned binary encoding of a batch of summaries with the ingest node's
//!   watermark (docs/scaling.md).
//! - [`partition`]: which partition owns a summary's destination and source sides, and an ingest
//!   node's per-partition batching.
//! - [`merge`]: a detector node's side: batches of its partitions from every ingest node, merged in
//!   time order up to the minimum watermark of the live nodes, repeats dropped.
//! - [`client`]: the connection to NATS through the official client async-nats (TLS, creds,
//!   nkeys, reconnects), behind blocking calls on a small runtime the bus owns.
//! - [`store`]: the JetStream used: streams, pull consumers, an acknowledged publisher, a
//!   key-value bucket and an object store.
//! - [`cluster`]: a cluster's names, streams and shared record; [`publish`]: an ingest node's
//!   publisher thread; [`detector`]: a detector node (lease, checkpoints, takeover), reading its
//!   partitions through `consumers`.

pub mod client;
pub mod cluster;
mod consumers;
pub mod detector;
pub mod merge;
pub mod partition;
pub mod publish;
pub mod store;
pub mod wire;
