//! An answer the sandbox gives, before it becomes a hyper response: the pure core builds these.

use serde_json::Value;

/// Status, extra headers and a body (JSON unless `content_type` says otherwise).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply::raw_json(status, value.to_string())
    }

    /// A JSON answer written by hand (Viber's 64-bit `message_token` must stay a raw number).
    pub fn raw_json(status: u16, text: String) -> Reply {
        Reply { status, content_type: "application/json; charset=UTF-8", headers: Vec::new(), body: text.into_bytes() }
    }

    /// A non-JSON answer (media bytes, plain text).
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply { status, content_type, headers: Vec::new(), body }
    }

    /// The same answer with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// A header's value, for tests.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (null when it is not), for tests and logs.
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The control API's own error shape (not a platform's).
pub fn control_error(status: u16, message: &str) -> Reply {
    Reply::json(status, &serde_json::json!({ "error": message }))
}
