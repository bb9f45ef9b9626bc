//! Load bench: the real server (sled on disk, group commit, fdatasync) and a
//! closed-loop client over loopback TCP, one request in flight per connection.
//!
//! `cargo bench --bench engine` runs 1 and 64 connections for 5 s each.
//! Settings: ANTACA_BENCH_CONNECTIONS="1,4,16,64", ANTACA_BENCH_SECS=5,
//! ANTACA_BENCH_INFLIGHT=1.

use antaca::app::{self, ServeOptions};
use antaca::iso8583::{Message, Spec};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The allocator the `antaca` binary ships with (see `src/main.rs`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn luhn_complete(base: &str) -> String {
    (0..10)
        .map(|d| format!("{base}{d}"))
        .find(|p| antaca::security::pan::luhn_valid(p.as_bytes()))
        .unwrap_or_default()
}

fn portfolio(cards: usize) -> (String, Vec<String>) {
    let pans: Vec<String> = (0..cards)
        .map(|i| luhn_complete(&format!("535522{i:09}")))
        .collect();
    let users: Vec<String> = (0..cards)
        .map(|i| format!(r#"{{"id":"u{i}","program":"p","kyc":"verified"}}"#))
        .collect();
    let balances: Vec<String> = (0..cards)
        .map(|i| {
            format!(r#"{{"id":"b{i}","user":"u{i}","currency":"EUR","amount":"100000000.00"}}"#)
        })
        .collect();
    let card_records: Vec<String> = pans
        .iter()
        .enumerate()
        .map(|(i, pan)| {
            format!(r#"{{"id":"c{i}","balance":"b{i}","type":"virtual","pan":"{pan}","expiry":"4912","state":"active","lock":null}}"#)
        })
        .collect();
    let text = format!(
        r#"{{"programs":[{{"id":"p","bin":"535522","currency":"EUR","funding":"user_balance"}}],"users":[{}],"balances":[{}],"cards":[{}]}}"#,
        users.join(","),
        balances.join(","),
        card_records.join(",")
    );
    (text, pans)
}

fn authorization(pan: &str, stan: u32) -> Message {
    let mut m = Message::new(*b"0100");
    m.set(2, pan.to_string());
    m.set(3, "000000".to_string());
    m.set(4, "000000000100".to_string());
    m.set(7, "1125120000".to_string());
    m.set(11, format!("{:06}", stan % 1_000_000));
    m.set(12, "120000".to_string());
    m.set(13, "1125".to_string());
    m.set(32, "123456".to_string());
    m.set(37, format!("{stan:012}"));
    m.set(41, format!("T{:07}", stan / 1_000_000));
    m.set(42, "MERCHANT0000001".to_string());
    m.set(49, "978".to_string());
    m
}

async fn client(
    addr: std::net::SocketAddr,
    pan: String,
    inflight: usize,
    until: Instant,
    first_stan: u32,
) -> Histogram<u64> {
    let spec = Spec::load("iso87ascii").expect("spec");
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut stan = first_stan;
    let mut read_buf = BytesMut::with_capacity(64 * 1024);
    let mut pending = std::collections::HashMap::new();
    let mut out = BytesMut::new();
    let mut body = BytesMut::new();
    while Instant::now() < until || !pending.is_empty() {
        out.clear();
        while pending.len() < inflight && Instant::now() < until {
            stan += 1;
            body.clear();
            spec.encode(&authorization(&pan, stan), &mut body)
                .expect("encode");
            out.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
            out.extend_from_slice(&body);
            pending.insert(stan % 1_000_000, Instant::now());
        }
        if !out.is_empty() {
            socket.write_all(&out).await.expect("write");
        }
        if pending.is_empty() {
            break;
        }
        loop {
            if read_buf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([read_buf[0], read_buf[1]]));
                if read_buf.len() >= 2 + len {
                    read_buf.advance(2);
                    let frame = read_buf.split_to(len).freeze();
                    let response = spec.decode(&frame).expect("response");
                    let stan: u32 = String::from_utf8_lossy(response.get(11).unwrap_or_default())
                        .parse()
                        .expect("stan");
                    assert_eq!(response.get(39), Some(&b"00"[..]), "approved");
                    if let Some(sent) = pending.remove(&stan) {
                        histogram.saturating_record(
                            u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
                        );
                    }
                    if pending.len() < inflight {
                        break;
                    }
                    continue;
                }
            }
            assert!(
                socket.read_buf(&mut read_buf).await.expect("read") != 0,
                "server closed the connection"
            );
        }
    }
    histogram
}

fn run(connections: usize, inflight: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, pans) = portfolio(connections);
    let portfolio_path = dir.path().join("portfolio.json");
    std::fs::write(&portfolio_path, text).expect("write portfolio");
    let running = app::start(ServeOptions {
        data: dir.path().join("data"),
        iso_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        secure_listen: Some("127.0.0.1:0".into()),
        portfolio: Some(portfolio_path),
        ..ServeOptions::default()
    })
    .expect("server");
    let addr = running.iso_addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let histograms = runtime.block_on(async move {
        let tasks: Vec<_> = pans
            .into_iter()
            .enumerate()
            .map(|(i, pan)| {
                tokio::spawn(client(
                    addr,
                    pan,
                    inflight,
                    until,
                    u32::try_from(i).expect("i") * 1_000_000,
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("client"));
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for h in &histograms {
        total.add(h).expect("add");
    }
    println!(
        "engine connections={connections:<3} inflight={inflight:<3} authorizations={:<8} throughput={:>8.0}/s p50={}us p99={}us p99.9={}us max={}us",
        total.len(),
        total.len() as f64 / elapsed,
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.value_at_quantile(0.999),
        total.max()
    );
    running.stop();
}

fn main() {
    // `cargo test --benches` runs benches with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds = std::env::var("ANTACA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1 } else { 5 });
    let inflight = std::env::var("ANTACA_BENCH_INFLIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let connections: Vec<usize> = std::env::var("ANTACA_BENCH_CONNECTIONS")
        .unwrap_or_else(|_| if quick { "1".into() } else { "1,64".into() })
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in connections {
        run(n, inflight, seconds);
    }
}
