//! Bounded fuzzing on stable: the five cargo-fuzz target bodies (`fuzz/src/lib.rs`,
//! included below) driven by proptest with arbitrary bytes, mutations of the golden
//! vectors and the seed corpus (bit flips, truncation, splicing, length-prefix
//! corruption), and JSON-shaped inputs for the portfolio and HTTP parsers. Plus a
//! replay of every file in `fixtures/crashes/`.
//!
//! Cases per target: `ANTACA_FUZZ_CASES` (default 2,000; shared by the three
//! strategies of a target). The long run is ignored by default:
//! `ANTACA_FUZZ_CASES=1000000 cargo test --release --test fuzz_bounded -- --ignored`.
//! See FUZZING.md.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use std::path::{Path, PathBuf};

use antaca::iso8583::Spec;
use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{json, Map, Value};

const DEFAULT_CASES: u32 = 2_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Raw frames of every golden vector (valid and malformed), by spec name.
fn golden_frames() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    files_under(&root().join("fixtures/golden"), &mut files);
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("golden vector");
            let v: Value = serde_json::from_str(&text).expect("golden JSON");
            let spec = v["spec"].as_str().expect("spec").to_string();
            let frame = hex::decode(v["hex"].as_str().expect("hex")).expect("hex");
            (spec, frame)
        })
        .collect()
}

/// Valid golden messages re-encoded with every built-in spec (iso93, EBCDIC and
/// the binary layouts get seeds too).
fn reencoded_frames() -> Vec<Vec<u8>> {
    let ascii = Spec::builtin("iso87ascii").expect("spec");
    let mut out = Vec::new();
    for (name, frame) in golden_frames() {
        if name != "iso87ascii" {
            continue;
        }
        let Ok(msg) = ascii.decode(&frame.into()) else {
            continue;
        };
        for spec_name in Spec::builtin_names() {
            let spec = Spec::builtin(spec_name).expect("spec");
            for mti_version in [b'0', b'1'] {
                let mut m = msg.clone();
                let mut mti = m.mti();
                mti[0] = mti_version;
                m.set_mti(mti);
                let mut buf = BytesMut::new();
                if spec.encode(&m, &mut buf).is_ok() {
                    out.push(buf.to_vec());
                }
            }
        }
    }
    out
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    files_under(&root().join("fuzz/corpus").join(target), &mut files);
    files
        .iter()
        .map(|p| std::fs::read(p).expect("seed"))
        .collect()
}

/// A real JWE request to the fuzz server key, so the decrypting path is reached.
fn real_jwe_seeds() -> Vec<Vec<u8>> {
    use base64::Engine as _;
    use josekit::jwe::{JweHeader, RSA_OAEP_256};
    let key_b64 = targets::server_public_key_header();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&key_b64)
        .expect("base64");
    let encrypter = RSA_OAEP_256.encrypter_from_der(&der).expect("encrypter");
    let mut header = JweHeader::new();
    header.set_content_encryption("A256GCM");
    let compact = josekit::jwe::serialize_compact(
        br#"{"program":"credit","kind":"credit","currency":"EUR"}"#,
        &header,
        &encrypter,
    )
    .expect("encrypt");
    let body = json!({ "payload": compact }).to_string();
    (0u8..3)
        .map(|policy| {
            let mut v = vec![3 + 4 * policy];
            v.extend_from_slice(b"encrypted-request: true\npublic-key: ");
            v.extend_from_slice(key_b64.as_bytes());
            v.push(0);
            v.extend_from_slice(body.as_bytes());
            v
        })
        .collect()
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut seeds = corpus(target);
    match target {
        "iso8583_decode" | "protocol_parse" => {
            seeds.extend(golden_frames().into_iter().map(|(_, f)| f));
            seeds.extend(reencoded_frames());
        }
        "framing" => {
            for (i, frame) in reencoded_frames().into_iter().take(40).enumerate() {
                let header_ascii = i % 2 == 1;
                let mut v = vec![0b110 | u8::from(header_ascii), 2, 3, 0];
                for _ in 0..2 {
                    if header_ascii {
                        v.extend_from_slice(format!("{:04}", frame.len()).as_bytes());
                    } else {
                        v.extend_from_slice(&(frame.len() as u16).to_be_bytes());
                    }
                    v.extend_from_slice(&frame);
                }
                seeds.push(v);
            }
        }
        "http_json" => seeds.extend(real_jwe_seeds()),
        _ => {}
    }
    seeds.sort();
    seeds.dedup();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at`.
    BitFlip { at: usize, bit: u8 },
    /// Set the byte at `at`.
    SetByte { at: usize, value: u8 },
    /// Cut the input to `at` bytes.
    Truncate { at: usize },
    /// Remove `len` bytes at `at`.
    Delete { at: usize, len: usize },
    /// Insert bytes at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Replace the tail from `at` with the tail of another seed from `from`.
    Splice {
        at: usize,
        other: usize,
        from: usize,
    },
    /// Duplicate `len` bytes at `at`.
    Repeat { at: usize, len: usize },
    /// Overwrite `width` bytes at `at` with a decimal length (LL/LLL/LLLL prefixes).
    AsciiLength { at: usize, width: usize, value: u32 },
    /// Overwrite the byte at `at` with a BCD length (binary LL prefixes).
    BcdLength { at: usize, value: u8 },
    /// Overwrite two bytes at `at` with a big-endian length (binary2 headers).
    BinLength { at: usize, value: u16 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::BitFlip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (at, prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at, any::<usize>(), any::<usize>())
            .prop_map(|(at, other, from)| Mutation::Splice { at, other, from }),
        1 => (at, 1usize..32).prop_map(|(at, len)| Mutation::Repeat { at, len }),
        2 => (at, 1usize..=4, prop_oneof![0u32..20, 0u32..10_000, Just(9999), Just(999)])
            .prop_map(|(at, width, value)| Mutation::AsciiLength { at, width, value }),
        1 => (at, any::<u8>()).prop_map(|(at, value)| Mutation::BcdLength { at, value }),
        1 => (at, any::<u16>()).prop_map(|(at, value)| Mutation::BinLength { at, value }),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Mutation], seeds: &[Vec<u8>]) -> Vec<u8> {
    for edit in edits {
        let n = data.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
        match edit {
            Mutation::BitFlip { at, bit } if n > 0 => data[at % n] ^= 1 << bit,
            Mutation::SetByte { at, value } if n > 0 => data[at % n] = *value,
            Mutation::Truncate { at } => data.truncate(pos(*at)),
            Mutation::Delete { at, len } => {
                let start = pos(*at);
                let end = (start + len).min(n);
                data.drain(start..end);
            }
            Mutation::Insert { at, bytes } => {
                let start = pos(*at);
                data.splice(start..start, bytes.iter().copied());
            }
            Mutation::Splice { at, other, from } => {
                let other = &seeds[other % seeds.len()];
                let from = from % (other.len() + 1);
                data.truncate(pos(*at));
                data.extend_from_slice(&other[from..]);
            }
            Mutation::Repeat { at, len } if n > 0 => {
                let start = at % n;
                let end = (start + len).min(n);
                let copy = data[start..end].to_vec();
                data.splice(end..end, copy);
            }
            Mutation::AsciiLength { at, width, value } if n >= *width => {
                let start = at % (n - width + 1);
                let text = format!("{value:0width$}");
                let text = &text.as_bytes()[text.len() - width..];
                data[start..start + width].copy_from_slice(text);
            }
            Mutation::BcdLength { at, value } if n > 0 => {
                data[at % n] = ((value / 10 % 10) << 4) | (value % 10);
            }
            Mutation::BinLength { at, value } if n >= 2 => {
                let start = at % (n - 1);
                data[start..start + 2].copy_from_slice(&value.to_be_bytes());
            }
            _ => {}
        }
    }
    data
}

fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    (0..count, prop::collection::vec(mutation(), 1..6))
        .prop_map(move |(i, edits)| apply(seeds[i].clone(), &edits, &seeds))
}

/// Words the portfolio and HTTP parsers know, so generated JSON gets past
/// `deny_unknown_fields` and into the checks.
const WORDS: &[&str] = &[
    "programs",
    "partner_balances",
    "users",
    "balances",
    "cards",
    "id",
    "bin",
    "currency",
    "funding",
    "partner_balance",
    "digital_first",
    "card_validity_months",
    "program",
    "kind",
    "amount",
    "low_level",
    "kyc",
    "user",
    "balance",
    "type",
    "pan",
    "expiry",
    "pin",
    "state",
    "lock",
    "user_balance",
    "partner_credit",
    "partner_deposit",
    "credit",
    "deposit",
    "verified",
    "pending",
    "rejected",
    "physical",
    "virtual",
    "active",
    "locked",
    "EUR",
    "USD",
    "535522",
    "5355220000000012",
    "2812",
    "1234",
    "email",
    "phone",
    "firstName",
    "lastName",
    "lowLevel",
    "payload",
    "10.00",
    "-1",
    "1e400",
    "0.001",
    "",
    "\u{0}",
    "é",
    "99999999999999999999999",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e30f64..1e30).prop_map(|f| json!(f)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Replaces the node reached by `path` (each step picks a child, modulo) with `new`.
fn replace_at(value: &mut Value, path: &[usize], new: Value) {
    let child = match (value, path.split_first()) {
        (Value::Array(items), Some((step, rest))) if !items.is_empty() => {
            let len = items.len();
            return replace_at(&mut items[step % len], rest, new);
        }
        (Value::Object(map), Some((step, rest))) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().expect("key");
            return replace_at(map.get_mut(&key).expect("value"), rest, new);
        }
        (node, _) => node,
    };
    *child = new;
}

/// JSON documents: the seeds with subtrees replaced, whole generated values,
/// and either of them as text with byte mutations on top.
fn json_text(docs: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    let count = docs.len();
    let edited = (
        0..count,
        prop::collection::vec(
            (prop::collection::vec(any::<usize>(), 0..5), json_value()),
            1..4,
        ),
    )
        .prop_map(move |(i, edits)| {
            let mut doc = docs[i].clone();
            for (path, new) in edits {
                replace_at(&mut doc, &path, new);
            }
            doc
        });
    let doc = prop_oneof![3 => edited, 1 => json_value()];
    (doc, any::<bool>(), prop::collection::vec(mutation(), 0..3)).prop_map(
        |(doc, pretty, edits)| {
            let text = if pretty {
                serde_json::to_vec_pretty(&doc)
            } else {
                serde_json::to_vec(&doc)
            }
            .expect("serialize");
            let seeds = [text.clone()];
            apply(text, &edits, &seeds)
        },
    )
}

fn json_docs(seeds: &[Vec<u8>]) -> Vec<Value> {
    seeds
        .iter()
        .filter_map(|s| {
            // http_json seeds start with a control byte.
            serde_json::from_slice(s)
                .or_else(|_| serde_json::from_slice(s.get(1..).unwrap_or_default()))
                .ok()
        })
        .collect()
}

fn strategy(target: &str) -> BoxedStrategy<Vec<u8>> {
    let seeds = seeds(target);
    let bytes = prop::collection::vec(any::<u8>(), 0..600);
    match target {
        "portfolio" => {
            let docs = json_docs(&seeds);
            prop_oneof![1 => bytes, 2 => mutated(seeds), 5 => json_text(docs)].boxed()
        }
        "http_json" => {
            let docs = json_docs(&seeds);
            let prefixed = (
                any::<u8>().prop_filter("not JWE", |c| c % 4 != 3),
                json_text(docs),
            )
                .prop_map(|(control, body)| {
                    let mut v = vec![control];
                    v.extend(body);
                    v
                });
            prop_oneof![1 => bytes, 3 => mutated(seeds), 3 => prefixed].boxed()
        }
        _ => prop_oneof![1 => bytes, 3 => mutated(seeds)].boxed(),
    }
}

fn cases() -> u32 {
    std::env::var("ANTACA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn fuzz(target: &str, cases: u32) {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy(target), |data| {
        std::panic::catch_unwind(|| targets::run(target, &data))
            .map_err(|_| TestCaseError::fail("panicked"))
    });
    eprintln!(
        "fuzz_bounded {target}: {cases} cases in {:.1?}",
        started.elapsed()
    );
    if let Err(e) = result {
        match e {
            TestError::Fail(why, data) => panic!(
                "{target} failed ({why}) on input (hex): {}\n\
                 save it as fixtures/crashes/{target}-<name>.hex to replay it",
                hex::encode(&data)
            ),
            TestError::Abort(why) => panic!("{target} aborted: {why}"),
        }
    }
}

#[test]
fn fuzz_iso8583_decode() {
    fuzz("iso8583_decode", cases());
}

#[test]
fn fuzz_framing() {
    fuzz("framing", cases());
}

#[test]
fn fuzz_protocol_parse() {
    fuzz("protocol_parse", cases());
}

#[test]
fn fuzz_portfolio() {
    fuzz("portfolio", cases());
}

#[test]
fn fuzz_http_json() {
    fuzz("http_json", cases());
}

/// Every seed goes through its target as is.
#[test]
fn seeds_run_clean() {
    for target in targets::TARGETS {
        for seed in seeds(target) {
            targets::run(target, &seed);
        }
    }
}

/// Replays `fixtures/crashes/<target>-<anything>.hex` (hex text, whitespace
/// ignored) or `.bin` (raw bytes) through `<target>`.
#[test]
fn replay_crashes() {
    let mut files = Vec::new();
    files_under(&root().join("fixtures/crashes"), &mut files);
    let mut replayed = 0;
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "hex" && ext != "bin" {
            continue;
        }
        let target = targets::TARGETS
            .iter()
            .find(|t| name.starts_with(&format!("{t}-")))
            .unwrap_or_else(|| panic!("{name}: name must start with a target name and '-'"));
        let raw = std::fs::read(&path).expect("crash file");
        let data = if ext == "hex" {
            let text: String = String::from_utf8(raw)
                .expect("hex text")
                .split_whitespace()
                .collect();
            hex::decode(text).expect("hex")
        } else {
            raw
        };
        targets::run(target, &data);
        replayed += 1;
    }
    eprintln!("replayed {replayed} crash inputs");
}

/// The long run: `ANTACA_FUZZ_CASES=1000000 cargo test --release --test fuzz_bounded -- --ignored`.
#[test]
#[ignore = "long run; set ANTACA_FUZZ_CASES"]
fn fuzz_long_all_targets() {
    let cases = std::env::var("ANTACA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    for target in targets::TARGETS {
        fuzz(target, cases);
    }
}
