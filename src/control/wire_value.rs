//! How one option value travels in an `a{sv}` dictionary, both ways.
//!
//! Each Rust type used in an options struct says which D-Bus type carries it and how it is
//! checked. Durations travel as microseconds (`t`) under a key ending in `_usec`, as
//! systemd does, so `busctl` users see the unit in the key. Files travel as their bytes
//! (`ay`), a set of error pages as `a{say}` keyed by file name.

use std::collections::BTreeMap;
use std::time::Duration;

use zbus::zvariant::{Array, Dict, Value};

use super::file_contents::{ErrorPageFiles, FileContents};
use super::{Host, PathPrefix, TargetAddress};

/// Why a value could not be decoded.
pub enum DecodeError {
    /// The D-Bus type is not the one this option takes.
    WrongType,
    /// The type is right but the value is not acceptable; the text says why.
    Invalid(String),
}

pub trait WireValue: Sized {
    /// The D-Bus signature this value travels as, for error messages and introspection.
    const SIGNATURE: &'static str;
    /// Appended to the option name to form the dictionary key.
    const KEY_SUFFIX: &'static str = "";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError>;
    fn encode(&self) -> Value<'static>;
}

impl WireValue for bool {
    const SIGNATURE: &'static str = "b";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        match value {
            Value::Bool(b) => Ok(*b),
            _ => Err(DecodeError::WrongType),
        }
    }
    fn encode(&self) -> Value<'static> {
        Value::Bool(*self)
    }
}

impl WireValue for String {
    const SIGNATURE: &'static str = "s";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        match value {
            Value::Str(s) => Ok(s.to_string()),
            _ => Err(DecodeError::WrongType),
        }
    }
    fn encode(&self) -> Value<'static> {
        Value::from(self.clone())
    }
}

impl WireValue for u64 {
    const SIGNATURE: &'static str = "t";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        match value {
            Value::U64(n) => Ok(*n),
            _ => Err(DecodeError::WrongType),
        }
    }
    fn encode(&self) -> Value<'static> {
        Value::U64(*self)
    }
}

impl WireValue for u16 {
    const SIGNATURE: &'static str = "q";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        match value {
            Value::U16(n) => Ok(*n),
            _ => Err(DecodeError::WrongType),
        }
    }
    fn encode(&self) -> Value<'static> {
        Value::U16(*self)
    }
}

impl WireValue for i32 {
    const SIGNATURE: &'static str = "i";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        match value {
            Value::I32(n) => Ok(*n),
            _ => Err(DecodeError::WrongType),
        }
    }
    fn encode(&self) -> Value<'static> {
        Value::I32(*self)
    }
}

impl WireValue for Duration {
    const SIGNATURE: &'static str = "t";
    const KEY_SUFFIX: &'static str = "_usec";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        u64::decode(value).map(Duration::from_micros)
    }
    fn encode(&self) -> Value<'static> {
        Value::U64(u64::try_from(self.as_micros()).unwrap_or(u64::MAX))
    }
}

/// Types that travel as a string and are parsed at the edge.
macro_rules! parsed_string {
    ($ty:ty) => {
        impl WireValue for $ty {
            const SIGNATURE: &'static str = "s";
            fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
                <$ty>::parse(&String::decode(value)?).map_err(DecodeError::Invalid)
            }
            fn encode(&self) -> Value<'static> {
                Value::from(self.as_str().to_string())
            }
        }
    };
}
parsed_string!(Host);
parsed_string!(PathPrefix);
parsed_string!(TargetAddress);

impl<T: WireValue> WireValue for Vec<T> {
    const SIGNATURE: &'static str = "as";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        match value {
            Value::Array(array) if array.element_signature().to_string() == "s" => {
                array.iter().map(T::decode).collect()
            }
            _ => Err(DecodeError::WrongType),
        }
    }
    fn encode(&self) -> Value<'static> {
        let strings: Vec<Value<'static>> = self.iter().map(T::encode).collect();
        let mut array = Array::new(&zbus::zvariant::Signature::Str);
        for item in strings {
            // Infallible: every element is a string, matching the array's signature.
            array
                .append(item)
                .expect("string element in a string array");
        }
        Value::Array(array)
    }
}

impl WireValue for FileContents {
    const SIGNATURE: &'static str = "ay";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        let Value::Array(array) = value else {
            return Err(DecodeError::WrongType);
        };
        if array.element_signature().to_string() != "y" {
            return Err(DecodeError::WrongType);
        }
        let bytes = array
            .iter()
            .map(|byte| match byte {
                Value::U8(byte) => Ok(*byte),
                _ => Err(DecodeError::WrongType),
            })
            .collect::<Result<Vec<u8>, _>>()?;
        FileContents::new(bytes).map_err(DecodeError::Invalid)
    }
    fn encode(&self) -> Value<'static> {
        Value::from(self.as_bytes().to_vec())
    }
}

impl WireValue for ErrorPageFiles {
    const SIGNATURE: &'static str = "a{say}";
    fn decode(value: &Value<'_>) -> Result<Self, DecodeError> {
        let Value::Dict(dict) = value else {
            return Err(DecodeError::WrongType);
        };
        if dict.signature().to_string() != Self::SIGNATURE {
            return Err(DecodeError::WrongType);
        }
        let files = dict
            .iter()
            .map(|(name, file)| Ok((String::decode(name)?, FileContents::decode(file)?)))
            .collect::<Result<BTreeMap<_, _>, DecodeError>>()?;
        ErrorPageFiles::new(files).map_err(DecodeError::Invalid)
    }
    fn encode(&self) -> Value<'static> {
        let files: BTreeMap<String, Vec<u8>> = self
            .iter()
            .map(|(name, file)| (name.to_string(), file.as_bytes().to_vec()))
            .collect();
        Value::Dict(Dict::from(files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::OwnedValue;

    /// `value` as the daemon receives it: through an `OwnedValue`, as in an `a{sv}`.
    fn received<T: WireValue>(value: &T) -> Result<T, DecodeError> {
        let owned = OwnedValue::try_from(value.encode()).expect("no file descriptors");
        T::decode(&owned)
    }

    fn contents(bytes: &[u8]) -> FileContents {
        FileContents::new(bytes.to_vec()).unwrap()
    }

    #[test]
    fn sends_file_bytes_as_a_byte_array_and_pages_as_a_dictionary() {
        let key = contents(b"-----BEGIN PRIVATE KEY-----\n\0\xff");
        assert_eq!(key.encode().value_signature().to_string(), "ay");
        assert!(received(&key).ok() == Some(key));

        let pages = ErrorPageFiles::new(BTreeMap::from([
            ("502.html".to_string(), contents(b"bad gateway")),
            (
                "503.html".to_string(),
                contents("d\u{e9}j\u{e0} vu".as_bytes()),
            ),
        ]))
        .unwrap();
        assert_eq!(pages.encode().value_signature().to_string(), "a{say}");
        assert!(received(&pages).ok() == Some(pages));
    }

    #[test]
    fn refuses_other_types_and_bad_page_names_when_decoding() {
        assert!(matches!(
            FileContents::decode(&Value::from("cert.pem")),
            Err(DecodeError::WrongType)
        ));
        assert!(matches!(
            FileContents::decode(&Value::from(vec![1u32, 2])),
            Err(DecodeError::WrongType)
        ));
        assert!(matches!(
            ErrorPageFiles::decode(&Value::from(vec!["503.html".to_string()])),
            Err(DecodeError::WrongType)
        ));
        let escaping = Value::Dict(Dict::from(BTreeMap::from([(
            "../503.html".to_string(),
            b"x".to_vec(),
        )])));
        assert!(matches!(
            ErrorPageFiles::decode(&escaping),
            Err(DecodeError::Invalid(why)) if why.contains("\"../503.html\"")
        ));
    }
}
