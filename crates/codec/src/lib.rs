//! Bytes in, bytes out: the Avro contract (`schemas/`) and JSON Lines.
//!
//! Decoders turn input records into [`omnistitch_model::WireEvent`]s, never panicking on bad
//! bytes: every failure is a [`DecodeError`] with a stable code for the dead-letter output.
//! Encoders write the output records. The engine never sees bytes; the service and `replay` do.

mod bounded;
pub mod container;
pub mod contract;
pub mod datum;
pub mod encode;
pub mod error;
mod fast;
pub mod jsonl;

pub use container::{ContainerItem, ContainerReader, ContainerWriter};
pub use contract::Contract;
pub use datum::{InputDecoder, OutputEncoder, SchemaDecoder};
pub use encode::FastEncoder;
pub use error::DecodeError;
