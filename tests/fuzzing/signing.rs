//! Signature properties: every body, signed as its platform signs, verifies (so parsing is really
//! reached); a changed signature, or the right signature over a changed body, is refused; and
//! nothing panics on any header value.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use parley::model::Platform;
use parley::platform::{self, SignedRequest, facebook, linkedin, viber, whatsapp};
use parley::secret::Secret;

/// The harness's own signing secrets (not any real platform's).
pub fn secret(platform: Platform) -> Secret {
    Secret::new(match platform {
        Platform::Facebook => "fuzz-facebook-app-secret",
        Platform::Whatsapp => "fuzz-whatsapp-app-secret",
        Platform::Viber => "fuzz-viber-bot-token",
        Platform::Linkedin => "fuzz-linkedin-client-secret",
    })
}

/// The signature header value the platform would send with `body`.
pub fn sign(platform: Platform, body: &[u8]) -> String {
    let secret = secret(platform);
    match platform {
        Platform::Facebook => facebook::sign_webhook(&secret, body),
        Platform::Whatsapp => whatsapp::sign_webhook(&secret, body),
        Platform::Viber => viber::sign_webhook(&secret, body),
        Platform::Linkedin => linkedin::sign_webhook(&secret, body),
    }
}

fn verify(platform: Platform, header: Option<&str>, query: Option<&str>, body: &[u8]) -> bool {
    let request = SignedRequest { signature_header: header, query, body };
    platform::verify_signature(platform, &secret(platform), &request).is_ok()
}

/// Checks the signature properties for one body; `Err` names the one that failed.
pub fn check(platform: Platform, rng: &mut StdRng, body: &[u8]) -> Result<(), String> {
    let signature = sign(platform, body);
    if !verify(platform, Some(&signature), None, body) {
        return Err(format!("the right signature `{signature}` was refused"));
    }
    let wrong = changed_signature(rng, &signature);
    if verify(platform, Some(&wrong), None, body) {
        return Err(format!("a changed signature `{wrong}` was accepted (right: `{signature}`)"));
    }
    // The right signature over a body one bit off.
    if !body.is_empty() {
        let mut changed = body.to_vec();
        let i = rng.random_range(0..changed.len());
        changed[i] ^= 1 << rng.random_range(0..8);
        if verify(platform, Some(&signature), None, &changed) {
            return Err(format!("the signature of the original body verified a body changed at byte {i}"));
        }
    }
    // The other accepted forms cost more HMACs: checked on one body in eight.
    if rng.random_ratio(7, 8) {
        return Ok(());
    }
    if verify(platform, None, None, body) {
        return Err("a body without a signature was accepted".into());
    }
    match platform {
        Platform::Viber => {
            // Viber's Node SDK puts the signature in the `sig` query parameter instead.
            let query = format!("sig={signature}");
            if !verify(platform, None, Some(&query), body) {
                return Err("the right signature in `sig` was refused".into());
            }
            let wrong = changed_signature(rng, &signature);
            if verify(platform, Some(&wrong), Some(&query), body) {
                return Err(format!("a wrong header `{wrong}` was accepted because `sig` was right"));
            }
        }
        Platform::Linkedin => {
            // Both readings of LinkedIn's documentation: over the body, or over the prefix + body.
            let plain = platform::sign_hex(secret(platform).expose().as_bytes(), &[body]);
            for form in [plain.clone(), format!("hmacsha256={plain}"), format!("HMACSHA256={signature}")] {
                if !verify(platform, Some(&form), None, body) {
                    return Err(format!("the right signature `{form}` was refused"));
                }
            }
        }
        Platform::Facebook | Platform::Whatsapp => {}
    }
    Ok(())
}

/// `signature` changed so that it can no longer be right: a hex digit replaced by another value,
/// a character dropped or added, garbage, empty, non-ASCII, or another body's signature.
fn changed_signature(rng: &mut StdRng, signature: &str) -> String {
    let hex_start = signature.rfind('=').map_or(0, |i| i + 1);
    let hex: Vec<char> = signature[hex_start..].chars().collect();
    let prefix = &signature[..hex_start];
    match rng.random_range(0..7) {
        0 => {
            let i = rng.random_range(0..hex.len());
            let current = hex[i].to_digit(16).expect("hex");
            let replacement = (current + rng.random_range(1..16)) % 16;
            let mut changed = hex.clone();
            changed[i] = char::from_digit(replacement, 16).expect("a hex digit");
            format!("{prefix}{}", changed.into_iter().collect::<String>())
        }
        1 => {
            let mut changed = hex.clone();
            changed.remove(rng.random_range(0..changed.len()));
            format!("{prefix}{}", changed.into_iter().collect::<String>())
        }
        2 => format!("{signature}{}", ['0', 'a', 'F'].choose(rng).expect("not empty")),
        3 => String::new(),
        4 => (0..rng.random_range(1..100)).map(|_| char::from(rng.random_range(0x20_u8..0x7f))).collect(),
        5 => format!("{prefix}{}é", &signature[hex_start..signature.len() - 2]),
        _ => sign(Platform::Facebook, &rng.random::<[u8; 16]>()).replacen("sha256=", prefix, 1),
    }
}
