//! Single Avro datums: the body of a Kafka record, or one record of a container block.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use omnistitch_model::wire::{ChatEvent, EmailEvent, PhoneEvent, SocialEvent};
use omnistitch_model::{Channel, WireEvent};
use serde::Serialize;

use crate::contract::{self, channel_of, Contract};
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
        let ours = Contract::get().input(channel);
        let bundled = schema.canonical_form() == ours.canonical_form();
        if bundled {
            return Ok(WireReader { channel, generic: reader_for(schema)?, bundled });
        }
        crate::bounded::check(schema)?;
        // Another version of the record: its datums are resolved to the bundled schema by
        // Avro's rules (fields by name, the writer's extra fields skipped, missing ones
        // defaulted, int to long, float to double, string and bytes, a value into a union).
        apache_avro::schema_compatibility::SchemaCompatibility::can_read(schema, ours).map_err(|e| {
            DecodeError::UnknownSchema(format!("the writer schema cannot be read as the {channel} input record: {e}"))
        })?;
        let generic = GenericDatumReader::builder(schema)
            .reader_schema(ours)
            .build()
            .map_err(|e| DecodeError::UnknownSchema(e.to_string()))?;
        Ok(WireReader { channel, generic, bundled })
    }

    /// Reads one record, advancing `bytes` past it.
    pub(crate) fn read(&self, bytes: &mut &[u8]) -> Result<WireEvent, DecodeError> {
        if self.bundled {
            crate::fast::read_bundled(self.channel, bytes)
        } else {
            read_resolved(&self.generic, self.channel, bytes)
        }
    }

    /// Reads one complete datum; trailing bytes are an error.
    pub(crate) fn read_all(&self, bytes: &[u8]) -> Result<WireEvent, DecodeError> {
        let mut rest = bytes;
        let ev = self.read(&mut rest)?;
        no_trailing_bytes(rest)?;
        Ok(ev)
    }
}

/// A datum is the whole record value: bytes left after it mean it was not written as that record.
fn no_trailing_bytes(rest: &[u8]) -> Result<(), DecodeError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Avro(format!("{} trailing bytes after the record", rest.len())))
    }
}

/// Input that notes whether a read found it used up: apache-avro reads a union's index or a
/// string cut off by the end of the input as a null, so a truncated datum would read as one
/// whose last fields are missing.
struct Exhaustible<'a, 'b> {
    bytes: &'a mut &'b [u8],
    exhausted: bool,
}

impl std::io::Read for Exhaustible<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.read(buf)?;
        self.exhausted |= n < buf.len();
        Ok(n)
    }
}

impl Exhaustible<'_, '_> {
    /// `read` over the input, refused if it ran out of bytes on the way.
    fn whole<T>(
        bytes: &mut &[u8],
        read: impl FnOnce(&mut Exhaustible<'_, '_>) -> Result<T, apache_avro::Error>,
    ) -> Result<T, DecodeError> {
        let mut input = Exhaustible { bytes, exhausted: false };
        let value = read(&mut input).map_err(|e| DecodeError::avro(&e))?;
        match input.exhausted {
            false => Ok(value),
            true => Err(DecodeError::Avro("truncated record: the input ends inside it".into())),
        }
    }
}

/// Reads one datum of `channel` written with `reader`'s schema, through apache-avro's serde.
pub(crate) fn read_generic(
    reader: &GenericDatumReader<'_>,
    channel: Channel,
    bytes: &mut &[u8],
) -> Result<WireEvent, DecodeError> {
    Exhaustible::whole(bytes, |input| {
        Ok(match channel {
            Channel::Email => WireEvent::Email(reader.read_deser::<EmailEvent>(input)?),
            Channel::Chat => WireEvent::Chat(reader.read_deser::<ChatEvent>(input)?),
            Channel::Phone => WireEvent::Phone(reader.read_deser::<PhoneEvent>(input)?),
            Channel::Social => WireEvent::Social(reader.read_deser::<SocialEvent>(input)?),
        })
    })
}

/// Reads one datum of `channel` written with `reader`'s writer schema and resolved to the
/// bundled one (its reader schema).
fn read_resolved(
    reader: &GenericDatumReader<'_>,
    channel: Channel,
    bytes: &mut &[u8],
) -> Result<WireEvent, DecodeError> {
    let err = |e: apache_avro::Error| DecodeError::avro(&e);
    let value = Exhaustible::whole(bytes, |input| reader.read_value(input))?;
    Ok(match channel {
        Channel::Email => WireEvent::Email(apache_avro::from_value(&value).map_err(err)?),
        Channel::Chat => WireEvent::Chat(apache_avro::from_value(&value).map_err(err)?),
        Channel::Phone => WireEvent::Phone(apache_avro::from_value(&value).map_err(err)?),
        Channel::Social => WireEvent::Social(apache_avro::from_value(&value).map_err(err)?),
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
        self.readers[channel as usize].read_all(bytes)
    }
}

/// Decodes input datums of one channel written with one writer schema: the bundled one (the
/// specialised decoder) or any compatible version, e.g. from a schema registry (apache-avro,
/// resolved by field name to the bundled record type).
pub struct SchemaDecoder {
    reader: WireReader,
}

impl std::fmt::Debug for SchemaDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaDecoder")
            .field("channel", &self.reader.channel)
            .field("bundled", &self.reader.bundled)
            .finish()
    }
}

impl SchemaDecoder {
    /// A decoder of `channel` records written with `writer` (see [`crate::contract::intern`]);
    /// fails if `writer` is not a version of the channel's input record.
    pub fn new(channel: Channel, writer: &'static Schema) -> Result<Self, DecodeError> {
        if channel_of(writer) != Some(channel) {
            let name = writer.name().map(|n| n.fullname(None)).unwrap_or_else(|| "(unnamed)".into());
            return Err(DecodeError::UnknownSchema(format!("{name} is not the {channel} input record")));
        }
        Ok(SchemaDecoder { reader: WireReader::new(channel, writer)? })
    }

    /// A decoder of `channel` records written with the bundled schema.
    pub fn bundled(channel: Channel) -> Self {
        SchemaDecoder::new(channel, Contract::get().input(channel)).expect("bundled schemas resolve")
    }

    /// Decodes one complete datum; trailing bytes are an error.
    pub fn decode(&self, bytes: &[u8]) -> Result<WireEvent, DecodeError> {
        self.reader.read_all(bytes)
    }

    /// Whether the writer schema is the bundled one (same parsing canonical form): its datums
    /// are bundled-schema datums byte for byte.
    pub fn is_bundled(&self) -> bool {
        self.reader.bundled
    }

    /// The channel whose records this decoder reads.
    pub fn channel(&self) -> Channel {
        self.reader.channel
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
    /// `Intervention` (the moments crate's record).
    Intervention,
}

impl OutputKind {
    /// Every output kind, in declaration order (`kind as usize` indexes this array).
    pub const ALL: [OutputKind; 5] = [
        OutputKind::TimelineEntry,
        OutputKind::Profile,
        OutputKind::ProfileMerge,
        OutputKind::DeadLetter,
        OutputKind::Intervention,
    ];

    /// The bundled schema source (`.avsc` text) of this kind, e.g. to register it.
    pub fn avsc(self) -> &'static str {
        match self {
            OutputKind::TimelineEntry => contract::TIMELINE_ENTRY_AVSC,
            OutputKind::Profile => contract::PROFILE_AVSC,
            OutputKind::ProfileMerge => contract::PROFILE_MERGE_AVSC,
            OutputKind::DeadLetter => contract::DEAD_LETTER_AVSC,
            OutputKind::Intervention => contract::INTERVENTION_AVSC,
        }
    }
}

/// Encodes output records as Avro datums.
pub struct OutputEncoder {
    writers: [GenericDatumWriter<'static>; 5],
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
        let w = |k: OutputKind| GenericDatumWriter::builder(c.output(k)).build().expect("bundled schemas resolve");
        OutputEncoder { writers: OutputKind::ALL.map(w) }
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
    no_trailing_bytes(rest)?;
    Ok(ev)
}

/// Encodes an input record with its bundled schema (producers, the simulator, tests).
pub fn encode_input(event: &WireEvent) -> Result<Vec<u8>, apache_avro::Error> {
    static WRITERS: std::sync::OnceLock<[GenericDatumWriter<'static>; 4]> = std::sync::OnceLock::new();
    let writers = WRITERS.get_or_init(|| {
        let c = Contract::get();
        Channel::ALL.map(|ch| GenericDatumWriter::builder(c.input(ch)).build().expect("bundled schemas resolve"))
    });
    let w = &writers[event.channel() as usize];
    match event {
        WireEvent::Email(e) => w.write_ser_to_vec(e),
        WireEvent::Chat(e) => w.write_ser_to_vec(e),
        WireEvent::Phone(e) => w.write_ser_to_vec(e),
        WireEvent::Social(e) => w.write_ser_to_vec(e),
    }
}
