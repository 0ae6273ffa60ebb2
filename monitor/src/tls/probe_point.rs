//! Where in a function to place a uprobe so that the kernel never single-steps it.
//!
//! A uprobe replaces one instruction with a breakpoint. When the breakpoint hits, the kernel
//! either emulates the replaced instruction or copies it to a page of the process and runs it
//! there with a single-step trap. On x86-64 the kernel emulates `push` of a register and
//! relative jumps, conditional jumps and calls. Every other instruction takes the single-step
//! path, which costs a second trap. On virtual machines that second trap is expensive: a probe
//! on `SSL_free`, whose first instruction is `test rdi, rdi`, measured 9 µs per call against
//! 0.5 µs for the conditional jump right after it.
//!
//! [`probe_offset`] therefore walks the first instructions of a function and returns the
//! offset of the first one the kernel emulates. Every instruction before it must run on every
//! call and leave the argument registers and the stack the program reads intact. The walk
//! only steps over a small set of instructions whose length and effect it knows exactly.
//! Anything else ends it at offset 0, the function's entry, which is always correct.
//!
//! NOTE: a jump from later in the function back to a moved probe point would run the probe
//! twice for one call. Compilers rarely jump back into a prologue, and the handlers tolerate a
//! repeated record.

/// Maximum number of code bytes the walk reads.
pub const MAX_WALK: usize = 64;

/// Registers that carry the first six integer arguments in the System V x86-64 ABI, by
/// encoding number: rdi, rsi, rdx, rcx, r8, r9.
const ARGUMENT_REGISTERS: [u8; 6] = [7, 6, 2, 1, 8, 9];
/// Encoding number of rsp.
const RSP: u8 = 4;

/// Effect of one decoded instruction on the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// The kernel emulates it: a probe here costs one trap.
    Emulated,
    /// It falls through to the next instruction and writes at most the given register.
    Plain { writes: Option<u8> },
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Instruction {
    len: usize,
    effect: Effect,
}

/// Returns the offset from the start of `code`, a function's first bytes, at which a uprobe
/// is emulated, or 0 when no such point is found. With `return_probe` the stack pointer must
/// also be unchanged at that point, because the kernel takes the return address from it.
pub fn probe_offset(code: &[u8], return_probe: bool) -> u64 {
    if !cfg!(target_arch = "x86_64") {
        return 0;
    }
    let code = &code[..code.len().min(MAX_WALK)];
    let mut offset = 0;
    while offset < code.len() {
        let Some(instruction) = decode(&code[offset..]) else {
            return 0;
        };
        match instruction.effect {
            Effect::Emulated => return offset as u64,
            Effect::Plain {
                writes: Some(register),
            } if ARGUMENT_REGISTERS.contains(&register) || (return_probe && register == RSP) => {
                return 0;
            }
            Effect::Plain { .. } => offset += instruction.len,
        }
    }
    0
}

/// Decodes one instruction of the small set the walk understands.
fn decode(code: &[u8]) -> Option<Instruction> {
    if let [0xf3, 0x0f, 0x1e, 0xfa, ..] = code {
        // endbr64
        return Some(plain(4, None));
    }
    // An fs segment prefix, as in the stack protector's `mov rax, fs:0x28`, is allowed on
    // the instructions that are stepped over, never on an emulated one.
    if let [0x64, rest @ ..] = code {
        let mut instruction = decode(rest)?;
        if instruction.effect == Effect::Emulated || rest.first() == Some(&0x64) {
            return None;
        }
        instruction.len += 1;
        return Some(instruction);
    }
    let (rex, rest) = match code {
        [rex @ 0x40..=0x4f, rest @ ..] => (*rex, rest),
        _ => (0, code),
    };
    let opcode = *rest.first()?;
    let after_opcode = &rest[1..];
    let prefix_len = code.len() - rest.len();

    let instruction = match opcode {
        // push r64; the kernel emulates it with no prefix or with REX.B only.
        0x50..=0x57 if rex == 0 || rex == 0x41 => Instruction {
            len: prefix_len + 1,
            effect: Effect::Emulated,
        },
        // Relative jumps, conditional jumps and calls, without prefixes.
        0x70..=0x7f | 0xeb if rex == 0 => emulated(2),
        0xe8 | 0xe9 if rex == 0 => emulated(5),
        0x0f if rex == 0 && matches!(after_opcode.first(), Some(0x80..=0x8f)) => emulated(6),
        // Two-byte opcodes: nopl r/m, movzx, movsx.
        0x0f => return decode_two_byte(rex, prefix_len, after_opcode),
        // add, or, and, sub, xor, mov: r/m <- reg.
        0x01 | 0x09 | 0x21 | 0x29 | 0x31 | 0x89 => {
            let operands = modrm(rex, after_opcode)?;
            let writes = operands.rm_destination()?;
            plain(prefix_len + 1 + operands.len, writes)
        }
        // add, or, and, sub, xor, mov, lea, movsxd: reg <- r/m.
        0x03 | 0x0b | 0x23 | 0x2b | 0x33 | 0x8b | 0x8d | 0x63 => {
            let operands = modrm(rex, after_opcode)?;
            plain(prefix_len + 1 + operands.len, Some(operands.reg))
        }
        // cmp and test write only the flags.
        0x39 | 0x3b | 0x85 => {
            let operands = modrm(rex, after_opcode)?;
            plain(prefix_len + 1 + operands.len, None)
        }
        // Group 1 with an 8-bit (0x83) or 32-bit (0x81) immediate; /7 is cmp.
        0x81 | 0x83 => {
            let operands = modrm(rex, after_opcode)?;
            let immediate = if opcode == 0x83 { 1 } else { 4 };
            let writes = if operands.reg & 7 == 7 {
                None
            } else {
                operands.rm_destination()?
            };
            plain(prefix_len + 1 + operands.len + immediate, writes)
        }
        // mov r/m, imm32 (/0 only).
        0xc7 => {
            let operands = modrm(rex, after_opcode)?;
            if operands.reg & 7 != 0 {
                return None;
            }
            plain(
                prefix_len + 1 + operands.len + 4,
                operands.rm_destination()?,
            )
        }
        // mov r, imm32, or imm64 with REX.W.
        0xb8..=0xbf => {
            let immediate = if rex & 0x08 != 0 { 8 } else { 4 };
            let register = (opcode - 0xb8) | ((rex & 1) << 3);
            plain(prefix_len + 1 + immediate, Some(register))
        }
        _ => return None,
    };
    (instruction.len <= code.len()).then_some(instruction)
}

fn decode_two_byte(rex: u8, prefix_len: usize, code: &[u8]) -> Option<Instruction> {
    let (&second, after) = code.split_first()?;
    let operands = modrm(rex, after)?;
    let len = prefix_len + 2 + operands.len;
    match second {
        0x1f if operands.reg & 7 == 0 => Some(plain(len, None)),
        0xb6 | 0xb7 | 0xbe | 0xbf => Some(plain(len, Some(operands.reg))),
        _ => None,
    }
    .filter(|instruction| instruction.len <= prefix_len + 1 + code.len())
}

fn plain(len: usize, writes: Option<u8>) -> Instruction {
    Instruction {
        len,
        effect: Effect::Plain { writes },
    }
}

fn emulated(len: usize) -> Instruction {
    Instruction {
        len,
        effect: Effect::Emulated,
    }
}

/// The operands a ModRM byte encodes.
struct Operands {
    /// Length of the ModRM byte, the SIB byte and the displacement.
    len: usize,
    /// The `reg` field with REX.R.
    reg: u8,
    /// The register `rm` names with REX.B, when the operand is a register.
    rm_register: Option<u8>,
    /// Whether a memory operand is addressed through rsp (a stack slot).
    stack_memory: bool,
}

impl Operands {
    /// Returns the register written when `r/m` is the destination. A store is allowed only
    /// into a stack slot, because a store through another register could change what the
    /// program reads. Such a store yields `None`, which ends the walk.
    fn rm_destination(&self) -> Option<Option<u8>> {
        match self.rm_register {
            Some(register) => Some(Some(register)),
            None if self.stack_memory => Some(None),
            None => None,
        }
    }
}

/// Decodes a ModRM byte and what follows it in 64-bit mode.
fn modrm(rex: u8, code: &[u8]) -> Option<Operands> {
    let byte = *code.first()?;
    let mode = byte >> 6;
    let reg = ((byte >> 3) & 7) | ((rex & 0x04) << 1);
    let rm = byte & 7;
    if mode == 3 {
        return Some(Operands {
            len: 1,
            reg,
            rm_register: Some(rm | ((rex & 0x01) << 3)),
            stack_memory: false,
        });
    }
    let mut len = 1;
    let mut stack_memory = false;
    let mut displacement = match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = *code.get(1)?;
        len += 1;
        let base = sib & 7;
        let index = ((sib >> 3) & 7) | ((rex & 0x02) << 2);
        stack_memory = base == RSP && rex & 0x01 == 0 && index == RSP;
        if base == 5 && mode == 0 {
            displacement = 4;
        }
    } else if rm == 5 && mode == 0 {
        // rip-relative
        displacement = 4;
    }
    Some(Operands {
        len: len + displacement,
        reg,
        rm_register: None,
        stack_memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_first_instruction_stays_at_entry() {
        // push rbp; lea eax, [rsi - 0x10]
        assert_eq!(probe_offset(&[0x55, 0x8d, 0x46, 0xf0], false), 0);
        // push r12
        assert_eq!(probe_offset(&[0x41, 0x54, 0x55], true), 0);
    }

    #[test]
    fn steps_over_a_test_to_the_branch() {
        // test rdi, rdi; je rel32; push r13
        let code = [
            0x48, 0x85, 0xff, 0x0f, 0x84, 0x97, 0x03, 0x00, 0x00, 0x41, 0x55,
        ];
        assert_eq!(probe_offset(&code, false), 3);
        assert_eq!(probe_offset(&code, true), 3);
    }

    #[test]
    fn stack_adjustment_is_skipped_for_entry_probes_only() {
        // sub rsp, 8; call rel32
        let code = [0x48, 0x83, 0xec, 0x08, 0xe8, 0xc7, 0xfd, 0xff, 0xff];
        assert_eq!(probe_offset(&code, false), 4);
        assert_eq!(probe_offset(&code, true), 0);
    }

    #[test]
    fn stack_protector_prologue() {
        // sub rsp, 0x18; mov rax, fs:0x28; mov [rsp + 8], rax; xor eax, eax; test edx, edx; js
        let code = [
            0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00, 0x48,
            0x89, 0x44, 0x24, 0x08, 0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f,
        ];
        assert_eq!(probe_offset(&code, false), 22);
        assert_eq!(probe_offset(&code, true), 0);
        // A segment prefix on an emulated instruction or twice in a row ends the walk.
        assert_eq!(probe_offset(&[0x64, 0x53], false), 0);
        assert_eq!(
            probe_offset(&[0x64, 0x64, 0x48, 0x8b, 0x00, 0x53], false),
            0
        );
    }

    #[test]
    fn argument_register_writes_end_the_walk() {
        // mov rdi, [rdi + 0x30]; jmp
        assert_eq!(
            probe_offset(&[0x48, 0x8b, 0x7f, 0x30, 0xeb, 0x00], false),
            0
        );
        // xor ecx, ecx; jmp
        assert_eq!(probe_offset(&[0x31, 0xc9, 0xeb, 0x00], false), 0);
        // mov r9d, 1; jmp
        assert_eq!(
            probe_offset(&[0x41, 0xb9, 0x01, 0x00, 0x00, 0x00, 0xeb, 0x00], false),
            0
        );
        // mov ebx, 1 writes no argument register.
        assert_eq!(
            probe_offset(&[0xbb, 0x01, 0x00, 0x00, 0x00, 0xeb, 0x00], false),
            5
        );
    }

    #[test]
    fn stores_outside_the_stack_end_the_walk() {
        // mov dword [rdi + 0x38], 0; push rbx
        let code = [0xc7, 0x47, 0x38, 0x00, 0x00, 0x00, 0x00, 0x53];
        assert_eq!(probe_offset(&code, false), 0);
        // mov [rsp + 8], rax; push rbx
        assert_eq!(
            probe_offset(&[0x48, 0x89, 0x44, 0x24, 0x08, 0x53], false),
            5
        );
    }

    #[test]
    fn unknown_prefixed_and_truncated_code_stays_at_entry() {
        assert_eq!(probe_offset(&[], false), 0);
        assert_eq!(probe_offset(&[0xc3], false), 0);
        // cmp qword [rdi + 0x30], 0 cut short
        assert_eq!(probe_offset(&[0x48, 0x83, 0x7f], false), 0);
        // a REX prefix on a jump is not emulated
        assert_eq!(probe_offset(&[0x48, 0xeb, 0x00], false), 0);
        // 0x66 prefix is not in the known set
        assert_eq!(probe_offset(&[0x66, 0x90, 0x53], false), 0);
    }

    #[test]
    fn endbr_and_nops_are_stepped_over() {
        // endbr64; nopl [rax]; push rbx
        assert_eq!(
            probe_offset(&[0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x00, 0x53], true),
            7
        );
    }

    #[test]
    fn walk_is_bounded() {
        // 40 `cmp rax, rbx` without an emulated instruction in the window.
        let code: Vec<u8> = [0x48, 0x39, 0xd8].repeat(40);
        assert_eq!(probe_offset(&code, false), 0);
    }
}
