//! Shared test helpers: start a real server on 127.0.0.1:0 over a sled store
//! in a temporary directory, and talk ISO 8583 to it over TCP.
#![allow(dead_code)]

use antaca::app::{self, Running, ServeOptions};
use antaca::iso8583::{Message, Spec};
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
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no card {card_id} in the test portfolio"))
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
        let dir = tempfile::tempdir().expect("tempdir");
        let running = start_in(dir.path(), spec, Some(fixture("test-portfolio.json")));
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

pub fn start_in(dir: &Path, spec: &str, portfolio: Option<PathBuf>) -> Running {
    let options = ServeOptions {
        data: dir.to_path_buf(),
        iso_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        spec: spec.into(),
        portfolio,
        ..ServeOptions::default()
    };
    app::start(options).unwrap_or_else(|e| panic!("server starts: {e}"))
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
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let date = antaca::calendar::date_of_ms(secs * 1000);
    let s = secs % 86_400;
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
    let mti: [u8; 4] = mti.as_bytes().try_into().expect("mti");
    let mut m = Message::new(mti);
    let transmission = transmission_now();
    m.set(2, pan.to_string());
    m.set(3, processing.to_string());
    m.set(4, format!("{amount_minor:012}"));
    m.set(7, transmission.clone());
    m.set(11, format!("{stan:06}"));
    m.set(12, transmission[4..10].to_string());
    m.set(13, transmission[0..4].to_string());
    m.set(18, "5411".to_string());
    m.set(22, "051".to_string());
    m.set(32, "123456".to_string());
    m.set(37, format!("{stan:012}"));
    m.set(41, "TERM0001".to_string());
    m.set(42, "MERCHANT0000001".to_string());
    m.set(49, "978".to_string());
    m
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
