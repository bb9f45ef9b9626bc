//! Golden vectors from an independent implementation (pyiso8583), see
//! `fixtures/golden/README.md`: decode each frame, compare MTI and fields,
//! re-encode byte for byte; every malformed vector must fail at its field.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use antaca::iso8583::{ContentType, Message, Spec};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    spec: String,
    #[serde(default)]
    description: String,
    hex: String,
    #[serde(default)]
    mti: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    error_field: Option<usize>,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn load(path: &Path) -> Vector {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Spec directories under fixtures/golden (one per layout).
fn spec_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", golden_dir().display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn expected_message(spec: &Spec, v: &Vector, path: &Path) -> Message {
    let mti = v.mti.as_deref().unwrap_or_default().as_bytes();
    let mti: [u8; 4] = mti
        .try_into()
        .unwrap_or_else(|_| panic!("{}: bad mti", path.display()));
    let mut m = Message::new(mti);
    for (k, value) in &v.fields {
        let n: usize = k
            .parse()
            .unwrap_or_else(|_| panic!("{}: key {k}", path.display()));
        let fs = spec
            .field(n)
            .unwrap_or_else(|| panic!("{}: spec {} has no field {n}", path.display(), spec.name()));
        let bytes = if fs.content() == ContentType::Binary {
            hex::decode(value).unwrap_or_else(|e| panic!("{}: field {n}: {e}", path.display()))
        } else {
            value.as_bytes().to_vec()
        };
        m.set(n, bytes);
    }
    m
}

#[test]
fn golden_vectors_decode_and_reencode() {
    let mut valid_by_spec: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for dir in spec_dirs() {
        for path in json_files(&dir) {
            let v = load(&path);
            let spec = Spec::builtin(&v.spec)
                .unwrap_or_else(|| panic!("{}: unknown spec {}", path.display(), v.spec));
            let frame = Bytes::from(
                hex::decode(&v.hex).unwrap_or_else(|e| panic!("{}: hex: {e}", path.display())),
            );
            let want = expected_message(&spec, &v, &path);
            match spec.decode(&frame) {
                Err(e) => failures.push(format!("{}: decode failed: {e}", path.display())),
                Ok(got) => {
                    if got != want {
                        // Compare field by field to say which one differs.
                        for n in 2..=128 {
                            if got.get(n) != want.get(n) {
                                failures.push(format!(
                                    "{}: field {n}: got {:?}, want {:?}",
                                    path.display(),
                                    got.get(n).map(hex::encode),
                                    want.get(n).map(hex::encode)
                                ));
                            }
                        }
                        if got.mti() != want.mti() {
                            failures.push(format!("{}: MTI differs", path.display()));
                        }
                    }
                    let mut out = BytesMut::new();
                    match spec.encode(&want, &mut out) {
                        Ok(()) if out[..] == frame[..] => {}
                        Ok(()) => failures.push(format!(
                            "{}: re-encode differs:\n got  {}\n want {}",
                            path.display(),
                            hex::encode(&out),
                            v.hex
                        )),
                        Err(e) => failures.push(format!("{}: encode failed: {e}", path.display())),
                    }
                }
            }
            *valid_by_spec.entry(v.spec.clone()).or_default() += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for required in ["iso87ascii", "iso87binary"] {
        assert!(
            valid_by_spec.get(required).copied().unwrap_or(0) > 0,
            "no golden vectors for {required} under {} (found {valid_by_spec:?})",
            golden_dir().display()
        );
    }
}

#[test]
fn golden_malformed_vectors_fail_at_their_field() {
    let mut count = 0;
    let mut failures = Vec::new();
    for dir in spec_dirs() {
        for path in json_files(&dir.join("malformed")) {
            let v = load(&path);
            let spec = Spec::builtin(&v.spec)
                .unwrap_or_else(|| panic!("{}: unknown spec {}", path.display(), v.spec));
            let frame = Bytes::from(
                hex::decode(&v.hex).unwrap_or_else(|e| panic!("{}: hex: {e}", path.display())),
            );
            match spec.decode(&frame) {
                Ok(m) => failures.push(format!(
                    "{}: decoded but should fail ({}): {m:?}",
                    path.display(),
                    v.description
                )),
                Err(e) if e.field != v.error_field => failures.push(format!(
                    "{}: failed at {:?}, expected {:?}: {e}",
                    path.display(),
                    e.field,
                    v.error_field
                )),
                Err(_) => {}
            }
            count += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count > 0, "no malformed golden vectors");
}
