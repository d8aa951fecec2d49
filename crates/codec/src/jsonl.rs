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

/// Longest line read as a record, in bytes, its newline included: far more than the largest
/// valid record (its text
/// is at most 64 KiB, six times that escaped), and a bound on what one line costs in memory.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Of a line over [`MAX_LINE_BYTES`], the bytes kept for its dead letter.
const KEPT_OF_LONG_LINE: usize = 64 << 10;

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

    /// The next non-blank line, and its whole length when it was longer than
    /// [`MAX_LINE_BYTES`] (then only its first bytes are kept).
    fn next_line(&mut self) -> io::Result<Option<(Vec<u8>, Option<usize>)>> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let Some(len) = self.read_line(&mut buf)? else { return Ok(None) };
            self.line_no += 1;
            if len > MAX_LINE_BYTES {
                return Ok(Some((buf, Some(len))));
            }
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if !buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((buf, None)));
            }
        }
    }

    /// Reads a line (with its newline) into `buf`, keeping at most [`MAX_LINE_BYTES`] of it
    /// (only its first [`KEPT_OF_LONG_LINE`] past that); returns its whole length, or `None`
    /// at the end of the file.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut len = 0usize;
        loop {
            let chunk = match self.source.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok((len > 0).then_some(len));
            }
            let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            len = len.saturating_add(take);
            self.source.consume(take);
            if len > MAX_LINE_BYTES {
                buf.truncate(KEPT_OF_LONG_LINE);
            }
            if ends {
                return Ok(Some(len));
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
            Ok(Some((line, None))) => {
                let decoded = decode_line(self.channel, &line);
                Some((self.line_no, line, decoded))
            }
            Ok(Some((line, Some(len)))) => {
                let error = DecodeError::Json(format!("a line of {len} bytes, over the limit of {MAX_LINE_BYTES}"));
                Some((self.line_no, line, Err(error)))
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

    /// A line over the limit costs bounded memory: it is one bad record (its first bytes kept),
    /// and the lines after it are read.
    #[test]
    fn a_line_over_the_limit_is_one_bad_record_and_reading_goes_on() {
        let good = br#"{"tenant":"acme","event_id":"c1","event_time":1767571200000,"direction":"INBOUND","kind":"MESSAGE","session_id":"S1"}"#;
        let mut input = good.to_vec();
        input.push(b'\n');
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(good);
        let items: Vec<LineItem> = JsonLinesReader::new(io::BufReader::new(&input[..]), Channel::Chat).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].2.is_ok() && items[2].2.is_ok());
        assert_eq!(items[2].0, 3, "line numbers go on");
        let (_, kept, long) = &items[1];
        assert_eq!(kept.len(), KEPT_OF_LONG_LINE);
        let long = long.as_ref().unwrap_err();
        assert_eq!(long.code(), "json_decode");
        assert!(long.to_string().contains(&format!("a line of {} bytes", MAX_LINE_BYTES + 12)), "{long}");
        // A line of exactly the limit is read as a record (here a bad one).
        let mut input = vec![b' '; MAX_LINE_BYTES - 1];
        input.push(b'\n');
        let items: Vec<LineItem> = JsonLinesReader::new(io::BufReader::new(&input[..]), Channel::Chat).collect();
        assert!(items.is_empty(), "a blank line, however long, is no record");
    }

    #[test]
    fn a_read_error_ends_the_file_after_one_report() {
        let items: Vec<LineItem> = JsonLinesReader::new(io::BufReader::new(Failing), Channel::Chat).take(10).collect();
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0].2, Err(DecodeError::Io(_))));
    }
}
