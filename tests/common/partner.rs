//! Partner helpers shared by the HTTP tests: onboarding with a CSR signed by
//! the server's CA, HTTPS with a client certificate, a server with its CA.
#![allow(dead_code)]

use super::*;
use antaca::ca::Ca;
use josekit::jwk::KeyPair as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
/// A partner's key and certificate for a program.
pub struct Partner {
    pub key_pem: String,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub serial: String,
}

pub fn partner_key() -> (String, rcgen::KeyPair) {
    let pair = josekit::jws::RS256.generate_key_pair(2048).expect("rsa");
    let pem = String::from_utf8(pair.to_pem_private_key()).expect("pem");
    let rcgen = rcgen::KeyPair::from_pem(&pem).expect("rcgen");
    (pem, rcgen)
}

pub fn onboard(ca: &Ca, program: &str) -> Partner {
    let (key_pem, key) = partner_key();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{program} backend"));
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let issued = ca.sign_csr(&csr, program, 30).expect("sign");
    Partner {
        key_pem,
        key_der: key.serialize_der(),
        cert_pem: issued.cert_pem,
        serial: issued.serial_hex,
    }
}

pub fn der(pem: &str) -> Vec<u8> {
    let mut reader = pem.as_bytes();
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .expect("cert")
        .expect("pem");
    cert.as_ref().to_vec()
}

/// One HTTPS request with the partner's certificate; Err when TLS refuses.
pub fn secure(
    addr: SocketAddr,
    ca: &Ca,
    partner: Option<&Partner>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpReply, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.ca_cert_der()))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match partner {
        None => builder.with_no_client_auth(),
        Some(p) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(der(&p.cert_pem))],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p.key_der.clone())),
            )
            .expect("client cert"),
    };
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("localhost").expect("name"),
    )
    .map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(&http_request(method, path, headers, body))
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    if raw.is_empty() {
        return Err("no response".into());
    }
    Ok(parse_http(&raw))
}

pub fn secure_json(
    server: &Server,
    partner: &Partner,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> HttpReply {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    secure(
        server.secure_addr(),
        &server.ca,
        Some(partner),
        method,
        path,
        &[],
        &bytes,
    )
    .expect("tls exchange")
}

pub struct Server {
    pub test: TestServer,
    pub ca: Ca,
}

impl Server {
    pub fn start(change: impl FnOnce(&mut antaca::app::ServeOptions)) -> Server {
        let test = TestServer::start_with("iso87ascii", change);
        let ca = Ca::load(test.dir.path()).expect("the server created its CA");
        Server { test, ca }
    }
    pub fn secure_addr(&self) -> SocketAddr {
        self.test.running().secure_addr.expect("secure listener")
    }
    pub fn http(&self) -> SocketAddr {
        self.test.running().http_addr
    }
}
