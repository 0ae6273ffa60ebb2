//! Rebuilds the programs when `bpf-linker` changes, because cargo cannot see that the link step
//! depends on it.

fn main() {
    match which::which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(error) => println!(
            "cargo:warning=bpf-linker not found on PATH ({error}); run `cargo xtask setup`"
        ),
    }
}
