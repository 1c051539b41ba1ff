//! A nats-server deployed as docs/scaling.md's secure deployment: TLS with a CA and certificates
//! made here with the openssl CLI, client certificates verified (mutual TLS), and an account for
//! floodwatch whose users (an nkey, a user with a password) may touch only floodwatch's subjects.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::nats_server::NatsServer;

/// How a node authenticates.
#[derive(Clone, Copy, Debug)]
pub enum Auth {
    /// `--nats-nkey` with a seed file.
    Nkey,
    /// `--nats-user` with `--nats-password-file`.
    Password,
}

/// The permissions of floodwatch's users (docs/scaling.md shows the same block).
pub const FLOODWATCH_PERMISSIONS: &str = r#"{
  publish: {
    allow: ["fw.>", "$JS.API.INFO", "$JS.API.STREAM.>", "$JS.API.CONSUMER.>",
            "$JS.API.DIRECT.GET.>", "$JS.ACK.>", "$KV.>", "$O.>"]
    deny: ["$JS.API.STREAM.DELETE.>"]
  }
  subscribe: { allow: ["_INBOX.>"] }
}"#;

/// Certificates and keys made for a test (PEM files in `dir`).
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing the server has.
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    super::assert_ok(&out, format_args!("openssl {args:?}"));
}

/// The `openssl req` options for a new P-256 key, written unencrypted to `key_file`.
fn new_ec_key(key_file: &str) -> [&str; 7] {
    [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key_file,
    ]
}

/// A self-signed CA `name` (name.pem, name.key).
fn make_ca(dir: &Path, name: &str) {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subject = format!("/CN=floodwatch test {name}");
    let certificate = [
        "-out",
        &pem,
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    openssl(
        dir,
        &[&["req", "-x509"][..], &new_ec_key(&key), &certificate].concat(),
    );
}

/// A certificate `name` signed by `ca`, for `usage` (serverAuth or clientAuth).
fn make_leaf(dir: &Path, ca: &str, name: &str, usage: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        ),
    )
    .expect("extension file");
    let (key, csr, subject) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("/CN={name}"),
    );
    let request = ["-out", &csr, "-subj", &subject];
    openssl(
        dir,
        &[&["req", "-new"][..], &new_ec_key(&key), &request].concat(),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &ext,
        ],
    );
}

impl Pki {
    /// Makes a CA, a server and a client certificate signed by it, and an unrelated CA; None
    /// (with a note) when the openssl CLI is missing.
    pub fn make(dir: &Path) -> Option<Pki> {
        if Command::new("openssl").arg("version").output().is_err() {
            if std::env::var("FLOODWATCH_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("FLOODWATCH_REQUIRE_NATS=1 but the openssl CLI is missing (Debian package openssl)");
            }
            eprintln!("skipping: the openssl CLI is not installed");
            return None;
        }
        make_ca(dir, "ca");
        make_ca(dir, "other-ca");
        make_leaf(dir, "ca", "server", "serverAuth");
        make_leaf(dir, "ca", "client", "clientAuth");
        Some(Pki {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        })
    }
}

/// A secure nats-server and what its clients need.
pub struct SecureNats {
    pub server: NatsServer,
    pub pki: Pki,
    pub nkey_seed: PathBuf,
    /// A valid user seed the server does not know.
    pub stranger_seed: PathBuf,
    pub password_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl SecureNats {
    /// Starts one; None (with a note) when nats-server or openssl is missing.
    pub fn start() -> Option<SecureNats> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pki = Pki::make(dir.path())?;
        let user = nkeys::KeyPair::new_user();
        let seed = user.seed().expect("a user seed");
        let nkey_seed = dir.path().join("floodwatch.nk");
        std::fs::write(&nkey_seed, format!("{seed}\n")).expect("seed file");
        let stranger = nkeys::KeyPair::new_user().seed().expect("a user seed");
        let stranger_seed = dir.path().join("stranger.nk");
        std::fs::write(&stranger_seed, stranger).expect("seed file");
        let password = "correct horse battery staple";
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{password}\n")).expect("password file");
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let config = format!(
            r#"
tls {{
  cert_file: {cert}
  key_file: {key}
  ca_file: {ca}
  verify: true
  timeout: 5
}}
FW_PERMISSIONS = {perms}
accounts {{
  FLOODWATCH {{
    jetstream: enabled
    users: [
      {{ nkey: "{public}", permissions: $FW_PERMISSIONS }}
      {{ user: "fw-node", password: "{password}", permissions: $FW_PERMISSIONS }}
    ]
  }}
}}
"#,
            cert = q(&pki.server_cert),
            key = q(&pki.server_key),
            ca = q(&pki.ca),
            perms = FLOODWATCH_PERMISSIONS,
            public = user.public_key(),
        );
        let server = NatsServer::start_configured(&config, "tls")?;
        Some(SecureNats {
            server,
            pki,
            nkey_seed,
            stranger_seed,
            password_file,
            _dir: dir,
        })
    }

    /// The TLS options of a node (CA and client certificate).
    pub fn tls_args(&self) -> Vec<String> {
        let p = |x: &Path| x.display().to_string();
        vec![
            "--nats-tls-ca".into(),
            p(&self.pki.ca),
            "--nats-tls-cert".into(),
            p(&self.pki.client_cert),
            "--nats-tls-key".into(),
            p(&self.pki.client_key),
        ]
    }

    /// Every security option of a node authenticating with `auth`.
    pub fn args(&self, auth: Auth) -> Vec<String> {
        let mut a = self.tls_args();
        match auth {
            Auth::Nkey => {
                a.push("--nats-nkey".into());
                a.push(self.nkey_seed.display().to_string());
            }
            Auth::Password => {
                a.extend(["--nats-user".into(), "fw-node".into()]);
                a.push("--nats-password-file".into());
                a.push(self.password_file.display().to_string());
            }
        }
        a
    }
}
