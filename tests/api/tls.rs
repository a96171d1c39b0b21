//! HTTP over TLS (`--tls-cert`, `--tls-key`): a client that trusts the certificate reads and
//! writes as usual, answers say Strict-Transport-Security, and the base URL is https. MLLP
//! with client certificates (`--mllp-tls-client-ca`): only a sender holding a certificate that
//! CA signed gets through the handshake.

use crate::certs;
use crate::helpers::{Backend, spawn_with};
use crate::hl7v2::{adt, patient};
use crate::mllp_client::frame;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fhir_api_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certs::server(dir.path());
    let app = spawn_with(Backend::Sqlite, |s| {
        s.tls_cert = Some(cert.clone());
        s.tls_key = Some(key.clone());
    })
    .await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let trusted = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([trusted])
        .build()
        .unwrap();
    let r = https
        .post(app.url("Patient"))
        .bearer_auth(&app.token)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "gender": "female"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["strict-transport-security"].to_str().unwrap(),
        "max-age=31536000"
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("https://"), "{location}");
    // plain HTTP to the TLS port gets nothing
    let plain = reqwest::get(app.url("metadata").replace("https://", "http://")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

async fn handshake(
    port: u16,
    server_cert: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // TLS 1.3 finishes the client's side before the server has checked its certificate: a
    // refused one shows on the first exchange
    tls.write_all(b"").await?;
    Ok(tls)
}

async fn ack_over(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    msg: &str,
) -> String {
    if tls.write_all(&frame(msg.as_bytes())).await.is_err() {
        return String::new();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.contains(&0x1C) {
        match tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_senders_need_a_certificate_the_hospital_issued() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certs::server(dir.path());
    let (ca, lab_cert, lab_key) = certs::client(dir.path(), "hospital");
    let (_, stranger_cert, stranger_key) = certs::client(dir.path(), "stranger");
    let app = spawn_with(Backend::Sqlite, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.mllp_tls_cert = Some(cert.clone());
        s.mllp_tls_key = Some(key.clone());
        s.mllp_tls_client_ca = Some(ca.clone());
    })
    .await;
    let port = app.mllp.unwrap();

    // the hospital's sender: its message goes in
    let mut lab = handshake(port, &cert, Some((&lab_cert, &lab_key)))
        .await
        .unwrap();
    let ack = ack_over(&mut lab, &adt("A01", "C1", "MRN-CERT", "V1", "Certified")).await;
    assert!(ack.contains("MSA|AA|C1"), "{ack}");
    // no certificate, or one another CA signed: nothing gets in
    for client in [
        None,
        Some((stranger_cert.as_path(), stranger_key.as_path())),
    ] {
        let ack = match handshake(port, &cert, client).await {
            Ok(mut tls) => ack_over(&mut tls, &adt("A01", "X1", "MRN-X", "V2", "Stranger")).await,
            Err(_) => String::new(),
        };
        assert!(!ack.contains("MSA|"), "{ack}");
    }
    assert_eq!(patient(&app, "MRN-CERT").await.len(), 1);
    assert!(patient(&app, "MRN-X").await.is_empty());
}
