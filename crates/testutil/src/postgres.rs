//! A throw-away PostgreSQL cluster for tests and benchmarks.
//!
//! [`PostgresServer::start`] runs `initdb` into a fresh temporary directory (as the `postgres`
//! OS user when the test runs as root, since `initdb` refuses root), configures the cluster to
//! listen on 127.0.0.1 on a free port with its unix socket in that directory, trust
//! authentication and `fsync = on` (durability is what the tests measure), starts it with
//! `pg_ctl start -w` and creates the database [`DATABASE`]. Dropping the server stops it
//! (`pg_ctl stop -m immediate`) and deletes the directory; a watchdog process does the same if
//! the test process dies without dropping it (killed, or holding it in a `static`).
//!
//! Starting a cluster takes about a second, so a test binary normally shares one
//! ([`PostgresServer::shared`]) and gives every test its own database
//! ([`PostgresServer::create_database`]). Tests that stop the server (outages) start their own.
//!
//! The server binaries (`initdb`, `pg_ctl`, `postgres`, and the clients `createdb`, `psql`,
//! `pgbench`) are looked up in `PATH` and in `/usr/lib/postgresql/*/bin`. If they are missing,
//! starting fails with a message naming what is missing: tests that need PostgreSQL fail rather
//! than skip.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, anyhow, bail};

/// The database every server has from the start; [`PostgresServer::url`] points at it.
pub const DATABASE: &str = "cloudstate";

/// The server programs a cluster needs; the clients are optional until used.
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// A running (or deliberately stopped) PostgreSQL cluster of its own, on 127.0.0.1.
pub struct PostgresServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster), the unix socket and `postgres.log`; deleted on drop.
    dir: tempfile::TempDir,
    port: u16,
    /// Whether server programs run as the `postgres` OS user (the test runs as root).
    as_postgres: bool,
    /// Stops the cluster and deletes `dir` once the test process is gone.
    watchdog: Mutex<Option<Child>>,
    databases: AtomicU32,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl PostgresServer {
    /// Creates, configures and starts a new cluster in a fresh temporary directory, and creates
    /// the database [`DATABASE`]. Fails, naming what is missing, if the PostgreSQL binaries are
    /// not installed, and with the server's log if it does not start.
    pub fn start() -> anyhow::Result<PostgresServer> {
        Self::start_in(&std::env::temp_dir())
    }

    /// Like [`start`](Self::start), with the cluster's directory inside `parent` (which the
    /// `postgres` user must be able to enter), e.g. to put it on a particular file system.
    pub fn start_in(parent: &Path) -> anyhow::Result<PostgresServer> {
        let bin = bin_dir()?;
        let as_postgres = running_as_root()?;
        let dir = tempfile::Builder::new()
            .prefix("cloudstate-pg-")
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "creating a directory for PostgreSQL in {}",
                    parent.display()
                )
            })?;
        let path = dir
            .path()
            .to_str()
            .context("the temporary directory is not UTF-8")?;
        if path.contains('\'') || path.len() > 90 {
            bail!("{path} cannot hold a PostgreSQL socket: too long or contains a quote");
        }
        if as_postgres {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {path} to the postgres user"))?;
        }
        let server = PostgresServer {
            bin,
            port: crate::free_port(),
            as_postgres,
            dir,
            watchdog: Mutex::new(None),
            databases: AtomicU32::new(0),
        };
        server.init()?;
        server.start_again()?;
        server.spawn_watchdog()?;
        server.create_named_database(DATABASE)?;
        Ok(server)
    }

    /// The server shared by every test in this process, started by the first call. Its
    /// failure to start is returned to every caller. Never stop it: other tests use it.
    pub fn shared() -> anyhow::Result<&'static PostgresServer> {
        static SHARED: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| PostgresServer::start().map_err(|error| format!("{error:#}")))
            .as_ref()
            .map_err(|error| anyhow!("{error}"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/cloudstate`: the database [`DATABASE`].
    pub fn url(&self) -> String {
        self.database_url(DATABASE)
    }

    /// The URL of the database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the PostgreSQL programs in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Creates a new, empty database with a name of its own and returns its URL.
    pub fn create_database(&self) -> anyhow::Result<String> {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::Relaxed)
        );
        self.create_named_database(&name)?;
        Ok(self.database_url(&name))
    }

    /// A client program (`psql`, `pgbench`, `createdb`, ...) of the same installation, with
    /// `PGHOST`, `PGPORT`, `PGUSER` and `PGDATABASE` set to this server and [`DATABASE`].
    pub fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", DATABASE)
            .stdin(Stdio::null());
        command
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): connections break as if it had
    /// crashed; committed transactions survive. For outage tests on a server of their own.
    pub fn stop(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let mut command = self.server_program("pg_ctl");
        command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]);
        run(command, "pg_ctl stop")?;
        Ok(())
    }

    /// Starts the server (again) on the same data directory and port and waits until it
    /// accepts connections; after [`stop`](Self::stop) it recovers from its write-ahead log.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let mut command = self.server_program("pg_ctl");
        command
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run(command, "pg_ctl start").map_err(|error| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow!("{error:#}\nserver log:\n{log}")
        })?;
        Ok(())
    }

    /// Runs `initdb` and writes the configuration.
    fn init(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let mut command = self.server_program("initdb");
        command
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            // initdb's own fsyncs only protect the fresh cluster against a power cut; the
            // server itself runs with fsync on.
            .args(["--no-sync", "--no-instructions"]);
        run(command, "initdb")?;
        let config = format!(
            "\n# cloudstate-testutil\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{socket}'\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             max_connections = 300\n\
             shared_buffers = 128MB\n",
            port = self.port,
            socket = self.dir.path().display(),
        );
        let conf = data.join("postgresql.conf");
        let mut contents = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        contents.push_str(&config);
        std::fs::write(&conf, contents).with_context(|| format!("writing {}", conf.display()))
    }

    fn create_named_database(&self, name: &str) -> anyhow::Result<()> {
        let mut command = self.client("createdb");
        command.arg(name);
        run(command, "createdb")?;
        Ok(())
    }

    /// Starts a detached process that, once this process has exited, stops the cluster and
    /// deletes its directory.
    fn spawn_watchdog(&self) -> anyhow::Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{runuser}'{pg_ctl}' -D '{data}' -m immediate stop",
            runuser = if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.path().display(),
        );
        let child = Command::new("setsid")
            .args(["sh", "-c", &script])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the PostgreSQL watchdog (setsid sh)")?;
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// A server program, run as the `postgres` user if this process is root.
    fn server_program(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        // The postgres user may not be allowed into the current directory.
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        // Already stopped is fine; the directory goes either way.
        let _ = self.stop();
    }
}

/// Runs `command` to completion; fails with its output unless it succeeds.
fn run(mut command: Command, what: &str) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {what}: {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {command:?}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: the first directory in `PATH` with
/// `initdb` (following symbolic links to the installation), else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| dir.join("initdb").canonicalize().ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .collect();
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    installed.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    candidates.extend(installed.into_iter().map(|(_, dir)| dir));
    let mut looked = Vec::new();
    for dir in candidates {
        let missing: Vec<_> = SERVER_PROGRAMS
            .into_iter()
            .filter(|program| !dir.join(program).is_file())
            .collect();
        if missing.is_empty() {
            return Ok(dir);
        }
        looked.push(format!(
            "{} (missing {})",
            dir.display(),
            missing.join(", ")
        ));
    }
    bail!(
        "PostgreSQL is not installed: the tests need {} (and createdb, pgbench) in PATH or in \
         /usr/lib/postgresql/<version>/bin; looked in: {}. Install it, e.g. `apt-get install \
         postgresql`",
        SERVER_PROGRAMS.join(", "),
        if looked.is_empty() {
            "no directory has initdb".to_owned()
        } else {
            looked.join("; ")
        }
    )
}

fn running_as_root() -> anyhow::Result<bool> {
    let metadata = std::fs::metadata("/proc/self").context("reading /proc/self")?;
    Ok(metadata.uid() == 0)
}

/// The uid and gid of the `postgres` OS user.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let mut command = Command::new("id");
        command.args([flag, "postgres"]);
        let output = run(command, "id").context(
            "running as root, PostgreSQL needs the `postgres` OS user, which does not exist",
        )?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .context("unexpected output of `id`")
    };
    Ok((id("-u")?, id("-g")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_stops_starts_again_and_cleans_up() {
        let server = PostgresServer::start().unwrap();
        assert!(
            server
                .url()
                .ends_with(&format!(":{}/cloudstate", server.port()))
        );
        let query = |database: &str| {
            let mut psql = server.client("psql");
            psql.args(["-d", database, "-tAc", "SHOW fsync"]);
            run(psql, "psql")
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        assert_eq!(query(DATABASE).unwrap(), "on");
        let url = server.create_database().unwrap();
        let name = url.rsplit('/').next().unwrap().to_owned();
        assert_eq!(query(&name).unwrap(), "on");

        server.stop().unwrap();
        assert!(!crate::port_open(server.port()));
        assert!(query(DATABASE).is_err());
        server.start_again().unwrap();
        assert_eq!(query(&name).unwrap(), "on");

        let dir = server.dir.path().to_owned();
        let port = server.port();
        drop(server);
        assert!(!dir.exists());
        assert!(!crate::port_open(port));
    }

    #[test]
    fn the_shared_server_is_started_once() {
        let first = PostgresServer::shared().unwrap();
        let second = PostgresServer::shared().unwrap();
        assert!(std::ptr::eq(first, second));
        assert_ne!(
            first.create_database().unwrap(),
            second.create_database().unwrap()
        );
    }
}
