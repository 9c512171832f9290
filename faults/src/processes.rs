//! The processes a run owns — its own PostgreSQL, Redis, payment simulator
//! and boxoffice on free loopback ports, in a temporary directory (the
//! simulator's ledger in the run's output directory) — and the signals the
//! nemesis sends them. Every process is killed (and the directory removed)
//! when its owner is dropped, on panic too.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustix::process::{Pid, Signal};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A port nothing listens on now (the kernel picks it; loopback only).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub fn send_signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        bail!("{pid} is not a process id");
    };
    match rustix::process::kill_process(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(error) => Err(error).with_context(|| format!("signalling process {pid:?}")),
    }
}

/// A log file that every incarnation of a process appends to.
fn log_sink(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

/// Kills a child that may be paused, and reaps it.
fn kill_and_reap(child: &mut Child) {
    let _ = send_signal(child.id(), Signal::CONT);
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `ready` says yes, `deadline` from now at most.
async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < deadline {
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} was not ready within {deadline:?}")
}

/// The user PostgreSQL runs as when the harness runs as root (PostgreSQL
/// refuses to run as root): its uid and gid from /etc/passwd.
fn postgres_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == "postgres" {
            return Ok(Some((fields[2].parse()?, fields[3].parse()?)));
        }
    }
    bail!("running as root, and there is no postgres user to run PostgreSQL as")
}

/// The newest installed PostgreSQL's binaries (`/usr/lib/postgresql/N/bin`),
/// or the directory of `initdb` on PATH; `BOXOFFICE_FAULTS_PG_BIN` overrides.
pub fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BOXOFFICE_FAULTS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    bail!("no PostgreSQL server binaries (initdb, postgres) found; install postgresql")
}

/// A PostgreSQL cluster of the run's own.
pub struct Postgres {
    bin: PathBuf,
    /// Holds the data directory and the Unix socket; removed on drop.
    dir: TempDir,
    data: PathBuf,
    pub port: u16,
    run_as: Option<(u32, u32)>,
    postmaster: Option<Child>,
    log: PathBuf,
}

impl Postgres {
    /// `initdb` into a fresh temporary directory and start the server.
    pub async fn start(log: PathBuf) -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let run_as = postgres_user()?;
        // As root the server runs as postgres, which must reach the
        // directory: under /tmp, not a TMPDIR that may be root's own.
        let mut builder = tempfile::Builder::new();
        builder.prefix("boxoffice-faults-pg-");
        let dir = match run_as {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .context("making PostgreSQL's directory")?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("giving PostgreSQL's directory to the postgres user")?;
        }
        let data = dir.path().join("data");
        let mut postgres = Self {
            bin,
            data,
            dir,
            port: free_port()?,
            run_as,
            postmaster: None,
            log,
        };
        let (stdout, stderr) = log_sink(&postgres.log)?;
        let status = postgres
            .command("initdb")
            .arg("-D")
            .arg(&postgres.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(stdout)
            .stderr(stderr)
            .status()
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed ({status}); see {}", postgres.log.display());
        }
        postgres.start_server().await?;
        Ok(postgres)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt as _;
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.dir.path());
        command
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the postmaster and waits until it accepts connections. After
    /// a `kill -9` of the postmaster its orphaned backends hold the shared
    /// memory until they notice and exit, so a start that fails is retried
    /// (within the deadline); backends left after 15 s are killed.
    pub async fn start_server(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let deadline = Duration::from_secs(60);
        if self.postmaster.is_none() {
            while !self.running_pids().is_empty() {
                if started.elapsed() > Duration::from_secs(15) {
                    for pid in self.running_pids() {
                        let _ = send_signal(pid, Signal::KILL);
                    }
                }
                if started.elapsed() > deadline {
                    bail!("PostgreSQL's old processes did not exit");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        loop {
            if self.postmaster.is_none() {
                let (stdout, stderr) = log_sink(&self.log)?;
                let child = self
                    .command("postgres")
                    .arg("-D")
                    .arg(&self.data)
                    .args(["-p", &self.port.to_string(), "-k"])
                    .arg(self.dir.path())
                    .args([
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "max_connections=300",
                        "-c",
                        "shared_buffers=64MB",
                    ])
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(stderr)
                    .spawn()
                    .context("starting postgres")?;
                self.postmaster = Some(child);
            }
            if self.accepts_connections().await {
                return Ok(());
            }
            // It may have refused to start (shared memory still in use).
            let exited = self
                .postmaster
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited {
                self.postmaster = None;
            }
            if started.elapsed() > deadline {
                bail!(
                    "PostgreSQL did not start within {deadline:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn accepts_connections(&self) -> bool {
        let url = self.url("postgres");
        let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok((client, connection))) => {
                let task = tokio::spawn(connection);
                let ok = client.simple_query("SELECT 1").await.is_ok();
                drop(client);
                task.abort();
                ok
            }
            _ => false,
        }
    }

    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// Every process running in this cluster's data directory (the
    /// postmaster changes into it and its children inherit it), orphans of
    /// a killed postmaster included.
    pub fn running_pids(&self) -> Vec<u32> {
        let Ok(data) = self.data.canonicalize() else {
            return Vec::new();
        };
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
                (cwd == data).then_some(pid)
            })
            .collect()
    }

    /// `pg_ctl stop -m immediate`: every process quits without a checkpoint,
    /// as in a crash; the next start recovers from the WAL.
    pub async fn stop_immediate(&mut self) -> anyhow::Result<()> {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = tokio::process::Command::from(command)
            .status()
            .await
            .context("running pg_ctl stop")?;
        if let Some(mut child) = self.postmaster.take() {
            if !status.success() {
                kill_and_reap(&mut child);
                bail!("pg_ctl stop -m immediate failed ({status})");
            }
            let _ = child.wait();
        }
        Ok(())
    }

    /// `kill -9` of the postmaster alone; its backends find out by themselves.
    pub fn kill_postmaster(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP or SIGCONT to every process of the cluster.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.running_pids() {
            let _ = send_signal(pid, signal);
        }
    }

    /// The postmaster died without being asked to (its exit status).
    pub fn exited(&mut self) -> Option<String> {
        let child = self.postmaster.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.postmaster = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pids = self.running_pids();
        for pid in &pids {
            let _ = send_signal(*pid, Signal::CONT);
        }
        if let Some(mut child) = self.postmaster.take() {
            kill_and_reap(&mut child);
        }
        for pid in self.running_pids() {
            let _ = send_signal(pid, Signal::KILL);
        }
        // Let the killed processes go before their directory does.
        let started = Instant::now();
        while !self.running_pids().is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A Redis server of the run's own, without persistence: a restart after
/// `kill -9` comes back empty, which is what losing Redis means.
pub struct Redis {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Redis {
    pub async fn start(log: PathBuf) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("boxoffice-faults-redis-")
            .tempdir()
            .context("making Redis's directory")?;
        let mut redis = Self {
            dir,
            port: free_port()?,
            child: None,
            log,
        };
        redis.start_server().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn start_server(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            let (stdout, stderr) = log_sink(&self.log)?;
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(self.dir.path())
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .context("starting redis-server (is it installed?)")?;
            self.child = Some(child);
        }
        let port = self.port;
        wait_until("Redis", Duration::from_secs(30), || ping(port)).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut answer = [0_u8; 7];
        stream.read_exact(&mut answer).await?;
        Ok::<bool, std::io::Error>(&answer == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

/// `boxoffice up` as a child process, with the environment a run gives it.
pub struct Boxoffice {
    exe: PathBuf,
    env: Vec<(String, String)>,
    pub addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Boxoffice {
    pub fn new(exe: PathBuf, env: Vec<(String, String)>, addr: SocketAddr, log: PathBuf) -> Self {
        Self {
            exe,
            env,
            addr,
            child: None,
            log,
        }
    }

    fn command(&self) -> anyhow::Result<Command> {
        let mut command = Command::new(&self.exe);
        // Only the run's own settings: nothing of the caller's BOXOFFICE_*
        // or OTEL_* environment (a Meilisearch or a collector elsewhere).
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("BOXOFFICE_") || name_text.starts_with("OTEL_") {
                command.env_remove(&name);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let (stdout, stderr) = log_sink(&self.log)?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        Ok(command)
    }

    /// `boxoffice migrate`, to completion.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut command = self.command()?;
        command.arg("migrate");
        let status = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::from(command).status(),
        )
        .await
        .context("boxoffice migrate took over two minutes")?
        .with_context(|| format!("running {}", self.exe.display()))?;
        if !status.success() {
            bail!(
                "boxoffice migrate failed ({status}); see {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Starts `boxoffice up --no-demo-data` (the caller waits for it to serve).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut command = self.command()?;
        command.args(["up", "--no-demo-data"]);
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", self.exe.display()))?,
        );
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }
}

impl Drop for Boxoffice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The payment simulator (`boxoffice paysim`) as a process of the run's
/// own, on a fixed loopback port so that boxoffice reaches every
/// incarnation at one URL, its fsynced ledger in a file that outlives it.
pub struct Paysim {
    exe: PathBuf,
    env: Vec<(String, String)>,
    pub addr: SocketAddr,
    pub ledger: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Paysim {
    /// `env`: the run's settings (API key, webhook secret); the listen
    /// address and the ledger are added here.
    pub async fn start(
        exe: PathBuf,
        env: Vec<(String, String)>,
        ledger: PathBuf,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut paysim = Self {
            exe,
            env,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            ledger,
            child: None,
            log,
        };
        paysim.start_server().await?;
        Ok(paysim)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts it (if it is not running) and waits until it listens: it
    /// binds only once its ledger is replayed.
    pub async fn start_server(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            let mut command = Command::new(&self.exe);
            for (name, _) in std::env::vars_os() {
                let name_text = name.to_string_lossy();
                if name_text.starts_with("BOXOFFICE_") || name_text.starts_with("OTEL_") {
                    command.env_remove(&name);
                }
            }
            command
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env(boxoffice_paysim::config::ENV_LISTEN, self.addr.to_string())
                .env(boxoffice_paysim::config::ENV_LEDGER, &self.ledger)
                .arg("paysim");
            let (stdout, stderr) = log_sink(&self.log)?;
            command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
            self.child = Some(
                command
                    .spawn()
                    .with_context(|| format!("starting {} paysim", self.exe.display()))?,
            );
        }
        let addr = self.addr;
        wait_until(
            "the payment simulator",
            Duration::from_secs(30),
            || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }
}

impl Drop for Paysim {
    fn drop(&mut self) {
        self.kill();
    }
}
