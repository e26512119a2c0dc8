//! Certificate extensions for tests of this crate and of the data plane
//! (feature `testing`), which rcgen has no builder for.

use rcgen::CustomExtension;

/// An Authority Information Access extension naming `url` as the OCSP
/// responder (RFC 5280 §4.2.2.1), in DER short form.
pub fn ocsp_aia(url: &str) -> CustomExtension {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 128, "short form only");
        [&[tag, content.len() as u8][..], content].concat()
    }
    let ocsp_method = [0x2b, 6, 1, 5, 5, 7, 48, 1];
    let access = tlv(
        0x30,
        &[tlv(6, &ocsp_method), tlv(0x86, url.as_bytes())].concat(),
    );
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], tlv(0x30, &access))
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    #[test]
    fn the_extension_names_the_responder() {
        let mut params = CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params
            .custom_extensions
            .push(ocsp_aia("http://127.0.0.1:1/ocsp"));
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert_eq!(
            crate::x509::ocsp_urls(cert.der()).unwrap(),
            ["http://127.0.0.1:1/ocsp"]
        );
    }
}
