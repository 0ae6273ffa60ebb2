//! Kernel struct member offsets read from the running kernel's BTF.
//!
//! credwatch's eBPF programs are written in Rust, and the Rust eBPF toolchain
//! emits no CO-RE relocations, so the loader cannot patch struct field offsets
//! to match the running kernel. Instead the daemon parses the kernel's BTF blob
//! (`/sys/kernel/btf/vmlinux`) at start-up, computes the byte offsets of the few
//! fields the programs read (`task_struct.tgid`, `mm_struct.arg_start`, ...),
//! and passes them to the programs.
//!
//! The parser follows the layout in the kernel's `Documentation/bpf/btf.rst`.
//! It accepts only blobs in the host's byte order. It treats every length,
//! offset and type id in the blob as untrusted, so malformed input yields a
//! [`BtfError`] instead of a panic.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Path where the running kernel exposes its BTF.
pub const VMLINUX_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// `btf_header.magic` as read in the host's byte order.
const BTF_MAGIC: u16 = 0xeb9f;
const BTF_VERSION: u8 = 1;
/// Size of `struct btf_header` as defined for BTF version 1.
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type` without its kind-specific trailing data.
const TYPE_HEADER_LEN: usize = 12;
/// Size of `struct btf_member`.
const MEMBER_LEN: usize = 12;

/// Maximum number of typedef or qualifier links followed, and of anonymous
/// members nested, before a type is rejected as cyclic. The limit is far above
/// the nesting found in kernel structs, so it matters only for malformed blobs.
const MAX_DEPTH: usize = 64;
/// Maximum number of struct or union types one member search may enter.
/// Without it, a malformed blob whose anonymous members share types could
/// make a search take exponential time without ever exceeding [`MAX_DEPTH`].
const MAX_SEARCH_VISITS: usize = 100_000;

/// BTF type kinds (`BTF_KIND_*` in `include/uapi/linux/btf.h`).
mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;
}

/// Errors from reading, parsing or querying BTF.
#[derive(Debug, Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("could not read BTF from {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The blob does not start with the BTF magic in host byte order.
    #[error("BTF magic is {found:#06x}, expected {BTF_MAGIC:#06x} in host byte order")]
    BadMagic { found: u16 },

    /// The header names a BTF version this parser does not know.
    #[error("BTF version {version} is not supported, only version {BTF_VERSION} is")]
    UnsupportedVersion { version: u8 },

    /// The blob is too short to hold the fixed part of the header.
    #[error("BTF blob is {len} bytes long, shorter than the {HEADER_LEN}-byte header")]
    TruncatedHeader { len: usize },

    /// `hdr_len` is smaller than the fixed part of the header.
    #[error("BTF header length {hdr_len} is below the {HEADER_LEN}-byte minimum")]
    BadHeaderLength { hdr_len: u32 },

    /// A section named by the header reaches past the end of the blob.
    #[error(
        "BTF {section} section spans bytes {start}..{end}, past the end of the {blob_len}-byte blob"
    )]
    SectionOutOfBounds {
        section: &'static str,
        start: u64,
        end: u64,
        blob_len: usize,
    },

    /// A type record reaches past the end of the type section.
    #[error(
        "BTF type {type_id} at byte {offset} of the type section needs {needed} bytes, but only {available} remain"
    )]
    TruncatedType {
        type_id: u32,
        offset: usize,
        needed: usize,
        available: usize,
    },

    /// A type record has a kind this parser does not know, so its length is unknown.
    #[error("BTF type {type_id} has unknown kind {kind}")]
    UnknownKind { kind: u8, type_id: u32 },

    /// The type section contains more records than a 32-bit type id can number.
    #[error("BTF type section contains more types than a 32-bit type id can number")]
    TooManyTypes,

    /// A name offset points outside the string section.
    #[error("BTF string offset {offset} is outside the {len}-byte string section")]
    StringOutOfBounds { offset: u32, len: usize },

    /// A string runs to the end of the string section without a NUL byte.
    #[error("BTF string at offset {offset} has no terminating NUL byte")]
    UnterminatedString { offset: u32 },

    /// A type refers to a type id that the blob does not define.
    #[error("BTF type id {type_id} does not exist, the blob defines ids 1 to {last_id}")]
    BadTypeId { type_id: u32, last_id: usize },

    /// No struct of that name exists.
    #[error("struct `{name}` was not found in the BTF")]
    StructNotFound { name: String },

    /// The struct, or a struct reached along a member path, has no member of that name.
    #[error("`{struct_name}` has no member `{member}`")]
    MemberNotFound { struct_name: String, member: String },

    /// The member is a bitfield that does not start on a byte boundary.
    #[error(
        "member `{member}` of `{struct_name}` starts at bit {bit_offset}, which is not on a byte boundary"
    )]
    NotByteAligned {
        struct_name: String,
        member: String,
        bit_offset: u64,
    },

    /// A member path continues through a member that is not a struct or union.
    #[error(
        "`{path}` has type id {type_id}, which is not a struct or union (pointers are not followed)"
    )]
    NotAStruct { path: String, type_id: u32 },

    /// Typedef or qualifier links, or anonymous members, nest deeper than [`MAX_DEPTH`].
    #[error(
        "BTF type {type_id} nests typedefs, qualifiers or anonymous members more than {MAX_DEPTH} levels deep"
    )]
    TooDeep { type_id: u32 },

    /// A member search entered more than [`MAX_SEARCH_VISITS`] anonymous structs or unions.
    #[error(
        "looking up `{member}` in `{struct_name}` entered more than {MAX_SEARCH_VISITS} anonymous members"
    )]
    SearchLimit { struct_name: String, member: String },

    /// The summed offset does not fit in 32 bits.
    #[error("offset of `{path}` is {byte_offset} bytes, which does not fit in 32 bits")]
    OffsetTooLarge { path: String, byte_offset: u64 },
}

/// One `struct btf_type` record, reduced to what offset lookups need.
#[derive(Debug, Clone, Copy)]
struct TypeEntry {
    name_off: u32,
    kind: u8,
    /// Set on a struct or union whose member offsets carry a bitfield size in bits 24-31.
    kind_flag: bool,
    /// Size in bytes for struct, union, int, enum and float. Target type id for
    /// pointers, typedefs and qualifiers. Unused for other kinds.
    size_or_type: u32,
    /// Index of the first member in [`KernelBtf::members`], for struct and union.
    first_member: usize,
    /// Number of members for struct and union, or zero for other kinds.
    member_count: usize,
}

impl TypeEntry {
    fn is_composite(&self) -> bool {
        self.kind == kind::STRUCT || self.kind == kind::UNION
    }

    /// Returns the member's offset in bits from the start of this struct or union.
    fn member_bit_offset(&self, member: &Member) -> u64 {
        let offset = if self.kind_flag {
            // Bits 24-31 hold the bitfield size, bits 0-23 the bit offset.
            member.offset & 0x00ff_ffff
        } else {
            member.offset
        };
        u64::from(offset)
    }
}

/// One `struct btf_member` record.
#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    offset: u32,
}

/// A member located by name inside a struct or union.
#[derive(Debug, Clone, Copy)]
struct FoundMember {
    /// Offset in bits from the start of the struct or union that was searched.
    bit_offset: u64,
    type_id: u32,
}

/// The fixed fields of `struct btf_header`.
#[derive(Debug, Clone, Copy)]
struct Header {
    hdr_len: u32,
    type_off: u32,
    type_len: u32,
    str_off: u32,
    str_len: u32,
}

/// Parsed kernel BTF with an index of struct names, for member offset lookups.
///
/// NOTE: a few struct names occur twice in kernel BTF, because some files
/// define local structs (`console` and `workspace` on 6.18, for example).
/// Lookups by such a name use the definition with the lowest type id.
pub struct KernelBtf {
    /// Type records in id order. Type id `n` is at index `n - 1`, because id 0 is `void`.
    types: Vec<TypeEntry>,
    /// Members of all structs and unions, each type's members stored contiguously.
    members: Vec<Member>,
    /// Copy of the string section.
    strings: Vec<u8>,
    /// Struct name to type id. A name defined twice maps to its first definition.
    structs: HashMap<Box<[u8]>, u32>,
}

impl fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelBtf")
            .field("types", &self.types.len())
            .field("members", &self.members.len())
            .field("string_bytes", &self.strings.len())
            .field("structs", &self.structs.len())
            .finish()
    }
}

impl KernelBtf {
    /// Reads and parses the running kernel's BTF from [`VMLINUX_BTF_PATH`].
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(VMLINUX_BTF_PATH)
    }

    /// Reads and parses a BTF blob from `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, BtfError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses a raw BTF blob and builds the struct name index.
    ///
    /// Member names and member type ids are checked when a lookup reaches
    /// them, not here, so a blob that parses may still fail a lookup.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let header = parse_header(data)?;
        let type_section = section(
            data,
            "type",
            header.hdr_len,
            header.type_off,
            header.type_len,
        )?;
        let string_section = section(
            data,
            "string",
            header.hdr_len,
            header.str_off,
            header.str_len,
        )?;
        let (types, members) = parse_types(type_section)?;
        let mut btf = KernelBtf {
            types,
            members,
            strings: string_section.to_vec(),
            structs: HashMap::new(),
        };
        btf.structs = btf.index_structs()?;
        Ok(btf)
    }

    /// Returns whether the BTF defines a struct named `name`.
    pub fn has_struct(&self, name: &str) -> bool {
        self.structs.contains_key(name.as_bytes())
    }

    /// Returns the size in bytes of the struct named `name`.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = self.struct_id(name)?;
        Ok(self.type_entry(id)?.size_or_type)
    }

    /// Returns the byte offset of `member` within the struct `struct_name`.
    ///
    /// The member may sit inside anonymous structs or unions at any depth,
    /// and the offsets of those anonymous members are added in. Bitfields are
    /// accepted only when they start on a byte boundary.
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        self.member_path_offset(struct_name, &[member])
    }

    /// Returns the byte offset of the member reached by following `path` from
    /// the struct `struct_name`, for example `("fs_struct", &["pwd", "dentry"])`.
    ///
    /// Every member but the last must have a struct or union type, possibly
    /// behind typedefs and `const`, `volatile` or `restrict` qualifiers.
    /// Pointers are not followed. Each step may pass through anonymous
    /// members as in [`member_offset`](Self::member_offset). An empty `path`
    /// returns 0 if the struct exists.
    pub fn member_path_offset(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut type_id = self.struct_id(struct_name)?;
        let mut described = struct_name.to_owned();
        let mut byte_offset: u64 = 0;
        for member in path {
            let composite =
                self.resolve_composite(type_id)?
                    .ok_or_else(|| BtfError::NotAStruct {
                        path: described.clone(),
                        type_id,
                    })?;
            let found = self.find_member(composite, &described, member)?;
            if found.bit_offset % 8 != 0 {
                return Err(BtfError::NotByteAligned {
                    struct_name: described,
                    member: (*member).to_owned(),
                    bit_offset: found.bit_offset,
                });
            }
            byte_offset = byte_offset.saturating_add(found.bit_offset / 8);
            type_id = found.type_id;
            described.push('.');
            described.push_str(member);
        }
        u32::try_from(byte_offset).map_err(|_| BtfError::OffsetTooLarge {
            path: described,
            byte_offset,
        })
    }

    fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.structs
            .get(name.as_bytes())
            .copied()
            .ok_or_else(|| BtfError::StructNotFound {
                name: name.to_owned(),
            })
    }

    /// Maps the name of every named struct to its type id, keeping the first
    /// definition of a name that occurs twice.
    fn index_structs(&self) -> Result<HashMap<Box<[u8]>, u32>, BtfError> {
        let mut index = HashMap::new();
        for (id, entry) in (1u32..).zip(&self.types) {
            if entry.kind != kind::STRUCT || entry.name_off == 0 {
                continue;
            }
            let name = self.name(entry.name_off)?;
            if !name.is_empty() {
                index.entry(Box::from(name)).or_insert(id);
            }
        }
        Ok(index)
    }

    fn type_entry(&self, type_id: u32) -> Result<&TypeEntry, BtfError> {
        let index = usize::try_from(type_id)
            .ok()
            .and_then(|id| id.checked_sub(1));
        index
            .and_then(|index| self.types.get(index))
            .ok_or(BtfError::BadTypeId {
                type_id,
                last_id: self.types.len(),
            })
    }

    /// Returns the NUL-terminated string at `offset` in the string section, without the NUL.
    fn name(&self, offset: u32) -> Result<&[u8], BtfError> {
        let tail = usize::try_from(offset)
            .ok()
            .and_then(|start| self.strings.get(start..))
            .ok_or(BtfError::StringOutOfBounds {
                offset,
                len: self.strings.len(),
            })?;
        tail.iter()
            .position(|&byte| byte == 0)
            .and_then(|end| tail.get(..end))
            .ok_or(BtfError::UnterminatedString { offset })
    }

    fn member_name(&self, member: &Member) -> Result<&[u8], BtfError> {
        if member.name_off == 0 {
            Ok(b"")
        } else {
            self.name(member.name_off)
        }
    }

    fn members_of(&self, entry: &TypeEntry) -> &[Member] {
        let end = entry.first_member.saturating_add(entry.member_count);
        self.members.get(entry.first_member..end).unwrap_or(&[])
    }

    /// Follows typedef, qualifier and type tag links from `type_id`. Returns the
    /// struct or union they end at, or `None` if they end at any other kind.
    fn resolve_composite(&self, type_id: u32) -> Result<Option<&TypeEntry>, BtfError> {
        let mut current = type_id;
        for _ in 0..MAX_DEPTH {
            if current == 0 {
                return Ok(None); // void
            }
            let entry = self.type_entry(current)?;
            match entry.kind {
                kind::STRUCT | kind::UNION => return Ok(Some(entry)),
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    current = entry.size_or_type;
                }
                _ => return Ok(None),
            }
        }
        Err(BtfError::TooDeep { type_id })
    }

    /// Finds the member named `member` in `composite`, looking inside anonymous
    /// members when it is not a direct member. `described` names `composite`
    /// in error messages.
    fn find_member(
        &self,
        composite: &TypeEntry,
        described: &str,
        member: &str,
    ) -> Result<FoundMember, BtfError> {
        let mut search = MemberSearch {
            btf: self,
            name: member.as_bytes(),
            visits: 0,
        };
        match search.search(composite, 0) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(BtfError::MemberNotFound {
                struct_name: described.to_owned(),
                member: member.to_owned(),
            }),
            Err(SearchError::Btf(error)) => Err(error),
            Err(SearchError::VisitLimit) => Err(BtfError::SearchLimit {
                struct_name: described.to_owned(),
                member: member.to_owned(),
            }),
        }
    }
}

/// Depth-first search for a member name through a struct and its anonymous members.
struct MemberSearch<'btf> {
    btf: &'btf KernelBtf,
    name: &'btf [u8],
    /// Number of structs and unions entered so far, bounded by [`MAX_SEARCH_VISITS`].
    visits: usize,
}

enum SearchError {
    Btf(BtfError),
    VisitLimit,
}

impl From<BtfError> for SearchError {
    fn from(error: BtfError) -> Self {
        SearchError::Btf(error)
    }
}

impl MemberSearch<'_> {
    /// Searches the named members of `composite` first, then its anonymous
    /// members in declaration order. C requires member names to be unique
    /// across a struct and its anonymous members, so the order matters only
    /// for malformed input.
    fn search(
        &mut self,
        composite: &TypeEntry,
        depth: usize,
    ) -> Result<Option<FoundMember>, SearchError> {
        self.visits += 1;
        if self.visits > MAX_SEARCH_VISITS {
            return Err(SearchError::VisitLimit);
        }
        let members = self.btf.members_of(composite);
        for member in members {
            if self.btf.member_name(member)? == self.name {
                return Ok(Some(FoundMember {
                    bit_offset: composite.member_bit_offset(member),
                    type_id: member.type_id,
                }));
            }
        }
        for member in members {
            if !self.btf.member_name(member)?.is_empty() {
                continue;
            }
            // An unnamed member of a scalar type is bitfield padding, which has no members.
            let Some(inner) = self.btf.resolve_composite(member.type_id)? else {
                continue;
            };
            if depth >= MAX_DEPTH {
                return Err(BtfError::TooDeep {
                    type_id: member.type_id,
                }
                .into());
            }
            if let Some(found) = self.search(inner, depth + 1)? {
                return Ok(Some(FoundMember {
                    bit_offset: composite
                        .member_bit_offset(member)
                        .saturating_add(found.bit_offset),
                    type_id: found.type_id,
                }));
            }
        }
        Ok(None)
    }
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

/// Parses and checks `struct btf_header` at the start of `data`.
fn parse_header(data: &[u8]) -> Result<Header, BtfError> {
    let truncated = || BtfError::TruncatedHeader { len: data.len() };
    if data.len() < HEADER_LEN {
        // Report a foreign blob as such even when it is also short.
        return match read_u16(data, 0) {
            Some(found) if found != BTF_MAGIC => Err(BtfError::BadMagic { found }),
            _ => Err(truncated()),
        };
    }
    let magic = read_u16(data, 0).ok_or_else(truncated)?;
    if magic != BTF_MAGIC {
        return Err(BtfError::BadMagic { found: magic });
    }
    let version = *data.get(2).ok_or_else(truncated)?;
    if version != BTF_VERSION {
        return Err(BtfError::UnsupportedVersion { version });
    }
    let field = |at: usize| read_u32(data, at).ok_or_else(truncated);
    let header = Header {
        hdr_len: field(4)?,
        type_off: field(8)?,
        type_len: field(12)?,
        str_off: field(16)?,
        str_len: field(20)?,
    };
    if header.hdr_len < HEADER_LEN as u32 {
        return Err(BtfError::BadHeaderLength {
            hdr_len: header.hdr_len,
        });
    }
    Ok(header)
}

/// Returns the section that starts `offset` bytes after the header and is `len` bytes long.
fn section<'a>(
    data: &'a [u8],
    name: &'static str,
    hdr_len: u32,
    offset: u32,
    len: u32,
) -> Result<&'a [u8], BtfError> {
    // u32 + u32 + u32 cannot overflow u64.
    let start = u64::from(hdr_len) + u64::from(offset);
    let end = start + u64::from(len);
    let out_of_bounds = || BtfError::SectionOutOfBounds {
        section: name,
        start,
        end,
        blob_len: data.len(),
    };
    let start_index = usize::try_from(start).map_err(|_| out_of_bounds())?;
    let end_index = usize::try_from(end).map_err(|_| out_of_bounds())?;
    data.get(start_index..end_index).ok_or_else(out_of_bounds)
}

/// Returns the length of the data that follows a `struct btf_type` of this
/// kind, or `None` for an unknown kind.
fn trailing_len(type_kind: u8, vlen: usize) -> Option<usize> {
    let len = match type_kind {
        kind::INT | kind::VAR | kind::DECL_TAG => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => vlen * 12,
        kind::ENUM | kind::FUNC_PROTO => vlen * 8,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        _ => return None,
    };
    Some(len)
}

/// Parses every type record in the type section, in id order.
fn parse_types(section: &[u8]) -> Result<(Vec<TypeEntry>, Vec<Member>), BtfError> {
    let mut types = Vec::new();
    let mut members = Vec::new();
    let mut type_id: u32 = 1;
    let mut offset = 0;
    while let Some(rest) = section.get(offset..).filter(|rest| !rest.is_empty()) {
        let truncated = |needed: usize| BtfError::TruncatedType {
            type_id,
            offset,
            needed,
            available: rest.len(),
        };
        let header = rest
            .get(..TYPE_HEADER_LEN)
            .ok_or_else(|| truncated(TYPE_HEADER_LEN))?;
        let field = |at: usize| read_u32(header, at).ok_or_else(|| truncated(TYPE_HEADER_LEN));
        let name_off = field(0)?;
        let info = field(4)?;
        let size_or_type = field(8)?;

        let vlen = (info & 0xffff) as usize;
        let type_kind = ((info >> 24) & 0x1f) as u8;
        let kind_flag = info >> 31 == 1;
        let trailing = trailing_len(type_kind, vlen).ok_or(BtfError::UnknownKind {
            kind: type_kind,
            type_id,
        })?;
        let record_len = TYPE_HEADER_LEN + trailing;
        let body = rest
            .get(TYPE_HEADER_LEN..record_len)
            .ok_or_else(|| truncated(record_len))?;

        let mut entry = TypeEntry {
            name_off,
            kind: type_kind,
            kind_flag,
            size_or_type,
            first_member: members.len(),
            member_count: 0,
        };
        if entry.is_composite() {
            for record in body.chunks_exact(MEMBER_LEN) {
                let field = |at: usize| read_u32(record, at).ok_or_else(|| truncated(record_len));
                members.push(Member {
                    name_off: field(0)?,
                    type_id: field(4)?,
                    offset: field(8)?,
                });
            }
            entry.member_count = vlen;
        }
        types.push(entry);

        offset += record_len;
        type_id = type_id.checked_add(1).ok_or(BtfError::TooManyTypes)?;
    }
    Ok((types, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF blobs in host byte order. Type ids are handed out in the
    /// order types are added, starting at 1.
    struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    /// A struct or union member: name (empty for anonymous), type id, raw `offset` field.
    type MemberSpec<'a> = (&'a str, u32, u32);

    impl BtfBuilder {
        fn new() -> Self {
            BtfBuilder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn string(&mut self, text: &str) -> u32 {
            if text.is_empty() {
                return 0;
            }
            let offset = self.strings.len() as u32;
            self.strings.extend_from_slice(text.as_bytes());
            self.strings.push(0);
            offset
        }

        fn push_u32(&mut self, value: u32) {
            self.types.extend_from_slice(&value.to_ne_bytes());
        }

        /// Appends a `struct btf_type` with raw fields and returns its id. The
        /// caller appends any trailing data.
        fn type_header(
            &mut self,
            name: &str,
            type_kind: u32,
            vlen: u32,
            kind_flag: bool,
            size_or_type: u32,
        ) -> u32 {
            let name_off = self.string(name);
            let info = (u32::from(kind_flag) << 31) | (type_kind << 24) | vlen;
            self.push_u32(name_off);
            self.push_u32(info);
            self.push_u32(size_or_type);
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.type_header(name, 1, 0, false, size);
            self.push_u32(size * 8); // encoding: no flags, bit offset 0, nr_bits
            id
        }

        fn pointer(&mut self, target: u32) -> u32 {
            self.type_header("", 2, 0, false, target)
        }

        fn typedef(&mut self, name: &str, target: u32) -> u32 {
            self.type_header(name, 8, 0, false, target)
        }

        fn constant(&mut self, target: u32) -> u32 {
            self.type_header("", 10, 0, false, target)
        }

        fn composite(
            &mut self,
            type_kind: u32,
            name: &str,
            size: u32,
            kind_flag: bool,
            members: &[MemberSpec<'_>],
        ) -> u32 {
            let id = self.type_header(name, type_kind, members.len() as u32, kind_flag, size);
            for &(member_name, type_id, offset) in members {
                let name_off = self.string(member_name);
                self.push_u32(name_off);
                self.push_u32(type_id);
                self.push_u32(offset);
            }
            id
        }

        fn structure(&mut self, name: &str, size: u32, members: &[MemberSpec<'_>]) -> u32 {
            self.composite(4, name, size, false, members)
        }

        fn union(&mut self, name: &str, size: u32, members: &[MemberSpec<'_>]) -> u32 {
            self.composite(5, name, size, false, members)
        }

        fn build(&self) -> Vec<u8> {
            self.build_with(BTF_MAGIC, BTF_VERSION)
        }

        fn build_with(&self, magic: u16, version: u8) -> Vec<u8> {
            let mut blob = Vec::new();
            blob.extend_from_slice(&magic.to_ne_bytes());
            blob.push(version);
            blob.push(0); // flags
            let type_len = self.types.len() as u32;
            let str_len = self.strings.len() as u32;
            for value in [HEADER_LEN as u32, 0, type_len, type_len, str_len] {
                blob.extend_from_slice(&value.to_ne_bytes());
            }
            blob.extend_from_slice(&self.types);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// Builds a blob with `struct outer { long first; union { struct { int a; int b; }; long c; }; int last; }`
    fn nested_anonymous_blob() -> Vec<u8> {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        let long = builder.int("long", 8);
        let inner = builder.structure("", 8, &[("a", int, 0), ("b", int, 32)]);
        let union = builder.union("", 8, &[("", inner, 0), ("c", long, 0)]);
        builder.structure(
            "outer",
            24,
            &[("first", long, 0), ("", union, 64), ("last", int, 128)],
        );
        builder.build()
    }

    /// Builds a blob with `struct holder { long pad; const inner_t value; struct inner *link; }`
    /// and `typedef struct inner { int x; int y; } inner_t`.
    fn typedef_blob() -> Vec<u8> {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        let long = builder.int("long", 8);
        let inner = builder.structure("inner", 8, &[("x", int, 0), ("y", int, 32)]);
        let inner_t = builder.typedef("inner_t", inner);
        let const_inner_t = builder.constant(inner_t);
        let link = builder.pointer(inner);
        builder.structure(
            "holder",
            24,
            &[
                ("pad", long, 0),
                ("value", const_inner_t, 64),
                ("link", link, 128),
            ],
        );
        builder.build()
    }

    /// Builds a blob whose struct `flags` has `kind_flag` set: `int a; int bits:3 (bit 32); int later (bit 64); int odd:5 (bit 35)`.
    fn bitfield_blob() -> Vec<u8> {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        builder.composite(
            4,
            "flags",
            16,
            true,
            &[
                ("a", int, 0),
                ("bits", int, (3 << 24) | 32),
                ("later", int, 64),
                ("odd", int, (5 << 24) | 35),
            ],
        );
        builder.build()
    }

    #[test]
    fn plain_member() {
        let btf = KernelBtf::parse(&nested_anonymous_blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "first").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "last").unwrap(), 16);
        assert_eq!(btf.struct_size("outer").unwrap(), 24);
    }

    #[test]
    fn member_inside_anonymous_union() {
        let btf = KernelBtf::parse(&nested_anonymous_blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "c").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 12);
    }

    #[test]
    fn path_through_typedef_and_const() {
        let btf = KernelBtf::parse(&typedef_blob()).unwrap();
        assert_eq!(
            btf.member_path_offset("holder", &["value", "y"]).unwrap(),
            12
        );
        assert_eq!(btf.member_path_offset("holder", &["value"]).unwrap(), 8);
        assert_eq!(btf.member_path_offset("holder", &[]).unwrap(), 0);
    }

    #[test]
    fn path_does_not_follow_pointers() {
        let btf = KernelBtf::parse(&typedef_blob()).unwrap();
        let error = btf
            .member_path_offset("holder", &["link", "x"])
            .unwrap_err();
        assert!(
            matches!(&error, BtfError::NotAStruct { path, .. } if path == "holder.link"),
            "{error:?}"
        );
    }

    #[test]
    fn missing_member_on_path() {
        let btf = KernelBtf::parse(&typedef_blob()).unwrap();
        let error = btf
            .member_path_offset("holder", &["value", "z"])
            .unwrap_err();
        assert!(
            matches!(&error, BtfError::MemberNotFound { struct_name, member }
                if struct_name == "holder.value" && member == "z"),
            "{error:?}"
        );
    }

    #[test]
    fn kind_flag_bitfield_offset() {
        let btf = KernelBtf::parse(&bitfield_blob()).unwrap();
        assert_eq!(btf.member_offset("flags", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("flags", "bits").unwrap(), 4);
        assert_eq!(btf.member_offset("flags", "later").unwrap(), 8);
    }

    #[test]
    fn unaligned_bitfield_rejected() {
        let btf = KernelBtf::parse(&bitfield_blob()).unwrap();
        let error = btf.member_offset("flags", "odd").unwrap_err();
        assert!(
            matches!(&error, BtfError::NotByteAligned { bit_offset: 35, member, .. } if member == "odd"),
            "{error:?}"
        );
    }

    #[test]
    fn missing_struct() {
        let btf = KernelBtf::parse(&nested_anonymous_blob()).unwrap();
        assert!(btf.has_struct("outer"));
        assert!(!btf.has_struct("nothere"));
        let error = btf.member_offset("nothere", "a").unwrap_err();
        assert!(
            matches!(&error, BtfError::StructNotFound { name } if name == "nothere"),
            "{error:?}"
        );
    }

    #[test]
    fn missing_member() {
        let btf = KernelBtf::parse(&nested_anonymous_blob()).unwrap();
        let error = btf.member_offset("outer", "nothere").unwrap_err();
        assert!(
            matches!(&error, BtfError::MemberNotFound { struct_name, member }
                if struct_name == "outer" && member == "nothere"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "`outer` has no member `nothere`");
    }

    #[test]
    fn truncated_blob() {
        let blob = nested_anonymous_blob();
        for len in 0..blob.len() {
            assert!(
                KernelBtf::parse(&blob[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        let error = KernelBtf::parse(&blob[..blob.len() - 1]).unwrap_err();
        assert!(
            matches!(
                error,
                BtfError::SectionOutOfBounds {
                    section: "string",
                    ..
                }
            ),
            "{error:?}"
        );
        let error = KernelBtf::parse(&blob[..10]).unwrap_err();
        assert!(
            matches!(error, BtfError::TruncatedHeader { len: 10 }),
            "{error:?}"
        );
    }

    #[test]
    fn truncated_type_record() {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        builder.structure("cut", 8, &[("a", int, 0), ("b", int, 32)]);
        builder.types.truncate(builder.types.len() - 4);
        let error = KernelBtf::parse(&builder.build()).unwrap_err();
        assert!(
            matches!(
                error,
                BtfError::TruncatedType {
                    type_id: 2,
                    offset: 16,
                    needed: 36,
                    available: 32
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn bad_magic() {
        let blob = nested_anonymous_blob();
        let error = KernelBtf::parse(&BtfBuilder::new().build_with(0x9feb, 1)).unwrap_err();
        assert!(
            matches!(error, BtfError::BadMagic { found: 0x9feb }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "BTF magic is 0x9feb, expected 0xeb9f in host byte order"
        );
        let error = KernelBtf::parse(b"ELF").unwrap_err();
        assert!(matches!(error, BtfError::BadMagic { .. }), "{error:?}");
        assert!(KernelBtf::parse(&blob).is_ok());
    }

    #[test]
    fn unsupported_version() {
        let error = KernelBtf::parse(&BtfBuilder::new().build_with(BTF_MAGIC, 2)).unwrap_err();
        assert!(
            matches!(error, BtfError::UnsupportedVersion { version: 2 }),
            "{error:?}"
        );
    }

    #[test]
    fn short_header_length() {
        let mut blob = BtfBuilder::new().build();
        blob[4..8].copy_from_slice(&16u32.to_ne_bytes());
        let error = KernelBtf::parse(&blob).unwrap_err();
        assert!(
            matches!(error, BtfError::BadHeaderLength { hdr_len: 16 }),
            "{error:?}"
        );
    }

    #[test]
    fn unknown_kind() {
        let mut builder = BtfBuilder::new();
        builder.int("int", 4);
        builder.type_header("odd", 25, 0, false, 0);
        let error = KernelBtf::parse(&builder.build()).unwrap_err();
        assert!(
            matches!(
                error,
                BtfError::UnknownKind {
                    kind: 25,
                    type_id: 2
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "BTF type 2 has unknown kind 25");
    }

    #[test]
    fn skips_other_kinds() {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        builder.type_header("", 3, 0, false, 0); // array
        builder.types.extend_from_slice(&[0; 12]);
        builder.type_header("colour", 6, 2, false, 4); // enum with two values
        builder.types.extend_from_slice(&[0; 16]);
        builder.type_header("fn", 13, 1, false, int); // func_proto with one parameter
        builder.types.extend_from_slice(&[0; 8]);
        builder.type_header("big", 19, 1, false, 8); // enum64 with one value
        builder.types.extend_from_slice(&[0; 12]);
        builder.type_header(".data", 15, 1, false, 8); // datasec with one variable
        builder.types.extend_from_slice(&[0; 12]);
        builder.structure("after", 4, &[("value", int, 0)]);
        let btf = KernelBtf::parse(&builder.build()).unwrap();
        assert_eq!(btf.member_offset("after", "value").unwrap(), 0);
    }

    #[test]
    fn bad_member_type_id() {
        let mut builder = BtfBuilder::new();
        builder.structure("broken", 8, &[("", 99, 0)]);
        let btf = KernelBtf::parse(&builder.build()).unwrap();
        let error = btf.member_offset("broken", "x").unwrap_err();
        assert!(
            matches!(
                error,
                BtfError::BadTypeId {
                    type_id: 99,
                    last_id: 1
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn bad_member_name_offset() {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        builder.structure("broken", 4, &[("a", int, 0)]);
        let mut blob = builder.build();
        // The member's name_off is the first field after the struct's 12-byte header.
        let member_name_at = HEADER_LEN + 16 + 12;
        blob[member_name_at..member_name_at + 4].copy_from_slice(&1000u32.to_ne_bytes());
        let btf = KernelBtf::parse(&blob).unwrap();
        let error = btf.member_offset("broken", "a").unwrap_err();
        assert!(
            matches!(error, BtfError::StringOutOfBounds { offset: 1000, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn self_containing_struct_rejected() {
        let mut builder = BtfBuilder::new();
        // Type 1 contains an anonymous member of type 1.
        builder.structure("loop", 8, &[("", 1, 0)]);
        let btf = KernelBtf::parse(&builder.build()).unwrap();
        let error = btf.member_offset("loop", "x").unwrap_err();
        assert!(matches!(error, BtfError::TooDeep { .. }), "{error:?}");
    }

    #[test]
    fn typedef_cycle_rejected() {
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        builder.typedef("a", 3);
        builder.typedef("b", 2);
        builder.structure("holder", 4, &[("value", 2, 0), ("x", int, 0)]);
        let btf = KernelBtf::parse(&builder.build()).unwrap();
        let error = btf
            .member_path_offset("holder", &["value", "x"])
            .unwrap_err();
        assert!(
            matches!(error, BtfError::TooDeep { type_id: 2 }),
            "{error:?}"
        );
    }

    #[test]
    fn shared_anonymous_members_bounded() {
        // Each level contains two anonymous members of the next level, so a
        // search without a visit limit would enter 2^40 structs.
        let levels = 40;
        let mut builder = BtfBuilder::new();
        let int = builder.int("int", 4);
        let mut next = builder.structure("", 4, &[("leaf", int, 0)]);
        for _ in 0..levels {
            next = builder.structure("", 4, &[("", next, 0), ("", next, 0)]);
        }
        builder.structure("wide", 4, &[("", next, 0)]);
        let btf = KernelBtf::parse(&builder.build()).unwrap();
        assert_eq!(btf.member_offset("wide", "leaf").unwrap(), 0);
        let error = btf.member_offset("wide", "absent").unwrap_err();
        assert!(matches!(error, BtfError::SearchLimit { .. }), "{error:?}");
    }

    #[test]
    fn corrupted_blobs_do_not_panic() {
        let blob = nested_anonymous_blob();
        // A fixed linear congruential generator keeps the test deterministic.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        for _ in 0..20_000 {
            let mut corrupted = blob.clone();
            for _ in 0..1 + next() % 4 {
                let at = next() % corrupted.len();
                corrupted[at] = next() as u8;
            }
            if let Ok(btf) = KernelBtf::parse(&corrupted) {
                for member in ["first", "a", "b", "c", "last", "absent"] {
                    let _ = btf.member_offset("outer", member);
                }
                let _ = btf.member_path_offset("outer", &["first", "a"]);
            }
        }
    }

    #[test]
    fn read_error_names_path() {
        let error = KernelBtf::from_file("/nonexistent/btf/vmlinux").unwrap_err();
        assert!(
            matches!(&error, BtfError::Read { path, .. } if path == Path::new("/nonexistent/btf/vmlinux")),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "could not read BTF from /nonexistent/btf/vmlinux"
        );
    }

    #[test]
    fn running_kernel_offsets() {
        if !Path::new(VMLINUX_BTF_PATH).exists() {
            eprintln!("skipping running_kernel_offsets: {VMLINUX_BTF_PATH} does not exist");
            return;
        }
        let btf = KernelBtf::from_sys_fs().unwrap();

        let check = |struct_name: &str, member: &str, must_be_nonzero: bool| {
            let offset = btf
                .member_offset(struct_name, member)
                .unwrap_or_else(|error| panic!("{struct_name}.{member}: {error}"));
            let size = btf.struct_size(struct_name).unwrap();
            assert!(
                offset < size,
                "{struct_name}.{member} at {offset}, struct is {size} bytes"
            );
            if must_be_nonzero {
                assert_ne!(offset, 0, "{struct_name}.{member} is at offset 0");
            }
            offset
        };

        check("task_struct", "tgid", true);
        check("task_struct", "mm", true);
        check("task_struct", "real_parent", true);
        check("task_struct", "start_boottime", true);

        let arg_start = check("mm_struct", "arg_start", true);
        let arg_end = check("mm_struct", "arg_end", true);
        assert!(
            arg_end > arg_start,
            "mm_struct.arg_end {arg_end} <= arg_start {arg_start}"
        );

        let pwd = check("fs_struct", "pwd", true);
        let dentry = check("path", "dentry", true);
        check("path", "mnt", false);

        check("dentry", "d_parent", true);
        check("dentry", "d_name", true);
        // qstr.name follows a union of `struct { hash; len; }` and `hash_len`.
        check("qstr", "name", true);
        assert_eq!(
            btf.member_path_offset("fs_struct", &["pwd", "dentry"])
                .unwrap(),
            pwd + dentry
        );
    }
}
