//! The card lifecycle over real HTTP with real JWE, seen by real ISO 8583
//! authorizations: create (sync and async), full data, CVV reset, physical
//! cards and personalisation, activation, locks (by the cardholder, the
//! admin panel and external entities), removal, PIN setting, print virtual.

mod common;

use antaca::http::sessions::Role;
use common::partner::*;
use common::*;
use josekit::jwe::{JweHeader, RSA_OAEP_256};
use josekit::jwk::KeyPair as _;
use serde_json::{json, Value};

/// The app's side of JWE: its own RSA key, and the server's public key.
struct JweClient {
    private_pem: Vec<u8>,
    public_b64: String,
    server_pem: String,
}

impl JweClient {
    fn new(server: &Server) -> JweClient {
        use base64::Engine as _;
        let pair = RSA_OAEP_256.generate_key_pair(2048).expect("rsa");
        let public_b64 = base64::engine::general_purpose::STANDARD.encode(pair.to_pem_public_key());
        let key = http_json(
            server.http(),
            "GET",
            "/customers/me/public_key",
            None,
            json!(null),
        )
        .json();
        let server_pem = key["pem"].as_str().expect("server key").to_string();
        JweClient {
            private_pem: pair.to_pem_private_key(),
            public_b64,
            server_pem,
        }
    }

    fn seal(&self, plaintext: &Value) -> Vec<u8> {
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        let encrypter = RSA_OAEP_256
            .encrypter_from_pem(&self.server_pem)
            .expect("encrypter");
        let jwe =
            josekit::jwe::serialize_compact(plaintext.to_string().as_bytes(), &header, &encrypter)
                .expect("jwe");
        json!({ "payload": jwe }).to_string().into_bytes()
    }

    fn open(&self, reply: &HttpReply) -> Value {
        let payload = reply.json()["payload"]
            .as_str()
            .expect("an encrypted answer")
            .to_string();
        let decrypter = RSA_OAEP_256
            .decrypter_from_pem(&self.private_pem)
            .expect("decrypter");
        let (plain, header) =
            josekit::jwe::deserialize_compact(&payload, &decrypter).expect("decrypts");
        assert_eq!(header.content_encryption(), Some("A256GCM"));
        serde_json::from_slice(&plain).expect("json")
    }

    /// An encrypted call with a bearer token; `body` None sends only the headers.
    fn call(
        &self,
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> HttpReply {
        let auth = format!("Bearer {token}");
        let bytes = body.map(|b| self.seal(&b)).unwrap_or_default();
        http(
            addr,
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Public-Key", &self.public_b64),
                ("Encrypted-Request", "true"),
            ],
            &bytes,
        )
    }
}

const PASSWORD: &str = "correct horse battery";

fn paired_session(server: &Server, partner: &Partner, customer: &str) -> String {
    let code = secure_json(
        server,
        partner,
        "POST",
        &format!("/secure/customers/{customer}/pairing-codes"),
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
        json!({"pairingCode": code, "deviceId": "phone"}),
    );
    paired.json()["sessionToken"]
        .as_str()
        .expect("session")
        .to_string()
}

fn iso_code(server: &Server, pan: &str, stan: u32) -> String {
    let mut client = server.test.client();
    code(&client.call(&auth(pan, 100, stan)))
}

#[test]
fn a_virtual_card_is_issued_encrypted_used_reset_locked_and_removed() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let session = paired_session(&server, &acme, "u-ok");
    let jwe = JweClient::new(&server);

    // Plain data on an endpoint that requires encryption.
    let plain = http_json(
        server.http(),
        "POST",
        "/customers/me/cards/virtual",
        Some(&session),
        json!({"balanceId": "b-ok"}),
    );
    assert_eq!(
        (plain.status, plain.code()),
        (400, "ENCRYPTION_REQUIRED".to_string())
    );

    let issued = jwe.call(
        server.http(),
        "POST",
        "/customers/me/cards/virtual",
        &session,
        Some(json!({"balanceId": "b-ok"})),
    );
    assert_eq!(
        issued.status,
        201,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let card = jwe.open(&issued);
    let pan = card["cardNo"].as_str().expect("PAN").to_string();
    let id = card["id"].as_str().expect("id").to_string();
    assert!(
        pan.len() == 16
            && pan.starts_with("535522")
            && antaca::security::pan::luhn_valid(pan.as_bytes())
    );
    assert_eq!(card["cvv"].as_str().map(str::len), Some(3));
    assert!(card["exp"].as_str().is_some_and(|e| e.len() == 10));
    assert!(
        !String::from_utf8_lossy(&issued.body).contains(&pan),
        "the PAN travels only inside the JWE"
    );

    // The next authorization sees the new card.
    assert_eq!(iso_code(&server, &pan, 1), "00");
    // Full data again, by GET with only the headers; the admin panel sees it masked only.
    let full = jwe.open(&jwe.call(
        server.http(),
        "GET",
        &format!("/customers/me/cards/{id}"),
        &session,
        None,
    ));
    assert_eq!(
        (full["cardNo"].as_str(), full["cvv"].as_str()),
        (Some(pan.as_str()), card["cvv"].as_str())
    );
    server.test.add_admin("mark", PASSWORD, Role::Manager);
    let mark = server.test.admin_token("mark", PASSWORD);
    let masked = http_json(
        server.http(),
        "GET",
        &format!("/admin/cards/{id}"),
        Some(&mark),
        json!(null),
    );
    assert!(masked.json()["maskedPan"]
        .as_str()
        .is_some_and(|m| m.contains("******")));
    assert!(!String::from_utf8_lossy(&masked.body).contains(&pan));

    // Reset CVV: a new one.
    let reset = jwe.open(&jwe.call(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/cvv"),
        &session,
        None,
    ));
    assert_ne!(reset["cvv"], card["cvv"]);

    // Lock and unlock; an irreversible lock stays.
    let lock = |reason: u8| {
        http_json(
            server.http(),
            "POST",
            &format!("/customers/me/cards/{id}/lock"),
            Some(&session),
            json!({"reason": reason}),
        )
    };
    assert_eq!(lock(3).status, 200);
    assert_eq!(iso_code(&server, &pan, 2), "05");
    assert_eq!(
        http_json(
            server.http(),
            "POST",
            &format!("/customers/me/cards/{id}/unlock"),
            Some(&session),
            json!(null)
        )
        .status,
        200
    );
    assert_eq!(iso_code(&server, &pan, 3), "00");
    assert_eq!(lock(9).code(), "INVALID_LOCK_REASON");
    assert_eq!(lock(1).status, 200);
    assert_eq!(iso_code(&server, &pan, 4), "41");
    let refused = http_json(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/unlock"),
        Some(&session),
        json!(null),
    );
    assert_eq!(
        (refused.status, refused.code()),
        (409, "LOCK_IRREVERSIBLE".to_string())
    );

    // Remove: the PAN declines as an invalid card, and nothing brings it back.
    assert_eq!(
        http_json(
            server.http(),
            "DELETE",
            &format!("/customers/me/cards/{id}"),
            Some(&session),
            json!(null)
        )
        .status,
        204
    );
    assert_eq!(iso_code(&server, &pan, 5), "14");
    let gone = jwe.call(
        server.http(),
        "GET",
        &format!("/customers/me/cards/{id}"),
        &session,
        None,
    );
    assert_eq!(
        (gone.status, gone.code()),
        (409, "CARD_REMOVED".to_string()),
        "errors are never encrypted"
    );
}

#[test]
fn cards_are_created_asynchronously_and_only_for_the_callers_customers() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let started = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/u-ok/cards/virtual/async",
        json!({"balanceId": "b-ok"}),
    );
    assert_eq!(
        started.status,
        202,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    let op = started.json()["id"]
        .as_str()
        .expect("operation")
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let done = loop {
        let state = secure_json(
            &server,
            &acme,
            "GET",
            &format!("/secure/customers/u-ok/cards/operations/{op}"),
            json!(null),
        )
        .json();
        if state["status"] != "PENDING" || std::time::Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(done["status"], "DONE");
    let card_id = done["cardId"].as_str().expect("card").to_string();
    let listed = secure_json(
        &server,
        &acme,
        "GET",
        "/secure/customers/u-ok/cards",
        json!(null),
    )
    .json();
    assert!(listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|c| c["id"] == card_id.as_str()));
    // A balance of another customer, and a customer without accepted KYC, are refused.
    let wrong = secure_json(
        &server,
        &acme,
        "POST",
        "/secure/customers/u-ok/cards/virtual/async",
        json!({"balanceId": "b-poor"}),
    );
    let wrong_op = wrong.json()["id"].as_str().expect("op").to_string();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let failed = secure_json(
        &server,
        &acme,
        "GET",
        &format!("/secure/customers/u-ok/cards/operations/{wrong_op}"),
        json!(null),
    )
    .json();
    assert_eq!(
        (failed["status"].as_str(), failed["error"]["code"].as_str()),
        (Some("FAILED"), Some("BALANCE_NOT_FOUND"))
    );
    // Another program's partner sees neither the operation nor the card.
    let other = onboard(&server.ca, "credit");
    assert_eq!(
        secure_json(
            &server,
            &other,
            "GET",
            &format!("/secure/customers/u-ok/cards/operations/{op}"),
            json!(null)
        )
        .status,
        404
    );
}

#[test]
fn a_physical_card_is_linked_by_personalisation_then_activated_and_gets_a_pin() {
    let server = Server::start(|_| {});
    server.test.add_admin("mark", PASSWORD, Role::Manager);
    let acme = onboard(&server.ca, "eur");
    let session = paired_session(&server, &acme, "u-ok");
    let jwe = JweClient::new(&server);
    let ordered = jwe.call(
        server.http(),
        "POST",
        "/customers/me/cards/physical",
        &session,
        Some(json!({"balanceId": "b-ok"})),
    );
    assert_eq!(
        ordered.status,
        201,
        "{}",
        String::from_utf8_lossy(&ordered.body)
    );
    let card = jwe.open(&ordered);
    let id = card["id"].as_str().expect("id").to_string();
    assert_eq!(
        (card["state"].as_str(), card["linked"].as_bool()),
        (Some("inactive"), Some(false))
    );
    // Not in the customer's resources until personalised.
    let mine = http_json(
        server.http(),
        "GET",
        "/customers/me/cards",
        Some(&session),
        json!(null),
    )
    .json();
    assert!(!mine["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|c| c["id"] == id.as_str()));
    let early = http_json(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/activate"),
        Some(&session),
        json!(null),
    );
    assert_eq!(early.status, 404);
    let mark = server.test.admin_token("mark", PASSWORD);
    let linked = http_json(
        server.http(),
        "POST",
        &format!("/admin/cards/{id}/personalised"),
        Some(&mark),
        json!(null),
    );
    assert_eq!(linked.json()["linked"], true);
    let active = http_json(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/activate"),
        Some(&session),
        json!(null),
    );
    assert_eq!(active.json()["state"], "active");
    let again = http_json(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/activate"),
        Some(&session),
        json!(null),
    );
    assert_eq!(again.code(), "ALREADY_ACTIVE");
    // Set PIN (JWE only), physical and Digital First cards only.
    let pin = jwe.call(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/pin"),
        &session,
        Some(json!({"pin": "2468"})),
    );
    assert_eq!(pin.status, 200, "{}", String::from_utf8_lossy(&pin.body));
    assert_eq!(jwe.open(&pin)["pinSet"], true);
    let bad_pin = jwe.call(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/pin"),
        &session,
        Some(json!({"pin": "12"})),
    );
    assert_eq!(bad_pin.code(), "INVALID_PIN");
    // A physical card's CVV2 is not reset; a virtual card cannot get a PIN.
    let no_reset = jwe.call(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/cvv"),
        &session,
        None,
    );
    assert_eq!(no_reset.code(), "CVV_RESET_NOT_ALLOWED");
}

#[test]
fn print_virtual_needs_a_digital_first_program() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let session = paired_session(&server, &acme, "u-ok");
    let jwe = JweClient::new(&server);
    let card = jwe.open(&jwe.call(
        server.http(),
        "POST",
        "/customers/me/cards/virtual",
        &session,
        Some(json!({"balanceId": "b-ok"})),
    ));
    let id = card["id"].as_str().expect("id").to_string();
    let refused = jwe.call(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/print"),
        &session,
        None,
    );
    assert_eq!(
        (refused.status, refused.code()),
        (409, "NOT_DIGITAL_FIRST".to_string())
    );
    server.test.apply(|state, changes, _| {
        let mut program = state.programs.get("eur").cloned().expect("program");
        program.digital_first = true;
        changes.put_program(state, program);
    });
    let printed = jwe.call(
        server.http(),
        "POST",
        &format!("/customers/me/cards/{id}/print"),
        &session,
        None,
    );
    assert_eq!(
        printed.status,
        200,
        "{}",
        String::from_utf8_lossy(&printed.body)
    );
    let view = jwe.open(&printed);
    assert_eq!(
        (view["type"].as_str(), view["state"].as_str()),
        (Some("digital_first"), Some("active")),
        "no activation needed"
    );
    let pan = card["cardNo"].as_str().expect("pan");
    assert_eq!(iso_code(&server, pan, 1), "00", "same PAN");
}

#[test]
fn external_entities_lock_cards_by_pan() {
    let server = Server::start(|_| {});
    let network = onboard(&server.ca, "network-visa");
    let partner = onboard(&server.ca, "eur");
    let locked = secure_json(
        &server,
        &network,
        "POST",
        "/secure/external/locks",
        json!({"pan": pan("ok"), "reason": 7}),
    );
    assert_eq!(
        locked.status,
        200,
        "{}",
        String::from_utf8_lossy(&locked.body)
    );
    assert_eq!(iso_code(&server, &pan("ok"), 1), "59");
    let not_network = secure_json(
        &server,
        &partner,
        "POST",
        "/secure/external/locks",
        json!({"pan": pan("ok"), "reason": 7}),
    );
    assert_eq!(
        (not_network.status, not_network.code()),
        (403, "NOT_AN_EXTERNAL_ENTITY".to_string())
    );
    let unknown = secure_json(
        &server,
        &network,
        "POST",
        "/secure/external/locks",
        json!({"pan": "5355229999999990", "reason": 6}),
    );
    assert_eq!(unknown.status, 404);
    // The lock outside cannot replace an irreversible one.
    assert_eq!(
        secure_json(
            &server,
            &network,
            "POST",
            "/secure/external/locks",
            json!({"pan": pan("lock1"), "reason": 7})
        )
        .code(),
        "LOCK_IRREVERSIBLE"
    );
}

#[test]
fn jwe_errors_are_the_seeds_codes() {
    let server = Server::start(|_| {});
    let acme = onboard(&server.ca, "eur");
    let session = paired_session(&server, &acme, "u-ok");
    let jwe = JweClient::new(&server);
    let auth = format!("Bearer {session}");
    let count = || {
        http_json(
            server.http(),
            "GET",
            "/customers/me/cards",
            Some(&session),
            json!(null),
        )
        .json()["items"]
            .as_array()
            .map(Vec::len)
    };
    let before = count();
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        http(
            server.http(),
            "POST",
            "/customers/me/cards/virtual",
            &all,
            body,
        )
    };
    let bad_key = post(
        &[
            ("Public-Key", "bm90IGEga2V5"),
            ("Encrypted-Request", "true"),
        ],
        &jwe.seal(&json!({"balanceId": "b-ok"})),
    );
    assert_eq!(bad_key.code(), "INVALID_PUBLIC_KEY");
    let garbage = post(
        &[
            ("Public-Key", &jwe.public_b64),
            ("Encrypted-Request", "true"),
        ],
        br#"{"payload": "not.a.jwe"}"#,
    );
    assert_eq!(garbage.code(), "INVALID_PAYLOAD");
    let other = RSA_OAEP_256.generate_key_pair(2048).expect("rsa");
    let stranger = JweClient {
        server_pem: String::from_utf8(other.to_pem_public_key()).expect("pem"),
        ..JweClient::new(&server)
    };
    let undecryptable = post(
        &[
            ("Public-Key", &jwe.public_b64),
            ("Encrypted-Request", "true"),
        ],
        &stranger.seal(&json!({"balanceId": "b-ok"})),
    );
    assert_eq!(undecryptable.code(), "CANT_DECRYPT_PAYLOAD");
    // Nothing was issued by the refused requests.
    assert_eq!(
        count(),
        before,
        "nothing was issued by the refused requests"
    );
}
