//! Certificates for the TLS tests, made with the `openssl` command (scripts/test installs it):
//! a server's for localhost, and a CA with a client certificate it signed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(args: &[&str], paths: &[&Path]) {
    let made = Command::new("openssl")
        .args(args)
        .args(paths)
        .output()
        .expect("the openssl command runs (scripts/test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed certificate for localhost and 127.0.0.1, and its key: (cert.pem, key.pem).
pub fn server(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend(["-nodes", "-days", "1", "-subj", "/CN=localhost"]);
    args.extend(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
    // a server's certificate, not a CA's (which rustls refuses as an end entity)
    args.extend(["-addext", "basicConstraints=critical,CA:FALSE"]);
    args.extend(["-addext", "extendedKeyUsage=serverAuth", "-keyout"]);
    openssl(&args, &[&key, Path::new("-out"), &cert]);
    (cert, key)
}

/// A CA named `name` and a client certificate it signed: (ca.pem, client cert, client key).
pub fn client(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join(format!("{name}-ca.pem"));
    let ca_key = dir.join(format!("{name}-ca.key"));
    let cert = dir.join(format!("{name}-client.pem"));
    let key = dir.join(format!("{name}-client.key"));
    let csr = dir.join(format!("{name}-client.csr"));
    let ext = dir.join(format!("{name}-client.ext"));
    let subject = format!("/CN={name} CA");
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend(["-nodes", "-days", "1", "-subj", &subject]);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    args.extend(["-addext", "keyUsage=critical,keyCertSign", "-keyout"]);
    openssl(&args, &[&ca_key, Path::new("-out"), &ca]);
    let mut args = vec!["req"];
    args.extend(EC);
    args.extend(["-nodes", "-subj", "/CN=lab-sender", "-keyout"]);
    openssl(&args, &[&key, Path::new("-out"), &csr]);
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        &["x509", "-req", "-days", "1", "-CAcreateserial", "-in"],
        &[
            &csr,
            Path::new("-CA"),
            &ca,
            Path::new("-CAkey"),
            &ca_key,
            Path::new("-extfile"),
            &ext,
            Path::new("-out"),
            &cert,
        ],
    );
    (ca, cert, key)
}
