//! Certificates for TLS and mutual TLS: a small private CA made with rcgen.
//!
//! [`generate_pki`] makes a CA, one server certificate for the authority's host names and
//! IP addresses, and one client certificate per named party; [`Pki::write`] stores them as PEM
//! (private keys with mode 0600). This is what `cryptonn certs` runs; an organisation with its
//! own CA uses its own certificates instead.

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
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Generates a CA, a server certificate valid for `server_names` (DNS names or IP addresses)
/// and one client certificate per name in `client_names` (its common name).
///
/// # Errors
/// [`PkiError::Rcgen`] for a name rcgen cannot encode.
pub fn generate_pki(server_names: &[String], client_names: &[String]) -> Result<Pki, PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
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

/// Writes `contents` to `path`, with mode 0600 if `private`.
///
/// # Errors
/// [`PkiError::Io`] naming the file.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents).map_err(io)
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
