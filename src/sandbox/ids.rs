//! Ids the sandbox hands out, each unique for the sandbox's life and shaped like the real ones:
//! Messenger `m_…`, WhatsApp `wamid.…`, Viber 64-bit tokens above 2^53, LinkedIn comment numbers.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Source of unique ids. A counter makes them unique; a random part makes them look like ids and
/// keeps two sandbox runs from colliding in one store.
#[derive(Debug)]
pub struct Ids {
    counter: u64,
    run: String,
    viber_base: u64,
    linkedin_base: u64,
}

impl Default for Ids {
    fn default() -> Self {
        Self::new()
    }
}

impl Ids {
    /// A fresh source with a random run prefix.
    pub fn new() -> Self {
        let mut rng = rand::rng();
        let run: String = (&mut rng).sample_iter(&Alphanumeric).take(8).map(char::from).collect();
        Ids {
            counter: 0,
            run,
            // 5.0e18..6.0e18: far above 2^53 (9.0e15), below i64::MAX, like Viber's real tokens.
            viber_base: 5_000_000_000_000_000_000 + rng.random_range(0..1_000_000_000_000_000_000u64),
            // LinkedIn comment ids are 19-digit numbers near 7.19e18.
            linkedin_base: 7_190_000_000_000_000_000 + rng.random_range(0..1_000_000_000_000_000u64),
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A Messenger message id.
    pub fn messenger_mid(&mut self) -> String {
        let n = self.next();
        format!("m_{}{n:010}{}", self.run, random_text(12))
    }

    /// A WhatsApp message id.
    pub fn wamid(&mut self) -> String {
        let n = self.next();
        format!("wamid.HBgSANDBOX{}{n:012}{}", self.run, random_text(16))
    }

    /// A Viber message token: a 64-bit number above 2^53.
    pub fn viber_token(&mut self) -> u64 {
        self.viber_base + self.next()
    }

    /// The number that names a new LinkedIn comment.
    pub fn linkedin_comment(&mut self) -> u64 {
        self.linkedin_base + self.next()
    }

    /// A Graph `fbtrace_id`.
    pub fn fbtrace(&mut self) -> String {
        random_text(11)
    }

    /// A new access or refresh token (`prefix` says which platform issued it).
    pub fn token(&mut self, prefix: &str) -> String {
        let n = self.next();
        format!("{prefix}{n}{}", random_text(40))
    }

    /// A Viber public account id.
    pub fn viber_account(&self) -> String {
        format!("pa:{}", self.viber_base % 10_000_000_000_000_000_000)
    }
}

fn random_text(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped_like_the_real_ones() {
        let mut ids = Ids::new();
        let mids: std::collections::HashSet<String> = (0..1000).map(|_| ids.messenger_mid()).collect();
        assert_eq!(mids.len(), 1000);
        assert!(mids.iter().all(|m| m.starts_with("m_")));
        assert!(ids.wamid().starts_with("wamid."));
        let a = ids.viber_token();
        let b = ids.viber_token();
        assert!(a > 1 << 53 && b > a && i64::try_from(b).is_ok());
    }
}
