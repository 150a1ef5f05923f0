//! A small WebDriver client for the console's browser tests: Debian's
//! `chromedriver` driving headless `chromium`, over the W3C WebDriver
//! protocol on loopback (plain HTTP with the workspace's reqwest: no TLS
//! stack, no browser download). Only what the tests use: open a page, run
//! a script, click, wait, take a screenshot.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Every WebDriver call is bounded.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    driver: Driver,
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    _profile: TempDir,
}

/// chromedriver, stopped on drop (whatever fails after it started).
struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed on drop (the browser's profile).
struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub type Result<T> = std::result::Result<T, String>;

impl Browser {
    /// Start `chromedriver` on a port the OS picks and open a headless
    /// Chromium session with a window of `width` x `height`.
    pub fn start(width: u32, height: u32) -> Result<Browser> {
        let driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run chromedriver ({e}): install `chromium chromium-driver` (scripts/install-deps)")
            })?;
        let mut driver = Driver(driver);
        // "ChromeDriver was started successfully on port N."
        let stdout = driver.0.stdout.take().ok_or("no chromedriver stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) if !p.is_empty() => p,
            _ => return Err("chromedriver did not say its port within 20 s".into()),
        };
        let base = format!("http://127.0.0.1:{port}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // reqwest's TLS wants a provider even for plain HTTP.
        myha_http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let profile = std::env::temp_dir().join(format!(
            "myha-chromium-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let profile = TempDir(profile);
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            rt,
            http,
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", b._profile.0.display()),
                ],
            },
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?
            .to_string();
        Ok(b)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let req = self.http.request(method, &url);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let (status, text) = self.rt.block_on(async {
            let r = req.send().await.map_err(|e| format!("{url}: {e}"))?;
            let status = r.status();
            let text = r.text().await.map_err(|e| format!("{url}: {e}"))?;
            Ok::<_, String>((status, text))
        })?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text:.300}"))?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// Run `script` (a function body: `return …`) in the page.
    pub fn eval(&self, script: &str) -> Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Poll `script` until it returns something other than null, false or
    /// an empty string; fail after `limit` with `what` and the last value.
    pub fn wait_for(&self, what: &str, limit: Duration, script: &str) -> Result<Value> {
        let start = Instant::now();
        let mut last;
        loop {
            match self.eval(script) {
                Ok(v)
                    if !matches!(&v, Value::Null | Value::Bool(false))
                        && v.as_str() != Some("") =>
                {
                    return Ok(v)
                }
                Ok(v) => last = v,
                Err(e) => last = Value::String(e),
            }
            if start.elapsed() > limit {
                return Err(format!("{what}: not within {limit:?} (last: {last})"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Click the element `css` selects, as a user would.
    pub fn click(&self, css: &str) -> Result<()> {
        let el = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no element {css}: {el}"))?
            .to_string();
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .map(|_| ())
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.call("GET", &self.session_path("/screenshot"), None)?;
        base64_decode(v.as_str().ok_or("screenshot is not a string")?)
    }

    /// A PNG of the whole page, `width` pixels wide (Chromium's DevTools
    /// `Page.captureScreenshot` beyond the viewport, through chromedriver).
    pub fn full_page_screenshot(&self, width: u32, height: u32) -> Result<Vec<u8>> {
        let v = self.call(
            "POST",
            &self.session_path("/goog/cdp/execute"),
            Some(json!({ "cmd": "Page.captureScreenshot", "params": {
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
            }})),
        )?;
        base64_decode(v["data"].as_str().ok_or("no screenshot data")?)
    }

    /// Resize the window.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.call(
            "POST",
            &self.session_path("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )
        .map(|_| ())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
    }
}

/// Debian's browser (`chromium`), or `MYHA_CHROMIUM`.
fn chromium_binary() -> String {
    std::env::var("MYHA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c).ok_or("bad base64")? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
    assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
}
