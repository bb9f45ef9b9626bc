//! KYC documents as blobs over real sockets: the bytes go to
//! `DATA_DIR/blobs/<sha256>` (0600) outside the authorization batch, the
//! store's records and its write-ahead log never hold them, a damaged blob is
//! refused on read, documents of an older version (base64 records) still
//! read, and uploads do not hold up authorizations.

mod common;

use antaca::http::sessions::Role;
use common::*;
use std::sync::Mutex;

const PASSWORD: &str = "correct horse battery";

/// `antaca_store_log_bytes_total` is one counter for the whole process: the
/// tests of this file take turns so that one's writes do not count in another's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server with a Manager `mark` and a customer `doc-1` whose manual KYC is in progress.
fn server() -> (TestServer, String) {
    let server = TestServer::start("iso87ascii");
    server.add_admin("mark", PASSWORD, Role::Manager);
    server.customer_in_manual_kyc("doc-1");
    let token = server.admin_token("mark", PASSWORD);
    (server, format!("Bearer {token}"))
}

/// A PDF of `len` bytes that no other test's document shares.
fn pdf(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(b"%PDF-1.7\n");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

fn upload(server: &TestServer, auth: &str, kind: &str, bytes: &[u8]) -> HttpReply {
    http(
        server.running().http_addr,
        "PUT",
        &format!("/admin/kyc/doc-1/documents/{kind}"),
        &[("Authorization", auth), ("Content-Type", "application/pdf")],
        bytes,
    )
}

fn download(server: &TestServer, auth: &str, id: &str) -> HttpReply {
    http(
        server.running().http_addr,
        "GET",
        &format!("/admin/kyc/doc-1/documents/{id}"),
        &[("Authorization", auth)],
        b"",
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every file under `dir` but the documents' `skip` (`DATA_DIR/blobs`; sled's
/// own `sled/blobs` is searched).
fn store_files(dir: &std::path::Path, skip: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path == skip {
                continue;
            }
            store_files(&path, skip, out);
        } else {
            out.push(path);
        }
    }
}

fn log_bytes(server: &TestServer) -> u64 {
    let reply = http(server.running().http_addr, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).to_string();
    text.lines()
        .find(|l| l.starts_with("antaca_store_log_bytes_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or_else(|| panic!("no log-bytes counter in:\n{text}"), |v| v as u64)
}

#[test]
fn a_document_is_a_private_blob_read_back_byte_identical_and_never_in_the_store() {
    let _turn = serial();
    let (server, auth) = server();
    let document = pdf(300 * 1024, 1);
    let uploaded = upload(&server, &auth, "passport", &document);
    assert_eq!(
        uploaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    let meta = uploaded.json();
    assert_eq!(meta["sha256"], sha256_hex(&document));
    assert_eq!(meta["size"], document.len());
    let id = meta["id"].as_str().expect("id").to_string();

    let served = download(&server, &auth, &id);
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/pdf"));
    assert!(served.body == document, "the bytes read back differ");

    let blob = server.dir.path().join("blobs").join(sha256_hex(&document));
    assert_eq!(std::fs::read(&blob).expect("the blob file"), document);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&blob), 0o600);
        assert_eq!(mode(&server.dir.path().join("blobs")), 0o700);
    }
    // No record holds the bytes (the old form was `kycdoc/...`, base64).
    let records: usize =
        server.apply(|state, _, _| state.records_under::<serde_json::Value>("kycdoc/").count());
    assert_eq!(records, 0);
    // Nor does any file of the store: the log, sled, anything but `blobs/`.
    let mut server = server;
    if let Some(running) = server.running.take() {
        running.stop();
    }
    use base64::Engine as _;
    let raw = &document[4096..4096 + 64];
    let encoded = base64::engine::general_purpose::STANDARD.encode(&document[..3 * 1024]);
    let mut files = Vec::new();
    store_files(
        server.dir.path(),
        &server.dir.path().join("blobs"),
        &mut files,
    );
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            !holds(raw) && !holds(encoded.as_bytes()),
            "{} holds the document's bytes",
            file.display()
        );
    }
}

#[test]
fn a_tampered_or_missing_blob_is_refused_on_read() {
    let _turn = serial();
    let (server, auth) = server();
    let document = pdf(10 * 1024, 2);
    let uploaded = upload(&server, &auth, "id_front", &document);
    assert_eq!(uploaded.status, 201);
    let id = uploaded.json()["id"].as_str().expect("id").to_string();
    let blob = server.dir.path().join("blobs").join(sha256_hex(&document));
    let mut tampered = document.clone();
    tampered[100] ^= 0xFF;
    std::fs::write(&blob, &tampered).expect("tamper");
    let served = download(&server, &auth, &id);
    assert_eq!(
        (served.status, served.code()),
        (503, "STORAGE_UNAVAILABLE".to_string())
    );
    assert!(!served.body.windows(64).any(|w| w == &tampered[200..264]));
    std::fs::remove_file(&blob).expect("remove");
    let served = download(&server, &auth, &id);
    assert_eq!(
        (served.status, served.code()),
        (503, "STORAGE_UNAVAILABLE".to_string())
    );
    // Uploading the same bytes again repairs the blob; both ids read.
    assert_eq!(
        upload(&server, &auth, "id_front_again", &document).status,
        201
    );
    let served = download(&server, &auth, &id);
    assert_eq!(served.status, 200);
    assert!(served.body == document);
    // Validation is as before, and a refused upload answers its error.
    let bad = http(
        server.running().http_addr,
        "PUT",
        "/admin/kyc/doc-1/documents/x",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/pdf"),
        ],
        b"not a pdf",
    );
    assert_eq!(
        (bad.status, bad.code()),
        (400, "INVALID_DOCUMENT".to_string())
    );
    let unknown = http(
        server.running().http_addr,
        "PUT",
        "/admin/kyc/nobody/documents/x",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/pdf"),
        ],
        b"not a pdf",
    );
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "CUSTOMER_NOT_FOUND".to_string())
    );
}

#[test]
fn a_document_stored_by_an_older_version_as_a_base64_record_still_reads() {
    let _turn = serial();
    let (server, auth) = server();
    let document = pdf(2048, 3);
    let legacy = document.clone();
    server.apply(move |state, changes, now| {
        use antaca::manage::kyc::{document_key, kyc_key, DocumentMeta, KycCase, StoredDocument};
        use base64::Engine as _;
        let mut case: KycCase = state.record(&kyc_key("doc-1")).expect("case");
        case.documents.push(DocumentMeta {
            id: "doc_legacy".into(),
            kind: "passport".into(),
            content_type: "application/pdf".into(),
            size: legacy.len(),
            sha256: sha256_hex(&legacy),
            uploaded_ms: now,
            uploaded_by: "mark".into(),
        });
        changes.put_record(
            state,
            &document_key("doc-1", "doc_legacy"),
            &StoredDocument {
                content_type: "application/pdf".into(),
                base64: base64::engine::general_purpose::STANDARD.encode(&legacy),
            },
        );
        changes.put_record(state, &kyc_key("doc-1"), &case);
    });
    let served = download(&server, &auth, "doc_legacy");
    assert_eq!(served.status, 200);
    assert!(served.body == document);
    assert_eq!(
        download(&server, &auth, "doc_nothing").code(),
        "DOCUMENT_NOT_FOUND"
    );
}

#[test]
fn a_kyc_document_upload_does_not_delay_authorizations_in_the_same_second() {
    let _turn = serial();
    let (server, auth) = server();
    // The writer never carries document bytes: a 4 MiB upload grows the
    // write-ahead log by its metadata only (the base64 record was 5.6 MB).
    let document = pdf(4 * 1024 * 1024, 4);
    let before = log_bytes(&server);
    let uploaded = upload(&server, &auth, "passport", &document);
    assert_eq!(
        uploaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    let grown = log_bytes(&server) - before;
    eprintln!("write-ahead log bytes for a 4 MiB document: {grown}");
    assert!(grown < 64 * 1024, "the log grew by {grown} bytes");

    // Authorizations while three more large documents upload: all answered, approved.
    let card = pan("ok");
    let mut client = server.client();
    let uploads: Vec<_> = (0..3u64)
        .map(|i| {
            let addr = server.running().http_addr;
            let auth = auth.clone();
            std::thread::spawn(move || {
                http(
                    addr,
                    "PUT",
                    &format!("/admin/kyc/doc-1/documents/page{i}"),
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/pdf"),
                    ],
                    &pdf(4 * 1024 * 1024, 10 + i),
                )
                .status
            })
        })
        .collect();
    let before = log_bytes(&server);
    let started = std::time::Instant::now();
    let mut slowest = std::time::Duration::ZERO;
    for stan in 1..=40 {
        let sent = std::time::Instant::now();
        assert_eq!(code(&client.call(&auth_msg(&card, stan))), "00");
        slowest = slowest.max(sent.elapsed());
    }
    for u in uploads {
        assert_eq!(u.join().expect("upload thread"), 201);
    }
    let grown = log_bytes(&server) - before;
    eprintln!(
        "40 authorizations beside 3 x 4 MiB uploads: {:?} in all, slowest {slowest:?}; log grew {grown} bytes",
        started.elapsed()
    );
    assert!(grown < 3 * 64 * 1024, "the log grew by {grown} bytes");
}

fn auth_msg(card: &str, stan: u32) -> antaca::iso8583::Message {
    auth(card, 100, stan)
}

#[test]
fn a_refused_upload_leaves_no_file_behind() {
    let _turn = serial();
    let (server, auth) = server();
    let blobs = server.dir.path().join("blobs");
    let count = || std::fs::read_dir(&blobs).map_or(0, Iterator::count);
    for i in 0..10 {
        let reply = upload(&server, &auth, "page", &pdf(1024, 100 + i));
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(count(), 10);
    // The case is full: the eleventh is refused before its bytes reach the disk.
    let full = upload(&server, &auth, "page", &pdf(64 * 1024, 200));
    assert_eq!(
        (full.status, full.code()),
        (409, "TOO_MANY_DOCUMENTS".to_string())
    );
    assert_eq!(count(), 10, "a refused upload left a file");
    // An unknown customer with a valid document: 404, and no file either.
    let unknown = http(
        server.running().http_addr,
        "PUT",
        "/admin/kyc/nobody/documents/page",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/pdf"),
        ],
        &pdf(1024, 201),
    );
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "CUSTOMER_NOT_FOUND".to_string())
    );
    assert_eq!(count(), 10, "an upload for nobody left a file");
}
