//! A decoder specialised to the bundled input schemas, for records whose writer schema is
//! exactly the bundled one (the common case). It reads strings straight from the buffer and
//! matches no field names, about twice as fast as the generic serde path; any other writer
//! schema goes through apache-avro. A property test holds the two to the same results.

use omnistitch_model::wire::{ChatEvent, Common, EmailEvent, PhoneEvent, SocialEvent, WireSurvey};
use omnistitch_model::{Channel, CompactString, Direction, EventKind, WireEvent};

use crate::contract::MAX_ALLOCATION_BYTES;
use crate::error::DecodeError;

/// Reads Avro binary primitives from a byte slice.
struct Cursor<'a, 'b> {
    buf: &'b mut &'a [u8],
}

fn err(what: &str) -> DecodeError {
    DecodeError::Avro(format!("fast decoder: {what}"))
}

impl Cursor<'_, '_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| err("unexpected end of record"))?;
        *self.buf = rest;
        Ok(b)
    }

    fn long(&mut self) -> Result<i64, DecodeError> {
        // Lengths, union branches, enum indexes and small counts fit in one byte.
        if let Some((&b, rest)) = self.buf.split_first() {
            if b & 0x80 == 0 {
                *self.buf = rest;
                return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
            }
        }
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        i32::try_from(self.long()?).map_err(|_| err("int out of range"))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| err("negative length"))?;
        if n > MAX_ALLOCATION_BYTES || n > self.buf.len() {
            return Err(err("length beyond the record"));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<CompactString, DecodeError> {
        let n = self.len()?;
        let (s, rest) = self.buf.split_at(n);
        let s = CompactString::from_utf8(s).map_err(|_| err("invalid UTF-8"))?;
        *self.buf = rest;
        Ok(s)
    }

    fn double(&mut self) -> Result<f64, DecodeError> {
        if self.buf.len() < 8 {
            return Err(err("unexpected end of record"));
        }
        let (b, rest) = self.buf.split_at(8);
        *self.buf = rest;
        Ok(f64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A `["null", T]` union.
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, DecodeError>) -> Result<Option<T>, DecodeError> {
        match self.long()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(err("union branch out of range")),
        }
    }

    fn enum_index(&mut self, symbols: usize) -> Result<usize, DecodeError> {
        let i = self.int()?;
        usize::try_from(i).ok().filter(|&i| i < symbols).ok_or_else(|| err("enum index out of range"))
    }

    fn strings(&mut self) -> Result<Vec<CompactString>, DecodeError> {
        let mut out = Vec::new();
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| err("array block count"))?;
                self.long()?; // block size in bytes
            }
            let count = usize::try_from(count).map_err(|_| err("array block count"))?;
            if count > self.buf.len() {
                return Err(err("array longer than the record"));
            }
            // Room for a few: a count as large as the record is long would otherwise reserve
            // a string's size per byte of input.
            out.reserve(count.min(RESERVE_AT_MOST));
            for _ in 0..count {
                out.push(self.string()?);
            }
        }
    }
}

/// Most items of an array reserved for at once (more grow the vector as they are read).
const RESERVE_AT_MOST: usize = 16;

const DIRECTIONS: [Direction; 3] = [Direction::Inbound, Direction::Outbound, Direction::Internal];

/// The fields every input schema starts with, in schema order.
fn head(c: &mut Cursor<'_, '_>) -> Result<Common, DecodeError> {
    Ok(Common {
        tenant: c.string()?,
        event_id: c.string()?,
        event_time: c.long()?,
        direction: DIRECTIONS[c.enum_index(DIRECTIONS.len())?],
        kind: EventKind::ALL[c.enum_index(EventKind::ALL.len())?],
        case_id: c.opt(Cursor::string)?,
        agent_id: c.opt(Cursor::string)?,
        account_id: c.opt(Cursor::string)?,
        text: c.opt(Cursor::string)?,
        sentiment: c.opt(Cursor::double)?,
        survey: c.opt(|c| {
            Ok(WireSurvey { csat: c.opt(Cursor::int)?, nps: c.opt(Cursor::int)?, ces: c.opt(Cursor::int)? })
        })?,
    })
}

/// Builds a wire record from its head and its own fields.
macro_rules! with_head {
    ($ty:ident, $h:expr, { $($field:ident: $value:expr,)* }) => {{
        let h = $h;
        $ty {
            tenant: h.tenant,
            event_id: h.event_id,
            event_time: h.event_time,
            direction: h.direction,
            kind: h.kind,
            case_id: h.case_id,
            agent_id: h.agent_id,
            account_id: h.account_id,
            text: h.text,
            sentiment: h.sentiment,
            survey: h.survey,
            $($field: $value,)*
        }
    }};
}

/// Decodes one record of `channel` written with the bundled schema, advancing `bytes` past it.
pub(crate) fn read_bundled(channel: Channel, bytes: &mut &[u8]) -> Result<WireEvent, DecodeError> {
    let c = &mut Cursor { buf: bytes };
    let h = head(c)?;
    Ok(match channel {
        Channel::Email => WireEvent::Email(with_head!(EmailEvent, h, {
            from: c.string()?,
            to: c.strings()?,
            cc: c.strings()?,
            subject: c.opt(Cursor::string)?,
            message_id: c.opt(Cursor::string)?,
            in_reply_to: c.opt(Cursor::string)?,
        })),
        Channel::Chat => WireEvent::Chat(with_head!(ChatEvent, h, {
            session_id: c.string()?,
            visitor_id: c.opt(Cursor::string)?,
            customer_email: c.opt(Cursor::string)?,
            customer_phone: c.opt(Cursor::string)?,
        })),
        Channel::Phone => WireEvent::Phone(with_head!(PhoneEvent, h, {
            call_id: c.string()?,
            caller: c.string()?,
            callee: c.string()?,
            queue_wait_ms: c.opt(Cursor::long)?,
            duration_ms: c.opt(Cursor::long)?,
            transfers: c.opt(Cursor::int)?,
            customer_line_type: c.opt(Cursor::string)?,
        })),
        Channel::Social => WireEvent::Social(with_head!(SocialEvent, h, {
            platform: c.string()?,
            handle: c.string()?,
            post_id: c.opt(Cursor::string)?,
            in_reply_to_post: c.opt(Cursor::string)?,
        })),
    })
}
