//! Crash consistency of the real binary: several ISO 8583 clients pipeline
//! authorizations, purchases, refunds, completions and reversals; the server
//! is killed with SIGKILL at a random moment, restarted, and checked; N times.
//!
//! After every kill, with the server stopped:
//! * `antaca verify --data DIR` exits 0;
//! * every approval any client received (in any cycle) is in the store: the
//!   transaction for its idempotency key exists, approved, with the approval
//!   code the client got.
//!
//! Then the server is restarted and approvals are re-sent as repeats (x101,
//! x201, x221, x401) or exact duplicates: each must come back approved with
//! the same approval code; after a second kill the store must show that they
//! moved no money (balances, journal and transaction counters unchanged).
//!
//! `cargo test` runs a short run (5 cycles) on each store backend (sled,
//! fjall). The long run (on sled, or on the backend `ANTACA_STORE` names):
//!
//! ```sh
//! ANTACA_CRASH_CYCLES=200 cargo test --test crash -- --ignored --nocapture
//! ANTACA_STORE=fjall ANTACA_CRASH_CYCLES=200 cargo test --test crash -- --ignored --nocapture
//! ```
//!
//! The test prints the cycles survived and the approvals checked; never card data.

mod common;

use antaca::domain::model::Txn;
use antaca::domain::outcome::Dialect;
use antaca::iso8583::{Message, Spec};
use antaca::protocol::{self, Profile};
use antaca::security::secrets::CardSecrets;
use antaca::store::{keys, Backend, DiskStore, Store};
use bytes::{Bytes, BytesMut};
use common::{field, fixture, original_data, pan, request, Decimal};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server process of the real binary.
struct Server {
    child: Child,
    iso: SocketAddr,
}

impl Server {
    /// Starts `antaca serve` on the `backend` store in `dir` and waits for its banner.
    fn start(dir: &Path, backend: Backend, portfolio: bool) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_antaca"));
        command
            .arg("serve")
            .arg("--data")
            .arg(dir)
            .args(["--store", backend.name()])
            .args(["--iso-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--secure-listen", "127.0.0.1:0"])
            .env("ANTACA_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if portfolio {
            command
                .arg("--portfolio")
                .arg(fixture("test-portfolio.json"));
        }
        let mut child = command.spawn().expect("start antaca serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let iso = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("ISO 8583 listening on ") {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        break addr.parse().expect("ISO address in the banner");
                    }
                }
                _ => {
                    let status = child.wait().expect("wait");
                    panic!("the server exited before listening: {status}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server { child, iso }
    }

    /// SIGKILL (std's `Child::kill` on Unix), then reap.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

/// An approval a client received, with the request that got it (kept in
/// memory only, never printed).
#[derive(Clone)]
struct Approval {
    request: Message,
    approval_code: Option<String>,
}

fn spec() -> Spec {
    Spec::load("iso87ascii").expect("spec")
}

fn encode_frame(spec: &Spec, msg: &Message) -> Vec<u8> {
    let mut body = BytesMut::new();
    spec.encode(msg, &mut body).expect("encode");
    let mut frame = u16::try_from(body.len())
        .expect("frame length")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn read_frame(stream: &mut TcpStream, spec: &Spec) -> Option<Message> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(header))];
    stream.read_exact(&mut body).ok()?;
    spec.decode(&Bytes::from(body)).ok()
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

fn next_stan(stans: &AtomicU32) -> u32 {
    stans.fetch_add(1, Ordering::Relaxed) % 999_999 + 1
}

/// One client: pipelined windows of mixed messages on `cards` until the
/// connection dies; returns every approval it received.
fn client(addr: SocketAddr, cards: Vec<String>, stans: Arc<AtomicU32>, seed: u64) -> Vec<Approval> {
    let spec = spec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut approvals = Vec::new();
    let Some(mut stream) = connect(addr) else {
        return approvals;
    };
    // Approved authorizations not yet completed or reversed by this client.
    let mut open: Vec<Message> = Vec::new();
    loop {
        let mut sent: HashMap<String, Message> = HashMap::new();
        let mut frames = Vec::new();
        for _ in 0..rng.gen_range(1..=16) {
            let card = &cards[rng.gen_range(0..cards.len())];
            let stan = next_stan(&stans);
            let amount = rng.gen_range(1..=300);
            let msg = match rng.gen_range(0..10) {
                0..=3 => request("0100", card, "000000", amount, stan),
                4..=5 => request("0200", card, "000000", amount, stan),
                6 => request("0200", card, "200000", amount, stan),
                7 if !open.is_empty() => {
                    let original = open.swap_remove(rng.gen_range(0..open.len()));
                    let mut completion = request(
                        "0220",
                        &field(&original, 2),
                        "000000",
                        rng.gen_range(1..=400),
                        stan,
                    );
                    completion.set(90, original_data(&original));
                    completion
                }
                8..=9 if !open.is_empty() => {
                    let original = open.swap_remove(rng.gen_range(0..open.len()));
                    let amount = field(&original, 4).parse().unwrap_or(0);
                    let mut reversal =
                        request("0400", &field(&original, 2), "000000", amount, stan);
                    reversal.set(90, original_data(&original));
                    reversal
                }
                _ => request("0100", card, "000000", amount, stan),
            };
            frames.extend_from_slice(&encode_frame(&spec, &msg));
            sent.insert(field(&msg, 11), msg);
        }
        if stream.write_all(&frames).is_err() {
            return approvals;
        }
        while !sent.is_empty() {
            let Some(response) = read_frame(&mut stream, &spec) else {
                return approvals;
            };
            let Some(req) = sent.remove(&field(&response, 11)) else {
                continue;
            };
            if field(&response, 39) == "00" {
                if req.mti() == *b"0100" {
                    open.push(req.clone());
                }
                approvals.push(Approval {
                    request: req,
                    approval_code: response
                        .get(38)
                        .map(|c| String::from_utf8_lossy(c).into_owned()),
                });
            }
        }
    }
}

/// What the store says after a kill: balances, counters and transactions by key.
struct Snapshot {
    balances: BTreeMap<String, (Decimal, Decimal)>,
    next_txn: Vec<u8>,
    next_journal: Vec<u8>,
    txns_by_key: HashMap<String, Txn>,
}

fn snapshot(dir: &Path) -> Snapshot {
    // Whichever backend the directory holds.
    let store = DiskStore::open(dir).expect("open the store after the kill");
    let balances = store
        .scan_prefix(keys::BALANCE)
        .expect("scan")
        .into_iter()
        .map(|(k, v)| {
            let b: antaca::domain::model::Balance =
                antaca::engine::record::decode(&k, &v).expect("balance");
            (b.id, (b.available, b.held))
        })
        .collect();
    let txns_by_key = store
        .scan_prefix(keys::TXN)
        .expect("scan")
        .into_iter()
        .map(|(k, v)| {
            let t: Txn = antaca::engine::record::decode(&k, &v).expect("txn");
            (t.key.clone(), t)
        })
        .collect();
    let counter = |name: &str| {
        store
            .get(&keys::key(keys::META, name))
            .expect("get")
            .unwrap_or_default()
    };
    Snapshot {
        balances,
        next_txn: counter("next_txn"),
        next_journal: counter("next_journal"),
        txns_by_key,
    }
}

fn verify_exits_0(dir: &Path, cycle: usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_antaca"))
        .arg("verify")
        .arg("--data")
        .arg(dir)
        .output()
        .expect("run antaca verify");
    assert_eq!(
        out.status.code(),
        Some(0),
        "cycle {cycle}: antaca verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every approval received is in the store, approved, with the same approval code.
fn approvals_present(
    snapshot: &Snapshot,
    approvals: &[Approval],
    secrets: &CardSecrets,
    cycle: usize,
) {
    let profile = Profile {
        dialect: Dialect::Iso87,
    };
    for (i, approval) in approvals.iter().enumerate() {
        let parsed = protocol::parse::parse(&approval.request, profile, secrets).expect("parse");
        let key = parsed.idempotency_key();
        let Some(txn) = snapshot.txns_by_key.get(&key) else {
            panic!(
                "cycle {cycle}: approval #{i} (MTI {}, STAN {}) was answered 00 but its transaction is not in the store",
                String::from_utf8_lossy(&approval.request.mti()),
                field(&approval.request, 11)
            );
        };
        assert_eq!(
            txn.outcome,
            antaca::domain::outcome::Outcome::Approved,
            "cycle {cycle}: transaction {} was answered approved",
            txn.id
        );
        assert_eq!(
            txn.approval_code, approval.approval_code,
            "cycle {cycle}: transaction {} keeps the approval code sent",
            txn.id
        );
    }
}

/// Re-sends `sample` as repeats or duplicates; each must get its approval code back.
fn resend(addr: SocketAddr, sample: &[Approval], rng: &mut impl Rng, cycle: usize) {
    let spec = spec();
    let mut stream = connect(addr).expect("connect");
    for chunk in sample.chunks(32) {
        let mut frames = Vec::new();
        let mut expected: HashMap<String, &Approval> = HashMap::new();
        for approval in chunk {
            let mut msg = approval.request.clone();
            if rng.gen_bool(0.5) {
                let mut mti = msg.mti();
                mti[3] = b'1';
                msg.set_mti(mti);
            }
            frames.extend_from_slice(&encode_frame(&spec, &msg));
            expected.insert(field(&msg, 11), approval);
        }
        stream.write_all(&frames).expect("write");
        for _ in 0..chunk.len() {
            let response = read_frame(&mut stream, &spec).expect("an answer to a duplicate");
            let approval = expected
                .remove(&field(&response, 11))
                .expect("an answer to a message sent");
            assert_eq!(
                field(&response, 39),
                "00",
                "cycle {cycle}: a duplicate of an approval (STAN {}) is answered 00",
                field(&response, 11)
            );
            assert_eq!(
                response
                    .get(38)
                    .map(|c| String::from_utf8_lossy(c).into_owned()),
                approval.approval_code,
                "cycle {cycle}: a duplicate gets the stored approval code"
            );
        }
    }
}

/// The cards the clients use (PANs stay in memory).
fn client_cards() -> Vec<Vec<String>> {
    vec![
        vec![pan("ok")],
        vec![pan("ok"), pan("poor")],
        (0..5).map(|i| pan(&format!("cr{i}"))).collect(),
        vec![pan("dep"), pan("cr7")],
    ]
}

fn run(cycles: usize, backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = rand::random::<u64>();
    println!("crash test on {backend}: {cycles} cycles, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let stans = Arc::new(AtomicU32::new(rng.gen_range(0..500_000)));
    let mut approvals: Vec<Approval> = Vec::new();
    let mut checked = 0usize;
    let mut duplicates = 0usize;
    let started = Instant::now();
    let mut server = Some(Server::start(dir.path(), backend, true));
    let secrets = CardSecrets::load_or_create(dir.path()).expect("data key");
    for cycle in 1..=cycles {
        // Load, then SIGKILL at a random moment.
        let running = server.take().expect("a running server");
        let threads: Vec<_> = client_cards()
            .into_iter()
            .enumerate()
            .map(|(i, cards)| {
                let (addr, stans) = (running.iso, stans.clone());
                let seed = rng.gen::<u64>() ^ i as u64;
                std::thread::spawn(move || client(addr, cards, stans, seed))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..700)));
        running.kill();
        let from = approvals.len();
        for t in threads {
            approvals.extend(t.join().expect("client thread"));
        }
        let new = approvals.len() - from;

        // Stopped: the store is consistent and holds every approval sent.
        verify_exits_0(dir.path(), cycle);
        let before = snapshot(dir.path());
        approvals_present(&before, &approvals, &secrets, cycle);
        checked += approvals.len();

        // Restarted: duplicates of this cycle's approvals and of older ones get the
        // stored answer and move nothing.
        let mut sample: Vec<Approval> = approvals[from..].to_vec();
        for i in rand::seq::index::sample(&mut rng, from, from.min(64)) {
            sample.push(approvals[i].clone());
        }
        let again = Server::start(dir.path(), backend, false);
        resend(again.iso, &sample, &mut rng, cycle);
        duplicates += sample.len();
        again.kill();
        let after = snapshot(dir.path());
        assert_eq!(
            after.balances, before.balances,
            "cycle {cycle}: duplicates moved money"
        );
        assert_eq!(
            (after.next_txn, after.next_journal),
            (before.next_txn, before.next_journal),
            "cycle {cycle}: duplicates recorded transactions or journal entries"
        );
        println!(
            "cycle {cycle}: {new} new approvals, {} in all present after SIGKILL, {} duplicates answered the same",
            approvals.len(),
            sample.len()
        );
        if cycle < cycles {
            server = Some(Server::start(dir.path(), backend, false));
        }
    }
    verify_exits_0(dir.path(), cycles);
    println!(
        "crash test on {backend}: survived {cycles} SIGKILL cycles in {:.1} s; {} approvals received, {checked} approval checks, {duplicates} duplicates re-sent",
        started.elapsed().as_secs_f64(),
        approvals.len()
    );
    assert!(!approvals.is_empty(), "the clients got approvals");
}

#[test]
fn approvals_survive_sigkill_and_duplicates_move_nothing() {
    run(5, Backend::Sled);
}

#[test]
fn approvals_survive_sigkill_and_duplicates_move_nothing_on_fjall() {
    run(5, Backend::Fjall);
}

#[test]
#[ignore = "long run: ANTACA_CRASH_CYCLES=200 cargo test --test crash -- --ignored"]
fn approvals_survive_many_sigkills() {
    let cycles = std::env::var("ANTACA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let backend = Backend::from_env()
        .expect("ANTACA_STORE is sled or fjall")
        .unwrap_or_default();
    run(cycles, backend);
}
