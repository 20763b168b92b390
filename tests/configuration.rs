//! Configuration errors stop the daemon with exit code 1 and one line per problem naming the key
//! and where its value came from; runtime failures exit 2.

mod support;

use std::process::{Command, Output};

use support::*;

fn parley(args: &[&str], config: &str, env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_parley"));
    command.args(args).arg("--config").arg(&path);
    for (name, _) in std::env::vars() {
        if name.starts_with("PARLEY_") || name.starts_with("FACEBOOK_") || name.starts_with("WHATSAPP_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    (command.output().unwrap(), dir)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn config_in(dir_hint: &str) -> String {
    base_config(std::path::Path::new(dir_hint))
}

#[test]
fn a_missing_signing_secret_exits_1_naming_the_key() {
    let config = config_in("/nonexistent/store")
        .replace(&format!("app_secret = \"{WHATSAPP_SECRET}\""), "app_secret = \"\"")
        .replace(&format!("app_secret = \"{FACEBOOK_SECRET}\""), "app_secret = \"\"");
    let (output, _dir) = parley(&["serve"], &config, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("facebook.app_secret"), "{err}");
    assert!(err.contains("whatsapp.app_secret"), "{err}");
    assert!(err.contains("FACEBOOK_APP_SECRET"), "the fix names the guide's variable: {err}");
    assert!(!err.contains("Listening"), "{err}");
}

#[test]
fn whatsapp_falls_back_to_the_facebook_app_secret() {
    let config =
        config_in("/nonexistent/store").replace(&format!("app_secret = \"{WHATSAPP_SECRET}\""), "app_secret = \"\"");
    let (output, _dir) = parley(&["check-config"], &config, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_value_of_the_wrong_type_names_the_key_and_the_variable() {
    let (output, _dir) = parley(&["check-config"], &config_in("/x"), &[("PARLEY_SERVER__MAX_BODY_BYTES", "lots")]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("server.max_body_bytes"), "{err}");
    assert!(err.contains("PARLEY_SERVER__MAX_BODY_BYTES"), "{err}");
}

#[test]
fn an_unknown_key_in_the_file_is_an_error() {
    let config = config_in("/x").replace("[server]\n", "[server]\nlisten_port = 80\n");
    let (output, _dir) = parley(&["check-config"], &config, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("listen_port") && err.contains("config.toml"), "{err}");
}

#[test]
fn a_missing_config_file_exits_1() {
    let output = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--config", "/nonexistent/parley.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/nonexistent/parley.toml"));
}

#[test]
fn check_config_redacts_secrets_and_says_where_values_came_from() {
    let (output, _dir) = parley(
        &["check-config"],
        &config_in("/x"),
        &[
            ("WHATSAPP_PHONE_NUMBER_ID", "0123456"),
            ("PARLEY_VIBER__BOT_NAME", "Env Bot"),
            ("VIBER_BOT_TOKEN", "env-viber-token"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    for secret in [FACEBOOK_SECRET, WHATSAPP_SECRET, API_TOKEN, LINKEDIN_SECRET, "env-viber-token"] {
        assert!(!out.contains(secret), "secret printed:\n{out}");
    }
    let line = |key: &str| out.lines().find(|l| l.starts_with(&format!("{key} "))).unwrap_or_default().to_owned();
    // An all-digit id from a guide variable keeps its leading zero.
    assert!(line("whatsapp.phone_number_id").contains("\"0123456\""), "{out}");
    assert!(line("whatsapp.phone_number_id").contains("environment variable `WHATSAPP_PHONE_NUMBER_ID`"), "{out}");
    assert!(line("viber.bot_name").contains("PARLEY_VIBER__BOT_NAME"), "{out}");
    assert!(
        line("viber.bot_token").contains("[redacted]") && line("viber.bot_token").contains("VIBER_BOT_TOKEN"),
        "{out}"
    );
    assert!(line("server.header_read_timeout_secs").contains("built-in default"), "{out}");
    assert!(line("facebook.app_secret").contains("[redacted]"), "{out}");
}

#[test]
fn a_port_in_use_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("store")).replace("127.0.0.1:0", &addr.to_string());
    let (output, _dir) = parley(&["serve"], &config, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("server.listen"), "{}", stderr(&output));
}

#[test]
fn a_store_that_cannot_be_opened_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let config = base_config(&not_a_dir.join("store"));
    let (output, _dir) = parley(&["serve"], &config, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("storage.path"), "{}", stderr(&output));
}

#[test]
fn the_shipped_config_validates() {
    let output = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["check-config", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("development secrets in use"));
}

#[test]
fn development_secrets_are_refused_on_a_public_address() {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let (output, _dir) = parley(&["check-config"], &shipped, &[("PARLEY_SERVER__LISTEN", "0.0.0.0:8000")]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("server.listen") && err.contains("PARLEY_SERVER__LISTEN") && err.contains("dev-only-"),
        "{err}"
    );
}

#[test]
fn blank_guide_variables_do_not_blank_out_the_file() {
    let (output, _dir) = parley(&["check-config"], &config_in("/x"), &[("FACEBOOK_APP_SECRET", "")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
