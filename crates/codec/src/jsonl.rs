//! JSON Lines input: one object per line, following the channel's Avro schema field for field.

use std::io::{self, BufRead};

use omnistitch_model::wire::{ChatEvent, EmailEvent, PhoneEvent, SocialEvent};
use omnistitch_model::{Channel, WireEvent};

use crate::error::DecodeError;

/// Decodes one JSON object of `channel`.
pub fn decode_line(channel: Channel, line: &[u8]) -> Result<WireEvent, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|e| DecodeError::Json(format!("invalid UTF-8: {e}")))?;
    let err = |e: serde_json::Error| DecodeError::json(&e);
    Ok(match channel {
        Channel::Email => WireEvent::Email(serde_json::from_str::<EmailEvent>(text).map_err(err)?),
        Channel::Chat => WireEvent::Chat(serde_json::from_str::<ChatEvent>(text).map_err(err)?),
        Channel::Phone => WireEvent::Phone(serde_json::from_str::<PhoneEvent>(text).map_err(err)?),
        Channel::Social => WireEvent::Social(serde_json::from_str::<SocialEvent>(text).map_err(err)?),
    })
}

/// Item of a JSON Lines reader: `(line number from 1, raw line, decoded event or error)`.
pub type LineItem = (u64, Vec<u8>, Result<WireEvent, DecodeError>);

/// Reads the non-blank lines of a JSON Lines file of one channel.
pub struct JsonLinesReader<R> {
    source: R,
    channel: Channel,
    line_no: u64,
    /// A read failed: the source is not read again (a failing read fails again and again).
    failed: bool,
}

impl<R: BufRead> JsonLinesReader<R> {
    /// A reader of `channel` objects.
    pub fn new(source: R, channel: Channel) -> Self {
        JsonLinesReader { source, channel, line_no: 0, failed: false }
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if self.source.read_until(b'\n', &mut buf)? == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if !buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(buf));
            }
        }
    }
}

impl<R: BufRead> Iterator for JsonLinesReader<R> {
    type Item = LineItem;

    fn next(&mut self) -> Option<LineItem> {
        if self.failed {
            return None;
        }
        match self.next_line() {
            Ok(Some(line)) => {
                let decoded = decode_line(self.channel, &line);
                Some((self.line_no, line, decoded))
            }
            Ok(None) => None,
            Err(e) => {
                // Reported once, as the file's last record.
                self.failed = true;
                Some((self.line_no, Vec::new(), Err(DecodeError::Io(e))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source whose every read fails.
    struct Failing;

    impl io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("device gone"))
        }
    }

    #[test]
    fn a_read_error_ends_the_file_after_one_report() {
        let items: Vec<LineItem> = JsonLinesReader::new(io::BufReader::new(Failing), Channel::Chat).take(10).collect();
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0].2, Err(DecodeError::Io(_))));
    }
}
