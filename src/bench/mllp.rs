//! `mllp`: K concurrent MLLP senders (`--clients`), each sending ADT messages one after
//! another and waiting for each ACK, as interface engines do. The mix is what an ADT feed
//! carries: for each new patient an admission (A01), then demographic updates (A08), a
//! transfer (A02) and a discharge (A03). Prints messages/s and ACK latency percentiles; a
//! message answered with anything but AA counts as an error.

use super::stats::Sample;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `n`th message of sender `client`: a 5-message story per patient.
fn message(client: usize, n: u64) -> String {
    let patient = n / 5;
    let (trigger, ward, discharge) = match n % 5 {
        0 => ("A01", "4W", ""),
        1 | 2 => ("A08", "4W", ""),
        3 => ("A02", "5E", ""),
        _ => ("A03", "5E", "20261125180000"),
    };
    let mrn = format!("B{client}-{patient}");
    format!(
        "MSH|^~\\&|BENCH|GOOD HEALTH|EMRSYNC|HUB|20261125120000||ADT^{trigger}^ADT_A01|{client}-{n}|P|2.5.1\r\
         EVN|{trigger}|20261125120000\r\
         PID|1||{mrn}^^^GH&1.2.840.114350.1&ISO^MR||Bench{n}^Pat^Q||19800214|F|||{n} Main St^^Springfield^IL^62701^USA^H\r\
         PV1|1|I|{ward}^{room}^A^GOOD HEALTH||||1234^Welby^Marcus^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO||||||||||||V{mrn}^^^GH&1.2.840.114350.1&ISO^VN|||||||||||||||||||||||||20261125113000|{discharge}\r",
        room = 400 + patient % 50,
    )
}

/// Send and wait for the ACK; true when it is AA.
async fn send(stream: &mut TcpStream, buf: &mut Vec<u8>, text: &str) -> std::io::Result<bool> {
    let mut framed = Vec::with_capacity(text.len() + 3);
    framed.push(0x0B);
    framed.extend_from_slice(text.as_bytes());
    framed.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&framed).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.contains(&0x1C) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(buf).contains("MSA|AA|"))
}

pub async fn run(addr: &str, clients: usize, seconds: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    // each run's control ids and patients are its own
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    for client in 0..clients {
        let addr = addr.to_string();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return outcomes;
            };
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let text = message(client, n).replace("BENCH|", &format!("BENCH-{run}|"));
                let at = Instant::now();
                let ok = send(&mut stream, &mut buf, &text).await.unwrap_or(false);
                outcomes.push((at.elapsed(), ok, 1));
                n += 1;
            }
            outcomes
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    anyhow::ensure!(!all.is_empty(), "no MLLP listener answered at {addr}");
    let sample = Sample::from_outcomes(all, started.elapsed());
    println!("{}", sample.row("mllp"));
    Ok(())
}
