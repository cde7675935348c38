//! A throwaway certificate authority made at test time (rcgen): a CA and leaf certificates for
//! `127.0.0.1` and `localhost`, as PEM (files for the server) and DER (to recognise a leaf on
//! the wire). Shared by the API suite (tls.rs) and the cluster suite (PostgreSQL over TLS).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SerialNumber};

/// A test CA that signs leaf certificates for `127.0.0.1` and `localhost`.
pub(crate) struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

/// A leaf certificate: its PEM files and DER (to recognise it on the wire).
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    #[allow(dead_code)] // the cluster suite does not read it
    pub(crate) der: Vec<u8>,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for loopback with serial `serial`.
    pub(crate) fn leaf(&self, serial: u64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rollgate test leaf {serial}"));
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}
