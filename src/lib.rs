//! Parley: one daemon that gives a business a single inbox for Messenger, WhatsApp, Viber and LinkedIn.
//!
//! The crate is a functional core ([`platform`], [`model`], [`time`]) inside an imperative shell
//! (actors, HTTP, the sled store). See ARCHITECTURE.md for the map.

pub mod actor;
pub mod app;
pub mod config;
pub mod fdlimit;
pub mod feed;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod platform;
pub mod ratelimit;
pub mod reload;
pub mod sandbox;
pub mod secret;
pub mod simulate;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod time;
pub mod webhooks;
pub mod window;
