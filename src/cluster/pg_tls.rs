//! TLS to PostgreSQL, honouring libpq's `sslmode` in the database URL.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, and never verifies a
//! certificate; this file reads `sslmode` and `sslrootcert` out of the URL first and gives
//! tokio-postgres a rustls connector whose verifier implements libpq's semantics:
//!
//! | `sslmode`            | encryption                   | certificate check                      |
//! |----------------------|------------------------------|----------------------------------------|
//! | `disable`            | never                        | —                                      |
//! | `prefer` (default)   | if the server offers it      | none (as libpq)                        |
//! | `require`            | always                       | none; chain if `sslrootcert` is given  |
//! | `verify-ca`          | always                       | chain to a trusted root                |
//! | `verify-full`        | always                       | chain, and the host name / IP          |
//!
//! Trusted roots: the system's, plus the server's `ca_file`, plus `sslrootcert` when the URL
//! names a file. Invariant: a handshake's signatures are always checked; only `prefer` and
//! plain `require` skip the certificate's chain, exactly as libpq does.

use super::ClusterError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (`allow` is read as `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS always; verified against the roots only when `sslrootcert` is given.
    Require,
    /// TLS always, the chain verified.
    VerifyCa,
    /// TLS always, the chain and the host name verified.
    VerifyFull,
}

/// The TLS part of a database URL, and the URL without it (what tokio-postgres parses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The URL with `sslmode` and `sslrootcert` removed.
    pub url: String,
    /// The requested mode (`prefer` when absent); `None` for a `key=value` string, whose own
    /// `sslmode` (disable, prefer, require; never verified) tokio-postgres reads.
    pub mode: Option<SslMode>,
    /// `sslrootcert=PATH`, when given (`system` means the system roots only).
    pub root_cert: Option<PathBuf>,
}

/// Reads `sslmode` and `sslrootcert` out of a `postgres://` / `postgresql://` URL. Other
/// connection strings (`host=… dbname=…`) pass through to tokio-postgres untouched.
pub fn split(url: &str) -> Result<Split, ClusterError> {
    let trimmed = url.trim();
    let is_url = trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://");
    if !is_url {
        return Ok(Split {
            url: trimmed.to_owned(),
            mode: None,
            root_cert: None,
        });
    }
    let (base, query) = trimmed.split_once('?').unwrap_or((trimmed, ""));
    let (mut mode, mut root_cert, mut kept) = (SslMode::Prefer, None, Vec::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "sslmode" => mode = parse_mode(&value)?,
            "sslrootcert" if value != "system" => root_cert = Some(PathBuf::from(value.as_ref())),
            "sslrootcert" => {}
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    let mut url = base.to_owned();
    if !kept.is_empty() {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish();
        url = format!("{url}?{query}");
    }
    Ok(Split {
        url,
        mode: Some(mode),
        root_cert,
    })
}

fn parse_mode(value: &str) -> Result<SslMode, ClusterError> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(ClusterError::Url(format!(
                "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )))
        }
    })
}

/// A connection configuration and its TLS connector for `url`, trusting the system's roots,
/// `ca_file` and the URL's `sslrootcert`.
pub fn config(
    url: &str,
    ca_file: Option<&Path>,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), ClusterError> {
    let split = split(url)?;
    let mut config: tokio_postgres::Config = split
        .url
        .parse()
        .map_err(|e| ClusterError::Url(format!("{e}")))?;
    let check = match split.mode {
        None | Some(SslMode::Disable | SslMode::Prefer) => Check::Nothing,
        Some(SslMode::Require) if split.root_cert.is_some() => Check::Chain,
        Some(SslMode::Require) => Check::Nothing,
        Some(SslMode::VerifyCa) => Check::Chain,
        Some(SslMode::VerifyFull) => Check::Full,
    };
    if let Some(mode) = split.mode {
        config.ssl_mode(match mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            _ => WireMode::Require,
        });
    }
    let verifier = Verifier::new(check, ca_file, split.root_cert.as_deref())?;
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Url(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    Full,
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    /// WebPKI over the roots (absent for `Check::Nothing`).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn new(
        check: Check,
        ca_file: Option<&Path>,
        root_cert: Option<&Path>,
    ) -> Result<Self, ClusterError> {
        let provider = crate::tls::provider();
        let webpki = if check == Check::Nothing {
            None
        } else {
            let tls = |e: crate::tls::TlsError| ClusterError::Url(e.to_string());
            let mut roots = crate::tls::root_store(ca_file).map_err(tls)?;
            if let Some(path) = root_cert {
                for cert in crate::tls::read_certificates(path, "sslrootcert").map_err(tls)? {
                    roots
                        .add(cert)
                        .map_err(|e| ClusterError::Url(format!("sslrootcert: {e}")))?;
                }
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| {
                        ClusterError::Url(format!(
                            "sslmode verify-ca/verify-full needs trusted roots: {e}"
                        ))
                    })?;
            Some(verifier)
        };
        Ok(Verifier {
            check,
            webpki,
            provider,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let verdict = webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match (self.check, verdict) {
            (
                Check::Chain,
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )),
            ) => Ok(ServerCertVerified::assertion()),
            (_, verdict) => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_rootcert_are_read_out_of_the_url() {
        let s =
            split("postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(s.mode, Some(SslMode::VerifyFull));
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(s.url, "postgres://u@h:5/db?application_name=x");
        let plain = split("postgres://u@h:5/db").unwrap();
        assert_eq!(
            (plain.mode, plain.url.as_str()),
            (Some(SslMode::Prefer), "postgres://u@h:5/db")
        );
        assert_eq!(
            split("postgres://h/db?sslmode=disable").unwrap().mode,
            Some(SslMode::Disable)
        );
        let kv = split("host=h sslmode=require").unwrap();
        assert_eq!((kv.mode, kv.url.as_str()), (None, "host=h sslmode=require"));
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let e = split("postgres://h/db?sslmode=strict")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode \"strict\""), "{e}");
    }

    #[test]
    fn verify_modes_build_a_connector() {
        assert!(config("postgres://h/db?sslmode=verify-full", None).is_ok());
        assert!(config("postgres://h/db?sslmode=disable", None).is_ok());
        let url = "postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem";
        let e = match config(url, None) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a missing sslrootcert must be refused"),
        };
        assert!(
            e.contains("sslrootcert") && e.contains("/nonexistent.pem"),
            "{e}"
        );
    }
}
