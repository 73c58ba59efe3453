//! librdkafka client properties from tapstream's configuration, as plain
//! data: the `tapstream-kafka` crate turns [`ClientProperties`] into a
//! librdkafka client, so checking a configuration needs no librdkafka.
//!
//! Why this exists: a real cluster needs TLS, SASL and a long tail of
//! librdkafka tuning, and users should not have to wait for tapstream to
//! grow a config field for each. So the config has a few typed fields for
//! what every deployment sets (brokers, client id, security) and a
//! `properties` table passed to librdkafka as is. Three things are checked
//! here, before any client exists:
//!
//! - Secrets stay out of the config file: any password and any `properties`
//!   value may be `{ env = "VAR" }` or `{ file = "/path" }`, read when the
//!   client is built. Errors name the property, never the value, and
//!   `Debug` redacts every literal value.
//! - Properties the caller must own for correctness (the sink's
//!   `enable.idempotence`, the source's `enable.auto.commit`, …) cannot be
//!   overridden; trying is an error naming the property, not a silent
//!   downgrade of a guarantee. librdkafka's aliases (`acks` for
//!   `request.required.acks`, …) count as the same property.
//! - A property that has a typed field (`bootstrap.servers`,
//!   `sasl.password`, …) is set through that field only, so one setting has
//!   one place.
//!
//! ```toml
//! brokers = ["kafka-1:9093", "kafka-2:9093"]
//! client_id = "tapstream-sensor-7"
//!
//! [security]
//! protocol = "sasl_ssl"
//! sasl_mechanism = "SCRAM-SHA-512"
//! sasl_username = "tapstream"
//! sasl_password = { file = "/run/secrets/kafka-password" }
//! ssl_ca_location = "/etc/ssl/kafka-ca.pem"
//!
//! [properties]
//! "linger.ms" = 5
//! "compression.type" = "gzip"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Why a Kafka client configuration was refused.
///
/// No variant carries a secret's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaConfigError {
    /// `brokers` is empty.
    #[error("kafka `brokers`: at least one `host:port` is needed")]
    NoBrokers,
    /// A broker address is empty or not one `host:port`.
    #[error("kafka `brokers`: {broker:?} is not one `host:port` (no commas or spaces)")]
    InvalidBroker {
        /// The address as configured.
        broker: String,
    },
    /// `client_id` is empty.
    #[error("kafka `client_id` is empty")]
    EmptyClientId,
    /// A property name in `properties` is empty or has spaces.
    #[error("kafka property name {name:?} is not a librdkafka property name")]
    InvalidPropertyName {
        /// The name as configured.
        name: String,
    },
    /// Security settings that do not fit together.
    #[error("kafka `security.{field}`: {message}")]
    Security {
        /// The field, e.g. `sasl_password`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A secret's environment variable is unset, empty or not UTF-8.
    #[error("kafka property `{property}`: environment variable `{var}` {problem}")]
    SecretEnv {
        /// The property the secret is for.
        property: String,
        /// The variable's name.
        var: String,
        /// `is not set`, `is empty` or `is not valid UTF-8`.
        problem: &'static str,
    },
    /// A secret's file cannot be read.
    #[error("kafka property `{property}`: cannot read secret file {}", path.display())]
    SecretFile {
        /// The property the secret is for.
        property: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret's file is empty or not UTF-8 text.
    #[error("kafka property `{property}`: secret file {} {problem}", path.display())]
    SecretFileContent {
        /// The property the secret is for.
        property: String,
        /// The file.
        path: PathBuf,
        /// `is empty` or `is not UTF-8 text`.
        problem: &'static str,
    },
    /// `properties` sets something tapstream must own for correctness.
    #[error(
        "kafka property `{property}` cannot be set: tapstream sets `{owned}` = {value:?} \
         (required for {purpose})"
    )]
    Forced {
        /// The property as the user named it.
        property: String,
        /// The property as tapstream sets it (an alias may differ).
        owned: String,
        /// tapstream's value.
        value: String,
        /// What relies on it, as the caller said.
        purpose: String,
    },
    /// `properties` sets something that has its own config field.
    #[error("kafka property `{property}` has its own setting: use `{field}` instead")]
    HasField {
        /// The property as the user named it.
        property: String,
        /// The config field to use.
        field: &'static str,
    },
    /// `properties` sets one property twice (under two alias names).
    #[error("kafka properties `{first}` and `{second}` are the same librdkafka property")]
    Duplicate {
        /// One name.
        first: String,
        /// The other.
        second: String,
    },
}

/// A configuration value that may be a secret: a literal, or where to read
/// it from.
///
/// In TOML: a string (or number or boolean, passed on as text), or
/// `{ env = "VAR" }` (the variable's value), or `{ file = "/path" }` (the
/// file's contents without trailing line breaks). Read when the client is
/// built, so rotating a file takes effect at the next start.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// The value itself.
    Literal(String),
    /// The value of an environment variable.
    Env(String),
    /// The contents of a file, trailing `\n`/`\r\n` removed.
    File(PathBuf),
}

impl SecretValue {
    /// The value; errors name `property` and never contain the value.
    pub fn resolve(&self, property: &str) -> Result<String, KafkaConfigError> {
        match self {
            SecretValue::Literal(v) => Ok(v.clone()),
            SecretValue::Env(var) => {
                let env_err = |problem| KafkaConfigError::SecretEnv {
                    property: property.to_owned(),
                    var: var.clone(),
                    problem,
                };
                match std::env::var(var) {
                    Ok(v) if v.is_empty() => Err(env_err("is empty")),
                    Ok(v) => Ok(v),
                    Err(std::env::VarError::NotPresent) => Err(env_err("is not set")),
                    Err(std::env::VarError::NotUnicode(_)) => Err(env_err("is not valid UTF-8")),
                }
            }
            SecretValue::File(path) => read_secret_file(property, path),
        }
    }
}

fn read_secret_file(property: &str, path: &Path) -> Result<String, KafkaConfigError> {
    let bytes = std::fs::read(path).map_err(|source| KafkaConfigError::SecretFile {
        property: property.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let content_err = |problem| KafkaConfigError::SecretFileContent {
        property: property.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let mut text = String::from_utf8(bytes).map_err(|_| content_err("is not UTF-8 text"))?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.is_empty() {
        return Err(content_err("is empty"));
    }
    Ok(text)
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Literal(_) => f.write_str("<redacted>"),
            SecretValue::Env(var) => write!(f, "{{ env = {var:?} }}"),
            SecretValue::File(path) => write!(f, "{{ file = {:?} }}", path.display()),
        }
    }
}

impl From<&str> for SecretValue {
    fn from(v: &str) -> Self {
        SecretValue::Literal(v.to_owned())
    }
}

/// Written back (e.g. by `tapstream config FILE`) with literal values
/// redacted: where a secret comes from is shown, never the secret.
impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            SecretValue::Literal(_) => s.serialize_str("<redacted>"),
            SecretValue::Env(var) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("env", var)?;
                m.end()
            }
            SecretValue::File(path) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("file", path)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a string, number or boolean, or a table `{ env = \"VAR\" }` or `{ file = \"/path\" }`",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretValue, E> {
        Ok(SecretValue::Literal(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretValue, E> {
        Ok(SecretValue::Literal(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SecretValue, E> {
        Ok(SecretValue::Literal(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SecretValue, E> {
        Ok(SecretValue::Literal(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SecretValue, E> {
        Ok(SecretValue::Literal(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SecretValue, E> {
        Ok(SecretValue::Literal(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretValue, A::Error> {
        let mut found: Option<SecretValue> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = match key.as_str() {
                "env" => SecretValue::Env(map.next_value()?),
                "file" => SecretValue::File(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &["env", "file"])),
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret is read from one place: give `env` or `file`, not both",
                ));
            }
            found = Some(value);
        }
        found.ok_or_else(|| {
            de::Error::custom("empty table: give `env = \"VAR\"` or `file = \"/path\"`")
        })
    }
}

/// `security.protocol`: how the client talks to the brokers.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS (the broker's certificate checked against `ssl_ca_location` or
    /// the system store; a client certificate when configured).
    Ssl,
    /// SASL authentication without TLS (credentials cross the network in
    /// clear with `PLAIN`).
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// `sasl.mechanism`: how SASL authenticates.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum SaslMechanism {
    /// Username and password as they are (use it over TLS only).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[…security]`: TLS and SASL settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with the
    /// `sasl_*` protocols, refused with the others.
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name; required with the `sasl_*` protocols.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// SASL password: a string, `{ env = "VAR" }` or `{ file = "/path" }`;
    /// required with the `sasl_*` protocols.
    #[serde(default)]
    pub sasl_password: Option<SecretValue>,
    /// PEM file of the CA certificates that sign the brokers' certificates
    /// (default: the system's trust store). TLS protocols only.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// PEM file of the client certificate, for mutual TLS; needs
    /// `ssl_key_location`. TLS protocols only.
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    /// PEM file of the client certificate's private key. TLS protocols only.
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// Password of an encrypted `ssl_key_location`: a string,
    /// `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub ssl_key_password: Option<SecretValue>,
}

impl SecurityConfig {
    /// Checks that the settings fit together (before any secret is read).
    fn check(&self) -> Result<(), KafkaConfigError> {
        let err = |field, message: &str| {
            Err(KafkaConfigError::Security {
                field,
                message: message.to_owned(),
            })
        };
        let p = self.protocol;
        if p.uses_sasl() {
            if self.sasl_mechanism.is_none() {
                return err("sasl_mechanism", "required with a sasl_* protocol");
            }
            if self.sasl_username.as_deref().is_none_or(str::is_empty) {
                return err("sasl_username", "required with a sasl_* protocol");
            }
            if self.sasl_password.is_none() {
                return err("sasl_password", "required with a sasl_* protocol");
            }
        } else if self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some()
        {
            let field = if self.sasl_mechanism.is_some() {
                "sasl_mechanism"
            } else if self.sasl_username.is_some() {
                "sasl_username"
            } else {
                "sasl_password"
            };
            return err(
                field,
                "SASL settings need protocol `sasl_plaintext` or `sasl_ssl`",
            );
        }
        let tls_fields = [
            ("ssl_ca_location", self.ssl_ca_location.is_some()),
            (
                "ssl_certificate_location",
                self.ssl_certificate_location.is_some(),
            ),
            ("ssl_key_location", self.ssl_key_location.is_some()),
            ("ssl_key_password", self.ssl_key_password.is_some()),
        ];
        if !p.uses_tls() {
            if let Some((field, _)) = tls_fields.iter().find(|(_, set)| *set) {
                return err(field, "TLS settings need protocol `ssl` or `sasl_ssl`");
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            let field = if self.ssl_key_location.is_some() {
                "ssl_certificate_location"
            } else {
                "ssl_key_location"
            };
            return err(
                field,
                "a client certificate needs both `ssl_certificate_location` and `ssl_key_location`",
            );
        }
        if self.ssl_key_password.is_some() && self.ssl_key_location.is_none() {
            return err("ssl_key_password", "only used with `ssl_key_location`");
        }
        Ok(())
    }
}

/// The connection settings of one Kafka client (a source's consumer or a
/// sink's producer).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaClientConfig {
    /// Bootstrap brokers, `host:port` each (librdkafka's
    /// `bootstrap.servers`). At least one.
    pub brokers: Vec<String>,
    /// Client id the brokers log and meter this client under. Default
    /// `tapstream`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// TLS and SASL; plaintext without authentication when absent.
    #[serde(default)]
    pub security: Option<SecurityConfig>,
    /// Further librdkafka properties, passed on as they are (see
    /// librdkafka's CONFIGURATION.md). Values may be strings, numbers,
    /// booleans, `{ env = "VAR" }` or `{ file = "/path" }`. They override
    /// tapstream's defaults, except the few a connector must own for
    /// correctness, which are refused with an error.
    #[serde(default)]
    pub properties: BTreeMap<String, SecretValue>,
}

/// The default `client_id`.
pub fn default_client_id() -> String {
    "tapstream".to_owned()
}

/// librdkafka's alias names and the property each stands for (from
/// `rdkafka_conf.c`, librdkafka 2.12), so an alias cannot slip past a
/// forced property or set one property twice.
const ALIASES: &[(&str, &str)] = &[
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
];

/// The property `name` stands for (itself unless it is an alias).
fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, target)| target)
}

/// Properties set through typed fields, and the field to use instead.
const FIELD_PROPERTIES: &[(&str, &str)] = &[
    ("metadata.broker.list", "brokers"),
    ("client.id", "client_id"),
    ("security.protocol", "security.protocol"),
    ("sasl.mechanisms", "security.sasl_mechanism"),
    ("sasl.username", "security.sasl_username"),
    ("sasl.password", "security.sasl_password"),
    ("ssl.ca.location", "security.ssl_ca_location"),
    (
        "ssl.certificate.location",
        "security.ssl_certificate_location",
    ),
    ("ssl.key.location", "security.ssl_key_location"),
    ("ssl.key.password", "security.ssl_key_password"),
];

/// A property the caller must own, and why (for the error message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forced<'a> {
    /// librdkafka property name.
    pub name: &'a str,
    /// Its value.
    pub value: &'a str,
    /// What relies on it, e.g. `"exactly-once delivery to the alerts topic"`.
    pub purpose: &'a str,
}

/// Properties the source owns: changing them would break its offset and
/// rebalance logic.
pub const CONSUMER_FORCED: &[Forced<'static>] = &[
    Forced {
        name: "enable.auto.commit",
        value: "false",
        purpose: "offsets committed only for settled messages",
    },
    Forced {
        name: "enable.auto.offset.store",
        value: "false",
        purpose: "offsets committed only for settled messages",
    },
    Forced {
        name: "partition.assignment.strategy",
        value: "range,roundrobin",
        purpose: "an eager rebalance, which revokes every partition and so ends every flow",
    },
];

/// Producer properties the sink owns: its delivery guarantee depends on
/// them. A user setting one of them is refused ([`KafkaClientConfig::check`]
/// with this list reports it at config load time).
///
/// With idempotence on, librdkafka itself clamps
/// `max.in.flight.requests.per.connection` to 5 (and refuses a larger user
/// value) and retries without limit until `message.timeout.ms`.
pub const PRODUCER_FORCED: &[Forced<'static>] = &[
    Forced {
        name: "enable.idempotence",
        value: "true",
        purpose: "alerts delivered without duplicates or reordering by retries",
    },
    Forced {
        name: "acks",
        value: "all",
        purpose: "an acknowledged alert to survive a broker failure",
    },
];

impl KafkaClientConfig {
    /// A plaintext client of `brokers` with the default client id and no
    /// extra properties.
    pub fn new(brokers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        KafkaClientConfig {
            brokers: brokers.into_iter().map(Into::into).collect(),
            client_id: default_client_id(),
            security: None,
            properties: BTreeMap::new(),
        }
    }

    /// Checks everything that needs no secret read: brokers, client id,
    /// security combinations, property names, and that `properties` sets
    /// neither a typed field's property nor one of `forced`. Call it when
    /// the config is loaded, so mistakes surface before anything starts.
    pub fn check(&self, forced: &[Forced<'_>]) -> Result<(), KafkaConfigError> {
        if self.brokers.is_empty() {
            return Err(KafkaConfigError::NoBrokers);
        }
        for b in &self.brokers {
            if b.is_empty() || b.contains([',', ' ', '\t', '\n', '\r']) {
                return Err(KafkaConfigError::InvalidBroker { broker: b.clone() });
            }
        }
        if self.client_id.trim().is_empty() {
            return Err(KafkaConfigError::EmptyClientId);
        }
        if let Some(sec) = &self.security {
            sec.check()?;
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for name in self.properties.keys() {
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(KafkaConfigError::InvalidPropertyName { name: name.clone() });
            }
            let canon = canonical(name);
            if let Some(first) = seen.insert(canon, name) {
                return Err(KafkaConfigError::Duplicate {
                    first: first.to_owned(),
                    second: name.clone(),
                });
            }
            if let Some((_, field)) = FIELD_PROPERTIES.iter().find(|(p, _)| *p == canon) {
                return Err(KafkaConfigError::HasField {
                    property: name.clone(),
                    field,
                });
            }
            if let Some(f) = forced.iter().find(|f| canonical(f.name) == canon) {
                return Err(KafkaConfigError::Forced {
                    property: name.clone(),
                    owned: f.name.to_owned(),
                    value: f.value.to_owned(),
                    purpose: f.purpose.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The librdkafka properties of a client: `defaults` first, then the
    /// typed fields, then the user's `properties` (which override
    /// `defaults`), then `forced`. Runs [`check`](Self::check) and reads
    /// every secret.
    ///
    /// The result holds secrets in clear (its `Debug` does not), so do not
    /// log its values.
    pub fn client_properties(
        &self,
        defaults: &[(&str, &str)],
        forced: &[Forced<'_>],
    ) -> Result<ClientProperties, KafkaConfigError> {
        self.check(forced)?;
        // Keyed by the canonical name so that a default given under an
        // alias is replaced, not duplicated, by the user's setting.
        let mut props: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut put = |name: &str, value: String| {
            props.insert(canonical(name).to_owned(), (name.to_owned(), value));
        };
        for (name, value) in defaults {
            put(name, (*value).to_owned());
        }
        put("bootstrap.servers", self.brokers.join(","));
        put("client.id", self.client_id.clone());
        if let Some(sec) = &self.security {
            put("security.protocol", sec.protocol.as_str().to_owned());
            if let Some(m) = sec.sasl_mechanism {
                put("sasl.mechanism", m.as_str().to_owned());
            }
            if let Some(u) = &sec.sasl_username {
                put("sasl.username", u.clone());
            }
            if let Some(p) = &sec.sasl_password {
                put("sasl.password", p.resolve("sasl.password")?);
            }
            let paths = [
                ("ssl.ca.location", &sec.ssl_ca_location),
                ("ssl.certificate.location", &sec.ssl_certificate_location),
                ("ssl.key.location", &sec.ssl_key_location),
            ];
            for (name, path) in paths {
                if let Some(path) = path {
                    put(name, path.display().to_string());
                }
            }
            if let Some(p) = &sec.ssl_key_password {
                put("ssl.key.password", p.resolve("ssl.key.password")?);
            }
        }
        for (name, value) in &self.properties {
            put(name, value.resolve(name)?);
        }
        for f in forced {
            put(f.name, f.value.to_owned());
        }
        Ok(ClientProperties(props.into_values().collect()))
    }
}

/// A client's librdkafka properties, `(name, value)`, one per property
/// (aliases resolved), secrets read; see
/// [`KafkaClientConfig::client_properties`].
#[derive(Clone, PartialEq, Eq)]
pub struct ClientProperties(Vec<(String, String)>);

impl ClientProperties {
    /// The value set for property `name`, as named when it was set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every property.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| format!("{n} = <redacted>")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDEMPOTENT: Forced<'static> = Forced {
        name: "enable.idempotence",
        value: "true",
        purpose: "no duplicates",
    };
    const ACKS: Forced<'static> = Forced {
        name: "acks",
        value: "all",
        purpose: "durability",
    };

    fn parse(text: &str) -> Result<KafkaClientConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn full_config_parses_and_builds() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret-from-file\r\n").unwrap();
        let text = format!(
            r#"
brokers = ["k1:9093", "k2:9093"]
client_id = "sensor-7"
[security]
protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "tapstream"
sasl_password = {{ file = "{}" }}
ssl_ca_location = "/etc/ca.pem"
[properties]
"linger.ms" = 5
"enable.ssl.certificate.verification" = true
"compression.type" = "gzip"
"#,
            pw.display()
        );
        let cfg = parse(&text).unwrap();
        let cc = cfg
            .client_properties(
                &[("linger.ms", "100"), ("batch.size", "1000")],
                &[IDEMPOTENT],
            )
            .unwrap();
        assert_eq!(cc.get("bootstrap.servers"), Some("k1:9093,k2:9093"));
        assert_eq!(cc.get("client.id"), Some("sensor-7"));
        assert_eq!(cc.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(cc.get("sasl.username"), Some("tapstream"));
        assert_eq!(cc.get("sasl.password"), Some("s3cret-from-file"));
        assert_eq!(cc.get("ssl.ca.location"), Some("/etc/ca.pem"));
        // The user's value replaces the default; untouched defaults stay.
        assert_eq!(cc.get("linger.ms"), Some("5"));
        assert_eq!(cc.get("batch.size"), Some("1000"));
        assert_eq!(cc.get("enable.ssl.certificate.verification"), Some("true"));
        assert_eq!(cc.get("compression.type"), Some("gzip"));
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert!(!format!("{cc:?}").contains("s3cret"), "{cc:?}");
    }

    #[test]
    fn minimal_config_has_defaults() {
        let cfg = parse(r#"brokers = ["localhost:9092"]"#).unwrap();
        assert_eq!(cfg, KafkaClientConfig::new(["localhost:9092"]));
        let cc = cfg.client_properties(&[], &[]).unwrap();
        assert_eq!(cc.get("client.id"), Some("tapstream"));
        assert_eq!(cc.get("security.protocol"), None);
    }

    #[test]
    fn default_given_under_an_alias_is_replaced() {
        let mut cfg = KafkaClientConfig::new(["b:1"]);
        cfg.properties
            .insert("queue.buffering.max.ms".into(), "7".into());
        let cc = cfg.client_properties(&[("linger.ms", "100")], &[]).unwrap();
        assert_eq!(cc.get("linger.ms"), None);
        assert_eq!(cc.get("queue.buffering.max.ms"), Some("7"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        for (text, needle) in [
            (
                r#"brokers = ["a:1"]
bootstrap = "x""#,
                "unknown field",
            ),
            (
                r#"brokers = ["a:1"]
[security]
protocol = "tls""#,
                "unknown variant",
            ),
            (
                r#"brokers = ["a:1"]
[security]
protocol = "sasl_ssl"
sasl_mechanism = "GSSAPI""#,
                "unknown variant",
            ),
            (
                r#"brokers = ["a:1"]
[properties]
"x" = { envv = "A" }"#,
                "unknown field `envv`",
            ),
            (
                r#"brokers = ["a:1"]
[properties]
"x" = { env = "A", file = "/b" }"#,
                "not both",
            ),
            (
                r#"brokers = ["a:1"]
[properties]
"x" = {}"#,
                "empty table",
            ),
            (
                r#"brokers = ["a:1"]
[properties]
"x" = [1]"#,
                "a string, number or boolean",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn checks_name_the_problem() {
        let cases: Vec<(KafkaClientConfig, &str)> = vec![
            (KafkaClientConfig::new(Vec::<String>::new()), "at least one"),
            (KafkaClientConfig::new(["a:1,b:2"]), "\"a:1,b:2\""),
            (KafkaClientConfig::new([""]), "\"\""),
            (
                KafkaClientConfig {
                    client_id: " ".into(),
                    ..KafkaClientConfig::new(["a:1"])
                },
                "client_id",
            ),
        ];
        for (cfg, needle) in cases {
            let err = cfg.client_properties(&[], &[]).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn security_combinations() {
        let base = |extra: &str| {
            parse(&format!("brokers = [\"a:1\"]\n[security]\n{extra}"))
                .unwrap()
                .check(&[])
                .map_err(|e| e.to_string())
        };
        assert!(base("protocol = \"ssl\"\nssl_ca_location = \"/ca\"").is_ok());
        assert!(base(
            "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\n\
             sasl_username = \"u\"\nsasl_password = \"p\""
        )
        .is_ok());
        for (extra, needle) in [
            ("protocol = \"sasl_ssl\"", "security.sasl_mechanism"),
            (
                "protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_password = \"p\"",
                "security.sasl_username",
            ),
            (
                "protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"",
                "security.sasl_password",
            ),
            ("protocol = \"ssl\"\nsasl_username = \"u\"", "security.sasl_username"),
            ("protocol = \"plaintext\"\nssl_ca_location = \"/ca\"", "security.ssl_ca_location"),
            (
                "protocol = \"sasl_plaintext\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\n\
                 sasl_password = \"p\"\nssl_key_location = \"/k\"",
                "security.ssl_key_location",
            ),
            (
                "protocol = \"ssl\"\nssl_key_location = \"/k\"",
                "security.ssl_certificate_location",
            ),
            (
                "protocol = \"ssl\"\nssl_key_password = \"p\"",
                "security.ssl_key_password",
            ),
        ] {
            let err = base(extra).unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn forced_properties_cannot_be_overridden_even_by_alias() {
        for name in ["enable.idempotence", "acks", "request.required.acks"] {
            let mut cfg = KafkaClientConfig::new(["a:1"]);
            cfg.properties.insert(name.into(), "0".into());
            let err = cfg.client_properties(&[], &[IDEMPOTENT, ACKS]).unwrap_err();
            assert!(matches!(err, KafkaConfigError::Forced { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("`{name}`")), "{msg}");
        }
        // A forced property given under an alias replaces any default.
        let cc = KafkaClientConfig::new(["a:1"])
            .client_properties(&[("request.required.acks", "1")], &[ACKS])
            .unwrap();
        assert_eq!(cc.get("request.required.acks"), None);
        assert_eq!(cc.get("acks"), Some("all"));
    }

    #[test]
    fn typed_fields_own_their_properties() {
        for (name, field) in [
            ("bootstrap.servers", "brokers"),
            ("metadata.broker.list", "brokers"),
            ("sasl.password", "security.sasl_password"),
            ("sasl.mechanism", "security.sasl_mechanism"),
        ] {
            let mut cfg = KafkaClientConfig::new(["a:1"]);
            cfg.properties.insert(name.into(), "x".into());
            let err = cfg.check(&[]).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(name), "{err}");
        }
        let mut cfg = KafkaClientConfig::new(["a:1"]);
        cfg.properties.insert("linger.ms".into(), "1".into());
        cfg.properties
            .insert("queue.buffering.max.ms".into(), "2".into());
        let err = cfg.check(&[]).unwrap_err().to_string();
        assert!(err.contains("same librdkafka property"), "{err}");
        let mut cfg = KafkaClientConfig::new(["a:1"]);
        cfg.properties.insert("bad name".into(), "1".into());
        assert!(matches!(
            cfg.check(&[]),
            Err(KafkaConfigError::InvalidPropertyName { .. })
        ));
    }

    #[test]
    fn secrets_from_env_and_file_never_leak() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe, b'x']).unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "from-file\n\n").unwrap();
        // Unique names: tests in this process share the environment.
        std::env::set_var("TAPSTREAM_PROPS_TEST_SET", "from-env");
        std::env::set_var("TAPSTREAM_PROPS_TEST_EMPTY", "");

        let env = |v: &str| SecretValue::Env(v.into());
        assert_eq!(
            env("TAPSTREAM_PROPS_TEST_SET").resolve("p").unwrap(),
            "from-env"
        );
        assert_eq!(
            SecretValue::File(good.clone()).resolve("p").unwrap(),
            "from-file"
        );
        for (secret, needle) in [
            (env("TAPSTREAM_PROPS_TEST_UNSET"), "is not set"),
            (env("TAPSTREAM_PROPS_TEST_EMPTY"), "is empty"),
            (SecretValue::File(empty), "is empty"),
            (SecretValue::File(binary), "not UTF-8"),
            (SecretValue::File(dir.path().join("missing")), "cannot read"),
        ] {
            let err = secret.resolve("sasl.password").unwrap_err().to_string();
            assert!(
                err.contains("`sasl.password`") && err.contains(needle),
                "{err}"
            );
        }

        let text = format!(
            r#"
brokers = ["a:1"]
[security]
protocol = "sasl_plaintext"
sasl_mechanism = "PLAIN"
sasl_username = "u"
sasl_password = "literal-password-123"
[properties]
"ssl.key.pem" = {{ file = "{}" }}
"sasl.oauthbearer.client.secret" = "literal-secret-456"
"socket.timeout.ms" = {{ env = "TAPSTREAM_PROPS_TEST_SET" }}
"#,
            good.display()
        );
        let cfg = parse(&text).unwrap();
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("literal-password-123"), "{debug}");
        assert!(!debug.contains("literal-secret-456"), "{debug}");
        assert!(!debug.contains("from-file"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("TAPSTREAM_PROPS_TEST_SET"), "{debug}");
        let cc = cfg.client_properties(&[], &[]).unwrap();
        assert_eq!(cc.get("ssl.key.pem"), Some("from-file"));
        assert_eq!(cc.get("socket.timeout.ms"), Some("from-env"));

        // A missing secret fails the build and names the property only.
        let mut cfg = cfg;
        cfg.properties.insert(
            "sasl.oauthbearer.client.secret".into(),
            env("TAPSTREAM_PROPS_TEST_UNSET"),
        );
        let err = cfg.client_properties(&[], &[]).unwrap_err().to_string();
        assert!(err.contains("`sasl.oauthbearer.client.secret`"), "{err}");
        assert!(!err.contains("literal-password-123"), "{err}");
    }
}
