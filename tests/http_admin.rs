//! The administration panel over real HTTP: login, roles, lockout, sessions,
//! error bodies, KYC decisions, balances, idempotent reloads seen by the next
//! ISO 8583 authorization, partner balances, the summary and history.

mod common;

use antaca::http::sessions::Role;
use common::*;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

fn server_with_admins() -> TestServer {
    let server = TestServer::start("iso87ascii");
    server.add_admin("alice", PASSWORD, Role::Admin);
    server.add_admin("mark", PASSWORD, Role::Manager);
    server.add_admin("emma", PASSWORD, Role::Employee);
    server
}

#[test]
fn login_roles_and_refusals() {
    let server = server_with_admins();
    let addr = server.running().http_addr;
    let emma = server.admin_token("emma", PASSWORD);
    // No token, unknown token, wrong role.
    assert_eq!(
        http_json(addr, "GET", "/admin/summary", None, json!(null)).code(),
        "UNAUTHORIZED"
    );
    let bogus = http_json(addr, "GET", "/admin/summary", Some("nope"), json!(null));
    assert_eq!(
        (bogus.status, bogus.code()),
        (401, "INVALID_SESSION".to_string())
    );
    let refused = http_json(
        addr,
        "POST",
        "/admin/partner-balances",
        Some(&emma),
        json!({"program": "eur", "kind": "credit", "currency": "EUR"}),
    );
    assert_eq!(
        (refused.status, refused.code()),
        (403, "FORBIDDEN_ROLE".to_string())
    );
    assert_eq!(
        http_json(addr, "GET", "/admin/summary", Some(&emma), json!(null)).status,
        200
    );
    // Logout ends the session.
    assert_eq!(
        http_json(addr, "POST", "/admin/logout", Some(&emma), json!(null)).status,
        204
    );
    assert_eq!(
        http_json(addr, "GET", "/admin/summary", Some(&emma), json!(null)).code(),
        "INVALID_SESSION"
    );
    // A customer-channel path with an admin token is refused.
    let alice = server.admin_token("alice", PASSWORD);
    assert_eq!(
        http_json(addr, "GET", "/customers/me", Some(&alice), json!(null)).code(),
        "WRONG_CHANNEL"
    );
}

#[test]
fn repeated_wrong_passwords_lock_the_login() {
    let server = server_with_admins();
    let addr = server.running().http_addr;
    for _ in 0..5 {
        let r = http_json(
            addr,
            "POST",
            "/admin/login",
            None,
            json!({"login": "mark", "password": "wrong password!"}),
        );
        assert_eq!(
            (r.status, r.code()),
            (401, "INVALID_CREDENTIALS".to_string())
        );
    }
    // While locked, a wrong password looks like any wrong password; only the right one learns of the lock.
    let wrong = http_json(
        addr,
        "POST",
        "/admin/login",
        None,
        json!({"login": "mark", "password": "still wrong!!"}),
    );
    assert_eq!(
        (wrong.status, wrong.code()),
        (401, "INVALID_CREDENTIALS".to_string())
    );
    let locked = http_json(
        addr,
        "POST",
        "/admin/login",
        None,
        json!({"login": "mark", "password": PASSWORD}),
    );
    assert_eq!(
        (locked.status, locked.code()),
        (423, "LOGIN_LOCKED".to_string())
    );
    // Unknown logins answer like wrong passwords.
    let unknown = http_json(
        addr,
        "POST",
        "/admin/login",
        None,
        json!({"login": "nobody", "password": PASSWORD}),
    );
    assert_eq!(unknown.code(), "INVALID_CREDENTIALS");
}

#[test]
fn sessions_expire() {
    let server = TestServer::start_with("iso87ascii", |o| {
        o.http.admin_session = std::time::Duration::from_millis(300);
    });
    server.add_admin("alice", PASSWORD, Role::Admin);
    let token = server.admin_token("alice", PASSWORD);
    let addr = server.running().http_addr;
    assert_eq!(
        http_json(addr, "GET", "/admin/summary", Some(&token), json!(null)).status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(400));
    let expired = http_json(addr, "GET", "/admin/summary", Some(&token), json!(null));
    assert_eq!(
        (expired.status, expired.code()),
        (401, "SESSION_EXPIRED".to_string())
    );
}

#[test]
fn bad_input_gets_a_4xx_with_a_code() {
    let server = server_with_admins();
    let addr = server.running().http_addr;
    let alice = server.admin_token("alice", PASSWORD);
    let auth = format!("Bearer {alice}");
    let post = |path: &str, body: &[u8]| {
        http(
            addr,
            "POST",
            path,
            &[("Authorization", auth.as_str()), ("Idempotency-Key", path)],
            body,
        )
    };
    let no_key = http(
        addr,
        "POST",
        "/admin/balances/b-ok/reload",
        &[("Authorization", auth.as_str())],
        br#"{"amount": "1.00", "currency": "EUR"}"#,
    );
    assert_eq!(
        (no_key.status, no_key.code()),
        (400, "IDEMPOTENCY_KEY_REQUIRED".to_string())
    );
    let cases: Vec<(HttpReply, u16, &str)> = vec![
        (
            post("/admin/balances/b-ok/reload", b"{\"amount\": "),
            400,
            "MALFORMED_JSON",
        ),
        (
            post(
                "/admin/balances/b-ok/reload",
                br#"{"amount": "1.00", "currency": "EUR", "x": 1}"#,
            ),
            400,
            "UNKNOWN_FIELD",
        ),
        (
            post(
                "/admin/balances/b-ok/reload",
                br#"{"amount": 1, "currency": "EUR"}"#,
            ),
            400,
            "INVALID_FIELD",
        ),
        (
            post("/admin/balances/b-ok/reload", br#"{"currency": "EUR"}"#),
            400,
            "MISSING_FIELD",
        ),
        (
            post(
                "/admin/balances/b-ok/reload",
                br#"{"amount": "1.001", "currency": "EUR"}"#,
            ),
            400,
            "INVALID_AMOUNT",
        ),
        (
            post(
                "/admin/balances/b-ok/reload",
                br#"{"amount": "-1.00", "currency": "EUR"}"#,
            ),
            400,
            "INVALID_AMOUNT",
        ),
        (
            post(
                "/admin/balances/b-ok/reload",
                br#"{"amount": "1.00", "currency": "USD"}"#,
            ),
            400,
            "CURRENCY_MISMATCH",
        ),
        (
            post(
                "/admin/balances/nope/reload",
                br#"{"amount": "1.00", "currency": "EUR"}"#,
            ),
            404,
            "BALANCE_NOT_FOUND",
        ),
        (
            post("/admin/customers/u-ok/balances", br#"{"currency": "XYZ"}"#),
            400,
            "INVALID_CURRENCY",
        ),
        (
            post(
                "/admin/customers/nobody/balances",
                br#"{"currency": "EUR"}"#,
            ),
            404,
            "CUSTOMER_NOT_FOUND",
        ),
        (
            post("/admin/balances/b-ok/reload", &vec![b' '; 70 * 1024]),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            http(
                addr,
                "DELETE",
                "/admin/summary",
                &[("Authorization", auth.as_str())],
                b"",
            ),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            http(addr, "GET", "/admin/nothing-here", &[], b""),
            404,
            "NOT_FOUND",
        ),
        (
            http(
                addr,
                "POST",
                "/admin/login",
                &[("Content-Type", "text/plain")],
                b"login",
            ),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            http(addr, "GET", "/secure/customers/u-ok", &[], b""),
            403,
            "CLIENT_CERTIFICATE_REQUIRED",
        ),
        (
            http(
                addr,
                "GET",
                "/admin/balances/b-ok/transactions?limit=0",
                &[("Authorization", auth.as_str())],
                b"",
            ),
            400,
            "INVALID_QUERY",
        ),
    ];
    for (i, (reply, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(
            (reply.status, reply.code()),
            (status, code.to_string()),
            "case {i}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply.json()["message"].is_string(),
            "case {i} has a message"
        );
    }
    // Nothing moved.
    assert_eq!(server.balance("b-ok"), amounts("1000.00", "0"));
}

#[test]
fn a_reload_is_seen_by_the_next_authorization_and_retries_move_nothing_twice() {
    let server = server_with_admins();
    let addr = server.running().http_addr;
    let mark = server.admin_token("mark", PASSWORD);
    let mut iso = server.client();
    assert_eq!(code(&iso.call(&auth(&pan("poor"), 2_000, 1))), "51");
    let auth_header = format!("Bearer {mark}");
    let reload = |key: &str, amount: &str| {
        let body = json!({"amount": amount, "currency": "EUR"}).to_string();
        http(
            addr,
            "POST",
            "/admin/balances/b-poor/reload",
            &[
                ("Authorization", auth_header.as_str()),
                ("Idempotency-Key", key),
            ],
            body.as_bytes(),
        )
    };
    let first = reload("reload-1", "20.00");
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.json()["available"], "25.00");
    let retry = reload("reload-1", "20.00");
    assert_eq!(
        retry.json(),
        first.json(),
        "the retry returns the first answer"
    );
    let reused = reload("reload-1", "30.00");
    assert_eq!(
        (reused.status, reused.code()),
        (409, "IDEMPOTENCY_KEY_REUSED".to_string())
    );
    assert_eq!(server.balance("b-poor"), amounts("25.00", "0"));
    assert_eq!(
        code(&iso.call(&auth(&pan("poor"), 2_000, 2))),
        "00",
        "the reload is seen at once"
    );
    // History of the balance: the reload and both authorizations, newest first, with merchant data.
    let history = http_json(
        addr,
        "GET",
        "/admin/balances/b-poor/transactions",
        Some(&mark),
        json!(null),
    )
    .json();
    let items = history["items"].as_array().expect("items");
    let kinds: Vec<_> = items
        .iter()
        .map(|i| (i["type"].as_str(), i["outcome"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Some("AUTHORIZATION"), Some("SUCCESS")),
            (Some("RELOAD"), Some("SUCCESS")),
            (Some("AUTHORIZATION"), Some("DECLINED"))
        ]
    );
    assert_eq!(items[0]["state"], "AUTHORIZED");
    assert_eq!(items[0]["amountMinor"], 2000);
    assert_eq!(items[0]["currency"], "EUR");
    assert_eq!(items[0]["mcc"], "5411");
    assert_eq!(items[0]["merchantId"], "MERCHANT0000001");
    assert_eq!(
        items[0]["maskedPan"].as_str().map(|p| p.contains("******")),
        Some(true)
    );
    assert_eq!(items[2]["declineReason"], "insufficient_funds");
    // Paging: one at a time.
    let page = http_json(
        addr,
        "GET",
        "/admin/balances/b-poor/transactions?limit=1",
        Some(&mark),
        json!(null),
    )
    .json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let next = page["nextCursor"].as_u64().expect("cursor");
    let page2 = http_json(
        addr,
        "GET",
        &format!("/admin/balances/b-poor/transactions?limit=1&before={next}"),
        Some(&mark),
        json!(null),
    )
    .json();
    assert_eq!(page2["items"][0]["type"], "RELOAD");
    // The card's history, and a date filter that excludes everything.
    let card_id = "poor";
    let by_card = http_json(
        addr,
        "GET",
        &format!("/admin/cards/{card_id}/transactions"),
        Some(&mark),
        json!(null),
    )
    .json();
    assert_eq!(by_card["items"].as_array().map(Vec::len), Some(2));
    let old = http_json(
        addr,
        "GET",
        "/admin/balances/b-poor/transactions?to=2001-01-01",
        Some(&mark),
        json!(null),
    )
    .json();
    assert_eq!(old["items"].as_array().map(Vec::len), Some(0));
}

#[test]
fn manual_kyc_decision_creates_the_balance_automatically() {
    let server = server_with_admins();
    let addr = server.running().http_addr;
    server.customer_in_manual_kyc("new-1");
    let emma = server.admin_token("emma", PASSWORD);
    let mark = server.admin_token("mark", PASSWORD);
    // The KYC list with a filter, and the detail.
    let list = http_json(
        addr,
        "GET",
        "/admin/kyc?status=IN_PROGRESS",
        Some(&emma),
        json!(null),
    )
    .json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["customerId"], "new-1");
    // An operator adds a document; an Employee may not decide.
    let png = b"\x89PNG\r\n\x1a\nrest-of-the-image";
    let upload = http(
        addr,
        "PUT",
        "/admin/kyc/new-1/documents/id_front",
        &[
            ("Authorization", &format!("Bearer {emma}")),
            ("Content-Type", "image/png"),
        ],
        png,
    );
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    let doc_id = upload.json()["id"].as_str().expect("id").to_string();
    let fake = http(
        addr,
        "PUT",
        "/admin/kyc/new-1/documents/id_back",
        &[
            ("Authorization", &format!("Bearer {emma}")),
            ("Content-Type", "image/png"),
        ],
        b"GIF89a",
    );
    assert_eq!(
        (fake.status, fake.code()),
        (400, "INVALID_DOCUMENT".to_string())
    );
    let gif = http(
        addr,
        "PUT",
        "/admin/kyc/new-1/documents/id_back",
        &[
            ("Authorization", &format!("Bearer {emma}")),
            ("Content-Type", "image/gif"),
        ],
        b"GIF89a",
    );
    assert_eq!(gif.status, 415);
    let back = http(
        addr,
        "GET",
        &format!("/admin/kyc/new-1/documents/{doc_id}"),
        &[("Authorization", &format!("Bearer {emma}"))],
        b"",
    );
    assert_eq!(
        (
            back.status,
            back.body.as_slice(),
            back.header("content-type")
        ),
        (200, &png[..], Some("image/png"))
    );
    let refused = http_json(
        addr,
        "POST",
        "/admin/kyc/new-1/decision",
        Some(&emma),
        json!({"decision": "ACCEPTED"}),
    );
    assert_eq!(refused.code(), "FORBIDDEN_ROLE");
    let no_reason = http_json(
        addr,
        "POST",
        "/admin/kyc/new-1/decision",
        Some(&mark),
        json!({"decision": "REJECTED"}),
    );
    assert_eq!(no_reason.code(), "REASON_REQUIRED");
    let accepted = http_json(
        addr,
        "POST",
        "/admin/kyc/new-1/decision",
        Some(&mark),
        json!({"decision": "ACCEPTED"}),
    );
    assert_eq!(
        accepted.status,
        200,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    assert_eq!(accepted.json()["status"], "ACCEPTED");
    assert_eq!(accepted.json()["decidedBy"], "mark");
    let again = http_json(
        addr,
        "POST",
        "/admin/kyc/new-1/decision",
        Some(&mark),
        json!({"decision": "ACCEPTED"}),
    );
    assert_eq!(
        (again.status, again.code()),
        (409, "KYC_NOT_IN_PROGRESS".to_string())
    );
    let customer = http_json(
        addr,
        "GET",
        "/admin/customers/new-1",
        Some(&emma),
        json!(null),
    )
    .json();
    assert_eq!(customer["kycStatus"], "ACCEPTED");
    let balances = http_json(
        addr,
        "GET",
        "/admin/customers/new-1/balances",
        Some(&emma),
        json!(null),
    )
    .json();
    assert_eq!(
        balances["items"][0]["currency"], "EUR",
        "a balance in the program's currency was created"
    );
    assert_eq!(balances["items"][0]["available"], "0");
    // More balances on demand, in any currency.
    let usd = http_json(
        addr,
        "POST",
        "/admin/customers/new-1/balances",
        Some(&mark),
        json!({"currency": "USD"}),
    );
    assert_eq!(
        (usd.status, usd.json()["currency"].as_str()),
        (201, Some("USD"))
    );
}

#[test]
fn partner_balances_and_the_summary() {
    let server = server_with_admins();
    let addr = server.running().http_addr;
    let alice = server.admin_token("alice", PASSWORD);
    let created = http_json(
        addr,
        "POST",
        "/admin/partner-balances",
        Some(&alice),
        json!({"id": "pc-2", "program": "eur", "kind": "credit", "currency": "EUR", "lowLevel": "100.00"}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let reload = http(
        addr,
        "POST",
        "/admin/partner-balances/pc-2/reload",
        &[
            ("Authorization", &format!("Bearer {alice}")),
            ("Idempotency-Key", "top-up-1"),
        ],
        json!({"amount": "250.00", "currency": "EUR"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reload.json()["available"], "250.00");
    let got = http_json(
        addr,
        "GET",
        "/admin/partner-balances/pc-2",
        Some(&alice),
        json!(null),
    )
    .json();
    assert_eq!(
        (got["kind"].as_str(), got["lowLevel"].as_str()),
        (Some("PARTNER_CREDIT"), Some("100.00"))
    );
    // The summary equals the sums of the balances.
    let summary = http_json(addr, "GET", "/admin/summary", Some(&alice), json!(null)).json();
    let eur = summary["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["currency"] == "EUR")
        .expect("EUR")
        .clone();
    let (users, wallet) = server.apply(|state, _, _| {
        let mut users = rust_decimal::Decimal::ZERO;
        let mut wallet = rust_decimal::Decimal::ZERO;
        for b in state.balances.values().filter(|b| b.currency == "EUR") {
            if matches!(b.owner, antaca::domain::model::BalanceOwner::User(_)) {
                users += b.ledger();
            }
            wallet += b.ledger();
        }
        (users, wallet)
    });
    assert_eq!(
        eur["users"]
            .as_str()
            .map(|s| s.parse::<Decimal>().expect("d")),
        Some(users)
    );
    assert_eq!(
        eur["wallet"]
            .as_str()
            .map(|s| s.parse::<Decimal>().expect("d")),
        Some(wallet)
    );
    // 1000 + 5 + 20 × 50 + 0 in user balances; plus 100 + 200 + 250 partner.
    assert_eq!(users, "2005.00".parse::<Decimal>().expect("d"));
    assert_eq!(wallet, "2555.00".parse::<Decimal>().expect("d"));
}

#[test]
fn administrators_are_added_by_the_cli_and_by_admins() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_antaca"))
        .args(["admin", "add", "--data"])
        .arg(&data)
        .args(["--login", "root", "--role", "Admin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"a long enough password\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let running = start_in(&data, "iso87ascii", None);
    let addr = running.http_addr;
    let login = http_json(
        addr,
        "POST",
        "/admin/login",
        None,
        json!({"login": "root", "password": "a long enough password"}),
    );
    assert_eq!(login.status, 200);
    let token = login.json()["sessionToken"]
        .as_str()
        .expect("token")
        .to_string();
    let weak = http_json(
        addr,
        "POST",
        "/admin/administrators",
        Some(&token),
        json!({"login": "x", "password": "short", "role": "Employee"}),
    );
    assert_eq!(weak.code(), "WEAK_PASSWORD");
    let made = http_json(
        addr,
        "POST",
        "/admin/administrators",
        Some(&token),
        json!({"login": "eve", "password": "another long password", "role": "Employee"}),
    );
    assert_eq!(made.status, 201);
    let eve = http_json(
        addr,
        "POST",
        "/admin/login",
        None,
        json!({"login": "eve", "password": "another long password"}),
    );
    assert_eq!(eve.json()["role"], "Employee");
    running.stop();
}
