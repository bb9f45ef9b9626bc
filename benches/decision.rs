//! The pure decision, and one group commit of N authorizations against a real
//! store on disk: the commit (one write-ahead log record + `fdatasync`), and
//! the commit followed by its checkpoint into sled (apply, flush, `fdatasync`).
//!
//! `cargo bench --bench decision`
// criterion's `criterion_group!` makes public functions without docs.
#![allow(missing_docs)]

use antaca::authz::{decide, Operation, Request};
use antaca::domain::model::{Balance, BalanceOwner, Card, CardState, CardType};
use antaca::domain::money::Currency;
use antaca::engine::state::Changes;
use antaca::engine::{Engine, EngineConfig};
use antaca::iso8583::Message;
use antaca::manage::portfolio::{self, Portfolio};
use antaca::protocol::{self, Profile};
use antaca::security::secrets::CardSecrets;
use antaca::store::{SledStore, Store};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rust_decimal::Decimal;

fn card() -> Card {
    Card {
        id: "c".into(),
        balance: "b".into(),
        program: "p".into(),
        card_type: CardType::Virtual,
        state: CardState::Active,
        lock: None,
        expiry: "4912".into(),
        pan_hash: String::new(),
        pan_masked: String::new(),
        cvv2_hash: None,
        pin_hash: None,
        pin_tries: 0,
        pan_sealed: None,
        linked: true,
        created_ms: 0,
        activated_ms: None,
        cvv_generation: None,
    }
}

fn bench_decide(c: &mut Criterion) {
    let card = card();
    let balance = Balance {
        id: "b".into(),
        owner: BalanceOwner::User("u".into()),
        currency: "EUR".into(),
        available: Decimal::new(100_000, 2),
        held: Decimal::ZERO,
        low_level: None,
    };
    let request = Request {
        operation: Operation::Hold,
        amount_minor: 1_234,
        currency: Currency::from_alpha("EUR").expect("EUR"),
        billing: None,
        expiry: Some(*b"4912"),
        transmission: Some((11, 25)),
        cvv2_ok: None,
        pin_ok: None,
        pin_unverifiable: false,
    };
    let now = 1_795_564_800_000;
    c.bench_function("decide/approve", |b| {
        b.iter(|| decide(Some(&card), &[&balance], &request, now));
    });
}

fn luhn_complete(base: &str) -> String {
    (0..10)
        .map(|d| format!("{base}{d}"))
        .find(|p| antaca::security::pan::luhn_valid(p.as_bytes()))
        .unwrap_or_default()
}

fn bench_group_commit(c: &mut Criterion) {
    let cards = 1024;
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
    let records: Vec<String> = pans
        .iter()
        .enumerate()
        .map(|(i, pan)| format!(r#"{{"id":"c{i}","balance":"b{i}","type":"virtual","pan":"{pan}","expiry":"4912","state":"active","lock":null}}"#))
        .collect();
    let text = format!(
        r#"{{"programs":[{{"id":"p","bin":"535522","currency":"EUR","funding":"user_balance"}}],"users":[{}],"balances":[{}],"cards":[{}]}}"#,
        users.join(","),
        balances.join(","),
        records.join(",")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = CardSecrets::from_key([9; 32]);
    let store = SledStore::open(dir.path()).expect("sled");
    let mut engine = Engine::open(store, EngineConfig::default()).expect("engine");
    portfolio::import(
        &mut engine,
        &Portfolio::parse(&text).expect("portfolio"),
        &secrets,
        0,
    )
    .expect("import");
    let profile = Profile {
        dialect: antaca::domain::outcome::Dialect::Iso87,
    };
    let mut stan = 0u32;
    let mut group = c.benchmark_group("group_commit");
    group.sample_size(20);
    let runs = [1usize, 64, 1024]
        .into_iter()
        .flat_map(|n| [(n, false), (n, true)]);
    for (n, checkpoint) in runs {
        group.throughput(Throughput::Elements(n as u64));
        let name = if checkpoint {
            format!("{n}_authorizations_and_checkpoint")
        } else {
            format!("{n}_authorizations")
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    (0..n)
                        .map(|i| {
                            stan += 1;
                            let mut m = Message::new(*b"0100");
                            m.set(2, pans[i % cards].clone());
                            m.set(3, "000000".to_string());
                            m.set(4, "000000000100".to_string());
                            m.set(7, "1125120000".to_string());
                            m.set(11, format!("{:06}", stan % 1_000_000));
                            m.set(32, "123456".to_string());
                            m.set(41, format!("T{:07}", stan / 1_000_000));
                            m.set(49, "978".to_string());
                            protocol::parse::parse(&m, profile, &secrets).expect("request")
                        })
                        .collect::<Vec<_>>()
                },
                |requests| {
                    let mut changes = Changes::default();
                    let now = antaca::engine::now_ms();
                    for request in &requests {
                        engine.process(&mut changes, request, now);
                    }
                    engine.commit_for_bench(changes).expect("commit");
                    if checkpoint {
                        engine.store().checkpoint_now().expect("checkpoint");
                    }
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
    let _ = engine.store().get(b"m/next_txn");
}

criterion_group!(benches, bench_decide, bench_group_commit);
criterion_main!(benches);
