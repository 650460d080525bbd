//! Child processes a harness starts and must not leave behind.

use std::fs::OpenOptions;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often bounded waits look again.
const POLL: Duration = Duration::from_millis(10);
/// Lines of the log quoted in errors.
const TAIL_LINES: usize = 20;

/// A loopback address whose port was free when probed. Another process may take it before
/// the caller binds it, so starting a server on it should be retried when the bind fails.
pub fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A signal to send with [`Proc::signal`] or [`Proc::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: a graceful shutdown.
    Term,
    /// SIGINT: what Ctrl-C sends.
    Int,
    /// SIGKILL: a crash, as far as the process can tell.
    Kill,
}

impl Signal {
    /// The name kill(1) takes (`-TERM`).
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Kill => "KILL",
        }
    }
}

/// A child process whose stdout and stderr are appended to a log file. It is killed with
/// SIGKILL and reaped when dropped unless it has already exited, so a failing test or an
/// interrupted benchmark leaves no process behind.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    /// The exit status, once reaped.
    status: Option<ExitStatus>,
    log: PathBuf,
    /// Length of the log when the process started (the file may hold earlier runs).
    log_start: u64,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr appended to `log`; `name` is how
    /// errors refer to it.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> io::Result<Self> {
        let context =
            |what: String| move |e: io::Error| io::Error::new(e.kind(), what + &e.to_string());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(context(format!("opening {}: ", log.display())))?;
        let log_start = file.metadata().map_or(0, |m| m.len());
        let err = file.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(context(format!("starting {name} ({cmd:?}): ")))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            log: log.to_path_buf(),
            log_start,
        })
    }

    /// The name errors use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (0 once reaped: the id may belong to another process by then).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log file, including what earlier processes appended to it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What this process logged.
    pub fn own_log(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(self.log_start).map_or(bytes.len(), |s| s.min(bytes.len()));
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// The last `lines` lines of what this process logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.own_log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if the process has exited (reaping it), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.status = Some(status);
                self.child = None;
            }
        }
        Ok(self.status)
    }

    /// Fails, quoting the end of the log, if the process has exited.
    pub fn check_running(&mut self) -> io::Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail(TAIL_LINES)
            ))),
        }
    }

    /// Sends `signal` with kill(1) without waiting. Fails if the process was already reaped
    /// (its id may belong to another process by then).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let Some(child) = self.child.as_ref() else {
            return Err(io::Error::other(format!(
                "{} has already exited",
                self.name
            )));
        };
        let sent = Command::new("kill")
            .arg(format!("-{}", signal.name()))
            .arg(child.id().to_string())
            .status()?;
        if sent.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{} {} ({}) failed: {sent}",
                signal.name(),
                child.id(),
                self.name
            )))
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; a `TimedOut` error leaves it
    /// running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(self.timed_out(&format!("exit within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends `signal` unless the process has already exited, and waits up to `timeout` for
    /// the exit. If it does not come, the process is killed with SIGKILL and the error is
    /// `TimedOut`.
    pub fn stop(&mut self, signal: Signal, timeout: Duration) -> io::Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            self.signal(signal)?;
        }
        match self.wait_timeout(timeout) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    self.status = child.wait().ok();
                }
                Err(e)
            }
            r => r,
        }
    }

    /// `TimedOut`: the process did not do `what`, with the tail of its log.
    fn timed_out(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} did not {what}; log tail:\n{}",
                self.name,
                self.log_tail(TAIL_LINES)
            ),
        )
    }

    /// Kills the process with SIGKILL and waits (bounded) for the exit.
    pub fn kill(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        self.stop(Signal::Kill, timeout)
    }

    /// Polls `addr` until it accepts a TCP connection; returns how long that took. Fails if
    /// the process exits first or `timeout` passes.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<Duration> {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&addr, POLL.max(Duration::from_millis(100))).is_ok() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(self.timed_out(&format!("listen on {addr} within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::TempDir;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn collects_what_the_process_writes_and_its_status() {
        let dir = TempDir::new("kit-proc");
        let log = dir.join("log");
        std::fs::write(&log, "earlier run\n").unwrap();
        let mut p = Proc::spawn("echo", sh("echo out; echo err >&2; exit 3"), &log).unwrap();
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(p.pid(), 0);
        assert!(p.own_log().contains("out\n") && p.own_log().contains("err\n"));
        assert!(!p.own_log().contains("earlier"));
        assert!(p.log().starts_with("earlier run\n"));
        let e = p.check_running().unwrap_err();
        assert!(e.to_string().contains("echo exited"), "{e}");
        assert!(p.signal(Signal::Term).is_err());
        // Stopping what has exited is a no-op that reports the status.
        assert_eq!(
            p.stop(Signal::Term, Duration::ZERO).unwrap().code(),
            Some(3)
        );
    }

    #[test]
    fn stops_gracefully_or_by_force() {
        let dir = TempDir::new("kit-proc");
        let log = dir.join("log");
        let mut graceful = Proc::spawn(
            "graceful",
            sh("trap 'exit 0' TERM; while :; do sleep 0.01; done"),
            &log,
        )
        .unwrap();
        // Give the shell a moment to install its trap.
        std::thread::sleep(Duration::from_millis(200));
        graceful.check_running().unwrap();
        let status = graceful
            .stop(Signal::Term, Duration::from_secs(10))
            .unwrap();
        assert_eq!(status.code(), Some(0));

        let mut stubborn = Proc::spawn("stubborn", sh("trap '' TERM; sleep 30"), &log).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let e = stubborn
            .stop(Signal::Term, Duration::from_millis(300))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stubborn.pid(), 0, "killed and reaped after the timeout");

        let mut crashed = Proc::spawn("crashed", sh("sleep 30"), &log).unwrap();
        let status = crashed.kill(Duration::from_secs(10)).unwrap();
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn is_killed_when_dropped() {
        let dir = TempDir::new("kit-proc");
        let p = Proc::spawn("sleeper", sh("sleep 30"), &dir.join("log")).unwrap();
        let pid = p.pid().to_string();
        drop(p);
        let alive = Command::new("kill")
            .args(["-0", &pid])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!alive.success(), "process {pid} outlived its Proc");
    }

    #[test]
    fn waits_for_a_port() {
        let dir = TempDir::new("kit-proc");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut p = Proc::spawn("sleeper", sh("sleep 30"), &dir.join("log")).unwrap();
        p.wait_for_port(addr, Duration::from_secs(10)).unwrap();
        drop(listener);
        let free = free_port().unwrap();
        let e = p
            .wait_for_port(free, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        p.kill(Duration::from_secs(10)).unwrap();
        let e = p.wait_for_port(free, Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("sleeper exited"), "{e}");
    }
}
