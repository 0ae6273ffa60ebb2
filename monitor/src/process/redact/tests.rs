//! Unit tests of the redaction rules.

use super::*;

const PASSWORD: &str = "hunter2-made-up";
const AWS_KEY_ID: &str = "AKIAFAKEFAKEFAKE1234";
const GITHUB_TOKEN: &str = "ghp_FAKEfakeFAKEfake0123456789madeUp";
const JWT: &str = "eyJmYWtlIjoiZmFrZSJ9.eyJzdWIiOiJmYWtlIn0.ZmFrZS1zaWduYXR1cmU";

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

fn redact(args: &[&str]) -> Vec<String> {
    redact_args(&strings(args))
}

/// Redacts `args` and asserts that `secret` is gone, returning the joined output.
fn redact_hiding(args: &[&str], secret: &str) -> String {
    let output = command_line(&redact(args));
    assert!(
        !output.contains(secret),
        "{secret:?} leaked from {args:?} as {output:?}"
    );
    output
}

fn google_api_key() -> String {
    let key = format!("AIza{}", "FAKEfake_made-up0123456789FAKEfakeX");
    assert_eq!(key.len(), 39);
    key
}

#[test]
fn split_cmdline_trailing_nul() {
    let args = split_cmdline(b"curl\0-s\0https://example.com\0");

    assert_eq!(args, ["curl", "-s", "https://example.com"]);
}

#[test]
fn split_cmdline_without_trailing_nul() {
    let args = split_cmdline(b"curl\0-s\0https://exa");

    assert_eq!(args, ["curl", "-s", "https://exa"]);
}

#[test]
fn split_cmdline_empty_and_nul_only() {
    assert!(split_cmdline(b"").is_empty());
    assert!(split_cmdline(b"\0").is_empty());
    assert!(split_cmdline(b"\0\0\0").is_empty());
}

#[test]
fn split_cmdline_keeps_inner_empty_arguments() {
    let args = split_cmdline(b"printf\0\0x\0\0\0");

    assert_eq!(args, ["printf", "", "x"]);
}

#[test]
fn split_cmdline_non_utf8_lossy() {
    let args = split_cmdline(b"cat\0/tmp/\xff\xfe\0\xe2\x82");

    assert_eq!(args, ["cat", "/tmp/\u{fffd}\u{fffd}", "\u{fffd}"]);
}

#[test]
fn secret_flag_separate_value() {
    let flags = [
        "--password",
        "--passwd",
        "--pwd",
        "--db-password",
        "--DB_PASSWORD",
        "--secret",
        "--client-secret",
        "--client_secret",
        "--clientSecret",
        "--token",
        "--auth-token",
        "--authtoken",
        "--api-key",
        "--api_key",
        "--apikey",
        "--apiKey",
        "--access-key",
        "--secret-key",
        "--private-key",
        "--key",
        "--ssh-key",
        "--auth",
        "--basic-auth",
        "--credential",
        "--credentials",
        "--bearer",
        "--oauth2-bearer",
        "--session",
        "--cookie",
        "--passphrase",
        "--pass",
        "-password",
        "-storepass",
        "-keypass",
        "-passin",
    ];
    for flag in flags {
        let output = redact_hiding(&["tool", flag, PASSWORD, "next"], PASSWORD);
        assert_eq!(
            output,
            format!("tool {flag} {REDACTED} next"),
            "flag {flag}"
        );
    }
}

#[test]
fn secret_flag_attached_value() {
    let flags = [
        "--password",
        "--api-key",
        "--token",
        "--client_secret",
        "-password",
        "--key",
    ];
    for flag in flags {
        let arg = format!("{flag}={PASSWORD}");
        let output = redact_hiding(&["tool", &arg], PASSWORD);
        assert_eq!(output, format!("tool {flag}={REDACTED}"), "flag {flag}");
    }
}

#[test]
fn attached_value_with_separators_hidden() {
    let arg = format!("--password={PASSWORD},still; secret&part two");
    let output = redact_hiding(&["tool", &arg], "still");

    assert!(!output.contains("part two"), "{output}");
    assert!(!output.contains(PASSWORD), "{output}");
}

#[test]
fn chained_secret_flags_hidden() {
    let output = redact_hiding(&["tool", "--session", "--password", PASSWORD], PASSWORD);

    assert_eq!(output, format!("tool --session {REDACTED} {REDACTED}"));
}

#[test]
fn similar_flags_kept() {
    let cases: &[&[&str]] = &[
        &["setxkbmap", "--keyboard", "us"],
        &["git", "commit", "--author", "bob"],
        &["git", "commit", "--author=bob"],
        &["curl", "--authority", "example"],
        &["tool", "--keys", "3"],
        &["tool", "--monkey", "george"],
        &["tool", "--passes", "2"],
        &["tool", "--keyboard=us"],
        &["ls", "-la", "/home"],
    ];
    for &args in cases {
        assert_eq!(redact(args), strings(args), "arguments {args:?}");
    }
}

#[test]
fn short_p_kept_outside_mysql() {
    let cases: &[&[&str]] = &[
        &["ssh", "-p", "2222", "host"],
        &["mkdir", "-p", "/tmp/x"],
        &["tool", "-pvalue"],
        &["mysql", "-p", "inventory"],
    ];
    for &args in cases {
        assert_eq!(redact(args), strings(args), "arguments {args:?}");
    }
}

#[test]
fn mysql_attached_password_redacted() {
    for program in ["mysql", "/usr/bin/mysqldump", "mariadb", "mysqladmin"] {
        let arg = format!("-p{PASSWORD}");
        let output = redact_hiding(&[program, "-uroot", &arg, "db"], PASSWORD);
        assert_eq!(
            output,
            format!("{program} -uroot -p{REDACTED} db"),
            "program {program}"
        );
    }
}

#[test]
fn mysql_behind_wrapper_redacted() {
    let arg = format!("-p{PASSWORD}");

    redact_hiding(&["sudo", "-u", "mysql", "mysql", &arg], PASSWORD);
    redact_hiding(&["docker", "exec", "db", "mysql", &arg], PASSWORD);
}

#[test]
fn program_short_flags_redacted() {
    let attached = format!("-p{PASSWORD}");
    let cases: &[&[&str]] = &[
        &["sshpass", "-p", PASSWORD, "ssh", "host"],
        &["sshpass", &attached, "ssh", "host"],
        &["redis-cli", "-a", PASSWORD, "ping"],
        &["mongosh", "-u", "admin", "-p", PASSWORD],
        &[
            "docker",
            "login",
            "-u",
            "bob",
            "-p",
            PASSWORD,
            "registry.example",
        ],
        &["ssh-keygen", "-t", "ed25519", "-N", PASSWORD],
        &["openssl", "enc", "-aes-256-cbc", "-k", PASSWORD],
        &["openssl", "rsa", "-passin", PASSWORD],
        &["curl", "-b", PASSWORD, "https://example.com"],
    ];
    for &args in cases {
        redact_hiding(args, PASSWORD);
    }
}

#[test]
fn samba_user_password_redacted() {
    let pair = format!("bob%{PASSWORD}");

    let output = redact_hiding(&["smbclient", "-U", &pair, "//srv/share"], PASSWORD);
    assert_eq!(output, format!("smbclient -U bob%{REDACTED} //srv/share"));
}

#[test]
fn config_setter_value_redacted() {
    let cases: &[&[&str]] = &[
        &["aws", "configure", "set", "aws_secret_access_key", PASSWORD],
        &["git", "config", "--global", "user.password", PASSWORD],
        &[
            "npm",
            "config",
            "set",
            "//registry.example/:_authToken",
            PASSWORD,
        ],
    ];
    for &args in cases {
        let output = redact_hiding(args, PASSWORD);
        assert!(output.ends_with(REDACTED), "{output}");
    }
}

#[test]
fn secret_subcommand_names_kept() {
    let args = ["kubectl", "get", "secret", "db-password", "-o", "yaml"];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn env_assignment_value_redacted() {
    let names = [
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "PGPASSWORD",
        "MYSQL_PWD",
        "DB_PASSWORD",
        "API_KEY",
        "VAULT_TOKEN",
        "SENTRY_DSN",
    ];
    for name in names {
        let arg = format!("{name}={PASSWORD}");
        let output = redact_hiding(&["env", &arg, "aws", "s3", "ls"], PASSWORD);
        assert_eq!(
            output,
            format!("env {name}={REDACTED} aws s3 ls"),
            "name {name}"
        );
    }
}

#[test]
fn env_assignment_plain_kept() {
    let args = [
        "env",
        "LANG=C",
        "PATH=/usr/bin",
        "KEYBOARD=us",
        "PWD=/home/bob",
        "cmd",
    ];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn header_value_redacted() {
    let bearer = format!("Authorization: Bearer {PASSWORD}");
    let basic = format!("--header=Authorization: Basic {PASSWORD}");
    let api_key = format!("X-Api-Key: {PASSWORD}");
    let cookie = format!("Cookie: theme=dark; session={PASSWORD}");
    let httpie = format!("Authorization:Bearer {PASSWORD}");
    let gitlab = format!("PRIVATE-TOKEN: {PASSWORD}");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["curl", "-H", &bearer],
            format!("curl -H 'Authorization: {REDACTED}'"),
        ),
        (
            vec!["curl", &basic],
            format!("curl '--header=Authorization: {REDACTED}'"),
        ),
        (
            vec!["curl", "-H", &api_key],
            format!("curl -H 'X-Api-Key: {REDACTED}'"),
        ),
        (
            vec!["curl", "--header", &cookie],
            format!("curl --header 'Cookie: {REDACTED}'"),
        ),
        (
            vec!["http", "example.com", &httpie],
            format!("http example.com Authorization:{REDACTED}"),
        ),
        (
            vec!["curl", "-H", &gitlab],
            format!("curl -H 'PRIVATE-TOKEN: {REDACTED}'"),
        ),
    ];
    for (args, expected) in cases {
        let output = redact_hiding(&args, PASSWORD);
        assert_eq!(output, expected);
    }
}

#[test]
fn header_plain_kept() {
    let args = [
        "curl",
        "-H",
        "Accept: application/json",
        "-H",
        "X-Keyboard: us",
    ];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn url_password_redacted() {
    let cases = [
        (
            "https://bob:{}@example.com/path",
            "https://bob:[REDACTED]@example.com/path",
        ),
        (
            "postgres://app:{}@db:5432/app",
            "postgres://app:[REDACTED]@db:5432/app",
        ),
        (
            "redis://:{}@cache:6379/0",
            "redis://:[REDACTED]@cache:6379/0",
        ),
        (
            "mongodb+srv://u:{}@cluster.example/db",
            "mongodb+srv://u:[REDACTED]@cluster.example/db",
        ),
        ("--url=amqp://u:{}@mq", "--url=amqp://u:[REDACTED]@mq"),
    ];
    for (template, expected) in cases {
        let url = template.replace("{}", PASSWORD);
        let output = redact_hiding(&["tool", &url], PASSWORD);
        assert_eq!(output, format!("tool {expected}"));
    }
}

#[test]
fn url_password_with_at_sign_redacted() {
    let url = format!("https://bob:{PASSWORD}@extra@example.com/");

    let output = redact_hiding(&["git", "clone", &url], PASSWORD);
    assert_eq!(output, "git clone https://bob:[REDACTED]@example.com/");
}

#[test]
fn url_password_with_slash_redacted() {
    let cases = [
        format!("https://bob:{PASSWORD}/x@example.com/path"),
        format!("https://bob:{PASSWORD}#x@example.com/path"),
    ];
    for url in cases {
        let output = redact_hiding(&["curl", &url], PASSWORD);
        assert_eq!(output, "curl https://bob:[REDACTED]@example.com/path");
    }
}

#[test]
fn url_path_at_sign_kept() {
    let args = [
        "curl",
        "https://social.example/@bob/1",
        "https://host:8080/@bob",
        "http://[::1]:80/@x",
    ];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn bare_user_info_redacted() {
    let proxy = format!("bob:{PASSWORD}@proxy.example:3128");
    let variable = format!("HTTPS_PROXY=bob:{PASSWORD}@proxy.example:3128");

    let output = redact_hiding(&["curl", "-x", &proxy, "https://x"], PASSWORD);
    assert_eq!(
        output,
        format!("curl -x bob:{REDACTED}@proxy.example:3128 https://x")
    );
    let output = redact_hiding(&["env", &variable, "cmd"], PASSWORD);
    assert_eq!(
        output,
        format!("env HTTPS_PROXY=bob:{REDACTED}@proxy.example:3128 cmd")
    );
}

#[test]
fn image_digest_kept() {
    let args = [
        "docker",
        "pull",
        "registry.example:5000/app:1.2@sha256:0123abcd",
        "git@github.com:org/repo",
    ];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn url_token_user_redacted() {
    let url = format!("https://{GITHUB_TOKEN}@github.com/org/repo.git");
    let long_user = "https://f00dfeedf00dfeedf00dfeedf00dfeed@sentry.example/1";

    redact_hiding(&["git", "clone", &url], GITHUB_TOKEN);
    redact_hiding(&["tool", long_user], "f00dfeed");
}

#[test]
fn url_login_name_kept() {
    let args = [
        "git",
        "clone",
        "ssh://git@github.com/org/repo.git",
        "https://example.com/a:b",
    ];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn url_query_secret_redacted() {
    let names = [
        "token",
        "access_token",
        "sig",
        "signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "key",
        "password",
        "code",
    ];
    for name in names {
        let url = format!("https://example.com/o?x=1&{name}={PASSWORD}&y=2");
        let output = redact_hiding(&["curl", &url], PASSWORD);
        assert_eq!(
            output,
            format!("curl https://example.com/o?x=1&{name}=[REDACTED]&y=2")
        );
    }
}

#[test]
fn url_fragment_secret_redacted() {
    let url = format!("https://app.example/cb#access_token={PASSWORD}&state=abc");

    let output = redact_hiding(&["xdg-open", &url], PASSWORD);
    assert!(output.contains("state=abc"), "{output}");
}

#[test]
fn url_plain_query_kept() {
    let args = [
        "curl",
        "https://example.com/search?q=keyboard&page=2&author=bob",
    ];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn credential_format_whole_argument() {
    let google_key = google_api_key();
    let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKEmadeUpKeyMaterial\n-----END OPENSSH PRIVATE KEY-----";
    let values = [
        AWS_KEY_ID,
        "ASIAFAKEFAKEFAKE5678",
        GITHUB_TOKEN,
        "gho_FAKEfakeFAKEfake0123456789madeUp",
        "ghu_FAKEfakeFAKEfake0123456789madeUp",
        "ghs_FAKEfakeFAKEfake0123456789madeUp",
        "ghr_FAKEfakeFAKEfake0123456789madeUp",
        "github_pat_FAKE0123456789_fakeMadeUpValue",
        "xoxb-0000000000-FAKE-made-up",
        "xoxp-0000000000-FAKE-made-up",
        "hvs.FAKEfakeFAKEfake0123456789",
        JWT,
        &google_key,
        pem,
    ];
    for value in values {
        let output = redact_hiding(&["tool", value], value);
        assert_eq!(output, format!("tool {REDACTED}"), "value {value:?}");
    }
}

#[test]
fn credential_format_after_equals() {
    let values = [
        AWS_KEY_ID,
        GITHUB_TOKEN,
        JWT,
        "xoxs-0000000000-FAKE-made-up",
    ];
    for value in values {
        let arg = format!("--header-value={value}");
        let output = redact_hiding(&["tool", &arg], value);
        assert_eq!(
            output,
            format!("tool --header-value={REDACTED}"),
            "value {value:?}"
        );
    }
}

#[test]
fn credential_format_inside_text() {
    let text = format!("{{\"id\":\"{AWS_KEY_ID}\",\"note\":\"uses {GITHUB_TOKEN} daily\"}}");

    let output = redact_hiding(&["tool", "--data", &text], AWS_KEY_ID);
    assert!(!output.contains(GITHUB_TOKEN), "{output}");
}

#[test]
fn credential_lookalikes_kept() {
    let args = [
        "tool",
        "AKIA",
        "AKIAshort",
        "ghp_",
        "ghp_x y",
        "eyJhbGciOi",
        "xoxb-",
        "MAKIAFAKEFAKEFAKE1234",
    ];
    let output = redact(&args);

    // An incomplete prefix at the end of an argument is redacted in case of truncation,
    // so only arguments with text after the prefix are kept.
    assert_eq!(output[2], "AKIAshort");
    assert_eq!(output[4], "ghp_x y");
    assert_eq!(output[7], "MAKIAFAKEFAKEFAKE1234");
}

#[test]
fn curl_user_password_redacted() {
    let pair = format!("bob:{PASSWORD}");
    let attached = format!("-ubob:{PASSWORD}");
    let long = format!("--user={pair}");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["curl", "-u", &pair, "https://x"],
            format!("curl -u bob:{REDACTED} https://x"),
        ),
        (
            vec!["curl", "--user", &pair],
            format!("curl --user bob:{REDACTED}"),
        ),
        (vec!["curl", &long], format!("curl --user=bob:{REDACTED}")),
        (vec!["curl", &attached], format!("curl -ubob:{REDACTED}")),
        (
            vec!["curl", "--proxy-user", &pair],
            format!("curl --proxy-user bob:{REDACTED}"),
        ),
        (
            vec!["wget", "--user", &pair],
            format!("wget --user bob:{REDACTED}"),
        ),
    ];
    for (args, expected) in cases {
        let output = redact_hiding(&args, PASSWORD);
        assert_eq!(output, expected);
    }
}

#[test]
fn curl_user_without_password_kept() {
    let args = ["curl", "-u", "bob", "https://example.com"];

    assert_eq!(redact(&args), strings(&args));
}

#[test]
fn shell_script_words_redacted() {
    let script = format!(
        "mysql -p{PASSWORD} db && curl -u bob:{PASSWORD} -H \"Authorization: Bearer {PASSWORD}\" https://x"
    );

    let output = redact_hiding(&["bash", "-c", &script], PASSWORD);
    assert!(output.contains("mysql"), "{output}");
    assert!(output.contains("https://x"), "{output}");
}

#[test]
fn shell_script_assignment_keeps_command() {
    let script = format!("AWS_SECRET_ACCESS_KEY={PASSWORD} aws s3 ls");

    let output = redact_hiding(&["sh", "-ec", &script], PASSWORD);
    assert_eq!(
        output,
        format!("sh -ec 'AWS_SECRET_ACCESS_KEY={REDACTED} aws s3 ls'")
    );
}

#[test]
fn shell_script_quoted_value_redacted() {
    let script = format!("export TOKEN='{PASSWORD} with spaces'; run");

    let output = redact_hiding(&["sh", "-c", &script], PASSWORD);
    assert!(!output.contains("with spaces"), "{output}");
    assert!(output.contains("run"), "{output}");
}

#[test]
fn nested_shell_script_redacted() {
    let script = format!("ssh host \"sh -c 'sshpass -p {PASSWORD} ssh other'\"");

    redact_hiding(&["bash", "-c", &script], PASSWORD);
}

#[test]
fn deep_nesting_redacted_whole() {
    let mut script = format!("tool --password {PASSWORD}");
    for _ in 0..6 {
        script = format!("sh -c {}", quote_argument(&script));
    }

    redact_hiding(&["sh", "-c", &script], PASSWORD);
}

#[test]
fn json_value_redacted() {
    let body = format!("{{\"user\": \"bob\", \"password\": \"{PASSWORD}\", \"keep\": 1}}");

    let output = redact_hiding(&["curl", "--data", &body, "https://x"], PASSWORD);
    assert!(output.contains("\"keep\": 1"), "{output}");
}

#[test]
fn form_and_option_values_redacted() {
    let form = format!("user=bob&password={PASSWORD}&remember=1");
    let mount = format!("username=bob,password={PASSWORD},vers=3.0");
    let literal = format!("--from-literal=password={PASSWORD}");
    let helm = format!("db.password={PASSWORD}");
    let java = format!("-Djavax.net.ssl.keyStorePassword={PASSWORD}");
    let git = format!("http.extraHeader=Authorization: Bearer {PASSWORD}");
    let cases: &[&[&str]] = &[
        &["curl", "-d", &form, "https://x"],
        &["mount", "-t", "cifs", "-o", &mount, "//srv/share", "/mnt"],
        &["kubectl", "create", "secret", "generic", "db", &literal],
        &["helm", "install", "app", "--set", &helm],
        &["java", &java, "-jar", "app.jar"],
        &["git", "-c", &git, "fetch"],
    ];
    for &args in cases {
        redact_hiding(args, PASSWORD);
    }
    let output = redact_hiding(&["curl", "-d", &form], PASSWORD);
    assert!(output.contains("remember=1"), "{output}");
}

#[test]
fn subscript_assignment_redacted() {
    let code = format!("import os; os.environ['API_KEY'] = '{PASSWORD}'; main()");

    let output = redact_hiding(&["python3", "-c", &code], PASSWORD);
    assert!(output.contains("main()"), "{output}");
}

#[test]
fn bearer_scheme_redacted() {
    let text = format!("note Bearer {PASSWORD} end");

    let output = redact_hiding(&["tool", "--note", &text], PASSWORD);
    assert!(output.contains("end"), "{output}");
}

#[test]
fn truncated_cmdline_redacted() {
    let cases: &[&[u8]] = &[
        b"tool\0--token=ghp_FAKE",
        b"tool\0--password\0hunt",
        b"curl\0-H\0Authorization: Bearer hunt",
        b"aws\0AKIAFAKE",
        b"tool\0eyJmYWtlIjoiZmFrZSJ9.eyJzdW",
        b"ssh-add\0-----BEGIN OPENSSH PRIVATE KEY-----\nFAKEmad",
    ];
    for &raw in cases {
        let output = command_line(&redact_args(&split_cmdline(raw)));
        assert!(!output.contains("FAKE"), "{output:?}");
        assert!(!output.contains("hunt"), "{output:?}");
        assert!(!output.contains("eyJ"), "{output:?}");
        assert!(output.contains(REDACTED), "{output:?}");
    }
}

#[test]
fn non_utf8_cmdline_redacted() {
    let raw =
        b"tool\xff\0--password=hunter2-made-up\xfe\0K\xc3Y=1\0https://u:hunter2-made-up@h\xe2";
    let args = split_cmdline(raw);

    let output = redact_args(&args);
    assert_eq!(output.len(), 4);
    assert_eq!(output[1], "--password=[REDACTED]");
    assert!(!command_line(&output).contains(PASSWORD));
}

#[test]
fn command_line_quotes_arguments() {
    let args = strings(&[
        "echo",
        "two words",
        "it's",
        "say \"hi\"",
        "",
        "tab\there",
        "plain",
    ]);

    let expected = r#"echo 'two words' 'it'\''s' 'say "hi"' '' 'tab	here' plain"#;
    assert_eq!(command_line(&args), expected);
}

#[test]
fn command_line_plain_arguments_unquoted() {
    let args = strings(&["ls", "-la", "/home/bob", "--color=auto", "$HOME"]);

    assert_eq!(command_line(&args), "ls -la /home/bob --color=auto $HOME");
}

#[test]
fn command_line_empty_list() {
    assert_eq!(command_line(&[]), "");
}

#[test]
fn redaction_is_idempotent() {
    let header = format!("Authorization: Bearer {PASSWORD}");
    let url = format!("https://bob:{PASSWORD}@example.com/?token={PASSWORD}&a=1");
    let password = format!("--password={PASSWORD}");
    let args = strings(&["curl", "-H", &header, &url, &password, AWS_KEY_ID, JWT]);

    let once = redact_args(&args);
    let twice = redact_args(&once);
    assert!(!command_line(&once).contains(PASSWORD), "{once:?}");
    assert_eq!(once, twice);
}

#[test]
fn empty_input_handled() {
    assert!(redact_args(&[]).is_empty());
    assert_eq!(redact(&[""]), [""]);
    assert_eq!(
        redact(&["", "--password", ""]),
        ["", "--password", REDACTED]
    );
}

/// Builds arguments from fragments chosen by a fixed linear congruential generator, so
/// that the run is reproducible.
fn random_arguments(seed: u64, count: usize) -> Vec<String> {
    const FRAGMENTS: &[&str] = &[
        " ",
        "\t",
        "\n",
        "'",
        "\"",
        "\\",
        "=",
        ":",
        "-",
        "--",
        "&",
        ";",
        ",",
        "@",
        "/",
        "?",
        "#",
        "%",
        "(",
        ")",
        "<",
        ">",
        "`",
        "$",
        ".",
        "_",
        "é",
        "\u{fffd}",
        "😀",
        "://",
        "https",
        "-----BEGIN",
        "-----END",
        "-----",
        "eyJ",
        "AKIA",
        "ghp_",
        "xoxb-",
        "AIza",
        "Bearer ",
        "basic\t",
        "password",
        "token",
        "key",
        "auth",
        "-c",
        "sh",
        "mysql",
        "-p",
        "-u",
        "login",
        "sshpass",
        "curl",
        "[REDACTED]",
        "abc",
        "XYZ",
        "123",
        "0",
        "\u{0}",
    ];

    let mut state = seed;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % bound
    };

    (0..count)
        .map(|_| {
            let length = next(24);
            (0..length)
                .map(|_| FRAGMENTS[next(FRAGMENTS.len())])
                .collect()
        })
        .collect()
}

#[test]
fn random_input_never_panics() {
    for seed in 0..1500 {
        let args = random_arguments(seed, 6);
        let output = redact_args(&args);
        assert_eq!(output.len(), args.len(), "seed {seed}");
        let _ = command_line(&output);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut state = 7_u64;
    for _ in 0..500 {
        let raw: Vec<u8> = (0..200)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        let output = redact_args(&split_cmdline(&raw));
        let _ = command_line(&output);
    }
}

#[test]
fn planted_secret_never_leaks() {
    let header = format!("Authorization: Bearer {PASSWORD}");
    let url = format!("https://bob:{PASSWORD}@example.com/");
    let assignment = format!("TOKEN={PASSWORD}");
    let plants: [Vec<&str>; 5] = [
        vec!["--password", PASSWORD],
        vec![&assignment],
        vec!["-H", &header],
        vec![&url],
        vec![AWS_KEY_ID],
    ];

    for seed in 0..600 {
        let mut args = random_arguments(seed, 6);
        let plant = &plants[seed as usize % plants.len()];
        let position = seed as usize % (args.len() + 1);
        let planted: Vec<String> = plant.iter().map(|arg| arg.to_string()).collect();
        args.splice(position..position, planted);

        let output = command_line(&redact_args(&args));
        assert!(!output.contains(PASSWORD), "seed {seed}: {output:?}");
        assert!(!output.contains(AWS_KEY_ID), "seed {seed}: {output:?}");
    }
}

/// Linux limits one argument to `MAX_ARG_STRLEN`, 32 pages or 128 KiB with 4 KiB pages
/// (`include/uapi/linux/binfmts.h`), so these are the largest arguments `execve` accepts.
#[test]
fn huge_input_completes() {
    const MAX_ARG_LEN: usize = 128 * 1024;
    let patterns = [
        "eyJ-",
        "a=",
        "'x ",
        "https://",
        "-----BEGIN",
        "Bearer ",
        "x ",
        "\"'",
        "token=",
    ];
    for pattern in patterns {
        let arg = pattern.repeat(MAX_ARG_LEN / pattern.len());
        let args = strings(&["sh", "-c", &arg]);
        let output = redact_args(&args);
        assert_eq!(output.len(), 3, "pattern {pattern:?}");
    }
}
