//! Decoding errors, each with a stable code for dead letters and metrics.

use thiserror::Error;

/// Why bytes could not become a wire event.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The bytes do not decode with the record's schema (truncated, wrong types, bad UTF-8).
    #[error("avro decode failed: {0}")]
    Avro(String),
    /// The line is not a JSON object of the channel's schema.
    #[error("json decode failed: {0}")]
    Json(String),
    /// The schema is not one of the input schemas.
    #[error("unknown input schema `{0}`")]
    UnknownSchema(String),
    /// A container file's framing is broken; the rest of the block or file is unreadable.
    #[error("avro container corrupt: {0}")]
    Container(String),
    /// A container file compressed with a codec this build does not read.
    #[error("unsupported container codec `{0}` (null, deflate and snappy are read)")]
    UnsupportedCodec(String),
    /// Reading the source failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl DecodeError {
    /// An apache-avro error, its quoted values left out (see [`without_values`]).
    pub(crate) fn avro(e: &apache_avro::Error) -> Self {
        DecodeError::Avro(without_values(&e.to_string()))
    }

    /// A serde_json error, its quoted values left out (see [`without_values`]).
    pub(crate) fn json(e: &serde_json::Error) -> Self {
        DecodeError::Json(without_values(&e.to_string()))
    }

    /// Stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Avro(_) => "avro_decode",
            DecodeError::Json(_) => "json_decode",
            DecodeError::UnknownSchema(_) => "unknown_schema",
            DecodeError::Container(_) => "container_corrupt",
            DecodeError::UnsupportedCodec(_) => "unsupported_codec",
            DecodeError::Io(_) => "io",
        }
    }
}

/// `message` (a third-party decoder's) with the values it quotes left out: serde and
/// apache-avro quote the offending value (`invalid type: string "jo@mailbox.io"`,
/// ``integer `14155550134` ``, `got: Uuid(…)`), and a value can be personal data, which must
/// not reach a dead letter's reason or a log. Everything from the first quote, backtick or
/// bracket up to what a serde message says was expected (`, expected one of `a``: the
/// schema's names) becomes `…` (a value can hold any of those characters itself, so its end
/// is not looked for); serde_json's position (` at line 1 column 9`) is kept, and so are a
/// missing or duplicate field's name and serde_json's syntax errors (`expected `,` or `}``),
/// which quote the schema or the grammar, not the input.
pub(crate) fn without_values(message: &str) -> String {
    if ["missing field", "duplicate field", "expected "].iter().any(|p| message.starts_with(p)) {
        return message.to_string();
    }
    let (body, position) = match message.rfind(" at line ") {
        Some(at) if message[at..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') => message.split_at(at),
        _ => (message, ""),
    };
    let (told, expected) = match body.rfind(", expected") {
        Some(at) => body.split_at(at),
        None => (body, ""),
    };
    let mut out = match told.find(['"', '`', '(']) {
        Some(at) => format!("{}…", &told[..=at]),
        None => told.to_string(),
    };
    out.push_str(expected);
    out.push_str(position);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_messages_lose_the_values_they_quote_and_keep_the_rest() {
        for (message, kept) in [
            (
                "invalid type: string \"jo@mailbox.io\", expected a sequence at line 1 column 31",
                "invalid type: string \"…, expected a sequence at line 1 column 31",
            ),
            (
                "invalid type: integer `14155550134`, expected a string at line 1 column 9",
                "invalid type: integer `…, expected a string at line 1 column 9",
            ),
            (
                "unknown variant `@jo`, expected one of `inbound`, `outbound`",
                "unknown variant `…, expected one of `inbound`, `outbound`",
            ),
            (
                "Expected Value::String, Value::Bytes or Value::Fixed, got: Uuid(5a2f(x)9c)",
                "Expected Value::String, Value::Bytes or Value::Fixed, got: Uuid(…",
            ),
            ("invalid value: string \"a \\\"quoted\\\" b\", expected x", "invalid value: string \"…, expected x"),
            // A value holding what would end it, or what looks like the expected part.
            (
                "invalid type: string \"Hi, expected delivery to jo@mailbox.io\", expected a map at line 2 column 3",
                "invalid type: string \"…, expected a map at line 2 column 3",
            ),
            (
                "unknown variant `x`jo@mailbox.io`, expected one of `inbound`",
                "unknown variant `…, expected one of `inbound`",
            ),
            ("got String(\"ok :) jo@x.com\")", "got String(…"),
            ("got String(\"jo@x.com at line 1 column 2\")", "got String(…"),
            ("missing field `tenant` at line 1 column 2", "missing field `tenant` at line 1 column 2"),
            ("expected `,` or `}` at line 1 column 12", "expected `,` or `}` at line 1 column 12"),
            ("expected value at line 1 column 1", "expected value at line 1 column 1"),
            ("unterminated \"jo@mailbox.io", "unterminated \"…"),
        ] {
            assert_eq!(without_values(message), kept, "{message}");
        }
    }

    #[test]
    fn json_and_avro_errors_name_no_identifier() {
        let e = serde_json::from_str::<Vec<u8>>("\"jo@mailbox.io\"").unwrap_err();
        let reason = DecodeError::json(&e).to_string();
        assert!(!reason.contains("jo@mailbox.io") && reason.contains("invalid type"), "{reason}");
        let e = serde_json::from_str::<String>("14155550134").unwrap_err();
        assert!(!DecodeError::json(&e).to_string().contains("14155550134"));
    }
}
