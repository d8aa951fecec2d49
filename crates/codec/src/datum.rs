//! Single Avro datums: the body of a Kafka record, or one record of a container block.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use omnistitch_model::wire::{ChatEvent, EmailEvent, PhoneEvent, SocialEvent};
use omnistitch_model::{Channel, WireEvent};
use serde::Serialize;

use crate::contract::Contract;
use crate::error::DecodeError;

/// How to read datums of one writer schema.
pub(crate) struct WireReader {
    channel: Channel,
    generic: GenericDatumReader<'static>,
    /// The writer schema is the bundled one: the specialised decoder applies.
    bundled: bool,
}

impl WireReader {
    /// A reader of `channel` records written with `schema`.
    pub(crate) fn new(channel: Channel, schema: &'static Schema) -> Result<Self, DecodeError> {
        let bundled = schema.canonical_form() == Contract::get().input(channel).canonical_form();
        Ok(WireReader { channel, generic: reader_for(schema)?, bundled })
    }

    /// Reads one record, advancing `bytes` past it.
    pub(crate) fn read(&self, bytes: &mut &[u8]) -> Result<WireEvent, DecodeError> {
        if self.bundled {
            crate::fast::read_bundled(self.channel, bytes)
        } else {
            read_generic(&self.generic, self.channel, bytes)
        }
    }
}

/// Reads one datum of `channel` written with `reader`'s schema, through apache-avro's serde.
pub(crate) fn read_generic(
    reader: &GenericDatumReader<'_>,
    channel: Channel,
    bytes: &mut &[u8],
) -> Result<WireEvent, DecodeError> {
    let err = |e: apache_avro::Error| DecodeError::Avro(e.to_string());
    Ok(match channel {
        Channel::Email => WireEvent::Email(reader.read_deser::<EmailEvent>(bytes).map_err(err)?),
        Channel::Chat => WireEvent::Chat(reader.read_deser::<ChatEvent>(bytes).map_err(err)?),
        Channel::Phone => WireEvent::Phone(reader.read_deser::<PhoneEvent>(bytes).map_err(err)?),
        Channel::Social => WireEvent::Social(reader.read_deser::<SocialEvent>(bytes).map_err(err)?),
    })
}

/// Builds a datum reader for `schema`; only fails for schemas with unresolvable references.
pub(crate) fn reader_for(schema: &'static Schema) -> Result<GenericDatumReader<'static>, DecodeError> {
    GenericDatumReader::builder(schema).build().map_err(|e| DecodeError::UnknownSchema(e.to_string()))
}

/// Decodes input datums written with the bundled input schemas.
pub struct InputDecoder {
    readers: [WireReader; 4],
}

impl Default for InputDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl InputDecoder {
    /// A decoder for the bundled schemas.
    pub fn new() -> Self {
        let c = Contract::get();
        let r = |ch: Channel| WireReader::new(ch, c.input(ch)).expect("bundled schemas resolve");
        InputDecoder { readers: Channel::ALL.map(r) }
    }

    /// Decodes one complete datum of `channel`; trailing bytes are an error.
    pub fn decode(&self, channel: Channel, bytes: &[u8]) -> Result<WireEvent, DecodeError> {
        let mut rest = bytes;
        let ev = self.readers[channel as usize].read(&mut rest)?;
        if !rest.is_empty() {
            return Err(DecodeError::Avro(format!("{} trailing bytes after the record", rest.len())));
        }
        Ok(ev)
    }
}

/// The output record types, each with its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// `TimelineEntry`.
    TimelineEntry,
    /// `Profile`.
    Profile,
    /// `ProfileMerge`.
    ProfileMerge,
    /// `DeadLetter`.
    DeadLetter,
}

/// Encodes output records as Avro datums.
pub struct OutputEncoder {
    writers: [GenericDatumWriter<'static>; 4],
}

impl Default for OutputEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputEncoder {
    /// An encoder for the bundled output schemas.
    pub fn new() -> Self {
        let c = Contract::get();
        let w = |s: &'static Schema| GenericDatumWriter::builder(s).build().expect("bundled schemas resolve");
        OutputEncoder { writers: [w(&c.timeline_entry), w(&c.profile), w(&c.profile_merge), w(&c.dead_letter)] }
    }

    /// Encodes `record` with the schema of `kind`.
    pub fn encode<T: Serialize>(&self, kind: OutputKind, record: &T) -> Result<Vec<u8>, apache_avro::Error> {
        self.writers[kind as usize].write_ser_to_vec(record)
    }
}

/// Decodes one datum of `channel` through apache-avro's generic serde path, ignoring the
/// specialised decoder (for tests that hold the two to the same results).
#[doc(hidden)]
pub fn decode_generic(channel: Channel, bytes: &[u8]) -> Result<WireEvent, DecodeError> {
    let reader = reader_for(Contract::get().input(channel))?;
    let mut rest = bytes;
    let ev = read_generic(&reader, channel, &mut rest)?;
    if !rest.is_empty() {
        return Err(DecodeError::Avro(format!("{} trailing bytes after the record", rest.len())));
    }
    Ok(ev)
}

/// Encodes an input record with its bundled schema (producers, the simulator, tests).
pub fn encode_input(event: &WireEvent) -> Result<Vec<u8>, apache_avro::Error> {
    let c = Contract::get();
    let w = GenericDatumWriter::builder(c.input(event.channel())).build()?;
    match event {
        WireEvent::Email(e) => w.write_ser_to_vec(e),
        WireEvent::Chat(e) => w.write_ser_to_vec(e),
        WireEvent::Phone(e) => w.write_ser_to_vec(e),
        WireEvent::Social(e) => w.write_ser_to_vec(e),
    }
}
