//! TLS for the API listener (gate, bouncer API, dashboard): the server
//! certificate and key, optional client certificates, and their reload.
//!
//! [`Tls`] holds the files ([`TlsFiles`]) and the rustls configuration made
//! from them (ring provider, TLS 1.2 and 1.3, `http/1.1`). [`Tls::reload`]
//! reads the files again and swaps the configuration for the next
//! handshakes; a file that does not load leaves the previous configuration
//! serving and returns an error naming the file. [`Tls::reload_if_changed`]
//! does the same only when a file's inode, size or mtime moved, so a caller
//! can poll it.
//!
//! **Client certificates** (with `client_ca`): a client *may* present one;
//! the handshake then checks it chains to `client_ca` and is valid now. A
//! certificate whose subject has an organisational unit (OU) in `client_ou`
//! identifies a bouncer named by its common name (CN), as CrowdSec's LAPI
//! does with `bouncers_allowed_ou` (default `bouncer-ou`): the connection's
//! requests carry a [`ClientCert`] and the bouncer API takes it in place of
//! an API key. A valid certificate with another OU identifies nobody (the
//! client still needs a key). Clients without a certificate (browsers,
//! nginx, API-key bouncers) connect as before. No revocation list is read:
//! to withdraw a certificate, re-issue the CA or remove its OU from
//! `client_ou`.
//!
//! It does not own the accept loop ([`crate::serve_tls`] is in `listener`)
//! or the config file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Where the listener's certificate, key and client CA are, and which client
/// certificates name a bouncer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA(s) client certificates must chain to. None: no client certificates.
    pub client_ca: Option<PathBuf>,
    /// OUs of client certificates that identify a bouncer (by CN).
    pub client_ou: Vec<String>,
}

/// The OU CrowdSec's LAPI accepts for bouncers by default.
pub const DEFAULT_CLIENT_OU: &str = "bouncer-ou";

/// Why the TLS files did not load. Each names the file and what to check.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("reading {0} (check the path and that the daemon's user may read it)")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file holds no PEM certificate.
    #[error("{0} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCert(PathBuf),
    /// The file holds no PEM private key.
    #[error("{0} holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or an RSA/EC key)")]
    NoKey(PathBuf),
    /// The file is not valid PEM.
    #[error("{0} is not valid PEM: {1}")]
    Pem(PathBuf, String),
    /// A CA certificate was refused.
    #[error("{0}: a CA certificate was refused: {1}")]
    Ca(PathBuf, String),
    /// The certificate and key do not make a server configuration (mismatch,
    /// unsupported key type).
    #[error("{cert} with key {key}: {reason} (do the certificate and the key belong together?)")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// A client certificate that chained to `client_ca` and has an allowed OU:
/// the bouncer it names (its CN). Inserted into each request of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub name: String,
}

/// (inode, size, mtime) of each file, to notice a change.
type Stamp = Vec<Option<(u64, u64, std::time::SystemTime)>>;

struct Current {
    files: TlsFiles,
    config: Arc<rustls::ServerConfig>,
    stamp: Stamp,
}

/// The listener's TLS state, shared by the accept loop and whoever reloads it.
pub struct Tls {
    /// Read once per handshake, written at reload; never held across `.await`.
    current: RwLock<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.read().files)
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.to_path_buf(), e))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(path.to_path_buf(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_path_buf()));
    }
    Ok(certs)
}

fn stamp(files: &TlsFiles) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()?))
    })
    .collect()
}

/// Builds the rustls configuration from `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(&files.cert)?;
    let key_bytes = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(files.key.clone()),
        e => TlsError::Pem(files.key.clone(), e.to_string()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_error = |e: rustls::Error| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Ca(ca.clone(), e.to_string()))?;
            }
            // Optional: browsers, nginx and API-key bouncers present none.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Ca(ca.clone(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Tls {
    /// Loads `files`; an error names the file that did not load.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let stamp = stamp(&files);
        let config = server_config(&files)?;
        Ok(Arc::new(Tls {
            current: RwLock::new(Current {
                files,
                config,
                stamp,
            }),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        // Poisoned only by a panic between two field writes of a reload; every value is whole.
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The files in use.
    pub fn files(&self) -> TlsFiles {
        self.read().files.clone()
    }

    /// The configuration for the next handshake.
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        self.read().config.clone()
    }

    /// Loads `files` (the same or new paths) and serves them from the next
    /// handshake on; on error the previous files keep serving.
    pub fn reload(&self, files: TlsFiles) -> Result<(), TlsError> {
        let stamp = stamp(&files);
        let config = server_config(&files)?;
        let mut w = self.current.write().unwrap_or_else(|e| e.into_inner());
        *w = Current {
            files,
            config,
            stamp,
        };
        Ok(())
    }

    /// [`Tls::reload`] of the same files when one of them changed since the
    /// last load (inode, size or mtime). `Ok(true)`: reloaded. A failed load
    /// is retried at the next change, not at every call.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (files, old) = {
            let c = self.read();
            (c.files.clone(), c.stamp.clone())
        };
        let now = stamp(&files);
        if now == old {
            return Ok(false);
        }
        match server_config(&files) {
            Ok(config) => {
                let mut w = self.current.write().unwrap_or_else(|e| e.into_inner());
                w.config = config;
                w.stamp = now;
                Ok(true)
            }
            Err(e) => {
                self.current
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .stamp = now;
                Err(e)
            }
        }
    }

    /// The bouncer a verified client certificate names, under the OU policy.
    pub(crate) fn identify(&self, peer_certs: Option<&[CertificateDer<'_>]>) -> Option<ClientCert> {
        let leaf = peer_certs?.first()?;
        let c = self.read();
        c.files.client_ca.as_ref()?;
        identify(leaf, &c.files.client_ou)
    }
}

/// The CN of `leaf` when one of its OUs is in `allowed`.
fn identify(leaf: &CertificateDer<'_>, allowed: &[String]) -> Option<ClientCert> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let ou_ok = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .any(|ou| allowed.iter().any(|a| a == ou));
    if !ou_ok {
        tracing::debug!(subject = %subject, "client certificate without an allowed OU");
        return None;
    }
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    if cn.is_empty() {
        return None;
    }
    Some(ClientCert {
        name: cn.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(ou: &str, cn: &str) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, ou);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let k = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&k).unwrap().der().clone()
    }

    #[test]
    fn the_ou_policy_names_a_bouncer_by_its_cn() {
        let allowed = vec![DEFAULT_CLIENT_OU.to_string()];
        assert_eq!(
            identify(&cert("bouncer-ou", "fw1"), &allowed),
            Some(ClientCert { name: "fw1".into() })
        );
        assert_eq!(identify(&cert("agent-ou", "fw1"), &allowed), None);
        assert_eq!(identify(&cert("bouncer-ou", ""), &allowed), None);
    }

    #[test]
    fn errors_name_the_file_that_did_not_load() {
        let dir = tempfile::tempdir().unwrap();
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, c.pem()).unwrap();
        std::fs::write(&key, k.serialize_pem()).unwrap();
        let files = |cert: &Path, key: &Path| TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            client_ou: vec![],
        };
        let tls = Tls::load(files(&cert, &key)).unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Tls::load(files(&missing, &key)).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let e = Tls::load(files(&key, &key)).unwrap_err().to_string();
        assert!(
            e.contains("k.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = Tls::load(files(&cert, &cert)).unwrap_err().to_string();
        assert!(
            e.contains("c.pem") && e.contains("no PEM private key"),
            "{e}"
        );
        let other = rcgen::KeyPair::generate().unwrap();
        let wrong = dir.path().join("wrong.pem");
        std::fs::write(&wrong, other.serialize_pem()).unwrap();
        let e = Tls::load(files(&cert, &wrong)).unwrap_err().to_string();
        assert!(e.contains("wrong.pem"), "{e}");
        // A bad reload keeps the files that serve.
        assert!(tls.reload(files(&cert, &wrong)).is_err());
        assert_eq!(tls.files().key, key);
        assert!(!tls.reload_if_changed().unwrap(), "nothing changed");
        std::fs::write(&key, other.serialize_pem()).unwrap();
        assert!(tls.reload_if_changed().is_err(), "a mismatched key");
        assert!(
            !tls.reload_if_changed().unwrap(),
            "retried at the next change only"
        );
    }
}
