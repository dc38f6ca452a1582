//! The keys proxy.toml allows, read off the `File*` serde types themselves,
//! so that a field added there is a known key everywhere, nested tables too.
//!
//! A recording [`Deserializer`] "deserializes" [`FileConfig`] from nothing:
//! it answers every struct with all of its fields, every option with `Some`,
//! every list and map with one entry and every leaf with an empty value, and
//! writes down what it was asked for. That record is the [`Shape`].

use std::sync::LazyLock;

use serde::de::value::{BorrowedStrDeserializer, Error, StrDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

use super::file::FileConfig;

/// The shape of a value in proxy.toml, as the `File*` types deserialize it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A value we don't look inside: a string, number, bool, or an untagged
    /// enum of those (serde reports its wrong types precisely).
    Leaf,
    /// A table with these keys, in declaration order (help text lists them so).
    Table(Vec<(&'static str, Shape)>),
    /// An array of these (`[[route]]`, `servers = [...]`).
    Array(Box<Shape>),
    /// A table of user-named entries like these (`[upstream.NAME]`, `set = { NAME = ... }`).
    Map(Box<Shape>),
}

/// serde_spanned's private name for `toml::Spanned<T>`: transparent here
/// (shaped like its value), not a table of start, end and value.
const SPANNED: &str = "$__serde_spanned_private_Spanned";

/// The top-level keys of proxy.toml and their shapes, derived once.
pub(crate) fn file_config() -> &'static [(&'static str, Shape)] {
    static SHAPE: LazyLock<Shape> =
        LazyLock::new(|| shape_of::<FileConfig>().expect("every File* type can be recorded"));
    match &*SHAPE {
        Shape::Table(fields) => fields,
        _ => &[],
    }
}

/// The shape of `T`; an error means `T` uses a serde feature the recorder does not answer.
pub(crate) fn shape_of<T: DeserializeOwned>() -> Result<Shape, Error> {
    let mut shape = Shape::Leaf;
    T::deserialize(Recorder(&mut shape))?;
    Ok(shape)
}

/// Deserializes a placeholder value and records the shape the visitor asked for.
struct Recorder<'a>(&'a mut Shape);

/// Leaf methods: answer with a placeholder; the recorded shape stays `Leaf`.
macro_rules! leaves {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = Error;

    /// Untagged enums (`OneOrMany`, `FileServerEntry`, `FileSize`) buffer
    /// their input through here and try each variant; each has a string one.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    // serde's integer and float visitors take any number that fits.
    leaves! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_unit => visit_unit(),
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf tuple tuple_struct identifier ignored_any
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut one = [("", Shape::Leaf)];
        let value = visitor.visit_seq(Entries::placeholder(&mut one))?;
        let [(_, item)] = one;
        *self.0 = Shape::Array(Box::new(item));
        Ok(value)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut one = [("", Shape::Leaf)];
        let value = visitor.visit_map(Entries::placeholder(&mut one))?;
        let [(_, item)] = one;
        *self.0 = Shape::Map(Box::new(item));
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mut shapes: Vec<_> = fields.iter().map(|f| (*f, Shape::Leaf)).collect();
        let value = visitor.visit_map(Entries {
            entries: &mut shapes,
            next: 0,
            fields: true,
        })?;
        *self.0 = if name == SPANNED {
            // Its start and end are numbers: the one shape that is not a leaf is the value's.
            let mut inner = shapes.into_iter().map(|(_, s)| s);
            inner.find(|s| *s != Shape::Leaf).unwrap_or(Shape::Leaf)
        } else {
            Shape::Table(shapes)
        };
        Ok(value)
    }

    /// An externally tagged enum: TOML writes a unit variant as a string.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let first: StrDeserializer<'_, Error> =
            variants.first().copied().unwrap_or("").into_deserializer();
        visitor.visit_enum(first)
    }
}

/// The entries fed to a visitor, each value recorded in place: a struct's
/// fields, or the one placeholder entry of a list or map.
struct Entries<'a> {
    entries: &'a mut [(&'static str, Shape)],
    next: usize,
    /// Keys are the field names; otherwise a map's key is a placeholder too.
    fields: bool,
}

impl<'a> Entries<'a> {
    fn placeholder(one: &'a mut [(&'static str, Shape); 1]) -> Self {
        Entries {
            entries: one,
            next: 0,
            fields: false,
        }
    }
}

impl<'de> SeqAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((_, shape)) = self.entries.get_mut(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(Recorder(shape)).map(Some)
    }
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(&(name, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        if self.fields {
            seed.deserialize(BorrowedStrDeserializer::new(name))
                .map(Some)
        } else {
            // A user-chosen name (`Spanned<String>`): its shape does not matter.
            seed.deserialize(Recorder(&mut Shape::Leaf)).map(Some)
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (_, shape) = self
            .entries
            .get_mut(self.next)
            .ok_or_else(|| de::Error::custom("a map value without a key"))?;
        self.next += 1;
        seed.deserialize(Recorder(shape))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use toml::Spanned;

    use super::Shape::{Array, Leaf, Map, Table};
    use super::*;
    use crate::config::file::{FileHealth, FileRedirect, FileServerEntry, FileSize, OneOrMany};

    #[test]
    fn spanned_options_lists_and_maps_are_seen_through() {
        assert_eq!(shape_of::<Spanned<String>>().unwrap(), Leaf);
        let redirect = Table(vec![("to", Leaf), ("status", Leaf)]);
        assert_eq!(shape_of::<Spanned<FileRedirect>>().unwrap(), redirect);
        assert_eq!(
            shape_of::<Option<Spanned<FileRedirect>>>().unwrap(),
            redirect
        );
        assert_eq!(
            shape_of::<Vec<Spanned<FileRedirect>>>().unwrap(),
            Array(Box::new(redirect))
        );
        let health = shape_of::<BTreeMap<Spanned<String>, Spanned<FileHealth>>>().unwrap();
        let Map(health) = health else {
            panic!("{health:?}")
        };
        let Table(fields) = *health else {
            panic!("{health:?}")
        };
        let names: Vec<_> = fields.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["path", "interval", "timeout", "healthy", "unhealthy"]
        );
    }

    #[test]
    fn untagged_enums_are_leaves() {
        assert_eq!(shape_of::<OneOrMany>().unwrap(), Leaf);
        assert_eq!(shape_of::<FileServerEntry>().unwrap(), Leaf);
        assert_eq!(shape_of::<FileSize>().unwrap(), Leaf);
    }

    #[test]
    fn the_top_level_keys_in_declaration_order() {
        let names: Vec<_> = file_config().iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "admin",
                "server",
                "listen",
                "certificate",
                "upstream",
                "route"
            ]
        );
    }
}
