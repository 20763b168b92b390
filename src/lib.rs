//! Parley: one daemon that gives a business a single inbox for Messenger, WhatsApp, Viber and LinkedIn.
//!
//! The crate is a functional core ([`platform`], [`model`], [`time`]) inside an imperative shell
//! (actors, HTTP, the sled store). See ARCHITECTURE.md for the map.

pub mod model;
pub mod platform;
pub mod secret;
pub mod time;
