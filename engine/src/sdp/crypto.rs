//! SDES (RFC 4568): the `a=crypto` attribute and the secure RTP profiles.
//!
//! `a=crypto:<tag> <crypto-suite> inline:<key||salt base64>[|<lifetime>][|<mki>:<length>][;inline:…] [<session-params>]`
//!
//! This module only reads and writes the attribute and the `m=` protocol; choosing a suite,
//! generating keys and running SRTP belong to the caller (the call actor and the media crate).
//! Parsing never panics; a line that does not parse is simply not offered as usable crypto.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};

use super::{Attribute, MediaSection};

/// Standard base64 that writes padding and accepts it or not (phones differ).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One `a=crypto` attribute.
#[derive(Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag that pairs an answer's line with the offer's (1..=999999999).
    pub tag: u32,
    /// The crypto-suite name as written (`AES_CM_128_HMAC_SHA1_80`, …).
    pub suite: String,
    /// The key parameters (usually one).
    pub keys: Vec<CryptoKey>,
    /// Session parameters (`KDR=`, `UNENCRYPTED_SRTP`, `FEC_ORDER=`, …), as written.
    pub session_params: Vec<String>,
}

/// One `inline:` key parameter.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoKey {
    /// The master key followed by the master salt (base64-decoded).
    pub key_salt: Vec<u8>,
    /// The key lifetime as written (`2^31`, `1048576`), if any.
    pub lifetime: Option<String>,
    /// The MKI value and its length in bytes, if any.
    pub mki: Option<(u64, u8)>,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("keys", &self.keys.len())
            .field("session_params", &self.session_params)
            .finish()
    }
}

impl fmt::Debug for CryptoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoKey")
            .field("len", &self.key_salt.len())
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish()
    }
}

impl Crypto {
    /// A line with one key and no lifetime, MKI or session parameters (what the engine writes).
    pub fn new(tag: u32, suite: &str, key_salt: &[u8]) -> Crypto {
        Crypto {
            tag,
            suite: suite.to_string(),
            keys: vec![CryptoKey {
                key_salt: key_salt.to_vec(),
                lifetime: None,
                mki: None,
            }],
            session_params: Vec::new(),
        }
    }

    /// Parses the value of an `a=crypto` attribute (after `crypto:`); `None` if malformed.
    pub fn parse(value: &str) -> Option<Crypto> {
        let mut fields = value.split_ascii_whitespace();
        let tag: u32 = fields.next()?.parse().ok()?;
        if tag == 0 || tag > 999_999_999 {
            return None;
        }
        let suite = fields.next()?;
        if suite.is_empty()
            || !suite
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return None;
        }
        let keys = fields
            .next()?
            .split(';')
            .map(CryptoKey::parse)
            .collect::<Option<Vec<_>>>()?;
        Some(Crypto {
            tag,
            suite: suite.to_string(),
            keys,
            session_params: fields.map(str::to_string).collect(),
        })
    }

    /// The attribute to put in an SDP.
    pub fn attribute(&self) -> Attribute {
        Attribute::Other {
            name: "crypto".into(),
            value: Some(self.to_string()),
        }
    }
}

impl CryptoKey {
    fn parse(param: &str) -> Option<CryptoKey> {
        let info = param.strip_prefix("inline:")?;
        let mut parts = info.split('|');
        let key_salt = B64.decode(parts.next()?).ok()?;
        if key_salt.is_empty() {
            return None;
        }
        let (mut lifetime, mut mki) = (None, None);
        for p in parts {
            if let Some((value, len)) = p.split_once(':') {
                if mki.is_some() {
                    return None;
                }
                let len: u8 = len.parse().ok().filter(|l| (1..=128).contains(l))?;
                mki = Some((value.parse().ok()?, len));
            } else {
                let digits = p.strip_prefix("2^").unwrap_or(p);
                if lifetime.is_some() || digits.is_empty() || mki.is_some() {
                    return None;
                }
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                lifetime = Some(p.to_string());
            }
        }
        Some(CryptoKey {
            key_salt,
            lifetime,
            mki,
        })
    }
}

impl fmt::Display for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.tag, self.suite)?;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "inline:{}", B64.encode(&k.key_salt))?;
            if let Some(l) = &k.lifetime {
                write!(f, "|{l}")?;
            }
            if let Some((v, len)) = k.mki {
                write!(f, "|{v}:{len}")?;
            }
        }
        for p in &self.session_params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// How an `m=` line asks for SRTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaSecurity {
    /// `RTP/AVP` or `RTP/AVPF` without `a=crypto`: plain RTP.
    Plain,
    /// `RTP/AVP(F)` with `a=crypto`: SRTP if the answerer can, plain RTP otherwise ("best
    /// effort" SRTP, as some phones offer it).
    Optional,
    /// `RTP/SAVP` or `RTP/SAVPF`: SDES-SRTP required (no usable crypto → 488).
    Sdes,
    /// `UDP/TLS/RTP/SAVP(F)`: DTLS-SRTP (RFC 5764), keyed by a DTLS handshake, not here.
    Dtls,
    /// Anything else (`udptl`, …).
    Other,
}

impl MediaSection {
    /// What the section's protocol and attributes say about SRTP.
    pub fn security(&self) -> MediaSecurity {
        let p = self.proto.to_ascii_uppercase();
        match p.as_str() {
            "RTP/SAVP" | "RTP/SAVPF" => MediaSecurity::Sdes,
            "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF" => MediaSecurity::Dtls,
            "RTP/AVP" | "RTP/AVPF" if self.has_attribute("crypto") => MediaSecurity::Optional,
            "RTP/AVP" | "RTP/AVPF" => MediaSecurity::Plain,
            _ => MediaSecurity::Other,
        }
    }

    /// The `a=crypto` lines that parse, in order.
    pub fn crypto(&self) -> Vec<Crypto> {
        self.attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::Other { name, value } if name == "crypto" => {
                    value.as_deref().and_then(Crypto::parse)
                }
                _ => None,
            })
            .collect()
    }

    /// Replaces every `a=crypto` line with `lines`, and the protocol with its secure
    /// (`RTP/SAVP`, `RTP/SAVPF`) or plain (`RTP/AVP`, `RTP/AVPF`) form. `keep_proto` leaves the
    /// protocol as it is (answering a best-effort `RTP/AVP` offer with crypto).
    pub fn set_crypto(&mut self, lines: &[Crypto], secure: bool, keep_proto: bool) {
        self.attributes.retain(|a| a.name() != "crypto");
        self.attributes.extend(lines.iter().map(Crypto::attribute));
        if keep_proto {
            return;
        }
        let feedback = self.proto.to_ascii_uppercase().ends_with('F');
        self.proto = match (secure, feedback) {
            (true, false) => "RTP/SAVP",
            (true, true) => "RTP/SAVPF",
            (false, false) => "RTP/AVP",
            (false, true) => "RTP/AVPF",
        }
        .to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Sdp;

    const KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    #[test]
    fn parses_rfc4568_examples() {
        let c = Crypto::parse(&format!(
            "1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4 FEC_ORDER=FEC_SRTP"
        ))
        .expect("RFC 4568 §9.1");
        assert_eq!(c.tag, 1);
        assert_eq!(c.suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(c.keys[0].key_salt.len(), 30);
        assert_eq!(c.keys[0].lifetime.as_deref(), Some("2^20"));
        assert_eq!(c.keys[0].mki, Some((1, 4)));
        assert_eq!(c.session_params, vec!["FEC_ORDER=FEC_SRTP".to_string()]);
        assert_eq!(
            c.to_string(),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4 FEC_ORDER=FEC_SRTP")
        );
        let two = Crypto::parse(&format!(
            "2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20|1:4;inline:{KEY}|2^20|2:4"
        ))
        .expect("two keys");
        assert_eq!(two.keys.len(), 2);
        // Unpadded base64 (some phones) is read too.
        let gcm = Crypto::parse("3 AEAD_AES_128_GCM inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .expect("28 bytes without padding");
        assert_eq!(gcm.keys[0].key_salt.len(), 28);
        assert!(Crypto::new(3, "AEAD_AES_128_GCM", &[0; 28])
            .to_string()
            .ends_with("=="));
    }

    #[test]
    fn refuses_malformed_lines() {
        for bad in [
            "",
            "1",
            "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "0 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES_CM_128_HMAC_SHA1_80 inline:",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_80 outline:AAAA",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|x",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|1:0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|1:4|2:4",
            "1 AES-CM inline:AAAA",
        ] {
            assert!(Crypto::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn profiles_and_rewrites() {
        let text = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n\
a=crypto:2 BOGUS\r\nm=audio 4002 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n\
m=audio 4004 UDP/TLS/RTP/SAVPF 0\r\nm=audio 4006 RTP/AVPF 0\r\n"
        );
        let mut sdp = Sdp::parse(&text).expect("valid");
        assert_eq!(sdp.media[0].security(), MediaSecurity::Sdes);
        assert_eq!(sdp.media[0].crypto().len(), 1, "the bogus line is skipped");
        assert_eq!(sdp.media[1].security(), MediaSecurity::Optional);
        assert_eq!(sdp.media[2].security(), MediaSecurity::Dtls);
        assert_eq!(sdp.media[3].security(), MediaSecurity::Plain);
        sdp.media[0].set_crypto(&[], false, false);
        assert_eq!(sdp.media[0].proto, "RTP/AVP");
        assert!(!sdp.media[0].has_attribute("crypto"));
        sdp.media[3].set_crypto(&[Crypto::new(7, "AEAD_AES_128_GCM", &[1; 28])], true, false);
        let out = sdp.to_string();
        assert!(out.contains("m=audio 4006 RTP/SAVPF 0\r\na=crypto:7 AEAD_AES_128_GCM inline:"));
        let back = Sdp::parse(&out).expect("round trip");
        assert_eq!(back.media[3].crypto()[0].keys[0].key_salt, vec![1; 28]);
    }
}
