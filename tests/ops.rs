//! Operations: metrics at /metrics, readiness at /ready, the partial-frame read
//! timeout, and `serve`'s configuration (file, environment, flags, --print-config).

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn antaca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_antaca"))
}

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_iso_and_http_traffic_without_card_data() {
    let server = TestServer::start("iso87ascii");
    let card = pan("ok");
    let mut client = server.client();
    for stan in 1..=3 {
        assert_eq!(code(&client.call(&auth(&card, 100, stan))), "00");
    }
    let addr = server.running().http_addr;
    assert_eq!(http(addr, "GET", "/health", &[], b"").status, 200);
    assert_eq!(
        http(addr, "GET", "/admin/cards/some-card-id", &[], b"").status,
        401
    );
    let reply = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let text = String::from_utf8(reply.body).expect("utf-8");
    for name in [
        "antaca_iso_request_duration_seconds_bucket",
        "antaca_iso_responses_total",
        "antaca_engine_batch_size",
        "antaca_engine_commit_seconds",
        "antaca_engine_queue_depth",
        "antaca_iso_connections_open",
        "antaca_http_requests_total",
        "antaca_http_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // Other tests share the process's recorder: counts are at least ours.
    let approved = sample(
        &text,
        "antaca_iso_responses_total{mti=\"0100\",code=\"00\"}",
    )
    .expect("approved 0100 responses");
    assert!(approved >= 3.0, "{approved}");
    let latency = sample(
        &text,
        "antaca_iso_request_duration_seconds_count{mti=\"0100\"}",
    )
    .expect("latency count");
    assert!(latency >= 3.0, "{latency}");
    let open = sample(&text, "antaca_iso_connections_open").expect("open connections");
    assert!(open >= 1.0, "our client is still connected: {open}");
    let depth = sample(&text, "antaca_engine_queue_depth").expect("queue depth");
    assert!((0.0..=65_536.0).contains(&depth), "{depth}");
    assert!(
        text.contains("route=\"/admin/cards/{cardId}\"") && text.contains("status=\"401\""),
        "HTTP requests are labelled by route pattern and status"
    );
    assert!(text.contains("route=\"/health\""));
    assert!(
        !text.contains("some-card-id"),
        "raw paths never become labels"
    );
    assert!(!text.contains(&card), "no PAN in metrics");
    assert!(
        !text.contains(&card[card.len() - 10..]),
        "no PAN digits in metrics"
    );
}

#[test]
fn ready_reports_each_check() {
    let server = TestServer::start("iso87ascii");
    let reply = http(server.running().http_addr, "GET", "/ready", &[], b"");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["writer"], true);
    assert_eq!(body["store"]["lastCommitOk"], true);
    assert_eq!(body["listeners"]["iso"], true);
    assert_eq!(body["listeners"]["http"], true);
    assert_eq!(body["listeners"]["secure"], true);
}

#[test]
fn a_begun_frame_must_arrive_whole_within_the_read_timeout() {
    let server = TestServer::start_with("iso87ascii", |o| {
        o.iso.read_timeout = Duration::from_secs(1);
    });
    // Half a length header, then silence: closed after about a second.
    let mut stream = std::net::TcpStream::connect(server.iso_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&[0x00]).expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = stream.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server closes the connection: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A silent connection with no partial frame stays open past it (idle timeout only).
    let mut client = server.client();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(code(&client.call(&auth(&pan("ok"), 100, 9))), "00");
}

#[test]
fn print_config_layers_file_env_and_flags_and_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("antaca.toml");
    std::fs::write(
        &file,
        "iso_listen = \"127.0.0.1:1111\"\nhttp_listen = \"127.0.0.1:2222\"\nmax_frame = 4000\n\
         ekyc_api_key = \"file-secret-key\"\nlog_format = \"json\"\n",
    )
    .expect("write");
    let out = antaca()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .args(["--http-listen", "127.0.0.1:3333"])
        .env("ANTACA_ISO_LISTEN", "127.0.0.1:4444")
        .env("ANTACA_HTTP_LISTEN", "127.0.0.1:5555")
        .env("ANTACA_EKYC_CALLBACK_SECRET", "env-callback-secret")
        .env("ANTACA_ZPK_HEX", "0123456789ABCDEFFEDCBA9876543210")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains("iso_listen = \"127.0.0.1:4444\""),
        "env over file: {text}"
    );
    assert!(
        text.contains("http_listen = \"127.0.0.1:3333\""),
        "flag over env: {text}"
    );
    assert!(
        text.contains("max_frame = 4000"),
        "file over default: {text}"
    );
    assert!(text.contains("max_in_flight = 256"), "default: {text}");
    assert!(text.contains("log_format = \"json\""), "{text}");
    for secret in ["file-secret-key", "env-callback-secret", "0123456789ABCDEF"] {
        assert!(!text.contains(secret), "a secret printed");
    }
    assert_eq!(text.matches("<redacted>").count(), 3, "{text}");
    // What it prints is a valid configuration file.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &text).expect("write");
    let again = antaca()
        .args(["serve", "--print-config", "--config"])
        .arg(&printed)
        .output()
        .expect("run");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn unknown_keys_and_bad_values_are_errors_that_name_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("antaca.toml");
    std::fs::write(&file, "max_frame = 4000\nmax_fram = 1\n").expect("write");
    let out = antaca()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_fram"), "{err}");
    let out = antaca()
        .args(["serve", "--print-config"])
        .env("ANTACA_MAX_IN_FLIGHT", "many")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ANTACA_MAX_IN_FLIGHT"), "{err}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = antaca()
        .args(["serve", "--log-format", "json", "--data"])
        .arg(dir.path().join("data"))
        .args([
            "--iso-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
        ])
        .env_remove("ANTACA_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    let read = std::io::BufReader::new(stderr).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.expect("a log line");
    let value: serde_json::Value = serde_json::from_str(line.trim()).expect("a JSON log line");
    assert_eq!(value["level"], "WARN", "{line}");
    assert!(value["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("zone PIN key")));
}
