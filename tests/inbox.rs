//! The web inbox in a real browser: headless Chromium (through chromedriver) against the real
//! daemon, which sends through the real `parley sandbox` and gets its receipts back. Each test
//! starts its own browser, daemon and sandbox; nextest runs them one at a time
//! (`.config/nextest.toml`, group `browser`).

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::browser::{Browser, target_dir};
use support::sandbox::{Rates, Sandbox, start_loop};
use support::*;

const CUSTOMER: &str = "5511987654321";
/// The issue's bound for a new message to show in the page.
const LIVE: Duration = Duration::from_secs(2);
/// Everything else: generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(30);

/// The daemon and the sandbox, each pointed at the other, on a fixed port (so that a restarted
/// daemon is where the page expects it).
struct Inbox {
    daemon: Daemon,
    sandbox: Sandbox,
    client: reqwest::Client,
}

impl Inbox {
    fn start() -> Inbox {
        let (daemon, sandbox) = start_loop(Rates::default(), &["--delivery-delay-ms", "200", "--read-delay-ms", "600"]);
        Inbox { daemon, sandbox, client: client() }
    }

    async fn fault(&self, platform: &str, kind: &str, count: u32) {
        self.sandbox.fault(&self.client, platform, kind, count).await;
    }

    fn page(&self) -> String {
        self.daemon.url("/")
    }

    /// A WhatsApp customer writes; returns when the webhook was posted (before it was answered).
    async fn customer_writes(&self, wamid: &str, name: &str, text: &str) -> Instant {
        let body = whatsapp_messages(&[(wamid, CUSTOMER, name, text)]);
        let posted = Instant::now();
        let (status, answer) = post_signed(&self.client, &self.daemon, "whatsapp", &body).await;
        assert_eq!(status, 200, "{answer}");
        posted
    }

    /// The only conversation's id.
    async fn conversation_id(&self) -> String {
        let (status, page) = api_get(&self.client, &self.daemon, "/api/conversations").await;
        assert_eq!(status, 200, "{page}");
        page["conversations"][0]["id"].as_str().expect("a conversation").to_owned()
    }

    async fn messages(&self, conversation: &str) -> Vec<Value> {
        let (status, page) =
            api_get(&self.client, &self.daemon, &format!("/api/conversations/{conversation}/messages?limit=200")).await;
        assert_eq!(status, 200, "{page}");
        page["messages"].as_array().cloned().unwrap_or_default()
    }
}

/// Signs in with the API token and waits for the list to be shown.
async fn sign_in(browser: &Browser, inbox: &Inbox) {
    browser.goto(&inbox.page()).await;
    wait_ready(browser, "signin").await;
    browser.type_into("#token", API_TOKEN).await;
    browser.click("#signin-button").await;
    wait_ready(browser, "list").await;
}

async fn wait_ready(browser: &Browser, state: &str) {
    browser
        .wait_for(
            &format!("the page to be ready ({state})"),
            "return document.documentElement.dataset.ready === arguments[0]",
            &[json!(state)],
            PATIENCE,
        )
        .await;
}

/// JS: whether an element matching `arguments[0]` has text containing `arguments[1]`.
const HAS_TEXT: &str = "return [...document.querySelectorAll(arguments[0])].some(e => e.offsetParent !== null && e.textContent.includes(arguments[1]))";

async fn wait_text(browser: &Browser, css: &str, text: &str, within: Duration) -> Instant {
    browser.wait_for(&format!("`{text}` in {css}"), HAS_TEXT, &[json!(css), json!(text)], within).await.1
}

/// Opens the conversation whose list item shows `in_list`, and waits for `in_thread` in it.
async fn open_conversation(browser: &Browser, in_list: &str, in_thread: &str) {
    wait_text(browser, "#conversations li", in_list, PATIENCE).await;
    browser
        .js(
            "[...document.querySelectorAll('#conversations li')].find(li => li.textContent.includes(arguments[0])).click();",
            vec![json!(in_list)],
        )
        .await;
    wait_text(browser, "#messages li", in_thread, PATIENCE).await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_the_right_one_signs_in_and_a_lost_session_asks_again() {
    let inbox = Inbox::start();
    let browser = Browser::start(1280, 800).await;
    browser.goto(&inbox.page()).await;
    wait_ready(&browser, "signin").await;

    browser.type_into("#token", "not-the-token").await;
    browser.click("#signin-button").await;
    wait_text(&browser, "#signin-error", "Wrong token", PATIENCE).await;
    let inbox_shown = browser.js("return !document.getElementById('inbox').hidden", vec![]).await;
    assert_eq!(inbox_shown, json!(false), "a wrong token must not open the inbox");

    browser.type_into("#token", API_TOKEN).await;
    browser.click("#signin-button").await;
    wait_ready(&browser, "list").await;
    assert_eq!(browser.text("#signin-error").await, "");

    // A reload keeps the session (the cookie), without asking again.
    browser.client.refresh().await.unwrap();
    wait_ready(&browser, "list").await;

    // The session disappears (cookie gone): the next call's 401 brings the sign-in back.
    browser.client.delete_all_cookies().await.unwrap();
    browser
        .js(
            "const f = document.getElementById('platform-filter'); f.value = 'viber'; f.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
    wait_ready(&browser, "signin").await;
    wait_text(&browser, "#signin-note", "session has ended", PATIENCE).await;

    // Sign in again, then out.
    browser.type_into("#token", API_TOKEN).await;
    browser.click("#signin-button").await;
    wait_ready(&browser, "list").await;
    browser.click("#signout").await;
    wait_ready(&browser, "signin").await;
    wait_text(&browser, "#signin-note", "signed out", PATIENCE).await;
    browser.client.refresh().await.unwrap();
    wait_ready(&browser, "signin").await;
    browser.quit().await;
}

#[tokio::test]
async fn an_inbound_message_shows_live_and_a_reply_moves_to_read() {
    let inbox = Inbox::start();
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;

    // A new conversation appears in the list without a reload.
    let posted = inbox.customer_writes("wamid.live.1", "Maria Silva", "Where is my order 1182?").await;
    let seen = wait_text(&browser, "#conversations li", "Where is my order 1182?", PATIENCE).await;
    let took = seen - posted;
    eprintln!("a new conversation showed in the list {took:?} after its webhook was posted");
    assert!(took <= LIVE, "the new conversation took {took:?} to show in the list");
    assert!(browser.text("#conversations li").await.contains("Maria Silva"));

    open_conversation(&browser, "Where is my order 1182?", "Where is my order 1182?").await;
    let conversation = inbox.conversation_id().await;

    // A message in the open conversation shows in the thread (and the list) without a reload.
    let posted = inbox.customer_writes("wamid.live.2", "Maria Silva", "It was due yesterday.").await;
    let seen = wait_text(&browser, "#messages li.inbound", "It was due yesterday.", PATIENCE).await;
    let took = seen - posted;
    eprintln!("a new message showed in the open thread {took:?} after its webhook was posted");
    assert!(took <= LIVE, "the message took {took:?} to show in the open thread");
    wait_text(&browser, "#conversations li", "It was due yesterday.", PATIENCE).await;

    // Opened and visible: the conversation is read.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, found) = api_get(&inbox.client, &inbox.daemon, &format!("/api/conversations/{conversation}")).await;
        let unread = found.get("conversation").unwrap_or(&found)["unread"].as_u64();
        if unread == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "the open conversation stayed unread: {found}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The composer shows WhatsApp's limit, in code points.
    // (Set by script: chromedriver types only the Basic Multilingual Plane.)
    browser
        .js(
            "const t = document.getElementById('reply-text'); t.value = 'Olá 👋'; t.dispatchEvent(new Event('input'));",
            vec![],
        )
        .await;
    wait_text(&browser, "#counter", "5 / 4096", PATIENCE).await;

    // A reply: Enter sends; it shows at once as queued, then its ticks move to read.
    browser.type_into("#reply-text", "It ships today, sorry for the wait.\u{E007}").await;
    wait_text(&browser, "#messages li.outbound", "It ships today", Duration::from_secs(5)).await;
    browser
        .wait_for(
            "the reply's ticks to reach read",
            "const li = [...document.querySelectorAll('#messages li.outbound')].find(e => e.textContent.includes('It ships today'));
             return li && li.dataset.status === 'read' && li.querySelector('.ticks[aria-label=Read]') !== null",
            &[],
            PATIENCE,
        )
        .await;
    assert_eq!(browser.js("return document.getElementById('reply-text').value", vec![]).await, json!(""));
    let sent = inbox.messages(&conversation).await;
    let replies: Vec<&Value> = sent.iter().filter(|m| m["direction"] == "outbound").collect();
    assert_eq!(replies.len(), 1, "{sent:?}");
    assert_eq!(replies[0]["text"], "It ships today, sorry for the wait.");
    assert_eq!(browser.js("return document.querySelectorAll('#messages li.outbound').length", vec![]).await, json!(1));
    browser.quit().await;
}

#[tokio::test]
async fn hostile_names_and_texts_render_as_plain_text() {
    let inbox = Inbox::start();
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;
    let name = "<script>alert(1)</script>";
    let text = "<img src=x onerror=alert(1)>";
    inbox.customer_writes("wamid.hostile.1", name, text).await;
    wait_text(&browser, "#conversations li", text, PATIENCE).await;
    open_conversation(&browser, text, text).await;
    let links = "see https://example.com/track?id=1. or javascript:alert(2) or <a href=\"javascript:alert(3)\">x</a>";
    inbox.customer_writes("wamid.hostile.2", name, links).await;
    wait_text(&browser, "#messages", "or javascript:alert(2)", PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(browser.alert().await, None, "a dialog opened: script ran");
    let found = browser
        .js(
            "return {
                images: document.querySelectorAll('img[src=x], img[src=\"x\"]').length,
                scripts: [...document.scripts].map(s => s.src),
                javascriptLinks: document.querySelectorAll('a[href^=\"javascript\" i]').length,
                handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                listName: document.querySelector('#conversations li .name').textContent,
                title: document.getElementById('thread-title').textContent,
                texts: [...document.querySelectorAll('#messages li .text')].map(e => e.textContent),
                link: [...document.querySelectorAll('#messages a')].map(a => [a.href, a.textContent, a.rel, a.target]),
            }",
            vec![],
        )
        .await;
    assert_eq!(found["images"], 0, "{found}");
    assert_eq!(found["javascriptLinks"], 0, "{found}");
    assert_eq!(found["handlers"], 0, "{found}");
    let scripts = found["scripts"].as_array().unwrap();
    assert_eq!(scripts.len(), 1, "only the inbox's own module: {found}");
    assert!(scripts[0].as_str().unwrap().contains("/assets/"), "{found}");
    assert_eq!(found["listName"], name, "{found}");
    assert_eq!(found["title"], name, "{found}");
    assert_eq!(found["texts"], json!([text, links]), "{found}");
    assert_eq!(
        found["link"],
        json!([["https://example.com/track?id=1", "https://example.com/track?id=1", "noopener noreferrer", "_blank"]]),
        "only the http(s) URL is a link, its full stop left out: {found}"
    );
    // Shown literally, as the person wrote it.
    wait_text(&browser, "#messages li.inbound", text, PATIENCE).await;
    wait_text(&browser, "#conversations li .name", name, PATIENCE).await;
    browser.quit().await;
}

#[tokio::test]
async fn after_a_daemon_restart_the_page_reconnects_and_shows_what_came_meanwhile() {
    let mut inbox = Inbox::start();
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;
    inbox.customer_writes("wamid.restart.1", "Jonas", "Before the restart").await;
    wait_text(&browser, "#conversations li", "Before the restart", PATIENCE).await;
    open_conversation(&browser, "Before the restart", "Before the restart").await;

    let status = inbox.daemon.terminate();
    assert!(status.success(), "{status:?}");
    wait_text(&browser, "#connection", "reconnecting", PATIENCE).await;

    // Same store, same port; a message arrives before the page has reconnected.
    inbox.daemon.start_again();
    inbox.customer_writes("wamid.restart.2", "Jonas", "While you were away").await;
    wait_text(&browser, "#messages li.inbound", "While you were away", PATIENCE).await;
    wait_text(&browser, "#conversations li", "While you were away", PATIENCE).await;
    browser
        .wait_for(
            "the connection note to clear",
            "return document.getElementById('connection').dataset.state === 'live'",
            &[],
            PATIENCE,
        )
        .await;
    assert_eq!(browser.text("#connection").await, "");
    // Still signed in, and live again.
    assert_eq!(browser.js("return document.documentElement.dataset.ready", vec![]).await, json!("list"));
    let posted = inbox.customer_writes("wamid.restart.3", "Jonas", "And after it").await;
    let took = wait_text(&browser, "#messages li.inbound", "And after it", PATIENCE).await - posted;
    assert!(took <= LIVE, "after the reconnect a message took {took:?}");
    let shown = browser.js("return document.querySelectorAll('#messages li.inbound').length", vec![]).await;
    assert_eq!(shown, json!(3), "each message once");
    browser.quit().await;
}

/// Serves one page, whatever is asked, on `127.0.0.1:0`; returns the port.
fn serve_page(html: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn a_cross_site_form_post_with_the_session_cookie_is_refused() {
    let inbox = Inbox::start();
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;
    inbox.customer_writes("wamid.csrf.1", "Ana", "Hello").await;
    wait_text(&browser, "#conversations li", "Hello", PATIENCE).await;
    let conversation = inbox.conversation_id().await;

    // Another origin (localhost is not 127.0.0.1) posts a JSON-looking text/plain form to the API
    // with the browser's cookies: the body is `{"text":"forged="}`.
    let action = inbox.daemon.url(&format!("/api/conversations/{conversation}/messages"));
    let html = format!(
        r#"<!doctype html><html><body onload="document.forms[0].submit()">
<form method="post" enctype="text/plain" action="{action}"><input name='{{"text":"forged' value='"}}'></form>
</body></html>"#
    );
    let port = serve_page(html);
    browser.goto(&format!("http://localhost:{port}/")).await;
    browser
        .wait_for(
            "the forged form to be submitted",
            "return location.href.includes('/api/conversations/')",
            &[],
            PATIENCE,
        )
        .await;
    let answer = browser.text("body").await;
    eprintln!("the forged post was answered: {answer}");
    assert!(answer.contains("\"error\""), "the API answered: {answer}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = inbox.messages(&conversation).await;
    assert!(messages.iter().all(|m| m["direction"] == "inbound"), "a forged reply was created: {messages:?}");
    assert_eq!(messages.len(), 1, "{messages:?}");
    browser.quit().await;
}

#[tokio::test]
async fn screenshots_of_the_thread_on_a_desktop_and_a_phone() {
    let inbox = Inbox::start();
    for (psid, mid, text) in [
        ("7212345678900001", "m_shot_1", "Do you have the blue one in size M?"),
        ("7212345678900002", "m_shot_2", "Thanks, got it!"),
    ] {
        let (status, body) =
            post_signed(&inbox.client, &inbox.daemon, "facebook", &messenger_text_from(psid, mid, text)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post_signed(&inbox.client, &inbox.daemon, "viber", &viber_inbound()).await;
    assert_eq!(status, 200, "{body}");
    inbox.customer_writes("wamid.shot.1", "Maria Silva", "Hi! My order 1182 has not arrived yet.").await;
    inbox.customer_writes("wamid.shot.2", "Maria Silva", "Tracking says https://example.com/track/1182.").await;

    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;
    open_conversation(&browser, "Maria Silva", "Tracking says").await;
    browser.type_into("#reply-text", "Sorry about that! It left our warehouse this morning.\u{E007}").await;
    browser
        .wait_for(
            "the reply to be read",
            "return document.querySelector('#messages li.outbound[data-status=read]') !== null",
            &[],
            PATIENCE,
        )
        .await;
    let desktop = target_dir().join("inbox-thread.png");
    browser.screenshot(&desktop).await;
    browser.quit().await;

    // A 360 px wide phone: the list and the thread are two screens, with a back button.
    let phone = Browser::phone(360, 740).await;
    sign_in(&phone, &inbox).await;
    let visible = "return [document.getElementById('list-pane').offsetParent !== null, document.getElementById('thread-pane').offsetParent !== null]";
    assert_eq!(phone.js(visible, vec![]).await, json!([true, false]));
    open_conversation(&phone, "Maria Silva", "Tracking says").await;
    assert_eq!(phone.js(visible, vec![]).await, json!([false, true]));
    let width = phone.js("return [window.innerWidth, document.documentElement.scrollWidth]", vec![]).await;
    assert_eq!(width, json!([360, 360]), "a 360 px wide viewport that does not scroll sideways");
    let path = target_dir().join("inbox-phone.png");
    phone.screenshot(&path).await;
    phone.click("#back").await;
    assert_eq!(phone.js(visible, vec![]).await, json!([true, false]));
    phone.quit().await;
    for shot in [desktop, path] {
        assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "{}", shot.display());
    }
}

#[tokio::test]
async fn the_list_searches_filters_by_platform_and_works_by_keyboard() {
    let inbox = Inbox::start();
    inbox.customer_writes("wamid.keys.1", "Maria Silva", "Order 1182 is late").await;
    let messenger = messenger_text_from("7212345678900009", "m_keys_1", "Is the blue shirt in size M?");
    let (status, body) = post_signed(&inbox.client, &inbox.daemon, "facebook", &messenger).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_signed(&inbox.client, &inbox.daemon, "viber", &viber_inbound()).await;
    assert_eq!(status, 200, "{body}");

    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;
    let count = "return document.querySelectorAll('#conversations li').length";
    browser.wait_for("three conversations", &format!("{count} === 3"), &[], PATIENCE).await;
    let set = |id: &'static str, value: &'static str, event: &'static str| {
        format!("const e = document.getElementById('{id}'); e.{value}; e.dispatchEvent(new Event('{event}'));")
    };

    // Search (the server's `q=`, case-insensitive), then back to everything.
    browser.js(&set("search", "value = 'BLUE SHIRT'", "input"), vec![]).await;
    browser
        .wait_for(
            "only the matching conversation",
            &format!("{count} === 1 && document.querySelector('#conversations li').textContent.includes('blue shirt')"),
            &[],
            PATIENCE,
        )
        .await;
    browser.js(&set("search", "value = ''", "input"), vec![]).await;
    browser.wait_for("all three again", &format!("{count} === 3"), &[], PATIENCE).await;

    // One platform only.
    browser.js(&set("platform-filter", "value = 'viber'", "change"), vec![]).await;
    browser
        .wait_for(
            "only the Viber conversation",
            &format!("{count} === 1 && document.querySelector('#conversations li .mark').getAttribute('aria-label') === 'Viber'"),
            &[],
            PATIENCE,
        )
        .await;
    browser.js(&set("platform-filter", "value = ''", "change"), vec![]).await;
    browser.wait_for("all three again", &format!("{count} === 3"), &[], PATIENCE).await;

    // The keyboard: the list's first item takes focus, the arrow moves, Enter opens and puts the
    // cursor in the composer.
    browser.js("document.querySelector('#conversations li').focus()", vec![]).await;
    let second = browser.js("return document.querySelectorAll('#conversations li')[1].dataset.id", vec![]).await;
    let focused = browser.client.active_element().await.expect("a focused element");
    focused.send_keys("\u{E015}").await.expect("arrow down");
    let now_focused = browser.js("return document.activeElement.dataset.id", vec![]).await;
    assert_eq!(now_focused, second, "the arrow moves to the next conversation");
    browser.client.active_element().await.expect("a focused element").send_keys("\u{E007}").await.expect("enter");
    browser
        .wait_for(
            "the composer to take the focus",
            "return document.activeElement && document.activeElement.id === 'reply-text'",
            &[],
            PATIENCE,
        )
        .await;
    let selected =
        browser.js("return document.querySelector('#conversations li[aria-selected=true]').dataset.id", vec![]).await;
    assert_eq!(selected, second);
    let tab_stops =
        browser.js("return document.querySelectorAll('#conversations li[tabindex=\"0\"]').length", vec![]).await;
    assert_eq!(tab_stops, json!(1), "one item of the list is in the tab order");
    browser.quit().await;
}

#[tokio::test]
async fn a_refused_reply_shows_the_platforms_reason_and_a_rejected_token_raises_the_banner() {
    let inbox = Inbox::start();
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &inbox).await;
    inbox.customer_writes("wamid.refused.1", "Ana", "Can you call me?").await;
    open_conversation(&browser, "Can you call me?", "Can you call me?").await;
    let banner_shown = browser.js("return !document.getElementById('banner').hidden", vec![]).await;
    assert_eq!(banner_shown, json!(false), "every channel is ready: no banner");

    // WhatsApp refuses the reply for good: it is marked failed, with the platform's reason.
    inbox.fault("whatsapp", "permanent", 1).await;
    browser.type_into("#reply-text", "We will call you at 5.\u{E007}").await;
    wait_text(&browser, "#messages li.outbound", "We will call you at 5.", Duration::from_secs(5)).await;
    let failure = browser
        .wait_for(
            "the reply to be marked failed with a reason",
            "const li = [...document.querySelectorAll('#messages li.outbound')].find(e => e.textContent.includes('call you at 5'));
             const note = li && li.dataset.status === 'failed' && li.querySelector('.failure');
             return note ? note.textContent : null",
            &[],
            PATIENCE,
        )
        .await
        .0;
    let conversation = inbox.conversation_id().await;
    let stored = inbox.messages(&conversation).await;
    let reason = stored.iter().find(|m| m["direction"] == "outbound").unwrap()["error"]["message"].clone();
    let reason = reason.as_str().expect("the failed reply has the platform's reason");
    let shown = failure.as_str().unwrap();
    assert!(shown.starts_with("Not delivered") && shown.contains(reason), "shown {shown:?}, stored {reason:?}");

    // The token is rejected (WhatsApp's cannot be refreshed): the channel is not ready, and the
    // page says so without a reload.
    inbox.fault("whatsapp", "expired_token", 5).await;
    browser.type_into("#reply-text", "Are you there?\u{E007}").await;
    wait_text(&browser, "#banner", "WhatsApp is not ready", PATIENCE).await;
    browser.quit().await;
}
