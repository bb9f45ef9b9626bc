//! One history page on a store with a card of 100,000 transactions, as the
//! writer reads it between batches (`manage::history::history` through the
//! engine's `Reader`), with a transaction cache far smaller than the card's
//! history so that the page reads the store:
//! - `card_newest_100`: the first page of 100 (the app's history screen);
//! - `card_page_deep_100`: a page of 100 from a cursor 50,000 back;
//! - `card_day_filter_scan`: a day filter that matches nothing among the
//!   newest transactions, so the page looks at `SCAN_MAX` of them and
//!   returns a cursor (the most one page can cost the writer).
//!
//! The store is the default disk store (fjall behind the log; `ANTACA_STORE=sled`
//! for sled), built once: 200,000 purchases, every second one on the card.
//!
//! `cargo bench --bench history`
// criterion's `criterion_group!` makes public functions without docs.
#![allow(missing_docs)]

use antaca::domain::calendar;
use antaca::engine::state::Changes;
use antaca::engine::{Engine, EngineConfig};
use antaca::iso8583::Message;
use antaca::manage::history::{history, HistoryFilter, SCAN_MAX};
use antaca::manage::portfolio::{self, Portfolio};
use antaca::protocol::{self, Profile};
use antaca::security::secrets::CardSecrets;
use antaca::store::SledStore;
use criterion::{criterion_group, criterion_main, Criterion};

const TXNS: u32 = 200_000;
const DAY_MS: u64 = 86_400_000;

fn luhn_complete(base: &str) -> String {
    (0..10)
        .map(|d| format!("{base}{d}"))
        .find(|p| antaca::security::pan::luhn_valid(p.as_bytes()))
        .unwrap_or_default()
}

fn bench_history(c: &mut Criterion) {
    let pans = [
        luhn_complete("535522000000001"),
        luhn_complete("535522000000002"),
    ];
    let text = format!(
        r#"{{"programs":[{{"id":"p","bin":"535522","currency":"EUR","funding":"user_balance"}}],
        "users":[{{"id":"u0","program":"p","kyc":"verified"}},{{"id":"u1","program":"p","kyc":"verified"}}],
        "balances":[{{"id":"b0","user":"u0","currency":"EUR","amount":"100000000.00"}},{{"id":"b1","user":"u1","currency":"EUR","amount":"100000000.00"}}],
        "cards":[{{"id":"c0","balance":"b0","type":"virtual","pan":"{}","expiry":"4912","state":"active","lock":null}},
                 {{"id":"c1","balance":"b1","type":"virtual","pan":"{}","expiry":"4912","state":"active","lock":null}}]}}"#,
        pans[0], pans[1]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = CardSecrets::from_key([9; 32]);
    let store = SledStore::open(dir.path()).expect("store");
    let config = EngineConfig {
        txn_cache: 1_000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::open(store, config).expect("engine");
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
    // The older half two days back, the newer half today.
    let today = antaca::engine::now_ms();
    let old_day = today - 2 * DAY_MS;
    let mut changes = Changes::default();
    for i in 0..TXNS {
        let mut m = Message::new(*b"0200");
        m.set(2, pans[(i % 2) as usize].clone());
        m.set(3, "000000".to_string());
        m.set(4, "000000000100".to_string());
        m.set(7, "1125120000".to_string());
        m.set(11, format!("{:06}", i % 1_000_000));
        m.set(32, "123456".to_string());
        m.set(41, format!("T{:07}", i / 1_000_000));
        m.set(49, "978".to_string());
        let request = protocol::parse::parse(&m, profile, &secrets).expect("request");
        let now = if i < TXNS / 2 { old_day } else { today } + u64::from(i);
        engine.process(&mut changes, &request, now);
        if i % 1_000 == 999 {
            engine
                .commit_for_bench(std::mem::take(&mut changes))
                .expect("commit");
        }
    }
    engine.commit_for_bench(changes).expect("commit");
    engine.store().checkpoint_now().expect("checkpoint");

    let card = |before: Option<u64>, to: Option<calendar::Date>| HistoryFilter {
        card: Some("c0".into()),
        before,
        to,
        limit: 100,
        ..HistoryFilter::default()
    };
    let newest = history(&engine.reader(), &card(None, None)).expect("history");
    assert_eq!(newest.items.len(), 100);
    let deep = newest.items[0].id - 100_000;
    let filtered = card(None, Some(calendar::date_of_ms(old_day)));
    let page = history(&engine.reader(), &filtered).expect("history");
    assert!(
        page.items.is_empty() && page.next_cursor.is_some(),
        "a scan that ends at SCAN_MAX ({SCAN_MAX})"
    );

    let mut group = c.benchmark_group("history");
    group.bench_function("card_newest_100", |b| {
        b.iter(|| history(&engine.reader(), &card(None, None)).expect("history"));
    });
    group.bench_function("card_page_deep_100", |b| {
        b.iter(|| history(&engine.reader(), &card(Some(deep), None)).expect("history"));
    });
    group.sample_size(20);
    group.bench_function("card_day_filter_scan", |b| {
        b.iter(|| history(&engine.reader(), &filtered).expect("history"));
    });
    group.finish();
}

criterion_group!(benches, bench_history);
criterion_main!(benches);
