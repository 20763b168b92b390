//! Placeholder module being written; see platform/mod.rs for the shape.

use crate::model::InboundEvent;
use crate::secret::Secret;

use super::{HandshakeReply, ParseContext, ParseError, SignatureForm, SignedRequest, VerifyError};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-unset";

/// Answers the GET handshake.
pub fn verify_handshake(_secret: &Secret, _query: &str) -> Result<HandshakeReply, VerifyError> {
    Err(VerifyError::HandshakeNotSupported)
}

/// Verifies the body's signature.
pub fn verify_signature(_secret: &Secret, _request: &SignedRequest<'_>) -> Result<SignatureForm, VerifyError> {
    Err(VerifyError::BadSignature)
}

/// Parses a verified body.
pub fn parse_webhook(_body: &[u8], _ctx: &ParseContext<'_>) -> Result<Vec<InboundEvent>, ParseError> {
    Err(ParseError::NotAnObject)
}
