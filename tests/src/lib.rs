//! Cross-crate and multi-process tests of Concord; the tests live in `tests/`.
//!
//! This library is their harness: it runs `concord node` processes (the
//! package's `concord-under-test` binary, see [`Binary`]) on loopback with
//! OS-chosen ports, runs the client commands against them, and polls with
//! deadlines. It owns process lifetimes: every process it starts is killed
//! when its handle drops, even when a test panics. It never reaches into a
//! node's files while the node runs (only the CLI does, through the node).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a node may take to print its startup lines.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Default deadline of [`eventually`].
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The `concord` program under test. Test files name it with
/// `Binary(env!("CARGO_BIN_EXE_concord-under-test"))`: this package's own
/// build of the CLI, which cargo builds (with the same features as the
/// tests) before it runs them.
#[derive(Debug, Clone, Copy)]
pub struct Binary(pub &'static str);

impl Binary {
    /// A command running the program.
    pub fn command(self) -> Command {
        Command::new(self.0)
    }

    /// Runs `concord ARGS...` to completion.
    pub fn run<S: AsRef<std::ffi::OsStr>>(self, args: &[S]) -> CliOutput {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running concord");
        CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// What a finished CLI command printed.
#[derive(Debug)]
pub struct CliOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// Stdout, asserting the command succeeded.
    pub fn ok(self) -> String {
        assert!(self.status.success(), "command failed: {self:?}");
        self.stdout
    }

    /// Stderr, asserting the command failed with a message and printed nothing on stdout.
    pub fn err(self) -> String {
        assert!(
            !self.status.success(),
            "command unexpectedly succeeded: {self:?}"
        );
        assert!(
            self.stdout.is_empty(),
            "a failing command printed on stdout: {self:?}"
        );
        assert!(
            self.stderr.starts_with("error: "),
            "unclear error: {self:?}"
        );
        self.stderr
    }
}

/// A TCP port on loopback that was free a moment ago (for an address that
/// must be known before the process that listens on it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 50 ms until it returns true; panics after `DEADLINE`.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "not reached within {DEADLINE:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Guarded(Child);

impl Guarded {
    /// Spawns `cmd`, guarded.
    pub fn spawn(cmd: &mut Command) -> Guarded {
        Guarded(cmd.spawn().expect("spawning a process"))
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `concord node` process with its own data directory.
#[derive(Debug)]
pub struct NodeProcess {
    bin: Binary,
    dir: PathBuf,
    args: Vec<String>,
    process: Option<Guarded>,
    peer_id: String,
    listen: Vec<String>,
    starts: usize,
    netns: Option<String>,
}

impl NodeProcess {
    /// Starts `concord node --data DIR ARGS...` and waits for its startup lines.
    pub fn start(bin: Binary, dir: &Path, args: &[String]) -> NodeProcess {
        NodeProcess::start_in(bin, dir, args, None)
    }

    /// Like [`NodeProcess::start`], inside network namespace `netns` if given
    /// (`ip netns exec NETNS concord node ...`; see [`NetnsPair`]).
    pub fn start_in(bin: Binary, dir: &Path, args: &[String], netns: Option<&str>) -> NodeProcess {
        let mut node = NodeProcess {
            bin,
            dir: dir.to_owned(),
            args: args.to_vec(),
            process: None,
            peer_id: String::new(),
            listen: Vec::new(),
            starts: 0,
            netns: netns.map(str::to_owned),
        };
        node.launch();
        node
    }

    fn log_path(&self) -> PathBuf {
        self.dir.with_extension(format!("{}.log", self.starts))
    }

    fn launch(&mut self) {
        assert!(self.process.is_none(), "node already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("creating the node's log");
        // `ip netns exec` execs the program: the child is the node itself.
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, self.bin.0]);
                c
            }
            None => self.bin.command(),
        };
        let mut process = Guarded::spawn(
            command
                .arg("node")
                .arg("--data")
                .arg(&self.dir)
                .args(&self.args)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log),
        );
        let stdout = process.child().stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.process = Some(process);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (mut peer_id, mut listen) = (None, Vec::new());
        // The node prints peer_id=, then its listen= lines (one flush), then nothing more.
        while peer_id.is_none() || listen.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "node in {} did not start:\n{}",
                    self.dir.display(),
                    self.log()
                );
            };
            if let Some(id) = line.strip_prefix("peer_id=") {
                peer_id = Some(id.to_owned());
            } else if let Some(addr) = line.strip_prefix("listen=") {
                listen.push(addr.to_owned());
            }
        }
        self.peer_id = peer_id.unwrap_or_default();
        self.listen = listen;
    }

    /// The node's current log (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The node's first listen address (a multiaddr).
    pub fn addr(&self) -> &str {
        &self.listen[0]
    }

    /// The TCP port of the first listen address.
    pub fn tcp_port(&self) -> u16 {
        let addr = self.addr();
        let port = addr
            .split('/')
            .skip_while(|part| *part != "tcp")
            .nth(1)
            .unwrap_or_else(|| panic!("no tcp port in {addr}"));
        port.parse().expect("a tcp port")
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| matches!(p.child().try_wait(), Ok(None)))
    }

    /// `kill -9`: no flush, no clean shutdown.
    pub fn kill9(&mut self) {
        drop(self.process.take());
    }

    /// SIGTERM, then waits for a graceful exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut process = self.process.take().expect("node not running");
        let pid = process.child().id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = process.child().try_wait().expect("waiting for the node") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again with the same data directory and arguments.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Runs `concord SUBCOMMAND --data DIR ARGS...` against this node.
    pub fn cli(&self, subcommand: &str, args: &[&str]) -> CliOutput {
        let mut all: Vec<&std::ffi::OsStr> = vec![subcommand.as_ref(), "--data".as_ref()];
        all.push(self.dir.as_os_str());
        all.extend(args.iter().map(std::ffi::OsStr::new));
        self.bin.run(&all)
    }

    /// `concord put`, asserting it succeeded (the write is acknowledged).
    pub fn put(&self, space: &str, path: &str, json: &str) {
        self.cli("put", &[space, path, json]).ok();
    }

    /// `concord get --json`: the value, or `None` if the command failed.
    pub fn get(&self, space: &str, path: &str) -> Option<Value> {
        let out = self.cli("get", &["--json", space, path]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// `concord inspect --json SPACE`.
    pub fn inspect(&self, space: &str) -> Value {
        let out = self.cli("inspect", &["--json", space]).ok();
        serde_json::from_str(&out).expect("inspect --json prints JSON")
    }

    /// The space's vector clock as reported by `inspect`.
    pub fn vector_clock(&self, space: &str) -> Value {
        self.inspect(space)["spaces"][0]["vector_clock"].clone()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of node {} ---\n{}", self.dir.display(), self.log());
        }
    }
}

/// Nodes on loopback in one temporary directory; node 0 is every other
/// node's bootstrap peer. Dropping it kills them all, then removes the files.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes (dropped, hence killed, before the directory goes).
    pub nodes: Vec<NodeProcess>,
    root: tempfile::TempDir,
}

impl Cluster {
    /// `n` fresh data directories, no node started yet.
    pub fn dirs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = (0..n)
            .map(|i| root.path().join(format!("node{i}")))
            .collect();
        (root, dirs)
    }

    /// Starts `n` nodes; node `i` gets `args(i)` plus, for `i > 0`, node 0 as bootstrap peer.
    pub fn start(bin: Binary, n: usize, args: impl Fn(usize) -> Vec<String>) -> Cluster {
        let (root, dirs) = Cluster::dirs(n);
        Cluster::start_in(bin, root, &dirs, args)
    }

    /// Like [`Cluster::start`] in directories made by [`Cluster::dirs`].
    pub fn start_in(
        bin: Binary,
        root: tempfile::TempDir,
        dirs: &[PathBuf],
        args: impl Fn(usize) -> Vec<String>,
    ) -> Cluster {
        let mut nodes: Vec<NodeProcess> = Vec::with_capacity(dirs.len());
        for (i, dir) in dirs.iter().enumerate() {
            let mut node_args = args(i);
            if let Some(first) = nodes.first() {
                node_args.extend(["--peer".to_owned(), first.addr().to_owned()]);
            }
            nodes.push(NodeProcess::start(bin, dir, &node_args));
        }
        Cluster { nodes, root }
    }

    /// The temporary directory holding every node's files.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Waits until every node's `get` returns `want`.
    pub fn converge_on(&self, space: &str, path: &str, want: &Value) {
        for node in &self.nodes {
            eventually(
                &format!("{path} = {want} on {}", node.dir().display()),
                || node.get(space, path).as_ref() == Some(want),
            );
        }
    }
}

/// `["--space", name]` for each name: arguments for [`NodeProcess::start`].
pub fn spaces(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| ["--space".to_owned(), (*n).to_owned()])
        .collect()
}

/// Two fresh network namespaces joined by a veth pair (addresses
/// `198.18.77.1/24` and `198.18.77.2/24`, from the range reserved for
/// benchmarking test networks), each with its loopback up: two hosts on one
/// private link, for what loopback cannot show (mDNS ignores loopback
/// interfaces). Dropping it deletes both namespaces, which removes the link.
#[derive(Debug)]
pub struct NetnsPair {
    /// The namespaces' names.
    pub names: [String; 2],
}

impl NetnsPair {
    /// Creates the pair; `Err` with the reason where namespaces cannot be
    /// made (not root, no `ip`, no kernel support).
    pub fn create() -> Result<NetnsPair, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id());
        let names = [format!("ccA{tag}"), format!("ccB{tag}")];
        let veth = [format!("cva{tag}"), format!("cvb{tag}")];
        let pair = NetnsPair { names };
        let [a, b] = &pair.names;
        let steps: [&[&str]; 11] = [
            &["netns", "add", a],
            &["netns", "add", b],
            &[
                "link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1],
            ],
            &["link", "set", &veth[0], "netns", a],
            &["link", "set", &veth[1], "netns", b],
            &["-n", a, "addr", "add", "198.18.77.1/24", "dev", &veth[0]],
            &["-n", b, "addr", "add", "198.18.77.2/24", "dev", &veth[1]],
            &["-n", a, "link", "set", &veth[0], "up"],
            &["-n", b, "link", "set", &veth[1], "up"],
            &["-n", a, "link", "set", "lo", "up"],
            &["-n", b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = Command::new("ip")
                .args(step)
                .output()
                .map_err(|e| format!("running ip: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(pair)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
