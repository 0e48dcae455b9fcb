//! TLS for integration tests: a test CA and server certificates made with rcgen when the test
//! runs (PEM files in a temporary directory), and blocking rustls clients that trust that CA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion};

/// A TLS client stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A test CA in a temporary directory (removed on drop), and the server files it issues.
pub struct Pki {
    pub dir: PathBuf,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
    ca_der: CertificateDer<'static>,
    /// The CA certificate (PEM), for clients: NODE_EXTRA_CA_CERTS, wstest, pusher-js.
    pub ca_pem: PathBuf,
    /// Where `issue` writes the server's certificate chain and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("corecast-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "corecast test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
        Pki { ca_der: ca.der().clone(), dir, ca_key, ca_params, ca_pem, cert, key }
    }

    /// Issues a certificate for localhost and 127.0.0.1 with common name `cn` (and a fresh key),
    /// writes it and its key to `self.cert` / `self.key`, and returns its DER.
    pub fn issue(&self, cn: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        // Written whole, then renamed: a reload never reads half a file.
        write_atomically(&self.cert, cert.pem().as_bytes());
        write_atomically(&self.key, key.serialize_pem().as_bytes());
        cert.der().clone()
    }

    /// A client that trusts this CA, speaking `versions` and offering `alpn` (empty: no ALPN).
    pub fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// The usual client: TLS 1.3 or 1.2, ALPN http/1.1.
    pub fn default_client(&self) -> Arc<ClientConfig> {
        self.client(&[&rustls::version::TLS13, &rustls::version::TLS12], &[b"http/1.1"])
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Connects to `addr` as `localhost` and completes the handshake (read timeout 10 s).
pub fn connect(addr: &str, config: Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_nodelay(true)?;
    let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The leaf certificate the server presented.
pub fn leaf(s: &TlsStream) -> CertificateDer<'static> {
    s.conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate").clone().into_owned()
}

/// Sends `request` over a new TLS connection and returns everything read until the server
/// closes (or a timeout).
pub fn https_exchange(addr: &str, config: Arc<ClientConfig>, request: &[u8]) -> Vec<u8> {
    let mut s = connect(addr, config).expect("TLS handshake");
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A WebSocket client over TLS (`wss://localhost:port{path}`).
pub fn wss(addr: &str, config: Arc<ClientConfig>, path: &str) -> tungstenite::WebSocket<TlsStream> {
    let s = connect(addr, config).expect("TLS handshake");
    let port = addr.rsplit(':').next().unwrap();
    let (ws, resp) =
        tungstenite::client::client(format!("wss://localhost:{port}{path}"), s).expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws
}
