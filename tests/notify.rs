//! The SMTP notifier against a real SMTP conversation with the sink in
//! `support`: delivery, failures and back-off driven by the `now_ms` passed
//! in (never by sleeping), missing recipients, restarts.

mod common;
mod support;

use antaca::domain::model::Notification;
use antaca::engine::{Engine, EngineHandle};
use antaca::integrations::notify::{self, deliver_due, SmtpConfig};
use antaca::manage::portfolio::{self, Portfolio};
use antaca::protocol::{self, Profile};
use antaca::security::secrets::CardSecrets;
use antaca::store::MemoryStore;
use common::{fixture, pan, request};
use rust_decimal::Decimal;
use std::time::Duration;
use support::{SmtpMode, SmtpSink};

const PARTNER: &str = "treasury@partner.test";

fn secrets() -> CardSecrets {
    CardSecrets::from_key([7; 32])
}

/// Opens an engine on `store` (importing the test portfolio into an empty one) and starts its writer.
fn start(store: MemoryStore) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let mut engine = Engine::open(store, Default::default()).expect("open");
    if engine.is_empty() {
        let portfolio = Portfolio::read(&fixture("test-portfolio.json")).expect("portfolio");
        portfolio::import(&mut engine, &portfolio, &secrets(), 0).expect("import");
    }
    engine.spawn().expect("spawn")
}

/// Stops the writer (every handle dropped) and waits for its thread.
async fn stop(handle: EngineHandle, writer: std::thread::JoinHandle<()>) {
    drop(handle);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("join task")
        .expect("writer thread");
}

/// Spends partner credit "pc" from 100.00 to 9.99, below its 10.00 level.
async fn drive_pc_below_level(handle: &EngineHandle) {
    let profile = Profile {
        dialect: antaca::domain::outcome::Dialect::Iso87,
    };
    for (stan, card, amount) in [(1, "cr0", 4_500), (2, "cr1", 4_500), (3, "cr2", 1)] {
        let message = request("0200", &pan(card), "000000", amount, stan);
        let parsed = protocol::parse::parse(&message, profile, &secrets()).expect("parse");
        let response = handle.request(parsed).await.expect("answer");
        assert_eq!(response.outcome, antaca::domain::outcome::Outcome::Approved);
    }
}

/// Queues a notification directly, as the engine does; returns its id.
async fn queue(handle: &EngineHandle, program: &str, now_ms: u64) -> u64 {
    let program = program.to_string();
    handle
        .apply(move |state, changes, _| {
            let id = changes.next_in_sequence(state, "outbox");
            let n = notification(id, &program, now_ms);
            changes.put_record(state, &Notification::key(id), &n);
            id
        })
        .await
        .expect("queued")
}

async fn outbox(handle: &EngineHandle) -> Vec<Notification> {
    handle
        .inspect(|state| {
            state
                .records_under::<Notification>("outbox/")
                .map(|(_, n)| n)
                .collect()
        })
        .await
        .expect("inspect")
}

/// The delivered notifications, `outbox-sent/`, in id order.
async fn sent(handle: &EngineHandle) -> Vec<Notification> {
    handle
        .inspect(|state| {
            state
                .records_under::<Notification>(notify::OUTBOX_SENT_PREFIX)
                .map(|(_, n)| n)
                .collect()
        })
        .await
        .expect("inspect")
}

/// A notification `id` as queued at `now_ms` (not stored).
fn notification(id: u64, program: &str, now_ms: u64) -> Notification {
    Notification {
        id,
        kind: "low_balance".into(),
        program: program.into(),
        balance: "pc".into(),
        currency: "EUR".into(),
        available: "9.99".parse().expect("decimal"),
        low_level: "10.00".parse().expect("decimal"),
        created_ms: now_ms,
        attempts: 0,
        next_attempt_ms: now_ms,
        delivered_ms: None,
        last_error: None,
    }
}

/// Stores one record per `delivered_ms` under `key_of(id)`, ids from the sequence; returns the ids.
async fn put_delivered(
    handle: &EngineHandle,
    delivered: Vec<u64>,
    key_of: fn(u64) -> String,
) -> Vec<u64> {
    handle
        .apply(move |state, changes, _| {
            delivered
                .into_iter()
                .map(|at| {
                    let id = changes.next_in_sequence(state, "outbox");
                    let mut n = notification(id, "credit", at);
                    n.delivered_ms = Some(at);
                    changes.put_record(state, &key_of(id), &n);
                    id
                })
                .collect()
        })
        .await
        .expect("stored")
}

async fn set_emails(handle: &EngineHandle, program: &str, emails: &[&str]) {
    let program = program.to_string();
    let emails: Vec<String> = emails
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    handle
        .apply(move |state, changes, _| {
            notify::set_partner_emails(state, changes, &program, &emails)
        })
        .await
        .expect("applied")
        .expect("valid contacts");
}

fn now() -> u64 {
    antaca::engine::now_ms()
}

#[tokio::test]
async fn a_low_balance_is_mailed_once_to_the_partner() {
    let sink = SmtpSink::start().await;
    let (handle, writer) = start(MemoryStore::new());
    set_emails(&handle, "credit", &[PARTNER]).await;
    drive_pc_below_level(&handle).await;
    let queued = outbox(&handle).await;
    assert_eq!(queued.len(), 1);
    let t = queued[0].next_attempt_ms;

    let report = deliver_due(&handle, &sink.config(), t).await;
    assert_eq!((report.due, report.delivered, report.failed), (1, 1, 0));
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "antaca@issuer.test");
    assert_eq!(mail.to, vec![PARTNER.to_string()]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Antaca: partner balance pc below 10.00 EUR")
    );
    assert_eq!(mail.header("To").as_deref(), Some(PARTNER));
    let body = mail.body();
    for expected in [
        "Program:   credit",
        "Balance:   pc",
        "Available: 9.99 EUR",
        "Low level: 10.00 EUR",
    ] {
        assert!(body.contains(expected), "body lacks {expected:?}: {body}");
    }
    for card in ["cr0", "cr1", "cr2"] {
        assert!(!mail.data.contains(&pan(card)), "a PAN is in the mail");
    }

    // Delivered: moved out of the outbox in the same change.
    assert!(outbox(&handle).await.is_empty());
    let delivered = sent(&handle).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].id, queued[0].id);
    assert_eq!(delivered[0].delivered_ms, Some(t));
    assert_eq!(delivered[0].last_error, None);
    // Later passes find nothing due: delivered once.
    let report = deliver_due(&handle, &sink.config(), t + 86_400_000).await;
    assert_eq!(report.due, 0);
    assert_eq!(sink.mails().len(), 1);
    stop(handle, writer).await;
}

#[tokio::test]
async fn a_failing_relay_keeps_the_notification_and_backs_off_until_it_recovers() {
    let sink = SmtpSink::start().await;
    let (handle, writer) = start(MemoryStore::new());
    set_emails(&handle, "credit", &[PARTNER]).await;
    let t = now();
    let id = queue(&handle, "credit", t).await;

    // 451 to DATA.
    sink.set_mode(SmtpMode::RejectData);
    let report = deliver_due(&handle, &sink.config(), t).await;
    assert_eq!((report.due, report.delivered, report.failed), (1, 0, 1));
    let n = &outbox(&handle).await[0];
    assert_eq!((n.id, n.attempts, n.delivered_ms), (id, 1, None));
    assert_eq!(n.next_attempt_ms, t + 5_000);
    assert!(
        sent(&handle).await.is_empty(),
        "a failure stays in the outbox"
    );
    let error = n.last_error.clone().expect("an error");
    assert!(error.contains("451"), "{error}");

    // Not due before its back-off ends.
    let report = deliver_due(&handle, &sink.config(), t + 4_999).await;
    assert_eq!(report.due, 0);

    // The relay refuses the connection: the back-off doubles.
    sink.set_mode(SmtpMode::Refuse);
    let report = deliver_due(&handle, &sink.config(), t + 5_000).await;
    assert_eq!(report.failed, 1);
    let n = &outbox(&handle).await[0];
    assert_eq!(n.attempts, 2);
    assert_eq!(n.next_attempt_ms, t + 5_000 + 10_000);
    assert!(
        n.last_error.as_deref().is_some_and(|e| e.contains("421")),
        "{:?}",
        n.last_error
    );
    assert!(sink.mails().is_empty());

    // Recovered.
    sink.set_mode(SmtpMode::Accept);
    let report = deliver_due(&handle, &sink.config(), t + 15_000).await;
    assert_eq!((report.delivered, report.failed), (1, 0));
    assert!(outbox(&handle).await.is_empty());
    let n = &sent(&handle).await[0];
    assert_eq!(n.id, id);
    assert_eq!(n.delivered_ms, Some(t + 15_000));
    assert_eq!(n.attempts, 2, "attempts count the failures");
    assert_eq!(n.last_error, None);
    assert_eq!(sink.mails().len(), 1);
    stop(handle, writer).await;
}

#[tokio::test]
async fn a_relay_that_is_down_is_a_recorded_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        from: "antaca@issuer.test".into(),
        timeout: Duration::from_secs(2),
    };
    let (handle, writer) = start(MemoryStore::new());
    set_emails(&handle, "credit", &[PARTNER]).await;
    let t = now();
    queue(&handle, "credit", t).await;
    let report = deliver_due(&handle, &smtp, t).await;
    assert_eq!(report.failed, 1);
    let n = &outbox(&handle).await[0];
    assert_eq!((n.attempts, n.delivered_ms), (1, None));
    assert!(n
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains(&port.to_string())));
    stop(handle, writer).await;
}

#[tokio::test]
async fn without_a_recipient_the_notification_waits_for_one() {
    let sink = SmtpSink::start().await;
    let (handle, writer) = start(MemoryStore::new());
    let t = now();
    queue(&handle, "credit", t).await;

    let report = deliver_due(&handle, &sink.config(), t).await;
    assert_eq!(
        (report.due, report.no_recipient, report.delivered),
        (1, 1, 0)
    );
    assert_eq!(sink.connections(), 0, "nothing to send, no conversation");
    let n = &outbox(&handle).await[0];
    assert_eq!(n.last_error.as_deref(), Some(notify::NO_RECIPIENT));
    assert_eq!((n.attempts, n.delivered_ms), (1, None));
    assert_eq!(n.next_attempt_ms, t + 5_000);

    // Still nobody on the next try: kept, backed off further.
    let report = deliver_due(&handle, &sink.config(), t + 5_000).await;
    assert_eq!(report.no_recipient, 1);
    let n = &outbox(&handle).await[0];
    assert_eq!((n.attempts, n.next_attempt_ms), (2, t + 15_000));

    // A default address takes programs without their own.
    handle
        .apply(|state, changes, _| {
            notify::set_default_recipient(state, changes, Some("ops@issuer.test"))
        })
        .await
        .expect("applied")
        .expect("valid");
    let report = deliver_due(&handle, &sink.config(), t + 15_000).await;
    assert_eq!(report.delivered, 1);
    assert_eq!(sink.mails()[0].to, vec!["ops@issuer.test".to_string()]);
    assert!(outbox(&handle).await.is_empty());
    assert_eq!(sent(&handle).await[0].delivered_ms, Some(t + 15_000));
    stop(handle, writer).await;
}

#[tokio::test]
async fn the_outbox_and_contacts_survive_a_restart() {
    let sink = SmtpSink::start().await;
    let store = MemoryStore::new();
    let (handle, writer) = start(store.clone());
    set_emails(&handle, "credit", &[PARTNER, "second@partner.test"]).await;
    drive_pc_below_level(&handle).await;
    let t = outbox(&handle).await[0].next_attempt_ms;
    sink.set_mode(SmtpMode::RejectData);
    assert_eq!(deliver_due(&handle, &sink.config(), t).await.failed, 1);
    stop(handle, writer).await;

    let (handle, writer) = start(store.clone());
    let queued = outbox(&handle).await;
    assert_eq!(queued.len(), 1);
    assert_eq!((queued[0].attempts, queued[0].delivered_ms), (1, None));
    assert_eq!(queued[0].available, "9.99".parse::<Decimal>().expect("d"));
    let emails = handle
        .inspect(|state| notify::partner_emails(state, "credit"))
        .await
        .expect("inspect");
    assert_eq!(
        emails,
        vec![PARTNER.to_string(), "second@partner.test".to_string()]
    );
    sink.set_mode(SmtpMode::Accept);
    let report = deliver_due(&handle, &sink.config(), t + 5_000).await;
    assert_eq!(report.delivered, 1);
    assert_eq!(sink.mails()[0].to.len(), 2);
    stop(handle, writer).await;

    // Delivered is durable too: no second mail after another restart.
    let (handle, writer) = start(store);
    assert!(outbox(&handle).await.is_empty());
    assert_eq!(sent(&handle).await[0].delivered_ms, Some(t + 5_000));
    let report = deliver_due(&handle, &sink.config(), t + 86_400_000).await;
    assert_eq!((report.due, report.moved), (0, 0));
    assert_eq!(sink.mails().len(), 1);
    stop(handle, writer).await;
}

#[tokio::test]
async fn the_notifier_task_delivers_and_stops_on_shutdown() {
    let sink = SmtpSink::start().await;
    let (handle, writer) = start(MemoryStore::new());
    set_emails(&handle, "credit", &[PARTNER]).await;
    drive_pc_below_level(&handle).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = notify::spawn_notifier(
        handle.clone(),
        sink.config(),
        Duration::from_millis(20),
        notify::SENT_RETENTION_DEFAULT,
        shutdown.clone(),
    );
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the notifier stops")
        .expect("no panic");
    assert!(outbox(&handle).await.is_empty());
    assert!(sent(&handle).await[0].delivered_ms.is_some());
    stop(handle, writer).await;
}

#[tokio::test]
async fn the_notifier_task_deletes_sent_notifications_past_their_retention() {
    let sink = SmtpSink::start().await;
    let (handle, writer) = start(MemoryStore::new());
    set_emails(&handle, "credit", &[PARTNER]).await;
    drive_pc_below_level(&handle).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    // No retention: deleted by the pass after (or the one that) delivered it.
    let task = notify::spawn_notifier(
        handle.clone(),
        sink.config(),
        Duration::from_millis(20),
        Duration::ZERO,
        shutdown.clone(),
    );
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sent(&handle).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(outbox(&handle).await.is_empty());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the notifier stops")
        .expect("no panic");
    assert_eq!(sink.mails().len(), 1);
    stop(handle, writer).await;
}

#[tokio::test]
async fn a_delivered_record_left_in_the_outbox_by_an_older_store_is_moved_not_sent() {
    let sink = SmtpSink::start().await;
    let store = MemoryStore::new();
    let (handle, writer) = start(store.clone());
    set_emails(&handle, "credit", &[PARTNER]).await;
    let t = now();
    // As an older version left it: delivered, still under `outbox/`.
    let old = put_delivered(&handle, vec![t - 60_000], Notification::key).await;
    let fresh = queue(&handle, "credit", t).await;
    assert_eq!(outbox(&handle).await.len(), 2);

    let report = deliver_due(&handle, &sink.config(), t).await;
    assert_eq!(
        (report.moved, report.due, report.delivered),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(sink.mails().len(), 1, "the delivered one is not sent again");
    assert!(sink.mails()[0]
        .body()
        .contains(&format!("notification {fresh}")));
    assert!(outbox(&handle).await.is_empty());
    let moved = sent(&handle).await;
    let ids: Vec<u64> = moved.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![old[0], fresh]);
    assert_eq!(moved[0].delivered_ms, Some(t - 60_000), "moved as it was");
    assert_eq!(moved[1].delivered_ms, Some(t));
    stop(handle, writer).await;

    // The move is durable: after a restart nothing is moved or sent again.
    let (handle, writer) = start(store);
    assert!(outbox(&handle).await.is_empty());
    assert_eq!(sent(&handle).await.len(), 2);
    let report = deliver_due(&handle, &sink.config(), t + 86_400_000).await;
    assert_eq!((report.moved, report.due), (0, 0));
    assert_eq!(sink.mails().len(), 1);
    stop(handle, writer).await;
}

#[tokio::test]
async fn retention_deletes_old_sent_notifications_oldest_first_and_bounded() {
    const DAY: u64 = 86_400_000;
    let store = MemoryStore::new();
    let (handle, writer) = start(store.clone());
    let retention = Duration::from_hours(30 * 24);
    let t = now();
    let old_count = notify::SENT_PRUNE_MAX + 5;
    let mut delivered = vec![t - 31 * DAY; old_count];
    // Exactly at the retention: old enough.
    delivered.push(t - 30 * DAY);
    // Two young ones, then an old one delivered late (after a long retry):
    // the scan stops at the first young one, so it waits.
    delivered.extend([t - 29 * DAY, t - DAY, t - 40 * DAY]);
    let ids = put_delivered(&handle, delivered, Notification::sent_key).await;
    let young = ids[old_count + 1..].to_vec();

    let deleted = notify::prune_sent(&handle, retention, t)
        .await
        .expect("pruned");
    assert_eq!(deleted, notify::SENT_PRUNE_MAX, "bounded per pass");
    let left: Vec<u64> = sent(&handle).await.iter().map(|n| n.id).collect();
    assert_eq!(left, ids[notify::SENT_PRUNE_MAX..], "oldest first");
    stop(handle, writer).await;

    // The deletions are durable; the next pass takes the rest of the old ones.
    let (handle, writer) = start(store);
    assert_eq!(
        sent(&handle).await.len(),
        ids.len() - notify::SENT_PRUNE_MAX
    );
    let deleted = notify::prune_sent(&handle, retention, t)
        .await
        .expect("pruned");
    assert_eq!(deleted, 6);
    let left: Vec<u64> = sent(&handle).await.iter().map(|n| n.id).collect();
    assert_eq!(left, young);
    assert_eq!(
        notify::prune_sent(&handle, retention, t)
            .await
            .expect("pruned"),
        0
    );
    // Once the young ones age, everything goes.
    assert_eq!(
        notify::prune_sent(&handle, retention, t + 29 * DAY)
            .await
            .expect("pruned"),
        3
    );
    assert!(sent(&handle).await.is_empty());
    stop(handle, writer).await;
}

#[tokio::test]
async fn contacts_are_validated_and_an_empty_list_removes_them() {
    let (handle, writer) = start(MemoryStore::new());
    let refused = handle
        .apply(|state, changes, _| {
            notify::set_partner_emails(state, changes, "credit", &["not an address".to_string()])
        })
        .await
        .expect("applied");
    assert!(matches!(
        refused,
        Err(notify::ContactError::InvalidEmail(_))
    ));
    set_emails(&handle, "credit", &[PARTNER]).await;
    set_emails(&handle, "credit", &[]).await;
    let (emails, recipients) = handle
        .inspect(|state| {
            (
                notify::partner_emails(state, "credit"),
                notify::Recipients::load(state),
            )
        })
        .await
        .expect("inspect");
    assert!(emails.is_empty());
    assert!(recipients.for_program("credit").is_empty());
    stop(handle, writer).await;
}

#[test]
fn backoff_doubles_from_five_seconds_up_to_an_hour() {
    let secs: Vec<u64> = (1..=12).map(|a| notify::backoff(a).as_secs()).collect();
    assert_eq!(
        secs,
        vec![5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    );
    assert_eq!(notify::backoff(u32::MAX), Duration::from_hours(1));
    assert_eq!(notify::backoff(0), Duration::from_secs(5));
}
