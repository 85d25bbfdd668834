//! The kind of change a changelog row carries, as Flink's `RowKind` and
//! RisingWave's `Op`: a first step towards one changelog type for operators,
//! views, sinks and the server alike.

/// What a changelog row says about the row it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// A new row (`+I`).
    Insert,
    /// The old version of a row being updated (`-U`); its new version follows.
    UpdateBefore,
    /// The new version of an updated row (`+U`).
    UpdateAfter,
    /// A row that no longer holds (`-D`).
    Delete,
}

impl RowKind {
    /// Every kind, in the order of Flink's `RowKind` values.
    pub const ALL: [RowKind; 4] = [RowKind::Insert, RowKind::UpdateBefore, RowKind::UpdateAfter, RowKind::Delete];

    /// Flink's short string (`+I`, `-U`, `+U`, `-D`): what the `op` column of a
    /// view's changelog shows subscribers.
    pub fn short_string(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind a short string names; `None` for anything else.
    pub fn from_short_string(op: &str) -> Option<RowKind> {
        RowKind::ALL.into_iter().find(|kind| kind.short_string() == op)
    }

    /// Whether the row takes back a row sent earlier (`-U`, `-D`) rather than adding one.
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_flinks_and_read_back() {
        let strings: Vec<&str> = RowKind::ALL.iter().map(|k| k.short_string()).collect();
        assert_eq!(strings, vec!["+I", "-U", "+U", "-D"]);
        for kind in RowKind::ALL {
            assert_eq!(RowKind::from_short_string(kind.short_string()), Some(kind));
        }
        assert_eq!(RowKind::from_short_string("+X"), None);
        assert_eq!(RowKind::ALL.iter().filter(|k| k.is_retraction()).copied().collect::<Vec<_>>(), vec![RowKind::UpdateBefore, RowKind::Delete]);
    }
}
