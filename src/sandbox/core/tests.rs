//! The core's rules end to end, without a socket: route, token, validation, limits, faults.

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::json;

use super::*;

const PAGE: &str = "104857600123456";
const PHONE: &str = "106540352242922";

fn config() -> Arc<Config> {
    let overrides = format!(
        r#"
[facebook]
enabled = true
app_id = "1234"
app_secret = "fb-secret"
verify_token = "v"
page_id = "{PAGE}"
page_access_token = "page-token"
rate_per_second = 3
[whatsapp]
enabled = true
app_secret = "wa-secret"
verify_token = "v"
phone_number_id = "{PHONE}"
access_token = "wa-token"
rate_per_second = 2
[viber]
enabled = true
bot_token = "viber-token"
bot_name = "Acme Support"
rate_per_minute = 2
[linkedin]
enabled = true
client_id = "li-client"
client_secret = "li-secret"
access_token = "li-token"
refresh_token = "li-refresh"
organization_id = "2414183"
rate_per_minute = 1
"#
    );
    let config: Config =
        Figment::from(Toml::string(crate::config::DEFAULTS)).merge(Toml::string(&overrides)).extract().unwrap();
    Arc::new(config)
}

fn now(ms: u64) -> Now {
    Now { epoch_ms: 1_718_000_000_000 + ms as i64, mono_ms: ms }
}

fn sandbox() -> Sandbox {
    let behaviour = Behaviour { rate_limits: true };
    Sandbox::new(config(), "http://127.0.0.1:1".into(), behaviour, Arc::default(), now(0))
}

fn post(path: &str, headers: &[(&str, &str)], body: serde_json::Value) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: body.to_string().into_bytes(),
    }
}

fn get(path: &str, query: &str) -> Request {
    Request { method: "GET".into(), path: path.into(), query: query.into(), ..Request::default() }
}

fn messenger_text(token: &str) -> Request {
    post(
        &format!("/v23.0/{PAGE}/messages"),
        &[("authorization", &format!("Bearer {token}")), ("content-type", "application/json")],
        json!({"recipient":{"id":"7212345678901234"},"messaging_type":"RESPONSE","message":{"text":"hi"}}),
    )
}

fn whatsapp_text(token: &str) -> Request {
    post(
        &format!("/v23.0/{PHONE}/messages"),
        &[("authorization", &format!("Bearer {token}"))],
        json!({"messaging_product":"whatsapp","to":"5511987654321","type":"text","text":{"body":"hi"}}),
    )
}

fn viber_text(receiver: &str) -> Request {
    post(
        "/pa/send_message",
        &[("x-viber-auth-token", "viber-token")],
        json!({"receiver":receiver,"sender":{"name":"Acme Support"},"type":"text","text":"hi"}),
    )
}

fn linkedin_comment(token: &str) -> Request {
    post(
        "/rest/socialActions/urn%3Ali%3Aactivity%3A7190000000000000001/comments",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("linkedin-version", "202506"),
            ("x-restli-protocol-version", "2.0.0"),
        ],
        json!({"actor":"urn:li:organization:2414183","object":"urn:li:activity:7190000000000000001","message":{"text":"Yes"}}),
    )
}

#[test]
fn messenger_send_answers_a_unique_mid_and_plans_receipts() {
    let mut sandbox = sandbox();
    let first = sandbox.handle(&messenger_text("page-token"), now(0));
    assert_eq!(first.reply.status, 200);
    let body = first.reply.json_body();
    assert_eq!(body["recipient_id"], "7212345678901234");
    let mid = body["message_id"].as_str().unwrap().to_owned();
    assert!(mid.starts_with("m_"));
    assert_eq!(first.receipts, Some(ReceiptPlan::Messenger { user: "7212345678901234".into(), mid: mid.clone() }));
    let second = sandbox.handle(&messenger_text("page-token"), now(1));
    assert_ne!(second.reply.json_body()["message_id"], mid.as_str());
    let recorded = sandbox.journal.since(0, Some(Platform::Facebook));
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].body["message"]["text"], "hi");
    assert_eq!(recorded[0].headers["content-type"], "application/json");
}

#[test]
fn the_token_may_come_as_a_query_parameter_and_a_wrong_one_is_190() {
    let mut sandbox = sandbox();
    let mut request = messenger_text("x");
    request.headers.remove("authorization");
    request.query = "access_token=page-token".into();
    assert_eq!(sandbox.handle(&request, now(0)).reply.status, 200);
    let wrong = sandbox.handle(&messenger_text("wa-token"), now(1)).reply;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json_body()["error"]["code"], 190);
    assert_eq!(wrong.json_body()["error"]["type"], "OAuthException");
    assert!(wrong.json_body()["error"]["fbtrace_id"].is_string());
}

#[test]
fn an_unknown_graph_object_is_code_100() {
    let mut sandbox = sandbox();
    let mut request = messenger_text("page-token");
    request.path = "/v23.0/999/messages".into();
    let reply = sandbox.handle(&request, now(0)).reply;
    assert_eq!((reply.status, reply.json_body()["error"]["code"].as_u64()), (400, Some(100)));
}

#[test]
fn whatsapp_send_answers_a_wamid_and_mark_read_success() {
    let mut sandbox = sandbox();
    let outcome = sandbox.handle(&whatsapp_text("wa-token"), now(0));
    let body = outcome.reply.json_body();
    assert_eq!(body["messaging_product"], "whatsapp");
    let user_id = crate::sandbox::webhooks::business_scoped_id("5511987654321");
    assert_eq!(body["contacts"][0], json!({"input":"5511987654321","wa_id":"5511987654321","user_id":user_id}));
    let wamid = body["messages"][0]["id"].as_str().unwrap();
    assert!(wamid.starts_with("wamid."));
    assert!(matches!(outcome.receipts, Some(ReceiptPlan::Whatsapp { .. })));
    let read = post(
        &format!("/v23.0/{PHONE}/messages"),
        &[("authorization", "Bearer wa-token")],
        json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.IN"}),
    );
    let outcome = sandbox.handle(&read, now(1));
    assert_eq!(outcome.reply.json_body(), json!({"success": true}));
    assert_eq!(outcome.receipts, None);
}

#[test]
fn whatsapp_sends_to_a_business_scoped_user_id_by_recipient() {
    let mut sandbox = sandbox();
    let send = |body: Value| post(&format!("/v23.0/{PHONE}/messages"), &[("authorization", "Bearer wa-token")], body);
    let outcome = sandbox.handle(
        &send(json!({"messaging_product":"whatsapp","recipient":"US.13491208655302741918","type":"text","text":{"body":"hi"}})),
        now(0),
    );
    assert_eq!(outcome.reply.status, 200);
    assert_eq!(
        outcome.reply.json_body()["contacts"][0],
        json!({"input":"US.13491208655302741918","user_id":"US.13491208655302741918"})
    );
    assert!(matches!(&outcome.receipts, Some(ReceiptPlan::Whatsapp { to, .. }) if to == "US.13491208655302741918"));
    let refused = sandbox.handle(
        &send(json!({"messaging_product":"whatsapp","recipient":"13491208655302741918","type":"text","text":{"body":"hi"}})),
        now(1),
    );
    assert_eq!(refused.reply.status, 400);
}

#[test]
fn graph_rate_limits_slide_per_second_with_the_platform_codes() {
    let mut sandbox = sandbox();
    for t in 0..3 {
        assert_eq!(sandbox.handle(&messenger_text("page-token"), now(t)).reply.status, 200);
    }
    let limited = sandbox.handle(&messenger_text("page-token"), now(500)).reply;
    assert_eq!((limited.status, limited.json_body()["error"]["code"].as_u64()), (429, Some(613)));
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(sandbox.handle(&messenger_text("page-token"), now(1000)).reply.status, 200);
    // WhatsApp has its own window.
    for t in 0..2 {
        assert_eq!(sandbox.handle(&whatsapp_text("wa-token"), now(t)).reply.status, 200);
    }
    let limited = sandbox.handle(&whatsapp_text("wa-token"), now(10)).reply;
    assert_eq!(limited.json_body()["error"]["code"], 130429);
}

#[test]
fn refused_requests_do_not_use_up_the_rate() {
    let mut sandbox = sandbox();
    for t in 0..10 {
        assert_eq!(sandbox.handle(&messenger_text("wrong"), now(t)).reply.status, 401);
    }
    assert_eq!(sandbox.handle(&messenger_text("page-token"), now(20)).reply.status, 200);
}

#[test]
fn no_rate_limits_lifts_them() {
    let mut sandbox =
        Sandbox::new(config(), "http://x".into(), Behaviour { rate_limits: false }, Arc::default(), now(0));
    for t in 0..50 {
        assert_eq!(sandbox.handle(&messenger_text("page-token"), now(t)).reply.status, 200);
    }
}

#[test]
fn viber_statuses_tokens_and_unsubscribed_receivers() {
    let mut sandbox = sandbox();
    let ok = sandbox.handle(&viber_text("u1"), now(0));
    let text = String::from_utf8(ok.reply.body.clone()).unwrap();
    let token: u64 = text.split("\"message_token\":").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!(token > 1 << 53);
    assert_eq!(ok.receipts, Some(ReceiptPlan::Viber { user: "u1".into(), message_token: token }));

    let mut wrong = viber_text("u1");
    wrong.headers.insert("x-viber-auth-token".into(), "nope".into());
    assert_eq!(sandbox.handle(&wrong, now(1)).reply.json_body()["status"], 2);

    let unsubscribe = post("/_sandbox/unsubscribe", &[], json!({"user":"u2"}));
    assert_eq!(sandbox.handle(&unsubscribe, now(2)).reply.status, 200);
    let refused = sandbox.handle(&viber_text("u2"), now(3)).reply;
    assert_eq!((refused.status, refused.json_body()["status"].as_u64()), (200, Some(6)));

    // Two per minute were configured: the second accepted send fills the window.
    assert_eq!(sandbox.handle(&viber_text("u1"), now(4)).reply.json_body()["status"], 0);
    let limited = sandbox.handle(&viber_text("u1"), now(5)).reply;
    assert_eq!(
        limited.json_body(),
        json!({"status":12,"status_message":"Too many requests","chat_hostname":"SN-SANDBOX_"})
    );
}

#[test]
fn viber_set_webhook_and_account_info() {
    let mut sandbox = sandbox();
    let set = post(
        "/pa/set_webhook",
        &[("x-viber-auth-token", "viber-token")],
        json!({"url":"https://example.com/webhooks/viber"}),
    );
    let outcome = sandbox.handle(&set, now(0));
    assert_eq!(outcome.reply.json_body()["status"], 0);
    assert!(matches!(outcome.receipts, Some(ReceiptPlan::ViberWebhookCheck { .. })));
    let info = post("/pa/get_account_info", &[("x-viber-auth-token", "viber-token")], json!({}));
    let body = sandbox.handle(&info, now(1)).reply.json_body();
    assert_eq!(body["name"], "Acme Support");
    assert_eq!(body["webhook"], "https://example.com/webhooks/viber");
    assert!(body["id"].as_str().unwrap().starts_with("pa:"));
}

#[test]
fn linkedin_comment_and_token_refresh() {
    let mut sandbox = sandbox();
    let created = sandbox.handle(&linkedin_comment("li-token"), now(0)).reply;
    assert_eq!(created.status, 201);
    let id = created.header("x-restli-id").unwrap().to_owned();
    assert!(id.starts_with("urn:li:comment:(urn:li:activity:7190000000000000001,"), "{id}");
    assert_eq!(created.json_body()["id"], id.as_str());

    let revoked = sandbox.handle(&linkedin_comment("unknown"), now(1)).reply;
    assert_eq!((revoked.status, revoked.json_body()["serviceErrorCode"].as_u64()), (401, Some(65600)));

    let form = |body: &str| Request {
        method: "POST".into(),
        path: "/oauth/v2/accessToken".into(),
        headers: [("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned())].into(),
        body: body.as_bytes().to_vec(),
        ..Request::default()
    };
    let bad = sandbox
        .handle(
            &form("grant_type=refresh_token&refresh_token=nope&client_id=li-client&client_secret=li-secret"),
            now(2),
        )
        .reply;
    assert_eq!(bad.status, 400);
    let wrong_secret = sandbox
        .handle(&form("grant_type=refresh_token&refresh_token=li-refresh&client_id=li-client&client_secret=x"), now(2))
        .reply;
    assert_eq!(wrong_secret.status, 401);
    let refreshed = sandbox
        .handle(
            &form("grant_type=refresh_token&refresh_token=li-refresh&client_id=li-client&client_secret=li-secret"),
            now(3),
        )
        .reply
        .json_body();
    assert_eq!(refreshed["expires_in"], 5_184_000);
    assert_eq!(refreshed["refresh_token"], "li-refresh");
    let new_token = refreshed["access_token"].as_str().unwrap();
    // One per minute was configured and used: the refreshed token gets past auth to the limit.
    let limited = sandbox.handle(&linkedin_comment(new_token), now(4)).reply;
    assert_eq!(limited.status, 429);
    assert_eq!(sandbox.handle(&linkedin_comment(new_token), now(60_001)).reply.status, 201);

    let mut introspect = form(&format!("client_id=li-client&client_secret=li-secret&token={new_token}"));
    introspect.path = "/oauth/v2/introspectToken".into();
    let body = sandbox.handle(&introspect, now(5)).reply.json_body();
    assert_eq!((body["active"].as_bool(), body["status"].as_str()), (Some(true), Some("active")));
    assert_eq!(body["auth_type"], "3L");
    introspect.body = b"client_id=li-client&client_secret=li-secret&token=gone".to_vec();
    assert_eq!(sandbox.handle(&introspect, now(6)).reply.json_body(), json!({"active":false,"status":"expired"}));
}

#[test]
fn graph_token_exchange_and_debug_token() {
    let mut sandbox = sandbox();
    let exchange = |secret: &str| {
        get(
            "/v23.0/oauth/access_token",
            &format!("grant_type=fb_exchange_token&client_id=1234&client_secret={secret}&fb_exchange_token=short"),
        )
    };
    let refused = sandbox.handle(&exchange("wrong"), now(0)).reply;
    assert_eq!((refused.status, refused.json_body()["error"]["code"].as_u64()), (400, Some(1)));
    let granted = sandbox.handle(&exchange("fb-secret"), now(0)).reply.json_body();
    assert_eq!((granted["token_type"].as_str(), granted["expires_in"].as_u64()), (Some("bearer"), Some(5_183_944)));
    let token = granted["access_token"].as_str().unwrap().to_owned();
    // The new token is accepted by the Send API.
    assert_eq!(sandbox.handle(&messenger_text(&token), now(1)).reply.status, 200);

    let debug = |input: &str| get("/v23.0/debug_token", &format!("input_token={input}&access_token=1234%7Cfb-secret"));
    let page = sandbox.handle(&debug("page-token"), now(2)).reply.json_body();
    assert_eq!(page["data"]["is_valid"], true);
    assert_eq!(page["data"]["expires_at"], 0);
    assert_eq!(page["data"]["type"], "PAGE");
    let exchanged = sandbox.handle(&debug(&token), now(2)).reply.json_body();
    let expires_at = exchanged["data"]["expires_at"].as_i64().unwrap();
    assert_eq!(expires_at, now(0).secs() + 5_183_944);
    let unknown = sandbox.handle(&debug("nope"), now(2)).reply.json_body();
    assert_eq!(unknown["data"]["is_valid"], false);
}

#[test]
fn media_metadata_points_back_into_the_sandbox() {
    let mut sandbox = sandbox();
    let mut request = get("/v23.0/1479537139650973", "");
    request.headers.insert("authorization".into(), "Bearer wa-token".into());
    let body = sandbox.handle(&request, now(0)).reply.json_body();
    let url = body["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:1/whatsapp_business/attachments/?mid=1479537139650973"), "{url}");
    let (path, query) = url.trim_start_matches("http://127.0.0.1:1").split_once('?').unwrap();
    let mut download = get(path, query);
    download.headers.insert("authorization".into(), "Bearer wa-token".into());
    let media = sandbox.handle(&download, now(1)).reply;
    assert_eq!((media.status, media.content_type), (200, "image/jpeg"));
    assert_eq!(media.body.len() as u64, body["file_size"].as_u64().unwrap());
}

#[test]
fn faults_apply_to_the_next_n_sends_then_normal_service_resumes() {
    let mut sandbox = sandbox();
    let fault = |kind: &str, count: u32| {
        post("/_sandbox/faults", &[], json!({"platform":"whatsapp","kind":kind,"count":count,"delay_ms":5}))
    };
    assert_eq!(sandbox.handle(&fault("server_error", 2), now(0)).reply.status, 200);
    for t in 0..2 {
        let reply = sandbox.handle(&whatsapp_text("wa-token"), now(t)).reply;
        assert_eq!((reply.status, reply.json_body()["error"]["code"].as_u64()), (500, Some(2)));
    }
    // Another platform is untouched, and so is WhatsApp afterwards.
    assert_eq!(sandbox.handle(&messenger_text("page-token"), now(3)).reply.status, 200);
    assert_eq!(sandbox.handle(&whatsapp_text("wa-token"), now(1003)).reply.status, 200);

    sandbox.handle(&fault("drop", 1), now(1004));
    assert_eq!(sandbox.handle(&whatsapp_text("wa-token"), now(1005)).delivery, Delivery::Drop);
    sandbox.handle(&fault("slow", 1), now(1006));
    let slow = sandbox.handle(&whatsapp_text("wa-token"), now(1007));
    assert_eq!((slow.delivery, slow.reply.status), (Delivery::AnswerAfter(Duration::from_millis(5)), 200));
    sandbox.handle(&fault("rate_limit", 1), now(3000));
    let limited = sandbox.handle(&whatsapp_text("wa-token"), now(3001)).reply;
    assert_eq!((limited.status, limited.header("retry-after")), (429, Some("1")));
    sandbox.handle(&fault("expired_token", 1), now(3002));
    assert_eq!(sandbox.handle(&whatsapp_text("wa-token"), now(3003)).reply.json_body()["error"]["code"], 190);
    sandbox.handle(&fault("permanent", 1), now(3004));
    assert_eq!(sandbox.handle(&whatsapp_text("wa-token"), now(3005)).reply.json_body()["error"]["code"], 131047);
    assert_eq!(sandbox.handle(&whatsapp_text("wa-token"), now(5000)).reply.status, 200);
}

#[test]
fn control_api_lists_requests_and_resets() {
    let mut sandbox = sandbox();
    sandbox.handle(&messenger_text("page-token"), now(0));
    sandbox.handle(&viber_text("u1"), now(1));
    let listed = sandbox.handle(&get("/_sandbox/requests", "platform=viber&since=0"), now(2)).reply.json_body();
    let requests = listed["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["seq"], 2);
    assert_eq!(requests[0]["path"], "/pa/send_message");
    assert_eq!(requests[0]["headers"]["x-viber-auth-token"], "viber-token");
    let since = sandbox.handle(&get("/_sandbox/requests", "since=1"), now(2)).reply.json_body();
    assert_eq!(since["requests"].as_array().unwrap().len(), 1);
    assert_eq!(sandbox.handle(&get("/_sandbox/requests", "platform=telegram"), now(2)).reply.status, 400);
    let bad_fault = post("/_sandbox/faults", &[], json!({"platform":"viber","kind":"explode"}));
    assert_eq!(sandbox.handle(&bad_fault, now(2)).reply.status, 400);

    let reset = post("/_sandbox/reset", &[], json!({}));
    assert_eq!(sandbox.handle(&reset, now(3)).reply.status, 200);
    let listed = sandbox.handle(&get("/_sandbox/requests", ""), now(4)).reply.json_body();
    assert_eq!(listed["requests"], json!([]));
    assert_eq!(listed["last_seq"], 2);
    let health = sandbox.handle(&get("/_sandbox/health", ""), now(4)).reply.json_body();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["platforms"]["facebook"]["rate_limit"], "3/s");
}

fn profile_lookup(psid: &str, token: Option<&str>) -> Request {
    let mut request = get(&format!("/v23.0/{psid}"), "fields=first_name%2Clast_name");
    if let Some(token) = token {
        request.headers.insert("authorization".into(), format!("Bearer {token}"));
    }
    request
}

#[test]
fn a_profile_lookup_with_the_page_token_answers_the_psids_name_and_is_journaled_as_facebook() {
    let mut sandbox = sandbox();
    let psid = "7212345678901234";
    let outcome = sandbox.handle(&profile_lookup(psid, Some("page-token")), now(0));
    assert_eq!(outcome.platform, Some(Platform::Facebook));
    let (first, last) = super::profile::profile_name(psid);
    assert_eq!(outcome.reply.json_body(), json!({ "first_name": first, "last_name": last, "id": psid }));
    // The token may also come in the query, as Meta documents the call.
    let in_query = get(&format!("/v23.0/{psid}"), "fields=first_name&access_token=page-token");
    assert_eq!(sandbox.handle(&in_query, now(1)).reply.json_body()["first_name"], first);

    let missing = sandbox.handle(&profile_lookup(psid, None), now(2)).reply;
    assert_eq!(missing.json_body()["error"]["code"], 104);
    let wrong = sandbox.handle(&profile_lookup(psid, Some("wa-token")), now(3)).reply;
    assert_eq!((wrong.status, wrong.json_body()["error"]["code"].as_u64()), (401, Some(190)));
    let unknown = sandbox.handle(&profile_lookup("nobody", Some("page-token")), now(4)).reply;
    assert_eq!(unknown.json_body()["error"]["error_subcode"], 33);

    let journal = sandbox.handle(&get("/_sandbox/requests", "platform=facebook"), now(5)).reply.json_body();
    assert_eq!(journal["requests"].as_array().unwrap().len(), 5);
    // WhatsApp media reads (no `fields`) are still WhatsApp's.
    assert_eq!(sandbox.handle(&get("/v23.0/1234567", ""), now(6)).platform, Some(Platform::Whatsapp));
}

#[test]
fn profile_faults_hit_lookups_only_and_send_faults_leave_lookups_alone() {
    let mut sandbox = sandbox();
    let fault = |endpoint: &str, kind: &str| {
        post("/_sandbox/faults", &[], json!({"platform":"facebook","kind":kind,"endpoint":endpoint}))
    };
    assert_eq!(sandbox.handle(&fault("send", "server_error"), now(0)).reply.status, 200);
    let psid = "7212345678901234";
    assert_eq!(sandbox.handle(&profile_lookup(psid, Some("page-token")), now(1)).reply.status, 200);
    assert_eq!(sandbox.handle(&messenger_text("page-token"), now(2)).reply.status, 500);

    assert_eq!(sandbox.handle(&fault("profile", "permanent"), now(3)).reply.status, 200);
    assert_eq!(sandbox.handle(&messenger_text("page-token"), now(1003)).reply.status, 200);
    let refused = sandbox.handle(&profile_lookup(psid, Some("page-token")), now(1004)).reply;
    assert_eq!(refused.json_body()["error"]["error_subcode"], 2_018_218);
    sandbox.handle(&fault("profile", "drop"), now(1005));
    assert_eq!(sandbox.handle(&profile_lookup(psid, Some("page-token")), now(1006)).delivery, Delivery::Drop);
    assert_eq!(sandbox.handle(&profile_lookup(psid, Some("page-token")), now(1007)).reply.status, 200);
    let elsewhere = post("/_sandbox/faults", &[], json!({"platform":"viber","kind":"drop","endpoint":"profile"}));
    assert_eq!(sandbox.handle(&elsewhere, now(1008)).reply.status, 400);
}
