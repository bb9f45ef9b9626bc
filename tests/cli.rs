//! The `antaca` binary as an operator runs it: serve, send, import, stop.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn antaca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_antaca"))
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serve_loads_the_demo_prints_masked_cards_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = antaca()
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .args([
            "--iso-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !banner.iter().any(|l: &String| l.contains("c-5")) && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read") == 0 {
            break;
        }
        banner.push(line);
    }
    let text = banner.concat();
    assert!(text.contains("demo portfolio"), "{text}");
    assert!(
        text.contains("535522******0012"),
        "masked demo card listed: {text}"
    );
    assert!(!text.contains("5355220000000012"), "no full PAN printed");
    let addr_after = |prefix: &str| -> String {
        let line = banner.iter().find(|l| l.starts_with(prefix)).expect(prefix);
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .expect("addr")
            .trim_start_matches("http://")
            .to_string()
    };
    let iso = addr_after("ISO 8583 listening on ");
    let http = addr_after("HTTP listening on ");

    let health = http_get(&http, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""));
    let missing = http_get(&http, "/nope");
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("\"code\":\"NOT_FOUND\""),
        "{missing}"
    );

    let sent = antaca()
        .args([
            "send",
            "--iso",
            &iso,
            "--pan",
            "5355220000000012",
            "--amount",
            "12.34",
        ])
        .output()
        .expect("send");
    let out = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{out}");
    assert!(
        out.contains("response:\nMTI 0110") && out.contains("39: 00"),
        "{out}"
    );
    assert!(!out.contains("5355220000000012"), "send masks the PAN");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "serve exits 0 on SIGTERM");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest");
    assert!(rest.contains("stopped"), "{rest}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(!stderr.contains("5355220000000012"), "no full PAN logged");
}

#[test]
fn import_loads_an_empty_store_once_and_refuses_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let bad = dir.path().join("bad.json");
    let text = std::fs::read_to_string(common::fixture("demo-portfolio.json")).expect("demo");
    std::fs::write(
        &bad,
        text.replace("\"amount\": \"150.00\"", "\"amount\": \"150.001\""),
    )
    .expect("write");
    let refused = antaca()
        .arg("import")
        .arg("--data")
        .arg(&data)
        .arg(&bad)
        .output()
        .expect("import");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("balances[0] \"b-1\"") && err.contains("nothing was imported"),
        "{err}"
    );

    let ok = antaca()
        .arg("import")
        .arg("--data")
        .arg(&data)
        .arg(common::fixture("demo-portfolio.json"))
        .output()
        .expect("import");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("5 cards"));

    let again = antaca()
        .arg("import")
        .arg("--data")
        .arg(&data)
        .arg(common::fixture("demo-portfolio.json"))
        .output()
        .expect("import");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a portfolio"));

    let serve = antaca()
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args([
            "--iso-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
            "--portfolio",
        ])
        .arg(common::fixture("demo-portfolio.json"))
        .output()
        .expect("serve");
    assert!(
        !serve.status.success(),
        "serve --portfolio refuses a non-empty store"
    );
    assert!(String::from_utf8_lossy(&serve.stderr).contains("already holds a portfolio"));
}

#[test]
fn serve_reads_the_zone_pin_key_from_the_named_variable_and_never_echoes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |var_value: Option<&str>| {
        let mut command = antaca();
        command
            .arg("serve")
            .arg("--data")
            .arg(dir.path())
            .args([
                "--iso-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--secure-listen",
                "127.0.0.1:0",
                "--zpk-hex-env",
                "ANTACA_TEST_ZPK",
            ])
            .env_remove("ANTACA_TEST_ZPK");
        if let Some(value) = var_value {
            command.env("ANTACA_TEST_ZPK", value);
        }
        command.output().expect("serve")
    };
    let missing = run(None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ANTACA_TEST_ZPK"));
    // 31 hex digits: refused, and the error does not repeat the value.
    let bad = "0123456789ABCDEFFEDCBA987654321";
    let refused = run(Some(bad));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("zone PIN key"), "{stderr}");
    assert!(!stderr.contains(bad), "{stderr}");
}
