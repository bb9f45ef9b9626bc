//! The balances around the load: the opening and closing balance inquiries
//! of every good card, one request at a time on their own connection, and
//! the opening amounts the reconciliation ([`crate::report::reconcile`])
//! starts from.
//!
//! Runs before and after the load, never during it; reports card and
//! balance ids, never PANs.

use crate::book::{Book, SimCard};
use crate::config::SimConfig;
use crate::conn::{connect, new_conn, parse_54, stan_of, Expiry};
use crate::run::RunShared;
use crate::SimError;
use antaca::iso8583::{Message, Spec};
use antaca::net::framing::{encode_frame, FrameCodec, LengthHeader};
use antaca::protocol::classify::BALANCE_INQUIRY;
use bytes::BytesMut;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

/// A connection that sends one request at a time (opening and closing inquiries).
struct Serial {
    socket: TcpStream,
    codec: FrameCodec,
    inbuf: BytesMut,
    spec: Arc<Spec>,
    header: LengthHeader,
}

impl Serial {
    async fn call(&mut self, request: &Message) -> Result<Message, SimError> {
        let mut body = BytesMut::new();
        self.spec.encode(request, &mut body)?;
        let mut out = BytesMut::new();
        encode_frame(self.header, &body, &mut out)?;
        self.socket.write_all(&out).await?;
        let wanted = stan_of(request);
        loop {
            while let Some(frame) = self.codec.decode(&mut self.inbuf)? {
                if frame.is_empty() {
                    continue;
                }
                let m = self.spec.decode(&frame)?;
                if stan_of(&m) == wanted {
                    return Ok(m);
                }
            }
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                self.socket.read_buf(&mut self.inbuf),
            )
            .await
            .map_err(|_| "no answer to a balance inquiry in 10 s")??;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
        }
    }
}

/// Balance inquiry of every good card: (ledger, available) by card index.
pub(crate) async fn inquire_all(
    config: &SimConfig,
    shared: &RunShared,
    terminal: String,
) -> Result<HashMap<usize, Result<(i64, i64), String>>, SimError> {
    let socket = connect(&config.addr).await?;
    let mut serial = Serial {
        socket,
        codec: FrameCodec::new(config.header, 64 * 1024),
        inbuf: BytesMut::new(),
        spec: Arc::clone(&shared.spec),
        header: config.header,
    };
    let mut conn = new_conn(config, shared, usize::MAX, terminal);
    let mut out = HashMap::new();
    for &c in &shared.book.good {
        conn.tick_clock(Instant::now());
        let m = conn
            .request(b"0100", c, BALANCE_INQUIRY, 0, Expiry::Card)
            .build();
        let answer = serial.call(&m).await?;
        let code = answer.get(39).unwrap_or_default();
        let result = if conn.dialect.approved(code) {
            answer
                .get(54)
                .and_then(parse_54)
                .ok_or_else(|| "inquiry without a readable field 54".to_string())
        } else {
            Err(format!(
                "inquiry declined {}",
                String::from_utf8_lossy(code)
            ))
        };
        out.insert(c, result);
    }
    Ok(out)
}

/// Per-balance opening amounts (available, held) the reconciliation starts from,
/// and the balances the sim does not own.
pub(crate) struct Opening {
    pub(crate) accounts: HashMap<usize, (i64, i64)>,
    pub(crate) foreign: HashSet<usize>,
    pub(crate) notes: Vec<String>,
}

/// Opening amounts: from the portfolio, re-based on a single-balance card's
/// inquiry (which gives its balance's available and held amounts exactly).
/// A card over several balances whose inquiry disagrees with the model marks
/// them foreign: the sim does not own them and leaves them out.
pub(crate) fn opening_from(
    book: &Book,
    inquiries: &HashMap<usize, Result<(i64, i64), String>>,
) -> Opening {
    let mut accounts: HashMap<usize, (i64, i64)> = book
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (i, (a.opening, 0)))
        .collect();
    let mut foreign = HashSet::new();
    let mut notes = Vec::new();
    for &c in &book.good {
        let card = &book.cards[c];
        match inquiries.get(&c) {
            Some(Ok((ledger, available))) if card.legs.len() == 1 => {
                let leg = card.legs[0];
                let before = accounts.get(&leg).copied().unwrap_or_default();
                let now = (*available, ledger - available);
                if before != now {
                    notes.push(format!(
                        "balance {} starts at available {} held {} (portfolio: {}): the store is not fresh; reconciling from the inquired amounts",
                        book.accounts[leg].id, now.0, now.1, book.accounts[leg].opening
                    ));
                    accounts.insert(leg, now);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                notes.push(format!(
                    "card {}: opening {e}; its balances are left out",
                    card.id
                ));
                foreign.extend(card.legs.iter().copied());
            }
            None => {}
        }
    }
    for &c in &book.good {
        let card = &book.cards[c];
        if let Some(Ok(seen)) = inquiries.get(&c) {
            if card.legs.len() > 1 && expected_inquiry(card, &accounts) != *seen {
                notes.push(format!(
                    "card {}: opening inquiry disagrees with the portfolio over balances {}: not owned, left out",
                    card.id,
                    card.legs
                        .iter()
                        .map(|l| book.accounts[*l].id.as_str())
                        .collect::<Vec<_>>()
                        .join("+")
                ));
                foreign.extend(card.legs.iter().copied());
            }
        }
    }
    Opening {
        accounts,
        foreign,
        notes,
    }
}

/// What a balance inquiry of `card` answers over `accounts`: ledger of its first
/// balance, and the smallest available amount of its balances.
pub(crate) fn expected_inquiry(
    card: &SimCard,
    accounts: &HashMap<usize, (i64, i64)>,
) -> (i64, i64) {
    let first = accounts.get(&card.legs[0]).copied().unwrap_or_default();
    let available = card
        .legs
        .iter()
        .map(|l| accounts.get(l).map(|a| a.0).unwrap_or_default())
        .min()
        .unwrap_or(first.0);
    (first.0 + first.1, available)
}
