//! A platform's channel actor. For inbound traffic it parses verified bodies with the platform
//! module's pure code and hands the events to the conversation actor, passing the HTTP request's
//! reply port along so that the answer waits for the durable write without holding this actor.

use std::panic::AssertUnwindSafe;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{ChannelMsg, ConversationMsg, PersistError, conversation_actor};
use crate::model::Platform;
use crate::platform::{self, ParseContext};

/// The actor behaviour; one instance per enabled platform.
pub struct ChannelActor;

/// What a channel needs to know about its platform.
#[derive(Clone, Debug)]
pub struct ChannelArgs {
    pub platform: Platform,
    /// Our account on the platform, for bodies that do not name it.
    pub account_id: String,
}

/// Mutable state of a channel actor.
pub struct ChannelState {
    args: ChannelArgs,
}

impl Actor for ChannelActor {
    type Msg = ChannelMsg;
    type State = ChannelState;
    type Arguments = ChannelArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ChannelArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ChannelState { args })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ChannelMsg::Webhook { body, received_at, delivery_id, reply } => {
                let platform = state.args.platform;
                let ctx = ParseContext { account_id: &state.args.account_id, received_at };
                // The parsers are pure and written not to panic; if one does anyway, the body is
                // quarantined instead of crashing the channel on every redelivery of it.
                let parsed =
                    std::panic::catch_unwind(AssertUnwindSafe(|| platform::parse_webhook(platform, &body, &ctx)))
                        .unwrap_or_else(|_| {
                            Err(platform::ParseError::NotJson("the parser panicked on this body".into()))
                        });
                let Some(store) = conversation_actor() else {
                    tracing::warn!(message = "Store is restarting; webhook refused.", %platform, %delivery_id);
                    let _ = reply.send(Err(PersistError("the store is restarting".into())));
                    return Ok(());
                };
                let request = match parsed {
                    Ok(events) => {
                        tracing::debug!(message = "Webhook parsed.", %platform, %delivery_id, events = events.len());
                        ConversationMsg::Ingest { platform, events, received_at, reply }
                    }
                    Err(e) => {
                        tracing::warn!(message = "Webhook not understood; body quarantined.", %platform, %delivery_id, reason = %e);
                        ConversationMsg::Quarantine { platform, reason: e.to_string(), body, received_at, reply }
                    }
                };
                if let Err(e) = store.cast(request) {
                    // The store died between the lookup and the send: the reply port is dropped with
                    // the message, and the HTTP side answers 503.
                    tracing::warn!(message = "Store went away; webhook refused.", %platform, %delivery_id, error = %e);
                }
            }
        }
        Ok(())
    }
}
