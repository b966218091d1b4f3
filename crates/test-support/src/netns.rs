//! Network faults for real, inside a network namespace of the test's own: the test thread enters
//! it, so every process it starts (Valkey, the service) and every socket it opens (the test's
//! gRPC client) lives there, on the namespace's own loopback. Faults are iptables rules and
//! `/etc/hosts` files of that namespace only (`ip netns exec`); the machine's own namespace and
//! firewall are never touched, and no traffic leaves loopback.

use std::{
    fs,
    future::Future,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// A network namespace with its loopback up, deleted on drop.
pub struct NetNs {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    /// Creates a namespace, or says why it cannot (no root, no `ip`, no netns support).
    pub fn create() -> Result<Self, String> {
        let name = format!(
            "vs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        // iptables must be there: without it every fault would be a silent no-op.
        ns.exec(&["iptables", "-L", "OUTPUT", "-n"])?;
        Ok(ns)
    }

    /// Runs `test` inside a fresh namespace, on a runtime built on a thread that entered it:
    /// its worker threads, started from that thread, are inside too, and so are the test's
    /// sockets. Where no namespace can be made the test is skipped, and says so.
    pub fn run<F, Fut>(test: F)
    where
        F: FnOnce(NetNs) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let ns = match NetNs::create() {
            Ok(ns) => ns,
            Err(why) => {
                eprintln!("SKIPPED: a network namespace cannot be made here: {why}");
                return;
            }
        };
        let thread = std::thread::spawn(move || {
            ns.enter();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(test(ns));
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// The namespace's name (`ip netns exec <name> ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into the namespace: sockets it opens, threads and processes it
    /// starts from now on are inside.
    pub fn enter(&self) {
        let file = fs::File::open(format!("/run/netns/{}", self.name)).expect("netns file");
        // SAFETY: setns on a valid namespace file descriptor only changes this thread's
        // network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// A command that runs `program` inside the namespace, with the namespace's `/etc/hosts`
    /// (`/etc/netns/<name>/hosts`) where one was written.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        run(&mut cmd)
    }

    fn iptables(&self, rule: &[&str]) {
        let mut args = vec!["iptables", "-w"];
        args.extend_from_slice(rule);
        self.exec(&args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Drops every packet of the TCP connections established to `port` now (both ways); new
    /// connections to it work. Returns how many connections went silent.
    pub fn silence_connections_to(&self, port: u16) -> usize {
        let out = self
            .exec(&["ss", "-Htn", "state", "established"])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut silenced = 0;
        for line in out.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [.., local, peer] = fields[..] else {
                continue;
            };
            let (Some((lip, lport)), Some((pip, pport))) =
                (local.rsplit_once(':'), peer.rsplit_once(':'))
            else {
                continue;
            };
            if pport != port.to_string() {
                continue;
            }
            for (src, sport, dst, dport) in [(lip, lport, pip, pport), (pip, pport, lip, lport)] {
                self.iptables(&[
                    "-I", "OUTPUT", "-p", "tcp", "-s", src, "--sport", sport, "-d", dst, "--dport",
                    dport, "-j", "DROP",
                ]);
            }
            silenced += 1;
        }
        silenced
    }

    /// Drops every packet to and from `ip:port`: old and new connections alike.
    pub fn black_hole(&self, ip: &str, port: u16) {
        let port = port.to_string();
        self.iptables(&[
            "-I", "OUTPUT", "-p", "tcp", "-d", ip, "--dport", &port, "-j", "DROP",
        ]);
        self.iptables(&[
            "-I", "OUTPUT", "-p", "tcp", "-s", ip, "--sport", &port, "-j", "DROP",
        ]);
    }

    /// Removes every fault: the path heals.
    pub fn heal(&self) {
        self.iptables(&["-F", "OUTPUT"]);
    }

    /// Writes the namespace's `/etc/hosts` (read by processes started with [`Self::command`]),
    /// in place, so processes already running see the change at their next lookup.
    pub fn set_hosts(&self, content: &str) {
        let path = self.hosts_path();
        fs::create_dir_all(path.parent().unwrap()).expect("/etc/netns");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .expect("netns hosts file");
        std::io::Write::write_all(&mut file, content.as_bytes()).expect("write hosts");
    }

    fn hosts_path(&self) -> PathBuf {
        PathBuf::from(format!("/etc/netns/{}/hosts", self.name))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let what = format!("{cmd:?}");
    match cmd.output() {
        Ok(Output {
            status,
            stdout,
            stderr,
        }) if status.success() => {
            let _ = stderr;
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        }
        Ok(out) => Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}
