//! A real, small filesystem for the store, that a test can fill to the last byte and free again:
//! a tmpfs mounted inside a temporary directory. Mounting needs root (or CAP_SYS_ADMIN); without
//! it the test fails and says so, rather than passing without having tested anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop (also when the test fails). Declare it before the daemon
/// that uses it, so that the daemon is dropped (killed) first.
pub struct Tmpfs {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `megabytes` MiB; panics with what the test needs if that is refused.
    pub fn mount(megabytes: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount_point = dir.path().join("disk");
        std::fs::create_dir(&mount_point).expect("create the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0755"), "tmpfs"])
            .arg(&mount_point)
            .output();
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "this test needs to mount a small tmpfs to fill the store's disk (run it as root or with \
                 CAP_SYS_ADMIN); `mount -t tmpfs` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!(
                "this test needs the `mount` command to mount a small tmpfs for the store (run it as root); \
                 it could not be run: {e}"
            ),
        }
        Tmpfs { mount_point, _dir: dir }
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Fills the filesystem to the last byte with a file (growing it if it exists: call it again
    /// to take back what was freed meanwhile).
    pub fn fill(&self) {
        let path = self.mount_point.join("filler");
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open the filler");
        // Big chunks first, then single pages, until the filesystem refuses.
        for chunk in [1 << 20, 4096] {
            let bytes = vec![0xa5u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        let _ = file.sync_all();
    }

    /// Frees what `fill` took.
    pub fn free(&self) {
        std::fs::remove_file(self.mount_point.join("filler")).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.mount_point).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has a file open there (a daemon that outlived the test): detach it
            // now, the kernel frees it when the last file closes.
            let _ = Command::new("umount").arg("-l").arg(&self.mount_point).status();
        }
    }
}
