//! How the store's rows read the values both databases keep as plain text or integers: the
//! domain's enums (stored as their `as_str()` text), JSON documents and integer flags.
//!
//! Every check happens while decoding, so a bad value fails with a message that names its column
//! and the value. (The conversions `#[sqlx(try_from)]` adds after decoding lose their error's
//! message in sqlx 0.8, so the ones used here never fail.)

use serde::de::DeserializeOwned;
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Decode, Type};

use crate::domain::{AssetKind, Direction, Role, RunState, RunType, TaskState};

/// The domain's enums read from their text.
macro_rules! text_columns {
    ($($name:ty),+) => {$(
        impl Type<Any> for $name {
            fn type_info() -> AnyTypeInfo {
                <String as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <String as Type<Any>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<$name>::parse(<&str as Decode<'r, Any>>::decode(value)?)?)
            }
        }
    )+};
}

text_columns!(RunState, RunType, TaskState, Role, Direction, AssetKind);

/// A nullable text column holding a JSON document; NULL reads as the type's default (an empty
/// object or list).
pub(super) struct Json<T>(T);

impl<T> Type<Any> for Json<T> {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r, T: DeserializeOwned + Default> Decode<'r, Any> for Json<T> {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        match <Option<&str> as Decode<'r, Any>>::decode(value)? {
            None => Ok(Json(T::default())),
            Some(text) => Ok(Json(serde_json::from_str(text)?)),
        }
    }
}

impl From<Json<serde_json::Map<String, serde_json::Value>>>
    for serde_json::Map<String, serde_json::Value>
{
    fn from(json: Json<serde_json::Map<String, serde_json::Value>>) -> Self {
        json.0
    }
}

impl From<Json<Vec<String>>> for Vec<String> {
    fn from(json: Json<Vec<String>>) -> Self {
        json.0
    }
}

/// A flag stored as an integer (0 or 1): both databases compare it the same way.
pub(super) struct IntFlag(i64);

impl Type<Any> for IntFlag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for IntFlag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(IntFlag(<i64 as Decode<'r, Any>>::decode(value)?))
    }
}

impl From<IntFlag> for bool {
    fn from(flag: IntFlag) -> bool {
        flag.0 != 0
    }
}

/// An optional count stored as a signed integer.
pub(super) struct Count(Option<i64>);

impl Type<Any> for Count {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Count {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Count(<Option<i64> as Decode<'r, Any>>::decode(value)?))
    }
}

impl From<Count> for Option<u64> {
    fn from(count: Count) -> Option<u64> {
        count.0.map(|n| n.max(0) as u64)
    }
}

/// A JSON object column.
pub(super) type JsonObject = Json<serde_json::Map<String, serde_json::Value>>;

/// A JSON list of strings column.
pub(super) type JsonList = Json<Vec<String>>;
