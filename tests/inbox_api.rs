//! What the web inbox stands on, over HTTP against the real binary: the page and its headers,
//! signing in and out with the session cookie (which survives a restart), what a cookie may not
//! do from another origin, the channels summary, and the filtered conversation list.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use support::*;

/// Signs in; the `name=value` of the session cookie.
async fn sign_in(client: &reqwest::Client, daemon: &Daemon) -> String {
    let response = client.post(daemon.url("/api/session")).json(&json!({ "token": API_TOKEN })).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    let body: Value = response.json().await.unwrap();
    assert!(body["session"]["expires_at"].is_string(), "{body}");
    set.split(';').next().unwrap().to_owned()
}

async fn get_with_cookie(client: &reqwest::Client, daemon: &Daemon, path: &str, cookie: &str) -> (u16, Value) {
    let response = client.get(daemon.url(path)).header(COOKIE, cookie).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_strict_headers() {
    let daemon = Daemon::start();
    let client = client();
    let page = client.get(daemon.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    let script = html.split("src=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a script src");
    assert!(script.starts_with("/assets/"), "{script}");
    let asset = client.get(daemon.url(script)).send().await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert!(asset.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let missing = client.get(daemon.url("/assets/x/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_wrong_token_is_refused_the_right_one_signs_in_and_signing_out_ends_the_session() {
    let daemon = Daemon::start();
    let client = client();
    let wrong = client.post(daemon.url("/api/session")).json(&json!({ "token": "guess" })).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "wrong_token");
    let (status, _) = get_with_cookie(&client, &daemon, "/api/session", "parley_session=v1.1.2.3").await;
    assert_eq!(status, 401, "a made-up cookie");

    let cookie = sign_in(&client, &daemon).await;
    let (status, body) = get_with_cookie(&client, &daemon, "/api/session", &cookie).await;
    assert_eq!((status, body["session"]["via"].as_str()), (200, Some("cookie")));
    let (status, body) = get_with_cookie(&client, &daemon, "/api/conversations", &cookie).await;
    assert_eq!(status, 200, "{body}");
    let feed = client
        .get(daemon.url("/api/events?limit=1"))
        .header(COOKIE, &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), StatusCode::OK, "the live feed takes the cookie too");

    let out = client.delete(daemon.url("/api/session")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let (status, _) = get_with_cookie(&client, &daemon, "/api/conversations", &cookie).await;
    assert_eq!(status, 401, "the signed-out cookie no longer works");
}

#[tokio::test]
async fn wrong_tokens_are_throttled() {
    let daemon = Daemon::start();
    let client = client();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let response = client.post(daemon.url("/api/session")).json(&json!({ "token": "guess" })).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429, 429]);
    let right = client.post(daemon.url("/api/session")).json(&json!({ "token": API_TOKEN })).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS, "no more tries, right or wrong, until the window passes");
    assert!(right.headers().get("retry-after").is_some());
    let (status, _) = api_get(&client, &daemon, "/api/conversations").await;
    assert_eq!(status, 200, "the bearer token is not held back");
}

#[tokio::test]
async fn a_session_survives_a_restart() {
    let mut daemon = Daemon::start();
    let client = client();
    let cookie = sign_in(&client, &daemon).await;
    daemon.terminate();
    let daemon = daemon.restart();
    let (status, body) = get_with_cookie(&client, &daemon, "/api/session", &cookie).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_cookie_may_not_change_anything_from_another_origin_or_with_a_form() {
    let daemon = Daemon::start();
    let client = client();
    post_signed(&client, &daemon, "whatsapp", &whatsapp_messages(&[("wamid.A1", "15551230001", "Ana", "hello")])).await;
    let (_, list) = api_get(&client, &daemon, "/api/conversations").await;
    let id = list["conversations"][0]["id"].as_str().unwrap().to_owned();
    let cookie = sign_in(&client, &daemon).await;
    let path = format!("/api/conversations/{id}/messages");
    let post = |origin: Option<&str>, fetch_site: Option<&str>, content_type: &str| {
        let mut request = client
            .post(daemon.url(&path))
            .header(COOKIE, &cookie)
            .header(CONTENT_TYPE, content_type)
            .body(r#"{"text":"forged"}"#);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        request.send()
    };
    assert_eq!(post(None, None, "text/plain").await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        post(None, None, "application/x-www-form-urlencoded").await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let other = post(Some("http://localhost:1"), None, "application/json").await.unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert_eq!(post(None, Some("same-site"), "application/json").await.unwrap().status(), StatusCode::FORBIDDEN);
    let (_, messages) = api_get(&client, &daemon, &format!("{path}?limit=10")).await;
    assert_eq!(messages["messages"].as_array().unwrap().len(), 1, "nothing was sent: {messages}");

    let own = format!("http://{}", daemon.addr);
    let accepted = post(Some(&own), Some("same-origin"), "application/json").await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED, "the inbox's own page may");
}

#[tokio::test]
async fn channels_name_each_enabled_platform_with_its_text_limit() {
    let daemon = Daemon::start();
    let client = client();
    let (status, body) = api_get(&client, &daemon, "/api/channels").await;
    assert_eq!(status, 200);
    let limits: Vec<(String, u64)> = body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["platform"].as_str().unwrap().to_owned(), c["max_text_chars"].as_u64().unwrap()))
        .collect();
    for (platform, limit) in [("facebook", 2000), ("whatsapp", 4096), ("viber", 7000), ("linkedin", 1250)] {
        assert!(limits.contains(&(platform.to_owned(), limit)), "{platform}: {limits:?}");
    }
    assert_eq!(body["store"]["ready"], true);
}

#[tokio::test]
async fn the_list_filters_by_unread_and_searches_names_and_messages() {
    let daemon = Daemon::start();
    let client = client();
    let body = whatsapp_messages(&[
        ("wamid.S1", "15551230001", "Ana Lima", "where is my parcel?"),
        ("wamid.S2", "15551230002", "Bo", "hello"),
        ("wamid.S3", "15551230003", "Cy", "thanks"),
    ]);
    assert_eq!(post_signed(&client, &daemon, "whatsapp", &body).await.0, 200);
    let later = whatsapp_messages(&[("wamid.S4", "15551230001", "Ana Lima", "ok")]);
    assert_eq!(post_signed(&client, &daemon, "whatsapp", &later).await.0, 200);
    let names = |body: &Value| -> Vec<String> {
        body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["contact_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, found) = api_get(&client, &daemon, "/api/conversations?q=PARCEL").await;
    assert_eq!(names(&found), ["Ana Lima"], "an older message, any case");
    let (_, found) = api_get(&client, &daemon, "/api/conversations?q=bo").await;
    assert_eq!(names(&found), ["Bo"]);
    let (_, list) = api_get(&client, &daemon, "/api/conversations?q=c").await;
    let cy = list["conversations"].as_array().unwrap().iter().find(|c| c["contact_name"] == "Cy").unwrap();
    let read = client
        .post(daemon.url(&format!("/api/conversations/{}/read", cy["id"].as_str().unwrap())))
        .bearer_auth(API_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(read.status().is_success());
    let (_, unread) = api_get(&client, &daemon, "/api/conversations?unread=true").await;
    let mut unread = names(&unread);
    unread.sort();
    assert_eq!(unread, ["Ana Lima", "Bo"]);
    let (status, _) = api_get(&client, &daemon, "/api/conversations?unread=maybe").await;
    assert_eq!(status, 400);
    let (status, _) = api_get(&client, &daemon, &format!("/api/conversations?q={}", "x".repeat(201))).await;
    assert_eq!(status, 400);
}
