//! A throw-away certificate authority for TLS test servers.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose,
};

/// A self-signed CA (P-256) that issues server certificates for 127.0.0.1 and localhost.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of debug output.
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Generates a new CA key and self-signed CA certificate.
    pub fn new() -> TestCa {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty subject alt names are valid");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kaniko-builder test CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate a P-256 CA key");
        crate::ledger::register_pem_key("TestCa CA key", &key.serialize_pem());
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// Issues a server certificate with SAN IP:127.0.0.1 and DNS:localhost.
    ///
    /// Returns (certificate PEM, PKCS#8 private key PEM).
    pub fn issue_server_cert(&self) -> (String, String) {
        self.issue_server_cert_for(&["localhost", "127.0.0.1"])
    }

    /// Issues a server certificate for `names` (IP addresses become IP SANs, anything else DNS
    /// SANs); the first name is also the common name.
    ///
    /// Returns (certificate PEM, PKCS#8 private key PEM). Panics on a name that is neither an
    /// IP address nor a valid DNS name.
    pub fn issue_server_cert_for(&self, names: &[&str]) -> (String, String) {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("valid subject alt names");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        self.sign(&params, "server")
    }

    /// Issues a client certificate with subject CN=`common_name` and, if given,
    /// O=`organization` (Kubernetes reads them as user name and group; rcgen keeps one value
    /// per attribute type, so one group at most).
    ///
    /// Returns (certificate PEM, PKCS#8 private key PEM).
    pub fn issue_client_cert(&self, common_name: &str, organization: Option<&str>) -> (String, String) {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty subject alt names are valid");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        if let Some(org) = organization {
            name.push(DnType::OrganizationName, org);
        }
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        self.sign(&params, "client")
    }

    /// Signs `params` with a fresh P-256 key; returns (certificate PEM, key PEM).
    fn sign(&self, params: &CertificateParams, what: &str) -> (String, String) {
        let key = KeyPair::generate().expect("generate a P-256 key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("sign the {what} certificate: {e}"));
        let key_pem = key.serialize_pem();
        crate::ledger::register_pem_key(&format!("TestCa {what} key"), &key_pem);
        (cert.pem(), key_pem)
    }
}
