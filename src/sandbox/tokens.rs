//! Tokens the sandbox issued (Graph long-lived exchange, LinkedIn refresh) beside the configured
//! ones, so a daemon that refreshes is then accepted with the new token.

use std::collections::HashMap;

/// Seconds Graph's long-lived exchange grants (PLATFORMS.md 1.8).
pub const GRAPH_LONG_LIVED_SECS: i64 = 5_183_944;
/// Seconds a LinkedIn access token lives (60 days).
pub const LINKEDIN_ACCESS_SECS: i64 = 5_184_000;
/// Seconds a LinkedIn refresh token lives from its first issue (365 days; it does not slide, so a
/// refresh hands back the same refresh token with what is left of its life).
pub const LINKEDIN_REFRESH_SECS: i64 = 31_536_000;

/// What an issued token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A Graph user token from `fb_exchange_token`: accepted by Messenger and WhatsApp sends.
    GraphUser,
    /// A LinkedIn access token from a refresh: accepted by the Comments API.
    LinkedinAccess,
}

/// One issued token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    pub kind: TokenKind,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The issued tokens. Bounded only by how often a test refreshes; a reset forgets them.
#[derive(Debug, Default)]
pub struct Tokens {
    issued: HashMap<String, Issued>,
}

impl Tokens {
    /// Remembers a token the sandbox just handed out.
    pub fn issue(&mut self, token: String, issued: Issued) {
        self.issued.insert(token, issued);
    }

    /// The token if it was issued as `kind` and has not expired at `now_secs`.
    pub fn valid(&self, token: &str, kind: TokenKind, now_secs: i64) -> Option<Issued> {
        self.issued.get(token).copied().filter(|t| t.kind == kind && t.expires_at > now_secs)
    }

    /// Forgets every issued token.
    pub fn clear(&mut self) {
        self.issued.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_are_valid_for_their_kind_until_they_expire() {
        let mut tokens = Tokens::default();
        tokens.issue("t1".into(), Issued { kind: TokenKind::GraphUser, created_at: 0, expires_at: 100 });
        assert!(tokens.valid("t1", TokenKind::GraphUser, 99).is_some());
        assert!(tokens.valid("t1", TokenKind::GraphUser, 100).is_none());
        assert!(tokens.valid("t1", TokenKind::LinkedinAccess, 0).is_none());
        assert!(tokens.valid("t2", TokenKind::GraphUser, 0).is_none());
        tokens.clear();
        assert!(tokens.valid("t1", TokenKind::GraphUser, 0).is_none());
    }
}
