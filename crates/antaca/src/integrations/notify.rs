//! Delivers the outbox: partner notifications the engine queued (a partner
//! balance fell below its low level) go out as plain-text e-mails over SMTP.
//!
//! The outbox lives in the engine's management records, so a notification
//! survives restarts until it is delivered. One pass reads the due ones,
//! sends each over its own SMTP conversation, and records the outcome through
//! the writer: on success the record moves, in the same change, from
//! `outbox/{id}` to `outbox-sent/{id}` with `delivered_ms` set, so the due scan
//! only ever reads undelivered ones; on failure one more attempt, the error,
//! and a later `next_attempt_ms` (exponential back-off). An undelivered
//! notification is never dropped: one without a recipient waits for one.
//! Delivered ones still under `outbox/` (a store written before
//! `outbox-sent/`) are moved by the first pass, never sent again.
//!
//! Delivered notifications are kept for a retention (`outbox_sent_retention_days`);
//! each notifier pass ([`prune_sent`]) deletes at most [`SENT_PRUNE_MAX`] older
//! ones, oldest first, and stops at the first younger one.
//!
//! Delivery is at least once: a crash between the SMTP server's "250" and
//! the durable record of it sends the mail again on the next pass.

use crate::domain::model::Notification;
use crate::engine::state::{Changes, State};
use crate::engine::{ApplyError, EngineHandle};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Prefix of the records naming each program's partner contacts.
pub const CONTACT_PREFIX: &str = "partner_contact/";
/// Record holding the address notified when a program has none of its own.
pub const DEFAULT_CONTACT_KEY: &str = "partner_contact_default";
/// Prefix of the outbox records.
pub const OUTBOX_PREFIX: &str = "outbox/";
/// Prefix of the delivered notifications, kept until their retention ends.
pub const OUTBOX_SENT_PREFIX: &str = "outbox-sent/";
/// Default time a delivered notification is kept.
pub const SENT_RETENTION_DEFAULT: Duration = Duration::from_hours(30 * 24);
/// Most delivered notifications one pass deletes (or, from an old store, moves
/// out of `outbox/` in one writer change); the rest wait for the next pass or change.
pub const SENT_PRUNE_MAX: usize = 1_000;
/// Most addresses one program may list.
pub const EMAILS_PER_PROGRAM_MAX: usize = 16;
/// Most notifications one pass sends; the rest wait for the next pass.
pub const PASS_NOTIFICATIONS_MAX: usize = 64;
/// First back-off after a failed attempt.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// Longest back-off between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_hours(1);
/// Longest error text kept on a notification.
const ERROR_LENGTH_MAX: usize = 300;
/// The error recorded when nobody can be notified.
pub const NO_RECIPIENT: &str = "no recipient configured";

/// How to reach the SMTP relay (plain SMTP, no TLS or authentication).
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// Relay host name or address.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Sender address (`From`).
    pub from: String,
    /// Most time one delivery (a whole SMTP conversation) may take.
    pub timeout: Duration,
}

/// A program's partner contacts as stored in `partner_contact/{program}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerContact {
    /// The addresses notified for the program.
    pub emails: Vec<String>,
}

/// The stored default address, `partner_contact_default`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct DefaultContact {
    email: String,
}

/// Who is notified: each program's partner addresses, and a default for programs without any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Program id → addresses.
    pub by_program: BTreeMap<String, Vec<String>>,
    /// Used for a program without addresses of its own.
    pub default: Option<String>,
}

impl Recipients {
    /// Reads every contact record from the state.
    pub fn load(state: &State) -> Recipients {
        let by_program = state
            .records_under::<PartnerContact>(CONTACT_PREFIX)
            .map(|(key, contact)| (key[CONTACT_PREFIX.len()..].to_string(), contact.emails))
            .collect();
        Recipients {
            by_program,
            default: default_recipient(state),
        }
    }

    /// The addresses to notify for `program`: its own, else the default, else none.
    pub fn for_program(&self, program: &str) -> Vec<String> {
        match self.by_program.get(program) {
            Some(emails) if !emails.is_empty() => emails.clone(),
            _ => self.default.iter().cloned().collect(),
        }
    }
}

/// Why a contact could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactError {
    /// Not an e-mail address.
    InvalidEmail(String),
    /// More addresses than [`EMAILS_PER_PROGRAM_MAX`].
    TooMany(usize),
    /// The program id is empty or contains '/'.
    InvalidProgram,
}

impl std::fmt::Display for ContactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContactError::InvalidEmail(e) => write!(f, "{e:?} is not an e-mail address"),
            ContactError::TooMany(n) => write!(
                f,
                "{n} addresses given; list at most {EMAILS_PER_PROGRAM_MAX} per program"
            ),
            ContactError::InvalidProgram => {
                f.write_str("the program id must be non-empty, without '/'")
            }
        }
    }
}

impl std::error::Error for ContactError {}

fn check_email(email: &str) -> Result<(), ContactError> {
    email
        .parse::<Address>()
        .map(drop)
        .map_err(|_| ContactError::InvalidEmail(email.to_string()))
}

/// Stores the partner addresses of `program`; an empty list removes them.
pub fn set_partner_emails(
    state: &mut State,
    changes: &mut Changes,
    program: &str,
    emails: &[String],
) -> Result<(), ContactError> {
    if program.is_empty() || program.contains('/') {
        return Err(ContactError::InvalidProgram);
    }
    if emails.len() > EMAILS_PER_PROGRAM_MAX {
        return Err(ContactError::TooMany(emails.len()));
    }
    for email in emails {
        check_email(email)?;
    }
    // From here the change must succeed.
    let key = format!("{CONTACT_PREFIX}{program}");
    if emails.is_empty() {
        changes.delete_record(state, &key);
    } else {
        let contact = PartnerContact {
            emails: emails.to_vec(),
        };
        changes.put_record(state, &key, &contact);
    }
    Ok(())
}

/// The partner addresses stored for `program` (empty when none).
pub fn partner_emails(state: &State, program: &str) -> Vec<String> {
    state
        .record::<PartnerContact>(&format!("{CONTACT_PREFIX}{program}"))
        .map(|c| c.emails)
        .unwrap_or_default()
}

/// Stores (or with `None` removes) the address notified for programs without their own.
pub fn set_default_recipient(
    state: &mut State,
    changes: &mut Changes,
    email: Option<&str>,
) -> Result<(), ContactError> {
    match email {
        Some(email) => {
            check_email(email)?;
            let contact = DefaultContact {
                email: email.to_string(),
            };
            changes.put_record(state, DEFAULT_CONTACT_KEY, &contact);
        }
        None => changes.delete_record(state, DEFAULT_CONTACT_KEY),
    }
    Ok(())
}

/// The address notified for programs without their own, if any.
pub fn default_recipient(state: &State) -> Option<String> {
    state
        .record::<DefaultContact>(DEFAULT_CONTACT_KEY)
        .map(|c| c.email)
}

/// The wait before the next attempt after `attempts` failed ones: 5 s doubling, at most 1 h.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

/// What one delivery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Due notifications looked at.
    pub due: usize,
    /// Sent and recorded as delivered.
    pub delivered: usize,
    /// The SMTP conversation failed; retried later.
    pub failed: usize,
    /// Nobody to send to; retried later.
    pub no_recipient: usize,
    /// Already delivered but still under `outbox/` (an older store): moved to `outbox-sent/`, not sent.
    pub moved: usize,
    /// Why the pass ended early: the engine stopped or could not commit (the rest is retried).
    pub engine_error: Option<String>,
    /// The engine has stopped; no further pass can work.
    pub engine_stopped: bool,
}

/// The e-mail subject of a notification.
pub fn subject(n: &Notification) -> String {
    match n.kind.as_str() {
        "low_balance" => format!(
            "Antaca: partner balance {} below {} {}",
            n.balance, n.low_level, n.currency
        ),
        other => format!("Antaca: {other} for partner balance {}", n.balance),
    }
}

/// The plain-text e-mail body of a notification (no card data: it has none).
pub fn body(n: &Notification) -> String {
    format!(
        "The available amount of a partner balance fell below its low level.\r\n\
         \r\n\
         Program:   {}\r\n\
         Balance:   {}\r\n\
         Available: {} {}\r\n\
         Low level: {} {}\r\n\
         Time:      {} (UTC)\r\n\
         Reference: notification {}\r\n",
        n.program,
        n.balance,
        n.available,
        n.currency,
        n.low_level,
        n.currency,
        utc_time(n.created_ms),
        n.id
    )
}

/// `YYYY-MM-DD hh:mm:ss` of a time in ms since the epoch.
fn utc_time(ms: u64) -> String {
    let date = crate::domain::calendar::date_of_ms(ms);
    let secs = (ms / 1000) % 86_400;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        date.year,
        date.month,
        date.day,
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Builds the e-mail for `n` to `to`.
fn message(smtp: &SmtpConfig, n: &Notification, to: &[String]) -> Result<Message, String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("invalid sender address {:?}: {e}", smtp.from))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(subject(n))
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| format!("invalid recipient address {address:?}: {e}"))?;
        builder = builder.to(mailbox);
    }
    builder
        .body(body(n))
        .map_err(|e| format!("could not build the e-mail: {e}"))
}

/// Sends one notification over one SMTP conversation.
async fn send(smtp: &SmtpConfig, n: &Notification, to: &[String]) -> Result<(), String> {
    let email = message(smtp, n, to)?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .timeout(Some(smtp.timeout))
        .build();
    match tokio::time::timeout(smtp.timeout, transport.send(email)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("SMTP {}:{}: {e}", smtp.host, smtp.port)),
        Err(_) => Err(format!(
            "SMTP {}:{}: no answer within {} ms",
            smtp.host,
            smtp.port,
            smtp.timeout.as_millis()
        )),
    }
}

/// Cuts an error to [`ERROR_LENGTH_MAX`] bytes on a character boundary.
fn clip(mut error: String) -> String {
    if error.len() > ERROR_LENGTH_MAX {
        let mut end = ERROR_LENGTH_MAX;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

/// Records the outcome of one attempt; returns false when the record is gone or already delivered.
fn record_outcome(
    state: &mut State,
    changes: &mut Changes,
    id: u64,
    outcome: &Result<(), String>,
    now_ms: u64,
) -> bool {
    let key = Notification::key(id);
    let Some(mut n) = state.record::<Notification>(&key) else {
        return false;
    };
    if n.delivered_ms.is_some() {
        return false;
    }
    match outcome {
        Ok(()) => {
            n.delivered_ms = Some(now_ms);
            n.last_error = None;
            changes.put_record(state, &Notification::sent_key(id), &n);
            changes.delete_record(state, &key);
        }
        Err(error) => {
            n.attempts = n.attempts.saturating_add(1);
            n.last_error = Some(clip(error.clone()));
            let wait_ms = u64::try_from(backoff(n.attempts).as_millis()).unwrap_or(u64::MAX);
            n.next_attempt_ms = now_ms.saturating_add(wait_ms);
            changes.put_record(state, &key, &n);
        }
    }
    true
}

/// Moves the listed notifications that are delivered from `outbox/` to
/// `outbox-sent/` unchanged; returns how many moved.
fn move_delivered(state: &mut State, changes: &mut Changes, ids: &[u64]) -> usize {
    let mut moved = 0;
    for &id in ids {
        let key = Notification::key(id);
        match state.record::<Notification>(&key) {
            Some(n) if n.delivered_ms.is_some() => {
                changes.put_record(state, &Notification::sent_key(id), &n);
                changes.delete_record(state, &key);
                moved += 1;
            }
            _ => {}
        }
    }
    moved
}

/// Deletes at most [`SENT_PRUNE_MAX`] delivered notifications delivered at
/// least `retention_ms` before `now_ms`, in key (id, so age) order, stopping
/// at the first younger one; returns how many were deleted.
fn delete_old_sent(
    state: &mut State,
    changes: &mut Changes,
    retention_ms: u64,
    now_ms: u64,
) -> usize {
    let old: Vec<String> = state
        .records_under::<Notification>(OUTBOX_SENT_PREFIX)
        .take_while(|(_, n)| {
            n.delivered_ms
                .is_some_and(|delivered| delivered.saturating_add(retention_ms) <= now_ms)
        })
        .take(SENT_PRUNE_MAX)
        .map(|(key, _)| key.to_string())
        .collect();
    for key in &old {
        changes.delete_record(state, key);
    }
    old.len()
}

/// One retention pass: deletes at most [`SENT_PRUNE_MAX`] delivered
/// notifications kept `retention` or longer, oldest first; returns how many.
///
/// Ids increase with time, so the scan of `outbox-sent/` meets the oldest
/// first and stops at the first one still within its retention: a pass never
/// reads the whole set. "Oldest" is by id: a notification retried for long
/// and delivered after later ones holds back their pruning until its own
/// retention ends too (a delay, bounded by the retention, not a leak).
///
/// # Errors
/// The engine stopped or could not commit the change.
pub async fn prune_sent(
    engine: &EngineHandle,
    retention: Duration,
    now_ms: u64,
) -> Result<usize, ApplyError> {
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    engine
        .apply(move |state, changes, _| delete_old_sent(state, changes, retention_ms, now_ms))
        .await
}

/// One pass: sends every due notification (at most [`PASS_NOTIFICATIONS_MAX`]) and records each outcome.
pub async fn deliver_due(engine: &EngineHandle, smtp: &SmtpConfig, now_ms: u64) -> DeliveryReport {
    let mut report = DeliveryReport::default();
    let scanned = engine
        .inspect(move |state| {
            let recipients = Recipients::load(state);
            let mut due = Vec::new();
            // Delivered records are under `outbox/` only in a store written
            // before `outbox-sent/`: they are moved, never sent again.
            let mut delivered = Vec::new();
            for (_, n) in state.records_under::<Notification>(OUTBOX_PREFIX) {
                if n.delivered_ms.is_some() {
                    delivered.push(n.id);
                } else if n.next_attempt_ms <= now_ms && due.len() < PASS_NOTIFICATIONS_MAX {
                    let to = recipients.for_program(&n.program);
                    due.push((n, to));
                }
            }
            (due, delivered)
        })
        .await;
    let (due, delivered) = match scanned {
        Ok(scanned) => scanned,
        Err(e) => {
            report.engine_error = Some(e.to_string());
            report.engine_stopped = true;
            return report;
        }
    };
    for chunk in delivered.chunks(SENT_PRUNE_MAX) {
        let ids = chunk.to_vec();
        let moved = engine
            .apply(move |state, changes, _| move_delivered(state, changes, &ids))
            .await;
        match moved {
            Ok(moved) => report.moved += moved,
            Err(e) => {
                tracing::error!(error = %e, "could not move delivered notifications");
                report.engine_stopped = matches!(e, ApplyError::Stopped);
                report.engine_error = Some(e.to_string());
                return report;
            }
        }
    }
    report.due = due.len();
    for (n, to) in due {
        let outcome = if to.is_empty() {
            report.no_recipient += 1;
            Err(NO_RECIPIENT.to_string())
        } else {
            let sent = send(smtp, &n, &to).await;
            match &sent {
                Ok(()) => report.delivered += 1,
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(notification = n.id, program = %n.program, %error, "notification not delivered");
                }
            }
            sent
        };
        let id = n.id;
        let recorded = engine
            .apply(move |state, changes, _| record_outcome(state, changes, id, &outcome, now_ms))
            .await;
        if let Err(e) = recorded {
            // The outcome is lost; the notification is still due and is sent again next pass.
            tracing::error!(notification = id, error = %e, "could not record a delivery outcome");
            report.engine_stopped = matches!(e, ApplyError::Stopped);
            report.engine_error = Some(e.to_string());
            return report;
        }
    }
    report
}

/// Runs [`deliver_due`], then [`prune_sent`] with `sent_retention`, every
/// `interval` until `shutdown` is cancelled.
pub fn spawn_notifier(
    engine: EngineHandle,
    smtp: SmtpConfig,
    interval: Duration,
    sent_retention: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            // A pass is not cut short by shutdown: a mail that was sent is
            // recorded as delivered, so a restart does not send it again.
            let report = deliver_due(&engine, &smtp, crate::engine::now_ms()).await;
            if report.delivered + report.failed + report.no_recipient + report.moved > 0 {
                tracing::info!(
                    delivered = report.delivered,
                    failed = report.failed,
                    no_recipient = report.no_recipient,
                    moved = report.moved,
                    "notification pass"
                );
            }
            if report.engine_stopped {
                tracing::warn!("notifier stops: the engine has stopped");
                return;
            }
            match prune_sent(&engine, sent_retention, crate::engine::now_ms()).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    deleted,
                    "delivered notifications past their retention deleted"
                ),
                Err(ApplyError::Stopped) => {
                    tracing::warn!("notifier stops: the engine has stopped");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not delete old delivered notifications");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    })
}
