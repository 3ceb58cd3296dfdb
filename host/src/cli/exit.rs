//! Exit codes (README, "Exit codes"), and the one place an error's kind
//! becomes one.

use crate::error::ErrorKind;

pub const OK: i32 = 0;
pub const ERROR: i32 = 1;
pub const USAGE: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const PARTIAL: i32 = 4;
pub const REFUSED: i32 = 5;
/// `EX_CONFIG` of sysexits.h.
pub const CONFIG: i32 = 78;

/// The exit code of a command that failed with an error of `kind`.
pub fn of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::Busy | ErrorKind::Refused | ErrorKind::WouldLoseWork => REFUSED,
        ErrorKind::Config => CONFIG,
        ErrorKind::Conflict | ErrorKind::Invalid | ErrorKind::Unavailable | ErrorKind::Internal => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_codes() {
        let codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| of(*k)).collect();
        assert_eq!(codes, [3, 1, 5, 5, 5, 1, 78, 1, 1]);
    }
}
