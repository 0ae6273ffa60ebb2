//! Secret redaction for process command lines.
//!
//! Events carry the command line of the process that opened a credential, and that command
//! line must not carry a secret itself. [`redact_args`] replaces every value that looks
//! secret with [`REDACTED`]. The rules prefer over-redaction, because a hidden harmless
//! value costs little and a leaked secret is a security bug.
//!
//! # Secret names
//!
//! Flags, environment assignments, HTTP headers, URL query parameters and JSON or YAML keys
//! are judged by name. A name is split into words at every character that is not an ASCII
//! letter or digit, at case changes (`apiKey`, `AWSAccess`) and between letters and digits.
//! A name is secret when one of its words
//!
//! - contains a term of `SECRET_SUBSTRINGS`, such as `password`, `token` or `secret`, so
//!   run-together names such as `PGPASSWORD` and `authtoken` match;
//! - ends in `pass`, as in the `-storepass` and `-keypass` options of Java `keytool`;
//! - or equals a term of `SECRET_WORDS`, such as `auth`, `key` or `session`. These match
//!   only as whole words, so `--author` and `--keyboard` are not secret.
//!
//! `PWD` and `OLDPWD` are the exceptions, because shells store the working directory in
//! them.
//!
//! # Rules
//!
//! - A flag with a secret name hides its value, both as `--flag=value` and as
//!   `--flag value`. Single-dash names such as `-password` count as flags too.
//! - After a `config`, `configure` or `set` argument, a secret name hides the argument after
//!   it, as in `aws configure set aws_secret_access_key VALUE`.
//! - Some programs take a secret in a short flag, for example `-pVALUE` for the MySQL and
//!   MariaDB clients or `sshpass -p VALUE`. `SHORT_FLAGS` lists them. The flags of a
//!   program apply once any earlier argument names it, so `sudo mysql -pVALUE` is
//!   redacted too.
//! - `-u`, `-U`, `--user` and `--proxy-user` of every program, and `-E`, `--cert` and
//!   `--proxy-cert` of curl, keep the user name and hide the password of `user:password`,
//!   or of `user%password` as Samba tools write it.
//! - `NAME=value` and `Name: value` pairs with a secret name hide the value wherever they
//!   appear in an argument. This covers environment assignments, HTTP headers, form bodies,
//!   mount options, JSON and subscripts such as `environ['API_KEY'] = value`. A pair at the
//!   start of an argument hides the whole rest of the argument, because the value may
//!   contain any character.
//! - URLs of any scheme hide the password of their user information, a user name that does
//!   not look like a login name, and the values of query and fragment parameters with
//!   secret names (`code` included). `user:password@host` without a scheme hides the
//!   password too.
//! - `Bearer x` and `Basic x` hide `x`.
//! - Values in known credential formats (`TOKEN_FORMATS`, JWTs and PEM blocks) are hidden
//!   wherever they appear. A prefix that runs into the end of an argument is hidden even
//!   when it is shorter than the format, because the command line may have been truncated.
//! - An argument that contains whitespace, such as the script of `sh -c`, is also split into
//!   shell words, and the words are redacted by the same rules.
//!
//! Redaction takes time linear in the length of the command line.
//!
//! NOTE: Secrets without a recognisable name or format are not found. Examples are
//! positional passwords (`htpasswd -b file user password`), script parameters
//! (`sh -c 'login "$1"' sh password`), secrets inside URL paths (webhook URLs) and values
//! that the program reads from standard input or a file.

use std::borrow::Cow;

/// Replacement text for every redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Shell quoting levels that are split into words. A deeper argument is replaced as a whole,
/// which bounds the work on crafted input.
const MAX_SHELL_NESTING: usize = 4;

/// Maximum length of a recognised URL scheme, in bytes.
const MAX_SCHEME_LEN: usize = 32;

/// Maximum length of a user name kept in a URL without a password, in bytes. Longer user
/// information is more often a token than a login name.
const MAX_URL_USER_NAME_LEN: usize = 16;

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

/// Query and fragment parameters that are secret although the name alone is not.
/// `code` is the OAuth authorization code in a redirect URL.
const SECRET_URL_PARAMETERS: &[&str] = &["code"];

/// Authorization schemes whose following word is a credential.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic"];

/// Redaction rule for the value of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    /// The whole value is secret.
    Secret,
    /// `user:password`, or `user%password` without a `:`, where the password is secret.
    UserPassword,
    /// A shell script, redacted word by word.
    ShellScript,
}

/// Programs with flags whose secret value the name rules do not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Shell,
    MySql,
    SshPass,
    RedisCli,
    Mongo,
    Curl,
    OpenSsl,
    SshKeygen,
    /// Any `login` subcommand, such as `docker login -p` or `az login -p`.
    Login,
    /// A `config`, `configure` or `set` subcommand, as in `aws configure set NAME VALUE`.
    /// A secret name given as an argument there hides the argument after it.
    ConfigSetter,
}

impl Program {
    /// Returns the program that a non-flag argument names by its basename.
    fn from_argument(arg: &str) -> Option<Program> {
        let basename = arg.rsplit('/').next().unwrap_or(arg);
        let program = match basename {
            "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "fish" | "busybox" | "su"
            | "runuser" => Program::Shell,
            "sshpass" => Program::SshPass,
            "redis-cli" | "valkey-cli" | "keydb-cli" => Program::RedisCli,
            "curl" => Program::Curl,
            "openssl" => Program::OpenSsl,
            "ssh-keygen" => Program::SshKeygen,
            "login" => Program::Login,
            "config" | "configure" | "set" | "config:set" => Program::ConfigSetter,
            _ if basename.starts_with("mysql") || basename.starts_with("mariadb") => Program::MySql,
            _ if basename.starts_with("mongo") => Program::Mongo,
            _ => return None,
        };
        Some(program)
    }
}

/// Position of the value of a short flag such as `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagForm {
    /// Only in the same argument, as in `-pVALUE`.
    Attached,
    /// Only in the next argument, as in `-p VALUE`.
    Separate,
    /// In either place.
    Both,
}

/// A short flag whose value is secret. `program: None` applies to every program.
struct ShortFlag {
    program: Option<Program>,
    letter: char,
    form: FlagForm,
    kind: ValueKind,
}

impl ShortFlag {
    fn takes_attached(&self) -> bool {
        self.form != FlagForm::Separate
    }

    fn takes_separate(&self) -> bool {
        self.form != FlagForm::Attached
    }
}

const fn short_flag(
    program: Option<Program>,
    letter: char,
    form: FlagForm,
    kind: ValueKind,
) -> ShortFlag {
    ShortFlag {
        program,
        letter,
        form,
        kind,
    }
}

/// Short flags with secret values. The MySQL client reads `-p VALUE` as a password prompt
/// followed by a database name, so only its attached form is secret.
#[rustfmt::skip]
const SHORT_FLAGS: &[ShortFlag] = &[
    short_flag(None, 'u', FlagForm::Both, ValueKind::UserPassword),
    short_flag(None, 'U', FlagForm::Both, ValueKind::UserPassword),
    short_flag(Some(Program::MySql), 'p', FlagForm::Attached, ValueKind::Secret),
    short_flag(Some(Program::SshPass), 'p', FlagForm::Both, ValueKind::Secret),
    short_flag(Some(Program::RedisCli), 'a', FlagForm::Both, ValueKind::Secret),
    short_flag(Some(Program::Mongo), 'p', FlagForm::Both, ValueKind::Secret),
    short_flag(Some(Program::Curl), 'E', FlagForm::Both, ValueKind::UserPassword),
    short_flag(Some(Program::Curl), 'b', FlagForm::Both, ValueKind::Secret),
    short_flag(Some(Program::OpenSsl), 'k', FlagForm::Separate, ValueKind::Secret),
    short_flag(Some(Program::OpenSsl), 'K', FlagForm::Separate, ValueKind::Secret),
    short_flag(Some(Program::SshKeygen), 'N', FlagForm::Both, ValueKind::Secret),
    short_flag(Some(Program::SshKeygen), 'P', FlagForm::Both, ValueKind::Secret),
    short_flag(Some(Program::Login), 'p', FlagForm::Both, ValueKind::Secret),
];

/// A long flag, written without its leading `--`, whose value the name rules do not find.
struct LongFlag {
    program: Option<Program>,
    name: &'static str,
    kind: ValueKind,
}

const fn long_flag(program: Option<Program>, name: &'static str, kind: ValueKind) -> LongFlag {
    LongFlag {
        program,
        name,
        kind,
    }
}

#[rustfmt::skip]
const LONG_FLAGS: &[LongFlag] = &[
    long_flag(None, "user", ValueKind::UserPassword),
    long_flag(None, "proxy-user", ValueKind::UserPassword),
    long_flag(Some(Program::Curl), "cert", ValueKind::UserPassword),
    long_flag(Some(Program::Curl), "proxy-cert", ValueKind::UserPassword),
    long_flag(Some(Program::Shell), "command", ValueKind::ShellScript),
];

/// A credential format recognised by its prefix.
struct TokenFormat {
    prefix: &'static str,
    body: fn(u8) -> bool,
    /// Body length in bytes that a complete token has at least.
    min_body_len: usize,
}

const fn token_format(
    prefix: &'static str,
    body: fn(u8) -> bool,
    min_body_len: usize,
) -> TokenFormat {
    TokenFormat {
        prefix,
        body,
        min_body_len,
    }
}

/// Credential formats found anywhere in an argument. JWTs and PEM blocks have their own
/// matchers.
const TOKEN_FORMATS: &[TokenFormat] = &[
    // AWS access key IDs for long-term and temporary credentials.
    token_format("AKIA", is_upper_alphanumeric, 16),
    token_format("ASIA", is_upper_alphanumeric, 16),
    // GitHub tokens.
    token_format("ghp_", is_alphanumeric, 10),
    token_format("gho_", is_alphanumeric, 10),
    token_format("ghu_", is_alphanumeric, 10),
    token_format("ghs_", is_alphanumeric, 10),
    token_format("ghr_", is_alphanumeric, 10),
    token_format("github_pat_", is_word_byte, 10),
    // Slack tokens.
    token_format("xoxa-", is_slack_byte, 8),
    token_format("xoxb-", is_slack_byte, 8),
    token_format("xoxp-", is_slack_byte, 8),
    token_format("xoxr-", is_slack_byte, 8),
    token_format("xoxs-", is_slack_byte, 8),
    token_format("xapp-", is_slack_byte, 8),
    // Google API keys.
    token_format("AIza", is_base64url, 35),
    // HashiCorp Vault service and batch tokens.
    token_format("hvs.", is_base64url, 20),
    token_format("hvb.", is_base64url, 20),
    // GitLab, Stripe, Hugging Face, npm and age.
    token_format("glpat-", is_base64url, 20),
    token_format("sk_live_", is_alphanumeric, 10),
    token_format("sk_test_", is_alphanumeric, 10),
    token_format("rk_live_", is_alphanumeric, 10),
    token_format("hf_", is_alphanumeric, 30),
    token_format("npm_", is_alphanumeric, 36),
    token_format("AGE-SECRET-KEY-1", is_upper_alphanumeric, 10),
];

/// Kind of text searched for secret pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextMode {
    /// One argument of a program. A secret pair at its start hides the rest of it.
    Argument,
    /// A shell script. The shell splits it into words, so a pair ends at whitespace.
    Script,
}

/// Splits a `/proc/PID/cmdline` buffer into arguments.
///
/// Arguments are separated by NUL bytes. Trailing NUL bytes are dropped, so a buffer with
/// or without its final NUL gives the same arguments. Padding after a title written over
/// `argv` (setproctitle) is dropped too, and so are genuinely empty trailing arguments,
/// which look the same. A truncated buffer gives a truncated last argument. Bytes that
/// are not valid UTF-8 become U+FFFD.
pub fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let end = raw
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    let body = &raw[..end];
    if body.is_empty() {
        return Vec::new();
    }

    body.split(|&byte| byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Returns `args` with every secret-looking value replaced by [`REDACTED`].
///
/// The output has one element per input argument. Names and structure around a secret
/// stay, for example `--password=[REDACTED]` and `Authorization: [REDACTED]`. The module
/// documentation lists the rules. The function does not panic on any input.
pub fn redact_args(args: &[String]) -> Vec<String> {
    redact_argv(args, 0)
}

/// Joins arguments into one string for `process.command_line`.
///
/// An argument that is empty or contains whitespace, `'` or `"` is quoted in POSIX shell
/// single quotes, with `'` written as `'\''`. The function does not redact, so callers
/// pass the output of [`redact_args`].
pub fn command_line(args: &[String]) -> String {
    let quoted: Vec<Cow<'_, str>> = args.iter().map(|arg| quote_argument(arg)).collect();
    quoted.join(" ")
}

fn quote_argument(arg: &str) -> Cow<'_, str> {
    let needs_quotes = arg.is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"');
    if !needs_quotes {
        return Cow::Borrowed(arg);
    }

    Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")))
}

/// Quotes a redacted shell word for writing back into its script. Unlike
/// [`quote_argument`], it also quotes shell operators, so the script splits the same way.
fn quote_shell_word(word: &str) -> Cow<'_, str> {
    let has_special = word.chars().any(|c| {
        matches!(
            c,
            ';' | '&' | '|' | '(' | ')' | '<' | '>' | '\\' | '$' | '`'
        )
    });
    if !has_special {
        return quote_argument(word);
    }

    Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
}

// Argument lists.

/// Redacts an argument list. `depth` counts the shell quoting levels around it.
fn redact_argv(args: &[String], depth: usize) -> Vec<String> {
    let mut programs: Vec<Program> = Vec::new();
    let mut pending: Option<ValueKind> = None;
    let mut redacted = Vec::with_capacity(args.len());

    for arg in args {
        let output = match pending.take() {
            Some(kind) => redact_flag_value(arg, kind, depth),
            None => {
                note_program(arg, &mut programs);
                let attached = redact_attached_value(arg, &programs, depth);
                redact_text(&attached, TextMode::Argument, depth)
            }
        };
        redacted.push(output);

        // A secret value may itself look like a flag. Reading it as one too means that
        // `--session --password SECRET` still hides SECRET.
        pending = next_value_kind(arg, &programs);
    }
    redacted
}

fn note_program(arg: &str, programs: &mut Vec<Program>) {
    if arg.starts_with('-') {
        return;
    }
    if let Some(program) = Program::from_argument(arg)
        && !programs.contains(&program)
    {
        programs.push(program);
    }
}

fn is_active(program: Option<Program>, programs: &[Program]) -> bool {
    program.is_none_or(|program| programs.contains(&program))
}

/// Returns the rule for the next argument when `arg` takes it as its value. That happens
/// when `arg` is a flag, or a secret name given to a [`Program::ConfigSetter`].
fn next_value_kind(arg: &str, programs: &[Program]) -> Option<ValueKind> {
    let is_flag = arg.starts_with('-') && arg != "-" && arg != "--" && !arg.contains('=');
    if !is_flag {
        return config_setter_kind(arg, programs);
    }

    let name = arg.trim_start_matches('-');
    let known = if arg.starts_with("--") {
        LONG_FLAGS
            .iter()
            .find(|flag| flag.name == name && is_active(flag.program, programs))
            .map(|flag| flag.kind)
    } else {
        separate_short_flag_kind(name, programs)
    };
    if known.is_some() {
        return known;
    }

    if is_secret_name(name) {
        return Some(ValueKind::Secret);
    }
    shell_command_kind(name, programs)
}

fn config_setter_kind(arg: &str, programs: &[Program]) -> Option<ValueKind> {
    let is_name = !arg.contains('=') && !arg.bytes().any(|byte| byte.is_ascii_whitespace());
    if is_name && programs.contains(&Program::ConfigSetter) && is_secret_name(arg) {
        return Some(ValueKind::Secret);
    }
    None
}

fn separate_short_flag_kind(name: &str, programs: &[Program]) -> Option<ValueKind> {
    let mut letters = name.chars();
    let (Some(letter), None) = (letters.next(), letters.next()) else {
        return None;
    };

    SHORT_FLAGS
        .iter()
        .find(|flag| {
            flag.takes_separate() && flag.letter == letter && is_active(flag.program, programs)
        })
        .map(|flag| flag.kind)
}

/// Recognises `-c` of a shell, also inside option clusters such as `-ec` or `-lc`.
fn shell_command_kind(name: &str, programs: &[Program]) -> Option<ValueKind> {
    let is_cluster = !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphabetic());
    if is_cluster && name.contains('c') && programs.contains(&Program::Shell) {
        return Some(ValueKind::ShellScript);
    }
    None
}

fn redact_flag_value(value: &str, kind: ValueKind, depth: usize) -> String {
    match kind {
        ValueKind::Secret => REDACTED.to_string(),
        ValueKind::UserPassword => {
            redact_text(&redact_user_password(value), TextMode::Argument, depth)
        }
        ValueKind::ShellScript => redact_text(value, TextMode::Script, depth),
    }
}

/// Redacts the password of `user:password`, or of `user%password` as Samba tools write it.
fn redact_user_password(value: &str) -> Cow<'_, str> {
    let separator = if value.contains(':') { ':' } else { '%' };
    match value.split_once(separator) {
        Some((user, password)) if !password.is_empty() => {
            Cow::Owned(format!("{user}{separator}{REDACTED}"))
        }
        _ => Cow::Borrowed(value),
    }
}

/// Redacts the value that a known flag carries in the same argument, as in `-pSECRET` or
/// `--user=name:SECRET`. Flags with secret names are left to the pair rule.
fn redact_attached_value<'a>(arg: &'a str, programs: &[Program], depth: usize) -> Cow<'a, str> {
    if let Some(rest) = arg.strip_prefix("--") {
        let Some((name, value)) = rest.split_once('=') else {
            return Cow::Borrowed(arg);
        };
        let flag = LONG_FLAGS
            .iter()
            .find(|flag| flag.name == name && is_active(flag.program, programs));
        return match flag {
            Some(flag) => {
                let redacted = redact_flag_value(value, flag.kind, depth);
                Cow::Owned(format!("--{name}={redacted}"))
            }
            None => Cow::Borrowed(arg),
        };
    }

    let Some(rest) = arg.strip_prefix('-') else {
        return Cow::Borrowed(arg);
    };
    let mut chars = rest.chars();
    let (Some(letter), value) = (chars.next(), chars.as_str()) else {
        return Cow::Borrowed(arg);
    };
    if value.is_empty() {
        return Cow::Borrowed(arg);
    }

    let flag = SHORT_FLAGS.iter().find(|flag| {
        flag.takes_attached() && flag.letter == letter && is_active(flag.program, programs)
    });
    match flag {
        Some(flag) => {
            let redacted = redact_flag_value(value, flag.kind, depth);
            Cow::Owned(format!("-{letter}{redacted}"))
        }
        None => Cow::Borrowed(arg),
    }
}

// Text of one argument.

/// Redacts the text of one argument, or of one shell word at `depth`.
///
/// The text rules run before the text is split into shell words. Splitting first would let
/// a rule that changes one word, such as the PEM rule on `-----BEGIN`, remove the context
/// that a text rule needs to find the secret in the following words.
fn redact_text(text: &str, mode: TextMode, depth: usize) -> String {
    let has_words = mode == TextMode::Script || text.bytes().any(is_shell_blank_or_newline);
    if has_words && depth >= MAX_SHELL_NESTING {
        return REDACTED.to_string();
    }

    let text = redact_pem_blocks(text);
    let text = match mode {
        TextMode::Argument => redact_bare_user_info(&text).into_owned(),
        TextMode::Script => text,
    };
    let text = redact_pairs_and_urls(&text, mode);
    let text = redact_auth_schemes(&text);
    // Only a whole argument can be cut off by truncation. The end of a shell word is not.
    let text = redact_token_formats(&text, depth == 0);

    if has_words {
        redact_shell_words(&text, depth)
    } else {
        text
    }
}

struct ShellWord {
    /// Byte range of the word in the text, quotes included.
    start: usize,
    end: usize,
    /// The word after quote removal.
    value: String,
}

/// Splits text into words the way a POSIX shell does for quotes, backslashes, blanks and
/// control operators. Expansions, here-documents and `$'...'` quoting are not interpreted.
fn split_shell_words(text: &str) -> Vec<ShellWord> {
    let mut words = Vec::new();
    let mut current: Option<ShellWord> = None;
    let mut chars = text.char_indices().peekable();

    while let Some((index, c)) = chars.next() {
        if matches!(
            c,
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
        ) {
            finish_word(&mut current, index, &mut words);
            continue;
        }

        let word = current.get_or_insert_with(|| ShellWord {
            start: index,
            end: index,
            value: String::new(),
        });
        match c {
            '\'' => {
                for (_, quoted) in chars.by_ref() {
                    if quoted == '\'' {
                        break;
                    }
                    word.value.push(quoted);
                }
            }
            '"' => {
                while let Some((_, quoted)) = chars.next() {
                    match quoted {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&(_, escaped))
                                if matches!(escaped, '"' | '\\' | '$' | '`' | '\n') =>
                            {
                                word.value.push(escaped);
                                chars.next();
                            }
                            _ => word.value.push('\\'),
                        },
                        _ => word.value.push(quoted),
                    }
                }
            }
            '\\' => {
                if let Some((_, escaped)) = chars.next()
                    && escaped != '\n'
                {
                    word.value.push(escaped);
                }
            }
            _ => word.value.push(c),
        }
    }

    finish_word(&mut current, text.len(), &mut words);
    words
}

fn finish_word(current: &mut Option<ShellWord>, end: usize, words: &mut Vec<ShellWord>) {
    if let Some(mut word) = current.take() {
        word.end = end;
        words.push(word);
    }
}

/// Redacts the shell words of `text` as an argument list and writes each changed word
/// back in place, quoted again.
fn redact_shell_words(text: &str, depth: usize) -> String {
    let words = split_shell_words(text);
    let values: Vec<String> = words.iter().map(|word| word.value.clone()).collect();
    let redacted = redact_argv(&values, depth + 1);

    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    for (word, new_value) in words.iter().zip(&redacted) {
        if *new_value == word.value {
            continue;
        }
        output.push_str(&text[copied..word.start]);
        output.push_str(&quote_shell_word(new_value));
        copied = word.end;
    }
    output.push_str(&text[copied..]);
    output
}

/// Replaces PEM blocks from `-----BEGIN` through their `-----END ...-----` line. A block
/// without an end runs to the end of the text.
fn redact_pem_blocks(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN";
    const END: &str = "-----END";
    const DASHES: &str = "-----";

    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(begin) = rest.find(BEGIN) {
        output.push_str(&rest[..begin]);
        output.push_str(REDACTED);

        let block = &rest[begin + BEGIN.len()..];
        rest = match block.find(END) {
            Some(end) => {
                let label = &block[end + END.len()..];
                label
                    .find(DASHES)
                    .map_or("", |dashes| &label[dashes + DASHES.len()..])
            }
            None => "",
        };
    }
    output.push_str(rest);
    output
}

// Name and value pairs.

/// The separator after a key and where its value starts.
struct Separator {
    byte: u8,
    value_start: usize,
    /// Quote that opened before the key and was not closed after it, as in `'TOKEN=x y'`.
    /// The value runs to its closing quote.
    enclosing_quote: Option<u8>,
}

/// Redacts the values of secret `name=value` and `name: value` pairs and the secret parts
/// of URLs. Both are found in one pass, so that a URL inside a secret value is hidden
/// with it.
fn redact_pairs_and_urls(text: &str, mode: TextMode) -> String {
    let bytes = text.as_bytes();
    let urls = find_url_spans(text);
    let whole_value_starts = whole_value_key_starts(text, mode);

    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut next_url = 0;
    let mut position = 0;

    while position < bytes.len() {
        while next_url < urls.len() && urls[next_url].0 < position {
            next_url += 1;
        }
        let url_start = urls.get(next_url).map_or(bytes.len(), |&(start, _)| start);

        if position == url_start {
            let (start, end) = urls[next_url];
            output.push_str(&text[copied..start]);
            output.push_str(&redact_url(&text[start..end]));
            copied = end;
            position = end;
            continue;
        }
        if !is_key_byte(bytes[position]) {
            position += 1;
            continue;
        }

        // A key never runs into a URL, so that `-https://...` still gets its URL rule.
        let key_end = scan_while(bytes, position, is_key_byte).min(url_start);
        let secret_pair = parse_separator(bytes, position, key_end).filter(|separator| {
            has_key_boundary(bytes, position, separator) && is_secret_name(&text[position..key_end])
        });
        let Some(separator) = secret_pair else {
            position = key_end;
            continue;
        };

        let whole = whole_value_starts.contains(&position);
        let (value_start, value_end) = value_span(bytes, &separator, whole);
        if value_end > value_start {
            output.push_str(&text[copied..value_start]);
            output.push_str(REDACTED);
            copied = value_end;
        }
        position = value_end.max(key_end);
    }

    output.push_str(&text[copied..]);
    output
}

/// Returns the key positions whose value is the whole rest of the argument. These are the
/// start of the argument and the key after `--flag=`, as in `--header=Authorization: x`.
fn whole_value_key_starts(text: &str, mode: TextMode) -> Vec<usize> {
    if mode == TextMode::Script {
        return Vec::new();
    }

    let mut starts = vec![0];
    let bytes = text.as_bytes();
    let flag_end = scan_while(bytes, 0, is_key_byte);
    if text.starts_with('-') && bytes.get(flag_end) == Some(&b'=') {
        starts.push(flag_end + 1);
    }
    starts
}

/// Rejects a `name:` that continues a path, as in the volume `/run/secrets:/secrets`.
/// A `name=` always counts, so that `app/password=x` is still redacted.
fn has_key_boundary(bytes: &[u8], key_start: usize, separator: &Separator) -> bool {
    let continues_path = key_start
        .checked_sub(1)
        .is_some_and(|before| matches!(bytes[before], b'/' | b'\\'));
    separator.byte == b'=' || !continues_path
}

/// Finds the `=` or `:` after a key. A key in quotes (`"password": ...`) may close its
/// quote, and a subscript its `]`, first. Blanks are allowed around `:`, and after `=`
/// only when they also precede it.
fn parse_separator(bytes: &[u8], key_start: usize, key_end: usize) -> Option<Separator> {
    let opening_quote = key_start
        .checked_sub(1)
        .map(|before| bytes[before])
        .filter(|&byte| is_quote(byte));

    let mut cursor = key_end;
    let mut enclosing_quote = opening_quote;
    if let Some(quote) = opening_quote
        && bytes.get(cursor) == Some(&quote)
    {
        cursor += 1;
        enclosing_quote = None;
        // A subscript such as `environ['API_KEY'] = value` assigns to the quoted key.
        if bytes.get(cursor) == Some(&b']') {
            cursor += 1;
        }
    }

    let after_key = cursor;
    cursor = scan_while(bytes, cursor, is_shell_blank);
    let blank_before_separator = cursor > after_key;

    let byte = *bytes.get(cursor)?;
    if byte != b'=' && byte != b':' {
        return None;
    }
    cursor += 1;
    if byte == b':' || blank_before_separator {
        cursor = scan_while(bytes, cursor, is_shell_blank);
    }

    Some(Separator {
        byte,
        value_start: cursor,
        enclosing_quote,
    })
}

/// Returns the byte range of a pair's value, without the quotes around it.
fn value_span(bytes: &[u8], separator: &Separator, whole: bool) -> (usize, usize) {
    let start = separator.value_start;
    if whole {
        return (start, bytes.len());
    }

    if let Some(&quote) = bytes.get(start)
        && is_quote(quote)
    {
        let inner = start + 1;
        return (inner, find_closing_quote(bytes, inner, quote));
    }

    let end = if let Some(quote) = separator.enclosing_quote {
        find_closing_quote(bytes, start, quote)
    } else if separator.byte == b':' {
        // `Name: value` is a header or YAML line, so the value runs to the end of the line.
        scan_while(bytes, start, |byte| byte != b'\n')
    } else {
        let end = scan_while(bytes, start, |byte| !is_value_stop(byte));
        extend_over_auth_scheme(bytes, start, end)
    };
    (start, end)
}

/// Extends a value that is only an authorization scheme, as in `Authorization=Bearer x`,
/// over the credential after it.
fn extend_over_auth_scheme(bytes: &[u8], start: usize, end: usize) -> usize {
    let value = &bytes[start..end];
    let is_scheme = AUTH_SCHEMES
        .iter()
        .any(|scheme| value.eq_ignore_ascii_case(scheme.as_bytes()));
    if !is_scheme || !bytes.get(end).copied().is_some_and(is_shell_blank) {
        return end;
    }

    let credential_start = scan_while(bytes, end, is_shell_blank);
    scan_while(bytes, credential_start, |byte| !is_value_stop(byte))
}

/// Returns the index of the quote that closes a string starting at `from`, or the text
/// length. Inside `"`, a backslash escapes the next byte.
fn find_closing_quote(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut index = from;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == quote {
            return index;
        }
        if byte == b'\\' && quote == b'"' {
            index += 1;
        }
        index += 1;
    }
    bytes.len()
}

/// Redacts the text after a `Bearer` or `Basic` authorization scheme.
fn redact_auth_schemes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut position = 0;

    while position < bytes.len() {
        let scheme_end = AUTH_SCHEMES.iter().find_map(|scheme| {
            let end = position + scheme.len();
            let matches = starts_word(bytes, position)
                && bytes
                    .get(position..end)
                    .is_some_and(|word| word.eq_ignore_ascii_case(scheme.as_bytes()))
                && bytes.get(end).copied().is_some_and(is_shell_blank);
            matches.then_some(end)
        });
        let Some(scheme_end) = scheme_end else {
            position += 1;
            continue;
        };

        let credential_start = scan_while(bytes, scheme_end, is_shell_blank);
        let credential_end = scan_while(bytes, credential_start, |byte| {
            !is_shell_blank_or_newline(byte) && !is_quote(byte)
        });
        if credential_end > credential_start {
            output.push_str(&text[copied..credential_start]);
            output.push_str(REDACTED);
            copied = credential_end;
        }
        position = credential_end.max(scheme_end);
    }

    output.push_str(&text[copied..]);
    output
}

// URLs.

/// Returns the byte ranges of `scheme://...` URLs. A URL ends at whitespace, a quote, `<`,
/// `>` or a backtick.
fn find_url_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut search_from = 0;

    while let Some(found) = text[search_from..].find("://") {
        let separator = search_from + found;
        let end = scan_while(bytes, separator + 3, |byte| !is_url_end(byte));
        if let Some(start) = scheme_start(bytes, separator) {
            spans.push((start, end));
        }
        search_from = end;
    }
    spans
}

/// Returns where the scheme before `://` at `separator` starts. A scheme starts with a
/// letter and continues with letters, digits, `+`, `-` and `.`.
fn scheme_start(bytes: &[u8], separator: usize) -> Option<usize> {
    let limit = separator.saturating_sub(MAX_SCHEME_LEN);
    let mut start = separator;
    while start > limit && is_scheme_byte(bytes[start - 1]) {
        start -= 1;
    }

    let first_letter = (start..separator).find(|&index| bytes[index].is_ascii_alphabetic())?;
    Some(first_letter)
}

/// Redacts the password and secret parameters of one URL, which contains `://`.
fn redact_url(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |index| index + 3);
    let authority_end = find_authority_end(url, authority_start);

    let mut output = String::with_capacity(url.len());
    output.push_str(&url[..authority_start]);
    output.push_str(&redact_user_info(&url[authority_start..authority_end]));

    let rest = &url[authority_end..];
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (before_fragment, None),
    };

    output.push_str(path);
    if let Some(query) = query {
        output.push('?');
        output.push_str(&redact_url_parameters(query));
    }
    if let Some(fragment) = fragment {
        output.push('#');
        output.push_str(&redact_url_parameters(fragment));
    }
    output
}

/// Returns where the authority (`user:password@host:port`) of a URL ends.
///
/// It normally ends at the first `/`, `?` or `#`. A password may contain those characters
/// unencoded, as in `https://user:pa/ss@host`. Then the authority before the first `/` has
/// a `:` not followed by a port number and no `@`, and it is extended to the host after
/// the last `@` of the URL.
fn find_authority_end(url: &str, authority_start: usize) -> usize {
    let rest = &url[authority_start..];
    let first_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..first_end];

    let has_password_colon = authority.split_once(':').is_some_and(|(_, after)| {
        !after.is_empty() && !after.bytes().all(|byte| byte.is_ascii_digit())
    });
    let is_ipv6 = authority.starts_with('[');
    let extended = if has_password_colon && !is_ipv6 && !authority.contains('@') {
        rest.rfind('@').map(|at| {
            let host = &rest[at..];
            at + host.find(['/', '?', '#']).unwrap_or(host.len())
        })
    } else {
        None
    };

    authority_start + extended.unwrap_or(first_end)
}

/// Redacts the password of `user:password@host` without a scheme, as in `curl -x
/// user:password@proxy:3128` or `HTTP_PROXY=user:password@proxy`. The rule applies to a
/// whole argument without whitespace, or to the value of its leading `NAME=`. Container
/// image references such as `image:tag@sha256:...` are kept.
fn redact_bare_user_info(text: &str) -> Cow<'_, str> {
    let value_start = match text.split_once('=') {
        Some((name, _)) if name.bytes().all(is_key_byte) => name.len() + 1,
        _ => 0,
    };
    let value = &text[value_start..];
    let is_candidate =
        !value.contains("://") && !value.bytes().any(|byte| byte.is_ascii_whitespace());
    let Some((user_info, host)) = value.rsplit_once('@').filter(|_| is_candidate) else {
        return Cow::Borrowed(text);
    };

    let is_image_digest = host.starts_with("sha256:") || host.starts_with("sha512:");
    let Some((user, password)) = user_info.split_once(':') else {
        return Cow::Borrowed(text);
    };
    if is_image_digest || host.is_empty() || password.is_empty() {
        return Cow::Borrowed(text);
    }

    let prefix = &text[..value_start];
    Cow::Owned(format!("{prefix}{user}:{REDACTED}@{host}"))
}

/// Redacts the password in `user:password@host`. User information without a password is
/// kept only when it looks like a login name, because tokens are often passed as the user
/// (`https://TOKEN@github.com/...`).
fn redact_user_info(authority: &str) -> Cow<'_, str> {
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return Cow::Borrowed(authority);
    };

    match user_info.split_once(':') {
        Some((_, "")) => Cow::Borrowed(authority),
        Some((user, _)) => Cow::Owned(format!("{user}:{REDACTED}@{host}")),
        None if looks_like_login_name(user_info) => Cow::Borrowed(authority),
        None => Cow::Owned(format!("{REDACTED}@{host}")),
    }
}

/// Matches the login names that `useradd` accepts by default, up to
/// `MAX_URL_USER_NAME_LEN` bytes.
fn looks_like_login_name(user: &str) -> bool {
    let bytes = user.as_bytes();
    let Some(&first) = bytes.first() else {
        return true;
    };

    let first_ok = first.is_ascii_lowercase() || first == b'_';
    let rest_ok = bytes[1..].iter().all(|&byte| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-' | b'.')
    });
    bytes.len() <= MAX_URL_USER_NAME_LEN && first_ok && rest_ok
}

/// Redacts the values of secret parameters in a query or fragment, separated by `&` or
/// `;`. A name is judged by its words, so `#/callback?token=x` is found too.
fn redact_url_parameters(parameters: &str) -> String {
    let mut output = String::with_capacity(parameters.len());
    for piece in parameters.split_inclusive(['&', ';']) {
        let parameter = piece.strip_suffix(['&', ';']).unwrap_or(piece);
        output.push_str(&redact_url_parameter(parameter));
        output.push_str(&piece[parameter.len()..]);
    }
    output
}

fn redact_url_parameter(parameter: &str) -> Cow<'_, str> {
    let Some((name, value)) = parameter.split_once('=') else {
        return Cow::Borrowed(parameter);
    };

    let secret = is_secret_name(name)
        || SECRET_URL_PARAMETERS
            .iter()
            .any(|secret| name.eq_ignore_ascii_case(secret));
    if secret && !value.is_empty() {
        Cow::Owned(format!("{name}={REDACTED}"))
    } else {
        Cow::Borrowed(parameter)
    }
}

// Credential formats.

/// Redacts values in [`TOKEN_FORMATS`] and JWTs wherever they start a word. With
/// `may_be_truncated`, a prefix that runs into the end of the text is redacted even when
/// the rest of the token is missing.
fn redact_token_formats(text: &str, may_be_truncated: bool) -> String {
    let bytes = text.as_bytes();
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut position = 0;
    // Positions before this cannot start a JWT, as `match_jwt` explains.
    let mut jwt_blocked_until = 0;

    while position < bytes.len() {
        if !starts_word(bytes, position) {
            position += 1;
            continue;
        }

        let mut token_end = match_token_format(bytes, position, may_be_truncated);
        if token_end.is_none() && position >= jwt_blocked_until {
            match match_jwt(bytes, position, may_be_truncated) {
                Ok(end) => token_end = Some(end),
                Err(blocked_until) => jwt_blocked_until = blocked_until,
            }
        }

        match token_end {
            Some(end) => {
                output.push_str(&text[copied..position]);
                output.push_str(REDACTED);
                copied = end;
                position = end;
            }
            None => position += 1,
        }
    }

    output.push_str(&text[copied..]);
    output
}

/// Returns the end of a token in one of [`TOKEN_FORMATS`] that starts at `start`.
fn match_token_format(bytes: &[u8], start: usize, may_be_truncated: bool) -> Option<usize> {
    let rest = &bytes[start..];
    TOKEN_FORMATS.iter().find_map(|format| {
        if !rest.starts_with(format.prefix.as_bytes()) {
            return None;
        }
        let body_start = start + format.prefix.len();
        let body_end = scan_while(bytes, body_start, format.body);
        let complete = body_end - body_start >= format.min_body_len;
        let truncated = may_be_truncated && body_end == bytes.len() && body_end > body_start;
        (complete || truncated).then_some(body_end)
    })
}

/// Matches a JWT, three base64url segments separated by dots, the first starting with
/// `eyJ` (`{"` encoded). The third segment may be empty for unsigned tokens. With
/// `may_be_truncated`, a token cut off by the end of the text matches too.
///
/// On failure, returns the first position after `start` where a JWT could still start.
/// That is the end of the first segment: a start inside it has the same segment ends, so
/// it fails the same way.
fn match_jwt(bytes: &[u8], start: usize, may_be_truncated: bool) -> Result<usize, usize> {
    if !bytes[start..].starts_with(b"eyJ") {
        return Err(start + 1);
    }

    let first_end = scan_while(bytes, start, is_base64url);
    if first_end == bytes.len() {
        return if may_be_truncated {
            Ok(first_end)
        } else {
            Err(first_end)
        };
    }
    if bytes[first_end] != b'.' {
        return Err(first_end);
    }

    let second_end = scan_while(bytes, first_end + 1, is_base64url);
    if second_end == bytes.len() {
        return if may_be_truncated {
            Ok(second_end)
        } else {
            Err(first_end)
        };
    }
    if second_end == first_end + 1 || bytes[second_end] != b'.' {
        return Err(first_end);
    }

    Ok(scan_while(bytes, second_end + 1, is_base64url))
}

// Names.

/// Tells whether a flag, variable, header, parameter or key name is secret, as the module
/// documentation describes.
fn is_secret_name(name: &str) -> bool {
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

// Byte classes.

fn scan_while(bytes: &[u8], from: usize, accept: impl Fn(u8) -> bool) -> usize {
    let mut index = from;
    while index < bytes.len() && accept(bytes[index]) {
        index += 1;
    }
    index
}

/// Tells whether a token may start at `index`, which is when no ASCII letter or digit
/// precedes it.
fn starts_word(bytes: &[u8], index: usize) -> bool {
    index == 0 || !bytes[index - 1].is_ascii_alphanumeric()
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

fn is_scheme_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.')
}

fn is_url_end(byte: u8) -> bool {
    byte.is_ascii_whitespace() || matches!(byte, b'"' | b'\'' | b'<' | b'>' | b'`')
}

fn is_quote(byte: u8) -> bool {
    byte == b'"' || byte == b'\''
}

fn is_shell_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn is_shell_blank_or_newline(byte: u8) -> bool {
    is_shell_blank(byte) || byte == b'\n' || byte == b'\r'
}

/// Ends an unquoted `name=value` value inside a longer text, as in `a=1&token=x&b=2`,
/// `user=u,password=x` or `TOKEN=x cmd`.
fn is_value_stop(byte: u8) -> bool {
    is_shell_blank_or_newline(byte) || matches!(byte, b'&' | b';' | b',')
}

fn is_upper_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

fn is_alphanumeric(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_slack_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

#[cfg(test)]
mod tests {
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
}
