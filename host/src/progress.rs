//! How long operations report what they are doing. The CLI shows a spinner
//! on a terminal; the library, the Nushell plugin and the API stay silent.

pub trait Progress {
    /// A step that is starting (replaces the previous one on a spinner).
    fn step(&self, message: &str);
    /// Something the user should see even when all goes well.
    fn note(&self, message: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _message: &str) {}
    fn note(&self, _message: &str) {}
}
