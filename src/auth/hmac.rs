//! HMAC-SHA256 (RFC 2104) over the vetted `sha2` hash, and the `sha256=<hex>` signature form
//! that webhooks carry. Used for webhook signatures and for deriving stream-only tokens.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// HMAC-SHA256 of `message` under `key`; checked against RFC 4231 below.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let padded = |pad: u8| block.map(|byte| byte ^ pad);
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(padded(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// `sha256=<hex HMAC-SHA256 of body keyed by secret>`, the `X-Rollgate-Signature` value.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// True when `header` is `sha256=<hex>` and the hex is the HMAC-SHA256 of `body` under
/// `secret`. The comparison takes the same time wherever the first difference is.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    hmac_sha256(secret.as_bytes(), body)
        .ct_eq(given.as_slice())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_vectors() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, message, expected) in cases {
            assert_eq!(hex::encode(hmac_sha256(key, message)), expected);
        }
    }

    #[test]
    fn verify_accepts_only_the_exact_signature() {
        let body = br#"{"kind":"pause"}"#;
        let header = sign("s3cret", body);
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert!(verify("s3cret", body, &header));
        assert!(verify(
            "s3cret",
            body,
            &header.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify("other", body, &header));
        assert!(!verify("s3cret", br#"{"kind":"rollback"}"#, &header));
        assert!(!verify(
            "s3cret",
            body,
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify("s3cret", body, &header[..header.len() - 2]));
        assert!(!verify("s3cret", body, "sha256=zz"));
        assert!(!verify("s3cret", body, ""));
    }
}
