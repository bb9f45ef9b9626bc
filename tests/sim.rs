//! The load simulator against the real engine (in-process, sled on disk) and
//! against the echo server: no protocol errors, no mismatches, balances
//! reconcile, the JSON report has its keys, the SVG plot is well-formed.

mod common;

use antaca::app::{self, ServeOptions};
use antaca::iso8583::Spec;
use antaca::manage::portfolio::Portfolio;
use antaca::net::framing::LengthHeader;
use antaca_sim::book::{current_yymm, Book};
use antaca_sim::echo::EchoServer;
use antaca_sim::{Checks, Mix, Report, SimConfig};
use std::time::Duration;

fn book() -> Book {
    let text =
        std::fs::read_to_string(common::fixture("test-portfolio.json")).expect("test portfolio");
    let portfolio = Portfolio::parse(&text).expect("portfolio");
    Book::from_portfolio(&portfolio, current_yymm()).expect("book")
}

fn engine(dir: &std::path::Path, spec: &str) -> app::Running {
    app::start(ServeOptions {
        data: dir.join("data"),
        iso_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        secure_listen: Some("127.0.0.1:0".into()),
        spec: spec.into(),
        portfolio: Some(common::fixture("test-portfolio.json")),
        ..ServeOptions::default()
    })
    .expect("engine starts")
}

fn config(addr: String, spec: &str) -> SimConfig {
    let mut config = SimConfig::new(addr, Spec::load(spec).expect("spec"), book());
    config.duration = Duration::from_secs(1);
    config.drain = Duration::from_secs(5);
    config.seed = 7;
    config
}

fn assert_clean(report: &Report) {
    assert!(report.sent > 50, "too little load: {}", report.summary());
    assert_eq!(report.received, report.sent, "{}", report.summary());
    assert_eq!(report.protocol_errors, 0, "{}", report.summary());
    assert_eq!(report.mismatched, 0, "{}", report.summary());
    assert_eq!(report.timeouts, 0, "{}", report.summary());
}

fn assert_reconciled(report: &Report) {
    assert_eq!(report.unexpected_codes, 0, "{}", report.summary());
    let r = report.reconciliation.as_ref().expect("reconciliation ran");
    assert!(r.ok, "{}", report.summary());
    assert!(r.checked_cards >= 20, "{}", report.summary());
    assert!(r.skipped.is_empty(), "{}", report.summary());
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn closed_loop_and_fixed_rate_against_the_engine_reconcile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = engine(dir.path(), "iso87ascii");
    let addr = running.iso_addr.to_string();

    let mut closed = config(addr.clone(), "iso87ascii");
    closed.connections = 4;
    closed.inflight = 4;
    let report = antaca_sim::run_blocking(closed).expect("closed loop");
    assert_clean(&report);
    assert_reconciled(&report);
    // Every kind of the default mix was sent, and follow-ups were approved.
    for kind in [
        "auth",
        "completion",
        "reversal",
        "refund",
        "inquiry",
        "decline",
        "echo",
    ] {
        assert!(
            report.kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {}",
            report.summary()
        );
    }
    assert!(report.approved.get("completion").copied().unwrap_or(0) > 0);
    // Declines of locked cards show their codes.
    assert!(report.codes.contains_key("00"));

    // The same store again, at a fixed rate: the opening inquiries re-base the balances.
    let mut fixed = config(addr, "iso87ascii");
    fixed.connections = 2;
    fixed.inflight = 2;
    fixed.rate = 400.0;
    fixed.mix = Mix::parse("auth=50,completion=20,reversal=10,refund=10,inquiry=5,duplicate=5")
        .expect("mix");
    let report = antaca_sim::run_blocking(fixed).expect("fixed rate");
    assert_clean(&report);
    assert_eq!(report.unexpected_codes, 0, "{}", report.summary());
    // The cards over one balance are re-based on their opening inquiry and
    // checked; the partner-credit cards (two balances) are no longer at their
    // portfolio amounts, so the sim does not own them and says so.
    let r = report.reconciliation.as_ref().expect("reconciliation ran");
    assert!(r.ok, "{}", report.summary());
    assert!(r.checked_cards >= 4, "{}", report.summary());
    assert!(
        r.skipped.iter().all(|s| s.starts_with("card cr")),
        "{}",
        report.summary()
    );
    assert!(
        (300.0..=450.0).contains(&report.throughput_per_s),
        "rate not held: {}",
        report.summary()
    );

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("json");
    for key in [
        "throughput_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "sent",
        "received",
        "errors",
        "codes",
    ] {
        assert!(json.get(key).is_some(), "report lacks {key}");
    }
    assert_eq!(json["errors"], 0);
    running.stop();
}

#[test]
fn iso93_pipelined_reconciles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = engine(dir.path(), "iso93");
    let mut c = config(running.iso_addr.to_string(), "iso93");
    c.connections = 2;
    c.inflight = 8;
    c.duration = Duration::from_millis(700);
    let report = antaca_sim::run_blocking(c).expect("iso93");
    assert_clean(&report);
    assert_reconciled(&report);
    assert!(report.codes.contains_key("0000"), "{}", report.summary());
    running.stop();
}

#[test]
fn echo_server_answers_the_sim_and_the_plot_is_well_formed() {
    let echo = EchoServer::start(
        "127.0.0.1:0",
        Spec::load("iso87binary").expect("spec"),
        LengthHeader::Binary2,
    )
    .expect("echo server");
    let mut c = config(echo.addr.to_string(), "iso87binary");
    c.connections = 2;
    c.inflight = 4;
    c.duration = Duration::from_millis(500);
    c.checks = Checks::Protocol;
    let report = antaca_sim::run_blocking(c).expect("sim against echo");
    assert_clean(&report);
    assert!(report.reconciliation.is_none());
    assert_eq!(report.codes.keys().collect::<Vec<_>>(), vec!["00"]);
    echo.stop();

    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("echo-report.json");
    std::fs::write(&json, report.to_json()).expect("write report");
    let svg = dir.path().join("latency.svg");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_antaca"))
        .args(["sim", "--plot"])
        .arg(&svg)
        .arg("--json")
        .arg(&json)
        .status()
        .expect("antaca sim --plot");
    assert!(status.success());
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert_well_formed(&text);
    assert!(text.contains("<polyline"));
    assert!(text.contains("echo-report"));
    assert!(text.contains("99.9%"));
}

#[test]
fn the_durable_echo_answers_only_what_it_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("echo.log");
    let echo = EchoServer::start_durable(
        "127.0.0.1:0",
        Spec::load("iso87binary").expect("spec"),
        LengthHeader::Binary2,
        &log,
    )
    .expect("durable echo server");
    let mut c = config(echo.addr.to_string(), "iso87binary");
    c.connections = 3;
    c.inflight = 4;
    c.duration = Duration::from_millis(500);
    c.checks = Checks::Protocol;
    let report = antaca_sim::run_blocking(c).expect("sim against the durable echo");
    echo.stop();
    assert_clean(&report);
    assert!(report.received > 0);
    // The log grew by every answered request (an MTI, a bitmap and a STAN
    // at least), written as zeros: no card data on disk.
    let logged = std::fs::metadata(&log).expect("log written").len();
    assert!(
        logged >= report.received * 20,
        "{logged} bytes logged for {} answers",
        report.received
    );
    let bytes = std::fs::read(&log).expect("read log");
    assert!(bytes.iter().all(|b| *b == 0));
}

/// A small XML check: every tag closes in order, attributes are quoted, one root `svg`.
fn assert_well_formed(text: &str) {
    let body = text
        .trim()
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("XML declaration")
        .trim();
    assert!(body.starts_with("<svg") && body.ends_with("</svg>"));
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        let text_before = &rest[..open];
        assert!(!text_before.contains('>'), "stray '>'");
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else {
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or_default()
                .to_string();
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1);
}
