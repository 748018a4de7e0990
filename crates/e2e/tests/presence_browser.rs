//! The presence example's web page in two headless Chromium browsers, end to end: the presence
//! user function serves the page on one port, the real proxy (with CORS allowing the page's
//! origin) serves the presence API on another, and each browser, driven over WebDriver
//! (Debian's `chromedriver`, installed by scripts/install-browser.sh), signs in, watches the
//! other user and sees them come online and go offline, live, through `fetch`-streamed
//! newline-delimited JSON. Screenshots are kept under `target/artifacts/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use cloudstate_e2e::{START_TIMEOUT, UserFunction};
use cloudstate_testutil::{Process, Proxy, ProxyOptions, binary, free_port, workspace_root};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use tokio::net::TcpStream;

/// Bounds each wait for the page to change; never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// The key of a WebDriver element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process.
struct Driver {
    port: u16,
    _process: Process,
}

impl Driver {
    fn start() -> Driver {
        let chromedriver = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|path| {
                Command::new(path)
                    .arg("--version")
                    .output()
                    .is_ok_and(|output| output.status.success())
            })
            .expect(
                "chromedriver is missing: run scripts/install-browser.sh (scripts/test.sh does)",
            );
        let port = free_port();
        let mut command = Command::new(chromedriver);
        command.arg(format!("--port={port}"));
        let mut process = Process::spawn("chromedriver", command).unwrap();
        process.wait_for_port(port, START_TIMEOUT).unwrap();
        Driver {
            port,
            _process: process,
        }
    }

    /// Sends one WebDriver command and returns its `value`; panics on a WebDriver error.
    async fn command(&self, method: Method, path: &str, body: Option<Json>) -> Json {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let reply: Json = serde_json::from_slice(&bytes).unwrap();
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {reply}"
        );
        reply["value"].clone()
    }

    /// A new headless Chromium session.
    async fn session(&self) -> Browser<'_> {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=640,480",
            ]},
        }}});
        let value = self
            .command(Method::POST, "/session", Some(capabilities))
            .await;
        Browser {
            driver: self,
            session: value["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

/// One browser session, showing the presence page.
struct Browser<'d> {
    driver: &'d Driver,
    session: String,
}

impl Browser<'_> {
    async fn command(&self, method: Method, path: &str, body: Option<Json>) -> Json {
        let path = format!("/session/{}{path}", self.session);
        self.driver.command(method, &path, body).await
    }

    async fn open(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        let path = format!("/element/{element}/value");
        self.command(Method::POST, &path, Some(json!({"text": text})))
            .await;
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        let path = format!("/element/{element}/click");
        self.command(Method::POST, &path, Some(json!({}))).await;
    }

    /// Runs `script` (a function body) in the page and returns its result.
    async fn run(&self, script: &str, args: Json) -> Json {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn sign_in(&self, name: &str) {
        self.type_into("#name", name).await;
        self.click("#sign-in-button").await;
    }

    async fn sign_out(&self) {
        self.click("#sign-out-button").await;
    }

    async fn watch(&self, friend: &str) {
        self.type_into("#friend", friend).await;
        self.click("#add-friend-button").await;
    }

    /// Waits until the page shows `friend` online (`true`) or offline (`false`).
    async fn wait_until_shown(&self, friend: &str, online: bool) {
        let script = "const item = document.querySelector(`li[data-user=\"${arguments[0]}\"]`); \
                      return [item ? item.dataset.online : null, \
                              document.getElementById('error').textContent];";
        let deadline = Instant::now() + PATIENCE;
        loop {
            let shown = self.run(script, json!([friend])).await;
            if shown[0] == json!(online.to_string()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {PATIENCE:?} the page still shows {friend} as {} (error on the page: {})",
                shown[0],
                shown[1]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot as `target/artifacts/<name>.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.command(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = workspace_root().join("target/artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser<'_> {
    /// Ends the session, and with it its Chromium, also when the test fails midway (a blocking
    /// request: there is no async drop).
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.driver.port)) else {
            return;
        };
        // chromedriver ends the session even if this stops waiting for its answer.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.session, self.driver.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return;
        }
        // Wait for the answer (the session is gone then), which chromedriver sends without
        // closing the connection: read up to the end of its headers.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_see_each_other_come_online_and_go_offline() {
    let (port, ui_port, proxy_port) = (free_port(), free_port(), free_port());
    let mut command = Command::new(binary("presence", "presence"));
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("UI_PORT", ui_port.to_string())
        .env("PROXY_URL", format!("http://127.0.0.1:{proxy_port}"));
    let user_function = UserFunction::start("presence", command, port).unwrap();
    // The page's origin differs from the proxy's (another port): calls need CORS.
    let page = format!("http://127.0.0.1:{ui_port}");
    let mut proxy = Proxy::start_on(
        proxy_port,
        ProxyOptions {
            user_function_port: user_function.port,
            store: "memory".into(),
            args: vec!["--cors-allowed-origins".into(), page.clone()],
        },
    )
    .unwrap();
    proxy.wait_ready(START_TIMEOUT).unwrap();

    let driver = Driver::start();
    let ann = driver.session().await;
    let bob = driver.session().await;
    ann.open(&format!("{page}/")).await;
    bob.open(&format!("{page}/")).await;

    ann.sign_in("ann").await;
    ann.watch("bob").await;
    ann.wait_until_shown("bob", false).await;
    bob.sign_in("bob").await;
    bob.watch("ann").await;
    ann.wait_until_shown("bob", true).await;
    bob.wait_until_shown("ann", true).await;
    let shot = ann.screenshot("presence-ann-sees-bob-online").await;
    bob.screenshot("presence-bob-sees-ann-online").await;

    bob.sign_out().await;
    ann.wait_until_shown("bob", false).await;
    ann.sign_out().await;
    bob.wait_until_shown("ann", false).await;
    bob.screenshot("presence-bob-sees-ann-offline").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 0);
}
