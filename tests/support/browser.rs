//! Headless Chromium driven through its own chromedriver (WebDriver, with `fantoccini`), for the
//! web inbox's tests and bench. Each `Browser` starts a chromedriver on a free port with a fresh,
//! empty profile and kills the whole process group on drop, so no browser outlives its test.
//!
//! Chromium is required: a machine without it fails here with a message saying what to install
//! (the tests never skip themselves).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags that keep headless Chromium quiet on a closed network (no background traffic).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
];

/// A running headless Chromium and its chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a window of `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        Browser::launch(width, height, false).await
    }

    /// Starts Chromium as a phone whose screen is `width` × `height` CSS pixels (a window cannot
    /// be narrower than about 500 px; the phone's viewport can).
    pub async fn phone(width: u32, height: u32) -> Browser {
        Browser::launch(width, height, true).await
    }

    async fn launch(width: u32, height: u32, phone: bool) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the inbox tests need Chromium (apt-get install chromium chromium-driver)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop can end chromedriver and every Chromium it started.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut options = json!({ "binary": CHROMIUM, "args": args });
        if phone {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "touch": true } });
        }
        let capabilities = json!({
            "browserName": "chrome",
            // An alert stays open for the test to find (the default would dismiss it quietly).
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": options,
        });
        let Value::Object(capabilities) = capabilities else { unreachable!("an object") };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let attempt =
                ClientBuilder::new(HttpConnector::new()).capabilities(capabilities.clone()).connect(&url).await;
            match attempt {
                Ok(client) => break client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "chromedriver did not start a browser: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Browser { client, driver, _profile: profile }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` every 50 ms until it returns something truthy; returns that value and when.
    pub async fn wait_for(&self, what: &str, script: &str, args: &[Value], within: Duration) -> (Value, Instant) {
        let deadline = Instant::now() + within;
        loop {
            let value = self.client.execute(script, args.to_vec()).await.unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return (value, Instant::now());
            }
            if Instant::now() > deadline {
                let body = self.text("body").await;
                panic!("waited {within:?} for {what}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the first element matching `css` (empty when there is none).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types `text` into the element matching `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        element.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        element.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The text of an open alert, confirm or prompt dialog, if one is open.
    pub async fn alert(&self) -> Option<String> {
        match self.client.get_alert_text().await {
            Ok(text) => Some(text),
            Err(error) if error.is_no_such_alert() => None,
            Err(error) => panic!("asking for an alert failed: {error}"),
        }
    }

    /// Saves a PNG of the viewport at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot's folder");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the WebDriver session (Chromium exits), then chromedriver (on drop).
    pub async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// SIGKILL to the driver's process group (chromedriver and the Chromium processes it started).
fn kill_group(driver: &mut Child) {
    if matches!(driver.try_wait(), Ok(Some(_))) {
        return;
    }
    let group = format!("-{}", driver.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    let _ = driver.kill();
    let _ = driver.wait();
}

/// Where the build writes (`CARGO_TARGET_DIR`, else `target/` beside Cargo.toml): screenshots go there.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}
