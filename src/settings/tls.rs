//! `[tls]`: TLS of the Runner's HTTP clients (the Gateway and `http` effects). NATS has
//! its own TLS settings in `[nats]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{bad, SettingsError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM CA certificate(s) the HTTP clients trust besides the system's roots (a
    /// Gateway or upstream with a certificate of a private CA); empty: the system's
    /// roots alone.
    pub ca_file: PathBuf,
}

impl TlsSettings {
    /// A CA file that cannot be read or holds no usable certificate is refused here, at
    /// load, rather than as a TLS failure on the first call.
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        if self.ca_file.as_os_str().is_empty() {
            return Ok(());
        }
        match crate::https::load_ca_file(&self.ca_file) {
            Ok(_) => Ok(()),
            Err(e) => bad("tls.ca_file", e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::tests::assert_each_rejected;

    #[test]
    fn validation_rejects_a_ca_file_that_does_not_load() {
        assert_each_rejected(&[("RUNNER_TLS_CA_FILE", "/nonexistent/ca.pem", "tls.ca_file")]);
    }
}
