//! A legacy EMR for the tests: a real MLLP receiver on loopback that keeps every message it
//! accepts, answers each with an ACK (AA, or AE with an ERR when told to refuse messages that
//! contain some text), and can go down (its port closed, its connections dropped) and come
//! back on the same port.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct LegacyEmr {
    pub port: u16,
    got: Arc<Mutex<Vec<String>>>,
    /// Messages containing this text are answered AE.
    refuse: Arc<Mutex<Option<String>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl LegacyEmr {
    pub async fn start() -> LegacyEmr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let emr = LegacyEmr {
            port,
            got: Arc::default(),
            refuse: Arc::default(),
            task: Mutex::new(None),
        };
        emr.serve(listener);
        emr
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let (got, refuse) = (self.got.clone(), self.refuse.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (got, refuse) = (got.clone(), refuse.clone());
                connections.spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.iter().position(|&b| b == 0x1C) {
                            let start = pending.iter().position(|&b| b == 0x0B).unwrap_or(0);
                            let text = String::from_utf8_lossy(&pending[start + 1..end]).to_string();
                            let rest = (end + 2).min(pending.len());
                            pending.drain(..rest);
                            let control = field(&text, "MSH", 10);
                            let refused = refuse
                                .lock()
                                .unwrap()
                                .as_ref()
                                .is_some_and(|r| text.contains(r.as_str()));
                            let ack = match refused {
                                true => format!(
                                    "MSH|^~\\&|LEGACY|GOOD HEALTH|EMRSYNC|HUB|20261206||ACK|L{control}|P|2.5.1\r\
                                     MSA|AE|{control}\r\
                                     ERR||PID^1^5|207^Application internal error^HL70357|E||||Name not accepted here"
                                ),
                                false => {
                                    got.lock().unwrap().push(text);
                                    format!(
                                        "MSH|^~\\&|LEGACY|GOOD HEALTH|EMRSYNC|HUB|20261206||ACK|L{control}|P|2.5.1\rMSA|AA|{control}"
                                    )
                                }
                            };
                            let mut framed = vec![0x0B];
                            framed.extend_from_slice(ack.as_bytes());
                            framed.extend_from_slice(&[0x1C, 0x0D]);
                            if socket.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Close the port and every connection: the EMR is down.
    pub fn down(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }

    /// Listen again on the same port.
    pub async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("port {} cannot be taken again: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    /// Answer AE to messages containing `text` (`None`: accept everything).
    pub fn refuse(&self, text: Option<&str>) {
        *self.refuse.lock().unwrap() = text.map(str::to_string);
    }

    /// The messages accepted so far.
    pub fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    /// Wait (up to `secs`) until `n` messages were accepted; returns them.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LegacyEmr {
    fn drop(&mut self) {
        self.down();
    }
}

/// Field `n` of the first segment `id` (MSH counted as v2 counts it: MSH-9 is `field(.., "MSH", 9)`).
pub fn field(text: &str, id: &str, n: usize) -> String {
    let Some(line) = text.split('\r').find(|l| l.starts_with(id)) else {
        return String::new();
    };
    let parts: Vec<&str> = line.split('|').collect();
    let i = if id == "MSH" { n - 1 } else { n };
    parts.get(i).map(|s| s.to_string()).unwrap_or_default()
}
