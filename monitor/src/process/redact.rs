//! TEMPORARY until the real module lands.
pub const REDACTED: &str = "[REDACTED]";
pub fn split_cmdline(raw: &[u8]) -> Vec<String> { raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect() }
pub fn redact_args(args: &[String]) -> Vec<String> { args.to_vec() }
pub fn command_line(args: &[String]) -> String { args.join(" ") }
