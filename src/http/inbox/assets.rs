//! The inbox's files, compiled into the binary. Every file under `web/` that the page loads is
//! listed here once; `mod.rs` serves them.

use super::Asset;

/// The page itself, served at `/`. Every `{{version}}` in it becomes [`super::version`], so that
/// asset URLs change whenever any asset does.
pub const INDEX_HTML: &[u8] = include_bytes!("web/index.html");

/// Served at `/assets/{version}/{name}`.
pub const ASSETS: &[Asset] = &[
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("web/app.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("web/app.js") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("web/api.js") },
    Asset { name: "dom.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("web/dom.js") },
    Asset { name: "feed.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("web/feed.js") },
    Asset { name: "list.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("web/list.js") },
    Asset { name: "thread.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("web/thread.js") },
];
