//! The service configuration file: TOML sections, environment overrides, validation.
//!
//! Every key is optional. Environment variables override the file: `OMNISTITCH_HTTP_PORT`, and
//! generally `OMNISTITCH__<SECTION>__<KEY>[__<KEY>...]` (e.g. `OMNISTITCH__KAFKA__MODE=at_least_once`,
//! `OMNISTITCH__KAFKA__PROPERTIES__SASL.PASSWORD=...`); values parse as TOML scalars, else strings
//! (a quoted TOML string, `"123"`, for a string that looks like a number or a boolean).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use omnistitch_cx::CxConfig;
use omnistitch_engine::EngineConfig;
use omnistitch_identity::IdentityConfig;
use omnistitch_kafka::registry::BundledIds;
use omnistitch_kafka::KafkaConfig;
use omnistitch_moments::MomentsConfig;
use omnistitch_timeline::RetentionConfig;
use serde::Deserialize;

/// `[schemas]`: where schema ids come from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemasSection {
    /// Schema registry URL; without it, ids map to the bundled schemas through `bundled_ids`.
    pub registry_url: Option<String>,
    /// Registry basic-auth user.
    pub registry_username: Option<String>,
    /// Registry basic-auth password.
    pub registry_password: Option<String>,
    /// A PEM file of the certificate authority the registry's `https://` certificate is
    /// signed by, trusted instead of the public web's roots (a private CA).
    pub registry_ca_file: Option<std::path::PathBuf>,
    /// Ids of the bundled schemas when no registry is configured.
    pub bundled_ids: BundledIds,
}

impl SchemasSection {
    /// The registry's CA file, read (an error names the file, never its contents).
    pub fn registry_ca(&self, file: &Path) -> anyhow::Result<Vec<u8>> {
        std::fs::read(file).with_context(|| format!("reading schemas.registry_ca_file {}", file.display()))
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Port of `/metrics`, `/healthz`, `/readyz`.
    pub port: u16,
    /// Address to bind.
    pub bind: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection { port: 9898, bind: "0.0.0.0".into() }
    }
}

impl HttpSection {
    /// The address to serve on: `bind` (IPv4 or IPv6, with or without brackets) and `port`.
    pub fn address(&self) -> anyhow::Result<std::net::SocketAddr> {
        let bind = self.bind.trim();
        let ip: std::net::IpAddr = bind
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .unwrap_or(bind)
            .parse()
            .with_context(|| format!("http.bind {:?} is not an IP address", self.bind))?;
        Ok(std::net::SocketAddr::new(ip, self.port))
    }

    /// Where a local probe reaches the server: the bound address, or the loopback address of
    /// its family when it binds every address.
    pub fn probe_address(&self) -> anyhow::Result<std::net::SocketAddr> {
        let mut addr = self.address()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Ok(addr)
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// `[embedded]`: the in-process cluster and simulated traffic of `run --embedded`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSection {
    /// Mock brokers.
    pub brokers: i32,
    /// Simulated input records per second (0: as fast as possible).
    pub rate: u64,
    /// Customers per simulated world (a new world follows when one is sent).
    pub customers: usize,
    /// Seed of the first world.
    pub seed: u64,
}

impl Default for EmbeddedSection {
    fn default() -> Self {
        EmbeddedSection { brokers: 3, rate: 2_000, customers: 2_000, seed: 7 }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[schemas]`.
    pub schemas: SchemasSection,
    /// `[http]`.
    pub http: HttpSection,
    /// `[log]`.
    pub log: LogSection,
    /// `[embedded]`.
    pub embedded: EmbeddedSection,
    /// `[identity]`.
    pub identity: IdentityConfig,
    /// `[timeline]`.
    pub timeline: RetentionConfig,
    /// `[moments]`.
    pub moments: MomentsConfig,
    /// `[cx]`.
    pub cx: CxConfig,
}

impl Settings {
    /// The engine sections.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            identity: self.identity.clone(),
            timeline: self.timeline.clone(),
            moments: self.moments.clone(),
            cx: self.cx.clone(),
        }
    }

    /// Reads `path` (defaults when `None`), applies `env` overrides and validates everything.
    pub fn load(path: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<Settings> {
        let mut table: toml::Table = match path {
            None => toml::Table::new(),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
                text.parse().map_err(|e| anyhow!("invalid TOML in {}: {}", p.display(), syntax_error(&text, &e)))?
            }
        };
        let mut typed = apply_env(&mut table, env)?;
        let where_ = path.map_or("(defaults)".to_string(), |p| p.display().to_string());
        let settings: Settings = loop {
            match table.clone().try_into::<Settings>() {
                Ok(settings) => break settings,
                Err(e) => {
                    // An override read as a number or boolean where the setting is text (a
                    // numeric password, a group id): it is the text as written.
                    let message = e.to_string();
                    let Some(at) =
                        typed.iter().position(|(path, _)| message.contains(&format!("`{}`", path.join("."))))
                    else {
                        bail!("invalid config {where_} (with environment overrides): {}", without_values(&message));
                    };
                    let (path, raw) = typed.swap_remove(at);
                    set(&mut table, &path, toml::Value::String(raw))?;
                }
            }
        };
        settings.kafka.validate().with_context(|| format!("invalid config {where_}"))?;
        settings.engine().validate().with_context(|| format!("invalid config {where_}"))?;
        settings.schemas.bundled_ids.validate().with_context(|| format!("invalid config {where_}"))?;
        settings.http.address().with_context(|| format!("invalid config {where_}"))?;
        let s = &settings.schemas;
        if let Some(url) = &s.registry_url {
            omnistitch_kafka::registry::RegistryClient::check_url(url)
                .with_context(|| format!("invalid config {where_}: schemas.registry_url"))?;
        }
        if let Some(file) = &s.registry_ca_file {
            let pem = s.registry_ca(file)?;
            let url = s.registry_url.as_deref().unwrap_or("https://registry");
            omnistitch_kafka::registry::RegistryClient::with_roots(url, None, Duration::from_secs(1), Some(&pem))
                .with_context(|| format!("invalid config {where_}: schemas.registry_ca_file {}", file.display()))?;
        }
        if s.registry_username.is_some() != s.registry_password.is_some() {
            bail!(
                "invalid config {where_}: schemas.registry_username and schemas.registry_password go together \
                 (one without the other would be no authentication)"
            );
        }
        if settings.embedded.brokers < 1 {
            bail!("invalid config {where_}: embedded.brokers must be >= 1");
        }
        Ok(settings)
    }
}

/// Whether logs are to be JSON lines (`[log] json`, from the file and the environment), read
/// ahead of [`Settings::load`] so that its errors are logged as asked; `false` when the file
/// cannot be read or parsed (`load` then says why).
pub fn json_logs(path: Option<&Path>, env: &[(String, String)]) -> bool {
    let mut table: toml::Table =
        path.and_then(|p| std::fs::read_to_string(p).ok()).and_then(|text| text.parse().ok()).unwrap_or_default();
    // The log override alone: `load` applies (and checks) the others.
    let log =
        env.iter().filter(|(n, _)| n.strip_prefix("OMNISTITCH__").is_some_and(|r| r.eq_ignore_ascii_case("LOG__JSON")));
    if apply_env(&mut table, log.cloned()).is_err() {
        return false;
    }
    table.get("log").and_then(|l| l.get("json")).and_then(toml::Value::as_bool).unwrap_or(false)
}

/// A TOML syntax error of `text`: where and what, without the source line (it may hold a
/// secret, say a password missing its closing quote).
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else { return e.message().to_string() };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    format!("line {line}, column {column}: {}", e.message())
}

/// A deserialization error's message without the values it quotes ("invalid type: integer
/// `123`" becomes "invalid type: integer (value hidden)"): a value out of place may be a secret.
/// Setting names and the expected types stay.
fn without_values(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) =
        ["invalid type: ", "invalid value: "].iter().filter_map(|m| rest.find(m).map(|i| i + m.len())).min()
    {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(", expected").unwrap_or(rest.len());
        let kind = rest[..end].split(['`', '"']).next().unwrap_or("").trim_end();
        out.push_str(kind);
        out.push_str(" (value hidden)");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Sets `value` at `path` in `table`, making the tables on the way.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().context("an empty setting path")?;
    let mut t = table;
    for key in parents {
        let entry = t.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().with_context(|| format!("{key} is not a table"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// An override's value: a TOML number, boolean or array as such, a plain double-quoted string (no
/// escapes, nothing after it) as what is between the quotes, anything else as the text itself
/// (a secret is never unescaped or cut at a `#`).
fn scalar(raw: &str) -> toml::Value {
    let quoted = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'));
    if let Some(inner) = quoted.filter(|i| !i.contains(['"', '\\'])) {
        return toml::Value::String(inner.to_string());
    }
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// The variables of `vars` (the process environment: `std::env::vars_os()`) that configure
/// the service, those whose name starts with `OMNISTITCH`; one of them that is not UTF-8 is an
/// error naming it, any other variable is not looked at (whatever its encoding).
pub fn service_env(vars: impl Iterator<Item = (OsString, OsString)>) -> anyhow::Result<Vec<(String, String)>> {
    vars.filter(|(name, _)| name.as_encoded_bytes().starts_with(b"OMNISTITCH"))
        .map(|(name, value)| {
            let name = name.into_string().map_err(|n| anyhow!("environment variable {n:?}: the name is not UTF-8"))?;
            let value =
                value.into_string().map_err(|_| anyhow!("environment variable {name}: the value is not UTF-8"))?;
            Ok((name, value))
        })
        .collect()
}

/// Tables whose keys are names of the user's, not settings: a key under one keeps its case
/// (tenant names are matched exactly; client property names are lower case anyway).
const NAMED_TABLES: [&str; 1] = ["tenants"];

/// The settings path of an `OMNISTITCH__A__B` variable's `A__B`: setting names lower case
/// (environment variables are written in capitals), names of the user's as written.
fn env_path(rest: &str) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    for segment in rest.split("__") {
        let named = path.last().is_some_and(|p| NAMED_TABLES.contains(&p.as_str()));
        path.push(if named { segment.to_string() } else { segment.to_ascii_lowercase() });
    }
    path
}

/// Applies `OMNISTITCH_HTTP_PORT` and `OMNISTITCH__A__B=v` overrides; returns those read as
/// something other than text (a number, a boolean, an array), with the text as written.
fn apply_env(
    table: &mut toml::Table,
    env: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<(Vec<String>, String)>> {
    let mut typed = Vec::new();
    let mut vars: Vec<(String, String)> = env.collect();
    vars.sort();
    for (name, value) in vars {
        let path: Vec<String> = if name == "OMNISTITCH_HTTP_PORT" {
            vec!["http".into(), "port".into()]
        } else if let Some(rest) = name.strip_prefix("OMNISTITCH__") {
            env_path(rest)
        } else {
            // Not a setting (a misspelt one, say `OMNISTITCH_KAFKA__MODE`): said, not silently
            // passed over. The name only: values may be secrets.
            tracing::warn!(
                "environment variable {name} is not a setting (settings are OMNISTITCH__SECTION__KEY, and OMNISTITCH_HTTP_PORT): ignored"
            );
            continue;
        };
        if path.iter().any(String::is_empty) {
            bail!("environment variable {name}: empty key segment");
        }
        // Pass-through client properties are strings whatever they look like.
        let properties = path.len() >= 2 && path[path.len() - 2] == "properties";
        let v = if properties { toml::Value::String(value.clone()) } else { scalar(&value) };
        if !v.is_str() {
            typed.push((path.clone(), value));
        }
        set(table, &path, v).with_context(|| format!("environment variable {name}"))?;
    }
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_kafka::Mode;

    /// The TOML blocks of README.md, in order.
    fn readme_toml() -> Vec<String> {
        let readme = include_str!("../../README.md");
        readme.split("```toml\n").skip(1).map(|b| b.split("```").next().unwrap().to_string()).collect()
    }

    /// README's configuration blocks are what the code reads: the engine block, said to be the
    /// defaults, is them; the service block is a valid configuration.
    #[test]
    fn json_logs_are_known_before_the_configuration_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        // A file with an error elsewhere still says how to log that error.
        std::fs::write(&file, "[log]\njson = true\n[kafka]\nmode = \"sometimes\"\n").unwrap();
        assert!(json_logs(Some(&file), &[]));
        assert!(Settings::load(Some(&file), std::iter::empty()).is_err());
        let off = [("OMNISTITCH__LOG__JSON".to_string(), "false".to_string())];
        assert!(!json_logs(Some(&file), &off), "the environment overrides the file");
        let on = [("OMNISTITCH__LOG__JSON".to_string(), "true".to_string())];
        assert!(json_logs(None, &on));
        assert!(!json_logs(None, &[]));
        assert!(!json_logs(Some(&dir.path().join("missing.toml")), &on[..0]));
        std::fs::write(&file, "[log\n").unwrap();
        assert!(json_logs(Some(&file), &on), "an unparsable file: the environment still counts");
    }

    #[test]
    fn readme_configuration_is_true() {
        let blocks = readme_toml();
        assert_eq!(blocks.len(), 2, "README's TOML blocks");
        let engine: EngineConfig = toml::from_str(&blocks[0]).expect("README's engine block");
        assert_eq!(engine, EngineConfig::default(), "README's engine block lists the defaults");
        let table: toml::Table = blocks[1].parse().expect("README's service block");
        let settings: Settings = table.try_into().expect("README's service block");
        settings.kafka.validate().expect("README's service block is valid");
        // Where it says "the defaults", they are.
        assert_eq!(settings.kafka.topics, omnistitch_kafka::Topics::default(), "README's [kafka.topics]");
        let d = omnistitch_kafka::KafkaConfig::default();
        assert_eq!(
            (settings.kafka.request_timeout_ms, settings.kafka.mirror_offsets, settings.kafka.commit_interval_ms),
            (d.request_timeout_ms, d.mirror_offsets, d.commit_interval_ms)
        );
    }

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn defaults_load_and_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[kafka]\nmode = \"exactly_once\"\ngroup_id = \"g\"\n[http]\nport = 1\n").unwrap();
        let s = Settings::load(
            Some(&path),
            env(&[
                ("OMNISTITCH_HTTP_PORT", "9999"),
                ("OMNISTITCH__KAFKA__MODE", "at_least_once"),
                ("OMNISTITCH__KAFKA__COMMIT_INTERVAL_MS", "250"),
                ("OMNISTITCH__KAFKA__PROPERTIES__SASL.PASSWORD", "123"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http.port, 9999);
        assert_eq!(s.kafka.mode, Mode::AtLeastOnce);
        assert_eq!(s.kafka.group_id, "g");
        assert_eq!(s.kafka.commit_interval_ms, 250);
        assert_eq!(s.kafka.properties.get("sasl.password").map(String::as_str), Some("123"));
        assert_eq!(Settings::load(None, env(&[])).unwrap(), Settings::default());
    }

    #[test]
    fn a_tenant_name_in_an_override_keeps_its_case() {
        let s = Settings::load(
            None,
            env(&[("OMNISTITCH__MOMENTS__TENANTS__Globex-EU__FIRST_RESPONSE_SLA__CHAT_SECONDS", "30")]),
        )
        .unwrap();
        let tenant = s.moments.tenants.get("Globex-EU").expect("the tenant as written");
        assert_eq!(tenant["first_response_sla"]["chat_seconds"], 30);
        assert_eq!(
            env_path("MOMENTS__TENANTS__Acme__SENTIMENT__WINDOW_HOURS"),
            ["moments", "tenants", "Acme", "sentiment", "window_hours"]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |vars: &[(&str, &str)]| format!("{:#}", Settings::load(None, env(vars)).unwrap_err());
        assert!(err(&[("OMNISTITCH__KAFKA__MODE", "sometimes")]).contains("mode"));
        assert!(err(&[("OMNISTITCH__KAFKA__BOOTSTRAP_SERVRES", "x")]).contains("bootstrap_servres"));
        assert!(err(&[("OMNISTITCH__KAFKA__MAX_BATCH", "0")]).contains("max_batch"));
        assert!(err(&[("OMNISTITCH__KAFKA__PROPERTIES__ENABLE.AUTO.COMMIT", "true")]).contains("enable.auto.commit"));
        assert!(err(&[("OMNISTITCH_HTTP_PORT", "http")]).contains("port"));
    }

    #[test]
    fn a_quoted_value_is_a_string_even_when_it_looks_like_a_number() {
        let s = Settings::load(None, env(&[("OMNISTITCH__KAFKA__GROUP_ID", "\"123\"")])).unwrap();
        assert_eq!(s.kafka.group_id, "123");
        let s = Settings::load(None, env(&[("OMNISTITCH__KAFKA__GROUP_ID", "team-a")])).unwrap();
        assert_eq!(s.kafka.group_id, "team-a");
        // Anything else is kept as written: quotes, escapes, what looks like a comment.
        for kept in ["'p4ss'", "\"a\\tb\"", "\"x\" # note", "\"\"\""] {
            let s = Settings::load(None, env(&[("OMNISTITCH__KAFKA__GROUP_ID", kept)])).unwrap();
            assert_eq!(s.kafka.group_id, kept);
        }
    }

    /// What looks like a number or a list in an override is one where the setting is, and
    /// text where the setting is text (a numeric password, a numeric group id).
    #[test]
    fn overrides_take_the_type_of_their_setting() {
        let s = Settings::load(
            None,
            env(&[
                ("OMNISTITCH__SCHEMAS__REGISTRY_URL", "http://registry:8081"),
                ("OMNISTITCH__SCHEMAS__REGISTRY_USERNAME", "1001"),
                ("OMNISTITCH__SCHEMAS__REGISTRY_PASSWORD", "84736251"),
                ("OMNISTITCH__KAFKA__GROUP_ID", "4242"),
                ("OMNISTITCH__KAFKA__MAX_BATCH", "500"),
                ("OMNISTITCH__IDENTITY__WEAK_KINDS", r#"["phone"]"#),
            ]),
        )
        .unwrap();
        assert_eq!(s.schemas.registry_password.as_deref(), Some("84736251"));
        assert_eq!(s.schemas.registry_username.as_deref(), Some("1001"));
        assert_eq!((s.kafka.group_id.as_str(), s.kafka.max_batch), ("4242", 500));
        assert_eq!(s.identity.weak_kinds.len(), 1);
    }

    /// Errors name where and what, never the value: a misplaced or malformed value may be a
    /// secret.
    #[test]
    fn configuration_errors_do_not_repeat_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            format!("{:#}", Settings::load(Some(&file), std::iter::empty()).unwrap_err())
        };
        let err = load("[kafka.properties]\n\"sasl.password\" = \"SECRET-unclosed\n");
        assert!(err.contains("line 2") && !err.contains("SECRET"), "{err}");
        let err = load("[kafka]\ncommit_interval_ms = \"SECRET-misplaced\"\n");
        assert!(err.contains("commit_interval_ms") && err.contains("value hidden") && !err.contains("SECRET"), "{err}");
        let err = load("[schemas]\nregistry_url = \"http://u:SECRET@registry:8081\"\n");
        assert!(err.contains("registry_username") && !err.contains("SECRET"), "{err}");
        let err = load("[schemas]\nregistry_url = \"http://registry:8081\"\nregistry_username = \"svc\"\n");
        assert!(err.contains("go together"), "{err}");
        // A number in the pass-through properties is its text.
        std::fs::write(&file, "[kafka.properties]\n\"socket.timeout.ms\" = 60000\n").unwrap();
        let s = Settings::load(Some(&file), std::iter::empty()).unwrap();
        assert_eq!(s.kafka.properties.get("socket.timeout.ms").map(String::as_str), Some("60000"));
    }

    /// A private CA file for the registry is read at start; a missing or certificate-less
    /// one is refused, named by its path.
    #[test]
    fn the_registry_ca_file_is_checked_at_start() {
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/kafka/tests/fixtures/registry-ca.pem");
        let url = ("OMNISTITCH__SCHEMAS__REGISTRY_URL", "https://registry:8081");
        let s =
            Settings::load(None, env(&[url, ("OMNISTITCH__SCHEMAS__REGISTRY_CA_FILE", ca.to_str().unwrap())])).unwrap();
        assert_eq!(s.schemas.registry_ca_file.as_deref(), Some(ca.as_path()));
        let err = format!(
            "{:#}",
            Settings::load(None, env(&[url, ("OMNISTITCH__SCHEMAS__REGISTRY_CA_FILE", "/nonexistent/ca.pem")]))
                .unwrap_err()
        );
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let err = format!(
            "{:#}",
            Settings::load(None, env(&[url, ("OMNISTITCH__SCHEMAS__REGISTRY_CA_FILE", readme.to_str().unwrap())]))
                .unwrap_err()
        );
        assert!(err.contains("registry_ca_file") && err.contains("no certificate"), "{err}");
    }

    /// The bind address is any IP, bracketed or not; a probe reaches it, or loopback when it
    /// is every address.
    #[test]
    fn the_http_address_and_where_a_probe_finds_it() {
        let http = |bind: &str| HttpSection { port: 9898, bind: bind.into() };
        assert_eq!(http("0.0.0.0").probe_address().unwrap().to_string(), "127.0.0.1:9898");
        assert_eq!(http("127.0.0.2").probe_address().unwrap().to_string(), "127.0.0.2:9898");
        assert_eq!(http("::").probe_address().unwrap().to_string(), "[::1]:9898");
        assert_eq!(http("[::]").address().unwrap().to_string(), "[::]:9898");
        assert!(http("localhost").address().is_err());
    }

    /// The engine commands read the service's own file (and its overrides).
    #[test]
    fn the_service_file_configures_the_engine_commands() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose/service.toml");
        let engine = crate::config::load(Some(&path)).unwrap();
        assert_eq!(engine, Settings::load(Some(&path), std::iter::empty()).unwrap().engine());
    }

    #[test]
    fn only_the_service_variables_must_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(vec![b'x', 0xff]);
        let os = |s: &str| OsString::from(s);
        let got = service_env(
            [(bad(), bad()), (os("LANG"), bad()), (os("OMNISTITCH__KAFKA__MODE"), os("at_least_once"))].into_iter(),
        )
        .unwrap();
        assert_eq!(got, vec![("OMNISTITCH__KAFKA__MODE".to_string(), "at_least_once".to_string())]);
        let err = service_env([(os("OMNISTITCH__KAFKA__GROUP_ID"), bad())].into_iter()).unwrap_err();
        assert_eq!(err.to_string(), "environment variable OMNISTITCH__KAFKA__GROUP_ID: the value is not UTF-8");
    }
}
