//! Tests across all parsers: secrets never reach output or errors, and no input panics.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{
    fixtures::{CATALOGUE_TYPES, Fixture, canary_fixtures},
    *,
};

/// Returns every text that a caller could log or store: the `Debug` form of the result, the
/// serialised details and the error message.
fn visible_text(result: &Result<Vec<Identified>, IdentifyError>) -> String {
    let mut text = format!("{result:?}");
    match result {
        Ok(items) => {
            for item in items {
                text.push_str(&serde_json::to_string(&item.details).unwrap());
                text.push_str(&format!("{}", item.material));
            }
        }
        Err(error) => text.push_str(&error.to_string()),
    }
    text
}

fn assert_no_secret(
    fixture: &Fixture,
    result: &Result<Vec<Identified>, IdentifyError>,
    case: &str,
) {
    let text = visible_text(result);
    for secret in &fixture.secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{}: a secret of fixture {:?} is visible ({case})",
            fixture.name,
            fixture.name
        );
    }
}

#[test]
fn canary_never_visible() {
    for fixture in canary_fixtures() {
        let result = identify(fixture.credential_type, &fixture.contents);

        let items = result
            .as_ref()
            .unwrap_or_else(|error| panic!("{}: {error}", fixture.name));
        assert!(!items.is_empty(), "{}: nothing identified", fixture.name);
        assert_no_secret(&fixture, &result, "whole file");
    }
}

#[test]
fn canary_reaches_material() {
    // The canary must be in some material, or the visibility test would prove nothing.
    for fixture in canary_fixtures() {
        if fixture.secrets != [fixtures::CANARY] {
            continue;
        }
        let items = identify(fixture.credential_type, &fixture.contents).unwrap();

        let in_material = items.iter().any(|item| {
            item.material
                .expose()
                .windows(fixtures::CANARY.len())
                .any(|window| window == fixtures::CANARY.as_bytes())
        });
        assert!(in_material, "{}: canary not in any material", fixture.name);
    }
}

#[test]
fn canary_fixtures_cover_every_type() {
    let fixtures = canary_fixtures();
    for credential_type in CATALOGUE_TYPES {
        assert!(
            fixtures
                .iter()
                .any(|fixture| fixture.credential_type == *credential_type),
            "no canary fixture of type {credential_type}"
        );
    }
}

/// A xorshift generator, so the random inputs are the same on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// Returns prefixes of `contents` cut at 48 points spread over its length, plus every cut in
/// the first 64 bytes.
fn truncations(contents: &[u8]) -> Vec<&[u8]> {
    let len = contents.len();
    let mut cuts: Vec<usize> = (0..len.min(64)).collect();
    cuts.extend((1..48).map(|step| len * step / 48));
    cuts.into_iter().map(|cut| &contents[..cut]).collect()
}

fn mutations(contents: &[u8], random: &mut Random) -> Vec<Vec<u8>> {
    let mut mutated = Vec::new();
    for _ in 0..24 {
        let mut copy = contents.to_vec();
        for _ in 0..=random.below(3) {
            let index = random.below(copy.len());
            if let Some(byte) = copy.get_mut(index) {
                *byte ^= 1 << random.below(8);
            }
        }
        mutated.push(copy);
    }
    for _ in 0..4 {
        let len = random.below(512);
        mutated.push((0..len).map(|_| random.next() as u8).collect());
    }
    mutated
}

/// Feeds truncated, bit-flipped and random versions of every fixture to every parser. None
/// may panic, and none may show a secret in its output or error.
#[test]
fn damaged_input_never_panics_or_leaks() {
    let mut random = Random(0x5eed_1234_abcd_0001);
    for fixture in canary_fixtures() {
        let mut inputs: Vec<(String, Vec<u8>)> = truncations(&fixture.contents)
            .into_iter()
            .map(|input| (format!("cut at {}", input.len()), input.to_vec()))
            .collect();
        for (index, input) in mutations(&fixture.contents, &mut random)
            .into_iter()
            .enumerate()
        {
            inputs.push((format!("mutation {index}"), input));
        }

        for credential_type in CATALOGUE_TYPES {
            for (case, input) in &inputs {
                let outcome = catch_unwind(AssertUnwindSafe(|| identify(credential_type, input)));
                let case = format!("{case} as {credential_type}");
                let result = outcome
                    .unwrap_or_else(|_| panic!("{}: parser panicked on {case}", fixture.name));
                assert_no_secret(&fixture, &result, &case);
            }
        }
    }
}

/// Inputs that stress recursion, quoting and scanning, at the size limit.
#[test]
fn hostile_input_at_size_limit() {
    let unit_inputs: &[&[u8]] = &[
        b"[",
        b"{\"a\":",
        b"- ",
        b"\"",
        b"'",
        b"a=\"",
        b"eyJ",
        b"eyJhYmNkZWZnaGlq.",
        b"AKIA",
        b"machine ",
        b"credentials \"h\" {",
        b"-----BEGIN CERTIFICATE-----\n",
        b"\xff",
        b"\0",
    ];
    for unit in unit_inputs {
        let input: Vec<u8> = unit.iter().copied().cycle().take(MAX_INPUT_BYTES).collect();
        for credential_type in CATALOGUE_TYPES {
            let started = std::time::Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| identify(credential_type, &input)));
            eprintln!(
                "TIMING {:?} {credential_type} {:?}",
                started.elapsed(),
                String::from_utf8_lossy(unit)
            );
            assert!(
                outcome.is_ok(),
                "{credential_type} panicked on {:?} repeated",
                String::from_utf8_lossy(unit)
            );
        }
    }
}

#[test]
fn too_large_input_rejected() {
    let input = vec![b'a'; MAX_INPUT_BYTES + 1];

    let error = identify("dotenv", &input).unwrap_err();

    assert_eq!(
        error,
        IdentifyError::TooLarge {
            len: MAX_INPUT_BYTES + 1,
            max: MAX_INPUT_BYTES
        }
    );
    assert!(error.to_string().contains("MAX_INPUT_BYTES"), "{error}");
}

#[test]
fn blank_input_gives_empty_list() {
    for credential_type in CATALOGUE_TYPES {
        assert!(identify(credential_type, b"").unwrap().is_empty());
        assert!(identify(credential_type, b" \n\t\n").unwrap().is_empty());
    }
}

#[test]
fn unknown_type_falls_back_to_scan() {
    let found = identify("made_up_type", b"export KEY=AKIAMADEUPEXAMPLE234\n").unwrap();

    assert_eq!(found.len(), 1);
    assert_eq!(found[0].credential_type, "aws_access_key_id");
}

#[test]
fn credential_ids_stable_across_files() {
    use crate::credential::fingerprint::CredentialKey;

    let key = CredentialKey::from_fleet_secret(b"made-up fleet secret 0123456789").unwrap();
    let secret = "made/up+Secret0AccessKey0Value0000000000";
    let aws = format!(
        "[default]\naws_access_key_id = AKIAMADEUPEXAMPLE234\naws_secret_access_key = {secret}\n"
    );
    let dotenv =
        format!("AWS_ACCESS_KEY_ID=AKIAMADEUPEXAMPLE234\nAWS_SECRET_ACCESS_KEY={secret}\n");

    let from_aws = identify("aws_credentials", aws.as_bytes()).unwrap();
    let from_dotenv = identify("dotenv", dotenv.as_bytes()).unwrap();

    assert_eq!(
        key.credential_id(&from_aws[0].material),
        key.credential_id(&from_dotenv[0].material)
    );
}
