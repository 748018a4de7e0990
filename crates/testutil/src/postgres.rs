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
//! Starting a cluster takes about a second, so tests normally share one
//! ([`PostgresServer::shared`]) and give every test its own database
//! ([`PostgresServer::create_database`]). The shared cluster is shared across test processes
//! too (cargo-nextest runs every test in a process of its own): the first process creates it in
//! a fixed directory under the temporary directory, later ones attach to it, and a watchdog
//! stops and deletes it once no test process has used it for about ten seconds. Tests that
//! stop the server (outages) start their own.
//!
//! The server binaries (`initdb`, `pg_ctl`, `postgres`, and the clients `createdb`, `psql`,
//! `pgbench`) are looked up in `PATH` and in `/usr/lib/postgresql/*/bin`. If they are missing,
//! starting fails with a message naming what is missing: tests that need PostgreSQL fail rather
//! than skip.

use std::fs::File;
use std::hash::{Hash, Hasher};
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

/// A running (or deliberately stopped) PostgreSQL cluster on 127.0.0.1: one of its own, or
/// the [shared](PostgresServer::shared) one.
pub struct PostgresServer {
    bin: PathBuf,
    /// Holds `data/` (the cluster), the unix socket and `postgres.log`.
    dir: PathBuf,
    /// The temporary directory of a cluster of its own, deleted on drop; `None` when shared.
    own: Option<tempfile::TempDir>,
    port: u16,
    /// Whether server programs run as the `postgres` OS user (the test runs as root).
    as_postgres: bool,
    /// Stops a cluster of its own and deletes its directory once the test process is gone.
    watchdog: Mutex<Option<Child>>,
    /// For the shared cluster: a shared lock on its `users.lock`, held while this process may
    /// use it, which keeps its watchdog away.
    _users: Option<File>,
    databases: AtomicU32,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("shared", &self.own.is_none())
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
        let path = checked_socket_dir(dir.path())?;
        if as_postgres {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {path} to the postgres user"))?;
        }
        let server = PostgresServer {
            bin,
            dir: dir.path().to_owned(),
            own: Some(dir),
            port: crate::free_port(),
            as_postgres,
            watchdog: Mutex::new(None),
            _users: None,
            databases: AtomicU32::new(0),
        };
        server.init()?;
        server.start_cluster()?;
        server.spawn_watchdog()?;
        server.create_named_database(DATABASE)?;
        Ok(server)
    }

    /// The server shared by every test, in this process and in other test processes: the
    /// first call in a process attaches to the running shared cluster or, if there is none,
    /// creates and starts it. Its failure to start is returned to every caller. It cannot be
    /// stopped: other tests use it.
    pub fn shared() -> anyhow::Result<&'static PostgresServer> {
        static SHARED: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| PostgresServer::attach_shared().map_err(|error| format!("{error:#}")))
            .as_ref()
            .map_err(|error| anyhow!("{error}"))
    }

    /// Attaches to the shared cluster, creating it if it is not running.
    ///
    /// Its directory is named after the user and the installation. `init.lock` (exclusive)
    /// lets one process at a time check or create the cluster; every process that uses it
    /// holds a shared lock on `users.lock` until it exits; the watchdog deletes the cluster
    /// only while holding `init.lock` and after finding `users.lock` free for ten seconds.
    fn attach_shared() -> anyhow::Result<PostgresServer> {
        let bin = bin_dir()?;
        let as_postgres = running_as_root()?;
        let uid = std::fs::metadata("/proc/self")
            .context("reading /proc/self")?
            .uid();
        let mut hasher = std::hash::DefaultHasher::new();
        bin.hash(&mut hasher);
        let dir = std::env::temp_dir().join(format!(
            "cloudstate-pg-shared-{uid}-{:016x}",
            hasher.finish()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        checked_socket_dir(&dir)?;
        if as_postgres {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", dir.display()))?;
        }
        let lock_file = |name: &str| {
            let path = dir.join(name);
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
        };
        // Held until the end of this function; closing the file releases it.
        let init = lock_file("init.lock")?;
        init.lock().context("locking init.lock")?;
        let users = lock_file("users.lock")?;
        users.lock_shared().context("locking users.lock")?;
        let mut server = PostgresServer {
            bin,
            dir: dir.clone(),
            own: None,
            port: 0,
            as_postgres,
            watchdog: Mutex::new(None),
            _users: Some(users),
            databases: AtomicU32::new(0),
        };
        let port_file = dir.join("port");
        let running = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|port| port.trim().parse().ok())
            .filter(|_| server.cluster_running());
        match running {
            Some(port) => server.port = port,
            None => {
                // Whatever a crashed run left behind.
                let _ = server.stop_cluster();
                match std::fs::remove_dir_all(server.data_dir()) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error).context("removing an old shared cluster");
                    }
                    _ => {}
                }
                server.port = crate::free_port();
                server.init()?;
                server.start_cluster()?;
                server.create_named_database(DATABASE)?;
                std::fs::write(&port_file, server.port.to_string())
                    .with_context(|| format!("writing {}", port_file.display()))?;
            }
        }
        server.ensure_idle_watchdog()?;
        drop(init);
        Ok(server)
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
        self.dir.join("data")
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
    /// crashed; committed transactions survive. For outage tests on a server of their own;
    /// refused for the shared server.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.refuse_if_shared("stopped")?;
        self.stop_cluster()
    }

    /// Starts the server again on the same data directory and port and waits until it
    /// accepts connections; after [`stop`](Self::stop) it recovers from its write-ahead log.
    /// Refused for the shared server.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.refuse_if_shared("restarted")?;
        self.start_cluster()
    }

    fn refuse_if_shared(&self, what: &str) -> anyhow::Result<()> {
        if self.own.is_none() {
            bail!("the shared PostgreSQL server is never {what}: other tests use it");
        }
        Ok(())
    }

    fn stop_cluster(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let mut command = self.server_program("pg_ctl");
        command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]);
        run(command, "pg_ctl stop")?;
        Ok(())
    }

    /// Whether a server runs on the data directory (`pg_ctl status`).
    fn cluster_running(&self) -> bool {
        let mut command = self.server_program("pg_ctl");
        command.arg("-D").arg(self.data_dir()).arg("status");
        run(command, "pg_ctl status").is_ok()
    }

    fn start_cluster(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let log = self.dir.join("postgres.log");
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
             recovery_init_sync_method = syncfs\n\
             shared_buffers = 128MB\n",
            port = self.port,
            socket = self.dir.display(),
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
            dir = self.dir.display(),
        );
        let child = spawn_detached(&script)?;
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// Makes sure the shared cluster has its watchdog, which stops it and deletes its data once
    /// no process has held `users.lock` for ten seconds (see
    /// [`attach_shared`](Self::attach_shared)). Called with `init.lock` held.
    fn ensure_idle_watchdog(&self) -> anyhow::Result<()> {
        let pid_file = self.dir.join("watchdog.pid");
        let alive = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            return Ok(());
        }
        let cleanup = self.dir.join("cleanup.sh");
        std::fs::write(
            &cleanup,
            format!(
                "{runuser}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1\n\
                 rm -rf '{data}' '{dir}/port' '{dir}/postgres.log' '{dir}/watchdog.pid'\n",
                runuser = if self.as_postgres {
                    "runuser -u postgres -- "
                } else {
                    ""
                },
                pg_ctl = self.bin.join("pg_ctl").display(),
                data = self.data_dir().display(),
                dir = self.dir.display(),
            ),
        )
        .with_context(|| format!("writing {}", cleanup.display()))?;
        let script = format!(
            "echo $$ > '{dir}/watchdog.pid'; idle=0; \
             while sleep 2; do \
               if flock -x -n '{dir}/users.lock' true; then idle=$((idle+1)); else idle=0; fi; \
               if [ $idle -ge 5 ]; then \
                 flock -x '{dir}/init.lock' flock -x -n '{dir}/users.lock' sh '{cleanup}' \
                   && exit 0; \
                 idle=0; \
               fi; \
             done",
            dir = self.dir.display(),
            cleanup = cleanup.display(),
        );
        // Not waited for: it outlives this process on purpose.
        spawn_detached(&script)?;
        // Its pid file must be there before `init.lock` is released.
        for _ in 0..100 {
            if pid_file.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
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
        command.current_dir(&self.dir).stdin(Stdio::null());
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.own.is_none() {
            // The shared cluster outlives its users; its watchdog cleans up.
            return;
        }
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
        // Deleting a cluster that has just written can take seconds (the kernel is still
        // writing its files back); a detached `rm` spares the test the wait.
        if let Some(own) = self.own.take() {
            let path = own.keep();
            let script = format!("rm -rf '{}'", path.display());
            if spawn_detached(&script).is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Starts `sh -c script` in a session of its own, so that it survives this process and signals
/// sent to its process group.
fn spawn_detached(script: &str) -> anyhow::Result<Child> {
    Command::new("setsid")
        .args(["sh", "-c", script])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a PostgreSQL watchdog (setsid sh)")
}

/// Fails unless `dir` can hold a unix socket and be quoted in a shell script.
fn checked_socket_dir(dir: &Path) -> anyhow::Result<&str> {
    let path = dir
        .to_str()
        .context("the PostgreSQL directory is not UTF-8")?;
    if path.contains('\'') || path.len() > 90 {
        bail!("{path} cannot hold a PostgreSQL socket: too long or contains a quote");
    }
    Ok(path)
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

        let dir = server.dir.clone();
        let port = server.port();
        drop(server);
        assert!(!crate::port_open(port));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} remains",
                dir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[test]
    fn the_shared_server_is_started_once() {
        let first = PostgresServer::shared().unwrap();
        let second = PostgresServer::shared().unwrap();
        assert!(std::ptr::eq(first, second));
        assert!(first.stop().is_err());
        assert_ne!(
            first.create_database().unwrap(),
            second.create_database().unwrap()
        );
    }
}
