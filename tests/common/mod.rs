//! Shared test helpers: start a real server on 127.0.0.1:0 over a sled store
//! in a temporary directory, and talk ISO 8583 to it over TCP.
#![allow(dead_code)]

pub mod partner;

use antaca::app::{self, Running, ServeOptions};
use antaca::domain::outcome::Dialect;
use antaca::iso8583::{Message, Spec};
use antaca::protocol::builder::RequestBuilder;
use bytes::{Bytes, BytesMut};
pub use rust_decimal::Decimal;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// (available, held) from decimal strings.
pub fn amounts(available: &str, held: &str) -> (Decimal, Decimal) {
    (
        available.parse().expect("decimal"),
        held.parse().expect("decimal"),
    )
}

/// Path of a file in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The PAN of a card of the test portfolio (never printed by the tests).
pub fn pan(card_id: &str) -> String {
    let text = std::fs::read_to_string(fixture("test-portfolio.json")).expect("test portfolio");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .find(|c| c["id"] == card_id)
        .and_then(|c| c["pan"].as_str())
        .map_or_else(
            || panic!("no card {card_id} in the test portfolio"),
            str::to_string,
        )
}

/// A server over a sled store in its own temporary directory.
pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub spec: String,
}

impl TestServer {
    /// Starts on 127.0.0.1:0 with the test portfolio.
    pub fn start(spec: &str) -> TestServer {
        TestServer::start_with(spec, |_| {})
    }

    /// Starts with changed options (on 127.0.0.1:0, the test portfolio, a temporary store).
    pub fn start_with(spec: &str, change: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = options_for(dir.path(), spec, Some(fixture("test-portfolio.json")));
        change(&mut options);
        let running = app::start(options).unwrap_or_else(|e| panic!("server starts: {e}"));
        TestServer {
            running: Some(running),
            dir,
            spec: spec.to_string(),
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn iso_addr(&self) -> SocketAddr {
        self.running().iso_addr
    }

    pub fn client(&self) -> Client {
        Client::connect(self.iso_addr(), &self.spec)
    }

    /// Stops the server and starts it again on the same store.
    pub fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        self.running = Some(start_in(self.dir.path(), &self.spec, None));
    }

    /// Available and held amount of a balance.
    pub fn balance(&self, id: &str) -> (Decimal, Decimal) {
        let id = id.to_string();
        let engine = self.running().engine();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime
            .block_on(engine.inspect(move |state| {
                let b = state.balances.get(&id).expect("balance");
                (b.available, b.held)
            }))
            .expect("engine")
    }

    /// Number of journal entries and whether each balances, read back from the store after a stop.
    pub fn journal_len(&self) -> u64 {
        let engine = self.running().engine();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime
            .block_on(engine.inspect(|state| state.next_journal - 1))
            .expect("engine")
    }
}

pub fn options_for(dir: &Path, spec: &str, portfolio: Option<PathBuf>) -> ServeOptions {
    ServeOptions {
        data: dir.to_path_buf(),
        iso_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        secure_listen: Some("127.0.0.1:0".into()),
        spec: spec.into(),
        portfolio,
        ..ServeOptions::default()
    }
}

pub fn start_in(dir: &Path, spec: &str, portfolio: Option<PathBuf>) -> Running {
    app::start(options_for(dir, spec, portfolio)).unwrap_or_else(|e| panic!("server starts: {e}"))
}

/// A blocking ISO 8583 client with a 2-byte length header.
pub struct Client {
    pub stream: TcpStream,
    pub spec: Spec,
}

impl Client {
    pub fn connect(addr: SocketAddr, spec: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            spec: Spec::load(spec).expect("spec"),
        }
    }

    pub fn send(&mut self, msg: &Message) {
        let mut body = BytesMut::new();
        self.spec.encode(msg, &mut body).expect("encode");
        self.send_raw(&body);
    }

    pub fn send_raw(&mut self, body: &[u8]) {
        let mut frame = Vec::with_capacity(body.len() + 2);
        frame.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).expect("write");
    }

    /// Reads one response frame; `None` when the server closed the connection.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 2];
        if self.stream.read_exact(&mut header).is_err() {
            return None;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(header))];
        self.stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    pub fn recv(&mut self) -> Message {
        let body = self
            .recv_frame()
            .expect("a response before the connection closed");
        self.spec
            .decode(&Bytes::from(body))
            .expect("decodable response")
    }

    pub fn call(&mut self, msg: &Message) -> Message {
        self.send(msg);
        self.recv()
    }
}

/// Current UTC MMDDhhmmss (field 7).
pub fn transmission_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    transmission_at(u64::try_from(ms).expect("ms"))
}

/// UTC MMDDhhmmss (field 7) of `ms` since the epoch.
pub fn transmission_at(ms: u64) -> String {
    let date = antaca::domain::calendar::date_of_ms(ms);
    let s = (ms / 1000) % 86_400;
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        date.month,
        date.day,
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// A request with the fields an acquirer sends: 2, 3, 4, 7, 11, 12, 13, 18, 22, 32, 37, 41, 42, 49.
pub fn request(mti: &str, pan: &str, processing: &str, amount_minor: u64, stan: u32) -> Message {
    request_at(
        mti,
        pan,
        processing,
        amount_minor,
        stan,
        &transmission_now(),
    )
}

/// [`request`] sent at `transmission` (MMDDhhmmss, field 7; 12 and 13 follow from it).
pub fn request_at(
    mti: &str,
    pan: &str,
    processing: &str,
    amount_minor: u64,
    stan: u32,
    transmission: &str,
) -> Message {
    let mti: [u8; 4] = mti.as_bytes().try_into().expect("mti");
    let transmission = transmission.to_string();
    let mut digits = BytesMut::new();
    // Field 12 is hhmmss whatever the dialect, as the tests always sent it.
    RequestBuilder::new(Dialect::Iso87, mti, 16, &mut digits)
        .pan(pan.to_string())
        .processing_code(processing.to_string())
        .amount_minor(amount_minor)
        .transmission(transmission.clone())
        .stan(stan)
        .local_time(transmission[4..10].to_string())
        .local_date(transmission[0..4].to_string())
        .mcc("5411")
        .pos_entry_mode("051")
        .acquirer("123456")
        .retrieval_reference(u64::from(stan))
        .terminal("TERM0001")
        .merchant("MERCHANT0000001")
        .currency("978")
        .build()
}

/// A purchase authorization (0100, processing 000000).
pub fn auth(pan: &str, amount_minor: u64, stan: u32) -> Message {
    request("0100", pan, "000000", amount_minor, stan)
}

/// A field as a string.
pub fn field(msg: &Message, n: usize) -> String {
    String::from_utf8_lossy(msg.get(n).unwrap_or_default()).into_owned()
}

/// Field 39.
pub fn code(msg: &Message) -> String {
    field(msg, 39)
}

/// Field 90 naming `original`.
pub fn original_data(original: &Message) -> String {
    format!(
        "{}{}{}{:0>11}{:0>11}",
        String::from_utf8_lossy(&original.mti()),
        field(original, 11),
        field(original, 7),
        field(original, 32),
        "0"
    )
}

/// A parsed HTTP response.
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a raw HTTP/1.1 response.
pub fn parse_http(raw: &[u8]) -> HttpReply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// One HTTP/1.1 request over a new plain connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(&http_request(method, path, headers, body))
        .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    parse_http(&raw)
}

/// The bytes of an HTTP/1.1 request.
pub fn http_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: antaca\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A JSON request with an optional bearer token.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> HttpReply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    http(addr, method, path, &headers, &bytes)
}

impl TestServer {
    /// Creates an administrator directly in the store (what `antaca admin add` does).
    pub fn add_admin(&self, login: &str, password: &str, role: antaca::http::sessions::Role) {
        use antaca::http::sessions::{self, Administrator};
        let admin = Administrator {
            login: login.into(),
            role,
            password_hash: sessions::hash_password(password).expect("hash"),
            failed_attempts: 0,
            locked_until_ms: 0,
        };
        let engine = self.running().engine();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime
            .block_on(engine.apply(move |state, changes, _| {
                changes.put_record(state, &sessions::admin_key(&admin.login), &admin);
            }))
            .expect("admin");
    }

    /// Logs an administrator in; returns the session token.
    pub fn admin_token(&self, login: &str, password: &str) -> String {
        let reply = http_json(
            self.running().http_addr,
            "POST",
            "/admin/login",
            None,
            serde_json::json!({ "login": login, "password": password }),
        );
        assert_eq!(
            reply.status,
            200,
            "login: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["sessionToken"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Runs a management operation directly on the writer.
    pub fn apply<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut antaca::engine::state::State, &mut antaca::engine::state::Changes, u64) -> T
            + Send
            + 'static,
    ) -> T {
        let engine = self.running().engine();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(engine.apply(f)).expect("apply")
    }

    /// Creates customer `id` in program `eur` with a manual KYC case in progress.
    pub fn customer_in_manual_kyc(&self, id: &str) {
        let id = id.to_string();
        self.apply(move |state, changes, now| {
            antaca::manage::customers::create_customer(
                state,
                changes,
                "eur",
                antaca::manage::customers::NewCustomer {
                    id: Some(id.clone()),
                    ..Default::default()
                },
                now,
            )
            .expect("customer");
            antaca::manage::kyc::start_kyc(
                state,
                changes,
                &id,
                None,
                antaca::manage::kyc::KycMode::Manual,
                serde_json::json!({"name": "Ada"}),
                now,
            )
            .expect("kyc");
        });
    }
}

/// The zone PIN key of the PIN tests (double length, odd parity).
pub const TEST_ZPK_HEX: &str = "0123456789ABCDEFFEDCBA9876543210";

/// The test zone PIN key.
pub fn test_zpk() -> antaca::security::pinblock::ZonePinKey {
    antaca::security::pinblock::ZonePinKey::from_hex(TEST_ZPK_HEX).expect("zpk")
}

/// A format 0 PIN block for `pin` and `pan` under the test ZPK (field 52's 8 bytes).
pub fn pin_block(pin: &str, pan: &str) -> Bytes {
    Bytes::copy_from_slice(
        &test_zpk()
            .encrypt_pin_block(pin, pan.as_bytes())
            .expect("pin block"),
    )
}

/// A file update request (0302, or 1302 when `mti` says so): field 91 `code`,
/// field 101 file name, lock `reason` in field 48 tag 90 when given.
pub fn file_update(mti: &str, pan: &str, code: &str, reason: Option<u8>, stan: u32) -> Message {
    file_update_at(mti, pan, code, reason, stan, &transmission_now())
}

/// [`file_update`] sent at `transmission` (MMDDhhmmss, field 7).
pub fn file_update_at(
    mti: &str,
    pan: &str,
    code: &str,
    reason: Option<u8>,
    stan: u32,
    transmission: &str,
) -> Message {
    let mti: [u8; 4] = mti.as_bytes().try_into().expect("mti");
    let mut digits = BytesMut::new();
    let mut m = RequestBuilder::new(Dialect::Iso87, mti, 8, &mut digits)
        .pan(pan.to_string())
        .transmission(transmission.to_string())
        .stan(stan)
        .acquirer("123456")
        .file_update_code(code.to_string())
        .file_name("EXCEPTIONFILE");
    if let Some(reason) = reason {
        let location = antaca::iso8583::TlvLocation {
            field: 48,
            tag: "90".into(),
        };
        m = m.lock_reason(&location, reason);
    }
    m.build()
}

impl TestServer {
    /// A card as the engine holds it now.
    pub fn card(&self, id: &str) -> antaca::domain::model::Card {
        let id = id.to_string();
        let engine = self.running().engine();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime
            .block_on(engine.inspect(move |state| state.cards.get(&id).cloned()))
            .expect("engine")
            .expect("card")
    }

    /// Changes a card through the writer (committed before it returns).
    pub fn change_card(
        &self,
        id: &str,
        change: impl FnOnce(&mut antaca::domain::model::Card) + Send + 'static,
    ) {
        let id = id.to_string();
        self.apply(move |state, changes, _| {
            let mut card = state.cards.get(&id).cloned().expect("card");
            change(&mut card);
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&card.pan_hash, &mut hash).expect("pan hash");
            changes.put_card(state, card, hash);
        });
    }
}
