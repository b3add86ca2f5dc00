//! Client-made identifiers.

use rand::Rng;

/// The length of a run id.
pub const RUN_ID_LEN: usize = 8;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random characters from `[a-z0-9]`: run ids (8 long, like `hb8zh4xt`) and artifact
/// client ids (128 long), as the official client makes them.
pub fn random_id(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_requested_length_and_alphabet() {
        for len in [8, 128] {
            let id = random_id(len);
            assert_eq!(id.len(), len);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{id}"
            );
        }
        assert_ne!(random_id(8), random_id(8));
    }
}
