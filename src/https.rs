//! TLS of the Runner's HTTP clients (the Gateway client and the `http` effect provider):
//! the system's trust store (the image ships `ca-certificates`), plus the CAs of
//! `tls.ca_file` for a deployment whose Gateway or upstreams carry certificates of a
//! private CA. NATS has its own setting (`nats.tls_ca_file`, `nats_io::client_options`).
//!
//! One client configuration serves the whole process: the agents are built in places
//! that know nothing of the settings (a provider built from a manifest), so `runner run`
//! installs the configured CA file once at start-up ([`install`]), after the settings
//! checked that it loads ([`load_ca_file`]). Until then agents trust the system's roots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no PEM certificate")]
    NoCertificates { path: PathBuf },
    #[error("CA file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The configuration [`install`]ed, if any.
static INSTALLED: RwLock<Option<Arc<ClientConfig>>> = RwLock::new(None);
/// The system's roots alone, loaded once.
static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// A `ureq` agent builder speaking TLS with the process's client configuration.
pub fn agent_builder() -> ureq::AgentBuilder {
    ureq::AgentBuilder::new().tls_config(current())
}

/// The client configuration agents use now.
pub fn current() -> Arc<ClientConfig> {
    if let Some(config) = INSTALLED.read().as_ref() {
        return config.clone();
    }
    SYSTEM
        .get_or_init(|| Arc::new(config_with(system_roots())))
        .clone()
}

/// Makes agents built from now on trust the CAs of `ca_file` besides the system's
/// roots; an empty path means the system's roots alone.
pub fn install(ca_file: &Path) -> Result<(), TlsError> {
    let config = client_config(ca_file)?;
    *INSTALLED.write() = Some(config);
    Ok(())
}

/// The client configuration of `ca_file` (empty: none): the system's roots plus its CAs.
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = system_roots();
    if !ca_file.as_os_str().is_empty() {
        for cert in load_ca_file(ca_file)? {
            roots.add(cert).map_err(|e| TlsError::Invalid {
                path: ca_file.to_path_buf(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(Arc::new(config_with(roots)))
}

/// The certificates of a PEM file; an error names the file and what is wrong with it.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_path_buf(),
            message: format!("not PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    // Each must be a certificate a trust store takes.
    let mut check = RootCertStore::empty();
    for cert in &certs {
        check.add(cert.clone()).map_err(|e| TlsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// The system's trust store; when it has none (an image without `ca-certificates`), the
/// Mozilla roots built in, so HTTPS still works as it would have without a system store.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added > 0 {
                return roots;
            }
            log::warn!("the system trust store holds no usable certificate; using the built-in Mozilla roots");
        }
        Err(e) => {
            log::warn!(error = e.to_string(); "cannot read the system trust store; using the built-in Mozilla roots")
        }
    }
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn config_with(roots: RootCertStore) -> ClientConfig {
    // The ring provider explicitly, as ureq does: the process-wide default provider may be
    // ambiguous when more than one rustls backend is linked.
    match ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // The ring provider supports the default versions; kept total all the same.
        Err(_) => ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    }
}

/// A header value the wire takes: visible ASCII as it is, every other byte and `%`
/// itself as `%XX` (so the encoding is one-to-one: two command ids never share an
/// `idempotency-key`). Ids may hold any character but controls; an HTTP header may not,
/// and a refused header must not look like an upstream outage.
pub fn header_value(value: &str) -> std::borrow::Cow<'_, str> {
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');
    percent_encoding::utf8_percent_encode(value, ESCAPED).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_named_with_its_problem() {
        let dir = crate::dev::TempDir::new("tls").unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(&missing).unwrap_err().to_string();
        assert!(
            e.contains("cannot read CA file") && e.contains("missing.pem"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = client_config(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.pem"), "{e}");
        assert!(
            client_config(Path::new("")).is_ok(),
            "no file: system roots"
        );
    }
}
