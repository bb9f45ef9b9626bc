//! Content-addressed blobs on disk: KYC documents, written outside the
//! authorization batch so that the writer and the write-ahead log never carry
//! their bytes. A blob's file name is the hex SHA-256 of its bytes, in one
//! owner-only directory (`DATA_DIR/blobs/`, mode 0700, files 0600); each file
//! is written whole with `security::keyfile` (temporary file, fsync, link,
//! directory fsync), so a reader sees all of a blob or none of it.
//!
//! Owns: those files. Must never touch: what a blob is for or who may read it
//! (that is `manage`), HTTP, the engine. A blob nobody references (one of
//! two uploads that raced for a case's last free place) stays on disk until
//! the same bytes are uploaded again; nothing sweeps it yet.

use crate::security::keyfile::{self, Access};
use sha2::Digest;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The folder of blobs under a data directory.
pub const BLOBS_DIR: &str = "blobs";

/// Blobs in one directory.
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Why a blob could not be read.
#[derive(Debug)]
pub enum BlobError {
    /// No file for this digest.
    Missing,
    /// The file's bytes do not hash to its name.
    DigestMismatch,
    /// The name is not a hex SHA-256.
    InvalidDigest,
    /// Reading or writing failed.
    Io(io::Error),
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::Missing => f.write_str("the blob is missing"),
            BlobError::DigestMismatch => f.write_str("the blob does not match its digest"),
            BlobError::InvalidDigest => f.write_str("not a hex SHA-256"),
            BlobError::Io(e) => write!(f, "blob IO: {e}"),
        }
    }
}

impl std::error::Error for BlobError {}

/// The hex SHA-256 of `bytes` (a blob's name).
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether `name` is a lowercase hex SHA-256 (64 characters).
pub fn is_digest(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobStore {
    /// The blobs of the data directory `data_dir` (in `data_dir/blobs`).
    pub fn under(data_dir: &Path) -> BlobStore {
        BlobStore {
            dir: data_dir.join(BLOBS_DIR),
        }
    }

    /// The directory that holds the blobs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob of this digest lives (it may not exist).
    pub fn path_of(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// Stores `bytes` durably and returns their digest. A file of that name
    /// already there is kept if it holds the same bytes and replaced if not
    /// (it was damaged).
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let name = digest(bytes);
        keyfile::create_private_dir(&self.dir).map_err(BlobError::Io)?;
        let path = self.path_of(&name);
        if !keyfile::write_new(&path, bytes, Access::Private).map_err(BlobError::Io)? {
            match self.get(&name) {
                // Another upload of the same bytes may not have synced the
                // directory yet: sync it before the metadata can refer to it.
                Ok(_) => keyfile::sync_dir(&path),
                Err(BlobError::DigestMismatch | BlobError::Missing) => {
                    keyfile::replace(&path, bytes, Access::Private).map_err(BlobError::Io)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(name)
    }

    /// The bytes of the blob `digest`, checked against it.
    pub fn get(&self, digest_hex: &str) -> Result<Vec<u8>, BlobError> {
        if !is_digest(digest_hex) {
            return Err(BlobError::InvalidDigest);
        }
        let bytes = match std::fs::read(self.path_of(digest_hex)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing),
            Err(e) => return Err(BlobError::Io(e)),
        };
        if digest(&bytes) == digest_hex {
            Ok(bytes)
        } else {
            Err(BlobError::DigestMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_is_byte_identical_private_and_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::under(dir.path());
        let name = blobs.put(b"%PDF-1.7 hello").expect("put");
        assert_eq!(name, digest(b"%PDF-1.7 hello"));
        assert_eq!(blobs.put(b"%PDF-1.7 hello").expect("again"), name);
        assert_eq!(blobs.get(&name).expect("get"), b"%PDF-1.7 hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&blobs.path_of(&name)), 0o600);
            assert_eq!(mode(blobs.dir()), 0o700);
        }
        assert_eq!(std::fs::read_dir(blobs.dir()).expect("dir").count(), 1);
    }

    #[test]
    fn a_damaged_or_missing_blob_is_refused_and_a_new_put_repairs_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::under(dir.path());
        let name = blobs.put(b"\x89PNG\r\n\x1a\n data").expect("put");
        std::fs::write(blobs.path_of(&name), b"tampered").expect("tamper");
        assert!(matches!(blobs.get(&name), Err(BlobError::DigestMismatch)));
        blobs.put(b"\x89PNG\r\n\x1a\n data").expect("repair");
        assert!(blobs.get(&name).is_ok());
        assert!(matches!(
            blobs.get(&digest(b"other")),
            Err(BlobError::Missing)
        ));
        assert!(matches!(
            blobs.get("../etc/passwd"),
            Err(BlobError::InvalidDigest)
        ));
    }
}
