//! The on-disk certificate cache of one ACME directory:
//! `<cache root>/<hex sha256 of the directory>/<host>`, plus the account.
//!
//! The layout and the per-host file (private key PEM, then the chain) are Go autocert's, and
//! Let's Encrypt production hashes the empty string as Go does, so a host moving from the Go
//! proxy keeps its certificates. Writes go to a temporary file that is renamed into place, so
//! a crash never leaves half a key; files are private to the proxy's user.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::super::certificate::{self, CertificateError};
use crate::service::options::LETS_ENCRYPT_PRODUCTION;

const ACCOUNT_FILE: &str = "acme_account.json";

#[derive(Debug, Clone)]
pub struct CertCache {
    directory: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CertCache {
    pub fn new(root: &Path, directory_url: &str) -> CertCache {
        // Go's autocert stores production under the hash of its empty directory setting.
        let key = if directory_url == LETS_ENCRYPT_PRODUCTION {
            ""
        } else {
            directory_url
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        CertCache {
            directory: root.join(hex(digest.as_ref())),
        }
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The cached certificate of `host`; `Ok(None)` when there is none.
    pub fn load(&self, host: &str) -> Result<Option<Arc<CertifiedKey>>, CertificateError> {
        let path = self.directory.join(host);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CertificateError::Unreadable {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let origin = path.display().to_string();
        certificate::from_pem(&bytes, &bytes, &origin, &origin).map(Some)
    }

    pub fn store(&self, host: &str, key_pem: &str, chain_pem: &str) -> std::io::Result<()> {
        self.write(host, format!("{key_pem}{chain_pem}").as_bytes())
    }

    pub fn load_account(&self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.directory.join(ACCOUNT_FILE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub fn store_account(&self, credentials: &[u8]) -> std::io::Result<()> {
        self.write(ACCOUNT_FILE, credentials)
    }

    fn write(&self, name: &str, contents: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.directory)?;
        let temporary = self.directory.join(format!(".{name}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.directory.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_directories_as_go_autocert_does() {
        let root = Path::new("/c");
        assert!(CertCache::new(root, LETS_ENCRYPT_PRODUCTION)
            .directory()
            .ends_with("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        let staging = crate::service::options::LETS_ENCRYPT_STAGING;
        assert!(CertCache::new(root, staging)
            .directory()
            .ends_with("67f2750652314251daad76f012141d33c9f7290f4f8ebb0a006a7f02d394a904"));
    }

    #[test]
    fn round_trips_a_certificate_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CertCache::new(dir.path(), "https://ca.test/dir");
        assert!(cache.load("a.example.com").unwrap().is_none());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        cache
            .store("a.example.com", &key.serialize_pem(), &cert.pem())
            .unwrap();
        let loaded = cache.load("a.example.com").unwrap().unwrap();
        assert_eq!(loaded.cert[0].as_ref(), cert.der().as_ref());
    }
}
