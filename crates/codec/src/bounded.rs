//! Writer schemas whose data a decoder can read in bounded time and stack: a registry or a
//! container file may hand over any schema, and apache-avro follows it wherever it leads.

use std::collections::HashMap;

use apache_avro::schema::{InnerDecimalSchema, Name};
use apache_avro::Schema;

use crate::error::DecodeError;

/// Refuses a writer schema with a recursive type (a datum could nest as deep as it is long and
/// overflow the stack) or an array of items that take no bytes (a block could claim 2^62 of
/// them in a few bytes and hold the decoder for good). Neither can be a version of an input
/// record, whose fields are flat.
pub(crate) fn check(schema: &Schema) -> Result<(), DecodeError> {
    let mut named = HashMap::new();
    walk(schema, &mut Vec::new(), &mut named).map_err(DecodeError::UnknownSchema)
}

/// Checks `s`, inside the named types `path`; notes every named type met in `named`.
fn walk<'a>(s: &'a Schema, path: &mut Vec<&'a Name>, named: &mut HashMap<&'a Name, &'a Schema>) -> Result<(), String> {
    match s {
        Schema::Ref { name } if path.contains(&name) => {
            Err(format!("writer schema refused: type {} contains itself", name.fullname(None)))
        }
        Schema::Record(r) => {
            named.insert(&r.name, s);
            path.push(&r.name);
            let fields = r.fields.iter().try_for_each(|f| walk(&f.schema, path, named));
            path.pop();
            fields
        }
        Schema::Enum(e) => {
            named.insert(&e.name, s);
            Ok(())
        }
        Schema::Fixed(f) => {
            named.insert(&f.name, s);
            Ok(())
        }
        Schema::Array(a) => {
            walk(&a.items, path, named)?;
            if takes_no_bytes(&a.items, named) {
                return Err("writer schema refused: an array of items that take no bytes".into());
            }
            Ok(())
        }
        Schema::Map(m) => walk(&m.types, path, named),
        Schema::Union(u) => u.variants().iter().try_for_each(|v| walk(v, path, named)),
        _ => Ok(()),
    }
}

/// Whether a datum of `s` can be zero bytes long (`s` is not recursive: checked first).
fn takes_no_bytes(s: &Schema, named: &HashMap<&Name, &Schema>) -> bool {
    match s {
        Schema::Null => true,
        Schema::Record(r) => r.fields.iter().all(|f| takes_no_bytes(&f.schema, named)),
        Schema::Fixed(f) => f.size == 0,
        Schema::Decimal(d) => matches!(&d.inner, InnerDecimalSchema::Fixed(f) if f.size == 0),
        Schema::Ref { name } => named.get(name).is_some_and(|t| takes_no_bytes(t, named)),
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
