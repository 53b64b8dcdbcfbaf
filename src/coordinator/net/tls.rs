//! Certificates for TLS and mutual TLS: a small private CA made with rcgen.
//!
//! [`generate_pki`] makes a CA, one server certificate for the authority's host names and
//! IP addresses, and one client certificate per named party; [`Pki::write`] stores them as PEM
//! (private keys with mode 0600). This is what `cryptonn certs` runs; an organisation with its
//! own CA uses its own certificates instead.
//!
//! # Validity and renewal
//! Every certificate is valid for [`VALIDITY_DAYS`] (one year) from the day it is made (from
//! midnight UTC). Renew before it runs out: run `cryptonn certs` again into a fresh directory,
//! restart the authority with the new `authority.pem`/`authority.key` (and `--client-ca` if
//! mutual TLS is on) and hand each party the new `ca.pem` (and its client certificate). Tokens
//! and the authority's state are unaffected.
//!
//! Files are written to a temporary file created exclusively (`O_EXCL`) with its final mode
//! (0600 for private keys), then renamed over the target, so an existing file's looser mode
//! never carries over. Client names become file names, so they must be plain names
//! ([`validate_client_name`]).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey").finish_non_exhaustive()
    }
}

/// A CA with a server certificate and client certificates.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM): what every party trusts.
    pub ca_cert_pem: String,
    /// The CA's key (to sign more certificates later).
    pub ca: CertifiedKey,
    /// The authority's certificate.
    pub server: CertifiedKey,
    /// `(name, certificate)` for each client certificate.
    pub clients: Vec<(String, CertifiedKey)>,
}

/// Why certificates could not be made or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused (e.g. an invalid host name).
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A client name is not a plain name (it becomes a file name and a common name).
    #[error("invalid client name {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ - (not starting with . or -)")]
    InvalidName(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// How long a generated certificate is valid, in days.
pub const VALIDITY_DAYS: i64 = 365;

/// The civil date `(year, month, day)` of `days` since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// Sets `params`' validity to today (UTC) .. today + [`VALIDITY_DAYS`].
fn set_validity(params: &mut CertificateParams) {
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64);
    let (y, m, d) = civil_from_days(today);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(today + VALIDITY_DAYS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// Checks that a client name can serve as a certificate's common name and as a file name:
/// 1 to 64 characters from `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
///
/// # Errors
/// [`PkiError::InvalidName`] naming the offending name.
pub fn validate_client_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidName(name.to_string()))
    }
}

/// Generates a CA, a server certificate valid for `server_names` (DNS names or IP addresses)
/// and one client certificate per name in `client_names` (its common name), each valid for
/// [`VALIDITY_DAYS`] from today.
///
/// # Errors
/// [`PkiError::InvalidName`] for a client name that is not a plain file name;
/// [`PkiError::Rcgen`] for a name rcgen cannot encode.
pub fn generate_pki(server_names: &[String], client_names: &[String]) -> Result<Pki, PkiError> {
    for n in client_names {
        validate_client_name(n)?;
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    set_validity(&mut ca_params);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cryptonn authority CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, &ca_key);

    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(names)?;
        set_validity(&mut p);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &issuer)?;
        Ok::<_, rcgen::Error>(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    };
    let server = leaf(
        server_names.to_vec(),
        server_names
            .first()
            .map_or("cryptonn-authority", String::as_str),
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let clients = client_names
        .iter()
        .map(|n| {
            Ok((
                n.clone(),
                leaf(vec![], n, ExtendedKeyUsagePurpose::ClientAuth)?,
            ))
        })
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    Ok(Pki {
        ca_cert_pem: ca_pem.clone(),
        ca: CertifiedKey {
            cert_pem: ca_pem,
            key_pem: ca_key.serialize_pem(),
        },
        server,
        clients,
    })
}

/// Writes `contents` to `path` atomically: into a temporary file beside it, created
/// exclusively (`O_EXCL`, so no existing file or link is followed) with mode 0600 if `private`
/// (else 0644), synced, then renamed over `path`. An existing `path` is replaced, mode included.
///
/// # Errors
/// [`PkiError::Io`] naming the file.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PkiError::Io { path: p, source }
    };
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Pki {
    /// Writes `ca.pem`, `ca.key`, `authority.pem`, `authority.key` and `<client>.pem`,
    /// `<client>.key` into `dir` (keys with mode 0600). Returns the paths written.
    ///
    /// # Errors
    /// [`PkiError::Io`] naming the file.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files = vec![
            ("ca.pem".to_string(), self.ca.cert_pem.as_str(), false),
            ("ca.key".to_string(), self.ca.key_pem.as_str(), true),
            (
                "authority.pem".to_string(),
                self.server.cert_pem.as_str(),
                false,
            ),
            (
                "authority.key".to_string(),
                self.server.key_pem.as_str(),
                true,
            ),
        ];
        for (name, c) in &self.clients {
            validate_client_name(name)?;
            files.push((format!("{name}.pem"), c.cert_pem.as_str(), false));
            files.push((format!("{name}.key"), c.key_pem.as_str(), true));
        }
        let mut written = Vec::new();
        for (name, text, private) in files {
            let path = dir.join(name);
            write_file(&path, text.as_bytes(), private)?;
            written.push(path);
        }
        Ok(written)
    }
}
