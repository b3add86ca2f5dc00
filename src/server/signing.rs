//! Signed storage URLs. The SDK PUTs uploads and GETs artifact manifests without credentials,
//! as it would against cloud storage, so those URLs carry an HMAC of what they grant (method,
//! object kind and id) under a per-server secret kept in the data directory.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

pub struct Signer {
    key: hmac::Key,
}

const SECRET_FILE: &str = "url-signing.key";

impl Signer {
    /// Loads the secret from `data_dir`, creating it (mode 0600) on first start, so URLs
    /// handed out before a restart keep working after it.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Signer> {
        let path = data_dir.join(SECRET_FILE);
        let secret = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => bytes,
            Ok(_) => anyhow::bail!(
                "{} is too short; delete it to make a new one",
                path.display()
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; 32] = rand::random();
                write_private(&path, &secret)?;
                secret.to_vec()
            }
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    pub fn sign(&self, message: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, message.as_bytes()).as_ref())
    }

    /// Constant-time check of a signature made by `sign`.
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|sig| hmac::verify(&self.key, message.as_bytes(), &sig).is_ok())
    }
}

/// Writes a file only the owner can read (secrets: the URL key, the generated API key).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_their_message_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let sig = signer.sign("PUT blob abc");
        assert!(signer.verify("PUT blob abc", &sig));
        assert!(!signer.verify("GET blob abc", &sig));
        assert!(!signer.verify("PUT blob abc", "garbage"));
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert!(again.verify("PUT blob abc", &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
