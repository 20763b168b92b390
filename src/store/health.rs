//! When the store cannot be written: what kind of failure it is (for `/ready` and the metrics), a
//! plain sentence for the operator, and the probe that tells when writing works again.
//!
//! Why a probe and not just another write: after one failed log write, sled 0.34 refuses every
//! later write and flush of that `Db` with the same error, also once the disk has space again (its
//! `global_error` is cleared only by opening the database anew; ARCHITECTURE.md, "A store that
//! cannot be written"). So the store is reopened, and only once a plain file write in its directory
//! succeeds.

use std::io::{self, Write as _};
use std::path::Path;

/// Bytes the probe writes: enough that sled can reopen (it writes a snapshot of its page table)
/// and take writes, not merely that one more page fits.
pub const PROBE_BYTES: usize = 4 << 20;

/// The probe's file, inside the store's directory (sled ignores names it does not know).
const PROBE_FILE: &str = "parley-write-probe";

/// What kind of write failure the store has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteProblem {
    /// No space (or quota) left on the store's filesystem.
    Full,
    /// Anything else that refuses writes: a read-only filesystem, permissions, an I/O error.
    NotWritable,
}

impl WriteProblem {
    /// Every kind, in the order metrics list them.
    pub const ALL: [WriteProblem; 2] = [WriteProblem::Full, WriteProblem::NotWritable];

    /// The name `/ready` and the metrics use.
    pub fn label(self) -> &'static str {
        match self {
            WriteProblem::Full => "full",
            WriteProblem::NotWritable => "not_writable",
        }
    }

    /// Position in [`WriteProblem::ALL`].
    pub fn index(self) -> usize {
        match self {
            WriteProblem::Full => 0,
            WriteProblem::NotWritable => 1,
        }
    }
}

/// A failed write, classified, with one sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    pub problem: WriteProblem,
    pub reason: String,
}

impl WriteFailure {
    /// Classifies an I/O error of a write.
    pub fn from_io(kind: io::ErrorKind) -> WriteFailure {
        use io::ErrorKind as K;
        let (problem, reason) = match kind {
            K::StorageFull | K::QuotaExceeded => (WriteProblem::Full, "the disk holding the store is full".to_owned()),
            K::FileTooLarge => (WriteProblem::Full, "the store's file has reached the largest size allowed".to_owned()),
            K::ReadOnlyFilesystem => {
                (WriteProblem::NotWritable, "the filesystem holding the store is read-only".to_owned())
            }
            K::PermissionDenied => {
                (WriteProblem::NotWritable, "the store's directory does not allow writing".to_owned())
            }
            other => (WriteProblem::NotWritable, format!("writing the store failed: {other}")),
        };
        WriteFailure { problem, reason }
    }

    /// Classifies a sled error of a write or flush. Errors that are not I/O (sled reporting a bug
    /// of its own, say) refuse writes just the same until the store is reopened.
    pub fn from_sled(error: &sled::Error) -> WriteFailure {
        match error {
            sled::Error::Io(io) => WriteFailure::from_io(io.kind()),
            other => WriteFailure { problem: WriteProblem::NotWritable, reason: format!("the store failed: {other}") },
        }
    }
}

/// Writes and removes a file of [`PROBE_BYTES`] in the store's directory `dir`, made durable
/// (`fsync`) in between: `Ok` means the filesystem takes writes again. Blocking.
pub fn probe_write(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    })();
    // Remove it whatever happened: a half-written probe must not keep the disk full.
    let removed = std::fs::remove_file(&path);
    written?;
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_and_quota_are_a_full_disk() {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded, io::ErrorKind::FileTooLarge] {
            assert_eq!(WriteFailure::from_io(kind).problem, WriteProblem::Full, "{kind:?}");
        }
    }

    #[test]
    fn a_read_only_or_failing_disk_is_not_writable() {
        for kind in [io::ErrorKind::ReadOnlyFilesystem, io::ErrorKind::PermissionDenied, io::ErrorKind::Other] {
            assert_eq!(WriteFailure::from_io(kind).problem, WriteProblem::NotWritable, "{kind:?}");
        }
    }

    #[test]
    fn sled_keeps_the_kind_of_the_os_error() {
        // sled clones an I/O error into a custom one of the same kind (its `Error: Clone`).
        let os = io::Error::from_raw_os_error(28);
        let cloned = sled::Error::Io(io::Error::new(os.kind(), format!("{os:?}")));
        let failure = WriteFailure::from_sled(&cloned);
        assert_eq!(failure.problem, WriteProblem::Full);
        assert_eq!(failure.reason, "the disk holding the store is full", "one plain sentence, no debug text");
    }

    #[test]
    fn a_sled_error_that_is_not_io_still_refuses_writes() {
        let failure = WriteFailure::from_sled(&sled::Error::ReportableBug("lost a page".into()));
        assert_eq!(failure.problem, WriteProblem::NotWritable);
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        probe_write(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_probe_fails_where_nothing_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_write(&dir.path().join("no such directory")).is_err());
    }
}
