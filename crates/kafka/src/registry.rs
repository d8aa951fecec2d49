//! Schema ids: which writer schema an input record names and how to decode it, and which id each
//! output record is framed with.
//!
//! Without a registry, ids are the fixed [`BundledIds`] of the bundled contract. With one, the
//! [`RegistryClient`] (Confluent Schema Registry REST API) fetches unknown input ids once and
//! registers the output schemas at start. [`InputSchemas`] turns a framed record value of a
//! channel's topic into a [`WireEvent`], [`OutputSchemas`] gives the id of each output kind.
//! A schema id never changes meaning, so everything fetched is cached for the life of the
//! process; a registry that cannot answer is reported as retriable, never as bad input.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use omnistitch_codec::contract::{channel_of, intern, Contract};
use omnistitch_codec::datum::OutputKind;
use omnistitch_codec::SchemaDecoder;
use omnistitch_model::{Channel, WireEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::Topics;
use crate::lookups::{Fetch, Lookups};
use crate::wire::{fingerprint, split_frame, Frame, WireError};

/// Schema ids of the bundled schemas, used when no registry is configured (`[schemas.bundled_ids]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundledIds {
    /// `EmailEvent`.
    pub email: u32,
    /// `ChatEvent`.
    pub chat: u32,
    /// `PhoneEvent`.
    pub phone: u32,
    /// `SocialEvent`.
    pub social: u32,
    /// `TimelineEntry`.
    pub timeline_entry: u32,
    /// `Profile`.
    pub profile: u32,
    /// `ProfileMerge`.
    pub profile_merge: u32,
    /// `DeadLetter`.
    pub dead_letter: u32,
    /// `Intervention`.
    pub intervention: u32,
}

impl Default for BundledIds {
    fn default() -> Self {
        BundledIds {
            email: 1,
            chat: 2,
            phone: 3,
            social: 4,
            timeline_entry: 5,
            profile: 6,
            profile_merge: 7,
            dead_letter: 8,
            intervention: 9,
        }
    }
}

/// What a bundled id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bundled {
    Input(Channel),
    Output(OutputKind),
}

/// Two bundled schemas configured with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bundled schema id {id} is given to both `{first}` and `{second}`")]
pub struct DuplicateSchemaId {
    /// The id.
    pub id: u32,
    /// The first field holding it.
    pub first: &'static str,
    /// The second field holding it.
    pub second: &'static str,
}

impl BundledIds {
    /// The id of `channel`'s input schema.
    pub fn input(&self, channel: Channel) -> u32 {
        match channel {
            Channel::Email => self.email,
            Channel::Chat => self.chat,
            Channel::Phone => self.phone,
            Channel::Social => self.social,
        }
    }

    /// The id of the output schema of `kind`.
    pub fn output(&self, kind: OutputKind) -> u32 {
        match kind {
            OutputKind::TimelineEntry => self.timeline_entry,
            OutputKind::Profile => self.profile,
            OutputKind::ProfileMerge => self.profile_merge,
            OutputKind::DeadLetter => self.dead_letter,
            OutputKind::Intervention => self.intervention,
        }
    }

    /// Every (field name, id, schema), inputs first.
    fn entries(&self) -> [(&'static str, u32, Bundled); 9] {
        [
            ("email", self.email, Bundled::Input(Channel::Email)),
            ("chat", self.chat, Bundled::Input(Channel::Chat)),
            ("phone", self.phone, Bundled::Input(Channel::Phone)),
            ("social", self.social, Bundled::Input(Channel::Social)),
            ("timeline_entry", self.timeline_entry, Bundled::Output(OutputKind::TimelineEntry)),
            ("profile", self.profile, Bundled::Output(OutputKind::Profile)),
            ("profile_merge", self.profile_merge, Bundled::Output(OutputKind::ProfileMerge)),
            ("dead_letter", self.dead_letter, Bundled::Output(OutputKind::DeadLetter)),
            ("intervention", self.intervention, Bundled::Output(OutputKind::Intervention)),
        ]
    }

    /// Rejects two schemas sharing an id (a record could not say which it was written with).
    pub fn validate(&self) -> Result<(), DuplicateSchemaId> {
        let entries = self.entries();
        for (i, &(first, id, _)) in entries.iter().enumerate() {
            if let Some(&(second, _, _)) = entries[i + 1..].iter().find(|e| e.1 == id) {
                return Err(DuplicateSchemaId { id, first, second });
            }
        }
        Ok(())
    }
}

/// The media type of Schema Registry requests.
const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// What registry replies are accepted as.
const REGISTRY_ACCEPT: &str =
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";
/// Largest registry reply read (schemas are a few kilobytes).
const MAX_REPLY_BYTES: u64 = 8 * 1024 * 1024;
/// The registry's error code for "schema not found" (with HTTP 404).
const SCHEMA_NOT_FOUND: i64 = 40403;

/// A Confluent Schema Registry client (`GET /schemas/ids/{id}`, `POST /subjects/{subject}/versions`)
/// caching every schema it has seen.
pub struct RegistryClient {
    base: String,
    agent: ureq::Agent,
    authorization: Option<String>,
    schemas: RwLock<HashMap<u32, Arc<str>>>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.base)
            .field("basic_auth", &self.authorization.is_some())
            .field("cached_schemas", &read(&self.schemas).len())
            .finish()
    }
}

/// `GET /schemas/ids/{id}` and `GET /subjects/{subject}/versions/{version}` reply.
#[derive(Deserialize)]
struct SchemaReply {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    /// Named types the schema takes from other subjects.
    #[serde(default)]
    references: Vec<ReferenceReply>,
}

/// One schema reference: the full name of the type, and where it is registered.
#[derive(Deserialize)]
struct ReferenceReply {
    name: String,
    subject: String,
    version: i64,
}

/// `POST /subjects/{subject}/versions` reply.
#[derive(Deserialize)]
struct IdReply {
    id: u32,
}

/// An error reply.
#[derive(Deserialize)]
struct ErrorReply {
    error_code: Option<i64>,
    message: Option<String>,
}

/// The certificates of a PEM file (other items, such as keys, skipped); at least one.
fn certificates(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, WireError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(WireError::RegistryConfig(format!("the registry CA file is not PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(WireError::RegistryConfig("the registry CA file holds no certificate".into()));
    }
    Ok(certs)
}

/// The message of an error reply, or the start of its body.
fn reply_message(body: &str) -> String {
    match serde_json::from_str::<ErrorReply>(body) {
        Ok(ErrorReply { message: Some(m), .. }) => m,
        _ => body.chars().take(200).collect(),
    }
}

impl RegistryClient {
    /// Timeout of one registry request (connect, send, reply), unless given.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A client of the registry at `url` (`http(s)://host[:port][/path]`) with optional basic auth
    /// `(user, password)` and [`RegistryClient::DEFAULT_TIMEOUT`].
    pub fn new(url: &str, auth: Option<(String, String)>) -> Result<Self, WireError> {
        Self::with_timeout(url, auth, Self::DEFAULT_TIMEOUT)
    }

    /// A client like [`RegistryClient::new`] whose requests give up after `timeout`.
    pub fn with_timeout(url: &str, auth: Option<(String, String)>, timeout: Duration) -> Result<Self, WireError> {
        Self::with_roots(url, auth, timeout, None)
    }

    /// A client like [`RegistryClient::with_timeout`] that trusts, for `https://`, the
    /// certificates of `roots` (PEM: a private certificate authority) instead of the public
    /// web's roots.
    pub fn with_roots(
        url: &str,
        auth: Option<(String, String)>,
        timeout: Duration,
        roots: Option<&[u8]>,
    ) -> Result<Self, WireError> {
        let base = Self::check_url(url)?;
        // With credentials, redirects are not followed: the client drops them on the way, so
        // the registry would answer a stranger (and a registration turns into a lookup). A 3xx
        // is reported with where it leads. An anonymous registry's are followed.
        let redirects = if auth.is_some() { 0 } else { 5 };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(redirects);
        if let Some(pem) = roots {
            let tls =
                ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::from(certificates(pem)?)).build();
            config = config.tls_config(tls);
        }
        let config = config.build();
        Ok(RegistryClient {
            base: base.to_string(),
            agent: ureq::Agent::new_with_config(config),
            authorization: auth
                .map(|(user, password)| format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))),
            schemas: RwLock::default(),
        })
    }

    /// Checks a registry URL (`http(s)://host[:port][/path]`, no credentials in it); returns
    /// it without surrounding blanks and trailing slashes.
    pub fn check_url(url: &str) -> Result<&str, WireError> {
        let base = url.trim().trim_end_matches('/');
        let host = base.strip_prefix("http://").or_else(|| base.strip_prefix("https://"));
        // Credentials in the URL would be in every error message and log line naming a request:
        // `user:password@` in the authority, or before an `@` further on when the password
        // holds a `/` (what follows its `:` is then no port).
        let userinfo = |h: &str| {
            let port = |rest: &str| {
                rest.split('/').next().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            };
            h.split('/').next().is_some_and(|authority| authority.contains('@'))
                || h.split_once('@')
                    .is_some_and(|(before, _)| before.split_once(':').is_some_and(|(_, rest)| !port(rest)))
        };
        if host.is_some_and(userinfo) {
            return Err(WireError::RegistryConfig(
                "the registry url carries credentials (user:password@host): set schemas.registry_username and \
                 schemas.registry_password instead"
                    .to_string(),
            ));
        }
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/') || h.contains(char::is_whitespace)) {
            // Not quoted: it may hold credentials (`user:password@host` without a scheme) or a
            // token.
            return Err(WireError::RegistryConfig("schemas.registry_url is not http(s)://host[:port][/path]".into()));
        }
        Ok(base)
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Adds the common headers.
    fn prepare<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let request = request.header("Accept", REGISTRY_ACCEPT);
        match &self.authorization {
            Some(auth) => request.header("Authorization", auth.as_str()),
            None => request,
        }
    }

    /// Status and body of a reply; failing to get one means the registry is unavailable,
    /// except a schema `id`'s successful reply too large to take: an answer about that id (it
    /// cannot be used), or its partition would wait on it for good.
    fn reply(
        what: &str,
        id: Option<u32>,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), WireError> {
        let unavailable = |e: ureq::Error| WireError::RegistryUnavailable(format!("{what}: {e}"));
        let mut response = sent.map_err(unavailable)?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let to = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("nowhere said");
            // Where it leads is kept out of the message when it may hold credentials.
            let to = if to.contains('@') { "a url with credentials" } else { to };
            return Err(WireError::RegistryUnavailable(format!(
                "{what}: redirected (HTTP {status}) to {to}: set schemas.registry_url to where it leads"
            )));
        }
        let body = response.body_mut().with_config().limit(MAX_REPLY_BYTES).read_to_string();
        match (body, id) {
            (Ok(body), _) => Ok((status, body)),
            (Err(ureq::Error::BodyExceedsLimit(_)), Some(id)) if status == 200 => Err(WireError::InvalidSchema {
                id,
                reason: format!("the registry's reply is over {} MiB", MAX_REPLY_BYTES >> 20),
            }),
            (Err(e), _) => Err(unavailable(e)),
        }
    }

    /// The schema (JSON text) with id `id`: [`WireError::UnknownSchemaId`] when the registry
    /// says it has none, [`WireError::InvalidSchema`] when it is not an Avro schema,
    /// [`WireError::RegistryUnavailable`] when it cannot say.
    pub fn schema(&self, id: u32) -> Result<Arc<str>, WireError> {
        if let Some(schema) = read(&self.schemas).get(&id) {
            return Ok(schema.clone());
        }
        // The protocol's ids are positive 32-bit signed integers: a larger one names no schema
        // (a registry would answer with a parse error, not about the id).
        if i32::try_from(id).is_err() {
            return Err(WireError::UnknownSchemaId(id));
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let what = format!("GET {url}");
        let (status, body) = Self::reply(&what, Some(id), self.prepare(self.agent.get(url)).call())?;
        match status {
            200 => {
                let reply: SchemaReply = serde_json::from_str(&body)
                    .map_err(|e| WireError::RegistryUnavailable(format!("{what}: unexpected reply: {e}")))?;
                if let Some(t) = reply.schema_type.as_deref().filter(|t| *t != "AVRO") {
                    return Err(WireError::InvalidSchema { id, reason: format!("a {t} schema, not Avro") });
                }
                let text = if reply.references.is_empty() {
                    reply.schema
                } else {
                    let mut found = HashMap::new();
                    self.referenced(id, &reply.references, &mut found)?;
                    crate::references::inline(&reply.schema, &found).map_err(|reason| WireError::InvalidSchema {
                        id,
                        reason: format!("its references: {reason}"),
                    })?
                };
                let schema: Arc<str> = text.into();
                write(&self.schemas).insert(id, schema.clone());
                Ok(schema)
            }
            // Only the registry's own "not found" is an answer about the id: any other 404 (a
            // wrong URL, a proxy) says nothing about the record, which must not be refused.
            404 if serde_json::from_str::<ErrorReply>(&body).is_ok_and(|r| r.error_code == Some(SCHEMA_NOT_FOUND)) => {
                Err(WireError::UnknownSchemaId(id))
            }
            // The registry's own refusal of the lookup (an error reply with its code, not a
            // proxy's page) is an answer about this id: retrying cannot change it, and a
            // record waiting on it would stop its partition for good.
            400 | 422 if serde_json::from_str::<ErrorReply>(&body).is_ok_and(|r| r.error_code.is_some()) => {
                Err(WireError::InvalidSchema {
                    id,
                    reason: format!("the registry refused to look it up: HTTP {status}: {}", reply_message(&body)),
                })
            }
            _ => Err(WireError::RegistryUnavailable(format!("{what}: HTTP {status}: {}", reply_message(&body)))),
        }
    }

    /// Fetches the schemas `references` (of schema `id`) name, and theirs in turn, into
    /// `found` (full name -> schema text). A registry that cannot answer now is a retriable
    /// error; its answer that a reference is not there, or too many references, make the
    /// schema unusable.
    fn referenced(
        &self,
        id: u32,
        references: &[ReferenceReply],
        found: &mut HashMap<String, String>,
    ) -> Result<(), WireError> {
        let invalid = |reason: String| WireError::InvalidSchema { id, reason };
        for r in references {
            if found.contains_key(&r.name) {
                continue;
            }
            if found.len() >= crate::references::MAX_REFERENCES {
                return Err(invalid(format!("more than {} referenced types", crate::references::MAX_REFERENCES)));
            }
            let url = format!("{}/subjects/{}/versions/{}", self.base, path_segment(&r.subject), r.version);
            let what = format!("GET {url}");
            let (status, body) = Self::reply(&what, Some(id), self.prepare(self.agent.get(url)).call())?;
            let registry_answer = serde_json::from_str::<ErrorReply>(&body).is_ok_and(|e| e.error_code.is_some());
            match status {
                200 => {}
                // Only the registry's answer that the reference is not there, or cannot be
                // looked up as named, is final: a refusal of the credentials (401, 403), a
                // timeout (408) or a rate limit (429) passes, and must not make the schema
                // unusable for the life of the process.
                400 | 404 | 422 if registry_answer => {
                    let message = reply_message(&body);
                    return Err(invalid(format!(
                        "reference {} ({} version {}): HTTP {status}: {message}",
                        r.name, r.subject, r.version
                    )));
                }
                _ => {
                    return Err(WireError::RegistryUnavailable(format!(
                        "{what}: HTTP {status}: {}",
                        reply_message(&body)
                    )))
                }
            }
            let reply: SchemaReply = serde_json::from_str(&body)
                .map_err(|e| WireError::RegistryUnavailable(format!("{what}: unexpected reply: {e}")))?;
            found.insert(r.name.clone(), reply.schema);
            self.referenced(id, &reply.references, found)?;
        }
        Ok(())
    }

    /// Registers `schema` (JSON text) under `subject` and returns its id (the existing id when
    /// the subject already has it).
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, WireError> {
        let url = format!("{}/subjects/{}/versions", self.base, path_segment(subject));
        let what = format!("POST {url}");
        let body = serde_json::json!({ "schema": schema }).to_string();
        let request = self.prepare(self.agent.post(url)).header("Content-Type", REGISTRY_CONTENT_TYPE);
        let (status, reply) = Self::reply(&what, None, request.send(body))?;
        match status {
            200..=299 => {
                let IdReply { id } = serde_json::from_str(&reply)
                    .map_err(|e| WireError::RegistryUnavailable(format!("{what}: unexpected reply: {e}")))?;
                write(&self.schemas).insert(id, schema.into());
                Ok(id)
            }
            408 | 429 | 500..=599 => {
                Err(WireError::RegistryUnavailable(format!("{what}: HTTP {status}: {}", reply_message(&reply))))
            }
            _ => Err(WireError::RegistryRejected { status, message: format!("{what}: {}", reply_message(&reply)) }),
        }
    }
}

/// Standard base64 with padding (basic auth).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `s` percent-encoded as one URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Reads a lock, whether or not a panicking holder poisoned it (the maps stay consistent).
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// Writes a lock, whether or not a panicking holder poisoned it.
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// An input record decoded, with whether its datum is a bundled-schema datum.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedInput {
    /// The record (boxed: it is large and moves through the event-time merge).
    pub event: Box<WireEvent>,
    /// The writer schema is the bundled one: the raw datum can be stored as is.
    pub bundled: bool,
}

/// What a schema id or fingerprint stands for.
#[derive(Debug, Clone)]
enum Resolved {
    /// An input record of the decoder's channel.
    Input(Arc<SchemaDecoder>),
    /// Another schema, by name.
    Other(Arc<str>),
    /// A registry schema that cannot be used.
    Invalid { id: u32, reason: Arc<str> },
}

/// Full name of a named schema, or its canonical form.
fn schema_name(schema: &Schema) -> String {
    match schema.name() {
        Some(n) => n.fullname(None),
        None => schema.canonical_form().chars().take(80).collect(),
    }
}

/// How input records name and are decoded with their writer schemas.
#[derive(Debug)]
pub struct InputSchemas {
    known: Arc<KnownSchemas>,
    lookups: Lookups,
}

/// The ids and fingerprints resolved so far, and the registry that resolves new ids.
#[derive(Debug)]
struct KnownSchemas {
    registry: Option<RegistryClient>,
    by_id: RwLock<HashMap<u32, Resolved>>,
    by_fingerprint: RwLock<HashMap<u64, Resolved>>,
}

impl InputSchemas {
    /// Ids resolved through `registry` when there is one (asked by the caller, which waits
    /// for the answer), else through `bundled`; fingerprints of the bundled schemas.
    pub fn new(registry: Option<RegistryClient>, bundled: BundledIds) -> Self {
        let known = Arc::new(KnownSchemas::new(registry, bundled));
        InputSchemas { lookups: Lookups::inline(known.fetcher()), known }
    }

    /// [`InputSchemas::new`], with the registry asked by a thread of its own: a record naming
    /// an id not seen before is told at once to wait (a retriable error) and decodes on a
    /// later try, so a slow or silent registry never holds the caller.
    pub fn in_background(registry: Option<RegistryClient>, bundled: BundledIds) -> std::io::Result<Self> {
        let known = Arc::new(KnownSchemas::new(registry, bundled));
        Ok(InputSchemas { lookups: Lookups::background(known.fetcher())?, known })
    }

    /// Lookups the registry could not answer so far.
    pub fn failed_lookups(&self) -> u64 {
        self.lookups.failed()
    }

    /// Decodes a framed record value read from `channel`'s topic.
    pub fn decode(&self, channel: Channel, value: &[u8]) -> Result<DecodedInput, WireError> {
        let (frame, datum) = split_frame(value)?;
        let resolved = match frame {
            Frame::Confluent { schema_id } => self.by_id(schema_id)?,
            Frame::SingleObject { fingerprint } => read(&self.known.by_fingerprint)
                .get(&fingerprint)
                .cloned()
                .ok_or(WireError::UnknownFingerprint(fingerprint))?,
        };
        let decoder = match resolved {
            Resolved::Input(d) if d.channel() == channel => d,
            Resolved::Input(d) => {
                let schema = schema_name(Contract::get().input(d.channel()));
                return Err(WireError::SchemaMismatch { channel, schema });
            }
            Resolved::Other(name) => return Err(WireError::SchemaMismatch { channel, schema: name.to_string() }),
            Resolved::Invalid { id, reason } => {
                return Err(WireError::InvalidSchema { id, reason: reason.to_string() })
            }
        };
        let event = decoder.decode(datum)?;
        Ok(DecodedInput { event: Box::new(event), bundled: decoder.is_bundled() })
    }

    /// What schema id `id` stands for, looking it up in the registry the first time.
    fn by_id(&self, id: u32) -> Result<Resolved, WireError> {
        if let Some(r) = self.known.cached(id) {
            return Ok(r);
        }
        if self.known.registry.is_none() {
            return Err(WireError::UnknownSchemaId(id));
        }
        self.lookups.lookup(id, || self.known.cached(id).is_some())?;
        self.known.cached(id).ok_or(WireError::UnknownSchemaId(id))
    }
}

impl KnownSchemas {
    fn new(registry: Option<RegistryClient>, bundled: BundledIds) -> Self {
        let c = Contract::get();
        let inputs = Channel::ALL.map(|ch| Resolved::Input(Arc::new(SchemaDecoder::bundled(ch))));
        let output = |kind: OutputKind| Resolved::Other(schema_name(c.output(kind)).into());
        let mut by_fingerprint = HashMap::new();
        for ch in Channel::ALL {
            by_fingerprint.insert(fingerprint(c.input(ch)), inputs[ch as usize].clone());
        }
        for kind in OutputKind::ALL {
            by_fingerprint.insert(fingerprint(c.output(kind)), output(kind));
        }
        let mut by_id = HashMap::new();
        if registry.is_none() {
            for (_, id, schema) in bundled.entries() {
                let resolved = match schema {
                    Bundled::Input(ch) => inputs[ch as usize].clone(),
                    Bundled::Output(kind) => output(kind),
                };
                by_id.entry(id).or_insert(resolved);
            }
        }
        KnownSchemas { registry, by_id: RwLock::new(by_id), by_fingerprint: RwLock::new(by_fingerprint) }
    }

    fn cached(&self, id: u32) -> Option<Resolved> {
        read(&self.by_id).get(&id).cloned()
    }

    /// [`KnownSchemas::fetch`] for the lookups to call.
    fn fetcher(self: &Arc<Self>) -> Fetch {
        let known = self.clone();
        Arc::new(move |id| known.fetch(id))
    }

    /// Asks the registry for `id` and caches what it stands for (a schema that cannot be used
    /// included). Unknown ids are not cached: the id may be registered later.
    fn fetch(&self, id: u32) -> Result<(), WireError> {
        let Some(registry) = &self.registry else { return Err(WireError::UnknownSchemaId(id)) };
        let resolved = match registry.schema(id) {
            Ok(text) => self.resolve(id, &text),
            Err(WireError::InvalidSchema { id, reason }) => Resolved::Invalid { id, reason: reason.into() },
            Err(e) => return Err(e),
        };
        write(&self.by_id).entry(id).or_insert(resolved);
        Ok(())
    }

    /// Parses a registry schema. Its fingerprint is not recorded: a registry is asked by id
    /// only, so whether a single-object record of it decoded would depend on what this
    /// instance happened to see before (another instance, or this one restarted, would
    /// dead-letter the same bytes). Single-object records decode with the bundled schemas.
    fn resolve(&self, id: u32, text: &str) -> Resolved {
        // A schema whose parsing panics (third-party code) is one that cannot be used, not a
        // registry that cannot answer: asked again, it would panic again, and hold its records
        // up for good instead of dead-lettering them.
        let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.parse(id, text)));
        resolved
            .unwrap_or_else(|_| Resolved::Invalid { id, reason: "reading it failed (a panic in the parser)".into() })
    }

    /// [`KnownSchemas::resolve`], panics let through.
    fn parse(&self, id: u32, text: &str) -> Resolved {
        let schema = match Schema::parse_str(text) {
            Ok(s) => s,
            Err(e) => return Resolved::Invalid { id, reason: format!("does not parse: {e}").into() },
        };
        match channel_of(&schema) {
            None => Resolved::Other(schema_name(&schema).into()),
            Some(ch) => match SchemaDecoder::new(ch, intern(schema)) {
                Ok(d) => Resolved::Input(Arc::new(d)),
                Err(e) => Resolved::Invalid { id, reason: e.to_string().into() },
            },
        }
    }
}

/// What a caller of [`OutputSchemas::register_within`] says after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Try again after a pause.
    TryAgain,
    /// Stop trying (the service is stopping): the last error is returned.
    GiveUp,
}

/// The outputs framed with a schema id: every kind but dead letters, which carry the input's
/// original bytes (`schemas/dead_letter.avsc` is the record `replay` writes).
pub const FRAMED_OUTPUTS: [OutputKind; 4] =
    [OutputKind::TimelineEntry, OutputKind::Profile, OutputKind::ProfileMerge, OutputKind::Intervention];

/// Output subjects by the topic name strategy: `<topic>-value`, in [`FRAMED_OUTPUTS`] order.
pub fn output_subjects(topics: &Topics) -> [(OutputKind, String); 4] {
    FRAMED_OUTPUTS.map(|kind| {
        let topic = match kind {
            OutputKind::TimelineEntry => &topics.timeline,
            OutputKind::Profile => &topics.profiles,
            OutputKind::ProfileMerge => &topics.merges,
            OutputKind::DeadLetter => &topics.deadletter,
            OutputKind::Intervention => &topics.interventions,
        };
        (kind, format!("{topic}-value"))
    })
}

/// The schema id each output record is framed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSchemas {
    ids: [u32; 5],
}

impl OutputSchemas {
    /// The bundled ids.
    pub fn bundled(ids: &BundledIds) -> Self {
        OutputSchemas { ids: OutputKind::ALL.map(|kind| ids.output(kind)) }
    }

    /// Registers the bundled output schemas under `subjects` (one per framed kind, e.g. from
    /// [`output_subjects`]) and keeps the ids the registry gives them (dead letters, the
    /// original bytes, are not framed: their id stays 0).
    pub fn register(client: &RegistryClient, subjects: &[(OutputKind, String)]) -> Result<Self, WireError> {
        let mut ids = [0; 5];
        for kind in FRAMED_OUTPUTS {
            let mut named = subjects.iter().filter(|(k, _)| *k == kind);
            let (Some((_, subject)), None) = (named.next(), named.next()) else {
                return Err(WireError::RegistryConfig(format!("need exactly one subject for {kind:?} outputs")));
            };
            ids[kind as usize] = client.register(subject, kind.avsc())?;
        }
        Ok(OutputSchemas { ids })
    }

    /// [`OutputSchemas::register`], retried while the registry is unavailable (not started
    /// yet, restarting, 5xx) for up to `within`, `waiting` told of each failure; a refusal or
    /// a settings error is returned at once.
    pub fn register_within(
        client: &RegistryClient,
        subjects: &[(OutputKind, String)],
        within: Duration,
        mut waiting: impl FnMut(&WireError) -> Waiting,
    ) -> Result<Self, WireError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            match Self::register(client, subjects) {
                Err(e) if e.is_retriable() && started.elapsed() + pause < within => {
                    if waiting(&e) == Waiting::GiveUp {
                        return Err(e);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                result => return result,
            }
        }
    }

    /// The id of `kind`'s schema.
    pub fn id(&self, kind: OutputKind) -> u32 {
        self.ids[kind as usize]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    use omnistitch_codec::contract::{
        CHAT_EVENT_AVSC, EMAIL_EVENT_AVSC, PHONE_EVENT_AVSC, PROFILE_AVSC, SOCIAL_EVENT_AVSC,
    };
    use omnistitch_codec::datum::encode_input;
    use omnistitch_model::wire::{ChatEvent, EmailEvent, PhoneEvent, SocialEvent, WireSurvey};
    use omnistitch_model::{Direction, EventKind};
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{write_confluent, write_single_object};

    /// A valid record of `channel`.
    pub(crate) fn sample(channel: Channel) -> WireEvent {
        let (tenant, event_id, event_time) = ("acme".to_string(), format!("{channel}-1"), 1_767_571_200_000);
        match channel {
            Channel::Email => WireEvent::Email(EmailEvent {
                tenant: tenant.into(),
                event_id: event_id.into(),
                event_time,
                direction: Direction::Inbound,
                kind: EventKind::Message,
                case_id: Some("C-1".into()),
                agent_id: None,
                account_id: Some("AC-9".into()),
                text: Some("Zoë's router is down".into()),
                sentiment: Some(-0.6),
                survey: None,
                from: "zoe@mailbox.net".into(),
                to: vec!["support@acme.example".into()],
                cc: vec![],
                subject: Some("Router".into()),
                message_id: Some("<m1@mailbox.net>".into()),
                in_reply_to: None,
            }),
            Channel::Chat => WireEvent::Chat(ChatEvent {
                tenant: tenant.into(),
                event_id: event_id.into(),
                event_time,
                direction: Direction::Inbound,
                kind: EventKind::SurveyResponse,
                case_id: None,
                agent_id: Some("agent-7".into()),
                account_id: None,
                text: None,
                sentiment: None,
                survey: Some(WireSurvey { csat: Some(2), nps: Some(6), ces: None }),
                session_id: "S-1".into(),
                visitor_id: Some("v-1".into()),
                customer_email: Some("zoe@mailbox.net".into()),
                customer_phone: None,
            }),
            Channel::Phone => WireEvent::Phone(PhoneEvent {
                tenant: tenant.into(),
                event_id: event_id.into(),
                event_time,
                direction: Direction::Outbound,
                kind: EventKind::CallStarted,
                case_id: Some("C-1".into()),
                agent_id: Some("agent-7".into()),
                account_id: None,
                text: None,
                sentiment: None,
                survey: None,
                call_id: "K-1".into(),
                caller: "+18005550100".into(),
                callee: "(415) 555-0134".into(),
                queue_wait_ms: Some(95_000),
                duration_ms: None,
                transfers: Some(2),
                customer_line_type: Some("mobile".into()),
            }),
            Channel::Social => WireEvent::Social(SocialEvent {
                tenant: tenant.into(),
                event_id: event_id.into(),
                event_time,
                direction: Direction::Inbound,
                kind: EventKind::SocialPost,
                case_id: None,
                agent_id: None,
                account_id: None,
                text: Some("worst service ever".into()),
                sentiment: None,
                survey: None,
                platform: "x".into(),
                handle: "@ZoeQ".into(),
                post_id: Some("P-1".into()),
                in_reply_to_post: None,
            }),
        }
    }

    fn confluent(id: u32, datum: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_confluent(id, datum, &mut out);
        out
    }

    fn single_object(schema: &Schema, datum: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_single_object(fingerprint(schema), datum, &mut out);
        out
    }

    fn code<T: fmt::Debug>(r: Result<T, WireError>) -> &'static str {
        r.unwrap_err().code()
    }

    /// The phone schema of an older producer: no optional fields.
    const OLD_PHONE_FIELDS: [&str; 8] =
        ["tenant", "event_id", "event_time", "direction", "kind", "call_id", "caller", "callee"];

    fn old_phone_schema() -> String {
        let mut schema: serde_json::Value = serde_json::from_str(PHONE_EVENT_AVSC).unwrap();
        schema["fields"].as_array_mut().unwrap().retain(|f| OLD_PHONE_FIELDS.contains(&f["name"].as_str().unwrap()));
        schema.to_string()
    }

    /// The chat schema of a newer producer: one more field and one more kind.
    fn new_chat_schema() -> String {
        let mut schema: serde_json::Value = serde_json::from_str(CHAT_EVENT_AVSC).unwrap();
        let fields = schema["fields"].as_array_mut().unwrap();
        fields.push(serde_json::json!({"name": "language", "type": ["null", "string"], "default": null}));
        let kind = fields.iter_mut().find(|f| f["name"] == "kind").unwrap();
        kind["type"]["symbols"].as_array_mut().unwrap().push("CO_BROWSE_STARTED".into());
        schema.to_string()
    }

    /// The chat record with a field of a recursive type (nothing of ours can be a version of it:
    /// a datum could nest as deep as it is long).
    fn nesting_chat_schema() -> String {
        let mut schema: serde_json::Value = serde_json::from_str(CHAT_EVENT_AVSC).unwrap();
        let nested = serde_json::json!({"name": "x", "default": null, "type": ["null",
            {"type": "record", "name": "N", "fields": [{"name": "n", "type": ["null", "N"]}]}]});
        schema["fields"].as_array_mut().unwrap().push(nested);
        schema.to_string()
    }

    /// `record` (JSON) as a datum of `schema` (JSON text).
    fn datum(schema: &str, record: serde_json::Value) -> Vec<u8> {
        let schema = Schema::parse_str(schema).unwrap();
        let value = Value::try_from(record).unwrap().resolve(&schema).unwrap();
        GenericDatumWriter::builder(&schema).build().unwrap().write_value_to_vec(value).unwrap()
    }

    fn old_phone_datum() -> Vec<u8> {
        datum(
            &old_phone_schema(),
            serde_json::json!({
                "tenant": "acme", "event_id": "o1", "event_time": 1_767_571_200_000i64, "direction": "INBOUND",
                "kind": "CALL_STARTED", "call_id": "K", "caller": "4155550134", "callee": "8005550100"
            }),
        )
    }

    fn new_chat_datum() -> Vec<u8> {
        datum(
            &new_chat_schema(),
            serde_json::json!({
                "tenant": "acme", "event_id": "n1", "event_time": 1_767_571_200_000i64, "direction": "INBOUND",
                "kind": "CO_BROWSE_STARTED", "case_id": null, "agent_id": null, "account_id": null, "text": null,
                "sentiment": null, "survey": null, "session_id": "S", "visitor_id": "v", "customer_email": null,
                "customer_phone": null, "language": "fr"
            }),
        )
    }

    // ------------------------------------------------------------------ bundled ids

    #[test]
    fn bundled_ids_default_deserialize_per_field_and_reject_duplicates() {
        let d = BundledIds::default();
        assert_eq!(Channel::ALL.map(|c| d.input(c)), [1, 2, 3, 4]);
        assert_eq!(OutputKind::ALL.map(|k| d.output(k)), [5, 6, 7, 8, 9]);
        assert_eq!(d.validate(), Ok(()));
        let partial: BundledIds = serde_json::from_str(r#"{"chat": 20, "intervention": 90}"#).unwrap();
        assert_eq!(partial, BundledIds { chat: 20, intervention: 90, ..d });
        assert!(serde_json::from_str::<BundledIds>(r#"{"chats": 20}"#).is_err(), "unknown fields are refused");
        let dup = BundledIds { intervention: 3, ..d };
        let e = dup.validate().unwrap_err();
        assert_eq!(e, DuplicateSchemaId { id: 3, first: "phone", second: "intervention" });
        assert_eq!(e.to_string(), "bundled schema id 3 is given to both `phone` and `intervention`");
        assert!(BundledIds { email: 2, ..d }.validate().is_err());
    }

    #[test]
    fn output_ids_come_from_the_bundled_ids() {
        let ids = BundledIds { profile: 60, ..BundledIds::default() };
        let out = OutputSchemas::bundled(&ids);
        assert_eq!(OutputKind::ALL.map(|k| out.id(k)), [5, 60, 7, 8, 9]);
    }

    // ------------------------------------------------------------------ input, no registry

    #[test]
    fn bundled_ids_decode_every_channel() {
        let schemas = InputSchemas::new(None, BundledIds::default());
        for channel in Channel::ALL {
            let ev = sample(channel);
            let value = confluent(BundledIds::default().input(channel), &encode_input(&ev).unwrap());
            let decoded = schemas.decode(channel, &value).unwrap();
            assert_eq!(decoded, DecodedInput { event: Box::new(ev), bundled: true }, "{channel}");
        }
        // Configured ids replace the defaults.
        let ids = BundledIds { email: 100, timeline_entry: 1, ..BundledIds::default() };
        let schemas = InputSchemas::new(None, ids);
        let datum = encode_input(&sample(Channel::Email)).unwrap();
        assert!(schemas.decode(Channel::Email, &confluent(100, &datum)).unwrap().bundled);
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(1, &datum))), "schema_mismatch");
    }

    #[test]
    fn ids_of_other_schemas_are_mismatches_and_unknown_ids_unknown() {
        let schemas = InputSchemas::new(None, BundledIds::default());
        let datum = encode_input(&sample(Channel::Email)).unwrap();
        let e = schemas.decode(Channel::Email, &confluent(2, &datum)).unwrap_err();
        assert_eq!(e.code(), "schema_mismatch");
        assert!(e.to_string().contains("ChatEvent"), "{e}");
        for output_id in 5..=9 {
            assert_eq!(code(schemas.decode(Channel::Email, &confluent(output_id, &datum))), "schema_mismatch");
        }
        for unknown in [0, 10, u32::MAX] {
            assert_eq!(code(schemas.decode(Channel::Email, &confluent(unknown, &datum))), "unknown_schema_id");
        }
    }

    #[test]
    fn bad_datums_and_frames_keep_their_codes() {
        let schemas = InputSchemas::new(None, BundledIds::default());
        let datum = encode_input(&sample(Channel::Social)).unwrap();
        let value = confluent(4, &datum);
        assert_eq!(code(schemas.decode(Channel::Social, &value[..value.len() - 1])), "avro_decode");
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(code(schemas.decode(Channel::Social, &longer)), "avro_decode", "trailing bytes");
        assert_eq!(code(schemas.decode(Channel::Social, &[])), "empty_record");
        assert_eq!(code(schemas.decode(Channel::Social, &value[..3])), "truncated_frame");
        assert_eq!(code(schemas.decode(Channel::Social, &datum)), "bad_magic", "a datum without framing");
    }

    #[test]
    fn single_object_records_decode_by_fingerprint() {
        let c = Contract::get();
        let schemas = InputSchemas::new(None, BundledIds::default());
        for channel in Channel::ALL {
            let ev = sample(channel);
            let value = single_object(c.input(channel), &encode_input(&ev).unwrap());
            assert_eq!(schemas.decode(channel, &value).unwrap(), DecodedInput { event: Box::new(ev), bundled: true });
            let other = Channel::ALL[(channel as usize + 1) % 4];
            assert_eq!(code(schemas.decode(other, &value)), "schema_mismatch");
        }
        let datum = encode_input(&sample(Channel::Phone)).unwrap();
        assert_eq!(code(schemas.decode(Channel::Phone, &single_object(&c.profile, &datum))), "schema_mismatch");
        let old = Schema::parse_str(&old_phone_schema()).unwrap();
        assert_eq!(code(schemas.decode(Channel::Phone, &single_object(&old, &datum))), "unknown_fingerprint");
    }

    // ------------------------------------------------------------------ a tiny registry

    #[derive(Debug, Clone)]
    struct Request {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    struct Server {
        url: String,
        requests: Arc<Mutex<Vec<Request>>>,
    }

    impl Server {
        fn count(&self, method: &str, path: &str) -> usize {
            self.requests.lock().unwrap().iter().filter(|r| r.method == method && r.path == path).count()
        }
    }

    fn read_request(stream: &TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let Some((k, v)) = line.trim_end().split_once(':') else { break };
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        Some(Request { method, path, headers, body: String::from_utf8(body).ok()? })
    }

    /// An HTTP server on 127.0.0.1 answering every request with `handler`'s status and JSON.
    fn serve(handler: impl Fn(&Request) -> (u16, String) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&stream) else { continue };
                let (status, body) = handler(&request);
                log.lock().unwrap().push(request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Canned\r\nContent-Type: {REGISTRY_CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { url, requests }
    }

    fn not_found() -> (u16, String) {
        (404, r#"{"error_code":40403,"message":"Schema not found"}"#.into())
    }

    fn schema_reply(schema: &str) -> (u16, String) {
        (200, serde_json::json!({ "schema": schema }).to_string())
    }

    /// The chat record with its `Direction` enum taken from another subject (a schema
    /// reference), and that enum's schema.
    fn referencing_chat_schema() -> (String, String) {
        let mut schema: serde_json::Value = serde_json::from_str(CHAT_EVENT_AVSC).unwrap();
        let field = schema["fields"].as_array_mut().unwrap().iter_mut().find(|f| f["name"] == "direction").unwrap();
        let direction = field["type"].take();
        field["type"] = "Direction".into();
        (schema.to_string(), direction.to_string())
    }

    /// A schema with a reference, as the registry answers it.
    fn referencing_reply(subject: &str) -> (u16, String) {
        let (schema, _) = referencing_chat_schema();
        let reference = serde_json::json!({"name": "io.omnistitch.cx.v1.Direction", "subject": subject, "version": 1});
        (200, serde_json::json!({ "schema": schema, "references": [reference] }).to_string())
    }

    /// A registry knowing a few schemas, failing once on id 50 and always on 51 to 53.
    fn registry() -> Server {
        let flaky = AtomicUsize::new(0);
        let limited = AtomicUsize::new(0);
        serve(move |r| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/schemas/ids/42") => schema_reply(&old_phone_schema()),
            ("GET", "/schemas/ids/43") => schema_reply(EMAIL_EVENT_AVSC),
            ("GET", "/schemas/ids/44") => schema_reply(PROFILE_AVSC),
            ("GET", "/schemas/ids/45") => schema_reply(r#"{"type": "record", "name": "#),
            ("GET", "/schemas/ids/46") => {
                (200, r#"{"schema": "syntax = \"proto3\"; message A {}", "schemaType": "PROTOBUF"}"#.into())
            }
            ("GET", "/schemas/ids/47") => schema_reply(&new_chat_schema()),
            ("GET", "/schemas/ids/48") => schema_reply(&nesting_chat_schema()),
            ("GET", "/schemas/ids/50") if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                (503, r#"{"error_code":50003,"message":"Error while forwarding the request"}"#.into())
            }
            ("GET", "/schemas/ids/50") => schema_reply(SOCIAL_EVENT_AVSC),
            ("GET", "/schemas/ids/51") => (404, "<html>no such page</html>".into()),
            ("GET", "/schemas/ids/52") => (401, r#"{"error_code":401,"message":"Unauthorized"}"#.into()),
            ("GET", "/schemas/ids/53") => (200, "<html>a proxy's login page</html>".into()),
            ("GET", "/schemas/ids/54") => (422, r#"{"error_code":42202,"message":"Invalid id"}"#.into()),
            ("GET", "/schemas/ids/55") => (400, "<html>The plain HTTP request was sent to HTTPS port</html>".into()),
            ("GET", "/schemas/ids/56") => referencing_reply("direction"),
            ("GET", "/schemas/ids/57") => referencing_reply("gone"),
            ("GET", "/schemas/ids/58") => referencing_reply("limited"),
            ("GET", "/schemas/ids/59") => schema_reply(&"x".repeat(9 << 20)),
            ("GET", "/subjects/limited/versions/1") if limited.fetch_add(1, Ordering::SeqCst) == 0 => {
                (429, r#"{"error_code":42901,"message":"Too many requests"}"#.into())
            }
            ("GET", "/subjects/limited/versions/1") => schema_reply(&referencing_chat_schema().1),
            ("GET", "/subjects/direction/versions/1") => schema_reply(&referencing_chat_schema().1),
            ("GET", "/subjects/gone/versions/1") => {
                (404, r#"{"error_code":40401,"message":"Subject 'gone' not found."}"#.into())
            }
            ("POST", p) if p.starts_with("/subjects/rejected") => {
                (409, r#"{"error_code":409,"message":"Schema being registered is incompatible"}"#.into())
            }
            ("POST", p) => {
                let subjects = output_subjects(&Topics::default()).map(|(_, s)| format!("/subjects/{s}/versions"));
                match subjects.iter().position(|s| s == p) {
                    Some(i) => (200, format!(r#"{{"id":{}}}"#, 101 + i)),
                    None => (404, r#"{"error_code":40401,"message":"Subject not found"}"#.into()),
                }
            }
            _ => not_found(),
        })
    }

    /// A private certificate authority's PEM file is trusted for `https://`; a file without a
    /// certificate, or not PEM, is refused at start.
    #[test]
    fn a_private_ca_file_is_read_or_refused() {
        let pem = include_bytes!("../tests/fixtures/registry-ca.pem");
        let timeout = Duration::from_secs(1);
        assert!(RegistryClient::with_roots("https://registry:8081", None, timeout, Some(pem)).is_ok());
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        for bad in [&b""[..], b"not pem at all", key_only] {
            assert_eq!(
                code(RegistryClient::with_roots("https://registry:8081", None, timeout, Some(bad))),
                "registry_config"
            );
        }
    }

    /// A schema taking a type from another subject is made whole (the type written out where
    /// it is used): it reads as the bundled chat record. A reference the registry says is not
    /// there makes the schema unusable.
    #[test]
    fn schemas_with_references_are_made_whole() {
        let server = registry();
        let client = client(&server);
        let text = client.schema(56).unwrap();
        let schema = Schema::parse_str(&text).unwrap();
        assert_eq!(schema.canonical_form(), Schema::parse_str(CHAT_EVENT_AVSC).unwrap().canonical_form());
        assert_eq!(server.count("GET", "/subjects/direction/versions/1"), 1);
        assert_eq!(code(client.schema(57)), "invalid_schema");
        // A reference the registry cannot give now (a rate limit) is no answer about it.
        let limited = client.schema(58).unwrap_err();
        assert!(limited.is_retriable(), "{limited}");
        assert_eq!(client.schema(58).unwrap().as_ref(), text.as_ref(), "not remembered as unusable");
    }

    /// With credentials, a redirect is not followed (the client would drop them, and turn a
    /// registration into a lookup): it is reported with where it leads, and tried again. An
    /// anonymous client follows it.
    #[test]
    fn a_redirect_is_reported_with_credentials_and_followed_without() {
        let target = registry();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let to = target.url.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&stream) else { continue };
                let _ = write!(
                    stream,
                    "HTTP/1.1 301 Moved\r\nLocation: {to}{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    request.path
                );
            }
        });
        let auth = Some(("user".to_string(), "pass".to_string()));
        let client = RegistryClient::with_timeout(&url, auth, Duration::from_secs(5)).unwrap();
        for e in [client.schema(43).unwrap_err(), client.register("cx.timeline.v1-value", "\"string\"").unwrap_err()] {
            assert!(e.is_retriable(), "{e}");
            assert!(e.to_string().contains(&format!("redirected (HTTP 301) to {}/", target.url)), "{e}");
        }
        let anonymous = RegistryClient::with_timeout(&url, None, Duration::from_secs(5)).unwrap();
        assert_eq!(&*anonymous.schema(43).unwrap(), EMAIL_EVENT_AVSC);
    }

    fn client(server: &Server) -> RegistryClient {
        RegistryClient::with_timeout(&format!("{}/", server.url), None, Duration::from_secs(5)).unwrap()
    }

    /// A URL nothing listens on.
    fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    #[test]
    fn the_client_fetches_and_caches_schemas() {
        let server = registry();
        let client = client(&server);
        assert_eq!(client.url(), server.url, "trailing slash dropped");
        assert_eq!(&*client.schema(43).unwrap(), EMAIL_EVENT_AVSC);
        assert_eq!(&*client.schema(43).unwrap(), EMAIL_EVENT_AVSC);
        assert_eq!(server.count("GET", "/schemas/ids/43"), 1, "an id is fetched once");
        let get = server.requests.lock().unwrap()[0].clone();
        assert!(get.header("accept").unwrap().contains(REGISTRY_CONTENT_TYPE));
        assert_eq!(get.header("authorization"), None);
        assert_eq!(code(client.schema(7)), "unknown_schema_id");
        assert_eq!(code(client.schema(46)), "invalid_schema");
        let refused = client.schema(54).unwrap_err();
        assert_eq!((refused.code(), refused.is_retriable()), ("invalid_schema", false), "{refused}");
        assert_eq!(code(client.schema(0x8000_0000)), "unknown_schema_id");
        assert_eq!(server.count("GET", "/schemas/ids/2147483648"), 0, "not asked");
        // A schema too large to take is an answer about its id, not an outage.
        let huge = client.schema(59).unwrap_err();
        assert_eq!((huge.code(), huge.is_retriable()), ("invalid_schema", false), "{huge}");
        for unavailable in [50, 51, 52, 53, 55] {
            let e = client.schema(unavailable).unwrap_err();
            assert!(e.is_retriable(), "{unavailable}: {e}");
        }
        assert_eq!(&*client.schema(50).unwrap(), SOCIAL_EVENT_AVSC, "an outage is not cached");
    }

    #[test]
    fn an_unreachable_or_silent_registry_is_unavailable() {
        let client = RegistryClient::with_timeout(&closed_port(), None, Duration::from_secs(5)).unwrap();
        let e = client.schema(1).unwrap_err();
        assert_eq!(e.code(), "registry_unavailable", "{e}");
        assert!(e.is_retriable());
        assert!(client.register("cx.timeline.v1-value", "\"string\"").unwrap_err().is_retriable());
        let schemas = InputSchemas::new(Some(client), BundledIds::default());
        let value = confluent(1, &encode_input(&sample(Channel::Email)).unwrap());
        assert!(schemas.decode(Channel::Email, &value).unwrap_err().is_retriable(), "never a dead letter");
        // A registry that accepts the connection and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(10));
            drop(held);
        });
        let client = RegistryClient::with_timeout(&url, None, Duration::from_millis(300)).unwrap();
        let started = std::time::Instant::now();
        assert!(client.schema(1).unwrap_err().is_retriable());
        assert!(started.elapsed() < Duration::from_secs(5), "the timeout applies");
    }

    #[test]
    fn registry_urls_are_checked() {
        for bad in ["", "localhost:8081", "ftp://registry", "http://", "http:///path", "http://a b"] {
            assert_eq!(code(RegistryClient::new(bad, None)), "registry_config", "{bad:?}");
        }
        for secret in [
            "http://svc:REGSECRET@registry:8081",
            "https://REGSECRET@registry/path@x",
            "http://svc:REGSECRET/x@registry",
        ] {
            let Err(err) = RegistryClient::new(secret, None) else { panic!("refused") };
            let err = err.to_string();
            assert!(err.contains("carries credentials") && !err.contains("REGSECRET"), "{err}");
        }
        // Without a scheme, or a misspelt one: refused without repeating the secret.
        for secret in ["svc:REGSECRET@registry:8081", "htps://svc:REGSECRET@registry", "HTTPS://svc:REGSECRET@r"] {
            let Err(err) = RegistryClient::new(secret, None) else { panic!("refused") };
            assert!(!err.to_string().contains("REGSECRET"), "{err}");
        }
        for good in [
            "http://registry:8081",
            " https://registry.example/api/ccompat/ ",
            "http://registry/a@b",
            "http://registry:8081/a@b",
        ] {
            assert!(RegistryClient::new(good, None).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn output_schemas_are_registered_under_their_subjects_with_basic_auth() {
        let server = registry();
        let auth = Some(("user".to_string(), "pass".to_string()));
        let client = RegistryClient::with_timeout(&server.url, auth, Duration::from_secs(5)).unwrap();
        let subjects = output_subjects(&Topics::default());
        assert_eq!(subjects[0], (OutputKind::TimelineEntry, "cx.timeline.v1-value".to_string()));
        assert_eq!(subjects[3], (OutputKind::Intervention, "cx.interventions.v1-value".to_string()));
        assert!(subjects.iter().all(|(_, s)| s != "cx.deadletter.v1-value"), "dead letters are the inputs' bytes");
        let out = OutputSchemas::register(&client, &subjects).unwrap();
        assert_eq!(OutputKind::ALL.map(|k| out.id(k)), [101, 102, 103, 0, 104]);
        let requests = server.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 4);
        for (r, (kind, subject)) in requests.iter().zip(&subjects) {
            assert_eq!((r.method.as_str(), r.path.clone()), ("POST", format!("/subjects/{subject}/versions")));
            assert_eq!(r.header("content-type"), Some(REGISTRY_CONTENT_TYPE));
            assert_eq!(r.header("authorization"), Some("Basic dXNlcjpwYXNz"));
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body, serde_json::json!({ "schema": kind.avsc() }));
        }
        // A registered id is known without asking again.
        assert_eq!(&*client.schema(104).unwrap(), OutputKind::Intervention.avsc());
        assert_eq!(server.count("GET", "/schemas/ids/104"), 0);
        // Refusals, and a missing or repeated subject.
        let e = client.register("rejected-value", PROFILE_AVSC).unwrap_err();
        assert_eq!((e.code(), e.is_retriable()), ("registry_rejected", false), "{e}");
        assert!(e.to_string().contains("incompatible"), "{e}");
        assert_eq!(code(OutputSchemas::register(&client, &subjects[..3])), "registry_config");
        let mut twice = subjects.to_vec();
        twice.push(subjects[0].clone());
        assert_eq!(code(OutputSchemas::register(&client, &twice)), "registry_config");
    }

    #[test]
    fn registration_waits_for_a_registry_that_is_starting_but_not_for_a_refusal() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let server = serve(move |r| match seen.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => (503, r#"{"error_code":50003,"message":"not ready"}"#.into()),
            _ if r.path.contains("rejected") => (409, r#"{"error_code":409,"message":"incompatible"}"#.into()),
            n => (200, format!(r#"{{"id":{n}}}"#)),
        });
        let starting = client(&server);
        let subjects = output_subjects(&Topics::default());
        let mut waits = 0;
        let out = OutputSchemas::register_within(&starting, &subjects, Duration::from_secs(30), |_| {
            waits += 1;
            Waiting::TryAgain
        })
        .unwrap();
        assert_eq!(waits, 2, "two answers of 503, then registered");
        assert_eq!(out.id(OutputKind::TimelineEntry), 2);
        let rejected = [(OutputKind::Profile, "rejected-value".to_string())];
        let mut subjects = subjects;
        subjects[1] = rejected[0].clone();
        let started = Instant::now();
        let e = OutputSchemas::register_within(&starting, &subjects, Duration::from_secs(30), |_| Waiting::TryAgain)
            .unwrap_err();
        assert_eq!(e.code(), "registry_rejected");
        assert!(started.elapsed() < Duration::from_secs(5), "a refusal is not waited on");
        // A registry that never comes: given up within the limit.
        let down = serve(|_| (503, "{}".into()));
        let started = Instant::now();
        let e =
            OutputSchemas::register_within(&client(&down), &subjects, Duration::from_secs(1), |_| Waiting::TryAgain)
                .unwrap_err();
        assert!(e.is_retriable(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // A stopping service gives up at once, with the registry's error.
        let (started, mut tries) = (Instant::now(), 0);
        let e = OutputSchemas::register_within(&client(&down), &subjects, Duration::from_secs(60), |_| {
            tries += 1;
            Waiting::GiveUp
        })
        .unwrap_err();
        assert!(e.is_retriable() && tries == 1 && started.elapsed() < Duration::from_secs(10), "{e}");
    }

    #[test]
    fn subjects_are_escaped_in_paths_and_credentials_encoded() {
        assert_eq!(path_segment("cx.timeline.v1-value"), "cx.timeline.v1-value");
        assert_eq!(path_segment("a/b c%"), "a%2Fb%20c%25");
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    // ------------------------------------------------------------------ input through a registry

    #[test]
    fn records_of_older_newer_and_bundled_writers_resolve_through_the_registry() {
        let server = registry();
        let schemas = InputSchemas::new(Some(client(&server)), BundledIds::default());
        // An older producer's phone schema: resolved to the bundled record, not storable as is.
        let value = confluent(42, &old_phone_datum());
        for _ in 0..3 {
            let d = schemas.decode(Channel::Phone, &value).unwrap();
            assert!(!d.bundled);
            let WireEvent::Phone(p) = *d.event else { panic!("phone") };
            assert_eq!((p.event_id.as_str(), p.call_id.as_str(), p.queue_wait_ms, p.case_id), ("o1", "K", None, None));
        }
        assert_eq!(server.count("GET", "/schemas/ids/42"), 1, "fetched once, then cached");
        // A newer producer's chat schema: new field ignored, new kind read as Unknown.
        let d = schemas.decode(Channel::Chat, &confluent(47, &new_chat_datum())).unwrap();
        let WireEvent::Chat(chat) = *d.event else { panic!("chat") };
        assert_eq!((chat.kind, chat.session_id.as_str(), d.bundled), (EventKind::Unknown, "S", false));
        // The bundled email schema under a registry id: storable as is.
        let ev = sample(Channel::Email);
        let d = schemas.decode(Channel::Email, &confluent(43, &encode_input(&ev).unwrap())).unwrap();
        assert_eq!(d, DecodedInput { event: Box::new(ev), bundled: true });
        // Without the registry, bundled ids are not consulted: the registry decides.
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(1, &[0]))), "unknown_schema_id");
        // A mangled datum of a good schema.
        assert_eq!(code(schemas.decode(Channel::Phone, &confluent(42, &[0x02, 0xff]))), "avro_decode");
    }

    #[test]
    fn registry_schemas_of_other_records_or_unusable_are_refused() {
        let server = registry();
        let schemas = InputSchemas::new(Some(client(&server)), BundledIds::default());
        let datum = encode_input(&sample(Channel::Email)).unwrap();
        let e = schemas.decode(Channel::Email, &confluent(44, &datum)).unwrap_err();
        assert_eq!(e.code(), "schema_mismatch");
        assert!(e.to_string().contains("Profile"), "{e}");
        assert_eq!(code(schemas.decode(Channel::Chat, &confluent(42, &old_phone_datum()))), "schema_mismatch");
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(45, &datum))), "invalid_schema");
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(46, &datum))), "invalid_schema");
        // A writer schema with a recursive type: refused before any of its datums is read (a
        // deep one would overflow the decoder's stack).
        let chat = encode_input(&sample(Channel::Chat)).unwrap();
        let e = schemas.decode(Channel::Chat, &confluent(48, &[&chat[..], &[0x02; 4096]].concat())).unwrap_err();
        assert_eq!(e.code(), "invalid_schema");
        assert!(e.to_string().contains("contains itself"), "{e}");
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(7, &datum))), "unknown_schema_id");
        for _ in 0..2 {
            assert_eq!(code(schemas.decode(Channel::Email, &confluent(44, &datum))), "schema_mismatch");
            assert_eq!(code(schemas.decode(Channel::Email, &confluent(45, &datum))), "invalid_schema");
        }
        for id in [44, 45, 46] {
            assert_eq!(server.count("GET", &format!("/schemas/ids/{id}")), 1, "id {id}: refusals are cached too");
        }
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(7, &datum))), "unknown_schema_id");
        assert_eq!(server.count("GET", "/schemas/ids/7"), 1, "told again without asking for a while");
        std::thread::sleep(crate::lookups::REGISTRY_RETRY);
        assert_eq!(code(schemas.decode(Channel::Email, &confluent(7, &datum))), "unknown_schema_id");
        assert_eq!(server.count("GET", "/schemas/ids/7"), 2, "unknown ids may be registered later");
    }

    #[test]
    fn a_registry_outage_is_retried_not_refused() {
        let server = registry();
        let schemas = InputSchemas::new(Some(client(&server)), BundledIds::default());
        let ev = sample(Channel::Social);
        let value = confluent(50, &encode_input(&ev).unwrap());
        let e = schemas.decode(Channel::Social, &value).unwrap_err();
        assert!(e.is_retriable(), "{e}");
        // Just unavailable: not asked again at once (each record would wait for a timeout).
        let e = schemas.decode(Channel::Social, &value).unwrap_err();
        assert!(e.is_retriable() && e.to_string().contains("not asked again yet"), "{e}");
        assert_eq!(server.count("GET", "/schemas/ids/50"), 1);
        std::thread::sleep(crate::lookups::REGISTRY_RETRY);
        assert_eq!(
            schemas.decode(Channel::Social, &value).unwrap(),
            DecodedInput { event: Box::new(ev), bundled: true }
        );
        for id in [51, 52, 53] {
            let e = schemas.decode(Channel::Social, &confluent(id, &[0])).unwrap_err();
            assert!(e.is_retriable(), "{id}: {e}");
        }
    }

    /// A single-object record of a registry schema is dead-lettered whether or not this
    /// instance saw the schema by id before: the outcome depends on the bytes alone, as it
    /// must for every instance and restart to agree.
    #[test]
    fn single_object_records_of_registry_schemas_stay_unknown_once_the_schema_is_seen() {
        let server = registry();
        let schemas = InputSchemas::new(Some(client(&server)), BundledIds::default());
        let old = Schema::parse_str(&old_phone_schema()).unwrap();
        let value = single_object(&old, &old_phone_datum());
        assert_eq!(code(schemas.decode(Channel::Phone, &value)), "unknown_fingerprint");
        schemas.decode(Channel::Phone, &confluent(42, &old_phone_datum())).unwrap();
        assert_eq!(code(schemas.decode(Channel::Phone, &value)), "unknown_fingerprint");
        // Bundled fingerprints work with a registry too, without asking it.
        let ev = sample(Channel::Chat);
        let value = single_object(Contract::get().input(Channel::Chat), &encode_input(&ev).unwrap());
        assert_eq!(schemas.decode(Channel::Chat, &value).unwrap(), DecodedInput { event: Box::new(ev), bundled: true });
        assert_eq!(server.requests.lock().unwrap().len(), 1);
    }

    #[test]
    fn schemas_are_shareable_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<InputSchemas>();
        shareable::<OutputSchemas>();
        shareable::<RegistryClient>();
        shareable::<WireError>();
    }

    proptest! {
        /// No value panics the decoder, and without a registry no refusal is retriable.
        #[test]
        fn arbitrary_values_never_panic(
            id in 0u32..12,
            single in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..96),
            raw in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            let schemas = InputSchemas::new(None, BundledIds::default());
            let c = Contract::get();
            let framed = if single {
                single_object(c.input(Channel::ALL[id as usize % 4]), &tail)
            } else {
                confluent(id, &tail)
            };
            for channel in Channel::ALL {
                for value in [&framed, &raw] {
                    if let Err(e) = schemas.decode(channel, value) {
                        prop_assert!(!e.is_retriable());
                    }
                }
            }
        }

        /// Damaged records of every channel are refused or decoded, never a panic.
        #[test]
        fn damaged_records_never_panic(
            ch in 0usize..4,
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let schemas = InputSchemas::new(None, BundledIds::default());
            let channel = Channel::ALL[ch];
            let mut value = confluent(BundledIds::default().input(channel), &encode_input(&sample(channel)).unwrap());
            for (at, b) in edits {
                let i = 5 + at.index(value.len() - 5);
                value[i] = b;
            }
            value.truncate(cut.index(value.len() + 1));
            let _ = schemas.decode(channel, &value);
        }
    }
}
