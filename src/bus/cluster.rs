//! A cluster on NATS: its name, its subjects and streams, and the record every node agrees on
//! (partition count, partition seed, subnet prefix lengths), kept in the cluster's key-value
//! bucket so the first node to start fixes it and every later one checks it.
//!
//! Layout for cluster `NAME`:
//! - stream `FW_NAME_BATCHES`, subjects `fw.NAME.p.<partition>`: every partition's batches
//!   (src/bus/wire.rs); or, in a cluster created with `--bus-stream-per-partition` (and in one
//!   created by a floodwatch before record version 2), streams `FW_NAME_P<partition>`, one a
//!   partition, so a NATS cluster spreads them over its servers;
//! - stream `FW_NAME_WM`, subjects `fw.NAME.wm.<node>`: each ingest node's watermark a tick for
//!   the partitions its batches did not reach that tick (its latest few kept);
//! - stream `FW_NAME_EVENTS`, subjects `fw.NAME.events.<group>`: the alert events detectors wrote;
//! - key-value bucket `fw_NAME`: key `cluster` (this record), `lease.<group>` (which detector
//!   runs a group of partitions);
//! - object store `fw_NAME_state`: each group's last checkpoint (`detector.<group>`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{Client, NatsError, NatsOptions};
use super::partition::Cluster;
use super::store::{JetStream, Kv, ObjectStore, Storage, StreamSpec};

/// Version of the cluster record (2: says where batches are kept, [`BatchStreams`]; version 1,
/// which did not, is read as [`BatchStreams::PerPartition`]).
const RECORD_VERSION: u32 = 2;
/// Watermarks kept per ingest node in the cluster's watermark stream.
const WATERMARKS_KEPT: i64 = 8;

/// Why a node cannot join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("cluster name {0:?}: use letters, digits, '-' and '_' only (it names NATS streams and subjects)")]
    Name(String),
    #[error("cluster {name:?} was created with {what} {theirs}; this node has {ours}: run every node of a cluster with the same settings, or use another --cluster")]
    Mismatch {
        name: String,
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error("cluster {name:?}: its record in bucket fw_{name} is unreadable ({reason}); delete it with `nats kv del fw_{name} cluster` to start the cluster again")]
    Record { name: String, reason: String },
    #[error("cluster {name:?} was created by a newer floodwatch (cluster record version {version}; this one reads 1 to {RECORD_VERSION}): upgrade this node (do not delete the record of a running cluster)")]
    Newer { name: String, version: u32 },
}

/// Where a cluster keeps its partitions' batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStreams {
    /// One stream for every partition, a subject each: what nats-server does per stream (its
    /// store, its wake-ups) is paid once. A detector still reads each of its partitions through a
    /// consumer filtered to the partition's subject.
    One,
    /// A stream a partition, so that a NATS cluster spreads their leaders over its servers.
    /// Records of version 1 have no such field and mean this.
    #[default]
    PerPartition,
}

/// What every node of a cluster agrees on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub version: u32,
    pub partitions: u16,
    pub seed: u64,
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    /// (absent in version 1 records: a stream a partition)
    #[serde(default)]
    pub streams: BatchStreams,
}

/// How a node joins: the settings it would create the cluster with.
#[derive(Clone, Debug)]
pub struct JoinSettings {
    pub name: String,
    /// Partitions when this node creates the cluster; when it joins one, a value given explicitly
    /// must match (None: take the cluster's).
    pub partitions: Option<u16>,
    pub subnet_v4: u8,
    pub subnet_v6: u8,
    /// Bytes of summary batches the bus keeps (oldest dropped beyond).
    pub max_bytes: i64,
    pub storage: Storage,
    /// Create the cluster with a stream a partition ([`BatchStreams::PerPartition`]); when it
    /// joins one that keeps them in one stream, the node is refused (false: take the cluster's).
    pub stream_per_partition: bool,
}

/// Partitions of a cluster created without saying.
pub const DEFAULT_PARTITIONS: u16 = 8;

/// A node's connection to its cluster.
pub struct ClusterBus {
    pub name: String,
    pub client: Client,
    pub js: JetStream,
    pub kv: Kv,
    /// The object store of checkpoints.
    pub state: ObjectStore,
    pub cluster: Cluster,
    /// Where the partitions' batches are kept.
    pub streams: BatchStreams,
}

impl ClusterBus {
    /// The subject of a partition's batches.
    pub fn partition_subject(&self, partition: u16) -> String {
        partition_subject(&self.name, partition)
    }

    /// The stream holding a partition's batches.
    pub fn stream(&self, partition: u16) -> String {
        batch_stream(&self.name, self.streams, partition)
    }

    /// Every partition's batch subjects (one consumer of them all, in a one-stream cluster).
    pub fn batch_subjects(&self) -> String {
        batch_subjects(&self.name)
    }

    /// The subject of an ingest node's watermarks (src/bus/wire.rs, "node watermark").
    pub fn watermark_subject(&self, node: u32) -> String {
        format!("fw.{}.wm.{node}", self.name)
    }

    /// The stream of every ingest node's watermarks, and the subjects a detector reads of it.
    pub fn watermark_stream(&self) -> (String, String) {
        watermark_stream(&self.name)
    }

    pub fn events_stream(&self) -> String {
        format!("FW_{}_EVENTS", self.name)
    }

    pub fn events_subject(&self, group: &str) -> String {
        format!("fw.{}.events.{group}", self.name)
    }
}

/// The stream of `partition`'s batches in cluster `name`, kept as `streams` says.
fn batch_stream(name: &str, streams: BatchStreams, partition: u16) -> String {
    match streams {
        BatchStreams::One => format!("FW_{name}_BATCHES"),
        BatchStreams::PerPartition => format!("FW_{name}_P{partition}"),
    }
}

/// The subject of `partition`'s batches in cluster `name`.
fn partition_subject(name: &str, partition: u16) -> String {
    format!("fw.{name}.p.{partition}")
}

/// Every partition's batch subjects in cluster `name`.
fn batch_subjects(name: &str) -> String {
    format!("fw.{name}.p.*")
}

/// The stream of cluster `name`'s node watermarks, and its subjects.
fn watermark_stream(name: &str) -> (String, String) {
    (format!("FW_{name}_WM"), format!("fw.{name}.wm.>"))
}

/// Checks a cluster name.
pub fn check_name(name: &str) -> Result<(), ClusterError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ClusterError::Name(name.to_string()));
    }
    Ok(())
}

/// Connects to NATS as `nats` says, makes sure the cluster's streams and bucket exist, and reads
/// (or, first of all, writes) the cluster record.
pub fn join(nats: &NatsOptions, s: &JoinSettings, seed: u64) -> Result<ClusterBus, ClusterError> {
    check_name(&s.name)?;
    let client = Client::connect(nats, Duration::from_secs(5))?;
    let js = JetStream::new(&client);
    js.check()?;
    // nodes starting together create the same streams at once: a request that times out or
    // races another node's is tried again
    let mut tries = 0;
    loop {
        match join_on(client.clone(), js.clone(), s, seed) {
            Err(ClusterError::Nats(e)) if tries < 3 && transient(&e) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(200 * tries));
            }
            r => return r,
        }
    }
}

/// A JetStream API failure that may pass: a timeout, a server-side error (5xx), or "subjects
/// overlap with an existing stream" from creating a stream another node created a moment before
/// (tried again, the create finds the name in use and updates it).
fn transient(e: &NatsError) -> bool {
    const SUBJECTS_OVERLAP: u32 = 10065;
    /// Not enough storage for a stream's max_bytes: tried again, it fails again.
    const INSUFFICIENT_RESOURCES: u32 = 10047;
    match e {
        NatsError::Timeout { .. } => true,
        NatsError::JetStream { code, err_code, .. } => {
            *err_code == SUBJECTS_OVERLAP || (*code >= 500 && *err_code != INSUFFICIENT_RESOURCES)
        }
        _ => false,
    }
}

fn join_on(
    client: Client,
    js: JetStream,
    s: &JoinSettings,
    seed: u64,
) -> Result<ClusterBus, ClusterError> {
    let name = s.name.clone();
    let subject = format!("fw.{name}.events.>");
    let events = StreamSpec {
        name: format!("FW_{name}_EVENTS"),
        subjects: vec![subject],
        storage: Storage::File,
        // JetStream reserves a stream's max_bytes from the server's storage: keep this one small
        max_bytes: (s.max_bytes / 4).max(16 << 20),
        max_age: Duration::from_secs(30 * 24 * 3600),
        max_per_subject: 0,
    };
    js.ensure_stream(&events)?;
    let kv = Kv::ensure(&js, &format!("fw_{name}"), Storage::File)?;
    let ours = ClusterRecord {
        version: RECORD_VERSION,
        partitions: s.partitions.unwrap_or(DEFAULT_PARTITIONS).max(1),
        seed,
        subnet_v4: s.subnet_v4,
        subnet_v6: s.subnet_v6,
        streams: if s.stream_per_partition {
            BatchStreams::PerPartition
        } else {
            BatchStreams::One
        },
    };
    let record = loop {
        if let Some(e) = kv.get("cluster")? {
            let r: ClusterRecord =
                serde_json::from_slice(&e.value).map_err(|e| ClusterError::Record {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            break r;
        }
        // a cluster whose record was deleted keeps the streams it has
        let mut ours = ours;
        for streams in [BatchStreams::PerPartition, BatchStreams::One] {
            if js.stream_exists(&batch_stream(&name, streams, 0))? {
                ours.streams = streams;
                break;
            }
        }
        let bytes = serde_json::to_vec(&ours).unwrap_or_default();
        if kv.create("cluster", &bytes)?.is_some() {
            break ours;
        }
        // another node created it at the same moment: read theirs
    };
    if record.version > RECORD_VERSION {
        return Err(ClusterError::Newer {
            name,
            version: record.version,
        });
    }
    if record.version == 0 {
        return Err(ClusterError::Record {
            name,
            reason: format!(
                "version {} (this floodwatch reads 1 to {RECORD_VERSION})",
                record.version
            ),
        });
    }
    let mismatch = |what: &'static str, theirs: String, ours: String| ClusterError::Mismatch {
        name: name.clone(),
        what,
        theirs,
        ours,
    };
    if let Some(p) = s.partitions {
        if p != record.partitions {
            return Err(mismatch(
                "--cluster-partitions",
                record.partitions.to_string(),
                p.to_string(),
            ));
        }
    }
    if (record.subnet_v4, record.subnet_v6) != (s.subnet_v4, s.subnet_v6) {
        return Err(mismatch(
            "--subnet-v4/--subnet-v6",
            format!("/{} and /{}", record.subnet_v4, record.subnet_v6),
            format!("/{} and /{}", s.subnet_v4, s.subnet_v6),
        ));
    }
    if s.stream_per_partition && record.streams != BatchStreams::PerPartition {
        return Err(mismatch(
            "its batches kept in",
            "one stream".to_string(),
            "--bus-stream-per-partition".to_string(),
        ));
    }
    match record.streams {
        BatchStreams::One => js.ensure_stream(&StreamSpec {
            name: batch_stream(&name, BatchStreams::One, 0),
            subjects: vec![batch_subjects(&name)],
            storage: s.storage,
            max_bytes: s.max_bytes,
            max_age: Duration::ZERO,
            max_per_subject: 0,
        })?,
        BatchStreams::PerPartition => {
            // sharing --bus-max-bytes
            let share = (s.max_bytes / i64::from(record.partitions.max(1))).max(1 << 20);
            for p in 0..record.partitions {
                js.ensure_stream(&StreamSpec {
                    name: batch_stream(&name, BatchStreams::PerPartition, p),
                    subjects: vec![partition_subject(&name, p)],
                    storage: s.storage,
                    max_bytes: share,
                    max_age: Duration::ZERO,
                    max_per_subject: 0,
                })?;
            }
        }
    }
    // the ingest nodes' watermarks: a subject a node, its latest few kept (a detector starts from
    // each node's last; older ones say less)
    let (wm_name, wm_subjects) = watermark_stream(&name);
    js.ensure_stream(&StreamSpec {
        name: wm_name,
        subjects: vec![wm_subjects],
        storage: s.storage,
        max_bytes: 16 << 20,
        max_age: Duration::from_secs(24 * 3600),
        max_per_subject: WATERMARKS_KEPT,
    })?;
    let state = ObjectStore::ensure(&js, &format!("fw_{name}_state"), Storage::File)?;
    Ok(ClusterBus {
        name,
        client,
        js,
        kv,
        state,
        cluster: Cluster {
            partitions: record.partitions,
            seed: record.seed,
            subnet_v4: record.subnet_v4,
            subnet_v6: record.subnet_v6,
        },
        streams: record.streams,
    })
}

/// Parses a partition list: `0-7`, `3`, `0,2,4-5`; every partition below `count`.
pub fn parse_partitions(spec: &str, count: u16) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let num = |x: &str| {
            x.parse::<u16>()
                .map_err(|_| format!("{part:?} is not a partition or a range (e.g. 0-7)"))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(format!("{part:?}: the range runs backwards"));
        }
        if b >= count {
            return Err(format!(
                "partition {b} does not exist: the cluster has {count} (0-{})",
                count - 1
            ));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err("no partition given (e.g. --partitions 0-7)".to_string());
    }
    Ok(out)
}

/// The canonical name of a group of partitions (`0-3_6`), used in subjects and keys.
pub fn group_name(parts: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let start = parts[i];
        let mut end = start;
        while i + 1 < parts.len() && parts[i + 1] == end + 1 {
            i += 1;
            end = parts[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_version_1_means_a_stream_a_partition_and_version_2_says_which() {
        let v1 = r#"{"version":1,"partitions":8,"seed":7,"subnet_v4":24,"subnet_v6":64}"#;
        let r: ClusterRecord = serde_json::from_str(v1).unwrap();
        assert_eq!(r.streams, BatchStreams::PerPartition);
        let v2 = ClusterRecord {
            version: RECORD_VERSION,
            streams: BatchStreams::One,
            ..r
        };
        let text = serde_json::to_string(&v2).unwrap();
        assert!(text.contains(r#""streams":"one""#), "{text}");
        assert_eq!(serde_json::from_str::<ClusterRecord>(&text).unwrap(), v2);
    }

    #[test]
    fn partition_lists_parse_and_name_canonically() {
        assert_eq!(parse_partitions("0-3", 8).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_partitions("5,0-1, 1", 8).unwrap(), vec![0, 1, 5]);
        assert!(parse_partitions("0-8", 8).unwrap_err().contains("0-7"));
        assert!(parse_partitions("3-1", 8).is_err());
        assert!(parse_partitions("x", 8).is_err());
        assert!(parse_partitions("", 8).is_err());
        assert_eq!(group_name(&[0, 1, 2, 3, 6, 8, 9]), "0-3_6_8-9");
        assert_eq!(group_name(&[4]), "4");
        assert!(check_name("site-a_1").is_ok());
        assert!(
            check_name("a.b").is_err() && check_name("").is_err() && check_name("a b").is_err()
        );
    }
}
