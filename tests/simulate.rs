//! `parley simulate`, the real binary against the real daemon: a simulated webhook is accepted and
//! stored; bad input is exit 1; a daemon that is down is exit 2.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parley")).arg("simulate").args(args).env_remove("RUST_LOG").output().expect("run")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The daemon's base config listens on port 0, so simulate is pointed at the bound address.
fn webhook_url(daemon: &Daemon, platform: &str) -> String {
    daemon.url(&format!("/webhooks/{platform}"))
}

#[tokio::test]
async fn a_simulated_whatsapp_message_is_accepted_and_visible_through_the_api() {
    let daemon = Daemon::start();
    let config = daemon.config_path.to_str().unwrap().to_owned();
    let url = webhook_url(&daemon, "whatsapp");
    let output = simulate(&["whatsapp", "--text", "hi", "--config", &config, "--url", &url]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).starts_with("200"), "{}", stdout(&output));

    let client = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api_get(&client, &daemon, "/api/conversations?platform=whatsapp").await;
        assert_eq!(status, 200);
        let conversations = body["conversations"].as_array().unwrap();
        if let Some(conversation) = conversations.first() {
            assert_eq!(conversation["contact_id"], "5511987654321");
            assert_eq!(conversation["last_message_text"], "hi");
            break;
        }
        assert!(Instant::now() < deadline, "the simulated message never showed up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages = all_messages(&client, &daemon).await;
    let message: &Value = messages.iter().find(|m| m["text"] == "hi").expect("stored");
    assert!(message["platform_message_id"].as_str().unwrap().starts_with("wamid."));
}

#[tokio::test]
async fn every_platform_and_event_is_accepted_by_the_daemon() {
    let daemon = Daemon::start();
    let config = daemon.config_path.to_str().unwrap().to_owned();
    let cases: &[(&str, &[&str])] = &[
        ("facebook", &["--event", "image"]),
        ("facebook", &["--event", "postback", "--text", "Get Started"]),
        ("facebook", &["--event", "delivery", "--message-id", "m_out_1"]),
        ("facebook", &["--event", "read"]),
        ("whatsapp", &["--event", "status", "--message-id", "wamid.OUT1"]),
        ("viber", &["--text", "Привіт"]),
        ("viber", &["--event", "read", "--message-id", "5741311803571721087"]),
        ("viber", &["--event", "subscribed"]),
        ("linkedin", &["--text", "Do you ship to Portugal?"]),
    ];
    for (platform, extra) in cases {
        let url = webhook_url(&daemon, platform);
        let mut args = vec![*platform, "--config", &config, "--url", &url];
        args.extend_from_slice(extra);
        let output = simulate(&args);
        assert_eq!(output.status.code(), Some(0), "{platform} {extra:?}: {}{}", stdout(&output), stderr(&output));
    }
}

#[test]
fn bad_input_is_exit_1_with_the_argument_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, base_config(&dir.path().join("store"))).unwrap();
    let config = path.to_str().unwrap();

    let unknown = simulate(&["whatsapp", "--event", "hologram", "--config", config]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("--event"), "{}", stderr(&unknown));

    let wrong_platform = simulate(&["whatsapp", "--event", "postback", "--config", config]);
    assert_eq!(wrong_platform.status.code(), Some(1));
    assert!(stderr(&wrong_platform).contains("--event"), "{}", stderr(&wrong_platform));

    let missing_id = simulate(&["viber", "--event", "delivery", "--config", config]);
    assert_eq!(missing_id.status.code(), Some(1));
    assert!(stderr(&missing_id).contains("--message-id"), "{}", stderr(&missing_id));

    let unknown_platform = simulate(&["telegram", "--config", config]);
    assert_eq!(unknown_platform.status.code(), Some(1));

    let off = dir.path().join("off.toml");
    let text = base_config(&dir.path().join("store")).replace("[viber]\nenabled = true", "[viber]\nenabled = false");
    std::fs::write(&off, text).unwrap();
    let disabled = simulate(&["viber", "--config", off.to_str().unwrap()]);
    assert_eq!(disabled.status.code(), Some(1));
    assert!(stderr(&disabled).contains("viber is not enabled"), "{}", stderr(&disabled));
}

#[test]
fn a_daemon_that_is_down_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, base_config(&dir.path().join("store"))).unwrap();
    // A port that was free a moment ago and has nobody listening now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/webhooks/facebook");
    let output = simulate(&["facebook", "--config", path.to_str().unwrap(), "--url", &url]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot reach the daemon"), "{}", stderr(&output));
}

#[tokio::test]
async fn a_daemon_that_refuses_is_printed_and_exit_2() {
    let daemon = Daemon::start();
    // Signed with another secret than the daemon's: 401.
    let other = daemon.dir.join("other.toml");
    let text = std::fs::read_to_string(&daemon.config_path).unwrap().replace(FACEBOOK_SECRET, "some-other-secret");
    std::fs::write(&other, text).unwrap();
    let url = webhook_url(&daemon, "facebook");
    let output = simulate(&["facebook", "--config", other.to_str().unwrap(), "--url", &url]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).starts_with("401"), "{}", stdout(&output));
}
