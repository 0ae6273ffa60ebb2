//! Flag tables and the programs they apply to.

/// Redaction rule for the value of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ValueKind {
    /// The whole value is secret.
    Secret,
    /// `user:password`, or `user%password` without a `:`, where the password is secret.
    UserPassword,
    /// A shell script, redacted word by word.
    ShellScript,
}

/// Programs with flags whose secret value the name rules do not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Program {
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
    pub(super) fn from_argument(arg: &str) -> Option<Program> {
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
pub(super) struct ShortFlag {
    pub(super) program: Option<Program>,
    pub(super) letter: char,
    form: FlagForm,
    pub(super) kind: ValueKind,
}

impl ShortFlag {
    pub(super) fn takes_attached(&self) -> bool {
        self.form != FlagForm::Separate
    }

    pub(super) fn takes_separate(&self) -> bool {
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
pub(super) const SHORT_FLAGS: &[ShortFlag] = &[
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
pub(super) struct LongFlag {
    pub(super) program: Option<Program>,
    pub(super) name: &'static str,
    pub(super) kind: ValueKind,
}

const fn long_flag(program: Option<Program>, name: &'static str, kind: ValueKind) -> LongFlag {
    LongFlag {
        program,
        name,
        kind,
    }
}

#[rustfmt::skip]
pub(super) const LONG_FLAGS: &[LongFlag] = &[
    long_flag(None, "user", ValueKind::UserPassword),
    long_flag(None, "proxy-user", ValueKind::UserPassword),
    long_flag(Some(Program::Curl), "cert", ValueKind::UserPassword),
    long_flag(Some(Program::Curl), "proxy-cert", ValueKind::UserPassword),
    long_flag(Some(Program::Shell), "command", ValueKind::ShellScript),
];
