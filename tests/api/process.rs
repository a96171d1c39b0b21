//! The server as its own process (`emrsync serve`, the binary a hospital runs), for tests that
//! kill it, start several, or read what it costs the machine.

use emrsync::config::StoreArgs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub root: String,
}

/// A server left running by a failed assertion would outlive the test: it is killed on drop.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The most memory the process has held so far (VmHWM, in KiB).
    pub fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

/// `emrsync serve` on `port` and `store`, with `extra` flags.
pub fn start(port: u16, store: &StoreArgs, extra: &[&str]) -> Server {
    let mut cmd = serve(port, store, extra);
    // the server's own log, kept when the test asks for it (a failure's first clue)
    match std::env::var("EMRSYNC_TEST_CHILD_LOG") {
        Ok(path) => {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            cmd.stderr(log);
        }
        Err(_) => {
            cmd.stderr(Stdio::null());
        }
    }
    spawn(cmd, port)
}

/// `start`, its log (warnings and errors) written to `log` for the test to read.
pub fn start_logged(port: u16, store: &StoreArgs, extra: &[&str], log: &std::path::Path) -> Server {
    let mut cmd = serve(port, store, extra);
    cmd.env("EMRSYNC_LOG", "warn")
        .stderr(std::fs::File::create(log).unwrap());
    spawn(cmd, port)
}

fn serve(port: u16, store: &StoreArgs, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emrsync"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--data-dir")
        .arg(&store.data_dir)
        .env(
            "EMRSYNC_LOG",
            std::env::var("EMRSYNC_TEST_CHILD_LOG_LEVEL").unwrap_or("warn".into()),
        )
        .stdout(Stdio::null());
    if let Some(url) = &store.database_url {
        cmd.args(["--database-url", url.expose()]);
    }
    cmd
}

fn spawn(mut cmd: Command, port: u16) -> Server {
    Server {
        child: cmd.spawn().expect("the emrsync binary starts"),
        root: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn wait_healthy(http: &reqwest::Client, root: &str) {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{root}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server at {root} did not come up");
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sample's value on `/metrics` of the server at `root`: `name` as the page writes it, labels
/// included (`emrsync_outbox_depth{stage="stream"}`); 0 when the page has no such line yet.
pub async fn metric(http: &reqwest::Client, root: &str, name: &str) -> f64 {
    let page = http
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
