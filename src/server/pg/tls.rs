//! TLS on `--pg` (`--pg-tls-cert` / `--pg-tls-key`): a client asking for TLS
//! (`sslmode=require`, or libpq's default `prefer`) gets it, so the token and the
//! rows do not cross the network in the clear.
//!
//! The certificate also enables SCRAM's channel binding (`SCRAM-SHA-256-PLUS`,
//! libpq's `channel_binding=require`), which ties the login to this TLS session
//! so a man in the middle cannot relay it.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::EddyError;

/// The server's certificate chain and key, as given on the command line.
pub struct Tls {
    /// Accepts a client's TLS handshake.
    pub acceptor: TlsAcceptor,
    /// The certificate chain as read (PEM), for SCRAM's channel binding.
    pub certificate_pem: Vec<u8>,
}

impl Tls {
    /// Reads the PEM certificate chain at `cert` and the PEM private key at `key`,
    /// with an error that names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, EddyError> {
        let certificate_pem =
            std::fs::read(cert).map_err(|source| EddyError::Io { context: format!("cannot read --pg-tls-cert {}", cert.display()), source })?;
        let chain = CertificateDer::pem_slice_iter(&certificate_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| setting("--pg-tls-cert", cert, &format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(setting("--pg-tls-cert", cert, "holds no certificate (expected a PEM `BEGIN CERTIFICATE` block)"));
        }
        let key_pem = std::fs::read(key).map_err(|source| EddyError::Io { context: format!("cannot read --pg-tls-key {}", key.display()), source })?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| setting("--pg-tls-key", key, &format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EddyError::Internal(format!("TLS protocol versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| setting("--pg-tls-key", key, &format!("does not go with the certificate in {}: {e}", cert.display())))?;
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), certificate_pem })
    }
}

/// A bad TLS file, named by its option.
fn setting(option: &str, path: &Path, message: &str) -> EddyError {
    EddyError::Setting { key: option.into(), value: path.display().to_string(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
        let Err(error) = Tls::load(&cert, &dir.path().join("key.pem")) else { panic!("an empty chain was accepted") };
        let message = error.to_string();
        assert!(message.contains("--pg-tls-cert") && message.contains("holds no certificate"), "{message}");
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("nowhere.pem");
        let Err(error) = Tls::load(&missing, &missing) else { panic!("a missing file was accepted") };
        assert!(error.to_string().contains("cannot read --pg-tls-cert"), "{error}");
    }
}
