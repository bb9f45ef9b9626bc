//! What a connection sends: the next request of the mix (with its
//! expectation), built from per-card field values and cut from the
//! connection's arena, then encoded and framed into the batch being written.
//!
//! Touches only the sending side of the state (STANs, the originals it
//! consumes, what is in flight); never reads a response.

use super::{stan_of, Conn, Expect, Pending, HUGE_AMOUNT};
use crate::book::Book;
use crate::clock::date_time_digits;
use crate::config::{Kind, Mix};
use antaca::iso8583::{EncodeError, Message, Spec};
use antaca::net::framing::encode_frame;
use antaca::protocol::builder::{cvv2_subelement, request_mti, RequestBuilder};
use antaca::protocol::classify::{BALANCE_INQUIRY, PURCHASE, REFUND};
use antaca::protocol::NetworkFunction;
use bytes::{Bytes, BytesMut};
use rand::Rng;
use std::sync::Arc;
use std::time::Instant;

/// Where a connection cuts the bytes of its requests from (varying field
/// values, encoded bodies): one allocation serves many requests, and each
/// piece is a reference-counted slice of it.
pub(super) struct Arena(BytesMut);

impl Arena {
    /// The size of one block.
    const BLOCK: usize = 16 * 1024;

    pub(super) fn new() -> Arena {
        Arena(BytesMut::with_capacity(Arena::BLOCK))
    }

    /// Room for at least `len` more bytes: in the current block if it has
    /// them, else in a new one (the old block lives while a piece of it does).
    fn reserve(&mut self, len: usize) {
        if self.0.capacity() - self.0.len() < len {
            self.0.reserve(len.max(Arena::BLOCK));
        }
    }

    /// The buffer a request's numbers are cut from, with room for them.
    fn digits(&mut self) -> &mut BytesMut {
        self.reserve(128);
        &mut self.0
    }

    /// `spec`'s wire form of `message` (the frame body).
    fn encode(&mut self, spec: &Spec, message: &Message) -> Result<Bytes, EncodeError> {
        self.reserve(1024);
        spec.encode(message, &mut self.0)?;
        Ok(self.0.split().freeze())
    }
}

/// The field values of a card, built once per run so that a request costs
/// reference-count increments instead of allocations. Holds the clear PAN
/// and CVV2: never print it.
pub(crate) struct CardFields {
    pan: Bytes,
    expiry: Bytes,
    currency: Bytes,
    /// The CVV2 as the spec carries it (its TLV subelement).
    cvv2: Option<Bytes>,
}

impl CardFields {
    pub(crate) fn of_book(book: &Book, spec: &Spec) -> Vec<CardFields> {
        let location = spec.cvv2_location();
        let has_cvv2_field = spec.field(location.field).is_some();
        book.cards
            .iter()
            .map(|card| CardFields {
                pan: Bytes::from(card.pan.clone()),
                expiry: Bytes::from(card.expiry.clone()),
                currency: Bytes::from(format!("{:03}", card.currency.numeric)),
                cvv2: card
                    .cvv2
                    .as_ref()
                    .filter(|_| has_cvv2_field)
                    .map(|cvv2| cvv2_subelement(location, cvv2)),
            })
            .collect()
    }
}

/// What a request carries as its expiry (field 14).
#[derive(Clone, Copy)]
pub(crate) enum Expiry {
    /// The card's own expiry.
    Card,
    /// This one instead (a wrong expiry, on purpose).
    Given(&'static [u8]),
    /// None: completions and reversals do not carry it.
    Absent,
}

impl Conn {
    /// A request of card `c` with the fields an acquirer sends and `expiry`.
    pub(crate) fn request(
        &mut self,
        mti: &[u8; 4],
        c: usize,
        processing: &'static [u8],
        amount: i64,
        expiry: Expiry,
    ) -> RequestBuilder<'_> {
        let stan = self.next_stan();
        let card = &self.cards[c];
        let dialect = self.dialect.wire();
        let reference = (self.index % 10_000) as u64 * 100_000_000 + u64::from(stan);
        let builder =
            RequestBuilder::new(dialect, request_mti(dialect, mti), 16, self.arena.digits())
                .pan(card.pan.clone())
                .processing_code(Bytes::from_static(processing))
                .amount_minor(u64::try_from(amount).unwrap_or(0))
                .date_time(&self.clock.local_date_time)
                .stan(stan)
                .mcc(Bytes::from_static(b"5411"))
                .acquirer(self.acquirer.clone())
                .retrieval_reference(reference)
                .terminal(self.terminal.clone())
                .merchant(Bytes::from_static(b"SIMMERCHANT0001"))
                .currency(card.currency.clone());
        match expiry {
            Expiry::Card => builder.expiry(card.expiry.clone()),
            Expiry::Given(yymm) => builder.expiry(Bytes::from_static(yymm)),
            Expiry::Absent => builder,
        }
    }

    fn small_amount(&mut self, c: usize) -> i64 {
        let scale = 10i64.pow(self.book.cards[c].currency.exponent);
        (self.rng.gen_range(1..=2000) * scale / 100).max(1)
    }

    fn good_card(&mut self) -> usize {
        let i = self.rng.gen_range(0..self.book.good.len());
        self.book.good[i]
    }

    /// Builds the next request of the mix.
    pub(super) fn next_request(&mut self, intended: Instant) -> Pending {
        let book = Arc::clone(&self.book);
        let mut kind = self.mix.pick(&mut self.rng);
        // Follow-ups need an original; without one they become authorizations.
        kind = match kind {
            Kind::Completion | Kind::Reversal if self.open.is_empty() => Kind::Auth,
            Kind::Repeat | Kind::Duplicate => {
                let n = self.answered.len();
                let free = n > 0 && {
                    let i = self.rng.gen_range(0..n);
                    self.answered.swap(i, n - 1);
                    !self.pending.contains_key(&self.answered[n - 1].stan)
                };
                if free {
                    kind
                } else {
                    Kind::Auth
                }
            }
            other => other,
        };
        let secs = self.clock.secs;
        let pending = |kind, card, amount, hold, request, expect| Pending {
            intended,
            kind,
            card,
            amount,
            hold,
            secs,
            request,
            body: Bytes::new(),
            expect,
        };
        match kind {
            Kind::Auth => {
                let c = self.good_card();
                let amount = self.small_amount(c);
                let cvv2 = self.cards[c].cvv2.clone();
                // A reference count, not a copy of the location, per message.
                let spec = Arc::clone(&self.spec);
                let mut m = self.request(b"0100", c, PURCHASE, amount, Expiry::Card);
                if let Some(cvv2) = cvv2 {
                    m = m.subelements(spec.cvv2_location(), cvv2);
                }
                pending(
                    kind,
                    Some(c),
                    amount,
                    0,
                    m.build(),
                    Expect::ApprovedOrInsufficient,
                )
            }
            Kind::Completion | Kind::Reversal => {
                let i = self.rng.gen_range(0..self.open.len());
                let Some(original) = self.open.swap_remove_back(i) else {
                    return self.auth_fallback(intended);
                };
                let (mti, amount) = if kind == Kind::Completion {
                    // Completions may differ from the hold (tips, fuel): 80–120 %.
                    let amount = (original.amount * self.rng.gen_range(80..=120) / 100)
                        .clamp(1, HUGE_AMOUNT);
                    (b"0220", amount)
                } else {
                    (b"0400", original.amount)
                };
                let acquirer = self.acquirer.clone();
                let named = original.original;
                let m = self
                    .request(mti, original.card, PURCHASE, amount, Expiry::Absent)
                    .original(
                        named.mti,
                        named.stan,
                        &date_time_digits(named.secs),
                        &acquirer,
                    )
                    .build();
                pending(
                    kind,
                    Some(original.card),
                    amount,
                    original.amount,
                    m,
                    Expect::Approved,
                )
            }
            Kind::Refund => {
                // Give back what this connection took from the balance it drained most,
                // so balances stay near their opening amounts for any duration.
                let drained = self
                    .result
                    .deltas
                    .iter()
                    .filter(|(leg, d)| d.0 < 0 && book.spender.contains_key(leg))
                    .min_by_key(|(leg, d)| (d.0, **leg))
                    .map(|(leg, d)| (*leg, -d.0));
                let (c, amount) = match drained {
                    Some((leg, taken)) => (
                        book.spender.get(&leg).copied().unwrap_or(book.good[0]),
                        taken.min(HUGE_AMOUNT),
                    ),
                    None => {
                        let c = self.good_card();
                        (c, self.small_amount(c))
                    }
                };
                let m = self
                    .request(b"0200", c, REFUND, amount, Expiry::Card)
                    .build();
                pending(kind, Some(c), amount, 0, m, Expect::Approved)
            }
            Kind::Inquiry => {
                let c = self.good_card();
                let m = self
                    .request(b"0100", c, BALANCE_INQUIRY, 0, Expiry::Card)
                    .build();
                pending(kind, Some(c), 0, 0, m, Expect::Approved)
            }
            Kind::Repeat | Kind::Duplicate => {
                let Some(original) = self.answered.back() else {
                    return self.auth_fallback(intended);
                };
                // The request exactly as first sent: it decodes, since it was encoded.
                let Ok(mut m) = self.spec.decode(&original.body) else {
                    return self.auth_fallback(intended);
                };
                if kind == Kind::Repeat {
                    let mut mti = m.mti();
                    mti[3] |= 1;
                    m.set_mti(mti);
                }
                let expect = Expect::Replay {
                    code: original.code.clone(),
                    approval: original.approval.clone(),
                };
                pending(kind, None, 0, 0, m, expect)
            }
            Kind::Decline => {
                let choice = self.rng.gen_range(0..3);
                if choice == 0 && !book.bad.is_empty() {
                    let c = book.bad[self.rng.gen_range(0..book.bad.len())];
                    let amount = self.small_amount(c);
                    let m = self
                        .request(b"0100", c, PURCHASE, amount, Expiry::Card)
                        .build();
                    return pending(kind, Some(c), amount, 0, m, Expect::Declined);
                }
                let c = self.good_card();
                if choice == 1 {
                    let amount = self.small_amount(c);
                    let wrong: &'static [u8] = if book.cards[c].expiry == "2001" {
                        b"2002"
                    } else {
                        b"2001"
                    };
                    let m = self
                        .request(b"0100", c, PURCHASE, amount, Expiry::Given(wrong))
                        .build();
                    pending(kind, Some(c), amount, 0, m, Expect::Declined)
                } else {
                    let m = self
                        .request(b"0100", c, PURCHASE, HUGE_AMOUNT, Expiry::Card)
                        .build();
                    pending(kind, Some(c), HUGE_AMOUNT, 0, m, Expect::Insufficient)
                }
            }
            Kind::Echo => {
                let stan = self.next_stan();
                let m = RequestBuilder::network_management(
                    self.dialect.wire(),
                    NetworkFunction::Echo,
                    self.clock.transmission.clone(),
                    stan,
                    self.arena.digits(),
                )
                .build();
                pending(kind, None, 0, 0, m, Expect::Approved)
            }
        }
    }

    fn auth_fallback(&mut self, intended: Instant) -> Pending {
        let mix = std::mem::replace(
            &mut self.mix,
            Mix {
                weights: [1, 0, 0, 0, 0, 0, 0, 0, 0],
            },
        );
        let p = self.next_request(intended);
        self.mix = mix;
        p
    }

    /// Encodes `p` into `out` and records it as in flight.
    pub(super) fn send(&mut self, mut p: Pending, out: &mut BytesMut) {
        p.body = match self.arena.encode(&self.spec, &p.request) {
            Ok(body) => body,
            Err(e) => {
                self.result.protocol_errors += 1;
                self.note(format!("cannot encode a {} request: {e}", p.kind.name()));
                return;
            }
        };
        if let Err(e) = encode_frame(self.header, &p.body, out) {
            self.result.protocol_errors += 1;
            self.note(format!("cannot frame a {} request: {e}", p.kind.name()));
            return;
        }
        self.result.sent += 1;
        self.result.kinds[p.kind.index()] += 1;
        self.pending.insert(stan_of(&p.request), p);
    }
}
