//! The partner CA end to end: CSRs signed by `Ca`, a real mutual-TLS listener
//! on 127.0.0.1:0 (`serve_tls`), revocation seen across `Ca` instances, the
//! trusted identity token checks, and the `antaca ca` commands.

use antaca::ca::{Ca, CaError, IssuedCert, PartnerIdentity};
use antaca::http::trusted_identity::{self, IdentityError, JtiCache};
use bytes::Bytes;
use http_body_util::Full;
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::KeyPair as _;
use josekit::jws::JwsHeader;
use josekit::jwt::JwtPayload;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A partner's RSA key, usable both by rcgen (CSR, TLS) and josekit (JWS).
struct PartnerKey {
    pem: String,
    rcgen: rcgen::KeyPair,
}

fn partner_key() -> PartnerKey {
    let pair: RsaKeyPair = josekit::jws::RS256.generate_key_pair(2048).expect("rsa");
    let pem = String::from_utf8(pair.to_pem_private_key()).expect("pem");
    let rcgen = rcgen::KeyPair::from_pem(&pem).expect("rcgen key");
    PartnerKey { pem, rcgen }
}

fn csr_pem(key: &PartnerKey, common_name: &str) -> String {
    let mut params = rcgen::CertificateParams::default();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = name;
    params
        .serialize_request(&key.rcgen)
        .expect("csr")
        .pem()
        .expect("csr pem")
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let mut reader = pem.as_bytes();
    let first = rustls_pemfile::certs(&mut reader).next();
    first.expect("a cert").expect("pem").as_ref().to_vec()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A CA in a fresh temporary directory and a partner certificate for `program`.
struct Fixture {
    dir: tempfile::TempDir,
    ca: Arc<Ca>,
    key: PartnerKey,
    issued: IssuedCert,
}

fn fixture(program: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::init(dir.path()).expect("ca init"));
    let key = partner_key();
    let issued = ca
        .sign_csr(&csr_pem(&key, "acme backend"), program, 30)
        .expect("sign");
    Fixture {
        dir,
        ca,
        key,
        issued,
    }
}

async fn start(ca: &Arc<Ca>) -> (SocketAddr, CancellationToken) {
    let config = antaca::http::tls::server_config(ca).expect("tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(antaca::http::tls::serve_tls(
        listener,
        config,
        shutdown.clone(),
        |_request, identity: Arc<PartnerIdentity>| async move {
            hyper::Response::new(Full::new(Bytes::from(identity.program.clone())))
        },
    ));
    (addr, shutdown)
}

fn client_config(ca: &Ca, client: Option<(&PartnerKey, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.ca_cert_der()))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((key, cert_pem)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(pem_to_der(cert_pem))],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.rcgen.serialize_der())),
            )
            .expect("client cert"),
    };
    Arc::new(config)
}

/// One GET over TLS; Ok((status, body)) or Err(why the exchange failed).
async fn get(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<(u16, String), String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[tokio::test]
async fn a_signed_partner_certificate_gets_200_and_its_program() {
    let f = fixture("ACME-EU");
    let (addr, shutdown) = start(&f.ca).await;
    let config = client_config(&f.ca, Some((&f.key, &f.issued.cert_pem)));
    assert_eq!(
        get(addr, config.clone()).await,
        Ok((200, "ACME-EU".to_string()))
    );
    // The certificate names the program in the SAN URI and the OU.
    let identity = antaca::ca::partner_identity(&pem_to_der(&f.issued.cert_pem)).expect("id");
    assert_eq!(identity.program, "ACME-EU");
    assert_eq!(identity.serial_hex, f.issued.serial_hex);
    assert!(
        identity.subject.contains("OU=ACME-EU"),
        "{}",
        identity.subject
    );
    shutdown.cancel();
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let f = fixture("ACME");
    let (addr, shutdown) = start(&f.ca).await;
    let result = get(addr, client_config(&f.ca, None)).await;
    assert!(result.is_err(), "{result:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let f = fixture("ACME");
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Ca::init(other_dir.path()).expect("other ca");
    let key = partner_key();
    let foreign = other
        .sign_csr(&csr_pem(&key, "mallory"), "ACME", 30)
        .expect("sign");
    let (addr, shutdown) = start(&f.ca).await;
    let result = get(addr, client_config(&f.ca, Some((&key, &foreign.cert_pem)))).await;
    assert!(result.is_err(), "{result:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_revocation_by_another_ca_instance_is_seen_without_restart() {
    let f = fixture("ACME");
    let (addr, shutdown) = start(&f.ca).await;
    let config = client_config(&f.ca, Some((&f.key, &f.issued.cert_pem)));
    assert_eq!(
        get(addr, config.clone()).await,
        Ok((200, "ACME".to_string()))
    );

    // As the `antaca ca revoke` command would: its own Ca on the same directory.
    let other_process = Ca::load(f.dir.path()).expect("load");
    other_process.revoke(&f.issued.serial_hex).expect("revoke");
    assert!(f.ca.is_revoked(&f.issued.serial_hex));

    // Same client config: it would resume the earlier TLS session (and skip
    // certificate verification) if the server allowed resumption.
    let result = get(addr, config).await;
    assert!(result.is_err(), "{result:?}");
    shutdown.cancel();
}

#[test]
fn a_csr_with_a_bad_signature_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(dir.path()).expect("ca");
    let key = partner_key();
    let pem = csr_pem(&key, "acme");
    // Flip a bit of the DER signature (the last byte) by hand.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("b64");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    match ca.sign_csr(&tampered, "ACME", 30) {
        Err(CaError::BadCsr(reason)) => assert!(reason.contains("signature"), "{reason}"),
        other => panic!("expected BadCsr, got {other:?}"),
    }
    assert!(matches!(
        ca.sign_csr("not a csr", "ACME", 30),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        ca.sign_csr(&pem, "bad program/", 30),
        Err(CaError::BadProgram(_))
    ));
    assert!(matches!(
        ca.sign_csr(&pem, "ACME", 0),
        Err(CaError::BadValidity(0))
    ));
}

#[test]
fn ca_files_are_private_init_refuses_twice_and_unknown_serials_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(dir.path()).expect("ca");
    assert!(matches!(
        Ca::init(dir.path()),
        Err(CaError::AlreadyExists(_))
    ));
    let again = Ca::load_or_init(dir.path()).expect("load_or_init");
    assert_eq!(again.ca_cert_pem(), ca.ca_cert_pem());
    assert!(matches!(
        ca.revoke("0123abcd"),
        Err(CaError::UnknownSerial(_))
    ));
    assert!(matches!(ca.revoke("xyz"), Err(CaError::BadSerial(_))));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["ca.key", "server.key"] {
            let mode = std::fs::metadata(dir.path().join("ca").join(file))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    // A certificate signed after a reload chains to the same CA.
    let key = partner_key();
    let issued = again
        .sign_csr(&csr_pem(&key, "acme"), "P1", 1)
        .expect("sign");
    assert!(ca
        .verify_issued(&pem_to_der(&issued.cert_pem), now_secs())
        .is_some());
    assert_eq!(
        ca.revoke_cert_pem(&issued.cert_pem).expect("revoke"),
        issued.serial_hex
    );
    assert!(ca.is_revoked(&issued.serial_hex.to_uppercase()));
}

// ---- trusted identity ----

struct Token<'a> {
    alg: &'a str,
    x5c: Option<Vec<Vec<u8>>>,
    signing_key_pem: &'a str,
    user_id: &'a str,
    iat: u64,
    jti: &'a str,
}

fn token(t: &Token<'_>) -> String {
    let mut header = JwsHeader::new();
    if let Some(chain) = &t.x5c {
        header.set_x509_certificate_chain(chain);
    }
    let mut payload = JwtPayload::new();
    payload
        .set_claim("userId", Some(serde_json::json!(t.user_id)))
        .expect("userId");
    payload
        .set_claim("iat", Some(serde_json::json!(t.iat)))
        .expect("iat");
    payload.set_jwt_id(t.jti);
    match t.alg {
        "RS256" => {
            let signer = josekit::jws::RS256
                .signer_from_pem(t.signing_key_pem)
                .expect("signer");
            josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("encode")
        }
        "HS256" => {
            let signer = josekit::jws::HS256
                .signer_from_bytes(b"a shared secret of thirty-two bytes!!")
                .expect("signer");
            josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("encode")
        }
        "none" => josekit::jwt::encode_unsecured(&payload, &header).expect("encode"),
        other => panic!("no such alg {other}"),
    }
}

fn good<'a>(f: &'a Fixture, jti: &'a str, iat: u64) -> Token<'a> {
    Token {
        alg: "RS256",
        x5c: Some(vec![pem_to_der(&f.issued.cert_pem), f.ca.ca_cert_der()]),
        signing_key_pem: &f.key.pem,
        user_id: "user-42",
        iat,
        jti,
    }
}

const MAX_AGE: u64 = trusted_identity::MAX_AGE_SECS_DEFAULT;

#[test]
fn a_valid_trusted_identity_is_accepted_once() {
    let f = fixture("ACME");
    let jtis = JtiCache::default();
    let now = now_secs();
    let identity =
        trusted_identity::verify(&token(&good(&f, "j-1", now)), &f.ca, &jtis, now, MAX_AGE)
            .expect("valid");
    assert_eq!(identity.user_id, "user-42");
    assert_eq!(identity.jti, "j-1");
    assert_eq!(identity.iat, now);
    assert_eq!(identity.program, "ACME");
    assert_eq!(identity.serial_hex, f.issued.serial_hex);
    // Same jti, even in a fresh token: refused.
    let again = trusted_identity::verify(
        &token(&good(&f, "j-1", now)),
        &f.ca,
        &jtis,
        now + 1,
        MAX_AGE,
    );
    assert_eq!(again, Err(IdentityError::ReusedJti));
    assert_eq!(
        IdentityError::ReusedJti.code().as_str(),
        "TRUSTED_IDENTITY_REUSED_JTI"
    );
}

#[test]
fn old_and_future_tokens_are_refused() {
    let f = fixture("ACME");
    let jtis = JtiCache::default();
    let now = now_secs();
    let old = token(&good(&f, "j-old", now - MAX_AGE - 1));
    assert_eq!(
        trusted_identity::verify(&old, &f.ca, &jtis, now, MAX_AGE),
        Err(IdentityError::Expired)
    );
    let future = token(&good(&f, "j-future", now + 31));
    assert_eq!(
        trusted_identity::verify(&future, &f.ca, &jtis, now, MAX_AGE),
        Err(IdentityError::IssuedInFuture)
    );
    // At the edges: exactly max age old, and 30 s ahead, pass.
    let edge_old = token(&good(&f, "j-edge-old", now - MAX_AGE));
    assert!(trusted_identity::verify(&edge_old, &f.ca, &jtis, now, MAX_AGE).is_ok());
    let edge_future = token(&good(&f, "j-edge-future", now + 30));
    assert!(trusted_identity::verify(&edge_future, &f.ca, &jtis, now, MAX_AGE).is_ok());
    assert_eq!(
        IdentityError::Expired.code().as_str(),
        "TRUSTED_IDENTITY_EXPIRED"
    );
}

#[test]
fn algorithms_other_than_rs256_are_refused() {
    let f = fixture("ACME");
    let jtis = JtiCache::default();
    let now = now_secs();
    for alg in ["HS256", "none"] {
        let t = token(&Token {
            alg,
            ..good(&f, "j-alg", now)
        });
        assert_eq!(
            trusted_identity::verify(&t, &f.ca, &jtis, now, MAX_AGE),
            Err(IdentityError::BadAlgorithm),
            "{alg}"
        );
    }
}

#[test]
fn certificates_not_from_our_ca_or_missing_are_refused() {
    let f = fixture("ACME");
    let jtis = JtiCache::default();
    let now = now_secs();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Ca::init(other_dir.path()).expect("other ca");
    let key = partner_key();
    let foreign = other
        .sign_csr(&csr_pem(&key, "mallory"), "ACME", 30)
        .expect("sign");
    let t = token(&Token {
        x5c: Some(vec![pem_to_der(&foreign.cert_pem), other.ca_cert_der()]),
        signing_key_pem: &key.pem,
        ..good(&f, "j-foreign", now)
    });
    assert_eq!(
        trusted_identity::verify(&t, &f.ca, &jtis, now, MAX_AGE),
        Err(IdentityError::UntrustedCertificate)
    );
    let t = token(&Token {
        x5c: None,
        ..good(&f, "j-none", now)
    });
    assert_eq!(
        trusted_identity::verify(&t, &f.ca, &jtis, now, MAX_AGE),
        Err(IdentityError::NoCertificate)
    );
    // Our own certificate, but outside its validity period (30 days).
    let t = token(&good(&f, "j-late", now + 40 * 86_400));
    assert_eq!(
        trusted_identity::verify(&t, &f.ca, &jtis, now + 40 * 86_400, MAX_AGE),
        Err(IdentityError::UntrustedCertificate)
    );
    for garbage in ["", "a.b", "a.b.c", "...."] {
        assert_eq!(
            trusted_identity::verify(garbage, &f.ca, &jtis, now, MAX_AGE),
            Err(IdentityError::Malformed),
            "{garbage:?}"
        );
    }
}

#[test]
fn a_revoked_certificate_is_refused() {
    let f = fixture("ACME");
    let jtis = JtiCache::default();
    let now = now_secs();
    Ca::load(f.dir.path())
        .expect("load")
        .revoke(&f.issued.serial_hex)
        .expect("revoke");
    assert_eq!(
        trusted_identity::verify(&token(&good(&f, "j-r", now)), &f.ca, &jtis, now, MAX_AGE),
        Err(IdentityError::Revoked)
    );
}

#[test]
fn a_signature_by_another_key_is_refused_and_does_not_burn_the_jti() {
    let f = fixture("ACME");
    let jtis = JtiCache::default();
    let now = now_secs();
    let impostor = partner_key();
    let t = token(&Token {
        signing_key_pem: &impostor.pem,
        ..good(&f, "j-sig", now)
    });
    assert_eq!(
        trusted_identity::verify(&t, &f.ca, &jtis, now, MAX_AGE),
        Err(IdentityError::BadSignature)
    );
    assert!(jtis.is_empty());
    // The genuine partner can still use that jti.
    assert!(
        trusted_identity::verify(&token(&good(&f, "j-sig", now)), &f.ca, &jtis, now, MAX_AGE)
            .is_ok()
    );
}

// ---- the `antaca ca` commands ----

fn antaca(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_antaca"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run antaca")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn cli_init_sign_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ca_path = stdout(&antaca(&["ca", "init"], &data));
    assert!(ca_path.ends_with("ca.crt"), "{ca_path}");
    assert!(Path::new(&ca_path).exists());
    let second = antaca(&["ca", "init"], &data);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already exists"));

    let key = partner_key();
    let csr = dir.path().join("partner.csr");
    std::fs::write(&csr, csr_pem(&key, "acme")).expect("write csr");
    let mut serials = Vec::new();
    for name in ["one.crt", "two.crt"] {
        let out = dir.path().join(name);
        let csr_arg = csr.to_string_lossy().to_string();
        let out_arg = out.to_string_lossy().to_string();
        let serial = stdout(&antaca(
            &[
                "ca",
                "sign",
                "--csr",
                &csr_arg,
                "--program",
                "ACME",
                "--out",
                &out_arg,
                "--days",
                "10",
            ],
            &data,
        ));
        assert_eq!(serial.len(), 32, "{serial}");
        let pem = std::fs::read_to_string(&out).expect("cert");
        let identity = antaca::ca::partner_identity(&pem_to_der(&pem)).expect("identity");
        assert_eq!(identity.program, "ACME");
        assert_eq!(identity.serial_hex, serial);
        serials.push(serial);
    }

    // A running server's Ca, loaded before the revocations.
    let server_ca = Ca::load(&data).expect("load");
    assert!(!server_ca.is_revoked(&serials[0]));

    stdout(&antaca(&["ca", "revoke", "--serial", &serials[0]], &data));
    let two = dir.path().join("two.crt").to_string_lossy().to_string();
    let printed = stdout(&antaca(&["ca", "revoke", "--cert", &two], &data));
    assert!(printed.contains(&serials[1]), "{printed}");
    assert!(server_ca.is_revoked(&serials[0]));
    assert!(server_ca.is_revoked(&serials[1]));

    let unknown = antaca(&["ca", "revoke", "--serial", "abcdef"], &data);
    assert!(!unknown.status.success());
    let neither = antaca(&["ca", "revoke"], &data);
    assert!(!neither.status.success());
}

#[test]
fn concurrent_revocations_from_several_ca_instances_are_all_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::init(dir.path()).expect("ca");
    let key = partner_key();
    let csr = csr_pem(&key, "acme");
    let serials: Vec<String> = (0..8)
        .map(|_| ca.sign_csr(&csr, "ACME", 1).expect("sign").serial_hex)
        .collect();
    std::thread::scope(|scope| {
        for serial in &serials {
            let path = dir.path();
            scope.spawn(move || {
                // Each thread plays a separate `antaca ca revoke` process.
                Ca::load(path)
                    .expect("load")
                    .revoke(serial)
                    .expect("revoke");
            });
        }
    });
    let fresh = Ca::load(dir.path()).expect("load");
    for serial in &serials {
        assert!(fresh.is_revoked(serial), "{serial} lost");
    }
}
