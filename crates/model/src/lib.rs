//! The vocabulary of omnistitch: the first stage of the flow.
//!
//! Input events arrive as channel-specific wire records ([`wire`]), are validated into one
//! channel-independent [`Event`], flow through identity resolution and timelines, and leave as
//! the output records in [`output`]. Every other crate speaks in these types.

pub mod event;
pub mod identifier;
pub mod output;
pub mod profile;
pub mod short;
pub mod text;
pub mod wire;

/// Inline text for event fields: values up to 24 bytes (most ids and identifiers) allocate nothing.
pub use compact_str::CompactString;
pub use event::{Channel, Details, Direction, Event, EventKind, EventTime, Survey, Tenant, Tenants, ThreadRef};
pub use identifier::{Identifier, IdentifierKind, RawIdentifier};
pub use profile::ProfileId;
pub use short::ShortStr;
pub use wire::{ValidationError, WireEvent};
