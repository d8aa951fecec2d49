//! Schema references (a registry schema naming types registered under other subjects), made
//! into one self-contained schema: each referenced named type is written out in place at its
//! first use, as if the producer had defined it there.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Most named types one schema may reference, directly or through its references.
pub const MAX_REFERENCES: usize = 64;

/// Avro's primitive type names: never a reference.
const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The full name of the named type `name` used where the enclosing namespace is `namespace`.
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// The full name a named type's definition gives itself, and its namespace for what it holds.
fn defined_name(def: &serde_json::Map<String, Value>, namespace: Option<&str>) -> Option<(String, Option<String>)> {
    let name = def.get("name")?.as_str()?;
    let own = def.get("namespace").and_then(Value::as_str);
    let full = if name.contains('.') { name.to_string() } else { full_name(name, own.or(namespace)) };
    let inner = full.rsplit_once('.').map(|(ns, _)| ns.to_string());
    Some((full, inner))
}

/// `main` (a schema's JSON text) with every type it names from `references` (full name ->
/// the referenced schema's JSON text) written out at its first use; errors say what is wrong,
/// without quoting the schemas.
pub fn inline(main: &str, references: &HashMap<String, String>) -> Result<String, String> {
    let mut definitions = HashMap::new();
    for (name, text) in references {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("referenced type {name} does not parse: {e}"))?;
        definitions.insert(name.clone(), value);
    }
    let mut schema: Value = serde_json::from_str(main).map_err(|e| format!("does not parse: {e}"))?;
    let mut defined = HashSet::new();
    expand(&mut schema, None, &definitions, &mut defined, 0)?;
    Ok(schema.to_string())
}

/// Writes out, in `v` and below (enclosing namespace `namespace`), the referenced types not
/// yet `defined`.
fn expand(
    v: &mut Value,
    namespace: Option<&str>,
    definitions: &HashMap<String, Value>,
    defined: &mut HashSet<String>,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Err("types nested more than 64 deep".into());
    }
    match v {
        Value::String(name) if !PRIMITIVES.contains(&name.as_str()) => {
            let full = full_name(name, namespace);
            let key = if definitions.contains_key(&full) { full } else { name.clone() };
            if defined.contains(&key) {
                return Ok(());
            }
            if let Some(def) = definitions.get(&key) {
                *v = def.clone();
                return expand(v, namespace, definitions, defined, depth + 1);
            }
            Ok(())
        }
        Value::Array(branches) => {
            for b in branches {
                expand(b, namespace, definitions, defined, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(def) => {
            let mut inner = namespace.map(str::to_string);
            if matches!(def.get("type").and_then(Value::as_str), Some("record" | "error" | "enum" | "fixed")) {
                if let Some((full, ns)) = defined_name(def, namespace) {
                    defined.insert(full);
                    inner = ns;
                }
            }
            let inner = inner.as_deref();
            if let Some(fields) = def.get_mut("fields").and_then(Value::as_array_mut) {
                for f in fields {
                    if let Some(t) = f.get_mut("type") {
                        expand(t, inner, definitions, defined, depth + 1)?;
                    }
                }
            }
            for key in ["items", "values"] {
                if let Some(t) = def.get_mut(key) {
                    expand(t, inner, definitions, defined, depth + 1)?;
                }
            }
            // A type given as an object: `{"type": "Direction"}` or a nested definition.
            if let Some(t) = def.get_mut("type").filter(|t| !t.is_string() || !is_kind(t)) {
                expand(t, inner, definitions, defined, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether `t` (a `type` attribute) is a kind of definition rather than a type name.
fn is_kind(t: &Value) -> bool {
    matches!(t.as_str(), Some("record" | "error" | "enum" | "fixed" | "array" | "map"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A referenced enum is written out at its first use, named afterwards; the result parses
    /// as Avro and has the same shape as the schema written out by hand.
    #[test]
    fn referenced_types_are_written_out_at_their_first_use() {
        let direction = r#"{"type":"enum","name":"Direction","namespace":"io.x","symbols":["IN","OUT"]}"#;
        let main = r#"{"type":"record","name":"E","namespace":"io.x","fields":[
            {"name":"a","type":"Direction"},
            {"name":"b","type":["null","io.x.Direction"],"default":null},
            {"name":"c","type":{"type":"array","items":"Direction"}}]}"#;
        let text = inline(main, &refs(&[("io.x.Direction", direction)])).unwrap();
        let schema = apache_avro::Schema::parse_str(&text).unwrap();
        let by_hand = apache_avro::Schema::parse_str(&main.replacen(
            r#""type":"Direction""#,
            &format!(r#""type":{direction}"#),
            1,
        ))
        .unwrap();
        assert_eq!(schema.canonical_form(), by_hand.canonical_form());
    }

    /// A reference of a reference is written out too; a bad reference is an error.
    #[test]
    fn references_of_references_and_bad_ones() {
        let inner = r#"{"type":"enum","name":"K","symbols":["A"]}"#;
        let outer = r#"{"type":"record","name":"R","fields":[{"name":"k","type":"K"}]}"#;
        let main = r#"{"type":"record","name":"M","fields":[{"name":"r","type":"R"},{"name":"k2","type":"K"}]}"#;
        let text = inline(main, &refs(&[("R", outer), ("K", inner)])).unwrap();
        apache_avro::Schema::parse_str(&text).unwrap();
        assert!(inline(main, &refs(&[("R", "{not json")])).unwrap_err().contains("referenced type R"));
    }
}
