//! Input files of a directory, merged into one stream in event-time order.
//!
//! Each file keeps its own order (its disorder included, as a Kafka partition would); across
//! files the record with the earliest event time at the head goes first, ties by file name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use omnistitch_codec::container::BadRecord;
use omnistitch_codec::jsonl::JsonLinesReader;
use omnistitch_codec::ContainerReader;
use omnistitch_model::{Channel, WireEvent};

/// One record of the merged stream.
#[derive(Debug)]
pub enum InputRecord {
    /// A decoded record.
    Event {
        /// File it came from.
        source: Arc<str>,
        /// Record index (Avro) or line number (JSON Lines).
        position: u64,
        /// The record (boxed: records are large and pass through several queues).
        event: Box<WireEvent>,
        /// Its original bytes when known (JSON Lines); Avro records are re-encoded if dead-lettered.
        raw: Option<Vec<u8>>,
    },
    /// Bytes that did not decode.
    Bad {
        /// File it came from.
        source: Arc<str>,
        /// Record index or line number.
        position: u64,
        /// Stable reason code.
        code: &'static str,
        /// Reason.
        reason: String,
        /// The bytes.
        payload: Vec<u8>,
    },
}

type Items = Box<dyn Iterator<Item = InputRecord>>;

struct Head {
    items: Items,
    next: Option<InputRecord>,
}

/// The merged stream of a directory's input files.
///
/// With partitions, records are first split by the input partition of their tenant (as the
/// service's inputs are) and each partition's records are merged on their own, partition after
/// partition: per tenant, the same order the service applies them in.
pub struct InputStream {
    heads: Vec<Head>,
    /// Partitions still to merge after the current one.
    later: std::collections::VecDeque<Vec<Head>>,
}

fn event_time(r: &InputRecord) -> i64 {
    match r {
        // A time validation refuses goes out at once too, to its dead letter, as in the
        // service: at its written time, one from year 50,000 would hold its file back.
        InputRecord::Event { event, .. } if omnistitch_model::wire::accepted_event_time(event.event_time()) => {
            event.event_time()
        }
        // Bad records carry no trustworthy time: let them out at once.
        _ => i64::MIN,
    }
}

fn open_avro(path: &Path, name: Arc<str>) -> anyhow::Result<Items> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    match ContainerReader::new(file) {
        Ok(reader) => Ok(Box::new(reader.map(move |item| match item {
            Ok((i, event)) => {
                InputRecord::Event { source: name.clone(), position: i, event: Box::new(event), raw: None }
            }
            Err(BadRecord { index, error, payload }) => InputRecord::Bad {
                source: name.clone(),
                position: index,
                code: error.code(),
                reason: error.to_string(),
                payload,
            },
        }))),
        // A file whose header is unreadable is one bad record: the run goes on (its first bytes
        // kept, as far as they can be read).
        Err(error) => {
            let mut payload = Vec::new();
            if let Ok(f) = File::open(path) {
                let _ = f.take(64 * 1024).read_to_end(&mut payload);
            }
            let bad =
                InputRecord::Bad { source: name, position: 0, code: error.code(), reason: error.to_string(), payload };
            Ok(Box::new(std::iter::once(bad)))
        }
    }
}

fn open_jsonl(path: &Path, name: Arc<str>, channel: Channel) -> anyhow::Result<Items> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    Ok(Box::new(JsonLinesReader::new(file, channel).map(move |(line, raw, decoded)| match decoded {
        Ok(event) => {
            InputRecord::Event { source: name.clone(), position: line, event: Box::new(event), raw: Some(raw) }
        }
        Err(error) => InputRecord::Bad {
            source: name.clone(),
            position: line,
            code: error.code(),
            reason: error.to_string(),
            payload: raw,
        },
    })))
}

/// The channel a JSON Lines file holds, from its name: `email*.jsonl`, `chat*.jsonl` ...
fn channel_of_name(stem: &str) -> Option<Channel> {
    Channel::ALL.into_iter().find(|c| stem.starts_with(c.as_str()))
}

/// Input files of `dir`: `*.avro` containers and `<channel>*.jsonl`; other files are skipped.
pub fn input_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading input directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Regular files (or links to them) only: a directory named like an input is no input.
        .filter(|p| p.is_file())
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            ext == "avro" || (ext == "jsonl" && channel_of_name(stem).is_some())
        })
        .collect();
    files.sort();
    Ok(files)
}

impl InputStream {
    /// Opens every input file of `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let mut heads = Vec::new();
        for path in input_files(dir)? {
            let name: Arc<str> = Arc::from(path.file_name().and_then(|n| n.to_str()).unwrap_or("?"));
            let opened = if path.extension().is_some_and(|e| e == "avro") {
                open_avro(&path, name.clone())
            } else {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                open_jsonl(&path, name.clone(), channel_of_name(stem).expect("filtered by name"))
            };
            // A file that cannot be opened (permissions, gone since the listing) is one bad
            // record naming it: the run goes on with the others.
            let items = opened.unwrap_or_else(|e| {
                let bad = InputRecord::Bad {
                    source: name,
                    position: 0,
                    code: "io",
                    reason: format!("cannot open the file: {e}"),
                    payload: Vec::new(),
                };
                Box::new(std::iter::once(bad))
            });
            heads.push(Head { items, next: None });
        }
        if heads.is_empty() {
            anyhow::bail!("no input files (*.avro, email|chat|phone|social*.jsonl) in {}", dir.display());
        }
        for h in &mut heads {
            h.next = h.items.next();
        }
        Ok(InputStream { heads, later: Default::default() })
    }

    /// Opens `dir` split into `partitions` input partitions by `partition_of(tenant)` (records
    /// that did not decode go to partition 0). Reads every record into memory first.
    pub fn open_partitioned(
        dir: &Path,
        partitions: usize,
        partition_of: impl Fn(&str) -> usize,
    ) -> anyhow::Result<Self> {
        let mut whole = InputStream::open(dir)?;
        let mut split: Vec<Vec<Vec<InputRecord>>> = Vec::new();
        for head in &mut whole.heads {
            let mut lanes: Vec<Vec<InputRecord>> = (0..partitions.max(1)).map(|_| Vec::new()).collect();
            let first = head.next.take();
            for r in first.into_iter().chain(&mut head.items) {
                let p = match &r {
                    InputRecord::Event { event, .. } => partition_of(event.tenant()) % lanes.len(),
                    InputRecord::Bad { .. } => 0,
                };
                lanes[p].push(r);
            }
            split.push(lanes);
        }
        let mut groups: std::collections::VecDeque<Vec<Head>> = (0..partitions.max(1))
            .map(|p| {
                split
                    .iter_mut()
                    .map(|lanes| {
                        let mut items: Items = Box::new(std::mem::take(&mut lanes[p]).into_iter());
                        let next = items.next();
                        Head { items, next }
                    })
                    .collect()
            })
            .collect();
        let heads = groups.pop_front().unwrap_or_default();
        Ok(InputStream { heads, later: groups })
    }
}

impl Iterator for InputStream {
    type Item = InputRecord;

    fn next(&mut self) -> Option<InputRecord> {
        let (i, _) = loop {
            let head = self
                .heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.next.as_ref().map(|r| (i, event_time(r))))
                .min_by_key(|&(i, t)| (t, i));
            match head {
                Some(h) => break h,
                None => self.heads = self.later.pop_front()?,
            }
        };
        let head = &mut self.heads[i];
        let out = head.next.take();
        head.next = head.items.next();
        out
    }
}
