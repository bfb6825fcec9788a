//! Serde adapters that keep the user's error text through postcard
//! (SPEC F10).
//!
//! postcard is built for devices without a heap: when a `Serialize` or
//! `Deserialize` impl fails with `Error::custom("...")`, it keeps only
//! "Serde Serialization Error" and drops the message. A user whose value
//! refuses to cross the process boundary needs that message, so the codec
//! runs every value through these adapters:
//!
//! * the adapters wrap postcard's serializer and deserializer, and every
//!   value, visitor and seed below them, so that the user's code sees
//!   *our* error type, which keeps the text ([`Failure::Custom`]);
//! * where such an error must go back into postcard (postcard called the
//!   wrapped code and expects its own error type), the text is put aside
//!   in a [`Capture`] shared by the whole call, and postcard gets its
//!   message-less error;
//! * at the top, an error that postcard reports for a custom failure is
//!   replaced by the text put aside.
//!
//! Errors only travel up (postcard is not self-describing, so nothing
//! buffers and retries), so the first text put aside is the root cause.
//!
//! Everything here forwards one call to the wrapped value and changes
//! nothing else: the bytes are exactly postcard's.

use std::cell::RefCell;
use std::fmt::{self, Display};

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

/// Where a custom message waits while postcard's own error travels up.
#[derive(Default)]
struct Capture {
    message: RefCell<Option<String>>,
}

impl Capture {
    fn keep(&self, message: String) {
        let mut slot = self.message.borrow_mut();
        if slot.is_none() {
            *slot = Some(message);
        }
    }

    fn take(&self) -> Option<String> {
        self.message.borrow_mut().take()
    }
}

/// The error type the user's serde code sees below the adapters.
#[derive(Debug)]
enum Failure<E> {
    /// Made by the user's code (`Error::custom` and the like): the text.
    Custom(String),
    /// The wrapped serializer's or deserializer's own error.
    Inner(E),
}

/// Back into a serializer's own error type, putting the text aside.
fn ser_back<E: ser::Error>(failure: Failure<E>, capture: &Capture) -> E {
    match failure {
        Failure::Custom(message) => {
            let error = E::custom(&message);
            capture.keep(message);
            error
        }
        Failure::Inner(e) => e,
    }
}

/// Back into a deserializer's own error type, putting the text aside.
fn de_back<E: de::Error>(failure: Failure<E>, capture: &Capture) -> E {
    match failure {
        Failure::Custom(message) => {
            let error = E::custom(&message);
            capture.keep(message);
            error
        }
        Failure::Inner(e) => e,
    }
}

impl<E: Display> Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Custom(m) => f.write_str(m),
            Failure::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + Display> std::error::Error for Failure<E> {}

impl<E: fmt::Debug + Display> ser::Error for Failure<E> {
    fn custom<T: Display>(msg: T) -> Self {
        Failure::Custom(msg.to_string())
    }
}

impl<E: fmt::Debug + Display> de::Error for Failure<E> {
    fn custom<T: Display>(msg: T) -> Self {
        Failure::Custom(msg.to_string())
    }
}

/// Appends `value`'s postcard encoding to `out`; on failure `out` is as
/// it was.
///
/// # Errors
///
/// The failure's text: the user's own message when their `Serialize`
/// impl made one, postcard's otherwise.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let capture = Capture::default();
    let tracked = Tracked {
        value,
        capture: &capture,
    };
    let start = out.len();
    match postcard::to_extend(&tracked, Append(out)) {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(start);
            Err(capture.take().unwrap_or_else(|| e.to_string()))
        }
    }
}

/// A `Vec` that postcard extends in place.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// Decodes a `T` from postcard bytes.
///
/// # Errors
///
/// As [`encode_into`], for the user's `Deserialize` impl.
pub(crate) fn decode<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let capture = Capture::default();
    let mut inner = postcard::Deserializer::from_bytes(bytes);
    let de = De {
        inner: &mut inner,
        capture: &capture,
    };
    T::deserialize(de).map_err(|e| match e {
        Failure::Custom(m) => m,
        Failure::Inner(e) => capture.take().unwrap_or_else(|| e.to_string()),
    })
}

// ------------------------------------------------------------ serializing ----

/// A value whose `Serialize` impl is given our serializer.
struct Tracked<'a, T: ?Sized> {
    value: &'a T,
    capture: &'a Capture,
}

impl<T: Serialize + ?Sized> Serialize for Tracked<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ser = Ser {
            inner: serializer,
            capture: self.capture,
        };
        self.value
            .serialize(ser)
            .map_err(|f| ser_back(f, self.capture))
    }
}

/// A serializer that hands [`Failure`] to the user's code.
struct Ser<'a, S> {
    inner: S,
    capture: &'a Capture,
}

/// A compound serializer (sequence, map, struct...) with the same job.
struct Compound<'a, C> {
    inner: C,
    capture: &'a Capture,
}

impl<'a, C> Compound<'a, C> {
    fn tracked<'v, T: ?Sized>(&self, value: &'v T) -> Tracked<'v, T>
    where
        'a: 'v,
    {
        Tracked {
            value,
            capture: self.capture,
        }
    }
}

macro_rules! forward_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, Self::Error> {
            self.inner.$method(v).map_err(Failure::Inner)
        }
    )*};
}

impl<'a, S: Serializer> Serializer for Ser<'a, S> {
    type Ok = S::Ok;
    type Error = Failure<S::Error>;
    type SerializeSeq = Compound<'a, S::SerializeSeq>;
    type SerializeTuple = Compound<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'a, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'a, S::SerializeMap>;
    type SerializeStruct = Compound<'a, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'a, S::SerializeStructVariant>;

    forward_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, Self::Error> {
        self.inner.serialize_none().map_err(Failure::Inner)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Self::Error> {
        let tracked = Tracked {
            value,
            capture: self.capture,
        };
        self.inner.serialize_some(&tracked).map_err(Failure::Inner)
    }

    fn serialize_unit(self) -> Result<S::Ok, Self::Error> {
        self.inner.serialize_unit().map_err(Failure::Inner)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, Self::Error> {
        self.inner
            .serialize_unit_variant(name, index, variant)
            .map_err(Failure::Inner)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        let tracked = Tracked {
            value,
            capture: self.capture,
        };
        self.inner
            .serialize_newtype_struct(name, &tracked)
            .map_err(Failure::Inner)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, Self::Error> {
        let tracked = Tracked {
            value,
            capture: self.capture,
        };
        self.inner
            .serialize_newtype_variant(name, index, variant, &tracked)
            .map_err(Failure::Inner)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        let inner = self.inner.serialize_seq(len).map_err(Failure::Inner)?;
        Ok(Compound {
            inner,
            capture: self.capture,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        let inner = self.inner.serialize_tuple(len).map_err(Failure::Inner)?;
        Ok(Compound {
            inner,
            capture: self.capture,
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        let capture = self.capture;
        let inner = self
            .inner
            .serialize_tuple_struct(name, len)
            .map_err(Failure::Inner)?;
        Ok(Compound { inner, capture })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        let capture = self.capture;
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)
            .map_err(Failure::Inner)?;
        Ok(Compound { inner, capture })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        let capture = self.capture;
        let inner = self.inner.serialize_map(len).map_err(Failure::Inner)?;
        Ok(Compound { inner, capture })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        let capture = self.capture;
        let inner = self
            .inner
            .serialize_struct(name, len)
            .map_err(Failure::Inner)?;
        Ok(Compound { inner, capture })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        let capture = self.capture;
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)
            .map_err(Failure::Inner)?;
        Ok(Compound { inner, capture })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// One compound trait: its element methods take values, which are
/// tracked; `end` forwards.
macro_rules! compound {
    ($trait:ident { $($method:ident($($arg:ident: $ty:ty),*) value),* }) => {
        impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = Failure<C::Error>;

            $(
                fn $method<T: Serialize + ?Sized>(
                    &mut self,
                    $($arg: $ty,)*
                    value: &T,
                ) -> Result<(), Self::Error> {
                    let tracked = self.tracked(value);
                    self.inner.$method($($arg,)* &tracked).map_err(Failure::Inner)
                }
            )*

            fn end(self) -> Result<C::Ok, Self::Error> {
                self.inner.end().map_err(Failure::Inner)
            }
        }
    };
}

compound!(SerializeSeq { serialize_element() value });
compound!(SerializeTuple { serialize_element() value });
compound!(SerializeTupleStruct { serialize_field() value });
compound!(SerializeTupleVariant { serialize_field() value });
compound!(SerializeMap { serialize_key() value, serialize_value() value });
compound!(SerializeStruct { serialize_field(key: &'static str) value });
compound!(SerializeStructVariant { serialize_field(key: &'static str) value });

// ---------------------------------------------------------- deserializing ----

/// A deserializer that hands [`Failure`] to the user's code.
struct De<'a, D> {
    inner: D,
    capture: &'a Capture,
}

/// A visitor, seed or access object wrapped with the same job.
struct Wrap<'a, T> {
    inner: T,
    capture: &'a Capture,
}

impl<'a, D> De<'a, D> {
    fn wrap<T>(&self, inner: T) -> Wrap<'a, T> {
        Wrap {
            inner,
            capture: self.capture,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor).map_err(Failure::Inner)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = Failure<D::Error>;

    forward_deserialize!(
        deserialize_any(),
        deserialize_bool(),
        deserialize_i8(),
        deserialize_i16(),
        deserialize_i32(),
        deserialize_i64(),
        deserialize_i128(),
        deserialize_u8(),
        deserialize_u16(),
        deserialize_u32(),
        deserialize_u64(),
        deserialize_u128(),
        deserialize_f32(),
        deserialize_f64(),
        deserialize_char(),
        deserialize_str(),
        deserialize_string(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_option(),
        deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
        deserialize_ignored_any(),
    );

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            let capture = self.capture;
            self.inner.$method::<Failure<E>>(v).map_err(|f| de_back(f, capture))
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        let capture = self.capture;
        self.inner
            .visit_none::<Failure<E>>()
            .map_err(|f| de_back(f, capture))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        let capture = self.capture;
        self.inner
            .visit_unit::<Failure<E>>()
            .map_err(|f| de_back(f, capture))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let capture = self.capture;
        let de = De { inner: d, capture };
        self.inner.visit_some(de).map_err(|f| de_back(f, capture))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let capture = self.capture;
        let de = De { inner: d, capture };
        self.inner
            .visit_newtype_struct(de)
            .map_err(|f| de_back(f, capture))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let capture = self.capture;
        let seq = Wrap {
            inner: seq,
            capture,
        };
        self.inner.visit_seq(seq).map_err(|f| de_back(f, capture))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let capture = self.capture;
        let map = Wrap {
            inner: map,
            capture,
        };
        self.inner.visit_map(map).map_err(|f| de_back(f, capture))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let capture = self.capture;
        let data = Wrap {
            inner: data,
            capture,
        };
        self.inner.visit_enum(data).map_err(|f| de_back(f, capture))
    }
}

/// A seed whose `Deserialize` impl is given our deserializer.
struct Seed<'a, T> {
    inner: T,
    capture: &'a Capture,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        let capture = self.capture;
        let de = De { inner: d, capture };
        self.inner.deserialize(de).map_err(|f| de_back(f, capture))
    }
}

impl<'a, T> Wrap<'a, T> {
    fn seed<S>(&self, inner: S) -> Seed<'a, S> {
        Seed {
            inner,
            capture: self.capture,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Wrap<'_, A> {
    type Error = Failure<A::Error>;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let seed = self.seed(seed);
        self.inner.next_element_seed(seed).map_err(Failure::Inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Wrap<'_, A> {
    type Error = Failure<A::Error>;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let seed = self.seed(seed);
        self.inner.next_key_seed(seed).map_err(Failure::Inner)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed).map_err(Failure::Inner)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'a, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Wrap<'a, A> {
    type Error = Failure<A::Error>;
    type Variant = Wrap<'a, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Self::Error> {
        let capture = self.capture;
        let seed = self.seed(seed);
        let (value, variant) = self.inner.variant_seed(seed).map_err(Failure::Inner)?;
        Ok((
            value,
            Wrap {
                inner: variant,
                capture,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<'_, A> {
    type Error = Failure<A::Error>;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant().map_err(Failure::Inner)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let seed = self.seed(seed);
        self.inner
            .newtype_variant_seed(seed)
            .map_err(Failure::Inner)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = Wrap {
            inner: visitor,
            capture: self.capture,
        };
        self.inner
            .tuple_variant(len, visitor)
            .map_err(Failure::Inner)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = Wrap {
            inner: visitor,
            capture: self.capture,
        };
        self.inner
            .struct_variant(fields, visitor)
            .map_err(Failure::Inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Pair(u8, i64),
        Rect { w: u32, h: u32 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        flag: bool,
        small: i8,
        big: u128,
        text: String,
        letter: char,
        bytes: Vec<u8>,
        maybe: Option<Box<Everything>>,
        shapes: Vec<Shape>,
        map: BTreeMap<String, (u16, f32)>,
        unit: (),
    }

    fn sample() -> Everything {
        Everything {
            flag: true,
            small: -3,
            big: u128::MAX - 7,
            text: "héllo".into(),
            letter: 'ß',
            bytes: vec![0, 255, 128],
            maybe: Some(Box::new(Everything {
                flag: false,
                small: 0,
                big: 0,
                text: String::new(),
                letter: 'a',
                bytes: Vec::new(),
                maybe: None,
                shapes: vec![Shape::Dot],
                map: BTreeMap::new(),
                unit: (),
            })),
            shapes: vec![
                Shape::Dot,
                Shape::Circle(1.5),
                Shape::Pair(7, -9),
                Shape::Rect { w: 3, h: 4 },
            ],
            map: [("k".to_owned(), (1, 2.5))].into_iter().collect(),
            unit: (),
        }
    }

    #[test]
    fn miri_the_bytes_are_exactly_postcards() {
        let value = sample();
        let mut ours = b"kept".to_vec();
        encode_into(&value, &mut ours).unwrap();
        assert_eq!(&ours[..4], b"kept");
        let ours = ours.split_off(4);
        assert_eq!(ours, postcard::to_allocvec(&value).unwrap());
        assert_eq!(decode::<Everything>(&ours).unwrap(), value);
    }

    /// Refuses to serialize, deep inside a structure, with its own text.
    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("the socket cannot be sent"))
        }
    }

    /// Refuses to deserialize values above a limit, with its own text.
    #[derive(Debug, Serialize)]
    struct Small(u32);

    impl<'de> Deserialize<'de> for Small {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let n = u32::deserialize(d)?;
            if n > 10 {
                return Err(de::Error::custom(format!("{n} is more than 10")));
            }
            Ok(Small(n))
        }
    }

    #[test]
    fn miri_a_custom_serialize_error_keeps_its_text_at_any_depth() {
        // SPEC F10
        let nested = (1u8, vec![Some(BTreeMap::from([("x", Refuses)]))]);
        let mut out = b"before".to_vec();
        let e = encode_into(&nested, &mut out).unwrap_err();
        assert_eq!(e, "the socket cannot be sent");
        assert_eq!(
            out, b"before",
            "a failed encoding leaves the buffer as it was"
        );
        assert_eq!(
            encode_into(&Refuses, &mut Vec::new()).unwrap_err(),
            "the socket cannot be sent"
        );
    }

    #[test]
    fn miri_a_custom_deserialize_error_keeps_its_text_at_any_depth() {
        // SPEC F10
        let bytes = postcard::to_allocvec(&(vec![Small(1), Small(11)], 3u8)).unwrap();
        let e = decode::<(Vec<Small>, u8)>(&bytes).unwrap_err();
        assert_eq!(e, "11 is more than 10");
        let bytes = postcard::to_allocvec(&Some(Small(12))).unwrap();
        assert_eq!(
            decode::<Option<Small>>(&bytes).unwrap_err(),
            "12 is more than 10"
        );
    }

    #[test]
    fn miri_postcards_own_errors_keep_postcards_text() {
        let e = decode::<(u64, String)>(&[1]).unwrap_err();
        assert!(e.contains("end of buffer"), "{e}");
    }
}
