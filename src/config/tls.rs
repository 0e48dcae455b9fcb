//! The TLS server configuration: certificate chain and private key read from PEM files, TLS 1.2
//! and 1.3 with the ring provider, ALPN `http/1.1`. Built at start-up and again on SIGHUP.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;

/// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key: PKCS#8, PKCS#1 or SEC1)
/// and builds the configuration every new TLS connection uses. Errors say which file is wrong
/// and how.
pub(crate) fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!("tls_cert {}: {e} (give a PEM file of the certificate chain, leaf first)", cert.display())
        })?;
    if chain.is_empty() {
        return Err(format!(
            "tls_cert {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!("tls_key {}: {e} (give a PEM private key: PKCS#8, PKCS#1 or SEC1)", key.display())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "tls_cert {} / tls_key {}: {e} (the key must be the certificate's own)",
                cert.display(),
                key.display()
            )
        })?;
    // Clients that offer ALPN must offer http/1.1; clients that offer none are served too.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption state: nothing shared between cores, nothing held per client.
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(cfg))
}
