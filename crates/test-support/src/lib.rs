//! Test harness shared by every test crate of the workspace: real valkey-server processes on
//! free loopback ports (standalone, the serverless-shaped TLS pair, the 3-shard cluster), the
//! real `valkey-sessions` and `todo-gateway` binaries, certificates and fault injection, each
//! owned by the test and killed on drop.

pub mod certs;
pub mod faults;
pub mod netns;
pub mod otlp;
pub mod secure;
mod topology;

pub use topology::{Deployment, Shape};

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use session_proto::caller::{CallerOptions, Client};
use tonic::transport::Channel;

/// Runs each scenario (an `async fn(Shape)` of the calling test file) once per topology, as
/// `<topology>::<scenario>`: standalone, the serverless-shaped TLS pair and the 3-shard cluster.
#[macro_export]
macro_rules! on_every_topology {
    ($($scenario:ident),* $(,)?) => {
        mod standalone {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::Standalone).await })*
        }
        mod serverless {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::Serverless).await })*
        }
        mod cluster {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Shape::Cluster).await })*
        }
    };
}

/// A binary of the workspace. `cargo test --workspace` builds every binary next to the test
/// executables (`target/<profile>/`) before any test runs; a test crate run alone needs them
/// built first.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's folder");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("the target profile folder")
    } else {
        deps
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`; \
         `./dev test` does)",
        path.display()
    );
    path
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Waits for `cond`, polling, up to `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// TLS material for a node: where the files are.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Runs valkey-cli with `to` (a server's [`Valkey::cli_args`]) and `args`; returns its output.
pub fn cli(to: &[String], args: &[&str]) -> String {
    let out = Command::new("valkey-cli")
        .args(to)
        .args(args)
        .output()
        .expect("valkey-cli must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where test servers listen unless told otherwise.
const LOOPBACK: &str = "127.0.0.1";

/// One valkey-server process.
pub struct Valkey {
    pub port: u16,
    /// The loopback address it listens on (127.0.0.1 unless started with [`Valkey::start_at`]).
    pub host: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    tls: Option<Tls>,
}

impl Valkey {
    /// A standalone server without TLS.
    pub fn standalone() -> Self {
        Self::start_with(Vec::new(), None)
    }

    /// A server with extra arguments (e.g. cluster mode) and optional TLS.
    pub fn start_with(extra: Vec<String>, tls: Option<Tls>) -> Self {
        for _ in 0..10 {
            let port = free_port();
            let mut v = Valkey {
                port,
                host: LOOPBACK.into(),
                child: None,
                dir: tempfile::tempdir().expect("tempdir"),
                extra: extra.clone(),
                tls: tls.clone(),
            };
            if v.spawn() {
                return v;
            }
        }
        panic!("could not start valkey-server on a free port");
    }

    /// A handle on a server another handle owns (for `cli` from another thread); dropping it
    /// leaves the server running.
    pub fn existing(port: u16) -> Self {
        Valkey {
            port,
            host: LOOPBACK.into(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            extra: Vec::new(),
            tls: None,
        }
    }

    /// A server on a given port; `None` if the port turned out to be taken.
    pub fn start_on(port: u16, extra: Vec<String>, tls: Option<Tls>) -> Option<Self> {
        Self::start_at(LOOPBACK, port, extra, tls)
    }

    /// A server on another loopback address (127.0.0.2, ...) and a given port: two nodes with
    /// one port, as behind a DNS name that moves; `None` if the port turned out to be taken.
    pub fn start_at(host: &str, port: u16, extra: Vec<String>, tls: Option<Tls>) -> Option<Self> {
        let mut v = Valkey {
            port,
            host: host.into(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            extra,
            tls,
        };
        v.spawn().then_some(v)
    }

    /// The value following `flag` among the extra arguments.
    pub fn arg(&self, flag: &str) -> Option<&str> {
        let at = self.extra.iter().position(|a| a == flag)?;
        self.extra.get(at + 1).map(String::as_str)
    }

    fn spawn(&mut self) -> bool {
        let mut args: Vec<String> = vec![
            "--bind".into(),
            self.host.clone(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
            "--logfile".into(),
            self.dir.path().join("valkey.log").display().to_string(),
        ];
        match &self.tls {
            Some(tls) => args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]),
            None => args.extend(["--port".into(), self.port.to_string()]),
        }
        args.extend(self.extra.iter().cloned());
        let child = Command::new("valkey-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("valkey-server must be installed (infra/local/install-deps.sh)");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if self.cli(&["PING"]).trim() == "PONG" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The data directory (config files of cluster nodes live there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A URL for the service, with the given scheme.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// Runs valkey-cli against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(&self.cli_args(), args)
    }

    /// The valkey-cli arguments that reach this server (address, TLS), for a thread of its own:
    /// pass them to [`cli`].
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = vec![
            "-h".to_owned(),
            self.host.clone(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        if let Some(tls) = &self.tls {
            args.extend([
                "--tls".into(),
                "--cacert".into(),
                tls.ca.display().to_string(),
            ]);
        }
        args
    }

    /// Count of calls of one command from INFO commandstats (e.g. "get", "evalsha").
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Kills the process (SIGKILL), keeping the port for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process dies of SIGKILL too; SIGCONT first only tidies the reaping.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): it keeps its connections open and answers nothing.
    pub fn pause(&self) {
        self.send_signal("STOP");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn resume(&self) {
        self.send_signal("CONT");
    }

    fn send_signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{name} {}", child.id());
        }
    }

    /// Whether the process is running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "valkey-server did not come back on port {}",
            self.port
        );
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The valkey-sessions binary, running.
pub struct Service {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// How clients reach it: TLS trust, client certificate, token (plaintext when empty).
    pub caller: CallerOptions,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the service against `valkey_url` with extra environment.
    pub fn start(valkey_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(Command::new(binary("valkey-sessions")), valkey_url, env)
    }

    /// Starts the service inside a network namespace with its `/etc/hosts`
    /// (`ip netns exec`), so that a name in `valkey_url` resolves as the test says.
    pub fn start_in(ns: &netns::NetNs, valkey_url: &str, env: &[(&str, &str)]) -> Self {
        let program = binary("valkey-sessions");
        Self::start_with(ns.command(&program.display().to_string()), valkey_url, env)
    }

    fn start_with(mut cmd: Command, valkey_url: &str, env: &[(&str, &str)]) -> Self {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VALKEY_URL", valkey_url)
            .env("GRPC_LISTEN", "127.0.0.1:0")
            .env("METRICS_LISTEN", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    /// The `todo-gateway` binary in front of the session service at `service`.
    pub fn gateway(service: SocketAddr, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(binary("todo-gateway"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SESSION_SERVICE_URL", format!("http://{service}"))
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "debug");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn_until(cmd, "gateway listening")
    }

    /// Starts a prepared command and waits until it reports its listening address.
    pub fn spawn(cmd: Command) -> Self {
        let mut service = Self::spawn_until(cmd, "grpc listening");
        service.metrics_addr = service.logged_addr("metrics listening");
        service
    }

    /// Starts a prepared command and waits for the log line `message` carrying its address.
    pub fn spawn_until(mut cmd: Command, message: &str) -> Self {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let mut service = Service {
            addr: "0.0.0.0:0".parse().unwrap(),
            metrics_addr: None,
            caller: CallerOptions::default(),
            child,
            logs,
        };
        let start = Instant::now();
        loop {
            if let Some(addr) = service.logged_addr(message) {
                service.addr = addr;
                break;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("{program} exited with {status}:\n{}", service.logs());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{program} did not start:\n{}",
                service.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        service
    }

    fn logged_addr(&self, message: &str) -> Option<SocketAddr> {
        let logs = self.logs.lock().unwrap();
        let line = logs.iter().find(|l| l.contains(message))?;
        // JSON logs carry `"addr":"…"`, text logs `addr=…`.
        let value = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(json) => json.get("addr")?.as_str()?.to_owned(),
            Err(_) => strip_ansi(line)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr=").map(str::to_owned))?,
        };
        value.parse().ok()
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The service's URL: `https://` when clients are configured for TLS.
    pub fn url(&self) -> String {
        if self.caller.ca_file.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// A connected gRPC client, authenticating as `self.caller` says.
    pub async fn client(&self) -> Client {
        self.client_with_limit(64 << 20).await
    }

    /// A client whose message limits are raised to `limit` bytes.
    pub async fn client_with_limit(&self, limit: usize) -> Client {
        self.client_as(&self.caller)
            .await
            .expect("connect to valkey-sessions")
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// A client with other credentials; the error is the connection's (e.g. a refused handshake).
    pub async fn client_as(&self, caller: &CallerOptions) -> Result<Client, String> {
        let channel = caller
            .endpoint(&self.url())?
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        caller.client(channel)
    }

    /// A raw channel, for the health and reflection clients.
    pub async fn channel(&self) -> Channel {
        self.caller
            .endpoint(&self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect to valkey-sessions")
    }

    /// Starts the service secured by `secured` (TLS, tokens, callers) against `valkey_url`;
    /// its clients authenticate as the `gateway` caller.
    pub fn start_secured(
        valkey_url: &str,
        secured: &secure::Secured,
        env: &[(&str, &str)],
    ) -> Self {
        let sec = secured.env();
        let mut all: Vec<(&str, &str)> =
            sec.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(env);
        let mut service = Self::start(valkey_url, &all);
        service.caller = secured.caller(Some(secure::GATEWAY_TOKEN));
        service
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. "TERM") to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of a metric's samples whose line contains `labels` (e.g. `reason="x"`, or "" for
    /// all of them), from a fresh scrape.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        self.scrape_metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Plain HTTP GET against the metrics listener; returns the body.
    pub fn scrape_metrics(&self) -> String {
        let addr = self
            .metrics_addr
            .expect("metrics listener address was logged");
        let mut stream = TcpStream::connect(addr).expect("connect to metrics");
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Text without terminal colour codes.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Creates a session through `client`; the test fails if the service refuses.
pub async fn create(
    client: &mut Client,
    request: session_proto::CreateRequest,
) -> session_proto::Session {
    client
        .create(request)
        .await
        .expect("Create succeeds")
        .into_inner()
        .session
        .expect("Create returns the session")
}

/// A protobuf duration of whole seconds, as the request messages take it.
pub fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// Attributes from string pairs.
pub fn attrs(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// The Valkey key of a session id under the default prefix (docs/key-layout.md).
#[allow(dead_code)]
pub fn session_key(id: &str) -> String {
    let id = session_core::SessionId::parse(id).expect("a well-formed id");
    session_core::KeySpace::new("vs:").session(&id)
}
