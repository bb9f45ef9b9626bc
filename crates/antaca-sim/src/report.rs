//! The sim's report: latency percentiles, throughput, codes, errors and the
//! balance reconciliation; as text and as JSON.

use super::balances::expected_inquiry;
use super::book::Book;
use super::conn::{new_histogram, ConnResult};
use super::{Kind, SimConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// One point of the latency distribution.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Percentile {
    /// Percentile, 0–100.
    pub percentile: f64,
    /// Latency at that percentile, microseconds.
    pub latency_us: u64,
}

/// The outcome of the balance reconciliation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Cards whose inquiry was compared with the expected amounts.
    pub checked_cards: u64,
    /// Balances covered by those cards.
    pub checked_balances: u64,
    /// Disagreements (card ids and amounts in minor units, never a PAN).
    pub mismatches: Vec<String>,
    /// Cards left out, and why (not owned, or an outcome the sim does not know).
    pub skipped: Vec<String>,
    /// Notes from the opening inquiries.
    pub notes: Vec<String>,
    /// Whether every checked card agreed.
    pub ok: bool,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Spec name.
    pub spec: String,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub inflight: usize,
    /// Target rate (0 = closed loop).
    pub rate: f64,
    /// Sending window, seconds.
    pub duration_s: f64,
    /// Requests sent.
    pub sent: u64,
    /// Responses matched to a request.
    pub received: u64,
    /// All errors: protocol errors, mismatches, unexpected codes, timeouts, reconciliation mismatches.
    pub errors: u64,
    /// Undecodable or unframeable bytes, closed or failed connections.
    pub protocol_errors: u64,
    /// Responses that match no request in flight, or differ in MTI/field 7/11/41.
    pub mismatched: u64,
    /// Responses whose code breaks the expectation (e.g. a locked card approved).
    pub unexpected_codes: u64,
    /// Requests still unanswered after the drain.
    pub timeouts: u64,
    /// Responses per second over the sending window.
    pub throughput_per_s: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Responses by field 39.
    pub codes: BTreeMap<String, u64>,
    /// Requests sent by kind.
    pub kinds: BTreeMap<String, u64>,
    /// Approvals by kind.
    pub approved: BTreeMap<String, u64>,
    /// Balance reconciliation (full checks only).
    pub reconciliation: Option<Reconciliation>,
    /// The first problems seen (card ids, STANs, codes; never a PAN).
    pub problems: Vec<String>,
    /// The latency distribution for plotting.
    pub percentiles: Vec<Percentile>,
    /// Net movements per balance index (available, held), minor units.
    #[serde(skip)]
    pub(crate) deltas: HashMap<usize, (i64, i64)>,
    /// Balance indexes with an outcome the sim does not know.
    #[serde(skip)]
    pub(crate) unknown: HashSet<usize>,
}

/// Percentiles for the plot: dense on a log scale of 1/(1-p), up to 99.9999.
fn plot_points(h: &hdrhistogram::Histogram<u64>) -> Vec<Percentile> {
    let mut out = Vec::new();
    let mut x = 0.0f64;
    while x <= 6.0 + 1e-9 {
        let p = 1.0 - 10f64.powf(-x);
        out.push(Percentile {
            percentile: (p * 100.0 * 1e6).round() / 1e6,
            latency_us: h.value_at_quantile(p),
        });
        x += 0.05;
    }
    out.push(Percentile {
        percentile: 100.0,
        latency_us: h.max(),
    });
    out
}

impl Report {
    pub(crate) fn merge(config: &SimConfig, results: Vec<ConnResult>, window: Duration) -> Report {
        let mut h = new_histogram();
        let mut r = Report {
            spec: config.spec.name().to_string(),
            connections: config.connections,
            inflight: config.inflight,
            rate: config.rate,
            duration_s: window.as_secs_f64(),
            sent: 0,
            received: 0,
            errors: 0,
            protocol_errors: 0,
            mismatched: 0,
            unexpected_codes: 0,
            timeouts: 0,
            throughput_per_s: 0.0,
            p50_us: 0,
            p90_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            mean_us: 0.0,
            codes: BTreeMap::new(),
            kinds: BTreeMap::new(),
            approved: BTreeMap::new(),
            reconciliation: None,
            problems: Vec::new(),
            percentiles: Vec::new(),
            deltas: HashMap::new(),
            unknown: HashSet::new(),
        };
        for c in results {
            let _ = h.add(&c.histogram);
            r.sent += c.sent;
            r.received += c.received;
            r.protocol_errors += c.protocol_errors;
            r.mismatched += c.mismatches;
            r.unexpected_codes += c.unexpected;
            r.timeouts += c.timeouts;
            for (k, v) in c.codes {
                *r.codes.entry(k).or_default() += v;
            }
            for (kind, (sent, approved)) in Kind::ALL.iter().zip(c.kinds.iter().zip(c.approved)) {
                if *sent > 0 {
                    *r.kinds.entry(kind.name().to_string()).or_default() += sent;
                }
                if approved > 0 {
                    *r.approved.entry(kind.name().to_string()).or_default() += approved;
                }
            }
            for (k, (a, held)) in c.deltas {
                let d = r.deltas.entry(k).or_default();
                d.0 += a;
                d.1 += held;
            }
            r.unknown.extend(c.unknown);
            for note in c.notes {
                if r.problems.len() < 50 {
                    r.problems.push(note);
                }
            }
        }
        r.errors = r.protocol_errors + r.mismatched + r.unexpected_codes + r.timeouts;
        let secs = window.as_secs_f64();
        r.throughput_per_s = if secs > 0.0 {
            r.received as f64 / secs
        } else {
            0.0
        };
        if !h.is_empty() {
            r.p50_us = h.value_at_quantile(0.5);
            r.p90_us = h.value_at_quantile(0.9);
            r.p99_us = h.value_at_quantile(0.99);
            r.p999_us = h.value_at_quantile(0.999);
            r.max_us = h.max();
            r.mean_us = (h.mean() * 10.0).round() / 10.0;
            r.percentiles = plot_points(&h);
        }
        r
    }

    /// Whether the run saw no error of any kind (reconciliation included).
    pub fn is_clean(&self) -> bool {
        self.errors == 0 && self.reconciliation.as_ref().is_none_or(|r| r.ok)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// Reads a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The plain-text summary.
    pub fn summary(&self) -> String {
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
        let mode = if self.rate > 0.0 {
            format!(
                "fixed rate {}/s (latency from the intended send time)",
                self.rate
            )
        } else {
            "closed loop".to_string()
        };
        let mut s = format!(
            "spec {}  connections {}  in flight {}  {mode}  {:.1} s\n",
            self.spec, self.connections, self.inflight, self.duration_s
        );
        s.push_str(&format!(
            "sent {}  received {}  throughput {:.0}/s\n",
            self.sent, self.received, self.throughput_per_s
        ));
        s.push_str(&format!(
            "latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.3} ms\n",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.mean_us / 1000.0
        ));
        let join = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        s.push_str(&format!("codes: {}\n", join(&self.codes)));
        s.push_str(&format!("sent by kind: {}\n", join(&self.kinds)));
        s.push_str(&format!("approved by kind: {}\n", join(&self.approved)));
        s.push_str(&format!(
            "errors {}: protocol {}  mismatched {}  unexpected codes {}  unanswered {}\n",
            self.errors,
            self.protocol_errors,
            self.mismatched,
            self.unexpected_codes,
            self.timeouts
        ));
        match &self.reconciliation {
            Some(r) => {
                s.push_str(&format!(
                    "reconciliation: {} ({} cards over {} balances checked, {} skipped)\n",
                    if r.ok { "balances agree" } else { "MISMATCH" },
                    r.checked_cards,
                    r.checked_balances,
                    r.skipped.len()
                ));
                for line in r.notes.iter().chain(&r.skipped).chain(&r.mismatches) {
                    s.push_str(&format!("  {line}\n"));
                }
            }
            None => s.push_str("reconciliation: not run (protocol checks only)\n"),
        }
        for p in &self.problems {
            s.push_str(&format!("  problem: {p}\n"));
        }
        s
    }
}

/// Compares the closing inquiries with opening + what was approved.
pub(crate) fn reconcile(
    book: &Book,
    opening: &HashMap<usize, (i64, i64)>,
    foreign: &HashSet<usize>,
    notes: Vec<String>,
    deltas: &HashMap<usize, (i64, i64)>,
    unknown: &HashSet<usize>,
    closing: &HashMap<usize, Result<(i64, i64), String>>,
) -> Reconciliation {
    let mut expected = opening.clone();
    for (leg, (a, h)) in deltas {
        let e = expected.entry(*leg).or_default();
        e.0 += a;
        e.1 += h;
    }
    let mut r = Reconciliation {
        notes,
        ..Reconciliation::default()
    };
    let mut balances = HashSet::new();
    for &c in &book.good {
        let card = &book.cards[c];
        if let Some(leg) = card.legs.iter().find(|l| foreign.contains(l)) {
            r.skipped.push(format!(
                "card {}: balance {} not owned",
                card.id, book.accounts[*leg].id
            ));
            continue;
        }
        if let Some(leg) = card.legs.iter().find(|l| unknown.contains(l)) {
            r.skipped.push(format!(
                "card {}: balance {} had a request with an unknown outcome",
                card.id, book.accounts[*leg].id
            ));
            continue;
        }
        let want = expected_inquiry(card, &expected);
        match closing.get(&c) {
            Some(Ok(seen)) if *seen == want => {
                r.checked_cards += 1;
                balances.extend(card.legs.iter().copied());
            }
            Some(Ok(seen)) => {
                r.checked_cards += 1;
                balances.extend(card.legs.iter().copied());
                r.mismatches.push(format!(
                    "card {}: inquiry says ledger {} available {}, expected ledger {} available {} (minor units)",
                    card.id, seen.0, seen.1, want.0, want.1
                ));
            }
            Some(Err(e)) => r.mismatches.push(format!("card {}: closing {e}", card.id)),
            None => r
                .mismatches
                .push(format!("card {}: no closing inquiry", card.id)),
        }
    }
    r.checked_balances = balances.len() as u64;
    r.ok = r.mismatches.is_empty();
    r
}
