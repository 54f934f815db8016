//! Member identity: the ed25519 key pair a member signs signals and its TLS
//! certificate with, and the text forms of public keys (`ed25519:<base64>`).
//!
//! Owns key generation, the private key file (PKCS#8 PEM, created 0600) and
//! public key parsing. It does not know about treaties or transports.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a key could not be created, read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system random source failed; nothing was written.
    #[error("cannot get random bytes for a new key from the operating system: {0}")]
    Random(String),
    /// The key file exists; keygen never overwrites a key (that would change the member's identity).
    #[error(
        "{0} already exists; refusing to overwrite a member key (remove it first, or pass --force)"
    )]
    Exists(PathBuf),
    /// Writing or reading the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file is not an ed25519 PKCS#8 PEM written by `shield union keygen`.
    #[error(
        "key file {path} is not an ed25519 PKCS#8 PEM private key ({why}); create one with `shield union keygen`"
    )]
    Malformed { path: PathBuf, why: String },
    /// The key file can be read by others than its owner.
    #[error(
        "key file {path} has mode {mode:o}; a member key must be private: run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    /// A public key in a treaty or on the command line is not `ed25519:<base64 of 32 bytes>`.
    #[error(
        "public key `{0}` is not valid; expected `ed25519:` followed by the base64 of 32 bytes"
    )]
    BadPublic(String),
}

/// A member's key pair.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identity({})",
            public_to_string(&self.key.verifying_key())
        )
    }
}

impl Identity {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Identity, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Identity {
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as written in treaties: `ed25519:<base64>`.
    pub fn public_string(&self) -> String {
        public_to_string(&self.public())
    }

    /// The private key as PKCS#8 DER (what rustls and rcgen load).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        // Encoding a valid 32-byte key into PKCS#8 cannot fail.
        self.key
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    fn pem(&self) -> String {
        let b64 = B64.encode(self.pkcs8_der());
        let mut s = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            s.push('\n');
        }
        s.push_str("-----END PRIVATE KEY-----\n");
        s
    }

    /// Write the key to `path`, creating the file with mode 0600 (never widened
    /// and then narrowed). Refuses to overwrite unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if force && path.exists() {
            std::fs::remove_file(path).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists(path.to_owned())
                } else {
                    io(e)
                }
            })?;
        f.write_all(self.pem().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Load a key written by [`Identity::write`]. Refuses a file others can read.
    pub fn load(path: &Path) -> Result<Identity, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Malformed {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
        Ok(Identity { key })
    }
}

/// `ed25519:<base64>` for a public key.
pub fn public_to_string(k: &VerifyingKey) -> String {
    format!("ed25519:{}", B64.encode(k.as_bytes()))
}

/// Parse `ed25519:<base64>` (the prefix is optional).
pub fn parse_public(s: &str) -> Result<VerifyingKey, KeyError> {
    let t = s.trim();
    let b = t.strip_prefix("ed25519:").unwrap_or(t);
    let bytes = B64.decode(b).map_err(|_| KeyError::BadPublic(s.into()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError::BadPublic(s.into()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::BadPublic(s.into()))
}

/// The DER SubjectPublicKeyInfo of an ed25519 key (RFC 8410), as found in certificates.
pub fn spki_der(k: &VerifyingKey) -> Vec<u8> {
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let mut v = PREFIX.to_vec();
    v.extend_from_slice(k.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_created_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("member.key");
        let id = Identity::generate().unwrap();
        id.write(&p, false).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Identity::load(&p).unwrap();
        assert_eq!(back.public(), id.public());
        assert!(matches!(id.write(&p, false), Err(KeyError::Exists(_))));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(Identity::load(&p), Err(KeyError::TooOpen { .. })));
    }

    #[test]
    fn public_key_text_round_trip() {
        let id = Identity::from_seed([7; 32]);
        let s = id.public_string();
        assert!(s.starts_with("ed25519:"));
        assert_eq!(parse_public(&s).unwrap(), id.public());
        assert!(parse_public("ed25519:AAAA").is_err());
        assert!(parse_public("not base64 !").is_err());
    }
}
