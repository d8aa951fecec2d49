//! A world on disk: one Avro container per channel, in arrival order, `truth.jsonl` and
//! `moments_truth.jsonl`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use omnistitch_codec::ContainerWriter;
use omnistitch_model::Channel;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SimError;
use crate::moments::MomentTruth;
use crate::truth::TruthRecord;
use crate::world::World;

/// File name of the ground truth, one [`TruthRecord`] per line.
pub const TRUTH_FILE: &str = "truth.jsonl";

/// File name of the micro-moments truth, one [`MomentTruth`] per line.
pub const MOMENTS_TRUTH_FILE: &str = "moments_truth.jsonl";

/// File name of a channel's container, e.g. `email.avro`.
pub fn channel_file(channel: Channel) -> String {
    format!("{}.avro", channel.as_str())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io { path: path.to_path_buf(), source }
}

fn avro_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> SimError + '_ {
    move |e| SimError::Avro { path: path.to_path_buf(), message: e.to_string() }
}

/// Writes `world` into `dir` (created if missing): `email.avro`, `chat.avro`, `phone.avro`,
/// `social.avro` (uncompressed, arrival order; a channel without events gets an empty file),
/// `truth.jsonl` and `moments_truth.jsonl`.
pub fn write_world(dir: impl AsRef<Path>, world: &World) -> Result<(), SimError> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    for channel in Channel::ALL {
        let path = dir.join(channel_file(channel));
        let file = File::create(&path).map_err(io_error(&path))?;
        let marker = sync_marker(world, channel);
        let mut writer =
            ContainerWriter::with_marker(channel, BufWriter::new(file), false, marker).map_err(avro_error(&path))?;
        for e in world.events.iter().filter(|e| e.channel() == channel) {
            writer.append(e).map_err(avro_error(&path))?;
        }
        let sink = writer.finish().map_err(avro_error(&path))?;
        sink.into_inner().map_err(|e| e.into_error()).map_err(io_error(&path))?;
    }
    write_lines(&dir.join(TRUTH_FILE), &world.truth)?;
    write_lines(&dir.join(MOMENTS_TRUTH_FILE), &world.moments)
}

/// The sync marker of `world`'s `channel` file: drawn from what the world holds, so the same
/// world (the same seed) writes the same files, byte for byte.
fn sync_marker(world: &World, channel: Channel) -> [u8; 16] {
    use rand::{RngCore, SeedableRng};
    // FNV-1a over the channel, the number of deliveries and the first one's tenant and time.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let first = world.events.first().map(|e| (e.tenant().to_string(), e.event_time())).unwrap_or_default();
    let count = world.events.len() as u64;
    let bytes = channel.as_str().bytes().chain(count.to_le_bytes()).chain(first.0.bytes()).chain(first.1.to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut marker = [0u8; 16];
    rand_chacha::ChaCha8Rng::seed_from_u64(h).fill_bytes(&mut marker);
    marker
}

/// Writes `records` to `path` as JSON Lines.
fn write_lines<T: Serialize>(path: &Path, records: &[T]) -> Result<(), SimError> {
    let file = File::create(path).map_err(io_error(path))?;
    let mut out = BufWriter::new(file);
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| SimError::Io { path: path.to_path_buf(), source: e.into() })?;
        out.write_all(b"\n").map_err(io_error(path))?;
    }
    out.flush().map_err(io_error(path))
}

/// Reads JSON Lines of `T` from `path`; blank lines are skipped.
fn read_lines<T: DeserializeOwned>(path: PathBuf) -> Result<Vec<T>, SimError> {
    let file = File::open(&path).map_err(io_error(&path))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error(&path))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| SimError::Truth {
            path: path.clone(),
            line: n + 1,
            source,
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Reads `truth.jsonl` from `dir`; blank lines are skipped.
pub fn read_truth(dir: impl AsRef<Path>) -> Result<Vec<TruthRecord>, SimError> {
    read_lines(dir.as_ref().join(TRUTH_FILE))
}

/// Reads `moments_truth.jsonl` from `dir`; blank lines are skipped.
pub fn read_moment_truth(dir: impl AsRef<Path>) -> Result<Vec<MomentTruth>, SimError> {
    read_lines(dir.as_ref().join(MOMENTS_TRUTH_FILE))
}

#[cfg(test)]
mod tests {
    use omnistitch_codec::ContainerReader;

    use super::*;
    use crate::config::SimConfig;
    use crate::world::generate;

    #[test]
    fn a_world_survives_a_round_trip_through_its_files() {
        let world = generate(&SimConfig { customers: 40, seed: 9, ..SimConfig::default() }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_world(dir.path(), &world).unwrap();
        let mut read = Vec::new();
        for channel in Channel::ALL {
            let file = File::open(dir.path().join(channel_file(channel))).unwrap();
            let reader = ContainerReader::new(BufReader::new(file)).unwrap();
            assert_eq!(reader.channel(), channel);
            let events: Vec<_> = reader.map(|item| item.unwrap().1).collect();
            let expected: Vec<_> = world.events.iter().filter(|e| e.channel() == channel).cloned().collect();
            assert_eq!(events, expected, "{channel}");
            read.extend(events);
        }
        assert_eq!(read.len(), world.events.len());
        assert_eq!(read_truth(dir.path()).unwrap(), world.truth);
        assert!(!world.moments.is_empty());
        assert_eq!(read_moment_truth(dir.path()).unwrap(), world.moments);
    }

    /// The same seed writes the same files, byte for byte (the sync markers included).
    #[test]
    fn the_same_world_writes_the_same_bytes() {
        let files = || {
            let world = generate(&SimConfig { customers: 40, seed: 9, ..SimConfig::default() }).unwrap();
            let dir = tempfile::tempdir().unwrap();
            write_world(dir.path(), &world).unwrap();
            Channel::ALL.map(|c| std::fs::read(dir.path().join(channel_file(c))).unwrap())
        };
        assert_eq!(files(), files());
    }

    #[test]
    fn a_bad_truth_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(TRUTH_FILE),
            "{\"event_id\":\"e\",\"tenant\":\"t\",\"person\":\"p\",\"linkable\":\"e\"}\n\nnot json\n",
        )
        .unwrap();
        match read_truth(dir.path()) {
            Err(SimError::Truth { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_truth(dir.path().join("missing")), Err(SimError::Io { .. })));
    }
}
