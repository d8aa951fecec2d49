//! Avro object container files, read block by block so one bad record costs its block, not the file.
//!
//! apache-avro's own reader stops at the first error. This reader parses the framing itself
//! (header, then `count, size, data, sync` blocks), decodes records with the file's writer
//! schema, and on a bad record reports it with the rest of its block and moves to the next block.
//! A block whose data is bad as a whole (it does not decompress; its count claims no records
//! for its bytes, or more records than bytes) is one bad record, and bytes after a block's last
//! record are one more: nothing is dropped unreported. A sync marker that does not match loses
//! the block: reading resumes after the next marker, and the bytes passed over are one bad
//! record (with a damaged marker, the next one found ends the following block, which goes with
//! it); a count or size that does not parse, or no marker to resume at, ends the file.

use std::io::{self, Read, Write};
use std::str::FromStr;

use apache_avro::{Codec, Schema, Writer};
use omnistitch_model::wire::WireEvent;
use omnistitch_model::Channel;

use crate::contract::{channel_of, intern, Contract};
use crate::datum::WireReader;
use crate::error::DecodeError;

/// Largest block accepted, compressed or not.
const MAX_BLOCK_BYTES: i64 = 256 * 1024 * 1024;

/// Bytes a file's resyncs may copy back in all (a few damaged blocks' worth).
const MAX_REREAD_BYTES: usize = 4 * MAX_BLOCK_BYTES as usize;

/// A record that could not be read, with what is known of its bytes.
#[derive(Debug)]
pub struct BadRecord {
    /// Index of the first unreadable record in the file.
    pub index: u64,
    /// Why.
    pub error: DecodeError,
    /// The unreadable bytes (the rest of the block; its first 64 KiB).
    pub payload: Vec<u8>,
}

/// One item of a container: a record with its index, or a bad record.
pub type ContainerItem = Result<(u64, WireEvent), BadRecord>;

/// A block as read: its records are decoded one by one, or it is bad as a whole.
enum Block {
    Good,
    Bad { count: i64, error: DecodeError, payload: Vec<u8> },
}

/// A reader that can be handed back bytes it gave (read past a block whose sync marker did
/// not match, looking for the next marker).
struct Source<R> {
    pending: Vec<u8>,
    at: usize,
    inner: R,
    /// Bytes `unread` may still copy: each resync gives back what follows a marker, and blocks
    /// whose sizes all claim the rest of the file would otherwise have it copied again per
    /// block (quadratic in the file's size).
    reread_budget: usize,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.pending.len() {
            let n = buf.len().min(self.pending.len() - self.at);
            buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<R: Read> Source<R> {
    /// Gives `bytes` back: they are read again before the rest. `false` (nothing given back)
    /// once the copies would pass the budget.
    fn unread(&mut self, bytes: &[u8]) -> bool {
        let copied = bytes.len() + (self.pending.len() - self.at);
        let Some(left) = self.reread_budget.checked_sub(copied) else { return false };
        self.reread_budget = left;
        let mut pending = bytes.to_vec();
        pending.extend_from_slice(&self.pending[self.at..]);
        (self.pending, self.at) = (pending, 0);
        true
    }
}

/// Bytes of a bad record or block kept in its dead letter, at most (a block holds up to
/// 256 MiB; the file keeps them all).
const MAX_LOST_PAYLOAD: usize = 64 * 1024;

/// Reads the input records of one container file.
pub struct ContainerReader<R> {
    source: Source<R>,
    channel: Channel,
    reader: WireReader,
    codec: Codec,
    sync: [u8; 16],
    block: Vec<u8>,
    pos: usize,
    left_in_block: i64,
    index: u64,
    done: bool,
    /// The block just read had bytes after its last record: reported next, at this index.
    trailing: Option<u64>,
}

fn read_long<R: Read>(r: &mut R) -> io::Result<Option<i64>> {
    let mut value: u64 = 0;
    let mut shift = 0;
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return if shift == 0 { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some(((value >> 1) as i64) ^ -((value & 1) as i64)));
        }
        shift += 7;
        if shift > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "varint too long"));
        }
    }
}

/// A read error of the framing: a file cut short, or a varint too long, is a damaged
/// container (`container_corrupt`); only a failing read is `io`.
fn framing(e: io::Error) -> DecodeError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => DecodeError::Container("the file ends inside a block or its header".into()),
        io::ErrorKind::InvalidData => DecodeError::Container(format!("unreadable framing: {e}")),
        _ => DecodeError::Io(e),
    }
}

fn need_long<R: Read>(r: &mut R) -> Result<i64, DecodeError> {
    read_long(r).map_err(framing)?.ok_or_else(|| DecodeError::Container("unexpected end of file".into()))
}

fn read_bytes<R: Read>(r: &mut R, len: i64) -> Result<Vec<u8>, DecodeError> {
    if !(0..=MAX_BLOCK_BYTES).contains(&len) {
        return Err(DecodeError::Container(format!("implausible length {len}")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).map_err(framing)?;
    Ok(buf)
}

impl<R: Read> ContainerReader<R> {
    /// Reads the header; fails if it is not a container of one of the input schemas.
    pub fn new(mut source: R) -> Result<Self, DecodeError> {
        let mut magic = [0u8; 4];
        source.read_exact(&mut magic).map_err(framing)?;
        if &magic != b"Obj\x01" {
            return Err(DecodeError::Container("not an Avro object container file".into()));
        }
        let (mut schema_json, mut codec_name) = (None, None);
        loop {
            let mut count = need_long(&mut source)?;
            if count == 0 {
                break;
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| DecodeError::Container("metadata block count".into()))?;
                need_long(&mut source)?; // block size in bytes, unused
            }
            for _ in 0..count {
                let key_len = need_long(&mut source)?;
                let key = String::from_utf8(read_bytes(&mut source, key_len)?)
                    .map_err(|_| DecodeError::Container("metadata key is not UTF-8".into()))?;
                let value_len = need_long(&mut source)?;
                let value = read_bytes(&mut source, value_len)?;
                match key.as_str() {
                    "avro.schema" => schema_json = Some(value),
                    "avro.codec" => codec_name = Some(value),
                    _ => {}
                }
            }
        }
        let mut sync = [0u8; 16];
        source.read_exact(&mut sync).map_err(framing)?;
        let schema_json = schema_json.ok_or_else(|| DecodeError::Container("header has no avro.schema".into()))?;
        let schema_text =
            std::str::from_utf8(&schema_json).map_err(|_| DecodeError::Container("avro.schema is not UTF-8".into()))?;
        let schema = Schema::parse_str(schema_text).map_err(|e| DecodeError::UnknownSchema(e.to_string()))?;
        let channel = channel_of(&schema)
            .ok_or_else(|| DecodeError::UnknownSchema(schema.name().map(|n| n.fullname(None)).unwrap_or_default()))?;
        let codec_name = codec_name.map(|c| String::from_utf8_lossy(&c).into_owned());
        let codec = match codec_name.as_deref() {
            None | Some("null") => Codec::Null,
            Some(name) => Codec::from_str(name).map_err(|_| DecodeError::UnsupportedCodec(name.to_string()))?,
        };
        let reader = WireReader::new(channel, intern(schema))?;
        Ok(ContainerReader {
            source: Source { pending: Vec::new(), at: 0, inner: source, reread_budget: MAX_REREAD_BYTES },
            channel,
            reader,
            codec,
            sync,
            block: Vec::new(),
            pos: 0,
            left_in_block: 0,
            index: 0,
            done: false,
            trailing: None,
        })
    }

    /// The channel of the file's records.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Finds the next sync marker in `read` (bytes already read) or after it; the bytes after
    /// the marker are given back to be read as the next block. Returns the bytes passed over,
    /// or `None` when no marker comes before the end of the file (or within a block's size).
    fn resync(&mut self, mut read: Vec<u8>) -> Result<Option<Vec<u8>>, DecodeError> {
        if let Some(k) = read.windows(16).position(|w| w == self.sync) {
            if !self.source.unread(&read[k + 16..]) {
                return Err(DecodeError::Container(
                    "sync marker mismatches re-read too much of the file: the rest is passed over".into(),
                ));
            }
            read.truncate(k);
            return Ok(Some(read));
        }
        let mut byte = [0u8; 1];
        while read.len() < MAX_BLOCK_BYTES as usize {
            if self.source.read(&mut byte)? == 0 {
                return Ok(None);
            }
            read.push(byte[0]);
            if read.ends_with(&self.sync) {
                read.truncate(read.len() - 16);
                return Ok(Some(read));
            }
        }
        Ok(None)
    }

    /// Loads the next block; `Ok(None)` at a clean end of file. A count or size that does not
    /// parse loses the frame: nothing after can be trusted. A block whose sync marker does not
    /// match is [`Block::Bad`], reading resuming after the next marker; so is a block framed
    /// well whose data is bad (it does not decompress, or it claims more records than bytes).
    fn next_block(&mut self) -> Result<Option<Block>, DecodeError> {
        let Some(count) = read_long(&mut self.source).map_err(framing)? else { return Ok(None) };
        let size = need_long(&mut self.source)?;
        if count < 0 {
            return Err(DecodeError::Container(format!("negative record count {count}")));
        }
        let mut data = read_bytes(&mut self.source, size)?;
        let mut sync = [0u8; 16];
        self.source.read_exact(&mut sync).map_err(framing)?;
        if sync != self.sync {
            // The frame is lost: what follows is read from the next sync marker on, if any.
            data.extend_from_slice(&sync);
            let Some(skipped) = self.resync(data)? else {
                return Err(DecodeError::Container("sync marker mismatch, and no marker after it".into()));
            };
            let count = if usize::try_from(count).is_ok_and(|c| c <= skipped.len()) { count } else { 0 };
            let error = DecodeError::Container(format!(
                "sync marker mismatch: {} bytes passed over to the next marker",
                skipped.len()
            ));
            let payload = skipped[..skipped.len().min(MAX_LOST_PAYLOAD)].to_vec();
            return Ok(Some(Block::Bad { count, error, payload }));
        }
        if let Err(e) = self.codec.decompress(&mut data) {
            data.truncate(MAX_LOST_PAYLOAD);
            return Ok(Some(Block::Bad { count, error: DecodeError::Container(e.to_string()), payload: data }));
        }
        // Every input record takes at least a byte (its tenant's length), and a block's bytes
        // are its records'.
        if usize::try_from(count).map_or(true, |c| c > data.len()) || (count == 0 && !data.is_empty()) {
            let error = DecodeError::Container(format!("a block of {} bytes claims {count} records", data.len()));
            data.truncate(MAX_LOST_PAYLOAD);
            return Ok(Some(Block::Bad { count, error, payload: data }));
        }
        self.block = data;
        self.pos = 0;
        self.left_in_block = count;
        Ok(Some(Block::Good))
    }
}

impl<R: Read> Iterator for ContainerReader<R> {
    type Item = ContainerItem;

    fn next(&mut self) -> Option<ContainerItem> {
        if let Some(index) = self.trailing.take() {
            let rest = &self.block[self.pos..];
            let error = DecodeError::Container(format!("{} bytes after the block's last record", rest.len()));
            let payload = rest[..rest.len().min(MAX_LOST_PAYLOAD)].to_vec();
            self.pos = self.block.len();
            // They take a record's place: the next block's first record comes after.
            self.index = self.index.saturating_add(1);
            return Some(Err(BadRecord { index, error, payload }));
        }
        while !self.done && self.left_in_block == 0 {
            match self.next_block() {
                Ok(Some(Block::Good)) => {}
                Ok(Some(Block::Bad { count, error, payload })) => {
                    // The block is one bad record; its records' positions are passed over.
                    let index = self.index;
                    self.index = self.index.saturating_add(count.unsigned_abs());
                    return Some(Err(BadRecord { index, error, payload }));
                }
                Ok(None) => self.done = true,
                Err(error) => {
                    // Framing is lost: nothing after this point can be trusted.
                    self.done = true;
                    return Some(Err(BadRecord { index: self.index, error, payload: Vec::new() }));
                }
            }
        }
        if self.done {
            return None;
        }
        let index = self.index;
        let mut rest = &self.block[self.pos..];
        let before = rest.len();
        match self.reader.read(&mut rest) {
            Ok(ev) => {
                self.pos += before - rest.len();
                self.left_in_block -= 1;
                self.index += 1;
                if self.left_in_block == 0 && self.pos < self.block.len() {
                    // Bytes after the block's last record: it held more records than its count
                    // says. They are reported (after this record) as one bad record.
                    self.trailing = Some(self.index);
                }
                Some(Ok((index, ev)))
            }
            Err(error) => {
                let payload = self.block[self.pos..].iter().take(MAX_LOST_PAYLOAD).copied().collect();
                self.index = self.index.saturating_add(self.left_in_block.unsigned_abs());
                self.left_in_block = 0;
                Some(Err(BadRecord { index, error, payload }))
            }
        }
    }
}

/// Writes input records of one channel to a container file.
pub struct ContainerWriter<W: Write> {
    writer: Writer<'static, W>,
    channel: Channel,
}

impl<W: Write> ContainerWriter<W> {
    /// A writer of `channel` records; `deflate` compresses blocks.
    pub fn new(channel: Channel, sink: W, deflate: bool) -> Result<Self, apache_avro::Error> {
        let codec = if deflate { Codec::Deflate(Default::default()) } else { Codec::Null };
        let writer = Writer::with_codec(Contract::get().input(channel), sink, codec)?;
        Ok(ContainerWriter { writer, channel })
    }

    /// [`ContainerWriter::new`] with the file's sync marker given (random otherwise): the same
    /// records and marker give the same file, byte for byte.
    pub fn with_marker(channel: Channel, sink: W, deflate: bool, marker: [u8; 16]) -> Result<Self, apache_avro::Error> {
        let codec = if deflate { Codec::Deflate(Default::default()) } else { Codec::Null };
        let writer = Writer::builder()
            .schema(Contract::get().input(channel))
            .writer(sink)
            .codec(codec)
            .marker(marker)
            .build()?;
        Ok(ContainerWriter { writer, channel })
    }

    /// Appends one record; it must be of this writer's channel.
    pub fn append(&mut self, event: &WireEvent) -> Result<(), apache_avro::Error> {
        assert_eq!(event.channel(), self.channel, "record of the wrong channel");
        match event {
            WireEvent::Email(e) => self.writer.append_ser(e)?,
            WireEvent::Chat(e) => self.writer.append_ser(e)?,
            WireEvent::Phone(e) => self.writer.append_ser(e)?,
            WireEvent::Social(e) => self.writer.append_ser(e)?,
        };
        Ok(())
    }

    /// Flushes the last block and returns the sink.
    pub fn finish(self) -> Result<W, apache_avro::Error> {
        self.writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks whose sizes all claim the rest of the file, each with a marker right after a
    /// few bytes: every resync would give the rest of the file back. The copies are bounded:
    /// past the budget the rest of the file is one bad record.
    #[test]
    fn resyncs_copy_a_bounded_number_of_bytes() {
        let marker = [7u8; 16];
        let mut file =
            ContainerWriter::with_marker(Channel::Chat, Vec::new(), false, marker).unwrap().finish().unwrap();
        let blocks = 500;
        let end = file.len() + 32 * blocks + 16;
        for _ in 0..blocks {
            file.push(2); // one record
                          // The size in a fixed five-byte varint: the rest of the file but its last 16 bytes.
            let size = (end - (file.len() + 5) - 16) as u64 * 2;
            for k in 0..5 {
                let byte = (size >> (7 * k)) as u8 & 0x7f;
                file.push(if k < 4 { byte | 0x80 } else { byte });
            }
            file.extend_from_slice(&[1; 10]);
            file.extend_from_slice(&marker);
        }
        file.extend_from_slice(&[9; 16]);
        assert_eq!(file.len(), end);
        let mut reader = ContainerReader::new(&file[..]).unwrap();
        reader.source.reread_budget = 1 << 20;
        let items: Vec<_> = reader.collect();
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert!(last.error.to_string().contains("re-read too much"), "{}", last.error);
        assert!(items.len() < blocks, "{} items", items.len());
        assert!(items.iter().all(|i| i.as_ref().is_err_and(|b| b.error.code() == "container_corrupt")));
    }
}
