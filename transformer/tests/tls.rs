//! TLS to PostgreSQL against a real server that accepts only TLS: `verify-full` connects with the
//! right certificate authority and refuses anything else; `disable` is refused by the server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use barge_core::settings::{DatabaseSettings, TlsMode};
use barge_localenv::postgres::Cluster;
use barge_localenv::{TestEnv, TestEnvOptions};
use common::{json, transformer};

/// A certificate authority and a server certificate it signed for 127.0.0.1 and localhost, made
/// with the openssl CLI in `dir`. Returns the CA's, the server certificate's and key's paths.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=barge test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

async fn connect(settings: &DatabaseSettings) -> Result<bool, String> {
    let client = settings
        .connect()
        .await
        .map_err(|err| barge_core::error_chain(&err))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|err| barge_core::error_chain(&err))?;
    Ok(row.get(0))
}

#[tokio::test]
async fn verify_full_connects_only_to_a_server_its_authority_vouches_for() {
    let cluster = Cluster::start_private().await.unwrap();
    let dir = std::env::temp_dir().join(format!("barge-tls-{}", cluster.port()));
    let (ca, certificate, key) = certificates(&dir);
    cluster.require_tls(&certificate, &key).unwrap();
    let verified = DatabaseSettings {
        tls: TlsMode::VerifyFull,
        ca_file: Some(ca.clone()),
        ..cluster.settings("postgres")
    };

    assert_eq!(connect(&verified).await, Ok(true), "encrypted and verified");
    let by_name = DatabaseSettings {
        host: "localhost".into(),
        ..verified.clone()
    };
    assert_eq!(connect(&by_name).await, Ok(true));

    let system_roots = DatabaseSettings {
        ca_file: None,
        ..verified.clone()
    };
    let refused = connect(&system_roots).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    let plain = cluster.settings("postgres");
    let refused = connect(&plain).await.unwrap_err();
    assert!(refused.contains("no encryption"), "{refused}");

    let missing = DatabaseSettings {
        ca_file: Some(dir.join("nope.pem")),
        ..verified.clone()
    };
    let refused = connect(&missing).await.unwrap_err();
    assert!(
        refused.starts_with(&format!(
            "cannot read the certificate authorities for TLS to PostgreSQL from {}",
            dir.join("nope.pem").display()
        )),
        "{refused}"
    );

    // The transformer loads over it.
    let env = TestEnv::with(TestEnvOptions {
        database_admin: Some(verified),
        ..TestEnvOptions::default()
    })
    .await;
    let transformer = transformer(&env).await;
    env.announce(
        "posts",
        "raw/posts/tls.json",
        &json(&barge_sample_api::posts(3)),
    )
    .await;
    assert_eq!(transformer.drain().await.unwrap().loaded.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
