//! MLLP over TLS (`--mllp-tls-cert`, `--mllp-tls-key`): a sender that trusts the server's
//! certificate gets its ACK over the encrypted connection; one that speaks plain TCP to the TLS
//! port has nothing applied, and the port goes on serving.

use crate::helpers::{Backend, spawn_with};
use crate::hl7v2::{adt, patient};
use crate::mllp_client::frame;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until an MLLP end marker, the end of the stream, or 5 s: what came.
async fn reply(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.contains(&0x1C) {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::certs::server(dir.path());
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_tls_cert = Some(cert.clone());
        s.mllp_tls_key = Some(key.clone());
    })
    .await;
    let port = app.mllp.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the TLS handshake with the MLLP port");
    let a01 = adt("A01", "T1", "MRN-TLS", "V-TLS", "Secure");
    tls.write_all(&frame(a01.as_bytes())).await.unwrap();
    let ack = reply(&mut tls).await;
    assert!(ack.contains("MSA|AA|T1"), "{ack}");
    assert_eq!(patient(&app, "MRN-TLS").await.len(), 1);

    // plain HL7 to the TLS port: not a TLS handshake, so no ACK and nothing applied
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let cleartext = adt("A01", "P1", "MRN-PLAIN", "V-PLAIN", "Cleartext");
    plain.write_all(&frame(cleartext.as_bytes())).await.unwrap();
    let answer = reply(&mut plain).await;
    assert!(!answer.contains("MSA|"), "{answer}");
    assert!(patient(&app, "MRN-PLAIN").await.is_empty());

    // the encrypted connection goes on
    let a08 = adt("A08", "T2", "MRN-TLS", "V-TLS", "Secure-Again");
    tls.write_all(&frame(a08.as_bytes())).await.unwrap();
    assert!(reply(&mut tls).await.contains("MSA|AA|T2"));
    assert_eq!(
        patient(&app, "MRN-TLS").await[0]["name"][0]["family"],
        "Secure-Again"
    );
}
