//! The bundled schemas, parsed once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use apache_avro::Schema;
use omnistitch_model::Channel;

use crate::datum::OutputKind;

/// Source of `schemas/email_event.avsc`.
pub const EMAIL_EVENT_AVSC: &str = include_str!("../../../schemas/email_event.avsc");
/// Source of `schemas/chat_event.avsc`.
pub const CHAT_EVENT_AVSC: &str = include_str!("../../../schemas/chat_event.avsc");
/// Source of `schemas/phone_event.avsc`.
pub const PHONE_EVENT_AVSC: &str = include_str!("../../../schemas/phone_event.avsc");
/// Source of `schemas/social_event.avsc`.
pub const SOCIAL_EVENT_AVSC: &str = include_str!("../../../schemas/social_event.avsc");
/// Source of `schemas/timeline_entry.avsc`.
pub const TIMELINE_ENTRY_AVSC: &str = include_str!("../../../schemas/timeline_entry.avsc");
/// Source of `schemas/profile.avsc`.
pub const PROFILE_AVSC: &str = include_str!("../../../schemas/profile.avsc");
/// Source of `schemas/profile_merge.avsc`.
pub const PROFILE_MERGE_AVSC: &str = include_str!("../../../schemas/profile_merge.avsc");
/// Source of `schemas/dead_letter.avsc`.
pub const DEAD_LETTER_AVSC: &str = include_str!("../../../schemas/dead_letter.avsc");
/// Source of `schemas/intervention.avsc`.
pub const INTERVENTION_AVSC: &str = include_str!("../../../schemas/intervention.avsc");

/// Earlier published versions of the input schemas (`schemas/history/`), per channel in
/// [`Channel::ALL`] order: what earlier versions of the service wrote their changelog with.
/// Changing an input schema means adding its previous version here.
const EARLIER_INPUTS_AVSC: [&[&str]; 4] = [
    &[include_str!("../../../schemas/history/v1/email_event.avsc")],
    &[include_str!("../../../schemas/history/v1/chat_event.avsc")],
    &[include_str!("../../../schemas/history/v1/phone_event.avsc")],
    &[include_str!("../../../schemas/history/v1/social_event.avsc")],
];

/// Largest single allocation (string, bytes, array, decompressed block) a decoder may make.
pub const MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// Every bundled schema, parsed.
#[derive(Debug)]
pub struct Contract {
    /// Input schema per channel, in [`Channel::ALL`] order.
    pub inputs: [Schema; 4],
    /// `TimelineEntry`.
    pub timeline_entry: Schema,
    /// `Profile`.
    pub profile: Schema,
    /// `ProfileMerge`.
    pub profile_merge: Schema,
    /// `DeadLetter`.
    pub dead_letter: Schema,
    /// `Intervention`.
    pub intervention: Schema,
    /// Earlier versions of each input schema, newest first, other than the current one.
    earlier_inputs: [Vec<&'static Schema>; 4],
}

fn parse(src: &str) -> Schema {
    // The bundled schemas are tested to parse; failing here is a build defect, not bad input.
    Schema::parse_str(src).expect("bundled schema parses")
}

impl Contract {
    /// The bundled contract, parsed on first use.
    pub fn get() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| {
            // Bound what a length prefix in hostile bytes can make the decoder allocate.
            apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
            let inputs =
                [parse(EMAIL_EVENT_AVSC), parse(CHAT_EVENT_AVSC), parse(PHONE_EVENT_AVSC), parse(SOCIAL_EVENT_AVSC)];
            let earlier = |i: usize| -> Vec<&'static Schema> {
                let current = inputs[i].canonical_form();
                let mut versions: Vec<&'static Schema> = EARLIER_INPUTS_AVSC[i]
                    .iter()
                    .map(|src| intern(parse(src)))
                    .filter(|s| s.canonical_form() != current)
                    .collect();
                versions.reverse();
                versions
            };
            let earlier_inputs = [earlier(0), earlier(1), earlier(2), earlier(3)];
            Contract {
                inputs,
                earlier_inputs,
                timeline_entry: parse(TIMELINE_ENTRY_AVSC),
                profile: parse(PROFILE_AVSC),
                profile_merge: parse(PROFILE_MERGE_AVSC),
                dead_letter: parse(DEAD_LETTER_AVSC),
                intervention: parse(INTERVENTION_AVSC),
            }
        })
    }

    /// The input schema of `channel`.
    pub fn input(&self, channel: Channel) -> &Schema {
        &self.inputs[channel as usize]
    }

    /// Earlier published versions of `channel`'s input schema, newest first (not the current
    /// one): data an earlier version of the service wrote with them is read through them.
    pub fn earlier_inputs(&self, channel: Channel) -> &[&'static Schema] {
        &self.earlier_inputs[channel as usize]
    }

    /// The schema of the output record `kind`.
    pub fn output(&self, kind: OutputKind) -> &Schema {
        match kind {
            OutputKind::TimelineEntry => &self.timeline_entry,
            OutputKind::Profile => &self.profile,
            OutputKind::ProfileMerge => &self.profile_merge,
            OutputKind::DeadLetter => &self.dead_letter,
            OutputKind::Intervention => &self.intervention,
        }
    }
}

/// The channel whose input record `schema` describes, by record name (any compatible version).
pub fn channel_of(schema: &Schema) -> Option<Channel> {
    match schema.name()?.name() {
        "EmailEvent" => Some(Channel::Email),
        "ChatEvent" => Some(Channel::Chat),
        "PhoneEvent" => Some(Channel::Phone),
        "SocialEvent" => Some(Channel::Social),
        _ => None,
    }
}

/// A `'static` copy of `schema`, shared by every reader of the same canonical form.
///
/// Datum readers borrow their schema; writer schemas found in files or a registry are few and
/// long-lived, so they are kept for the life of the process instead of threading lifetimes.
pub fn intern(schema: Schema) -> &'static Schema {
    static INTERNED: OnceLock<Mutex<HashMap<String, &'static Schema>>> = OnceLock::new();
    let map = INTERNED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let key = schema.canonical_form();
    map.entry(key).or_insert_with(|| Box::leak(Box::new(schema)))
}
