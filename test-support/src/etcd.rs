//! A real etcd server (Debian's `etcd-server`, 3.4) on loopback for tests of replication:
//! its own temporary data directory, free ports, killed by its pid when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcd server on loopback; killed (SIGKILL by pid) on drop.
pub struct Etcd {
    child: Option<Child>,
    /// The URL clients use, `http://127.0.0.1:PORT`.
    pub client_url: String,
    client_port: u16,
    data: tempfile::TempDir,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

impl Etcd {
    /// Starts etcd and waits until it accepts connections.
    ///
    /// # Panics
    /// When `etcd` is not installed (the message says how to install it) or does not start.
    pub fn start() -> Etcd {
        let data = tempfile::tempdir().expect("temporary directory");
        let client_port = free_port();
        let mut etcd = Etcd {
            child: None,
            client_url: format!("http://127.0.0.1:{client_port}"),
            client_port,
            data,
        };
        etcd.launch();
        etcd
    }

    fn launch(&mut self) {
        let peer_port = free_port();
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let spawned = Command::new("etcd")
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.data.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.client_url))
            .arg(format!("--advertise-client-urls={}", self.client_url))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => panic!(
                "cannot start `etcd` ({error}); these tests need the real server: run \
                 `bash .ci/run` (it installs it) or `apt-get install etcd-server`"
            ),
        };
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "etcd exited at start ({status:?}); see {}",
                    self.log_path().display()
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "etcd did not listen within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// etcd's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data.path().join("etcd.log")
    }

    /// Kills etcd (SIGKILL by pid); its data stays for [`Etcd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
