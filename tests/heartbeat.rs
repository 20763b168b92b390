//! The watchdog heartbeat through the library: the real HTTP front end on loopback, a stand-in
//! registered under the conversation actor's name, and a datagram socket standing in for
//! systemd's. A conversation actor that never answers gets no `WATCHDOG=1`.

mod support;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use parley::actor::{CONVERSATION_ACTOR, ConversationMsg};
use parley::http::{self, HttpState};
use parley::systemd::Notifier;
use parley::systemd::watchdog::{Heartbeat, HeartbeatTiming, Verdict};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Actor names are process-wide: the tests here take turns with the conversation actor's name.
static NAME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stands in for the conversation actor. `answers: false` keeps every ping's reply port and never
/// replies, as a conversation actor stuck in a long call would.
struct StandIn {
    answers: bool,
}

impl Actor for StandIn {
    type Msg = ConversationMsg;
    type State = Vec<RpcReplyPort<()>>;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, _args: ()) -> Result<Self::State, ActorProcessingErr> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        held: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let ConversationMsg::Ping(reply) = message {
            if self.answers {
                let _ = reply.send(());
            } else {
                held.push(reply);
            }
        }
        Ok(())
    }
}

/// The real front end on a free loopback port, and a socket standing in for systemd's.
struct Setup {
    front_end: std::net::SocketAddr,
    socket: UnixDatagram,
    notifier: Notifier,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, support::base_config(&dir.path().join("store"))).unwrap();
    let config = parley::config::load(&config_path).expect("the base config is valid").config;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_end = listener.local_addr().unwrap();
    tokio::spawn(http::serve(
        listener,
        Arc::new(HttpState::new(Arc::new(config), parley::feed::FeedHub::new(16))),
        std::future::pending(),
    ));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    Setup { front_end, socket, notifier: Notifier::to_socket(&socket_path), _dir: dir }
}

fn datagrams(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

fn heartbeat(setup: &Setup, deadline: Duration) -> Heartbeat {
    Heartbeat {
        front_end: setup.front_end,
        timing: HeartbeatTiming { interval: deadline * 2, deadline },
        notifier: setup.notifier.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_actor_that_never_answers_gets_no_watchdog_beat() {
    let _turn = NAME.lock().await;
    let setup = setup().await;
    let (stuck, handle) =
        Actor::spawn(Some(CONVERSATION_ACTOR.to_owned()), StandIn { answers: false }, ()).await.unwrap();

    let verdict = heartbeat(&setup, Duration::from_millis(500)).beat().await;
    let Verdict::NotAnswering(reasons) = verdict else { panic!("a stuck conversation actor was judged alive") };
    assert!(reasons.iter().any(|r| r == "conversation actor: no answer to a ping within 500 ms"), "{reasons:?}");
    assert_eq!(datagrams(&setup.socket), Vec::<String>::new(), "no WATCHDOG=1 for a stuck daemon");

    stuck.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_conversation_actor_at_all_gets_no_watchdog_beat() {
    let _turn = NAME.lock().await;
    let setup = setup().await;
    let verdict = heartbeat(&setup, Duration::from_millis(200)).beat().await;
    assert_eq!(
        verdict,
        Verdict::NotAnswering(vec!["conversation actor: not running for 200 ms".into()]),
        "the front end answers, the store's actor is missing"
    );
    assert!(datagrams(&setup.socket).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_and_conversation_actor_that_answer_get_one_beat_each_time() {
    let _turn = NAME.lock().await;
    let setup = setup().await;
    let (answering, handle) =
        Actor::spawn(Some(CONVERSATION_ACTOR.to_owned()), StandIn { answers: true }, ()).await.unwrap();
    // A generous deadline: an answer ends the probe at once, so this costs nothing when idle.
    let beat = heartbeat(&setup, Duration::from_secs(20));
    for _ in 0..2 {
        assert_eq!(beat.beat().await, Verdict::Alive);
    }
    assert_eq!(datagrams(&setup.socket), ["WATCHDOG=1\n", "WATCHDOG=1\n"]);
    answering.stop(None);
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_that_does_not_answer_gets_no_watchdog_beat() {
    let _turn = NAME.lock().await;
    let mut setup = setup().await;
    // Accepts connections (the kernel does) but never reads them: a hung accept loop.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    setup.front_end = hung.local_addr().unwrap();
    let (answering, handle) =
        Actor::spawn(Some(CONVERSATION_ACTOR.to_owned()), StandIn { answers: true }, ()).await.unwrap();
    let verdict = heartbeat(&setup, Duration::from_millis(300)).beat().await;
    let Verdict::NotAnswering(reasons) = verdict else { panic!("a hung front end was judged alive") };
    assert!(
        reasons.iter().any(|r| r.starts_with("http front end: GET /health on 127.0.0.1:")
            && r.ends_with("did not answer within 300 ms")),
        "{reasons:?}"
    );
    assert!(datagrams(&setup.socket).is_empty());
    drop(hung);
    answering.stop(None);
    handle.await.unwrap();
}
