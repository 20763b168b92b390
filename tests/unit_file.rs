//! The shipped unit file, checked by systemd's own tools: its exposure score stays at or below
//! 2.0 and `systemd-analyze verify` finds nothing wrong with it. Needs `systemd-analyze` (the
//! `systemd` package); a machine without it fails here with a message that says so.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The highest `systemd-analyze security` exposure the unit may have (issue 7).
const MAX_EXPOSURE: f64 = 2.0;

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/parley.service")
}

fn systemd_analyze(args: &[&str]) -> Output {
    match Command::new("systemd-analyze").args(args).arg(unit_path()).env("SYSTEMD_COLORS", "0").output() {
        Ok(output) => output,
        Err(e) => panic!(
            "systemd-analyze cannot be run ({e}): install the `systemd` package (apt-get install systemd) \
             to check systemd/parley.service"
        ),
    }
}

/// The number in `→ Overall exposure level for parley.service: 1.5 OK 🙂`.
fn exposure(report: &str) -> Option<f64> {
    let line = report.lines().find(|l| l.contains("Overall exposure level for parley.service"))?;
    line.rsplit_once(": ")?.1.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_unit_file_exposure_stays_at_or_below_two() {
    let output = systemd_analyze(&["security", "--offline=true", "--no-pager"]);
    let report = String::from_utf8_lossy(&output.stdout);
    let score = exposure(&report).unwrap_or_else(|| {
        panic!("no exposure level in the report:\n{report}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    assert!(score <= MAX_EXPOSURE, "exposure {score} is above {MAX_EXPOSURE}:\n{report}");
}

#[test]
fn systemd_analyze_verify_finds_nothing_but_the_binary_not_installed_here() {
    let output = systemd_analyze(&["verify"]);
    let complaints = String::from_utf8_lossy(&output.stderr);
    // The one thing a build machine cannot satisfy: the daemon is not installed at its path.
    let real: Vec<&str> = complaints
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("Command /usr/local/bin/parley is not executable"))
        .collect();
    assert!(real.is_empty(), "systemd-analyze verify complains about the unit:\n{}", real.join("\n"));
}

#[test]
fn the_exposure_line_is_read_as_a_number() {
    assert_eq!(exposure("\n→ Overall exposure level for parley.service: 1.5 OK 🙂\n"), Some(1.5));
    assert_eq!(exposure("→ Overall exposure level for parley.service: 9.6 UNSAFE 😨"), Some(9.6));
    assert_eq!(exposure("nothing here"), None);
}
