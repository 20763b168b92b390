//! One kept-alive HTTP/1.1 client connection (hyper's low-level client, no pool) that opens
//! again after an error: the load generators' connection.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub struct KeepAlive {
    addr: SocketAddr,
    /// The `Host` header for requests on it.
    pub host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        let host = HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid Host header");
        KeepAlive { addr, host, sender: None }
    }

    /// The open connection, opening it first if there is none.
    pub async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("set just above"))
    }

    /// Drops the connection after a failure; the next request opens a fresh one.
    pub fn reset(&mut self) {
        self.sender = None;
    }
}
