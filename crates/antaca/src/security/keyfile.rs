//! Key files on disk: written whole or not at all, with owner-only
//! permissions for secrets. Every file is first written to a temporary file
//! in the same directory and fsynced, then linked or renamed into place, and
//! the directory is fsynced, so that a crash or a reader in another process
//! sees the old content or the new, never half of it.
//!
//! Owns: the file-system dance for keys, certificates and their public
//! halves. Must never touch: what the bytes mean (PEM, raw keys), the store,
//! a socket.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read a key file once written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Owner read/write only (mode 0600): private keys, the data key.
    Private,
    /// Readable by all (mode 0644): public keys and certificates.
    Public,
}

impl Access {
    /// The Unix permission bits for a new file.
    fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Public => 0o644,
        }
    }
}

/// Creates `dir` and its parents, the last one owner-only (mode 0700).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // The new directory's own entry is durable only once its parent is synced.
    sync_dir(dir);
    Ok(())
}

/// Writes a complete file at `path` unless one exists already: `Ok(false)`
/// if another writer got there first (its file is left as it is).
pub fn write_new(path: &Path, bytes: &[u8], access: Access) -> io::Result<bool> {
    let tmp = write_temp(path, bytes, access)?;
    // hard_link fails if `path` exists, so a finished key is never replaced and
    // a reader never sees a half-written one.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: create the file in place instead
        // (still never over an existing one, but a crash mid-write can leave
        // it short, and a short key file then fails to load).
        Err(e) if e.kind() == io::ErrorKind::Unsupported => write_in_place(path, bytes, access),
        Err(e) => Err(e),
    }
}

/// `write_new` where hard links are not available: create-new, write, fsync.
fn write_in_place(path: &Path, bytes: &[u8], access: Access) -> io::Result<bool> {
    let mut file = match create_new(path, access) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_dir(path);
    Ok(true)
}

/// Replaces (or creates) `path` atomically: temporary file, then rename.
pub fn replace(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let tmp = write_temp(path, bytes, access)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path);
    Ok(())
}

/// A fresh name beside `path`, so that the rename stays in one file system.
fn temp_path(path: &Path) -> PathBuf {
    let suffix: u64 = rand::random();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{suffix:016x}"));
    path.with_file_name(name)
}

/// Writes and fsyncs a new temporary file beside `path`; removed again on failure.
fn write_temp(path: &Path, bytes: &[u8], access: Access) -> io::Result<PathBuf> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = create_new(&tmp, access)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Opens a file that must not exist yet, with `access`'s permissions.
fn create_new(path: &Path, access: Access) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(access.mode());
    }
    #[cfg(not(unix))]
    let _ = access;
    options.open(path)
}

/// Makes the directory entry of `path` durable (fsyncs its parent). Best effort: some file systems
/// cannot open or sync a directory, and the file itself is already synced.
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn write_new_never_clobbers_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        assert!(write_new(&path, b"first", Access::Private).expect("write"));
        assert!(!write_new(&path, b"second", Access::Private).expect("write"));
        assert_eq!(std::fs::read(&path).expect("read"), b"first");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let names = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(names, 1);
    }

    #[test]
    fn replace_swaps_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pub");
        replace(&path, b"one", Access::Public).expect("replace");
        replace(&path, b"two", Access::Public).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o644);
        let names = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(names, 1);
    }

    #[test]
    fn private_dir_is_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a").join("b");
        create_private_dir(&sub).expect("mkdir");
        #[cfg(unix)]
        assert_eq!(mode(&sub), 0o700);
    }
}
