//! A repository's Actions settings, as `mlwf setup-automation` makes them: secrets (sealed with
//! the repository's public key, a libsodium sealed box, as GitHub requires), variables, labels;
//! and `repository_dispatch` with the workflow runs it starts.

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{describe, percent_encode_segment, GitHub};
use crate::secrets::Secret;

/// What a setting call found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// A repository's Actions public key: what secrets are sealed to.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicKey {
    pub key_id: String,
    /// Base64 of the 32-byte X25519 key.
    pub key: String,
}

/// A workflow run, as the Actions API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    pub created_at: Option<String>,
    pub html_url: Option<String>,
}

/// Seals `secret` to `key` (libsodium `crypto_box_seal`), base64-encoded as GitHub wants it.
pub fn seal(key: &PublicKey, secret: &Secret) -> anyhow::Result<String> {
    let bytes = STANDARD
        .decode(key.key.trim())
        .context("the repository's public key is not base64")?;
    let key = crypto_box::PublicKey::from_slice(&bytes)
        .map_err(|_| anyhow::anyhow!("the repository's public key is not a 32-byte key"))?;
    let sealed = key
        .seal(
            &mut crypto_box::aead::OsRng,
            secret.expose_secret().as_bytes(),
        )
        .map_err(|_| anyhow::anyhow!("cannot seal the secret"))?;
    Ok(STANDARD.encode(sealed))
}

impl GitHub {
    /// `GET` of a route; `None` on 404.
    async fn get_optional<T: for<'de> Deserialize<'de>>(
        &self,
        route: &str,
    ) -> anyhow::Result<Option<T>> {
        let response = self.octo._get(route).await.map_err(describe)?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let body = self.octo.body_to_string(response).await.map_err(describe)?;
        if !(200..300).contains(&status) {
            bail!(
                "GitHub answered {status} to GET {route}: {}",
                message(&body)
            );
        }
        serde_json::from_str(&body)
            .map(Some)
            .with_context(|| format!("unexpected answer from GitHub to GET {route}"))
    }

    /// A write whose answer is a status only (204s and the like).
    async fn write(&self, method: &str, route: &str, body: &Value) -> anyhow::Result<u16> {
        let response = match method {
            "PUT" => self.octo._put(route, Some(body)).await,
            "PATCH" => self.octo._patch(route, Some(body)).await,
            _ => self.octo._post(route, Some(body)).await,
        }
        .map_err(describe)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = self.octo.body_to_string(response).await.unwrap_or_default();
            bail!(
                "GitHub answered {status} to {method} {route}: {}",
                message(&text)
            );
        }
        Ok(status)
    }

    pub async fn actions_public_key(&self) -> anyhow::Result<PublicKey> {
        self.get_optional(&self.route("/actions/secrets/public-key"))
            .await?
            .context("the repository has no Actions public key (are Actions enabled?)")
    }

    /// Whether the repository has the Actions secret (its value cannot be read back).
    pub async fn has_secret(&self, name: &str) -> anyhow::Result<bool> {
        let found: Option<Value> = self
            .get_optional(&self.route(&format!("/actions/secrets/{name}")))
            .await?;
        Ok(found.is_some())
    }

    /// Sets an Actions secret, sealed to the repository's key.
    pub async fn set_secret(
        &self,
        key: &PublicKey,
        name: &str,
        value: &Secret,
    ) -> anyhow::Result<Change> {
        let body = json!({"encrypted_value": seal(key, value)?, "key_id": key.key_id});
        let status = self
            .write(
                "PUT",
                &self.route(&format!("/actions/secrets/{name}")),
                &body,
            )
            .await
            .with_context(|| format!("setting the secret {name}"))?;
        Ok(if status == 201 {
            Change::Created
        } else {
            Change::Updated
        })
    }

    /// Sets an Actions variable to `value`.
    pub async fn set_variable(&self, name: &str, value: &str) -> anyhow::Result<Change> {
        #[derive(Deserialize)]
        struct Variable {
            value: String,
        }
        let route = self.route(&format!("/actions/variables/{name}"));
        let body = json!({"name": name, "value": value});
        let change = match self.get_optional::<Variable>(&route).await? {
            Some(v) if v.value == value => return Ok(Change::Unchanged),
            Some(_) => {
                self.write("PATCH", &route, &body).await?;
                Change::Updated
            }
            None => {
                self.write("POST", &self.route("/actions/variables"), &body)
                    .await?;
                Change::Created
            }
        };
        Ok(change)
    }

    /// Makes the label exist with this colour and description.
    pub async fn set_label(
        &self,
        name: &str,
        color: &str,
        description: &str,
    ) -> anyhow::Result<Change> {
        #[derive(Deserialize)]
        struct Label {
            color: Option<String>,
            description: Option<String>,
        }
        let route = self.route(&format!("/labels/{}", percent_encode_segment(name)));
        let body = json!({"name": name, "color": color, "description": description});
        let change = match self.get_optional::<Label>(&route).await? {
            Some(l)
                if l.color
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(color))
                    && l.description.as_deref() == Some(description) =>
            {
                return Ok(Change::Unchanged)
            }
            Some(_) => {
                self.write("PATCH", &route, &body).await?;
                Change::Updated
            }
            None => {
                self.write("POST", &self.route("/labels"), &body).await?;
                Change::Created
            }
        };
        Ok(change)
    }

    /// Sends a `repository_dispatch` event.
    pub async fn dispatch(&self, event_type: &str, client_payload: &Value) -> anyhow::Result<()> {
        let body = json!({"event_type": event_type, "client_payload": client_payload});
        self.write("POST", &self.route("/dispatches"), &body)
            .await
            .context("sending repository_dispatch")?;
        Ok(())
    }

    /// The newest workflow runs started by `event`.
    pub async fn workflow_runs(&self, event: &str) -> anyhow::Result<Vec<WorkflowRun>> {
        #[derive(Deserialize)]
        struct Runs {
            workflow_runs: Vec<WorkflowRun>,
        }
        let route = self.route(&format!("/actions/runs?event={event}&per_page=20"));
        let runs: Option<Runs> = self.get_optional(&route).await?;
        Ok(runs.map(|r| r.workflow_runs).unwrap_or_default())
    }
}

/// GitHub's `message` from an error body, or the body itself, shortened.
fn message(body: &str) -> String {
    let text = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_the_private_key_only() {
        let private = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let key = PublicKey {
            key_id: "1".into(),
            key: STANDARD.encode(private.public_key().as_bytes()),
        };
        let sealed = STANDARD
            .decode(seal(&key, &Secret::new("s3cret-value")).unwrap())
            .unwrap();
        assert_eq!(private.unseal(&sealed).unwrap(), b"s3cret-value");
        let other = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(other.unseal(&sealed).is_err());
        assert!(seal(
            &PublicKey {
                key_id: "1".into(),
                key: "AAAA".into()
            },
            &Secret::new("x")
        )
        .is_err());
    }
}
