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

mod bytes;
mod flags;
mod formats;
mod names;

/// Returns whether a variable or option name looks like it names a secret, by the rules the
/// redaction uses.
pub fn secret_name(name: &str) -> bool {
    names::is_secret_name(name)
}
mod pairs;
mod shell;
#[cfg(test)]
mod tests;
mod urls;

use std::borrow::Cow;

use self::{
    bytes::is_shell_blank_or_newline,
    flags::{LONG_FLAGS, Program, SHORT_FLAGS, ValueKind},
    formats::{redact_pem_blocks, redact_token_formats},
    names::is_secret_name,
    pairs::{redact_auth_schemes, redact_pairs_and_urls},
    shell::redact_shell_words,
    urls::redact_bare_user_info,
};

/// Replacement text for every redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Shell quoting levels that are split into words. A deeper argument is replaced as a whole,
/// which bounds the work on crafted input.
const MAX_SHELL_NESTING: usize = 4;

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
