//! The watchdog heartbeat: `WATCHDOG=1` goes to systemd only while the daemon really works.
//!
//! Every half of `WATCHDOG_USEC` (sd_watchdog_enabled(3) recommends half) two probes run at once:
//! a real HTTP request, `GET /health`, to the daemon's own listener (so the accept loop, hyper and
//! the router are all exercised), and a [`ConversationMsg::Ping`] call to the conversation actor
//! (the store's only writer: if it hangs, nothing gets stored). Each must answer within a quarter
//! of `WATCHDOG_USEC`. Only when both did is `WATCHDOG=1` sent; otherwise nothing is, and systemd
//! kills and restarts a daemon that stays hung for `WatchdogSec=`. Why a beat was withheld is
//! logged once per change of state, not on every beat.
//!
//! The decision ([`judge`]) and the timing ([`HeartbeatTiming::from_values`]) are pure; the probes
//! and the loop are the shell.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use ractor::rpc::CallResult;
use tokio::net::TcpStream;

use super::notify::Notifier;
use crate::actor::{ConversationMsg, conversation_actor};

/// The shortest heartbeat interval, whatever `WATCHDOG_USEC` says (a tiny value would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// How often the heartbeat runs and how long each probe may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatTiming {
    /// Between two beats: half of `WATCHDOG_USEC`.
    pub interval: Duration,
    /// For each probe: a quarter of `WATCHDOG_USEC`, so a beat ends before the next is due.
    pub deadline: Duration,
}

impl HeartbeatTiming {
    /// The timing systemd asks of this process, or `None` when it asks for no watchdog.
    pub fn from_env() -> Option<Self> {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        HeartbeatTiming::from_values(usec.as_deref(), pid.as_deref(), std::process::id())
    }

    /// From the values of `WATCHDOG_USEC` and `WATCHDOG_PID` (sd_watchdog_enabled(3)): on when
    /// `WATCHDOG_USEC` is a positive number of microseconds and `WATCHDOG_PID` is unset or
    /// `our_pid` (a watchdog meant for another process, such as a parent, is not ours to feed).
    pub fn from_values(watchdog_usec: Option<&str>, watchdog_pid: Option<&str>, our_pid: u32) -> Option<Self> {
        let usec: u64 = watchdog_usec?.trim().parse().ok().filter(|u| *u > 0)?;
        if let Some(pid) = watchdog_pid {
            let pid: u32 = pid.trim().parse().ok()?;
            if pid != our_pid {
                return None;
            }
        }
        let period = Duration::from_micros(usec);
        Some(HeartbeatTiming { interval: (period / 2).max(MIN_INTERVAL), deadline: (period / 4).max(MIN_INTERVAL / 2) })
    }
}

/// Where the heartbeat's HTTP request goes: the bound address, or the loopback address of the
/// same family when the daemon listens on every address (0.0.0.0 or ::).
pub fn probe_address(listening: SocketAddr) -> SocketAddr {
    let ip = match listening.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listening.port())
}

/// How one probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Answered,
    /// No answer in time, or a wrong one: why, in words.
    Failed(String),
}

/// The heartbeat's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Both parts answered: send `WATCHDOG=1`.
    Alive,
    /// Something did not answer: send nothing. One reason per part that failed.
    NotAnswering(Vec<String>),
}

impl Verdict {
    /// True when `WATCHDOG=1` may be sent.
    pub fn is_alive(&self) -> bool {
        matches!(self, Verdict::Alive)
    }
}

/// The decision: alive only when the HTTP front end and the conversation actor both answered.
pub fn judge(front_end: &Probe, conversation: &Probe) -> Verdict {
    let reasons: Vec<String> = [("http front end", front_end), ("conversation actor", conversation)]
        .into_iter()
        .filter_map(|(part, probe)| match probe {
            Probe::Answered => None,
            Probe::Failed(why) => Some(format!("{part}: {why}")),
        })
        .collect();
    if reasons.is_empty() { Verdict::Alive } else { Verdict::NotAnswering(reasons) }
}

/// `GET /health` on the daemon's own listener; answered means a 200 within `deadline`.
pub async fn probe_front_end(addr: SocketAddr, deadline: Duration) -> Probe {
    match tokio::time::timeout(deadline, get_health(addr)).await {
        Ok(Ok(StatusCode::OK)) => Probe::Answered,
        Ok(Ok(status)) => Probe::Failed(format!("GET /health on {addr} answered {status}")),
        Ok(Err(why)) => Probe::Failed(format!("GET /health on {addr} failed: {why}")),
        Err(_) => Probe::Failed(format!("GET /health on {addr} did not answer within {} ms", deadline.as_millis())),
    }
}

/// One request on a fresh connection. Everything (socket, connection task) is dropped with the
/// future, so a probe that times out leaves nothing behind.
async fn get_health(addr: SocketAddr) -> Result<StatusCode, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let request = Request::get("/health")
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request);
    tokio::pin!(connection, response);
    // The connection future drives the socket; with `Connection: close` it may end in the same
    // poll that delivers the answer, so an ended connection still leaves the answer to collect.
    let response = tokio::select! {
        response = &mut response => response,
        ended = &mut connection => match ended {
            Ok(()) => response.await,
            Err(e) => return Err(e.to_string()),
        },
    };
    response.map(|r| r.status()).map_err(|e| e.to_string())
}

/// A `Ping` call to the conversation actor, answered within `deadline`. An actor that is being
/// restarted (not registered for a moment) is waited for within the same deadline.
pub async fn probe_conversation(deadline: Duration) -> Probe {
    let end = Instant::now() + deadline;
    let actor = loop {
        if let Some(actor) = conversation_actor() {
            break actor;
        }
        if Instant::now() >= end {
            return Probe::Failed(format!("not running for {} ms", deadline.as_millis()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let left = end.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    match actor.call(ConversationMsg::Ping, Some(left)).await {
        Ok(CallResult::Success(())) => Probe::Answered,
        Ok(CallResult::Timeout) => Probe::Failed(format!("no answer to a ping within {} ms", deadline.as_millis())),
        Ok(CallResult::SenderError) => Probe::Failed("stopped while answering a ping".to_owned()),
        Err(e) => Probe::Failed(format!("a ping could not be delivered: {e}")),
    }
}

/// The heartbeat of one daemon.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The daemon's own listener, as [`probe_address`] gives it.
    pub front_end: SocketAddr,
    pub timing: HeartbeatTiming,
    pub notifier: Notifier,
}

impl Heartbeat {
    /// Runs both probes at once and sends `WATCHDOG=1` when both answered.
    pub async fn beat(&self) -> Verdict {
        let (front_end, conversation) = tokio::join!(
            probe_front_end(self.front_end, self.timing.deadline),
            probe_conversation(self.timing.deadline)
        );
        let verdict = judge(&front_end, &conversation);
        if verdict.is_alive() {
            self.notifier.watchdog();
        }
        verdict
    }

    /// Beats every `interval` until the task is dropped, logging each change of verdict once.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.timing.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous = Verdict::Alive;
        loop {
            ticks.tick().await;
            let verdict = self.beat().await;
            if verdict == previous {
                continue;
            }
            match &verdict {
                Verdict::NotAnswering(reasons) => {
                    let reasons = reasons.join("; ");
                    tracing::error!(
                        message = "Heartbeat failed: not telling systemd we are alive; it restarts the daemon if this lasts.",
                        reasons = %reasons
                    );
                    self.notifier.status(&format!("heartbeat failed: {reasons}"));
                }
                Verdict::Alive => {
                    tracing::info!(message = "Heartbeat answered again.");
                    self.notifier.status("running; heartbeat answered again");
                }
            }
            previous = verdict;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_off_without_watchdog_usec_or_with_nonsense() {
        assert_eq!(HeartbeatTiming::from_values(None, None, 42), None);
        assert_eq!(HeartbeatTiming::from_values(Some("0"), None, 42), None);
        assert_eq!(HeartbeatTiming::from_values(Some("thirty"), None, 42), None);
        assert_eq!(HeartbeatTiming::from_values(Some("-5"), None, 42), None);
        assert_eq!(HeartbeatTiming::from_values(Some(""), None, 42), None);
    }

    #[test]
    fn the_heartbeat_runs_at_half_the_watchdog_period_with_a_quarter_for_each_probe() {
        let timing = HeartbeatTiming::from_values(Some("30000000"), None, 42).unwrap();
        assert_eq!(
            timing,
            HeartbeatTiming { interval: Duration::from_secs(15), deadline: Duration::from_millis(7500) }
        );
    }

    #[test]
    fn watchdog_pid_is_honoured_only_when_it_is_ours() {
        let ours = HeartbeatTiming::from_values(Some("2000000"), Some("42"), 42);
        assert_eq!(ours.map(|t| t.interval), Some(Duration::from_secs(1)));
        assert_eq!(HeartbeatTiming::from_values(Some("2000000"), Some("1"), 42), None, "a parent's watchdog");
        assert_eq!(HeartbeatTiming::from_values(Some("2000000"), Some("not-a-pid"), 42), None);
    }

    #[test]
    fn a_tiny_watchdog_period_does_not_make_the_heartbeat_spin() {
        let timing = HeartbeatTiming::from_values(Some("1"), None, 42).unwrap();
        assert_eq!(timing.interval, MIN_INTERVAL);
        assert!(timing.deadline > Duration::ZERO);
    }

    #[test]
    fn the_probe_goes_to_the_loopback_of_the_family_when_listening_everywhere() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(probe_address(at("0.0.0.0:8000")), at("127.0.0.1:8000"));
        assert_eq!(probe_address(at("[::]:8000")), at("[::1]:8000"));
        assert_eq!(probe_address(at("127.0.0.1:8000")), at("127.0.0.1:8000"));
        assert_eq!(probe_address(at("192.0.2.7:443")), at("192.0.2.7:443"));
    }

    #[test]
    fn alive_only_when_both_parts_answered() {
        let failed = |why: &str| Probe::Failed(why.to_owned());
        assert_eq!(judge(&Probe::Answered, &Probe::Answered), Verdict::Alive);
        assert_eq!(
            judge(&Probe::Answered, &failed("no answer to a ping within 7500 ms")),
            Verdict::NotAnswering(vec!["conversation actor: no answer to a ping within 7500 ms".into()])
        );
        assert_eq!(
            judge(&failed("connect: refused"), &Probe::Answered),
            Verdict::NotAnswering(vec!["http front end: connect: refused".into()])
        );
        let both = judge(&failed("a"), &failed("b"));
        assert_eq!(both, Verdict::NotAnswering(vec!["http front end: a".into(), "conversation actor: b".into()]));
        assert!(!both.is_alive());
    }
}
