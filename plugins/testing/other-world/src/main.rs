//! Test-only: a component that is not a hook but a plain `wasi:cli` command
//! (it exports `wasi:cli/run`, not `iso:hooks/handler`). iso must refuse to
//! load it as a hook plugin, with a message naming the world it expected.

fn main() {
    println!("hi");
}
