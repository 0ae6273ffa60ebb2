//! PyPI upload configuration (`.pypirc`): one credential per repository section with a
//! password, which is an API token (`pypi-...`) when the user name is `__token__`.
//!
//! The material is the password or token.

use super::{
    Identified, IdentifyError,
    ini::{self, EQUALS_OR_COLON, Section},
    text::utf8,
};
use crate::credential::{
    fingerprint::SecretBytes,
    patterns::{TokenKind, token_kind},
};

const EXPECTED: &str = ".pypirc file";

/// User name that marks the password as an API token.
const TOKEN_USERNAME: &str = "__token__";

/// Upload URLs that twine uses for these repository names without a `repository` setting.
const KNOWN_REPOSITORIES: &[(&str, &str)] = &[
    ("pypi", "https://upload.pypi.org/legacy/"),
    ("testpypi", "https://test.pypi.org/legacy/"),
];

/// Identifies the passwords and tokens of a `.pypirc` file.
pub(super) fn identify(contents: &[u8]) -> Result<Vec<Identified>, IdentifyError> {
    let text = utf8(contents, EXPECTED)?;
    Ok(ini::parse(text, EQUALS_OR_COLON)
        .iter()
        .filter(|section| !section.name.is_empty() && section.name != "distutils")
        .filter_map(describe)
        .collect())
}

fn describe(section: &Section<'_>) -> Option<Identified> {
    let password = section.get("password")?;
    let username = section.get("username");
    let is_token = username == Some(TOKEN_USERNAME)
        || token_kind(password.as_bytes()) == Some(TokenKind::PypiToken);
    let credential_type = if is_token {
        "pypi_token"
    } else {
        "pypi_password"
    };

    let mut item = Identified::new(
        credential_type,
        SecretBytes::from_slice(password.as_bytes()),
    );
    let repository = section.get("repository").or_else(|| {
        KNOWN_REPOSITORIES
            .iter()
            .find(|(name, _)| *name == section.name)
            .map(|(_, url)| *url)
    });
    item.label = Some(repository.unwrap_or(section.name).to_string());
    if !is_token && let (Some(user), Some(repository)) = (username, repository) {
        item.native_id = Some(format!("{user}@{repository}"));
    }
    item.detail("section", section.name);
    item.detail_opt("repository", repository);
    item.detail_opt("username", username.filter(|user| *user != TOKEN_USERNAME));
    item.detail("line", section.line);
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_password_sections() {
        let text = "[distutils]\nindex-servers =\n    pypi\n    private\n\n\
                    [pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmcMadeUp\n\n\
                    [private]\nrepository = https://pypi.example.test/\nusername = builder\npassword: made-up\n\n\
                    [nopassword]\nusername = x\n";

        let found = identify(text.as_bytes()).unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].credential_type, "pypi_token");
        assert_eq!(
            found[0].label.as_deref(),
            Some("https://upload.pypi.org/legacy/")
        );
        assert_eq!(found[0].native_id, None);
        assert!(!found[0].details.contains_key("username"));
        assert_eq!(found[1].credential_type, "pypi_password");
        assert_eq!(
            found[1].native_id.as_deref(),
            Some("builder@https://pypi.example.test/")
        );
        assert_eq!(found[1].material.expose(), b"made-up");
    }
}
