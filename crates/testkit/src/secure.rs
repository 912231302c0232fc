//! TLS and SASL for a test's broker: a SASL_SSL client listener, on the shared broker
//! ([`Broker::shared_secure`](crate::Broker::shared_secure)) and on a test's own
//! ([`Broker::start_secure`](crate::Broker::start_secure)).
//!
//! The test makes its certificates ([`TestCertificates`]: a CA, a broker certificate it signed
//! for 127.0.0.1 and localhost, and a second CA that signed nothing the broker has). The broker
//! knows one user, [`USER`] / [`PASSWORD`], for SCRAM-SHA-256 and SCRAM-SHA-512 (created with
//! the cluster by Kafka's storage tool) and for PLAIN (the listener's JAAS config). The
//! controller and the broker's own traffic stay PLAINTEXT on loopback, and so does the broker's
//! readiness check; every client a test makes from the [`Broker`](crate::Broker) goes through
//! the SASL_SSL listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventline_common::kafka::local_broker::{LocalBrokerConfig, ScramMechanism, ScramUser};
use eventline_common::kafka::KafkaSettings;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// The client listener's name and security protocol.
pub const SECURE_LISTENER: &str = "SASL_SSL";
/// The user the secure broker knows, for every mechanism of [`SaslMechanism`].
pub const USER: &str = "eventline-test";
pub const PASSWORD: &str = "eventline-test-secret";

/// A SASL mechanism the secure broker accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    ScramSha256,
    ScramSha512,
    Plain,
}

impl SaslMechanism {
    pub const ALL: [Self; 3] = [Self::ScramSha256, Self::ScramSha512, Self::Plain];

    /// The name `sasl.mechanism` takes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ScramSha256 => ScramMechanism::Sha256.as_str(),
            Self::ScramSha512 => ScramMechanism::Sha512.as_str(),
            Self::Plain => "PLAIN",
        }
    }
}

/// PEM files in a directory: a CA, the broker's key and certificate signed by it, and another
/// CA.
pub struct TestCertificates {
    dir: PathBuf,
    /// Removes the files when the certificates were made here.
    _made: Option<tempfile::TempDir>,
}

impl TestCertificates {
    const CA: &'static str = "ca.pem";
    const OTHER_CA: &'static str = "other-ca.pem";
    const BROKER: &'static str = "broker.pem";

    /// Makes the CA, the broker certificate (for 127.0.0.1 and localhost) and the other CA.
    pub fn generate() -> Self {
        let made = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let dir = made.path().to_path_buf();
        let ca = certificate_authority("Eventline test CA");
        let other = certificate_authority("Eventline test CA that signed nothing");
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("cannot make a key: {e}"));
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap_or_else(|e| panic!("invalid certificate names: {e}"));
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let broker = params.signed_by(&key, &ca).unwrap_or_else(|e| panic!("cannot sign the broker certificate: {e}"));
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
        };
        write(Self::CA, ca.pem());
        write(Self::OTHER_CA, other.pem());
        // An unencrypted PKCS#8 key: Kafka reads it so when no ssl.key.password is set.
        write(Self::BROKER, format!("{}{}", key.serialize_pem(), broker.pem()));
        Self { dir, _made: Some(made) }
    }

    /// Certificates made earlier (by the process that started the run's broker) in `dir`.
    pub fn existing(dir: PathBuf) -> Self {
        Self { dir, _made: None }
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA that signed the broker's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join(Self::CA)
    }

    /// A CA that did not sign the broker's certificate.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join(Self::OTHER_CA)
    }

    /// The broker's private key and certificate, in one PEM file.
    pub fn broker_keystore(&self) -> PathBuf {
        self.dir.join(Self::BROKER)
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("cannot make a key: {e}"));
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, key).unwrap_or_else(|e| panic!("cannot make the CA: {e}"))
}

/// A broker's SASL_SSL listener: its address and the certificates it was made with.
#[derive(Clone)]
pub struct SecureListener {
    bootstrap: String,
    certificates: Arc<TestCertificates>,
}

impl SecureListener {
    /// New certificates and a free port, for a broker not started yet.
    pub(crate) fn new() -> Self {
        let bootstrap = format!("127.0.0.1:{}", crate::free_port());
        Self { bootstrap, certificates: Arc::new(TestCertificates::generate()) }
    }

    /// The listener of a running broker at `bootstrap`, made with the certificates in `dir`.
    pub fn existing(bootstrap: String, dir: PathBuf) -> Self {
        Self { bootstrap, certificates: Arc::new(TestCertificates::existing(dir)) }
    }

    /// The directory of the certificates the listener was made with.
    pub fn certificates_dir(&self) -> &Path {
        self.certificates.dir()
    }

    /// Adds the listener, its key and certificate, its SASL mechanisms and the user to `config`.
    pub(crate) fn configure(&self, config: &mut LocalBrokerConfig) {
        let port = self.bootstrap.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap_or_default();
        config.extra_listeners.insert(SECURE_LISTENER.to_owned(), port);
        let prefix = format!("listener.name.{}.", SECURE_LISTENER.to_lowercase());
        let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned();
        let plain =
            format!("org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}=\"{PASSWORD}\";");
        let mechanisms: Vec<&str> = SaslMechanism::ALL.iter().map(|m| m.as_str()).collect();
        let listener_properties = [
            ("sasl.enabled.mechanisms", mechanisms.join(",")),
            ("ssl.keystore.type", "PEM".to_owned()),
            ("ssl.keystore.location", self.certificates.broker_keystore().display().to_string()),
            ("scram-sha-256.sasl.jaas.config", scram.clone()),
            ("scram-sha-512.sasl.jaas.config", scram),
            ("plain.sasl.jaas.config", plain),
        ];
        for (key, value) in listener_properties {
            config.properties.insert(format!("{prefix}{key}"), value);
        }
        config.scram_users = [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .map(|mechanism| ScramUser { mechanism, name: USER.to_owned(), password: PASSWORD.to_owned() })
            .collect();
    }

    /// The listener's address.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap.clone()
    }

    /// Settings for a client of the listener: [`USER`] with its password over `mechanism`,
    /// trusting the CA that signed the broker's certificate.
    pub fn kafka_settings(&self, mechanism: SaslMechanism) -> KafkaSettings {
        let mut settings = KafkaSettings::for_bootstrap(self.bootstrap_servers());
        settings.properties = [
            ("security.protocol", SECURE_LISTENER.to_owned()),
            ("sasl.mechanism", mechanism.as_str().to_owned()),
            ("sasl.username", USER.to_owned()),
            ("sasl.password", PASSWORD.to_owned()),
            ("ssl.ca.location", self.ca_path().display().to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        settings
    }

    /// The CA file that clients trust.
    pub fn ca_path(&self) -> PathBuf {
        self.certificates.ca()
    }

    /// A CA file that did not sign the broker's certificate.
    pub fn untrusted_ca_path(&self) -> PathBuf {
        self.certificates.other_ca()
    }
}
