//! Secrets (today the database password) from wherever an operator keeps them: the environment,
//! a file (systemd credentials, Docker/Kubernetes secrets), or AWS Secrets Manager. Values are
//! taken verbatim, held in [`SecretString`]s, and never appear in an error or a log: errors name
//! where a secret was looked for, never what was found.

use std::path::Path;

use secrecy::SecretString;
use serde::Deserializer;
use serde::de::{self, Visitor};

/// Why a secret could not be read; says where it was looked for.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the secret file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Secrets Manager did not return it.
    #[error("cannot read secret {id:?} from AWS Secrets Manager: {reason}")]
    Manager {
        /// The secret's name or ARN.
        id: String,
        /// The SDK's error chain (which never includes the value).
        reason: String,
    },
}

/// A secret's value from `path`, without the one line break editors and `echo` add at its end.
pub fn read_file(path: &Path) -> Result<SecretString, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|err| SecretError::File {
        path: path.display().to_string(),
        reason: err.to_string(),
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(SecretString::from(value))
}

/// The value of Secrets Manager secret `id` (name or ARN). A JSON object with a `password` field
/// (the form RDS keeps a managed master password in) gives that field; anything else is the
/// value itself.
pub async fn fetch_password(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<SecretString, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|err| SecretError::Manager {
            id: id.to_owned(),
            reason: crate::error_chain(&err),
        })?;
    let text = output.secret_string().ok_or_else(|| SecretError::Manager {
        id: id.to_owned(),
        reason: "the secret has no string value".into(),
    })?;
    let from_json = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| value.get("password")?.as_str().map(SecretString::from));
    Ok(from_json.unwrap_or_else(|| SecretString::from(text)))
}

/// Deserializes an optional secret string. A value of another type is refused naming only its
/// type: serde's own message would quote it (`invalid type: integer 83920174`).
pub fn deserialize_optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    deserializer.deserialize_any(SecretVisitor).map(Some)
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(found: &str) -> Result<SecretString, E> {
        Err(E::custom(format!(
            "expected a string, found {found} (quote it; the value is not shown)"
        )))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretString;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<SecretString, E> {
        Ok(SecretString::from(value))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretString, E> {
        Self::refuse("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretString, E> {
        Self::refuse("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretString, E> {
        Self::refuse("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretString, E> {
        Self::refuse("a number")
    }

    fn visit_char<E: de::Error>(self, value: char) -> Result<SecretString, E> {
        Ok(SecretString::from(value.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SecretString, E> {
        Self::refuse("nothing")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretString, A::Error> {
        Self::refuse("a list")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<SecretString, A::Error> {
        Self::refuse("a table")
    }
}
