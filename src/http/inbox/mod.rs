//! The web inbox: `GET /` and its assets, compiled into the binary (`assets.rs`, files in `web/`).
//! The page uses only the operator API and the live feed, signed in with the session cookie
//! (`session.rs`). Everything is served with a strict Content-Security-Policy (no inline script or
//! style, nothing from another origin but images), and asset URLs carry a hash of the assets so
//! the browser may keep them for a year.

mod assets;

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::response::{self, Body};

/// One embedded file.
pub struct Asset {
    /// Its name under `/assets/{version}/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// Images may come from the platforms' CDNs (attachments); everything else only from here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' https: data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A year: asset URLs change whenever their content does.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The first 16 hex digits of SHA-256 over every asset: part of every asset URL.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(assets::INDEX_HTML);
        for asset in assets::ASSETS {
            hasher.update(asset.name.as_bytes());
            hasher.update((asset.bytes.len() as u64).to_le_bytes());
            hasher.update(asset.bytes);
        }
        let digest = hasher.finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    })
}

/// The page with its asset URLs filled in.
fn index_html() -> &'static Bytes {
    static INDEX: OnceLock<Bytes> = OnceLock::new();
    INDEX.get_or_init(|| {
        let text = String::from_utf8_lossy(assets::INDEX_HTML).replace("{{version}}", version());
        Bytes::from(text.into_bytes())
    })
}

/// The total size of the page and its assets, in bytes (reported by the benchmark).
pub fn total_size() -> usize {
    index_html().len() + assets::ASSETS.iter().map(|a| a.bytes.len()).sum::<usize>()
}

/// `GET /`: the page. It is small and always revalidated (its ETag is the asset version).
pub fn page<B>(request: &Request<B>) -> Response<Body> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return response::method_not_allowed("GET");
    }
    let etag = format!("\"{}\"", version());
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut answer = if fresh {
        let mut answer = Response::new(Full::new(Bytes::new()).boxed());
        *answer.status_mut() = StatusCode::NOT_MODIFIED;
        answer
    } else {
        let mut answer = Response::new(Full::new(index_html().clone()).boxed());
        answer.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        answer
    };
    let headers = answer.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    secure(answer)
}

/// `GET /assets/{version}/{name}`. A name that is not embedded is 404; an old version is served
/// the current file, but not kept (a page from before an upgrade still loads).
pub fn asset<B>(request: &Request<B>, asked_version: &str, name: &str) -> Response<Body> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return response::method_not_allowed("GET");
    }
    let Some(found) = assets::ASSETS.iter().find(|a| a.name == name) else {
        return secure(response::error(StatusCode::NOT_FOUND, "not_found", "no such asset"));
    };
    let mut answer = Response::new(Full::new(Bytes::from_static(found.bytes)).boxed());
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(found.content_type));
    let cache = if asked_version == version() { IMMUTABLE } else { "no-cache" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(answer)
}

/// The headers every inbox answer carries.
fn secure(mut answer: Response<Body>) -> Response<Body> {
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).expect("request")
    }

    #[test]
    fn the_page_names_its_assets_by_version_and_has_no_inline_script() {
        let html = String::from_utf8(index_html().to_vec()).expect("utf-8");
        assert!(!html.contains("{{version}}"));
        for asset in assets::ASSETS.iter().filter(|a| a.name.ends_with(".css") || a.name == "app.js") {
            assert!(html.contains(&format!("/assets/{}/{}", version(), asset.name)), "{}", asset.name);
        }
        // Every <script> has a src (CSP forbids inline script anyway; this keeps the page honest).
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or("");
            assert!(tag.contains("src="), "inline script: {tag}");
        }
        assert!(!html.contains(" style="), "inline style attributes are refused by the CSP");
    }

    #[test]
    fn the_page_revalidates_and_carries_the_security_headers() {
        let answer = page(&get("/"));
        assert_eq!(answer.status(), StatusCode::OK);
        let headers = answer.headers();
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'self'"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        let again = Request::builder().uri("/").header(header::IF_NONE_MATCH, etag).body(()).unwrap();
        assert_eq!(page(&again).status(), StatusCode::NOT_MODIFIED);
        let post = Request::builder().method(Method::POST).uri("/").body(()).unwrap();
        assert_eq!(page(&post).status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn assets_of_this_version_are_kept_and_unknown_ones_are_404() {
        let current = asset(&get("/"), version(), "app.js");
        assert_eq!(current.status(), StatusCode::OK);
        assert_eq!(current.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert!(current.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
        let stale = asset(&get("/"), "0000000000000000", "app.js");
        assert_eq!(stale.status(), StatusCode::OK);
        assert_eq!(stale.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(asset(&get("/"), version(), "../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(asset(&get("/"), version(), "nope.js").status(), StatusCode::NOT_FOUND);
    }
}
