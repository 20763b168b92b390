//! The operator API (read side): conversations and messages, behind a bearer token compared in
//! constant time. Errors use the contract's JSON body; bad input is 400 or 404, never 500.

use std::time::Duration;

use crate::time::Timestamp;

use hyper::{Method, Request, Response, StatusCode};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde_json::json;

use hyper::body::Incoming;

use super::HttpState;
use super::engagement;
use super::response::{self, Body};
use super::send::{self, NewMessageBody, ReplyBody};
use super::session::{self, Auth};
use crate::actor::{ConversationMsg, PageRequest, ReadError, ReadResult, conversation_actor};
use crate::model::Platform;
use crate::platform::query_param;
use crate::store::ConversationFilter;
use crate::store::keys::decode_cursor;

/// Default and largest page sizes.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = crate::store::MAX_PAGE;
/// The longest search text (`q=`).
const MAX_QUERY_CHARS: usize = 200;
/// A read that takes longer than this is answered 503.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Routes `/api/...` after the bearer check. `segments` excludes the leading `api`.
pub async fn route(state: &HttpState, request: Request<Incoming>, segments: &[&str]) -> Response<Body> {
    state.metrics.api_request();
    if segments == ["session"] {
        return session::route(state, request).await;
    }
    let auth = match session::authenticate(state, &request) {
        Ok(auth) => auth,
        Err(why) => return session::unauthorized(why.as_ref()),
    };
    if matches!(auth, Auth::Cookie(_))
        && !matches!(*request.method(), Method::GET | Method::HEAD)
        && let Err(answer) = session::same_origin(&request)
    {
        return answer;
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let query = query.as_str();
    let method = request.method().clone();
    match segments {
        ["conversations"] => match method {
            Method::GET => list_conversations(query).await,
            _ => response::method_not_allowed("GET"),
        },
        ["conversations", id] => match method {
            Method::GET => get_conversation(id).await,
            _ => response::method_not_allowed("GET"),
        },
        ["conversations", id, "messages"] => match method {
            Method::GET => list_messages(id, query).await,
            Method::POST => match read_json::<ReplyBody>(state, request).await {
                Ok(body) => send::reply(state, id, body).await,
                Err(answer) => answer,
            },
            _ => response::method_not_allowed("GET, POST"),
        },
        ["conversations", id, "read"] => match method {
            Method::POST => match read_json_or_empty::<engagement::ReadBody>(state, request).await {
                Ok(body) => engagement::mark_read(state, id, body).await,
                Err(answer) => answer,
            },
            _ => response::method_not_allowed("POST"),
        },
        ["conversations", id, "typing"] => match method {
            Method::POST => match read_json::<engagement::TypingBody>(state, request).await {
                Ok(body) => engagement::typing(state, id, body).await,
                Err(answer) => answer,
            },
            _ => response::method_not_allowed("POST"),
        },
        ["messages", id, "reaction"] => match method {
            Method::POST => match read_json::<engagement::ReactionBody>(state, request).await {
                Ok(body) => engagement::react(state, id, body).await,
                Err(answer) => answer,
            },
            _ => response::method_not_allowed("POST"),
        },
        ["messages"] => match method {
            Method::POST => match read_json::<NewMessageBody>(state, request).await {
                Ok(body) => send::start(state, body).await,
                Err(answer) => answer,
            },
            _ => response::method_not_allowed("POST"),
        },
        ["events"] => match method {
            Method::GET => super::events::serve(state, request).await,
            _ => response::method_not_allowed("GET"),
        },
        ["messages", id] => match method {
            Method::GET => get_one(id, "message", |id, reply| ConversationMsg::GetMessage { id, reply }).await,
            _ => response::method_not_allowed("GET"),
        },
        ["channels"] => match method {
            Method::GET => super::channels(state).await,
            _ => response::method_not_allowed("GET"),
        },
        ["webhooks", rest @ ..] => super::receivers::route(state, request, rest).await,
        _ => response::error(StatusCode::NOT_FOUND, "not_found", "no such API route"),
    }
}

/// Reads a JSON body under the size limit: a body not declared `application/json` is 415 (a
/// cross-site HTML form can send only form or text types, so this is what stops forged posts once
/// the inbox signs in with a cookie); malformed JSON or unknown fields are 400.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    state: &HttpState,
    request: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let bytes = read_json_bytes(state, request).await?;
    serde_json::from_slice(&bytes).map_err(|e| bad_request("bad_json", &format!("the body is not valid: {e}")))
}

/// As `read_json`, and an empty body is the default value (every field optional).
async fn read_json_or_empty<T: serde::de::DeserializeOwned + Default>(
    state: &HttpState,
    request: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let bytes = read_json_bytes(state, request).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| bad_request("bad_json", &format!("the body is not valid: {e}")))
}

/// The body of a request declared `application/json`, under the size limit.
async fn read_json_bytes(state: &HttpState, request: Request<Incoming>) -> Result<bytes::Bytes, Response<Body>> {
    if !is_json_content_type(request.headers().get(hyper::header::CONTENT_TYPE).map(|v| v.as_bytes())) {
        return Err(response::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be sent with `content-type: application/json`",
        ));
    }
    let config = state.config();
    let limit = config.server.max_body_bytes;
    let timeout = Duration::from_secs(config.server.request_timeout_secs);
    super::body::read_limited(request, limit, timeout).await
}

/// True for `application/json`, in any case, with or without parameters (`; charset=utf-8`).
fn is_json_content_type(value: Option<&[u8]>) -> bool {
    let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else { return false };
    let media_type = text.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/json")
}

fn page_request(query: &str) -> Result<PageRequest, Response<Body>> {
    let limit = match query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad_request("bad_limit", &format!("`limit` must be a whole number from 1 to {MAX_LIMIT}")));
            }
        },
    };
    let before = match query_param(query, "before").filter(|c| !c.is_empty()) {
        None => None,
        Some(cursor) => match decode_cursor(&cursor) {
            Some(position) => Some(position),
            None => return Err(bad_request("bad_cursor", "`before` must be a `next` value from an earlier page")),
        },
    };
    Ok(PageRequest { limit, before })
}

async fn list_conversations(query: &str) -> Response<Body> {
    let page = match page_request(query) {
        Ok(page) => page,
        Err(answer) => return answer,
    };
    let platform = match query_param(query, "platform").filter(|p| !p.is_empty()) {
        None => None,
        Some(name) => match name.parse::<Platform>() {
            Ok(p) => Some(p),
            Err(e) => return bad_request("bad_platform", &e.to_string()),
        },
    };
    let unread_only = match query_param(query, "unread").as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return bad_request("bad_unread", "`unread` must be `true` or `false`"),
    };
    let search = query_param(query, "q").unwrap_or_default();
    if search.chars().count() > MAX_QUERY_CHARS {
        return bad_request("bad_query", &format!("`q` is limited to {MAX_QUERY_CHARS} characters"));
    }
    let filter = ConversationFilter { platform, unread_only, query: crate::store::search_needle(&search) };
    match read(|reply| ConversationMsg::ListConversations { filter, page, reply }).await {
        Ok(page) => {
            // Each with its messaging window as of now (`window.rs`).
            let now = Timestamp::now();
            let items: Vec<_> = page.items.iter().map(|c| c.view(now)).collect();
            response::json(StatusCode::OK, &json!({ "conversations": items, "next": page.next }))
        }
        Err(answer) => answer,
    }
}

async fn get_conversation(id: &str) -> Response<Body> {
    let owned = id.to_owned();
    match read(|reply| ConversationMsg::GetConversation { id: owned, reply }).await {
        Ok(Some(conversation)) => response::json(StatusCode::OK, &conversation.view(Timestamp::now())),
        Ok(None) => not_found("conversation", id),
        Err(answer) => answer,
    }
}

async fn list_messages(conversation_id: &str, query: &str) -> Response<Body> {
    let page = match page_request(query) {
        Ok(page) => page,
        Err(answer) => return answer,
    };
    let id = conversation_id.to_owned();
    match ask(|reply| ConversationMsg::GetConversation { id, reply }).await {
        Ok(Ok(Some(_))) => {}
        Ok(Ok(None)) => return not_found("conversation", conversation_id),
        // The conversation exists though its own record does not decode: its messages are
        // records of their own and still listed.
        Ok(Err(ReadError::Unreadable(_))) => {}
        Ok(Err(e)) => return read_error(&e),
        Err(answer) => return answer,
    }
    let conversation_id = conversation_id.to_owned();
    match read(|reply| ConversationMsg::ListMessages { conversation_id, page, reply }).await {
        Ok(page) => response::json(StatusCode::OK, &json!({ "messages": page.items, "next": page.next })),
        Err(answer) => answer,
    }
}

async fn get_one<T: serde::Serialize + Send + 'static>(
    id: &str,
    what: &str,
    message: impl FnOnce(String, RpcReplyPort<ReadResult<Option<T>>>) -> ConversationMsg,
) -> Response<Body> {
    let owned = id.to_owned();
    match read(|reply| message(owned, reply)).await {
        Ok(Some(item)) => response::json(StatusCode::OK, &item),
        Ok(None) => not_found(what, id),
        Err(answer) => answer,
    }
}

/// Asks the conversation actor; the store's answer, or 503 when there is none (restarting).
async fn ask<T: Send + 'static>(
    message: impl FnOnce(RpcReplyPort<ReadResult<T>>) -> ConversationMsg,
) -> Result<ReadResult<T>, Response<Body>> {
    let Some(actor): Option<ActorRef<ConversationMsg>> = conversation_actor() else {
        return Err(response::unavailable("the store is restarting", 1));
    };
    match actor.call(message, Some(READ_DEADLINE)).await {
        Ok(CallResult::Success(result)) => Ok(result),
        _ => Err(response::unavailable("the store did not answer", 1)),
    }
}

/// Asks the conversation actor; a failed read is answered by [`read_error`].
pub(super) async fn read<T: Send + 'static>(
    message: impl FnOnce(RpcReplyPort<ReadResult<T>>) -> ConversationMsg,
) -> Result<T, Response<Body>> {
    ask(message).await?.map_err(|e| read_error(&e))
}

/// A record that does not decode is 409 (it exists, but this build cannot show it; asking again
/// will not help); a store that cannot be read is 503 (it may recover).
pub(super) fn read_error(e: &ReadError) -> Response<Body> {
    match e {
        ReadError::Unreadable(what) => response::error(
            StatusCode::CONFLICT,
            "unreadable_record",
            &format!("{what}; it is logged and counted in parley_store_unreadable_records_total"),
        ),
        ReadError::Failed(_) => response::unavailable("the store could not be read", 1),
    }
}

pub(super) fn bad_request(code: &str, message: &str) -> Response<Body> {
    response::error(StatusCode::BAD_REQUEST, code, message)
}

pub(super) fn not_found(what: &str, id: &str) -> Response<Body> {
    let shown: String = id.chars().take(64).collect();
    response::error(StatusCode::NOT_FOUND, "not_found", &format!("no {what} with id `{shown}`"))
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn only_application_json_is_a_json_content_type() {
        for accepted in
            ["application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;x=y"]
        {
            assert!(is_json_content_type(Some(accepted.as_bytes())), "{accepted}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-seq",
            "text/json",
            "",
        ] {
            assert!(!is_json_content_type(Some(refused.as_bytes())), "{refused}");
        }
        assert!(!is_json_content_type(None));
        assert!(!is_json_content_type(Some(b"application/json\xff")));
    }
}
