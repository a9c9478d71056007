//! The gateway's Ed25519 signing key: loaded from a PEM (PKCS#8) file, created with owner-only
//! permissions on first start when absent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::io::Write;
use std::path::Path;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create signing key {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("signing key {path} is not an Ed25519 PKCS#8 PEM private key")]
    Invalid { path: String },
    #[error("cannot generate a signing key: the system random source failed")]
    Random,
}

/// The signing key and the key id (`kid`) derived from its public half.
pub struct SessionKeys {
    pub(crate) pair: Ed25519KeyPair,
    pub(crate) kid: String,
    pub(crate) rng: SystemRandom,
    pkcs8: Vec<u8>,
    /// Tokens this key has verified (see `verified.rs`).
    pub(crate) verified: crate::verified::Verified,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Load the key at `path`, or create it (mode 0600, parent directories as needed).
    pub fn load_or_create(path: &Path) -> Result<SessionKeys, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => SessionKeys::from_pem(&text).ok_or(KeyError::Invalid { path: shown }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
                let pem = to_pem(pkcs8.as_ref());
                write_private(path, pem.as_bytes())
                    .map_err(|source| KeyError::Create { path: shown.clone(), source })?;
                SessionKeys::from_pem(&pem).ok_or(KeyError::Invalid { path: shown })
            }
            Err(source) => Err(KeyError::Read { path: shown, source }),
        }
    }

    /// A fresh in-memory key (tests, demos).
    pub fn generate() -> Result<SessionKeys, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        SessionKeys::from_pkcs8(pkcs8.as_ref()).ok_or(KeyError::Random)
    }

    pub fn from_pem(text: &str) -> Option<SessionKeys> {
        let body = text.trim().strip_prefix(PEM_BEGIN)?.strip_suffix(PEM_END)?;
        let der: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        SessionKeys::from_pkcs8(&STANDARD.decode(der).ok()?)
    }

    fn from_pkcs8(der: &[u8]) -> Option<SessionKeys> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let kid = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Some(SessionKeys {
            pair,
            kid,
            rng: SystemRandom::new(),
            pkcs8: der.to_vec(),
            verified: Default::default(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as the PEM text it is stored as.
    pub fn to_pem(&self) -> String {
        to_pem(self.pkcs8.as_ref())
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// An Ed25519 signature over `message` (the same key type signs audit checkpoints, with
    /// its own key file).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

fn to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// Write a new private file (mode 0600), never replacing one that exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    // create_new: never overwrite a key another process created in the meantime.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = std::env::temp_dir().join(format!("airlock-keys-{}", std::process::id()));
        let path = dir.join("nested/session.key");
        let _ = std::fs::remove_dir_all(&dir);
        let a = SessionKeys::load_or_create(&path).unwrap();
        let b = SessionKeys::load_or_create(&path).unwrap();
        assert_eq!(a.kid(), b.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(SessionKeys::load_or_create(&path), Err(KeyError::Invalid { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
