//! `SentFiles`: the certificate, key and error pages a `Deploy` sent as contents
//! (`tls_certificate_pem`, `tls_private_key_pem`, `error_pages_files`), on their way to
//! becoming the daemon's own copies.
//!
//! A deploy names its files either by path (the daemon reads them, as in Go; `busctl` by
//! hand) or by contents (the CLI, which alone can see the caller's files), never both for
//! the same file. Contents are turned into paths at once: the path options are pointed at
//! where the copies will be (`CopyPlan`), so `options::resolve` checks both forms alike and
//! the saved state names the copies. The contents are then parsed here, before anything is
//! written, and a bad certificate or page is refused with the text the path form gives.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::error_pages::ErrorPages;
use super::options::{ServiceOptions, TlsMode};
use crate::control::{ControlError, DeployOptions, ErrorPageFiles, FileContents};
use crate::state::CopyPlan;
use crate::tls::certificate;

/// The contents keys of the pair, which also name the pair's parts in certificate errors.
const CERTIFICATE_PEM: &str = "tls_certificate_pem";
const PRIVATE_KEY_PEM: &str = "tls_private_key_pem";

/// The contents a deploy sent, taken out of its options.
#[derive(Debug)]
pub struct SentFiles {
    plan: CopyPlan,
    certificate: Option<FileContents>,
    private_key: Option<FileContents>,
    error_pages: Option<ErrorPageFiles>,
}

/// What a deploy uses of the files it sent: parsed, and the copies to write.
pub struct CheckedFiles {
    /// `None`: no certificate was sent (or TLS is off), so any comes from its paths.
    pub certificate: Option<Arc<CertifiedKey>>,
    /// `None`: no pages were sent, so any come from their directory.
    pub error_pages: Option<Arc<ErrorPages>>,
    /// The directory the copies go in, which the resolved options already name.
    pub plan: CopyPlan,
    /// Where each copy goes (inside the plan's directory) and its bytes.
    pub copies: Vec<(PathBuf, FileContents)>,
}

/// `InvalidArgs` naming the first set key of `paths` and of `contents` when both forms of a
/// file are given; each key comes with whether the call set it.
fn exclusive(paths: &[(&str, bool)], contents: &[(&str, bool)]) -> Result<(), ControlError> {
    fn first_set<'a>(keys: &[(&'a str, bool)]) -> Option<&'a str> {
        keys.iter().find(|(_, set)| *set).map(|(key, _)| *key)
    }
    match (first_set(paths), first_set(contents)) {
        (Some(path), Some(contents)) => Err(ControlError::InvalidArgs(format!(
            "options \"{path}\" and \"{contents}\" cannot be used together: send a file by path or by contents"
        ))),
        _ => Ok(()),
    }
}

fn path_text(path: PathBuf) -> String {
    path.display().to_string()
}

impl SentFiles {
    /// Takes the contents keys out of `options` and points the matching path keys at the
    /// copies `plan` will hold. A half-sent pair is left to `options::resolve`, which refuses
    /// it as it refuses half a pair of paths.
    pub fn take(options: &mut DeployOptions, plan: CopyPlan) -> Result<SentFiles, ControlError> {
        exclusive(
            &[
                (
                    "tls_certificate_path",
                    options.tls_certificate_path.is_some(),
                ),
                (
                    "tls_private_key_path",
                    options.tls_private_key_path.is_some(),
                ),
            ],
            &[
                (CERTIFICATE_PEM, options.tls_certificate_pem.is_some()),
                (PRIVATE_KEY_PEM, options.tls_private_key_pem.is_some()),
            ],
        )?;
        exclusive(
            &[("error_pages", options.error_pages.is_some())],
            &[("error_pages_files", options.error_pages_files.is_some())],
        )?;
        let sent = SentFiles {
            certificate: options.tls_certificate_pem.take(),
            private_key: options.tls_private_key_pem.take(),
            error_pages: options.error_pages_files.take(),
            plan,
        };
        if sent.certificate.is_some() {
            options.tls_certificate_path = Some(path_text(sent.plan.certificate()));
        }
        if sent.private_key.is_some() {
            options.tls_private_key_path = Some(path_text(sent.plan.private_key()));
        }
        if sent.error_pages.is_some() {
            options.error_pages = Some(path_text(sent.plan.error_pages()));
        }
        Ok(sent)
    }

    /// Parses what the resolved `service` uses of the sent files (a certificate only when TLS
    /// is on), with the messages of the path form; nothing has been written yet.
    pub fn check(self, service: &ServiceOptions) -> Result<CheckedFiles, ControlError> {
        let mut checked = CheckedFiles {
            certificate: None,
            error_pages: None,
            plan: self.plan,
            copies: Vec::new(),
        };
        let uses_certificate = matches!(service.tls, TlsMode::Certificate { .. });
        if let (Some(chain), Some(key), true) =
            (self.certificate, self.private_key, uses_certificate)
        {
            let served = certificate::from_pem(
                chain.as_bytes(),
                key.as_bytes(),
                CERTIFICATE_PEM,
                PRIVATE_KEY_PEM,
            )
            .map_err(|error| ControlError::InvalidOptions(error.deploy_message()))?;
            checked.certificate = Some(served);
            checked.copies.push((checked.plan.certificate(), chain));
            checked.copies.push((checked.plan.private_key(), key));
        }
        if let Some(files) = self.error_pages {
            let pages = ErrorPages::from_files(&files).map_err(ControlError::InvalidOptions)?;
            checked.error_pages = Some(Arc::new(pages));
            let directory = checked.plan.error_pages();
            checked.copies.extend(
                files
                    .iter()
                    .map(|(name, file)| (directory.join(name), file.clone())),
            );
        }
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Host, ServiceName};
    use crate::service::options;
    use crate::state::FileCopies;

    fn contents(text: &str) -> FileContents {
        FileContents::new(text.as_bytes().to_vec()).unwrap()
    }

    fn plan() -> CopyPlan {
        FileCopies::new(PathBuf::from("/var/lib/kamal-proxy/files"))
            .plan(&ServiceName::parse("web").unwrap())
    }

    fn self_signed(host: &str) -> (FileContents, FileContents) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (contents(&cert.pem()), contents(&key.serialize_pem()))
    }

    fn tls_options(chain: FileContents, key: FileContents) -> DeployOptions {
        DeployOptions {
            tls: Some(true),
            hosts: Some(vec![Host::parse("a.example.com").unwrap()]),
            tls_certificate_pem: Some(chain),
            tls_private_key_pem: Some(key),
            ..Default::default()
        }
    }

    #[test]
    fn points_the_options_at_the_copies_and_parses_the_pair_when_tls_is_on() {
        let (chain, key) = self_signed("a.example.com");
        let mut options = tls_options(chain.clone(), key);
        let plan = plan();
        let sent = SentFiles::take(&mut options, plan.clone()).unwrap();
        assert_eq!(options.tls_certificate_pem, None);
        assert_eq!(
            options.tls_private_key_path,
            Some(plan.private_key().display().to_string())
        );

        let (service, _) = options::resolve(&options).unwrap();
        let checked = sent.check(&service).unwrap();
        assert!(checked.certificate.is_some());
        assert_eq!(checked.copies[0], (plan.certificate(), chain));
        assert_eq!(checked.copies[1].0, plan.private_key());
    }

    #[test]
    fn refuses_a_mismatched_pair_with_the_text_of_the_path_form() {
        let (chain, _) = self_signed("a.example.com");
        let (_, other_key) = self_signed("a.example.com");
        let mut options = tls_options(chain, other_key);
        let sent = SentFiles::take(&mut options, plan()).unwrap();
        let (service, _) = options::resolve(&options).unwrap();
        assert_eq!(
            sent.check(&service).err().unwrap(),
            ControlError::InvalidOptions(
                "unable to load certificate: the private key does not match the certificate".into()
            )
        );
    }

    #[test]
    fn refuses_a_file_sent_both_by_path_and_by_contents_naming_both_keys() {
        let (chain, key) = self_signed("a.example.com");
        let mut both = DeployOptions {
            tls_certificate_path: Some("/etc/ssl/cert.pem".into()),
            ..tls_options(chain, key)
        };
        assert_eq!(
            SentFiles::take(&mut both, plan()).unwrap_err(),
            ControlError::InvalidArgs(
                "options \"tls_certificate_path\" and \"tls_certificate_pem\" cannot be used \
                 together: send a file by path or by contents"
                    .into()
            )
        );
        let pages = ErrorPageFiles::new([("503.html".to_string(), contents("x"))].into());
        let mut pages_twice = DeployOptions {
            error_pages: Some("/srv/pages".into()),
            error_pages_files: Some(pages.unwrap()),
            ..Default::default()
        };
        let error = SentFiles::take(&mut pages_twice, plan()).unwrap_err();
        assert!(
            matches!(&error, ControlError::InvalidArgs(text) if text.contains("\"error_pages\" and \"error_pages_files\"")),
            "{error:?}"
        );
    }

    #[test]
    fn leaves_half_a_pair_to_resolve_and_copies_no_certificate_without_tls() {
        let (chain, key) = self_signed("a.example.com");
        let mut half = DeployOptions {
            tls_private_key_pem: None,
            ..tls_options(chain.clone(), key.clone())
        };
        SentFiles::take(&mut half, plan()).unwrap();
        assert!(options::resolve(&half)
            .unwrap_err()
            .message()
            .contains("[tls-certificate-path tls-private-key-path]"));

        let mut plain = DeployOptions {
            tls: None,
            ..tls_options(chain, key)
        };
        let sent = SentFiles::take(&mut plain, plan()).unwrap();
        let (service, _) = options::resolve(&plain).unwrap();
        let checked = sent.check(&service).unwrap();
        assert!(checked.certificate.is_none() && checked.copies.is_empty());
    }

    #[test]
    fn parses_sent_pages_and_copies_them_into_the_plans_pages_directory() {
        let pages = ErrorPageFiles::new([("503.html".to_string(), contents("down"))].into());
        let mut options = DeployOptions {
            error_pages_files: Some(pages.unwrap()),
            ..Default::default()
        };
        let plan = plan();
        let sent = SentFiles::take(&mut options, plan.clone()).unwrap();
        let (service, _) = options::resolve(&options).unwrap();
        assert_eq!(
            service.error_page_path,
            Some(plan.error_pages().display().to_string())
        );
        let checked = sent.check(&service).unwrap();
        assert!(checked.error_pages.is_some());
        assert_eq!(
            checked.copies,
            [(plan.error_pages().join("503.html"), contents("down"))]
        );
    }
}
