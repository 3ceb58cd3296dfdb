//! How long operations report what they are doing. The CLI shows a spinner
//! on a terminal; the library, the Nushell plugin and the API stay silent.

pub trait Progress {
    /// A step that is starting (replaces the previous one on a spinner).
    fn step(&self, message: &str);
    /// Something the user should see even when all goes well (a skipped
    /// port block, a hook's message, …).
    fn note(&self, message: &str);
    /// Whether the lines hooks log while they run (Rhai `log()`, WASM
    /// `host.log`) should go to stderr as they come.
    fn show_hook_logs(&self) -> bool {
        false
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _message: &str) {}
    fn note(&self, _message: &str) {}
}

/// Reports nothing but lets hooks log on stderr (`iso serve`: its stderr
/// is the server's log).
#[derive(Debug, Default, Clone, Copy)]
pub struct HookLogsOnly;

impl Progress for HookLogsOnly {
    fn step(&self, _message: &str) {}
    fn note(&self, _message: &str) {}
    fn show_hook_logs(&self) -> bool {
        true
    }
}

/// Keeps the notes of one operation (and passes everything on to `inner`),
/// so a bulk operation can tell each item's notes apart.
pub struct Collect<'a> {
    pub inner: &'a dyn Progress,
    pub notes: std::cell::RefCell<Vec<String>>,
}

impl<'a> Collect<'a> {
    pub fn new(inner: &'a dyn Progress) -> Collect<'a> {
        Collect { inner, notes: Default::default() }
    }

    pub fn into_notes(self) -> Vec<String> {
        self.notes.into_inner()
    }
}

impl Progress for Collect<'_> {
    fn step(&self, message: &str) {
        self.inner.step(message)
    }
    fn note(&self, message: &str) {
        self.notes.borrow_mut().push(message.to_string());
        self.inner.note(message)
    }
    fn show_hook_logs(&self) -> bool {
        self.inner.show_hook_logs()
    }
}
