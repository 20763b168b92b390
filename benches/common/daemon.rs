//! The release daemon on a temporary store, for the benches that drive it over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// `parley serve` on a temporary store; killed on drop (also when the bench panics).
pub struct Daemon {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `binary` (the release build under `cargo bench`, or another one) with the config
    /// `config(store path)` makes, and waits until `/ready` answers 200. The config must log
    /// `parley::app` at info (the `Listening.` line names the address).
    pub fn start(binary: &Path, config: impl FnOnce(&Path) -> String) -> Daemon {
        let dir = tempfile::tempdir().expect("a temporary directory for the bench store");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config(&dir.path().join("store"))).expect("write the bench config");
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let writer = log.clone();
        // Keep draining stderr for the whole run, or the daemon would block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Listening.")
                    && let Some(addr) = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = addr_tx.send(addr.to_owned());
                }
                writer.lock().expect("the log lock is never poisoned").push(line);
            }
        });
        let mut daemon = Daemon { addr: SocketAddr::from(([127, 0, 0, 1], 0)), child, log, _dir: dir };
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("parley did not log `Listening.` within 30 s; log:\n{}", daemon.log_text()));
        daemon.addr = addr.parse().expect("the daemon logs a socket address");
        daemon.wait_ready();
        daemon
    }

    /// The release binary `cargo bench` built.
    pub fn release_binary() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_parley"))
    }

    /// Polls `/ready` (store and channel actors up) with a deadline.
    fn wait_ready(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = std::net::TcpStream::connect(self.addr).and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                write!(stream, "GET /ready HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr)?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                Ok(answer.starts_with("HTTP/1.1 200"))
            });
            if matches!(ready, Ok(true)) {
                return;
            }
            assert!(Instant::now() < deadline, "parley never became ready; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("the log lock is never poisoned").join("\n")
    }

    /// The last `most` warning and error lines the daemon logged, if any.
    pub fn print_log_tail(&self, most: usize) {
        let log = self.log.lock().expect("the log lock is never poisoned");
        let noisy: Vec<&String> = log.iter().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
        if !noisy.is_empty() {
            println!("\nparley logged {} warning/error lines; the last ones:", noisy.len());
            for line in noisy.iter().rev().take(most).rev() {
                println!("  {line}");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
