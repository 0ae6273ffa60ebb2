//! Recognising a TLS library in an ELF file and finding the functions to hook.
//!
//! A file is a TLS library when its dynamic symbol table defines the handshake function of
//! OpenSSL (`SSL_do_handshake`) or GnuTLS (`gnutls_handshake`). This covers the shared
//! libraries and executables that link OpenSSL or BoringSSL statically and export its symbols.
//! BoringSSL is distinguished from OpenSSL by its real `SSL_set_tlsext_host_name` function, which is a
//! macro over `SSL_ctrl` in OpenSSL.

use std::path::Path;

use monitor_common::tls::{cookie, function};

use super::probe_point;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// The TLS implementation in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibraryKind {
    /// OpenSSL 1.1 or 3.x.
    OpenSsl,
    /// BoringSSL, or another OpenSSL fork with a real `SSL_set_tlsext_host_name`.
    BoringSsl,
    /// GnuTLS.
    GnuTls,
}

impl LibraryKind {
    /// Returns the value of `credwatch.tls.library`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenSsl => "openssl",
            Self::BoringSsl => "boringssl",
            Self::GnuTls => "gnutls",
        }
    }
}

/// One program attachment: the function, the program and the cookie flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// The exported symbol.
    pub symbol: &'static str,
    /// The eBPF program.
    pub program: &'static str,
    /// The function number the program reports.
    pub function: u8,
    /// Flags for the cookie.
    pub flags: u64,
    /// Offset of the function's entry in the file.
    pub entry: u64,
    /// Offset in the file where the probe goes: the function's entry, or the first
    /// instruction after it that the kernel emulates (see [`probe_point`]).
    pub offset: u64,
}

/// A recognised TLS library and the hooks to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    /// The implementation.
    pub kind: LibraryKind,
    /// Every hook whose symbol the file defines.
    pub hooks: Vec<Hook>,
    /// Offset of `statem.in_init` in the `SSL` object, read from the code of `SSL_in_init`.
    pub in_init_offset: Option<u16>,
    /// Offset of `server` in the `SSL` object, read from the code of `SSL_is_server`; only
    /// known together with `in_init_offset`.
    pub server_offset: Option<u16>,
}

/// One function credwatch hooks: its symbol, the program(s) and the function number.
struct HookedFunction {
    symbol: &'static str,
    programs: &'static [&'static str],
    function: u8,
}

const OPENSSL: &[HookedFunction] = &[
    HookedFunction {
        symbol: "SSL_ctrl",
        programs: &["tls_name_ctrl"],
        function: function::SSL_CTRL,
    },
    HookedFunction {
        symbol: "SSL_set_tlsext_host_name",
        programs: &["tls_name_string"],
        function: function::SSL_SET_HOST_NAME,
    },
    HookedFunction {
        symbol: "SSL_do_handshake",
        programs: &["tls_call", "tls_return"],
        function: function::SSL_DO_HANDSHAKE,
    },
    HookedFunction {
        symbol: "SSL_connect",
        programs: &["tls_call", "tls_return"],
        function: function::SSL_CONNECT,
    },
    HookedFunction {
        symbol: "SSL_set_connect_state",
        programs: &["tls_mark"],
        function: function::SSL_SET_CONNECT_STATE,
    },
    HookedFunction {
        symbol: "SSL_set_accept_state",
        programs: &["tls_mark"],
        function: function::SSL_SET_ACCEPT_STATE,
    },
    HookedFunction {
        symbol: "SSL_read",
        programs: &["tls_io_call", "tls_return"],
        function: function::SSL_READ,
    },
    HookedFunction {
        symbol: "SSL_read_ex",
        programs: &["tls_io_call", "tls_return"],
        function: function::SSL_READ,
    },
    HookedFunction {
        symbol: "SSL_peek",
        programs: &["tls_io_call", "tls_return"],
        function: function::SSL_READ,
    },
    HookedFunction {
        symbol: "SSL_write",
        programs: &["tls_io_call", "tls_return"],
        function: function::SSL_WRITE,
    },
    HookedFunction {
        symbol: "SSL_write_ex",
        programs: &["tls_io_call", "tls_return"],
        function: function::SSL_WRITE,
    },
    HookedFunction {
        symbol: "SSL_free",
        programs: &["tls_mark"],
        function: function::SSL_FREE,
    },
];

const GNUTLS: &[HookedFunction] = &[
    HookedFunction {
        symbol: "gnutls_server_name_set",
        programs: &["tls_name_gnutls"],
        function: function::GNUTLS_SERVER_NAME_SET,
    },
    HookedFunction {
        symbol: "gnutls_handshake",
        programs: &["tls_call", "tls_return"],
        function: function::GNUTLS_HANDSHAKE,
    },
    HookedFunction {
        symbol: "gnutls_init",
        programs: &["tls_call", "tls_return"],
        function: function::GNUTLS_INIT,
    },
    HookedFunction {
        symbol: "gnutls_deinit",
        programs: &["tls_mark"],
        function: function::GNUTLS_DEINIT,
    },
];

/// A symbol OpenSSL 3.2 added (QUIC streams). Up to 3.1 the `SSL` object starts with its
/// protocol version; from 3.2 on it does not, so the version is not read there.
const OPENSSL_3_2_MARKER: &str = "SSL_new_stream";

/// Reads `path` and returns the TLS library in it, or `None` when it is not one.
pub fn inspect(path: &Path) -> Result<Option<Library>, String> {
    let file = std::fs::File::open(path)
        .map_err(|error| format!("failed to open {}: {error}", path.display()))?;
    inspect_file(&file)
        .map_err(|error| format!("{} is not a readable ELF file: {error}", path.display()))
}

/// Recognises a TLS library in an open file, reading only the parts the symbol table needs,
/// so that a large executable costs little.
pub fn inspect_file(file: &std::fs::File) -> Result<Option<Library>, object::Error> {
    let cache = object::ReadCache::new(file);
    inspect_data(&cache)
}

/// Recognises a TLS library in the bytes of an ELF file.
pub fn inspect_bytes(data: &[u8]) -> Result<Option<Library>, object::Error> {
    inspect_data(data)
}

fn inspect_data<'data, R: object::ReadRef<'data>>(
    data: R,
) -> Result<Option<Library>, object::Error> {
    let file = object::File::parse(data)?;
    let mut exported = std::collections::HashMap::new();
    for symbol in file.dynamic_symbols() {
        if !symbol.is_definition() || symbol.kind() != object::SymbolKind::Text {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        if let Some(offset) = file_offset(&file, &symbol) {
            exported.insert(name.to_owned(), offset);
        }
    }

    let (kind, functions) = if exported.contains_key("SSL_do_handshake") {
        let kind = if exported.contains_key("SSL_set_tlsext_host_name") {
            LibraryKind::BoringSsl
        } else {
            LibraryKind::OpenSsl
        };
        (kind, OPENSSL)
    } else if exported.contains_key("gnutls_handshake") {
        (LibraryKind::GnuTls, GNUTLS)
    } else {
        return Ok(None);
    };
    let version_flag = if kind == LibraryKind::OpenSsl && !exported.contains_key(OPENSSL_3_2_MARKER)
    {
        cookie::VERSION_AT_START
    } else {
        0
    };

    let in_init_offset = match (kind, exported.get("SSL_in_init")) {
        (LibraryKind::OpenSsl, Some(&offset)) => read_code(data, offset)
            .as_deref()
            .and_then(field_offset_of_getter),
        _ => None,
    };

    let server_offset = match (in_init_offset, exported.get("SSL_is_server")) {
        (Some(_), Some(&offset)) => read_code(data, offset)
            .as_deref()
            .and_then(field_offset_of_getter)
            .filter(|&offset| cookie::server_offset_fits(offset)),
        _ => None,
    };

    let mut hooks = Vec::new();
    for want in functions {
        let Some(&offset) = exported.get(want.symbol) else {
            continue;
        };
        // With both offsets the programs read a session's role and state from the `SSL`
        // object, so the role functions, called once per session at both ends, need no probe.
        let role = matches!(
            want.function,
            function::SSL_SET_CONNECT_STATE | function::SSL_SET_ACCEPT_STATE
        );
        if role && server_offset.is_some() {
            continue;
        }
        for &program in want.programs {
            // With the `in_init` offset the read and write entry probes see a finished
            // handshake themselves, so those functions need no return probe.
            let io = matches!(want.function, function::SSL_READ | function::SSL_WRITE);
            if io && program == "tls_return" && in_init_offset.is_some() {
                continue;
            }
            let return_probe = program == "tls_return";
            let moved = data
                .read_bytes_at(offset, probe_point::MAX_WALK as u64)
                .map_or(0, |code| probe_point::probe_offset(code, return_probe));
            hooks.push(Hook {
                symbol: want.symbol,
                program,
                function: want.function,
                flags: version_flag,
                entry: offset,
                offset: offset + moved,
            });
        }
    }
    Ok(Some(Library {
        kind,
        hooks,
        in_init_offset,
        server_offset,
    }))
}

/// Reads the first bytes of a function's code.
fn read_code<'data, R: object::ReadRef<'data>>(data: R, offset: u64) -> Option<Vec<u8>> {
    data.read_bytes_at(offset, 16).ok().map(<[u8]>::to_vec)
}

/// Returns the field offset a getter like OpenSSL's `SSL_in_init` loads, when its code is the
/// plain `return s->field;` of an `int`. On x86-64 that is `mov eax, [rdi + offset]`, after an
/// optional `endbr64` and followed by `ret`, with only register-clearing `xor`s in between. On
/// arm64 it is `ldr w0, [x0, #offset]` followed by `ret`. Any other code gives `None`, and the
/// daemon then uses return probes instead.
pub fn field_offset_of_getter(code: &[u8]) -> Option<u16> {
    if cfg!(target_arch = "aarch64") {
        return arm64_getter(code);
    }
    let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(code);
    let (offset, rest) = match code {
        [0x8b, 0x47, displacement, rest @ ..] => (u32::from(*displacement), rest),
        [0x8b, 0x87, a, b, c, d, rest @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]), rest),
        _ => return None,
    };
    let mut rest = rest;
    loop {
        match rest {
            [0xc3, ..] => break,
            [0x31, _, tail @ ..] => rest = tail,
            _ => return None,
        }
    }
    u16::try_from(offset).ok()
}

fn arm64_getter(code: &[u8]) -> Option<u16> {
    let word = |index: usize| {
        code.get(index * 4..index * 4 + 4)
            .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let load = word(0)?;
    // LDR (immediate, unsigned offset), 32-bit, Rt = w0, Rn = x0.
    if load & 0xffc0_03ff != 0xb940_0000 || word(1)? != 0xd65f_03c0 {
        return None;
    }
    u16::try_from(((load >> 10) & 0xfff) * 4).ok()
}

/// Returns the file offset of a symbol's address, where a uprobe is attached.
fn file_offset<'data, R: object::ReadRef<'data>>(
    file: &object::File<'data, R>,
    symbol: &object::Symbol<'data, '_, R>,
) -> Option<u64> {
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    let (section_offset, _) = section.file_range()?;
    symbol
        .address()
        .checked_sub(section.address())?
        .checked_add(section_offset)
}

/// Returns whether a file name looks like a TLS library that the open probes report.
pub fn is_library_name(name: &[u8]) -> bool {
    name.starts_with(b"libssl") || name.starts_with(b"libgnutls")
}

/// The library file names the open probes match, so that a process loading one is inspected.
pub const LIBRARY_NAMES: &[&str] = &[
    "libssl.so",
    "libssl.so.3",
    "libssl.so.1.1",
    "libssl.so.1.0.0",
    "libssl.so.1.0.2",
    "libssl.so.10",
    "libgnutls.so.30",
    "libgnutls.so.28",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn host_library(name: &str) -> Option<std::path::PathBuf> {
        let arch = std::env::consts::ARCH;
        [
            format!("/usr/lib/{arch}-linux-gnu/{name}"),
            format!("/lib/{arch}-linux-gnu/{name}"),
            format!("/usr/lib64/{name}"),
        ]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.exists())
    }

    #[test]
    fn host_openssl_is_recognised_with_its_hooks() {
        let Some(path) = host_library("libssl.so.3") else {
            eprintln!("no libssl.so.3 on this host; skipped");
            return;
        };
        let library = inspect(&path).unwrap().expect("libssl is a TLS library");
        assert_eq!(library.kind, LibraryKind::OpenSsl);
        let symbols: Vec<_> = library.hooks.iter().map(|hook| hook.symbol).collect();
        for symbol in ["SSL_ctrl", "SSL_do_handshake", "SSL_connect", "SSL_free"] {
            assert!(
                symbols.contains(&symbol),
                "{symbol} missing from {symbols:?}"
            );
        }
        assert!(library.hooks.iter().all(|hook| hook.offset > 0));
    }

    /// Returns the instruction addresses objdump prints for `length` bytes at `address`.
    fn objdump_instructions(path: &Path, address: u64, length: u64) -> Option<Vec<u64>> {
        let output = std::process::Command::new("objdump")
            .arg("-d")
            .arg(format!("--start-address={address:#x}"))
            .arg(format!("--stop-address={:#x}", address + length))
            .arg(path)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let addresses = text
            .lines()
            .filter_map(|line| {
                let (address, rest) = line.trim_start().split_once(":\t")?;
                // Continuation lines of a long instruction carry bytes only.
                rest.contains('\t').then_some(())?;
                u64::from_str_radix(address, 16).ok()
            })
            .collect();
        Some(addresses)
    }

    #[test]
    fn moved_probe_points_are_instruction_boundaries() {
        let mut checked = 0;
        for name in ["libssl.so.3", "libssl.so.1.1", "libgnutls.so.30"] {
            let Some(path) = host_library(name) else {
                continue;
            };
            let data = std::fs::read(&path).unwrap();
            let file = object::File::parse(data.as_slice()).unwrap();
            let library = inspect(&path).unwrap().expect("a TLS library");
            for hook in &library.hooks {
                let symbol = file
                    .dynamic_symbols()
                    .find(|symbol| symbol.name() == Ok(hook.symbol))
                    .unwrap();
                let address = symbol.address();
                let moved = hook.offset - hook.entry;
                let Some(boundaries) =
                    objdump_instructions(&path, address, probe_point::MAX_WALK as u64)
                else {
                    eprintln!("objdump is not installed; skipped");
                    return;
                };
                assert!(
                    boundaries.contains(&(address + moved)),
                    "{name} {} +{moved} is not an instruction boundary: {boundaries:x?}",
                    hook.symbol
                );
                checked += 1;
            }
        }
        eprintln!("checked {checked} probe points");
    }

    #[test]
    fn host_gnutls_is_recognised() {
        let Some(path) = host_library("libgnutls.so.30") else {
            eprintln!("no libgnutls.so.30 on this host; skipped");
            return;
        };
        let library = inspect(&path).unwrap().expect("libgnutls is a TLS library");
        assert_eq!(library.kind, LibraryKind::GnuTls);
        assert!(
            library
                .hooks
                .iter()
                .any(|hook| hook.symbol == "gnutls_server_name_set")
        );
        assert!(library.hooks.iter().all(|hook| hook.flags == 0));
    }

    #[test]
    fn other_files_are_not_libraries() {
        let own = std::env::current_exe().unwrap();
        assert_eq!(inspect(&own).unwrap(), None);
        assert!(inspect_bytes(b"not an ELF file").is_err());
        let error = inspect(Path::new("/nonexistent/libssl.so.3")).unwrap_err();
        assert!(error.contains("/nonexistent/libssl.so.3"), "{error}");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn getter_offsets_are_read_from_code() {
        // mov eax, [rdi + 0x64]; xor edi, edi; ret
        assert_eq!(
            field_offset_of_getter(&[0x8b, 0x47, 0x64, 0x31, 0xff, 0xc3]),
            Some(0x64)
        );
        // endbr64; mov eax, [rdi + 0x1234]; ret
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0x8b, 0x87, 0x34, 0x12, 0, 0, 0xc3];
        assert_eq!(field_offset_of_getter(&code), Some(0x1234));
        // A call in between is not a plain getter.
        assert_eq!(
            field_offset_of_getter(&[0x8b, 0x47, 0x64, 0xe8, 0, 0, 0, 0, 0xc3]),
            None
        );
        assert_eq!(field_offset_of_getter(&[]), None);
    }

    #[test]
    fn host_openssl_in_init_offset_is_found() {
        let Some(path) = host_library("libssl.so.3") else {
            return;
        };
        let library = inspect(&path).unwrap().unwrap();
        if cfg!(target_arch = "x86_64") {
            assert!(
                library.in_init_offset.is_some(),
                "SSL_in_init not recognised"
            );
            assert!(
                !library
                    .hooks
                    .iter()
                    .any(|hook| hook.program == "tls_return" && hook.symbol == "SSL_read"),
                "no return probe is needed on SSL_read"
            );
            assert!(
                library.server_offset.is_some(),
                "SSL_is_server not recognised"
            );
            assert!(
                !library
                    .hooks
                    .iter()
                    .any(|hook| hook.symbol.starts_with("SSL_set_")),
                "the role functions need no probe"
            );
        }
    }

    #[test]
    fn library_names_are_recognised() {
        assert!(is_library_name(b"libssl.so.3"));
        assert!(is_library_name(b"libgnutls.so.30"));
        assert!(!is_library_name(b"libcrypto.so.3"));
    }
}
