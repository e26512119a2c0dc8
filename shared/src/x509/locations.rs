//! Where a certificate says its status is published: the OCSP responders
//! of its Authority Information Access extension.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
use x509_parser::prelude::FromDer;

use super::X509Error;

/// The OCSP responder URLs of a DER certificate, in order (any scheme).
pub fn ocsp_urls(der: &[u8]) -> Result<Vec<String>, X509Error> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| X509Error::Certificate(e.to_string()))?;
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for desc in aia.iter() {
                if let (true, GeneralName::URI(uri)) = (
                    desc.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP,
                    &desc.access_location,
                ) {
                    urls.push((*uri).to_owned());
                }
            }
        }
    }
    Ok(urls)
}
