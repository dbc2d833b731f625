//! The duplicate-key check: a walk over a whole document that builds nothing but the keys of
//! the mappings it is inside, and refuses a key that appears twice in one mapping.
//!
//! Why not parse into a `serde_yaml::Value`, which refuses duplicates too: that builds a second
//! copy of the document, the largest thing a parse holds (about 100 bytes a value), only to
//! drop it. The walk keeps the keys of the open mappings and nothing else.
//!
//! Invariants: keys are compared as `serde_yaml::Value`s, exactly as `serde_yaml::Mapping`
//! compares them (`1` and `"1"` differ); the error's text is `Value`'s own ("duplicate entry
//! with key \"roleName\""), but it is raised while the repeated key itself is visited, so
//! serde_yaml places it at that key (its second appearance), where `Value` would name the
//! line of the mapping that holds it.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;

/// Walks one value and everything inside it.
pub struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Unique)
    }
}

macro_rules! ignore_scalar {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, _: $ty) -> Result<(), E> {
            Ok(())
        }
    )*};
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    ignore_scalar! {
        visit_bool(bool) visit_i64(i64) visit_i128(i128) visit_u64(u64) visit_u128(u128)
        visit_f64(f64) visit_str(&str) visit_bytes(&[u8])
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Unique)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Unique)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while map.next_key_seed(Key(&mut keys))?.is_some() {
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }

    /// A tagged value (`!tag x`): the tag, then the value.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (_tag, value) = data.variant::<String>()?;
        de::VariantAccess::newtype_variant_seed(value, Unique)
    }
}

/// One key of a mapping, added to the keys seen so far; a repeated one is refused inside the
/// visit of the key node, which is where serde_yaml then places the error.
struct Key<'k>(&'k mut HashSet<Value>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Key<'_> {
    fn add<E: de::Error>(self, key: Value) -> Result<(), E> {
        if self.0.contains(&key) {
            return Err(E::custom(Duplicate(&key)));
        }
        self.0.insert(key);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.add(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.add(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.add(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.add(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.add(Value::String(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.add(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.add(Value::Null)
    }
    // Keys that are not scalars (rare, but YAML allows them) are built as `Value` builds them.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let key = serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.add(key)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let key = serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.add(key)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let key = serde::Deserialize::deserialize(de::value::EnumAccessDeserializer::new(data))?;
        self.add(key)
    }
}

/// The message `serde_yaml::Mapping` gives for a repeated key, word for word.
struct Duplicate<'a>(&'a Value);

impl fmt::Display for Duplicate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("duplicate entry ")?;
        match self.0 {
            Value::Null => f.write_str("with null key"),
            Value::Bool(b) => write!(f, "with key `{b}`"),
            Value::Number(n) => write!(f, "with key {n}"),
            Value::String(s) => write!(f, "with key {s:?}"),
            Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => f.write_str("in YAML map"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk and `serde_yaml::Value` agree on what is an error and on its text and place.
    #[test]
    fn agrees_with_the_generic_value() {
        for text in [
            "a: 1\nb: 2\n",
            "a: 1\na: 2\n",
            "- {x: 1, y: {z: 1, z: 2}}\n",
            "1: a\n\"1\": b\n",
            "1: a\n1: b\n",
            "true: a\ntrue: b\n",
            "~: a\nnull: b\n",
            "[a]: 1\n[a]: 2\n",
            "!t {a: 1, a: 2}\n",
            "? {k: 1}\n: 1\n? {k: 1}\n: 2\n",
            "x: &a {k: 1}\ny: *a\nz: {<<: *a, k: 2}\n",
            "a: [1, 2\n",
        ] {
            // The text before the place: the walk places a duplicate at the key, not the map.
            let message = |e: serde_yaml::Error| {
                let text = e.to_string();
                text.split(" at line ").next().unwrap().to_string()
            };
            let generic = serde_yaml::from_str::<Value>(text).err().map(message);
            let walked = Unique
                .deserialize(serde_yaml::Deserializer::from_str(text))
                .err()
                .map(message);
            assert_eq!(walked, generic, "{text}");
        }
    }

    /// A repeated key is placed at its second appearance: line and column of that key.
    #[test]
    fn a_duplicate_is_placed_at_the_repeated_key() {
        for (text, line, column) in [
            ("a: 1\nb: 2\na: 3\n", 3, 1),
            (
                "spec:\n  parameters:\n    roleName: r\n    objects: x\n    roleName: s\n",
                5,
                5,
            ),
            ("- {x: 1, y: {z: 1,  z: 2}}\n", 1, 21),
            ("[a]: 1\n[a]: 2\n", 2, 1),
        ] {
            let e = Unique
                .deserialize(serde_yaml::Deserializer::from_str(text))
                .unwrap_err();
            let at = e.location().unwrap();
            assert_eq!((at.line(), at.column()), (line, column), "{text}: {e}");
        }
    }
}
