//! The Runner's credentials and TLS towards NATS, read from the files `[nats]` names,
//! and what a refused connection means in the settings' terms.
//!
//! The files are read and checked once, when the process starts (`runner run`, `runner
//! check`): a missing file, a password file that is empty, a seed that is not one or a
//! certificate that does not parse stops start-up naming the setting. Secrets live in
//! memory only as long as the client needs them (the password and seed for every
//! reconnect; a creds file is read again at each connect by the client itself) and are
//! never formatted: [`Secret`] prints as `<redacted>`, and no error quotes a file's
//! content.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nats::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::StreamError;
use crate::settings::{NatsAuth, NatsSettings};

/// A secret string: its `Debug` never shows it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone)]
enum Auth {
    None,
    /// The client reads the creds file at each connect (it zeroes what it read).
    Creds(PathBuf),
    Nkey {
        public: String,
        pair: Arc<nkeys::KeyPair>,
    },
    UserPassword {
        user: String,
        password: Secret,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Creds(path) => f.debug_tuple("Creds").field(path).finish(),
            Auth::Nkey { public, .. } => f.debug_struct("Nkey").field("public", public).finish(),
            Auth::UserPassword { user, password } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", password)
                .finish(),
        }
    }
}

/// How the Runner connects: the server URL(s), its credentials and its TLS.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    auth: Auth,
    tls_required: bool,
    /// Set when `tls_ca_file` is: roots from the file, the client certificate, the name.
    tls: Option<Arc<TlsFiles>>,
    /// Without a CA file: the client certificate the client loads itself.
    client_cert: Option<(PathBuf, PathBuf)>,
    /// What it was made of: the URL, and which settings decided what, for errors.
    settings: NatsSettings,
}

/// The TLS client configuration built from the CA, certificate and key files.
struct TlsFiles(rustls::ClientConfig);

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsFiles(..)")
    }
}

fn invalid(field: &str, path: &Path, problem: impl fmt::Display) -> StreamError {
    StreamError::Secret {
        field: field.to_string(),
        problem: format!("{}: {problem}", path.display()),
    }
}

/// The file's text; unreadable, empty and non-UTF-8 files are errors of `field`.
fn read_text(field: &str, path: &Path) -> Result<String, StreamError> {
    let bytes =
        std::fs::read(path).map_err(|e| invalid(field, path, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid(field, path, "is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(invalid(field, path, "is empty"));
    }
    Ok(text)
}

fn set(path: &Path) -> bool {
    !path.as_os_str().is_empty()
}

impl ClientOptions {
    /// No credentials and TLS only if the server asks: development and test servers.
    pub fn plain(url: &str) -> ClientOptions {
        ClientOptions {
            auth: Auth::None,
            tls_required: false,
            tls: None,
            client_cert: None,
            settings: NatsSettings {
                url: url.to_string(),
                ..NatsSettings::default()
            },
        }
    }

    /// Reads and checks every file `[nats]` names.
    pub fn load(settings: &NatsSettings) -> Result<ClientOptions, StreamError> {
        let auth = match settings.auth() {
            NatsAuth::Creds(path) => {
                let text = read_text("nats.creds_file", path)?;
                // Parsed to check it only; the client reads the file again when it connects.
                if nats::Options::with_static_credentials(&text).is_err() {
                    return Err(invalid(
                        "nats.creds_file",
                        path,
                        "is not a NATS credentials file (a user JWT and a user nkey seed, as nsc writes them)",
                    ));
                }
                Auth::Creds(path.to_path_buf())
            }
            NatsAuth::Nkey(path) => {
                let text = read_text("nats.nkey_file", path)?;
                let pair = text
                    .lines()
                    .map(str::trim)
                    .find(|line| line.starts_with("SU"))
                    .and_then(|seed| nkeys::KeyPair::from_seed(seed).ok())
                    .ok_or_else(|| {
                        invalid(
                            "nats.nkey_file",
                            path,
                            "holds no user nkey seed (a line starting with SU)",
                        )
                    })?;
                Auth::Nkey {
                    public: pair.public_key(),
                    pair: Arc::new(pair),
                }
            }
            NatsAuth::UserPassword {
                user,
                password_file,
            } => {
                let text = read_text("nats.password_file", password_file)?;
                Auth::UserPassword {
                    user: user.to_string(),
                    password: Secret(text.trim_end_matches(['\r', '\n']).to_string()),
                }
            }
            NatsAuth::None => Auth::None,
        };

        let has_cert = set(&settings.tls_cert_file);
        let client_cert = if has_cert {
            Some((
                load_certs("nats.tls_cert_file", &settings.tls_cert_file)?,
                load_key(&settings.tls_key_file)?,
            ))
        } else {
            None
        };
        let tls = if set(&settings.tls_ca_file) {
            Some(Arc::new(TlsFiles(tls_config(settings, client_cert)?)))
        } else {
            None
        };
        Ok(ClientOptions {
            auth,
            // TLS material is configured to be used: a server that offers no TLS is refused
            // rather than spoken to in the clear.
            tls_required: settings.tls_required
                || set(&settings.tls_ca_file)
                || has_cert
                || !settings.tls_server_name.is_empty(),
            client_cert: (tls.is_none() && has_cert).then(|| {
                (
                    settings.tls_cert_file.clone(),
                    settings.tls_key_file.clone(),
                )
            }),
            tls,
            settings: settings.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// The client's options with these credentials and TLS; the caller adds the rest.
    pub(super) fn nats_options(&self) -> nats::Options {
        let options = match &self.auth {
            Auth::None => nats::Options::new(),
            Auth::Creds(path) => nats::Options::with_credentials(path),
            Auth::Nkey { public, pair } => {
                let pair = pair.clone();
                // Signing with a valid seed does not fail; an empty signature would be
                // refused by the server as an authorization violation.
                nats::Options::with_nkey(public, move |nonce| pair.sign(nonce).unwrap_or_default())
            }
            Auth::UserPassword { user, password } => {
                nats::Options::with_user_pass(user, &password.0)
            }
        };
        let options = options.tls_required(self.tls_required);
        let options = match &self.tls {
            Some(files) => options.tls_client_config(files.0.clone()),
            None => options,
        };
        match &self.client_cert {
            Some((cert, key)) => options.client_cert(cert, key),
            None => options,
        }
    }

    /// Says in the settings' terms why the server refused the connection, when it was
    /// for the credentials or TLS; `None` for anything else (unreachable, say).
    pub(super) fn refusal(&self, error: &std::io::Error) -> Option<String> {
        let text = error.to_string();
        let lower = text.to_ascii_lowercase();
        let s = &self.settings;
        if lower.contains("authorization violation") || lower.contains("authentication") {
            let what = match &self.auth {
                Auth::None => "no credentials are set (nats.user with nats.password_file, \
                               nats.nkey_file or nats.creds_file)"
                    .to_string(),
                Auth::Creds(path) => format!("check nats.creds_file ({})", path.display()),
                Auth::Nkey { public, .. } => format!(
                    "check nats.nkey_file ({}, public key {public}) against the server's users",
                    s.nkey_file.display()
                ),
                Auth::UserPassword { user, .. } => format!(
                    "check nats.user ({user}) and nats.password_file ({})",
                    s.password_file.display()
                ),
            };
            let kind = if lower.contains("expired") {
                "its credentials expired"
            } else {
                "authorization violation"
            };
            return Some(format!(
                "the server refused the Runner's credentials ({kind}): {what}"
            ));
        }
        let ca = if set(&s.tls_ca_file) {
            format!("nats.tls_ca_file ({})", s.tls_ca_file.display())
        } else {
            "the system's roots (nats.tls_ca_file is not set)".to_string()
        };
        if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            return Some(format!(
                "the server's certificate is not trusted: it does not chain to a CA of {ca}"
            ));
        }
        if text.contains("NotValidForName") {
            let name = if s.tls_server_name.is_empty() {
                format!("the host it connected to (of {})", s.url)
            } else {
                format!("nats.tls_server_name ({})", s.tls_server_name)
            };
            return Some(format!(
                "the server's certificate is not valid for {name}: connect by a name the \
                 certificate carries, or set nats.tls_server_name to one"
            ));
        }
        if text.contains("Expired") || text.contains("NotValidYet") {
            return Some(format!(
                "the server's certificate is outside its validity period ({text})"
            ));
        }
        if text.contains("InvalidCertificate") || text.contains("invalid peer certificate") {
            return Some(format!(
                "the server's certificate was refused ({text}); checked against {ca}"
            ));
        }
        let alert = text.contains("received fatal alert")
            && (text.contains("BadCertificate")
                || text.contains("UnknownCA")
                || text.contains("CertificateRequired")
                || text.contains("CertificateUnknown")
                || text.contains("DecryptError"));
        if alert {
            let client = if set(&s.tls_cert_file) {
                format!(
                    "nats.tls_cert_file ({}) is not signed by a CA the server trusts",
                    s.tls_cert_file.display()
                )
            } else {
                "the server requires a client certificate: set nats.tls_cert_file and \
                 nats.tls_key_file"
                    .to_string()
            };
            return Some(format!(
                "the server refused the Runner's client certificate: {client}"
            ));
        }
        None
    }
}

fn load_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, StreamError> {
    read_text(field, path)?;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(field, path, format!("is not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid(field, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, StreamError> {
    let field = "nats.tls_key_file";
    read_text(field, path)?;
    // The parser's error names the PEM section it stopped at, never key material.
    PrivateKeyDer::from_pem_file(path).map_err(|_| {
        invalid(
            field,
            path,
            "holds no PEM private key (PKCS#8, SEC1 or PKCS#1)",
        )
    })
}

/// The TLS configuration of `tls_ca_file`: its CAs as the only roots, the client
/// certificate if any, and the server name to check if set.
fn tls_config(
    settings: &NatsSettings,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, StreamError> {
    let ca_field = "nats.tls_ca_file";
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca_field, &settings.tls_ca_file)? {
        roots.add(cert).map_err(|e| {
            invalid(
                ca_field,
                &settings.tls_ca_file,
                format!("not a CA certificate: {e}"),
            )
        })?;
    }
    let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| invalid(ca_field, &settings.tls_ca_file, e))?;
    let builder = rustls::ClientConfig::builder();
    let builder = if settings.tls_server_name.is_empty() {
        builder.with_webpki_verifier(verifier)
    } else {
        let name = ServerName::try_from(settings.tls_server_name.clone()).map_err(|_| {
            StreamError::Secret {
                field: "nats.tls_server_name".into(),
                problem: "not a DNS name or an IP address".into(),
            }
        })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NamedVerifier {
                inner: verifier,
                name,
            }))
    };
    match client_cert {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| {
            invalid(
                "nats.tls_key_file",
                &settings.tls_key_file,
                format!("does not fit nats.tls_cert_file ({e})"),
            )
        }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Checks the server's certificate against `name` instead of the host the client
/// connected to; everything else as webpki does.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _connected_to: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::TempDir;

    fn settings() -> NatsSettings {
        NatsSettings::default()
    }

    fn problem(result: Result<ClientOptions, StreamError>) -> (String, String) {
        match result.unwrap_err() {
            StreamError::Secret { field, problem } => (field, problem),
            other => panic!("expected a file problem, got {other}"),
        }
    }

    #[test]
    fn each_file_is_read_and_checked_naming_its_setting() {
        let dir = TempDir::new("nats-files").unwrap();
        let missing = dir.path().join("missing");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "SECRET-CONTENT-1234").unwrap();

        let mut s = settings();
        s.user = "runner".into();
        s.password_file = missing.clone();
        let (field, text) = problem(ClientOptions::load(&s));
        assert_eq!(field, "nats.password_file");
        assert!(
            text.contains("cannot read") && text.contains("missing"),
            "{text}"
        );
        s.password_file = empty.clone();
        assert_eq!(problem(ClientOptions::load(&s)).0, "nats.password_file");

        for (field, set_it) in [
            (
                "nats.nkey_file",
                (|s: &mut NatsSettings, p| s.nkey_file = p) as fn(&mut NatsSettings, PathBuf),
            ),
            ("nats.creds_file", |s, p| s.creds_file = p),
            ("nats.tls_ca_file", |s, p| s.tls_ca_file = p),
            ("nats.tls_cert_file", |s, p| {
                s.tls_cert_file = p;
                s.tls_key_file = PathBuf::from("/nonexistent");
            }),
        ] {
            let mut s = settings();
            set_it(&mut s, garbage.clone());
            let (named, text) = problem(ClientOptions::load(&s));
            assert_eq!(named, field);
            assert!(
                !text.contains("SECRET-CONTENT"),
                "{field} quoted the file: {text}"
            );
            let mut s = settings();
            set_it(&mut s, missing.clone());
            assert_eq!(problem(ClientOptions::load(&s)).0, field);
        }
    }

    #[test]
    fn a_password_file_loses_its_final_newline_and_never_prints() {
        let dir = TempDir::new("nats-files").unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "pa ss\n").unwrap();
        let mut s = settings();
        s.user = "runner".into();
        s.password_file = file;
        let options = ClientOptions::load(&s).unwrap();
        match &options.auth {
            Auth::UserPassword { password, .. } => assert_eq!(password.0, "pa ss"),
            other => panic!("{other:?}"),
        }
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("pa ss") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn an_nkey_seed_and_a_creds_file_load_without_printing_their_secrets() {
        let dir = TempDir::new("nats-files").unwrap();
        let pair = nkeys::KeyPair::new_user();
        let seed = pair.seed().unwrap();
        let nk = dir.path().join("runner.nk");
        std::fs::write(&nk, format!("# runner\n{seed}\n")).unwrap();
        let mut s = settings();
        s.nkey_file = nk;
        let options = ClientOptions::load(&s).unwrap();
        let shown = format!("{options:?}");
        assert!(
            shown.contains(&pair.public_key()) && !shown.contains(&seed),
            "{shown}"
        );
        // An account seed is not a user's.
        std::fs::write(&s.nkey_file, nkeys::KeyPair::new_account().seed().unwrap()).unwrap();
        assert_eq!(problem(ClientOptions::load(&s)).0, "nats.nkey_file");

        // The creds format nsc writes: the JWT is only carried to the server, so any
        // token stands in for one here; the seed must be a user seed.
        let creds = dir.path().join("runner.creds");
        std::fs::write(
            &creds,
            format!(
                "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.c2ln\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .unwrap();
        let mut s = settings();
        s.creds_file = creds;
        let options = ClientOptions::load(&s).unwrap();
        assert!(!format!("{options:?}").contains(&seed));
    }
}
