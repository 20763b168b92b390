//! `parley sandbox` started as a real process for the tests, its address read from its log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running sandbox. Killed on drop.
pub struct Sandbox {
    pub addr: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Sandbox {
    /// Starts a sandbox on a config file in `dir`, which it keeps alive.
    pub fn start_owning(config_path: &Path, extra_args: &[&str], dir: tempfile::TempDir) -> Sandbox {
        let mut sandbox = Sandbox::start_with(config_path, extra_args);
        sandbox._dir = Some(dir);
        sandbox
    }

    /// Starts a sandbox on an existing config file.
    pub fn start_with(config_path: &Path, extra_args: &[&str]) -> Sandbox {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["sandbox", "--listen", "127.0.0.1:0", "--config"])
            .arg(config_path)
            .args(extra_args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start parley sandbox");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Sandbox listening.")
                    && let Some(addr) = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = addr_tx.send(addr.to_owned());
                }
                writer.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("sandbox did not start; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        Sandbox { addr, child, log, _dir: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
