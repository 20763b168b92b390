//! The open-file limit. Every connection is a file descriptor, so the default soft limit (1024)
//! would be the real connection cap, below `server.max_connections`; the hard limit (systemd's
//! `LimitNOFILE=`) is what the operator meant.

use std::io;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors the daemon needs besides its connections: the listener, sled's files, the async
/// runtime, outgoing HTTP connections, stdio, with room to spare.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// The open-file limit after [`raise_to_hard_limit`]. `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    /// The soft limit before, when it was raised (it was below the hard limit, so finite).
    pub raised_from: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit. On failure the limit stays as it was.
pub fn raise_to_hard_limit() -> Result<FdLimit, io::Error> {
    let before = getrlimit(Resource::Nofile);
    if before.current == before.maximum {
        return Ok(FdLimit { soft: before.current, hard: before.maximum, raised_from: None });
    }
    setrlimit(Resource::Nofile, Rlimit { current: before.maximum, maximum: before.maximum })?;
    let after = getrlimit(Resource::Nofile);
    Ok(FdLimit { soft: after.current, hard: after.maximum, raised_from: before.current })
}

/// How many connections fit under the soft limit `soft`, leaving [`RESERVED_DESCRIPTORS`].
pub fn connections_that_fit(soft: Option<u64>) -> Option<u64> {
    soft.map(|soft| soft.saturating_sub(RESERVED_DESCRIPTORS))
}

/// Logs the effective limit, and warns when `max_connections` does not fit under it.
pub fn raise_and_report(max_connections: usize) {
    let soft = match raise_to_hard_limit() {
        Ok(limit) => {
            let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
            tracing::info!(
                message = "Open-file limit.",
                soft = %show(limit.soft),
                hard = %show(limit.hard),
                raised_from = %limit.raised_from.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            );
            limit.soft
        }
        Err(e) => {
            let soft = getrlimit(Resource::Nofile).current;
            tracing::warn!(message = "Cannot raise the open-file limit.", error = %e, soft = ?soft);
            soft
        }
    };
    if let Some(fit) = connections_that_fit(soft)
        && max_connections as u64 > fit
    {
        tracing::warn!(
            message = "server.max_connections is above what the open-file limit allows; accepts will fail before the cap. \
                       Raise LimitNOFILE (systemd) or lower server.max_connections.",
            max_connections,
            connections_that_fit = fit,
            open_file_limit = soft,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_under_the_limit_less_the_reserve() {
        assert_eq!(connections_that_fit(Some(65_536)), Some(65_536 - RESERVED_DESCRIPTORS));
        assert_eq!(connections_that_fit(Some(1_024)), Some(1_024 - RESERVED_DESCRIPTORS));
        assert_eq!(connections_that_fit(Some(50)), Some(0));
        assert_eq!(connections_that_fit(None), None);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_limit() {
        let limit = raise_to_hard_limit().expect("raising the soft limit up to the hard one is always allowed");
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(getrlimit(Resource::Nofile).current, limit.hard);
    }
}
