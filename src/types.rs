//! Core identifiers. Each is a validated string wrapper so that a value which reaches a
//! storage key or a NATS subject has already been checked for the characters those
//! places cannot carry.
//!
//! Ids hold shared strings (`Arc<str>`): every transition, outbox item and timer carries
//! copies of its ids, and a shared string is copied without an allocation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {problem}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub problem: &'static str,
}

fn id_error(kind: &'static str, value: &str, problem: &'static str) -> IdError {
    let mut shown: String = value.chars().take(80).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    IdError {
        kind,
        value: shown,
        problem,
    }
}

/// Characters allowed in tenant ids and saga/effect names: they appear as single NATS
/// subject tokens and as storage key segments, so no `.`, `*`, `>`, `:` or whitespace.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_token(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(id_error(kind, value, "must not be empty"));
    }
    if value.len() > max {
        return Err(id_error(kind, value, "is too long"));
    }
    if !value.chars().all(is_token_char) {
        return Err(id_error(
            kind,
            value,
            "may only contain ASCII letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// A tenant id. The empty id is the single tenant; it is written `_` in subjects and keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub const MAX_LEN: usize = 64;
    /// How the single (empty) tenant is written in subjects and storage keys.
    pub const SINGLE_TOKEN: &'static str = "_";

    /// The single-tenant id.
    pub fn single() -> Self {
        TenantId(Arc::from(""))
    }

    pub fn new(value: &str) -> Result<Self, IdError> {
        value.parse()
    }

    pub fn is_single(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used as a subject token and a storage key segment (`_` for the single tenant).
    pub fn token(&self) -> &str {
        if self.0.is_empty() {
            Self::SINGLE_TOKEN
        } else {
            &self.0
        }
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    /// `""` and `"_"` both mean the single tenant, so a subject token parses back.
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s == Self::SINGLE_TOKEN {
            return Ok(TenantId::single());
        }
        check_token("tenant id", s, Self::MAX_LEN)?;
        Ok(TenantId(Arc::from(s)))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares a validated, token-like name type (saga and effect names).
macro_rules! token_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub const MAX_LEN: usize = 64;
            pub fn new(value: &str) -> Result<Self, IdError> {
                value.parse()
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                check_token($kind, s, Self::MAX_LEN)?;
                Ok($name(Arc::from(s)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_name!(
    /// The name of a saga as declared in a manifest.
    SagaName,
    "saga name"
);
token_name!(
    /// The name of an effect (`workflow.cmd.{tenant}.{effect}`).
    EffectName,
    "effect name"
);

/// Bytes `value` takes as an escaped storage key segment (`keys::escape` writes `:` and
/// `%` as three bytes each).
pub fn key_segment_len(value: &str) -> usize {
    value.len() + 2 * value.bytes().filter(|b| matches!(b, b':' | b'%')).count()
}

/// Declares a free-text id type: any non-empty UTF-8 without control characters, bounded
/// in its *escaped* length so every storage key stays under LMDB's 511-byte key limit
/// (the longest, a timer key, is at most 9 + 64 + 1 + 64 + 1 + 128 + 1 + 16 + 1 + 128 =
/// 413 bytes).
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub const MAX_LEN: usize = $max;
            pub fn new(value: &str) -> Result<Self, IdError> {
                value.parse()
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                if s.is_empty() {
                    return Err(id_error($kind, s, "must not be empty"));
                }
                if key_segment_len(s) > Self::MAX_LEN {
                    return Err(id_error($kind, s, "is too long (at most 128 bytes, ':' and '%' count 3)"));
                }
                if s.chars().any(char::is_control) {
                    return Err(id_error($kind, s, "must not contain control characters"));
                }
                Ok($name(Arc::from(s)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// Identifies one saga instance within (tenant, saga): the value of the trigger's
    /// `correlate` expression.
    CorrelationId,
    "correlation id",
    128
);
text_id!(
    /// Identifies one unit of outbox work (a command id).
    WorkId,
    "work id",
    128
);
text_id!(
    /// The `event_id` of an envelope; the saga dedupe key.
    EventId,
    "event id",
    128
);

/// Serde for every id type: as its string form, validated on the way in.
macro_rules! serde_as_str {
    ($($name:ident),*) => {$(
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_str!(
    TenantId,
    SagaName,
    EffectName,
    CorrelationId,
    WorkId,
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn core_types_are_send_and_sync() {
        assert_send_sync::<TenantId>();
        assert_send_sync::<SagaName>();
        assert_send_sync::<EffectName>();
        assert_send_sync::<CorrelationId>();
        assert_send_sync::<WorkId>();
        assert_send_sync::<EventId>();
    }

    #[test]
    fn tenant_round_trips_through_display_and_from_str() {
        for raw in ["acme", "tenant-7", "A_b-9"] {
            let t: TenantId = raw.parse().unwrap();
            assert_eq!(t.to_string(), raw);
            assert_eq!(t.to_string().parse::<TenantId>().unwrap(), t);
            assert_eq!(t.token(), raw);
        }
    }

    #[test]
    fn empty_tenant_is_the_default_single_tenant() {
        let t = TenantId::default();
        assert!(t.is_single());
        assert_eq!(t.to_string(), "");
        assert_eq!(t.token(), "_");
        assert_eq!("".parse::<TenantId>().unwrap(), t);
        assert_eq!("_".parse::<TenantId>().unwrap(), t);
    }

    #[test]
    fn tenant_serde_round_trip() {
        let t: TenantId = "acme".parse().unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"acme\"");
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<TenantId>("\"\"").unwrap(),
            TenantId::single()
        );
        assert!(serde_json::from_str::<TenantId>("\"a.b\"").is_err());
    }

    #[test]
    fn tenant_rejects_subject_and_key_metacharacters() {
        for bad in ["a.b", "a*", ">", "a:b", "a b", "é"] {
            let err = bad.parse::<TenantId>().unwrap_err();
            assert_eq!(err.kind, "tenant id", "{bad}");
        }
        assert!("x".repeat(65).parse::<TenantId>().is_err());
    }

    #[test]
    fn names_and_text_ids_validate() {
        assert!(SagaName::new("order_fulfilment").is_ok());
        assert!(SagaName::new("").is_err());
        assert!(EffectName::new("charge.card").is_err());
        assert!(CorrelationId::new("o-1001:with:colons").is_ok());
        assert!(CorrelationId::new("line\nbreak").is_err());
        assert!(CorrelationId::new(&"x".repeat(129)).is_err());
        assert!(CorrelationId::new(&"x".repeat(128)).is_ok());
        // Escaping makes ':' three bytes in a key: 43 colons are 129 key bytes.
        assert!(EventId::new(&":".repeat(43)).is_err());
        assert!(EventId::new(&":".repeat(42)).is_ok());
        assert!(WorkId::new("").is_err());
    }
}
