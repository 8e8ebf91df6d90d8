//! How one option value travels in an `a{sv}` dictionary, both ways.
//!
//! Each Rust type used in an options struct says which D-Bus type carries it and how it is
//! checked. Durations travel as microseconds (`t`) under a key ending in `_usec`, as
//! systemd does, so `busctl` users see the unit in the key.

use std::time::Duration;

use zbus::zvariant::{Array, Value};

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
