//! The three channels together over real sockets: the partner's servers over
//! mutual TLS with certificates from our CA, the cardholder's app with paired
//! devices and sessions (and trusted identities), the admin panel; KYC in all
//! three modes; automatic balance creation; low-balance e-mails.

mod common;
mod support;

use antaca::ca::Ca;
use antaca::http::sessions::Role;
use common::partner::*;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;

const PASSWORD: &str = "correct horse battery";

#[test]
fn partner_app_and_admin_onboard_a_customer_with_manual_kyc() {
    let server = Server::start(|_| {});
    server.test.add_admin("mark", PASSWORD, Role::Manager);
    let acme = onboard(&server.ca, "eur");

    // The partner creates the customer and gets a pairing code for the app.
    let created = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers",
        json!({"id": "c-100", "email": "ada@example.com", "firstName": "Ada"}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(
        (
            created.json()["program"].as_str(),
            created.json()["kycStatus"].as_str()
        ),
        (Some("eur"), Some("NONE"))
    );
    let code = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/c-100/pairing-codes",
        json!(null),
    )
    .json()["pairingCode"]
        .as_str()
        .expect("code")
        .to_string();

    // The app pairs the device and registers for KYC with data and a document.
    let paired = http_json(
        server.http(),
        "POST",
        "/customers/me/devices",
        None,
        json!({"pairingCode": code, "deviceId": "phone-1"}),
    );
    assert_eq!(
        paired.status,
        201,
        "{}",
        String::from_utf8_lossy(&paired.body)
    );
    let session = paired.json()["sessionToken"]
        .as_str()
        .expect("token")
        .to_string();
    let reused = http_json(
        server.http(),
        "POST",
        "/customers/me/devices",
        None,
        json!({"pairingCode": code, "deviceId": "phone-1"}),
    );
    assert_eq!(
        reused.code(),
        "INVALID_PAIRING_CODE",
        "a pairing code is single-use"
    );
    let me = http_json(
        server.http(),
        "GET",
        "/customers/me",
        Some(&session),
        json!(null),
    )
    .json();
    assert_eq!(
        (me["id"].as_str(), me["email"].as_str()),
        (Some("c-100"), Some("ada@example.com"))
    );
    let registered = http_json(
        server.http(),
        "POST",
        "/customers/me/register",
        Some(&session),
        json!({"data": {"firstName": "Ada", "documentNumber": "X123"}}),
    );
    assert_eq!(
        registered.status,
        202,
        "{}",
        String::from_utf8_lossy(&registered.body)
    );
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    let upload = http(
        server.http(),
        "PUT",
        "/customers/me/kyc/documents/id_front",
        &[
            ("Authorization", &format!("Bearer {session}")),
            ("Content-Type", "image/jpeg"),
        ],
        &jpeg,
    );
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    let too_big = vec![0xFF; 5 * 1024 * 1024 + 2048];
    let big = http(
        server.http(),
        "PUT",
        "/customers/me/kyc/documents/selfie",
        &[
            ("Authorization", &format!("Bearer {session}")),
            ("Content-Type", "image/jpeg"),
        ],
        &too_big,
    );
    assert_eq!(big.status, 413);
    // No balance before KYC.
    let early = http_json(
        server.http(),
        "POST",
        "/customers/me/balances",
        Some(&session),
        json!({"currency": "EUR"}),
    );
    assert_eq!(
        (early.status, early.code()),
        (409, "KYC_NOT_ACCEPTED".to_string())
    );

    // The administrator sees the submission and accepts it: a EUR balance appears.
    let mark = server.test.admin_token("mark", PASSWORD);
    let case = http_json(
        server.http(),
        "GET",
        "/admin/kyc/c-100",
        Some(&mark),
        json!(null),
    )
    .json();
    assert_eq!(case["documents"].as_array().map(Vec::len), Some(1));
    assert_eq!(case["data"]["documentNumber"], "X123");
    let decided = http_json(
        server.http(),
        "POST",
        "/admin/kyc/c-100/decision",
        Some(&mark),
        json!({"decision": "ACCEPTED"}),
    );
    assert_eq!(decided.status, 200);
    let balances = http_json(
        server.http(),
        "GET",
        "/customers/me/balances",
        Some(&session),
        json!(null),
    )
    .json();
    let balance_id = balances["items"][0]["id"]
        .as_str()
        .expect("balance")
        .to_string();
    assert_eq!(balances["items"][0]["currency"], "EUR");

    // More balances on demand; the partner reloads; the app sees the balance and its history.
    let usd = http_json(
        server.http(),
        "POST",
        "/customers/me/balances",
        Some(&session),
        json!({"currency": "USD"}),
    );
    assert_eq!(usd.status, 201);
    let reload = secure(
        server.secure_addr(),
        &server.ca,
        Some(&acme),
        "POST",
        &format!("/secure/customers/c-100/balances/{balance_id}/reload"),
        &[("Idempotency-Key", "r-1")],
        json!({"amount": "42.50", "currency": "EUR"})
            .to_string()
            .as_bytes(),
    )
    .expect("tls");
    assert_eq!(
        reload.status,
        200,
        "{}",
        String::from_utf8_lossy(&reload.body)
    );
    let seen = http_json(
        server.http(),
        "GET",
        &format!("/customers/me/balances/{balance_id}"),
        Some(&session),
        json!(null),
    )
    .json();
    assert_eq!(seen["available"], "42.50");
    let history = http_json(
        server.http(),
        "GET",
        &format!("/customers/me/balances/{balance_id}/transactions"),
        Some(&session),
        json!(null),
    )
    .json();
    assert_eq!(history["items"][0]["type"], "RELOAD");
    assert_eq!(history["items"][0]["amountMinor"], 4250);

    // Pairing the same device again replaces the installation and its session.
    let code2 = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/c-100/pairing-codes",
        json!(null),
    )
    .json()["pairingCode"]
        .as_str()
        .expect("code")
        .to_string();
    let second = http_json(
        server.http(),
        "POST",
        "/customers/me/devices",
        None,
        json!({"pairingCode": code2, "deviceId": "phone-1"}),
    );
    assert_eq!(second.status, 201);
    assert_eq!(
        http_json(
            server.http(),
            "GET",
            "/customers/me",
            Some(&session),
            json!(null)
        )
        .code(),
        "INVALID_SESSION"
    );
    let old = paired.json();
    let relogin = http_json(
        server.http(),
        "POST",
        "/customers/me/sessions",
        None,
        json!({"customerId": "c-100", "installationId": old["installationId"], "installationSecret": old["installationSecret"]}),
    );
    assert_eq!(
        relogin.code(),
        "INSTALLATION_REPLACED",
        "one active installation per device per customer"
    );
    let fresh = second.json();
    let relogin = http_json(
        server.http(),
        "POST",
        "/customers/me/sessions",
        None,
        json!({"customerId": "c-100", "installationId": fresh["installationId"], "installationSecret": fresh["installationSecret"]}),
    );
    assert_eq!(relogin.status, 201);
}

#[test]
fn the_partner_channel_refuses_strangers_and_other_partners_customers() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let other = onboard(&server.ca, "credit");
    // No certificate, and a certificate from another CA, are refused in the handshake.
    assert!(secure(
        server.secure_addr(),
        &server.ca,
        None,
        "GET",
        "/secure/customers/u-ok",
        &[],
        b""
    )
    .is_err());
    let foreign_dir = tempfile::tempdir().expect("tempdir");
    let foreign_ca = Ca::init(foreign_dir.path()).expect("ca");
    let foreign = onboard(&foreign_ca, "eur");
    assert!(secure(
        server.secure_addr(),
        &server.ca,
        Some(&foreign),
        "GET",
        "/secure/customers/u-ok",
        &[],
        b""
    )
    .is_err());
    // Our certificate sees its program's customer; another program's partner does not.
    assert_eq!(
        secure_json(&server, &acme, "GET", "/secure/customers/u-ok", json!(null)).status,
        200
    );
    let hidden = secure_json(
        &server,
        &other,
        "GET",
        "/secure/customers/u-ok",
        json!(null),
    );
    assert_eq!(
        (hidden.status, hidden.code()),
        (404, "CUSTOMER_NOT_FOUND".to_string())
    );
    let hidden_balance = secure_json(
        &server,
        &other,
        "GET",
        "/secure/customers/u-cr0/balances/b-ok",
        json!(null),
    );
    assert_eq!(hidden_balance.code(), "BALANCE_NOT_FOUND");
    // Admin and app paths are not served on the TLS listener.
    assert_eq!(
        secure_json(&server, &acme, "GET", "/admin/summary", json!(null)).status,
        404
    );
    // Revoked with the CLI while the server runs: refused from the next handshake on.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_antaca"))
        .args(["ca", "revoke", "--data"])
        .arg(server.test.dir.path())
        .args(["--serial", &acme.serial])
        .output()
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(secure(
        server.secure_addr(),
        &server.ca,
        Some(&acme),
        "GET",
        "/secure/customers/u-ok",
        &[],
        b""
    )
    .is_err());
}

#[test]
fn external_kyc_is_set_by_the_partner() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    assert_eq!(
        secure_json(
            &server,
            &acme,
            "POST",
            "/secure/customers",
            json!({"id": "ext-1"})
        )
        .status,
        201
    );
    let rejected = secure_json(
        &server,
        &acme,
        "PUT",
        "/secure/customers/ext-1/kyc",
        json!({"status": "REJECTED", "reason": "document expired"}),
    );
    assert_eq!(
        (rejected.status, rejected.json()["status"].as_str()),
        (200, Some("REJECTED"))
    );
    let accepted = secure_json(
        &server,
        &acme,
        "PUT",
        "/secure/customers/ext-1/kyc",
        json!({"status": "ACCEPTED"}),
    );
    assert_eq!(accepted.json()["mode"], "external");
    let balances = secure_json(
        &server,
        &acme,
        "GET",
        "/secure/customers/ext-1/balances",
        json!(null),
    )
    .json();
    assert_eq!(
        balances["items"][0]["currency"], "EUR",
        "automatic balance on a positive decision"
    );
    let bad = secure_json(
        &server,
        &acme,
        "PUT",
        "/secure/customers/ext-1/kyc",
        json!({"status": "MAYBE"}),
    );
    assert_eq!((bad.status, bad.code()), (400, "INVALID_FIELD".to_string()));
}

#[test]
fn automatic_kyc_goes_to_the_provider_and_its_signed_callback_decides() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let stub = runtime.block_on(support::ProviderStub::start("provider-key"));
    let secret = b"shared callback secret".to_vec();
    let config = antaca::integrations::kyc_provider::ProviderConfig {
        url: stub.url(),
        api_key: "provider-key".into(),
        callback_secret: secret.clone(),
        callback_url: "http://127.0.0.1/kyc/callback".into(),
        timeout: std::time::Duration::from_secs(5),
    };
    let server = Server::start(move |o| o.http.kyc_provider = Some(config));
    let acme = onboard(&server.ca, "eur");
    assert_eq!(
        secure_json(
            &server,
            &acme,
            "POST",
            "/secure/customers",
            json!({"id": "auto-1"})
        )
        .status,
        201
    );
    let started = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/auto-1/register",
        json!({"mode": "automatic", "data": {"name": "Grace"}}),
    );
    assert_eq!(
        started.status,
        202,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    let reference = started.json()["reference"]
        .as_str()
        .expect("reference")
        .to_string();
    // The provider received the submission with our key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stub.submissions().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let submissions = stub.submissions();
    assert_eq!(submissions.len(), 1);
    assert!(submissions[0].authorized);
    assert!(submissions[0].body.to_string().contains(&reference));
    // A forged callback is refused; the signed one decides.
    let body = json!({"reference": reference, "decision": "approved"}).to_string();
    let now = antaca::engine::now_ms() / 1000;
    let forged =
        antaca::integrations::kyc_provider::sign_callback(b"wrong secret", now, body.as_bytes());
    let ts = now.to_string();
    let refused = http(
        server.http(),
        "POST",
        "/kyc/callback",
        &[("X-Kyc-Signature", &forged), ("X-Kyc-Timestamp", &ts)],
        body.as_bytes(),
    );
    assert_eq!(
        (refused.status, refused.code()),
        (401, "INVALID_SIGNATURE".to_string())
    );
    let signature =
        antaca::integrations::kyc_provider::sign_callback(&secret, now, body.as_bytes());
    let decided = http(
        server.http(),
        "POST",
        "/kyc/callback",
        &[("X-Kyc-Signature", &signature), ("X-Kyc-Timestamp", &ts)],
        body.as_bytes(),
    );
    assert_eq!(
        decided.status,
        200,
        "{}",
        String::from_utf8_lossy(&decided.body)
    );
    assert_eq!(
        (
            decided.json()["status"].as_str(),
            decided.json()["decidedBy"].as_str()
        ),
        (Some("ACCEPTED"), Some("provider"))
    );
    let customer = secure_json(
        &server,
        &acme,
        "GET",
        "/secure/customers/auto-1",
        json!(null),
    )
    .json();
    assert_eq!(customer["kycStatus"], "ACCEPTED");
    assert_eq!(customer["balances"].as_array().map(Vec::len), Some(1));
    // The same callback again: the case is no longer in progress.
    let again = http(
        server.http(),
        "POST",
        "/kyc/callback",
        &[("X-Kyc-Signature", &signature), ("X-Kyc-Timestamp", &ts)],
        body.as_bytes(),
    );
    assert_eq!(again.status, 409);
    drop(runtime);
}

#[test]
fn a_trusted_identity_starts_an_app_session_once() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let make = |jti: &str, user: &str| {
        let mut header = josekit::jws::JwsHeader::new();
        header.set_x509_certificate_chain(&vec![der(&acme.cert_pem), server.ca.ca_cert_der()]);
        let mut payload = josekit::jwt::JwtPayload::new();
        payload
            .set_claim("userId", Some(json!(user)))
            .expect("claim");
        payload
            .set_claim("iat", Some(json!(antaca::engine::now_ms() / 1000)))
            .expect("claim");
        payload.set_jwt_id(jti);
        let signer = josekit::jws::RS256
            .signer_from_pem(&acme.key_pem)
            .expect("signer");
        josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("jws")
    };
    let token = make("jti-1", "u-ok");
    let started = http_json(
        server.http(),
        "POST",
        "/customers/me/sessions/trusted",
        None,
        json!({"token": token}),
    );
    assert_eq!(
        started.status,
        201,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    let session = started.json()["sessionToken"]
        .as_str()
        .expect("session")
        .to_string();
    assert_eq!(
        http_json(
            server.http(),
            "GET",
            "/customers/me",
            Some(&session),
            json!(null)
        )
        .json()["id"],
        "u-ok"
    );
    let replay = http_json(
        server.http(),
        "POST",
        "/customers/me/sessions/trusted",
        None,
        json!({"token": token}),
    );
    assert_eq!(
        (replay.status, replay.code()),
        (401, "TRUSTED_IDENTITY_REUSED_JTI".to_string()),
        "a jti is single-use"
    );
    // A partner vouches only for its own program's customers.
    let foreign_user = make("jti-2", "u-cr0");
    let refused = http_json(
        server.http(),
        "POST",
        "/customers/me/sessions/trusted",
        None,
        json!({"token": foreign_user}),
    );
    assert_eq!(refused.code(), "TRUSTED_IDENTITY_UNKNOWN_USER");
}

#[test]
fn app_sessions_expire() {
    let server = Server::start(|o| o.http.customer_session = std::time::Duration::from_millis(300));
    let acme = onboard(&server.ca, "eur");
    let code = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/u-ok/pairing-codes",
        json!(null),
    )
    .json()["pairingCode"]
        .as_str()
        .expect("code")
        .to_string();
    let paired = http_json(
        server.http(),
        "POST",
        "/customers/me/devices",
        None,
        json!({"pairingCode": code, "deviceId": "d"}),
    );
    let session = paired.json()["sessionToken"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        http_json(
            server.http(),
            "GET",
            "/customers/me",
            Some(&session),
            json!(null)
        )
        .status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(400));
    let expired = http_json(
        server.http(),
        "GET",
        "/customers/me",
        Some(&session),
        json!(null),
    );
    assert_eq!(
        (expired.status, expired.code()),
        (401, "SESSION_EXPIRED".to_string())
    );
    assert_eq!(
        http_json(server.http(), "GET", "/customers/me", None, json!(null)).code(),
        "UNAUTHORIZED"
    );
}

#[test]
fn a_partner_balance_falling_below_its_level_is_mailed_to_the_partner() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let sink = runtime.block_on(support::SmtpSink::start());
    let smtp = sink.config();
    let server = Server::start(move |o| {
        o.smtp = Some(smtp);
        o.notify_interval = std::time::Duration::from_millis(50);
    });
    let credit_partner = onboard(&server.ca, "credit");
    let set = secure_json(
        &server,
        &credit_partner,
        "PUT",
        "/secure/notification-emails",
        json!({"emails": ["ops@partner.example"]}),
    );
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    // pc: 100.00 with a low level of 10.00; two purchases of 45.50 go below it.
    let mut iso = server.test.client();
    assert_eq!(
        code(&iso.call(&request("0200", &pan("cr0"), "000000", 4_550, 1))),
        "00"
    );
    assert_eq!(
        code(&iso.call(&request("0200", &pan("cr1"), "000000", 4_550, 2))),
        "00"
    );
    let mails = runtime.block_on(sink.wait_for(1, std::time::Duration::from_secs(10)));
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["ops@partner.example".to_string()]);
    assert!(mails[0]
        .header("Subject")
        .is_some_and(|s| s.contains("pc") && s.contains("10.00")));
    assert!(!mails[0].data.contains("53552300"), "no card data in mails");
}

#[test]
fn a_partner_cannot_overrule_antacas_kyc_and_documents_are_bounded() {
    let server = Server::start(|_| {});
    server.test.add_admin("mark", PASSWORD, Role::Manager);
    let acme = onboard(&server.ca, "eur");
    assert_eq!(
        secure_json(
            &server,
            &acme,
            "POST",
            "/secure/customers",
            json!({"id": "k-1"})
        )
        .status,
        201
    );
    let started = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/k-1/register",
        json!({"data": {"name": "Lin"}}),
    );
    assert_eq!(started.status, 202);
    let overrule = secure_json(
        &server,
        &acme,
        "PUT",
        "/secure/customers/k-1/kyc",
        json!({"status": "ACCEPTED"}),
    );
    assert_eq!(
        (overrule.status, overrule.code()),
        (409, "KYC_DECIDED_ELSEWHERE".to_string())
    );
    // Ten documents at most per case; an administrator's upload may be large.
    let mark = server.test.admin_token("mark", PASSWORD);
    let auth = format!("Bearer {mark}");
    let mut big = vec![0u8; 3 * 1024 * 1024];
    big[..5].copy_from_slice(b"%PDF-");
    let first = http(
        server.http(),
        "PUT",
        "/admin/kyc/k-1/documents/passport",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/pdf"),
        ],
        &big,
    );
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    for i in 1..10 {
        let r = http(
            server.http(),
            "PUT",
            &format!("/admin/kyc/k-1/documents/page{i}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/pdf"),
            ],
            b"%PDF-1.7",
        );
        assert_eq!(r.status, 201);
    }
    let eleventh = http(
        server.http(),
        "PUT",
        "/admin/kyc/k-1/documents/extra",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/pdf"),
        ],
        b"%PDF-1.7",
    );
    assert_eq!(
        (eleventh.status, eleventh.code()),
        (409, "TOO_MANY_DOCUMENTS".to_string())
    );
    // Documents are served as attachments, never rendered.
    let doc_id = first.json()["id"].as_str().expect("id").to_string();
    let served = http(
        server.http(),
        "GET",
        &format!("/admin/kyc/k-1/documents/{doc_id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(
        (
            served.header("x-content-type-options"),
            served.header("content-disposition")
        ),
        (Some("nosniff"), Some("attachment"))
    );
    // An unknown path never reads a large body.
    let unknown = http(
        server.http(),
        "POST",
        "/nothing/kyc/documents/x",
        &[],
        &vec![b'x'; 100_000],
    );
    assert_eq!(unknown.status, 404);
}

#[test]
fn a_certificate_revoked_mid_connection_is_refused_on_its_next_request() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server.ca.ca_cert_der()))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(der(&acme.cert_pem))],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(acme.key_der.clone())),
        )
        .expect("client cert");
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("tls");
    let tcp = std::net::TcpStream::connect(server.secure_addr()).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let ask =
        |tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>| -> u16 {
            tls.write_all(b"GET /secure/customers/u-ok HTTP/1.1\r\nHost: antaca\r\n\r\n")
                .expect("write");
            let mut raw = Vec::new();
            let mut byte = [0u8; 1];
            while !raw.ends_with(b"\r\n\r\n") {
                tls.read_exact(&mut byte).expect("read");
                raw.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&raw).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            tls.read_exact(&mut body).expect("body");
            head.split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
    assert_eq!(ask(&mut tls), 200);
    server.ca.revoke(&acme.serial).expect("revoke");
    assert_eq!(
        ask(&mut tls),
        403,
        "the open connection's next request is refused"
    );
}
