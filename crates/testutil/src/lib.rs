//! Test utilities: run the real proxy and real user functions as processes on 127.0.0.1.
//!
//! Binaries come from `$CLOUDSTATE_BIN_DIR` when set (the test script builds them once);
//! otherwise the first use in a test process runs `cargo build` for them, so a plain
//! `cargo nextest run` works too. Every process writes its output to a log file that is printed
//! when a wait fails, and is killed when its handle is dropped.

pub mod postgres;

use std::collections::HashSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace root, from this crate's location.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// A free TCP port on 127.0.0.1, not handed out before by this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("can bind an ephemeral port")
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// The path of a workspace binary, building it (once per test process) unless
/// `$CLOUDSTATE_BIN_DIR` says where prebuilt binaries are.
pub fn binary(package: &str, name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOUDSTATE_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.exists(),
            "{} does not exist: CLOUDSTATE_BIN_DIR must hold the built binaries",
            path.display()
        );
        return path;
    }
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    if built
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned())
    {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {name} failed");
    }
    target_dir(&root).join("debug").join(name)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// A child process with its output in a log file; killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Process {
    /// Starts `command`, sending its stdout and stderr to a fresh log file.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Process> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cloudstate-{name}-"))
            .tempdir()?;
        let log = dir.path().join("output.log");
        let out = File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log,
            _dir: Some(dir),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_for_exit(timeout)
            .with_context(|| format!("after SIGTERM to {}", self.name))
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its exit code.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not exit within {timeout:?}", self.name)
    }

    /// Whether the process has exited; its exit code if so.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| status.code())
    }

    /// Waits until `ready` holds, failing with the process's output after `timeout` or if the
    /// process exits.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(code) = self.exited() {
                bail!(
                    "{} exited ({code:?}) before {what}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not {what} after {timeout:?}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until the process has printed `needle` (a log line), failing with its output
    /// after `timeout` or if it exits.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let log = self.log.clone();
        self.wait_until(&format!("printing {needle:?}"), timeout, || {
            std::fs::read_to_string(&log).is_ok_and(|output| output.contains(needle))
        })
    }

    /// Waits until the process accepts TCP connections on `port`.
    pub fn wait_for_port(&mut self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(&format!("listening on port {port}"), timeout, || {
            port_open(port)
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- output of {} ---\n{}", self.name, self.output());
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(100),
    )
    .is_ok()
}

/// The HTTP status of `GET http://127.0.0.1:<port><path>`, if anything answers.
pub fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // Longer than the proxy's bounded readiness checks, so that an answer is always read.
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// How a proxy is started.
pub struct ProxyOptions {
    /// Port of the user function.
    pub user_function_port: u16,
    /// `--store` value.
    pub store: String,
    /// More flags.
    pub args: Vec<String>,
}

/// A running `cloudstate-proxy`.
pub struct Proxy {
    /// The process.
    pub process: Process,
    /// Its port.
    pub port: u16,
}

impl Proxy {
    /// Starts the proxy on a free port and waits until it serves `/live`.
    pub fn start(options: ProxyOptions) -> anyhow::Result<Proxy> {
        Self::start_on(free_port(), options)
    }

    /// Starts the proxy on `port` and waits until it serves `/live`.
    pub fn start_on(port: u16, options: ProxyOptions) -> anyhow::Result<Proxy> {
        let mut command = Command::new(binary("cloudstate-proxy", "cloudstate-proxy"));
        command
            .args(["--http-interface", "127.0.0.1"])
            .args(["--http-port", &port.to_string()])
            .args([
                "--user-function-port",
                &options.user_function_port.to_string(),
            ])
            .args(["--store", &options.store])
            .args(["--discovery-max-backoff", "200ms"])
            .args(&options.args)
            .env("RUST_LOG", "info,cloudstate_engine=debug");
        let mut process = Process::spawn("cloudstate-proxy", command)?;
        process.wait_until("live", Duration::from_secs(30), || {
            http_get_status(port, "/live") == Some(200)
        })?;
        Ok(Proxy { process, port })
    }

    /// Waits until `/ready` answers 200 (discovery done, store reachable).
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let port = self.port;
        self.process.wait_until("ready", timeout, || {
            http_get_status(port, "/ready") == Some(200)
        })
    }

    /// A gRPC channel to the proxy.
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))?
                .connect()
                .await?,
        )
    }
}

/// A temporary directory for a test's data, removed at the end of the test.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("can create a temporary directory")
}
