//! Logs: tracing to stderr, text or JSON lines, level from `RUST_LOG` (default info).
//!
//! Nothing logs identifiers: the engine logs none, the Kafka stage logs topics, partitions,
//! offsets and reason codes, never record contents.

/// Starts logging; `json` writes one JSON object per line.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    if let Err(e) = result {
        eprintln!("logging already started: {e}");
    }
}
