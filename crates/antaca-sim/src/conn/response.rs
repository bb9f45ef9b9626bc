//! What a connection does with a response: matches it with its request by
//! STAN, checks MTI, the echoed fields and the response code against the
//! expectation, records the latency, and books the balance movements the
//! reconciliation will compare.
//!
//! Names cards by id in its notes, never by PAN; sends nothing.

use super::{
    stan_of, Answered, Conn, Expect, OpenAuth, Original, Pending, MAX_ANSWERED, MAX_OPEN_AUTHS,
};
use crate::config::{Checks, Kind};
use antaca::iso8583::Message;
use antaca::protocol::respond::response_mti;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Conn {
    fn move_legs(&mut self, card: usize, available: i64, held: i64) {
        for &leg in &self.book.cards[card].legs {
            let d = self.result.deltas.entry(leg).or_default();
            d.0 += available;
            d.1 += held;
        }
    }

    pub(super) fn mark_unknown(&mut self, card: Option<usize>) {
        if let Some(card) = card {
            let legs = &self.book.cards[card].legs;
            self.result.unknown.extend(legs.iter().copied());
        }
    }

    fn error(&mut self) {
        self.live.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Matches a response frame with its request, checks it and books its effect.
    pub(super) fn on_frame(&mut self, frame: &Bytes, now: Instant) {
        let response = match self.spec.decode(frame) {
            Ok(m) => m,
            Err(e) => {
                self.result.protocol_errors += 1;
                self.error();
                self.note(format!("undecodable response: {e}"));
                return;
            }
        };
        let stan = stan_of(&response);
        let Some(p) = self.pending.remove(&stan) else {
            self.result.mismatches += 1;
            self.error();
            let mti = String::from_utf8_lossy(&response.mti()).into_owned();
            self.note(format!(
                "response {mti} with STAN {stan:06} matches no request in flight"
            ));
            return;
        };
        self.result.received += 1;
        let micros = u64::try_from(now.saturating_duration_since(p.intended).as_micros())
            .unwrap_or(u64::MAX);
        self.result.histogram.saturating_record(micros.max(1));
        let expected_mti = response_mti(p.request.mti());
        let mut wrong = Vec::new();
        if response.mti() != expected_mti {
            wrong.push(format!(
                "MTI {} (expected {})",
                String::from_utf8_lossy(&response.mti()),
                String::from_utf8_lossy(&expected_mti)
            ));
        }
        for n in [7, 11, 41] {
            if p.request.get(n) != response.get(n) {
                wrong.push(format!("field {n}"));
            }
        }
        let code = response.get_bytes(39).cloned();
        if code.is_none() {
            wrong.push("no field 39".into());
        }
        if !wrong.is_empty() {
            self.result.mismatches += 1;
            self.error();
            self.mark_unknown(p.card);
            self.note(format!(
                "{} STAN {stan:06}: mismatched response: {}",
                p.kind.name(),
                wrong.join(", ")
            ));
            return;
        }
        let code = code.unwrap_or_default();
        let code_text = String::from_utf8_lossy(&code);
        match self.result.codes.get_mut(code_text.as_ref()) {
            Some(count) => *count += 1,
            None => {
                self.result.codes.insert(code_text.into_owned(), 1);
            }
        }
        let approved = self.dialect.approved(&code);
        if approved {
            self.result.approved[p.kind.index()] += 1;
        }
        if self.checks == Checks::Full {
            if let Some(problem) = self.check(&p, &code, &response) {
                self.result.unexpected += 1;
                self.error();
                let card = p
                    .card
                    .map(|c| format!(" card {}", self.book.cards[c].id))
                    .unwrap_or_default();
                self.note(format!(
                    "{}{card} STAN {stan:06}: code {}: {problem}",
                    p.kind.name(),
                    String::from_utf8_lossy(&code)
                ));
                // What moved is unknown: leave these balances out of the reconciliation.
                self.mark_unknown(p.card);
                return;
            }
        }
        match p.kind {
            Kind::Auth | Kind::Decline => {
                // A decline the server approved (the echo server does) is no original.
                if let (true, Kind::Auth, Some(card)) = (approved, p.kind, p.card) {
                    self.move_legs(card, -p.amount, p.amount);
                    if self.open.len() >= MAX_OPEN_AUTHS {
                        self.open.pop_front();
                    }
                    self.open.push_back(OpenAuth {
                        card,
                        amount: p.amount,
                        original: Original {
                            mti: p.request.mti(),
                            stan,
                            secs: p.secs,
                        },
                    });
                }
                if self.answered.len() >= MAX_ANSWERED {
                    self.answered.pop_front();
                }
                self.answered.push_back(Answered {
                    stan,
                    body: p.body,
                    code,
                    approval: response.get_bytes(38).cloned(),
                });
            }
            Kind::Completion if approved => {
                if let Some(card) = p.card {
                    self.move_legs(card, p.hold - p.amount, -p.hold);
                }
            }
            Kind::Reversal if approved => {
                if let Some(card) = p.card {
                    self.move_legs(card, p.hold, -p.hold);
                }
            }
            Kind::Refund if approved => {
                if let Some(card) = p.card {
                    self.move_legs(card, p.amount, 0);
                }
            }
            Kind::Completion | Kind::Reversal | Kind::Refund => self.mark_unknown(p.card),
            Kind::Inquiry | Kind::Repeat | Kind::Duplicate | Kind::Echo => {}
        }
    }

    /// Why a response code breaks the expectation, if it does.
    fn check(&self, p: &Pending, code: &[u8], response: &Message) -> Option<String> {
        let approved = self.dialect.approved(code);
        match &p.expect {
            Expect::Approved if !approved => Some("expected an approval".into()),
            Expect::Approved if p.kind == Kind::Inquiry => match response.get(54).map(parse_54) {
                Some(Some(_)) => None,
                _ => Some("balance inquiry without a readable field 54".into()),
            },
            Expect::ApprovedOrInsufficient if !approved && code != self.dialect.insufficient() => {
                Some("expected an approval or insufficient funds".into())
            }
            Expect::Declined if approved => Some("approved, but it must be declined".into()),
            Expect::Insufficient if code != self.dialect.insufficient() => {
                Some("expected insufficient funds".into())
            }
            Expect::Replay {
                code: first,
                approval,
            } => {
                if code != first.as_ref() {
                    Some(format!(
                        "a repeat/duplicate got another code than the first answer ({})",
                        String::from_utf8_lossy(first)
                    ))
                } else if approval.as_deref() != response.get(38) {
                    Some("a repeat/duplicate got another approval code".into())
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// Field 54: (ledger "01", available "02") in signed minor units.
pub fn parse_54(value: &[u8]) -> Option<(i64, i64)> {
    let mut ledger = None;
    let mut available = None;
    for chunk in value.chunks(20) {
        if chunk.len() != 20 {
            return None;
        }
        let digits = std::str::from_utf8(&chunk[8..20]).ok()?;
        let mut amount: i64 = digits.parse().ok()?;
        match chunk[7] {
            b'C' => {}
            b'D' => amount = -amount,
            _ => return None,
        }
        match &chunk[2..4] {
            b"01" => ledger = Some(amount),
            b"02" => available = Some(amount),
            _ => {}
        }
    }
    Some((ledger?, available?))
}
