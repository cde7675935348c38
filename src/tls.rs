//! TLS in one place: every outgoing HTTP client is built here (rustls, the system's root
//! certificates plus an optional extra CA file), and so is the server's certificate, which
//! `SIGHUP` swaps without touching established connections.
//!
//! Invariants:
//! - There is exactly one way to build an outgoing HTTP client: [`http_client`] (async) or
//!   [`blocking_http_client`]. Callers add their own timeouts, user agent and redirect policy to
//!   the builder they get back; they never pick roots themselves.
//! - The crypto provider is always rustls' `ring` provider, named explicitly (never the
//!   process-wide default), so no start-up order matters.
//! - [`CertReloader`] always holds a usable certificate: a reload that fails (unreadable file,
//!   bad PEM, a key that does not match the certificate) leaves the previous pair in place.
//! - This module is low level: it imports nothing from the API, CLI or controller.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong loading certificates, keys or building a TLS client.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{setting}: cannot read {path}: {reason}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The file has no PEM certificate, or one that does not parse.
    #[error("{setting}: {path}: {reason}")]
    Certificate {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The key file has no usable PEM private key.
    #[error("{setting}: {path}: {reason}")]
    Key {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The certificate and the key are each fine but do not belong together.
    #[error("tls_cert {cert} and tls_key {key} do not match: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider used everywhere (rustls with `ring`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`; `setting` names the setting in errors
/// (`ca_file`, `tls_cert`, `sslrootcert`). An empty file or one without certificates is an error.
pub fn read_certificates(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, setting)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    let certs = certs.map_err(|e| TlsError::Certificate {
        setting,
        path: path.to_owned(),
        reason: format!("invalid PEM: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            setting,
            path: path.to_owned(),
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn read_private_key(
    path: &Path,
    setting: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, setting)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Key {
        setting,
        path: path.to_owned(),
        reason: format!("no usable PEM private key: {e}"),
    })
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        setting,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The extra CA file's certificates as reqwest roots (none without a file).
fn extra_roots(extra_ca: Option<&Path>) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let Some(path) = extra_ca else {
        return Ok(Vec::new());
    };
    read_certificates(path, "ca_file")?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der).map_err(|e| TlsError::Certificate {
                setting: "ca_file",
                path: path.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The one builder of async HTTP clients (webhooks, metric sources): rustls, trusting the
/// system's root certificates and every certificate in `extra_ca` (a PEM file, the `ca_file`
/// setting). Add timeouts, user agent and redirect policy to the returned builder, then `build()`.
pub fn http_client(extra_ca: Option<&Path>) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_native_certs(true);
    for root in extra_roots(extra_ca)? {
        builder = builder.add_root_certificate(root);
    }
    Ok(builder)
}

/// The blocking twin of [`http_client`] (the CLI, `rollgate health`).
pub fn blocking_http_client(
    extra_ca: Option<&Path>,
) -> Result<reqwest::blocking::ClientBuilder, TlsError> {
    let mut builder = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_native_certs(true);
    for root in extra_roots(extra_ca)? {
        builder = builder.add_root_certificate(root);
    }
    Ok(builder)
}

/// The system's root certificates plus `extra_ca`'s, for connections not made by reqwest
/// (PostgreSQL). System certificates that do not parse are skipped, as reqwest does.
pub fn root_store(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for cert in read_certificates(path, "ca_file")? {
            roots.add(cert).map_err(|e| TlsError::Certificate {
                setting: "ca_file",
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// The server's certificate and key files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
}

/// Loads the pair into a [`CertifiedKey`], refusing a key that does not match the certificate.
pub fn load_certified_key(files: &ServerTls) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(&files.cert, "tls_cert")?;
    let key = read_private_key(&files.key, "tls_key")?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            setting: "tls_key",
            path: files.key.clone(),
            reason: format!("unsupported private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

/// The server's certificate resolver: every handshake reads the current pair; [`reload`]
/// replaces it for later handshakes only, so established connections and streams go on.
///
/// [`reload`]: CertReloader::reload
#[derive(Debug)]
pub struct CertReloader {
    files: ServerTls,
    current: ArcSwap<CertifiedKey>,
}

impl CertReloader {
    /// Loads the pair once; an error here refuses the start.
    pub fn load(files: ServerTls) -> Result<Arc<CertReloader>, TlsError> {
        let current = ArcSwap::from_pointee(load_certified_key(&files)?);
        Ok(Arc::new(CertReloader { files, current }))
    }

    /// Re-reads both files; on success later handshakes use the new pair, on error the
    /// current pair stays and the error is returned for the log.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.files)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// A rustls server configuration resolving through this reloader (TLS 1.2 and 1.3).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let resolver: Arc<dyn ResolvesServerCert> = self.clone();
        Ok(rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_setting_and_path() {
        let e = read_certificates(Path::new("/nonexistent/ca.pem"), "ca_file").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("ca_file: cannot read /nonexistent/ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let text = read_certificates(&path, "tls_cert")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("tls_cert") && text.contains("no PEM certificate"),
            "{text}"
        );
        let text = read_private_key(&path, "tls_key").unwrap_err().to_string();
        assert!(
            text.contains("tls_key") && text.contains("private key"),
            "{text}"
        );
    }

    #[test]
    fn clients_build_with_and_without_an_extra_ca() {
        assert!(http_client(None).unwrap().build().is_ok());
        assert!(blocking_http_client(None).unwrap().build().is_ok());
        let text = http_client(Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err()
            .to_string();
        assert!(text.contains("ca_file"), "{text}");
    }
}
