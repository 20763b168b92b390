//! Outgoing webhooks (CONTRACT.md, "Outgoing webhooks"): every matching event of the live feed is
//! posted to each configured receiver, signed the Standard Webhooks way.
//!
//! The pure core lives here: [`signature`] (signing and verifying), [`plan`] (eligibility, retry
//! schedule, answer classification, cursor movement) and [`receiver`] (a validated receiver and the
//! body of a delivery). The shell is `actor::receiver` (one worker per receiver) and
//! `store::receivers` (its durable state).

pub mod plan;
pub mod receiver;
pub mod signature;
