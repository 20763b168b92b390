//! The sandbox's state machine: route a request, record it, apply a pending fault, check the
//! credential, validate the body, apply the rate limit, answer, and say which receipts should
//! follow. Pure apart from random ids: no I/O and no clock (time is passed in), so the HTTP shell
//! stays thin and every rule is testable without a socket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::faults::{FaultEndpoint, FaultKind, FaultQueue};
use super::graph::{self, GraphError, MessengerSend, WhatsappSend};
use super::ids::Ids;
use super::journal::{self, Journal, RecordedRequest};
use super::limiter::SlidingWindow;
use super::linkedin;
use super::profile;
use super::receipts::ReceiptStats;
use super::reply::{self, Reply};
use super::tokens::{self, Issued, TokenKind, Tokens};
use super::viber;
use crate::config::Config;
use crate::model::Platform;
use crate::platform::query_param;

/// A request as the shell read it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// Still percent-encoded, as on the wire.
    pub path: String,
    /// Without `?`; `""` when there is none.
    pub query: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// The time, as the core needs it.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Wall clock, for what the sandbox tells (timestamps, expiries).
    pub epoch_ms: i64,
    /// Monotonic, for the rate limits.
    pub mono_ms: u64,
}

impl Now {
    fn secs(self) -> i64 {
        self.epoch_ms.div_euclid(1000)
    }
}

/// How the shell should deliver the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Answer,
    /// The `slow` fault.
    AnswerAfter(Duration),
    /// The `drop` fault: close the connection without an answer.
    Drop,
}

/// Webhooks the sandbox owes the daemon after a successful request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptPlan {
    /// Messenger `delivery` then `read`.
    Messenger { user: String, mid: String },
    /// WhatsApp statuses `sent`, `delivered`, `read`.
    Whatsapp { to: String, wamid: String },
    /// Viber `delivered` then `seen`.
    Viber { user: String, message_token: u64 },
    /// Viber's check callback after `set_webhook`.
    ViberWebhookCheck { message_token: u64 },
}

/// What the core decided.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub reply: Reply,
    pub delivery: Delivery,
    pub receipts: Option<ReceiptPlan>,
    /// The platform the request was for (`None` for the control API and unknown routes).
    pub platform: Option<Platform>,
    /// The fault applied, if any (for the log).
    pub fault: Option<FaultKind>,
}

impl Outcome {
    fn reply(reply: Reply) -> Outcome {
        Outcome { reply, delivery: Delivery::Answer, receipts: None, platform: None, fault: None }
    }
}

/// Behaviour chosen on the command line.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// Enforce the configured rates (`--no-rate-limits` turns this off).
    pub rate_limits: bool,
}

/// The routes of the four stand-ins.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// `POST /{v}/{id}/messages`.
    GraphSend { object: String },
    /// `GET /{v}/oauth/access_token`.
    GraphExchange,
    /// `GET /{v}/debug_token`.
    GraphDebugToken,
    /// `GET /{v}/{id}`: the Page, the phone number, or a media id.
    GraphObject { id: String },
    /// `GET /{v}/{psid}?fields=first_name,…`: Messenger's user profile.
    GraphProfile { psid: String },
    /// `GET /whatsapp_business/attachments/?mid=`: where media URLs point.
    MediaDownload,
    /// `POST /pa/send_message`.
    ViberSend,
    /// `POST /pa/set_webhook`.
    ViberSetWebhook,
    /// `POST /pa/get_account_info`.
    ViberAccountInfo,
    /// `POST /rest/socialActions/{urn}/comments`.
    LinkedinComment { urn: String },
    /// `POST /oauth/v2/accessToken`.
    LinkedinRefresh,
    /// `POST /oauth/v2/introspectToken`.
    LinkedinIntrospect,
}

impl Route {
    fn of(method: &str, segments: &[&str]) -> Option<Route> {
        let route = match (method, segments) {
            ("POST", [v, id, "messages"]) if graph::is_version(v) => Route::GraphSend { object: decode(id) },
            ("GET", [v, "oauth", "access_token"]) if graph::is_version(v) => Route::GraphExchange,
            ("GET", [v, "debug_token"]) if graph::is_version(v) => Route::GraphDebugToken,
            ("GET", [v, id]) if graph::is_version(v) => Route::GraphObject { id: decode(id) },
            ("GET", ["whatsapp_business", "attachments"]) => Route::MediaDownload,
            ("POST", ["pa", "send_message"]) => Route::ViberSend,
            ("POST", ["pa", "set_webhook"]) => Route::ViberSetWebhook,
            ("POST", ["pa", "get_account_info"]) => Route::ViberAccountInfo,
            ("POST", ["rest", "socialActions", urn, "comments"]) => Route::LinkedinComment { urn: decode(urn) },
            ("POST", ["oauth", "v2", "accessToken"]) => Route::LinkedinRefresh,
            ("POST", ["oauth", "v2", "introspectToken"]) => Route::LinkedinIntrospect,
            _ => return None,
        };
        Some(route)
    }
}

fn decode(segment: &str) -> String {
    query_param(&format!("x={segment}"), "x").unwrap_or_default()
}

/// The stand-ins' state.
pub struct Sandbox {
    pub(super) config: Arc<Config>,
    /// `http://addr` of the sandbox itself, for media URLs.
    self_url: String,
    /// `None` with `--no-rate-limits`.
    limits: Option<HashMap<Platform, SlidingWindow>>,
    pub(super) faults: FaultQueue,
    pub(super) journal: Journal,
    tokens: Tokens,
    /// Viber users marked unsubscribed through the control API.
    pub(super) unsubscribed: HashSet<String>,
    ids: Ids,
    /// When the sandbox started (Unix seconds): the configured tokens' notional issue time.
    started_at: i64,
    viber_webhook: String,
    pub(super) receipt_stats: Arc<ReceiptStats>,
}

impl Sandbox {
    /// A sandbox for `config`, reachable at `self_url`.
    pub fn new(
        config: Arc<Config>,
        self_url: String,
        behaviour: Behaviour,
        receipt_stats: Arc<ReceiptStats>,
        now: Now,
    ) -> Self {
        let limits = behaviour.rate_limits.then(|| {
            HashMap::from([
                (Platform::Facebook, SlidingWindow::per_second(config.facebook.rate_per_second)),
                (Platform::Whatsapp, SlidingWindow::per_second(config.whatsapp.rate_per_second)),
                (Platform::Viber, SlidingWindow::per_minute(config.viber.rate_per_minute)),
                (Platform::Linkedin, SlidingWindow::per_minute(config.linkedin.rate_per_minute)),
            ])
        });
        Sandbox {
            config,
            self_url,
            limits,
            faults: FaultQueue::default(),
            journal: Journal::default(),
            tokens: Tokens::default(),
            unsubscribed: HashSet::new(),
            ids: Ids::new(),
            started_at: now.secs(),
            viber_webhook: String::new(),
            receipt_stats,
        }
    }

    /// Answers one request.
    pub fn handle(&mut self, request: &Request, now: Now) -> Outcome {
        let path = request.path.clone();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segments.first() == Some(&"_sandbox") {
            return Outcome::reply(self.control(&request.method, &segments[1..], request));
        }
        let Some(route) = Route::of(&request.method, &segments) else {
            return Outcome::reply(reply::control_error(
                404,
                &format!("the sandbox has no route {} {path}", request.method),
            ));
        };
        let route = self.profile_route(route, request);
        let (platform, is_send) = self.platform_of(&route);
        self.record(platform, request, now);

        let mut outcome = Outcome { platform: Some(platform), ..Outcome::reply(Reply::raw_json(200, "{}".into())) };
        let endpoint = match route {
            Route::GraphProfile { .. } => Some(FaultEndpoint::Profile),
            _ => is_send.then_some(FaultEndpoint::Send),
        };
        if let Some(endpoint) = endpoint
            && let Some(fault) = self.faults.take(platform, endpoint)
        {
            outcome.fault = Some(fault.kind);
            match fault.kind {
                FaultKind::Slow => outcome.delivery = Delivery::AnswerAfter(fault.delay),
                FaultKind::Drop => {
                    outcome.delivery = Delivery::Drop;
                    return outcome;
                }
                kind if endpoint == FaultEndpoint::Profile => {
                    outcome.reply = profile::fault(kind).into_reply(&self.ids.fbtrace());
                    return outcome;
                }
                kind => {
                    outcome.reply = self.fault_reply(platform, kind);
                    return outcome;
                }
            }
        }
        let (reply, receipts) = match route {
            Route::GraphSend { object } => self.graph_send(platform, &object, request, now),
            Route::GraphExchange => (self.graph_exchange(request, now), None),
            Route::GraphDebugToken => (self.graph_debug_token(request, now), None),
            Route::GraphObject { id } => (self.graph_object(&id, request, now), None),
            Route::GraphProfile { psid } => (self.graph_profile(&psid, request, now), None),
            Route::MediaDownload => (self.media_download(request, now), None),
            Route::ViberSend => self.viber_send(request, now),
            Route::ViberSetWebhook => self.viber_set_webhook(request),
            Route::ViberAccountInfo => (self.viber_account_info(request), None),
            Route::LinkedinComment { urn } => (self.linkedin_comment(&urn, request, now), None),
            Route::LinkedinRefresh => (self.linkedin_refresh(request, now), None),
            Route::LinkedinIntrospect => (self.linkedin_introspect(request, now), None),
        };
        outcome.reply = reply;
        outcome.receipts = receipts;
        outcome
    }

    /// The platform a route belongs to, and whether it is a send (faults and limits apply to sends).
    fn platform_of(&self, route: &Route) -> (Platform, bool) {
        match route {
            Route::GraphSend { object } if *object == self.config.whatsapp.phone_number_id => {
                (Platform::Whatsapp, true)
            }
            Route::GraphSend { object } => (Platform::Facebook, *object == self.config.facebook.page_id),
            Route::GraphObject { id } if *id == self.config.facebook.page_id => (Platform::Facebook, false),
            Route::GraphProfile { .. } => (Platform::Facebook, false),
            Route::GraphExchange | Route::GraphDebugToken => (Platform::Facebook, false),
            Route::GraphObject { .. } | Route::MediaDownload => (Platform::Whatsapp, false),
            Route::ViberSend => (Platform::Viber, true),
            Route::ViberSetWebhook | Route::ViberAccountInfo => (Platform::Viber, false),
            Route::LinkedinComment { .. } => (Platform::Linkedin, true),
            Route::LinkedinRefresh | Route::LinkedinIntrospect => (Platform::Linkedin, false),
        }
    }

    /// A `GET /{v}/{id}` that asks for User fields of an id that is neither the Page nor the
    /// phone number is a profile lookup; anything else stays as it was routed.
    fn profile_route(&self, route: Route, request: &Request) -> Route {
        match route {
            Route::GraphObject { id }
                if id != self.config.facebook.page_id
                    && id != self.config.whatsapp.phone_number_id
                    && profile::asks_for_profile(query_param(&request.query, "fields").as_deref()) =>
            {
                Route::GraphProfile { psid: id }
            }
            route => route,
        }
    }

    fn record(&mut self, platform: Platform, request: &Request, now: Now) {
        let body = journal::body_value(request.headers.get("content-type").map(String::as_str), &request.body);
        self.journal.record(RecordedRequest {
            seq: 0,
            platform,
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body,
            at_ms: now.epoch_ms,
        });
    }

    fn fault_reply(&mut self, platform: Platform, kind: FaultKind) -> Reply {
        match platform {
            Platform::Facebook | Platform::Whatsapp => {
                let reply = graph::fault(platform, kind).into_reply(&self.ids.fbtrace());
                if kind == FaultKind::RateLimit { reply.with_header("retry-after", "1") } else { reply }
            }
            Platform::Viber => viber::fault(kind),
            Platform::Linkedin => linkedin::fault(kind),
        }
    }

    /// Counts an accepted send against the platform's window, or says how long until there is room.
    fn acquire(&mut self, platform: Platform, now: Now) -> Result<(), u64> {
        match self.limits.as_mut().and_then(|limits| limits.get_mut(&platform)) {
            Some(window) => window.try_acquire(now.mono_ms),
            None => Ok(()),
        }
    }

    // ----- Graph (Messenger and WhatsApp) -----

    /// True when `token` may call `platform`'s objects: the configured token, or one the sandbox issued.
    fn graph_token_ok(&self, platform: Platform, token: &str, now: Now) -> bool {
        let configured = match platform {
            Platform::Facebook => &self.config.facebook.page_access_token,
            Platform::Whatsapp => &self.config.whatsapp.access_token,
            _ => return false,
        };
        configured.matches(token) || self.tokens.valid(token, TokenKind::GraphUser, now.secs()).is_some()
    }

    /// Checks the Graph credential for `platform`; the error reply when it does not pass.
    fn graph_auth(&mut self, platform: Platform, request: &Request, now: Now) -> Result<(), Reply> {
        match graph_token(request) {
            None => Err(graph::missing_token().into_reply(&self.ids.fbtrace())),
            Some(token) if self.graph_token_ok(platform, &token, now) => Ok(()),
            Some(_) => Err(graph::invalid_token().into_reply(&self.ids.fbtrace())),
        }
    }

    fn graph_error(&mut self, error: GraphError) -> Reply {
        error.into_reply(&self.ids.fbtrace())
    }

    fn graph_send(
        &mut self,
        platform: Platform,
        object: &str,
        request: &Request,
        now: Now,
    ) -> (Reply, Option<ReceiptPlan>) {
        let known_object = object == self.config.facebook.page_id || object == self.config.whatsapp.phone_number_id;
        if !known_object || object.is_empty() {
            // Graph checks the token before it looks the object up.
            let token = graph_token(request);
            let any_valid = token.as_deref().is_some_and(|t| {
                self.graph_token_ok(Platform::Facebook, t, now) || self.graph_token_ok(Platform::Whatsapp, t, now)
            });
            let error = match token {
                None => graph::missing_token(),
                Some(_) if !any_valid => graph::invalid_token(),
                Some(_) => graph::unknown_object(object),
            };
            return (self.graph_error(error), None);
        }
        if let Err(reply) = self.graph_auth(platform, request, now) {
            return (reply, None);
        }
        if platform == Platform::Whatsapp {
            return self.whatsapp_send(request, now);
        }
        let send = match graph::validate_messenger(&request.body) {
            Ok(send) => send,
            Err(error) => return (self.graph_error(error), None),
        };
        if let Err(wait_ms) = self.acquire(platform, now) {
            return (self.graph_throttled(platform, wait_ms), None);
        }
        match send {
            MessengerSend::SenderAction { recipient } => {
                (Reply::json(200, &json!({ "recipient_id": recipient })), None)
            }
            MessengerSend::Message { recipient } => {
                let mid = self.ids.messenger_mid();
                let reply = Reply::json(200, &json!({ "recipient_id": recipient, "message_id": mid }));
                (reply, Some(ReceiptPlan::Messenger { user: recipient, mid }))
            }
        }
    }

    fn whatsapp_send(&mut self, request: &Request, now: Now) -> (Reply, Option<ReceiptPlan>) {
        let send = match graph::validate_whatsapp(&request.body) {
            Ok(send) => send,
            Err(error) => return (self.graph_error(error), None),
        };
        if let Err(wait_ms) = self.acquire(Platform::Whatsapp, now) {
            return (self.graph_throttled(Platform::Whatsapp, wait_ms), None);
        }
        match send {
            WhatsappSend::MarkRead => (Reply::json(200, &json!({ "success": true })), None),
            WhatsappSend::Message { to } => {
                let wamid = self.ids.wamid();
                let reply = Reply::json(
                    200,
                    &json!({
                        "messaging_product": "whatsapp",
                        "contacts": [whatsapp_send_contact(&to)],
                        "messages": [{ "id": wamid, "message_status": "accepted" }],
                    }),
                );
                (reply, Some(ReceiptPlan::Whatsapp { to: graph::wa_id(&to), wamid }))
            }
        }
    }

    fn graph_throttled(&mut self, platform: Platform, wait_ms: u64) -> Reply {
        let reply = graph::throttled(platform).into_reply(&self.ids.fbtrace());
        reply.with_header("retry-after", wait_ms.div_ceil(1000).to_string())
    }

    /// `GET /{v}/oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret&fb_exchange_token`.
    fn graph_exchange(&mut self, request: &Request, now: Now) -> Reply {
        let q = |name| query_param(&request.query, name).unwrap_or_default();
        let facebook = &self.config.facebook;
        let error = if q("grant_type") != "fb_exchange_token" {
            Some(GraphError::param("(#100) Unsupported grant_type; use fb_exchange_token"))
        } else if facebook.app_id.is_empty() || q("client_id") != facebook.app_id {
            Some(GraphError::new(101, "Error validating application. Invalid application ID."))
        } else if !facebook.app_secret.matches(&q("client_secret")) {
            Some(GraphError::new(1, "Error validating client secret."))
        } else if q("fb_exchange_token").is_empty() {
            Some(GraphError::param("(#100) Missing parameter fb_exchange_token"))
        } else {
            None
        };
        if let Some(error) = error {
            return self.graph_error(error);
        }
        let token = self.ids.token("EAAGsandbox");
        let issued = Issued {
            kind: TokenKind::GraphUser,
            created_at: now.secs(),
            expires_at: now.secs() + tokens::GRAPH_LONG_LIVED_SECS,
        };
        self.tokens.issue(token.clone(), issued);
        Reply::json(
            200,
            &json!({ "access_token": token, "token_type": "bearer", "expires_in": tokens::GRAPH_LONG_LIVED_SECS }),
        )
    }

    /// `GET /{v}/debug_token?input_token&access_token`.
    fn graph_debug_token(&mut self, request: &Request, now: Now) -> Reply {
        let facebook = self.config.facebook.clone();
        let caller = graph_token(request);
        let app_token = format!("{}|{}", facebook.app_id, facebook.app_secret.expose());
        let caller_ok = caller.as_deref().is_some_and(|t| {
            (!facebook.app_id.is_empty() && t == app_token)
                || self.graph_token_ok(Platform::Facebook, t, now)
                || self.graph_token_ok(Platform::Whatsapp, t, now)
        });
        match caller {
            None => return self.graph_error(graph::missing_token()),
            Some(_) if !caller_ok => return self.graph_error(graph::invalid_token()),
            Some(_) => {}
        }
        let input = query_param(&request.query, "input_token").unwrap_or_default();
        if input.is_empty() {
            return self.graph_error(GraphError::param("(#100) The parameter input_token is required"));
        }
        let never = |kind: &str, scopes: &[&str]| {
            (kind.to_owned(), self.started_at, 0, scopes.iter().map(|s| json!(s)).collect::<Vec<_>>())
        };
        let known = if facebook.page_access_token.matches(&input) {
            Some(never("PAGE", &["pages_messaging", "pages_manage_metadata", "pages_read_engagement"]))
        } else if self.config.whatsapp.access_token.matches(&input) {
            Some(never("SYSTEM_USER", &["whatsapp_business_messaging", "whatsapp_business_management"]))
        } else {
            self.tokens.valid(&input, TokenKind::GraphUser, now.secs()).map(|t| {
                let scopes = ["pages_show_list", "pages_messaging", "whatsapp_business_messaging"];
                ("USER".to_owned(), t.created_at, t.expires_at, scopes.iter().map(|s| json!(s)).collect())
            })
        };
        let data = match known {
            Some((kind, issued_at, expires_at, scopes)) => json!({
                "app_id": facebook.app_id,
                "type": kind,
                "application": "Parley Sandbox",
                "data_access_expires_at": now.secs() + 90 * 86_400,
                "expires_at": expires_at,
                "is_valid": true,
                "issued_at": issued_at,
                "profile_id": facebook.page_id,
                "scopes": scopes,
                "user_id": "100000000000099",
            }),
            None => json!({
                "app_id": facebook.app_id,
                "is_valid": false,
                "error": { "code": 190, "message": "Invalid OAuth access token." },
                "scopes": [],
            }),
        };
        Reply::json(200, &json!({ "data": data }))
    }

    /// `GET /{v}/{id}`: the Page, the phone number, or WhatsApp media metadata.
    fn graph_object(&mut self, id: &str, request: &Request, now: Now) -> Reply {
        let page = id == self.config.facebook.page_id;
        let platform = if page { Platform::Facebook } else { Platform::Whatsapp };
        if let Err(reply) = self.graph_auth(platform, request, now) {
            return reply;
        }
        let whatsapp = &self.config.whatsapp;
        if page {
            return Reply::json(200, &json!({ "name": "Parley Sandbox Page", "id": id }));
        }
        if id == whatsapp.phone_number_id {
            return Reply::json(
                200,
                &json!({ "verified_name": "Parley Sandbox", "display_phone_number": whatsapp.phone_number,
                         "quality_rating": "GREEN", "id": id }),
            );
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return self.graph_error(GraphError::param(format!(
                "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
            )));
        }
        let bytes = graph::media_bytes(id);
        Reply::json(
            200,
            &json!({
                "messaging_product": "whatsapp",
                "url": format!("{}/whatsapp_business/attachments/?mid={id}&ext={}&hash=sandbox", self.self_url, now.secs()),
                "mime_type": "image/jpeg",
                "sha256": graph::media_sha256(id),
                "file_size": bytes.len(),
                "id": id,
            }),
        )
    }

    /// `GET /{v}/{psid}?fields=…` with the Page token: a deterministic name (`profile.rs`). Not
    /// counted against the send rate: the daemon's own pacer counts lookups with its sends.
    fn graph_profile(&mut self, psid: &str, request: &Request, now: Now) -> Reply {
        if let Err(reply) = self.graph_auth(Platform::Facebook, request, now) {
            return reply;
        }
        let fields = query_param(&request.query, "fields").unwrap_or_default();
        match profile::lookup(psid, &fields) {
            Ok(answer) => Reply::json(200, &answer),
            Err(error) => self.graph_error(error),
        }
    }

    /// `GET /whatsapp_business/attachments/?mid=`: the media bytes, with the WhatsApp token.
    fn media_download(&mut self, request: &Request, now: Now) -> Reply {
        if let Err(reply) = self.graph_auth(Platform::Whatsapp, request, now) {
            return reply;
        }
        match query_param(&request.query, "mid").filter(|m| !m.is_empty()) {
            Some(id) => Reply::bytes(200, "image/jpeg", graph::media_bytes(&id)),
            None => Reply::bytes(404, "text/plain; charset=utf-8", b"Not Found".to_vec()),
        }
    }

    // ----- Viber -----

    fn viber_auth(&self, request: &Request, body: Option<&Value>) -> Result<(), Reply> {
        let header = request.headers.get("x-viber-auth-token").map(String::as_str);
        match viber::auth_token(header, body) {
            Some(token) if self.config.viber.bot_token.matches(token) => Ok(()),
            _ => Err(viber::INVALID_AUTH_TOKEN.into_reply()),
        }
    }

    fn viber_send(&mut self, request: &Request, now: Now) -> (Reply, Option<ReceiptPlan>) {
        let body = serde_json::from_slice::<Value>(&request.body).ok();
        if let Err(reply) = self.viber_auth(request, body.as_ref()) {
            return (reply, None);
        }
        let receiver = match viber::validate_send(body.as_ref()) {
            Ok(receiver) => receiver,
            Err(status) => return (status.into_reply(), None),
        };
        if self.unsubscribed.contains(&receiver) {
            return (viber::RECEIVER_NOT_SUBSCRIBED.into_reply(), None);
        }
        if self.acquire(Platform::Viber, now).is_err() {
            return (viber::TOO_MANY_REQUESTS.into_reply(), None);
        }
        let message_token = self.ids.viber_token();
        (viber::sent(message_token), Some(ReceiptPlan::Viber { user: receiver, message_token }))
    }

    fn viber_set_webhook(&mut self, request: &Request) -> (Reply, Option<ReceiptPlan>) {
        let body = serde_json::from_slice::<Value>(&request.body).ok();
        if let Err(reply) = self.viber_auth(request, body.as_ref()) {
            return (reply, None);
        }
        let Some(url) = body.as_ref().and_then(|b| b.get("url")).and_then(Value::as_str) else {
            return (viber::MISSING_DATA.into_reply(), None);
        };
        let valid = url.is_empty() || reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !valid {
            return (viber::ViberStatus { status: 1, message: "invalidUrl" }.into_reply(), None);
        }
        self.viber_webhook = url.to_owned();
        let reply = Reply::json(
            200,
            &json!({ "status": 0, "status_message": "ok", "chat_hostname": super::webhooks::VIBER_CHAT_HOSTNAME,
                     "event_types": ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"] }),
        );
        // Viber checks a new URL with a signed `webhook` callback; removing it (`""`) does not.
        let check = (!url.is_empty()).then(|| ReceiptPlan::ViberWebhookCheck { message_token: self.ids.viber_token() });
        (reply, check)
    }

    fn viber_account_info(&mut self, request: &Request) -> Reply {
        let body = serde_json::from_slice::<Value>(&request.body).ok();
        if let Err(reply) = self.viber_auth(request, body.as_ref()) {
            return reply;
        }
        Reply::json(
            200,
            &json!({
                "status": 0,
                "status_message": "ok",
                "id": self.ids.viber_account(),
                "chat_hostname": super::webhooks::VIBER_CHAT_HOSTNAME,
                "name": self.config.viber.bot_name,
                "uri": "parleysandbox",
                "icon": "",
                "background": "",
                "category": "Companies",
                "subcategory": "Software",
                "location": { "lon": 0.0, "lat": 0.0 },
                "country": "GB",
                "webhook": self.viber_webhook,
                "event_types": ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"],
                "subscribers_count": 0,
                "members": [],
            }),
        )
    }

    // ----- LinkedIn -----

    fn linkedin_token_ok(&self, token: &str, now: Now) -> bool {
        self.config.linkedin.access_token.matches(token)
            || self.tokens.valid(token, TokenKind::LinkedinAccess, now.secs()).is_some()
    }

    fn linkedin_comment(&mut self, urn: &str, request: &Request, now: Now) -> Reply {
        match bearer(request) {
            Some(token) if self.linkedin_token_ok(&token, now) => {}
            _ => return linkedin::invalid_token(),
        }
        let comment = match linkedin::validate_comment(urn, &request.headers, &request.body) {
            Ok(comment) => comment,
            Err(reply) => return reply,
        };
        if let Err(wait_ms) = self.acquire(Platform::Linkedin, now) {
            return linkedin::throttled().with_header("retry-after", wait_ms.div_ceil(1000).to_string());
        }
        linkedin::created(&comment, self.ids.linkedin_comment(), now.epoch_ms)
    }

    /// The client id and secret of an OAuth form; the error reply when they are wrong.
    fn linkedin_client(&self, form: &BTreeMap<String, String>, bad_id_status: u16) -> Result<(), Reply> {
        let linkedin = &self.config.linkedin;
        let id = form.get("client_id").map(String::as_str).unwrap_or_default();
        if linkedin.client_id.is_empty() || id != linkedin.client_id {
            return Err(linkedin::oauth_error(bad_id_status, "invalid_client", "Client authentication failed"));
        }
        let secret = form.get("client_secret").map(String::as_str).unwrap_or_default();
        if !linkedin.client_secret.matches(secret) {
            return Err(linkedin::oauth_error(401, "invalid_client", "Client authentication failed"));
        }
        Ok(())
    }

    /// `POST /oauth/v2/accessToken` with `grant_type=refresh_token`.
    fn linkedin_refresh(&mut self, request: &Request, now: Now) -> Reply {
        let form = journal::form_fields(&String::from_utf8_lossy(&request.body));
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return linkedin::oauth_error(400, "unsupported_grant_type", "grant_type must be refresh_token");
        }
        if let Err(reply) = self.linkedin_client(&form, 401) {
            return reply;
        }
        let refresh = form.get("refresh_token").map(String::as_str).unwrap_or_default();
        let refresh_expires_at = self.started_at + tokens::LINKEDIN_REFRESH_SECS;
        if !self.config.linkedin.refresh_token.matches(refresh) || refresh_expires_at <= now.secs() {
            return linkedin::oauth_error(
                400,
                "invalid_request",
                "The provided authorization grant or refresh token is invalid, expired or revoked",
            );
        }
        let access = self.ids.token("AQVsandbox");
        let issued = Issued {
            kind: TokenKind::LinkedinAccess,
            created_at: now.secs(),
            expires_at: now.secs() + tokens::LINKEDIN_ACCESS_SECS,
        };
        self.tokens.issue(access.clone(), issued);
        Reply::json(
            200,
            &json!({
                "access_token": access,
                "expires_in": tokens::LINKEDIN_ACCESS_SECS,
                "refresh_token": refresh,
                "refresh_token_expires_in": refresh_expires_at - now.secs(),
            }),
        )
    }

    /// `POST /oauth/v2/introspectToken`.
    fn linkedin_introspect(&mut self, request: &Request, now: Now) -> Reply {
        let form = journal::form_fields(&String::from_utf8_lossy(&request.body));
        if let Err(reply) = self.linkedin_client(&form, 400) {
            return reply;
        }
        let token = form.get("token").map(String::as_str).unwrap_or_default();
        let linkedin = &self.config.linkedin;
        let times = if linkedin.access_token.matches(token) {
            Some((self.started_at, self.started_at + tokens::LINKEDIN_ACCESS_SECS))
        } else if linkedin.refresh_token.matches(token) {
            Some((self.started_at, self.started_at + tokens::LINKEDIN_REFRESH_SECS))
        } else {
            self.tokens.valid(token, TokenKind::LinkedinAccess, now.secs()).map(|t| (t.created_at, t.expires_at))
        };
        match times {
            Some((created_at, expires_at)) if expires_at > now.secs() => Reply::json(
                200,
                &json!({
                    "active": true,
                    "client_id": linkedin.client_id,
                    "authorized_at": created_at,
                    "created_at": created_at,
                    "status": "active",
                    "expires_at": expires_at,
                    "scope": "r_organization_social,w_organization_social,rw_organization_admin",
                    "auth_type": "3L",
                }),
            ),
            _ => Reply::json(200, &json!({ "active": false, "status": "expired" })),
        }
    }

    // ----- Control API -----

    /// `/_sandbox/...`.
    fn control(&mut self, method: &str, segments: &[&str], request: &Request) -> Reply {
        match (method, segments) {
            ("GET", ["health"]) => self.health(),
            ("POST", ["faults"]) => self.add_fault(request),
            ("GET", ["requests"]) => self.requests(request),
            ("POST", ["reset"]) => {
                self.reset();
                tracing::info!(message = "Sandbox reset.");
                Reply::json(200, &json!({ "status": "reset" }))
            }
            ("POST", ["unsubscribe"]) => self.unsubscribe(request),
            _ => reply::control_error(
                404,
                "control routes: GET health, POST faults, GET requests, POST reset, POST unsubscribe",
            ),
        }
    }

    fn health(&self) -> Reply {
        let platforms: serde_json::Map<String, Value> = Platform::ALL
            .into_iter()
            .map(|p| {
                (p.to_string(), json!({ "pending_faults": self.faults.pending(p), "rate_limit": self.rate_text(p) }))
            })
            .collect();
        Reply::json(
            200,
            &json!({
                "status": "ok",
                "last_seq": self.journal.last_seq(),
                "platforms": platforms,
                "receipts": self.receipt_stats.snapshot(),
            }),
        )
    }

    fn rate_text(&self, platform: Platform) -> Value {
        if self.limits.is_none() {
            return Value::Null;
        }
        let c = &self.config;
        json!(match platform {
            Platform::Facebook => format!("{}/s", c.facebook.rate_per_second),
            Platform::Whatsapp => format!("{}/s", c.whatsapp.rate_per_second),
            Platform::Viber => format!("{}/min", c.viber.rate_per_minute),
            Platform::Linkedin => format!("{}/min", c.linkedin.rate_per_minute),
        })
    }

    fn add_fault(&mut self, request: &Request) -> Reply {
        let fault: super::faults::FaultRequest = match serde_json::from_slice(&request.body) {
            Ok(fault) => fault,
            Err(e) => {
                return reply::control_error(
                    400,
                    &format!(
                        "fault body: {e} (expected {{\"platform\": \"facebook|whatsapp|viber|linkedin\", \"kind\": \"rate_limit|server_error|slow|drop|expired_token|permanent\", \"count\": N, \"delay_ms\": M, \"endpoint\": \"send|profile\"}})"
                    ),
                );
            }
        };
        if let Err(problem) = self.faults.push(&fault) {
            return reply::control_error(400, &problem);
        }
        let pending = self.faults.pending(fault.platform);
        tracing::warn!(message = "Fault queued.", platform = %fault.platform, kind = fault.kind.as_str(), count = fault.count, pending);
        Reply::json(
            200,
            &json!({ "status": "queued", "platform": fault.platform, "kind": fault.kind.as_str(), "count": fault.count, "pending": pending }),
        )
    }

    fn requests(&self, request: &Request) -> Reply {
        let platform = match query_param(&request.query, "platform").filter(|p| !p.is_empty()) {
            None => None,
            Some(name) => match name.parse::<Platform>() {
                Ok(p) => Some(p),
                Err(e) => return reply::control_error(400, &format!("platform: {e}")),
            },
        };
        let since = match query_param(&request.query, "since").filter(|s| !s.is_empty()) {
            None => 0,
            Some(text) => match text.parse::<u64>() {
                Ok(n) => n,
                Err(_) => return reply::control_error(400, "since: expected a sequence number"),
            },
        };
        let requests = self.journal.since(since, platform);
        Reply::json(200, &json!({ "requests": requests, "last_seq": self.journal.last_seq() }))
    }

    fn unsubscribe(&mut self, request: &Request) -> Reply {
        let body = serde_json::from_slice::<Value>(&request.body).ok();
        match body.as_ref().and_then(|b| b.get("user")).and_then(Value::as_str).filter(|u| !u.is_empty()) {
            Some(user) => {
                self.unsubscribed.insert(user.to_owned());
                Reply::json(200, &json!({ "status": "unsubscribed", "user": user }))
            }
            None => reply::control_error(400, "unsubscribe body: expected {\"user\": \"<viber user id>\"}"),
        }
    }

    /// Clears requests, faults, rate windows, issued tokens, unsubscriptions and the Viber webhook.
    pub fn reset(&mut self) {
        self.journal.clear();
        self.faults.clear();
        if let Some(limits) = self.limits.as_mut() {
            limits.values_mut().for_each(SlidingWindow::clear);
        }
        self.tokens.clear();
        self.unsubscribed.clear();
        self.viber_webhook.clear();
    }
}

/// The Graph token: `Authorization: Bearer|OAuth <token>`, else the `access_token` query parameter.
fn graph_token(request: &Request) -> Option<String> {
    bearer(request)
        .or_else(|| request.headers.get("authorization").and_then(|v| strip_scheme(v, "oauth")))
        .or_else(|| query_param(&request.query, "access_token").filter(|t| !t.is_empty()))
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(request: &Request) -> Option<String> {
    request.headers.get("authorization").and_then(|v| strip_scheme(v, "bearer"))
}

fn strip_scheme(value: &str, scheme: &str) -> Option<String> {
    let (given, token) = value.trim().split_once(' ')?;
    (given.eq_ignore_ascii_case(scheme) && !token.trim().is_empty()).then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests;

/// The `contacts[0]` of a Cloud API send answer: the input as given, the `wa_id` when it was a
/// number, and the user's business-scoped id.
fn whatsapp_send_contact(to: &str) -> serde_json::Value {
    let wa_id = graph::wa_id(to);
    if crate::platform::whatsapp::is_business_scoped_user_id(&wa_id) {
        json!({ "input": to, "user_id": wa_id })
    } else {
        json!({ "input": to, "wa_id": wa_id, "user_id": super::webhooks::business_scoped_id(&wa_id) })
    }
}
