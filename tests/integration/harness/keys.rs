//! Throwaway ssh keys, made and read by the real `ssh-keygen`: host keys for the private
//! sshd instances, client keys for logins and for `pipe-admin key add`, and the
//! fingerprints `ssh-keygen -l` prints, which the tests compare with pipe's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A fresh key pair of type `kind` (`ed25519`, `ecdsa`, …) without passphrase: the private
/// key at `path`, the public key next to it. Returns the public key file.
pub fn keygen(path: &Path, kind: &str, comment: &str) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    public_file(path)
}

/// `PATH.pub`, where ssh-keygen writes the public half of the key at `PATH`.
pub fn public_file(private_key: &Path) -> PathBuf {
    let mut p = private_key.to_path_buf().into_os_string();
    p.push(".pub");
    PathBuf::from(p)
}

/// The `SHA256:…` fingerprints `ssh-keygen -l` prints for a file of public keys (a `.pub`
/// file or an authorized_keys), in order.
pub fn fingerprints(file: &Path) -> Vec<String> {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen -l");
    assert!(
        out.status.success(),
        "ssh-keygen -l -f {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // "256 SHA256:… comment (ED25519)"
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .filter(|w| w.starts_with("SHA256:"))
                .unwrap_or_else(|| panic!("no fingerprint in ssh-keygen -l output: {line:?}"))
                .to_string()
        })
        .collect()
}

/// The `SHA256:…` fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn fingerprint(public_key_file: &Path) -> String {
    let mut all = fingerprints(public_key_file);
    assert!(!all.is_empty(), "no key in {}", public_key_file.display());
    all.remove(0)
}

/// A client key pair a test made.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// The private key file (`ssh -i`).
    pub path: PathBuf,
    /// The public key line, `ssh-ed25519 AAAA… comment`.
    pub public: String,
    /// `SHA256:…`
    pub fingerprint: String,
}

impl ClientKey {
    /// A fresh ed25519 key pair at `path` with the comment `comment`.
    pub fn generate(path: PathBuf, comment: &str) -> ClientKey {
        let public_file = keygen(&path, "ed25519", comment);
        ClientKey {
            public: fs::read_to_string(&public_file).unwrap().trim().to_string(),
            fingerprint: fingerprint(&public_file),
            path,
        }
    }

    /// The `.pub` file next to the private key.
    pub fn public_file(&self) -> PathBuf {
        public_file(&self.path)
    }
}
