//! Secret names: the word tables and the splitting of names into words.

/// Terms that make a name secret wherever they appear inside one of its words.
const SECRET_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
    "accesskey",
    "privatekey",
    "cookie",
    "bearer",
];

/// Terms that make a name secret only when a whole word equals them.
const SECRET_WORDS: &[&str] = &[
    "pwd",
    "passin",
    "passout",
    "auth",
    "oauth",
    "authorization",
    "authentication",
    "authn",
    "key",
    "session",
    "sessionid",
    "sig",
    "signature",
    "cred",
    "creds",
    "otp",
    "totp",
    "pin",
    "pat",
    "psk",
    "jwt",
    "dsn",
    "sas",
];

/// Names that the word rules would call secret but that are not. POSIX shells set `PWD` and
/// `OLDPWD` to the working directory, so the `pwd` word does not make them secret.
const NON_SECRET_NAMES: &[&str] = &["PWD", "OLDPWD"];

/// Tells whether a flag, variable, header, parameter or key name is secret, as the `redact`
/// module documentation describes.
pub(super) fn is_secret_name(name: &str) -> bool {
    if NON_SECRET_NAMES.contains(&name) {
        return false;
    }
    name_words(name).iter().any(|word| is_secret_word(word))
}

fn is_secret_word(word: &str) -> bool {
    SECRET_SUBSTRINGS.iter().any(|term| word.contains(term))
        || word.ends_with("pass")
        || SECRET_WORDS.contains(&word)
}

/// Splits a name into lowercase ASCII words, at characters other than ASCII letters and
/// digits, at `aB` and `ABc` case changes and between letters and digits.
fn name_words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();

    for (index, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            push_word(&mut current, &mut words);
            continue;
        }
        let previous = index.checked_sub(1).map(|before| chars[before]);
        let next = chars.get(index + 1).copied();
        if previous.is_some_and(|previous| is_word_break(previous, c, next)) {
            push_word(&mut current, &mut words);
        }
        current.push(c.to_ascii_lowercase());
    }

    push_word(&mut current, &mut words);
    words
}

fn is_word_break(previous: char, current: char, next: Option<char>) -> bool {
    if !previous.is_ascii_alphanumeric() {
        return false;
    }
    let lower_to_upper = previous.is_ascii_lowercase() && current.is_ascii_uppercase();
    let digit_change = previous.is_ascii_digit() != current.is_ascii_digit();
    let acronym_end = previous.is_ascii_uppercase()
        && current.is_ascii_uppercase()
        && next.is_some_and(|next| next.is_ascii_lowercase());
    lower_to_upper || digit_change || acronym_end
}

fn push_word(current: &mut String, words: &mut Vec<String>) {
    if !current.is_empty() {
        words.push(std::mem::take(current));
    }
}
