// The shim links as a position-dependent executable. A position-independent one has its
// `.data.rel.ro` (vtables, tables of string slices: ~230 KB here) written by the dynamic linker at
// every start, which makes those pages private to each shim — a quarter of an idle shim's memory,
// times the number of containers. Linked at a fixed address they stay clean pages of the one
// sealed copy every shim runs from. The shared libraries, heap, stack and mappings keep their
// randomised addresses; Go-built shims (containerd's) are position-dependent by default as well.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
