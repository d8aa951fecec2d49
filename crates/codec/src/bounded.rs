//! Writer schemas whose data a decoder can read in bounded time and stack: a registry or a
//! container file may hand over any schema, and apache-avro follows it wherever it leads.

use std::collections::HashMap;

use apache_avro::schema::{InnerDecimalSchema, Name, UuidSchema};
use apache_avro::Schema;

use crate::error::DecodeError;

/// Largest `fixed` accepted in a writer schema: apache-avro allocates a fixed's size for every
/// datum before reading it, so a size of 2^40 would abort the process on each record.
const MAX_FIXED_BYTES: usize = 64 * 1024;

/// Refuses a writer schema with a recursive type (a datum could nest as deep as it is long and
/// overflow the stack), an array of items that take no bytes (a block could claim 2^62 of
/// them in a few bytes and hold the decoder for good) or a `fixed` larger than
/// [`MAX_FIXED_BYTES`]. None can be a version of an input record, whose fields are flat and
/// short.
pub(crate) fn check(schema: &Schema) -> Result<(), DecodeError> {
    let mut zero = HashMap::new();
    walk(schema, &mut Vec::new(), &mut zero).map_err(DecodeError::UnknownSchema)
}

/// Checks `s`, inside the named types `path`; notes whether each named type met can take no
/// bytes in `zero`, once, as its definition ends (a reference is then a lookup: following
/// references again wherever they appear took time exponential in the nesting, and stack as
/// deep as the longest chain of them).
fn walk<'a>(s: &'a Schema, path: &mut Vec<&'a Name>, zero: &mut HashMap<&'a Name, bool>) -> Result<(), String> {
    match s {
        Schema::Ref { name } if path.contains(&name) => {
            Err(format!("writer schema refused: type {} contains itself", name.fullname(None)))
        }
        Schema::Record(r) => {
            path.push(&r.name);
            let fields = r.fields.iter().try_for_each(|f| walk(&f.schema, path, zero));
            path.pop();
            fields?;
            let empty = r.fields.iter().all(|f| takes_no_bytes(&f.schema, zero));
            zero.insert(&r.name, empty);
            Ok(())
        }
        Schema::Enum(e) => {
            zero.insert(&e.name, false);
            Ok(())
        }
        Schema::Fixed(f) => {
            fixed_size(f.size)?;
            zero.insert(&f.name, f.size == 0);
            Ok(())
        }
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Fixed(f) => fixed_size(f.size),
            _ => Ok(()),
        },
        Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Duration(f) => fixed_size(f.size),
        Schema::Array(a) => {
            walk(&a.items, path, zero)?;
            if takes_no_bytes(&a.items, zero) {
                return Err("writer schema refused: an array of items that take no bytes".into());
            }
            Ok(())
        }
        Schema::Map(m) => walk(&m.types, path, zero),
        Schema::Union(u) => u.variants().iter().try_for_each(|v| walk(v, path, zero)),
        _ => Ok(()),
    }
}

/// Refuses a `fixed` of `size` bytes past [`MAX_FIXED_BYTES`].
fn fixed_size(size: usize) -> Result<(), String> {
    match size <= MAX_FIXED_BYTES {
        true => Ok(()),
        false => Err(format!("writer schema refused: a fixed of {size} bytes (at most {MAX_FIXED_BYTES})")),
    }
}

/// Whether a datum of `s` can be zero bytes long, from what `zero` knows of the named types
/// (every named type `s` uses is defined, and noted, before `s` is asked about: checked by
/// [`walk`] as it leaves each definition).
fn takes_no_bytes(s: &Schema, zero: &HashMap<&Name, bool>) -> bool {
    match s {
        Schema::Null => true,
        Schema::Record(r) => zero.get(&r.name).copied().unwrap_or(false),
        Schema::Fixed(f) => f.size == 0,
        Schema::Decimal(d) => matches!(&d.inner, InnerDecimalSchema::Fixed(f) if f.size == 0),
        Schema::Ref { name } => zero.get(name).copied().unwrap_or(false),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(json: &str) -> Result<(), DecodeError> {
        check(&Schema::parse_str(json).expect("schema parses"))
    }

    #[test]
    fn flat_records_and_evolved_inputs_pass() {
        for ch in omnistitch_model::Channel::ALL {
            check(crate::contract::Contract::get().input(ch)).expect("bundled input");
        }
        let ok = r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":{"type":"array","items":"string"}},
            {"name":"m","type":{"type":"map","values":"null"}},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["X"]}},
            {"name":"again","type":["null","E"]},
            {"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"x","type":"long"}]}},
            {"name":"twice","type":{"type":"array","items":"I"}}]}"#;
        checked(ok).expect("no recursion, no zero-size items");
    }

    /// Ten fields of one named type per level, twelve levels: every reference is a lookup (the
    /// check followed each one again, 10^12 visits), and the array of such records, none of
    /// which takes a byte, is refused.
    #[test]
    fn a_named_type_used_many_times_is_checked_once() {
        let mut inner = r#""null""#.to_string();
        for level in (0..12).rev() {
            let fields: Vec<String> = (0..10)
                .map(|i| {
                    let t = if i == 0 { inner.clone() } else { format!(r#""R{}""#, level + 1) };
                    let t = if level == 11 { r#""null""#.to_string() } else { t };
                    format!(r#"{{"name":"f{i}","type":{t}}}"#)
                })
                .collect();
            inner = format!(r#"{{"type":"record","name":"R{level}","fields":[{}]}}"#, fields.join(","));
        }
        let schema = format!(
            r#"{{"type":"record","name":"Top","fields":[{{"name":"x","type":{{"type":"array","items":{inner}}}}}]}}"#
        );
        let err = checked(&schema).unwrap_err().to_string();
        assert!(err.contains("take no bytes"), "{err}");
    }

    /// A chain of 50,000 named types, each holding the one before: checked without following
    /// the chain down the stack.
    #[test]
    fn a_long_chain_of_references_is_checked_without_deep_recursion() {
        let mut fields =
            vec![r#"{"name":"c0","type":{"type":"record","name":"C0","fields":[{"name":"v","type":"null"}]}}"#
                .to_string()];
        for i in 1..50_000 {
            fields.push(format!(
                r#"{{"name":"c{i}","type":{{"type":"record","name":"C{i}","fields":[{{"name":"v","type":"C{}"}}]}}}}"#,
                i - 1
            ));
        }
        fields.push(r#"{"name":"x","type":{"type":"array","items":"C49999"}}"#.to_string());
        let schema = format!(r#"{{"type":"record","name":"Top","fields":[{}]}}"#, fields.join(","));
        assert!(checked(&schema).is_err(), "an array of records that take no bytes");
    }

    #[test]
    fn recursive_types_are_refused() {
        let direct = r#"{"type":"record","name":"R","fields":[{"name":"x","type":["null",
            {"type":"record","name":"N","fields":[{"name":"n","type":["null","N"]}]}],"default":null}]}"#;
        let err = checked(direct).expect_err("recursive");
        assert_eq!(err.code(), "unknown_schema");
        assert!(err.to_string().contains("contains itself"), "{err}");
        let through_array = r#"{"type":"record","name":"T","fields":[
            {"name":"kids","type":{"type":"array","items":"T"}}]}"#;
        assert!(checked(through_array).is_err());
    }

    #[test]
    fn arrays_of_items_without_bytes_are_refused() {
        for items in [
            r#""null""#,
            r#"{"type":"record","name":"Z","fields":[]}"#,
            r#"{"type":"fixed","name":"F0","size":0}"#,
            r#"{"type":"record","name":"Y","fields":[{"name":"n","type":"null"}]}"#,
        ] {
            let json = format!(
                r#"{{"type":"record","name":"R","fields":[{{"name":"a","type":{{"type":"array","items":{items}}}}}]}}"#
            );
            let err = checked(&json).expect_err(items);
            assert!(err.to_string().contains("take no bytes"), "{err}");
        }
        // Referenced by name, defined earlier.
        let by_name = r#"{"type":"record","name":"R","fields":[
            {"name":"z","type":{"type":"record","name":"Z","fields":[]}},
            {"name":"a","type":{"type":"array","items":"Z"}}]}"#;
        assert!(checked(by_name).is_err());
    }
}
