//! The Nushell plugin: `plugin add ~/.cargo/bin/nu_plugin_iso; plugin use iso`.
//! Everything is in [`iso::nu`].

fn main() {
    iso::nu::main()
}
