//! Secrets (the database password, the sources' API credentials) from wherever an operator keeps
//! them: the environment, a file (systemd credentials, Docker/Kubernetes secrets), AWS Secrets
//! Manager or SSM Parameter Store. Values are taken verbatim, held in [`SecretString`]s, and never
//! appear in an error or a log: errors name where a secret was looked for, never what was found.

use std::path::Path;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use secrecy::SecretString;
use serde::Deserializer;
use serde::de::{self, Visitor};

use crate::fetch::SecretRef;

/// Why a secret could not be read; says where it was looked for.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set, not UTF-8, or empty.
    #[error("cannot read the secret from environment variable {variable}: {reason}")]
    Env {
        /// The variable's name.
        variable: String,
        /// What is wrong with it.
        reason: &'static str,
    },
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
        /// Whether asking again later may succeed (a network failure, throttling).
        transient: bool,
    },
    /// The Secrets Manager secret was read, but is not a JSON object with this string field.
    #[error("cannot read field {field:?} of secret {id:?} from AWS Secrets Manager: {reason}")]
    ManagerField {
        /// The secret's name or ARN.
        id: String,
        /// The field asked for.
        field: String,
        /// What the value is instead (never the value).
        reason: &'static str,
    },
    /// SSM Parameter Store did not return it.
    #[error("cannot read parameter {name:?} from AWS SSM Parameter Store: {reason}")]
    Parameter {
        /// The parameter's name or ARN.
        name: String,
        /// The SDK's error chain (which never includes the value).
        reason: String,
        /// Whether asking again later may succeed (a network failure, throttling).
        transient: bool,
    },
}

impl SecretError {
    /// Whether reading the secret again later may succeed: after a network failure or
    /// throttling, not when it does not exist or may not be read.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Manager { transient, .. } | Self::Parameter { transient, .. } => *transient,
            Self::Env { .. } | Self::File { .. } | Self::ManagerField { .. } => false,
        }
    }
}

/// The value of environment variable `variable`, as [`resolve`] reads a [`SecretRef::Env`]:
/// also for a caller that must not build AWS clients when the secret is not kept in AWS
/// (`importer discover`). An empty value is an error, since no API accepts an empty credential.
pub fn from_env(variable: &str) -> Result<SecretString, SecretError> {
    let failed = |reason| SecretError::Env {
        variable: variable.to_owned(),
        reason,
    };
    match std::env::var(variable) {
        Ok(value) if value.is_empty() => Err(failed("it is empty")),
        Ok(value) => Ok(SecretString::from(value)),
        Err(std::env::VarError::NotPresent) => Err(failed("it is not set")),
        Err(std::env::VarError::NotUnicode(_)) => Err(failed("it is not valid UTF-8")),
    }
}

/// The value of the secret `secret` names, read now: a source's credential is resolved at the
/// start of each run, so that a rotated secret is picked up by the next one. An empty value is
/// an error, since no API accepts an empty credential.
pub async fn resolve(
    secret: &SecretRef,
    aws: &crate::aws::AwsClients,
) -> Result<SecretString, SecretError> {
    match secret {
        SecretRef::Env(variable) => from_env(variable),
        SecretRef::SecretsManager { id, field: None } => {
            let value = secret_string(&aws.secrets, id).await?;
            if value.is_empty() {
                return Err(SecretError::Manager {
                    id: id.clone(),
                    reason: "the secret is empty".into(),
                    transient: false,
                });
            }
            Ok(SecretString::from(value))
        }
        SecretRef::SecretsManager {
            id,
            field: Some(field),
        } => {
            let value = secret_string(&aws.secrets, id).await?;
            let failed = |reason| SecretError::ManagerField {
                id: id.clone(),
                field: field.clone(),
                reason,
            };
            // serde_json's own errors are not quoted: they may carry a piece of the value.
            let object = serde_json::from_str::<serde_json::Value>(&value)
                .map_err(|_| failed("the secret is not JSON"))?;
            let object = object
                .as_object()
                .ok_or_else(|| failed("the secret is not a JSON object"))?;
            match object.get(field) {
                None => Err(failed("the JSON object has no such field")),
                Some(serde_json::Value::String(text)) if text.is_empty() => {
                    Err(failed("the field is empty"))
                }
                Some(serde_json::Value::String(text)) => Ok(SecretString::from(text.as_str())),
                Some(_) => Err(failed("the field is not a string")),
            }
        }
        SecretRef::Ssm(name) => {
            let failed = |reason, transient| SecretError::Parameter {
                name: name.clone(),
                reason,
                transient,
            };
            let output = aws
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|err| failed(crate::error_chain(&err), is_transient(&err)))?;
            match output.parameter.and_then(|parameter| parameter.value) {
                Some(value) if !value.is_empty() => Ok(SecretString::from(value)),
                _ => Err(failed("the parameter has no value".into(), false)),
            }
        }
    }
}

/// Whether an AWS call that failed this way may succeed later: it never reached the service or
/// got no answer, or the service said it was throttled or failing itself.
fn is_transient<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) => false,
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "ThrottlingException"
                    | "Throttling"
                    | "TooManyRequestsException"
                    | "InternalServiceError"
                    | "InternalServiceErrorException"
                    | "InternalFailure"
                    | "ServiceUnavailable"
            )
        ),
        _ => true,
    }
}

/// The string value of Secrets Manager secret `id`.
async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|err| SecretError::Manager {
            id: id.to_owned(),
            reason: crate::error_chain(&err),
            transient: is_transient(&err),
        })?;
    output.secret_string.ok_or_else(|| SecretError::Manager {
        id: id.to_owned(),
        reason: "the secret has no string value".into(),
        transient: false,
    })
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
    let text = secret_string(client, id).await?;
    let from_json = serde_json::from_str::<serde_json::Value>(&text)
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

#[cfg(test)]
// figment's Jail returns its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::aws::{AwsClients, Timeouts};

    /// Clients that are never called: an environment variable needs none.
    fn no_aws() -> AwsClients {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        AwsClients::from_sdk_config(&config, Timeouts::default())
    }

    #[test]
    fn an_environment_variable_is_taken_verbatim_and_a_missing_one_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("BARGE_TEST_TOKEN", " t0k=en\"x ");
            jail.set_env("BARGE_TEST_EMPTY", "");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let aws = no_aws();
            let read =
                |name: &str| runtime.block_on(resolve(&SecretRef::Env(name.to_owned()), &aws));
            assert_eq!(
                read("BARGE_TEST_TOKEN").unwrap().expose_secret(),
                " t0k=en\"x "
            );
            let missing = read("BARGE_TEST_NOT_SET").unwrap_err();
            assert_eq!(
                missing.to_string(),
                "cannot read the secret from environment variable BARGE_TEST_NOT_SET: \
                 it is not set"
            );
            assert!(!missing.is_transient());
            let empty = read("BARGE_TEST_EMPTY").unwrap_err().to_string();
            assert!(empty.ends_with("BARGE_TEST_EMPTY: it is empty"), "{empty}");
            Ok(())
        });
    }
}
