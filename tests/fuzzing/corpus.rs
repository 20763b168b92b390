//! The bodies the fuzzer starts from: the in-repo fixtures of a platform and, when the folder is
//! there, the real-world webhooks in `../shared/realworld-webhooks/` (read at run time, never
//! copied into the repository).

use std::path::{Path, PathBuf};

use parley::model::Platform;

use crate::support::realworld_dir;

/// A platform's seed bodies, in a fixed order (sorted by path), and a line saying where they
/// came from.
pub fn seeds(platform: Platform) -> (Vec<Vec<u8>>, String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(platform.as_str());
    let mut bodies = read_dir_sorted(&fixtures);
    let in_repo = bodies.len();
    let realworld = realworld_dir().join(platform.as_str());
    let note = if realworld_dir().is_dir() {
        let found = read_dir_sorted(&realworld);
        let n = found.len();
        bodies.extend(found);
        format!("{in_repo} in-repo fixtures and {n} real-world bodies from {}", realworld_dir().display())
    } else {
        format!(
            "{in_repo} in-repo fixtures only: {} is missing (set PARLEY_REALWORLD_WEBHOOKS to use it)",
            realworld_dir().display()
        )
    };
    assert!(!bodies.is_empty(), "no seed bodies for {platform} in {}", fixtures.display());
    (bodies, note)
}

fn read_dir_sorted(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}
