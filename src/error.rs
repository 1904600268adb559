//! The Runner's error model. Each module has its own error enum at its boundary; this
//! enum gathers them and says what each kind means for a message:
//!
//! | kind | meaning | what happens to the message |
//! |---|---|---|
//! | storage | the store cannot be read or written (I/O, `MAP_FULL`) | not acked; intake stops until the store is writable |
//! | storage, deterministic | the data cannot be stored or read back (key too long, record from an incompatible version) | quarantined, terminated |
//! | stream | NATS / JetStream trouble | not acked; redelivered |
//! | decode | not a valid envelope | quarantined, terminated |
//! | program | a saga program or correlate expression faulted | quarantined, terminated; instance faulted |
//! | tenant access | the message's tenant is not served here or is contradictory | quarantined, terminated |
//! | policy | a limit was exceeded (`max_deliver`) | quarantined, terminated |
//!
//! Settings and manifest errors stop start-up (or a reload) and never reach a message.

use crate::effects::EffectManifestError;
use crate::manifest::ManifestError;
use crate::nats_io::StreamError;
use crate::program::{Fault, LoadError};
use crate::settings::SettingsError;
use crate::store::{QuarantineKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    EffectManifest(#[from] EffectManifestError),
    #[error(transparent)]
    ProgramLoad(#[from] LoadError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("{0}")]
    Decode(String),
    #[error(transparent)]
    Program(#[from] Fault),
    /// A program fault described in text (e.g. with the saga that raised it).
    #[error("{0}")]
    ProgramText(String),
    #[error("{0}")]
    TenantAccess(String),
    #[error("{0}")]
    Policy(String),
    /// Anything else the command line reports (bad input files, missing tools).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// How a message that hit this error is quarantined; `None` for errors that are not
    /// the message's fault (it is left unacked and redelivered instead).
    pub fn quarantine_kind(&self) -> Option<QuarantineKind> {
        match self {
            Error::Decode(_) => Some(QuarantineKind::Decode),
            Error::Program(_) | Error::ProgramText(_) => Some(QuarantineKind::Program),
            Error::TenantAccess(_) => Some(QuarantineKind::TenantAccess),
            Error::Policy(_) => Some(QuarantineKind::MaxDeliver),
            Error::Storage(e) if e.is_deterministic() => Some(QuarantineKind::Store),
            _ => None,
        }
    }

    /// Retrying cannot help: the message must be quarantined, never redelivered forever.
    pub fn is_poison(&self) -> bool {
        self.quarantine_kind().is_some()
    }

    /// Intake must stop until an operator or time fixes it.
    pub fn stops_intake(&self) -> bool {
        matches!(self, Error::Storage(e) if !e.is_deterministic())
    }
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error::Other(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_errors_are_poison_and_storage_stops_intake() {
        assert_eq!(
            Error::Decode("x".into()).quarantine_kind(),
            Some(QuarantineKind::Decode)
        );
        assert_eq!(
            Error::TenantAccess("x".into()).quarantine_kind(),
            Some(QuarantineKind::TenantAccess)
        );
        assert_eq!(
            Error::Policy("x".into()).quarantine_kind(),
            Some(QuarantineKind::MaxDeliver)
        );
        assert!(Error::ProgramText("x".into()).is_poison());
        let full = Error::from(StoreError::MapFull);
        assert!(full.stops_intake() && !full.is_poison());
        assert!(!Error::Other("x".into()).is_poison());
        let corrupt = Error::from(StoreError::Corrupt {
            key: "saga:a:b:c".into(),
            message: "bad".into(),
        });
        assert_eq!(corrupt.quarantine_kind(), Some(QuarantineKind::Store));
        assert!(!corrupt.stops_intake());
    }
}
